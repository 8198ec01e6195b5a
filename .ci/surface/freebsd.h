/*
** make check-freebsd: FreeBSD 13's API surface, pre-included (-include)
** before a csrc/ file on Linux. It defines __FreeBSD__, hides what FreeBSD
** lacks and poisons the calls it does not have. FreeBSD has accept4,
** pipe2, SOCK_CLOEXEC/SOCK_NONBLOCK, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC,
** sigtimedwait and sendmmsg/recvmmsg (struct mmsghdr), which stay.
*/
#include "common.h"

#define __FreeBSD__ 13

#undef SO_DOMAIN       /* FreeBSD 14 has it */
#undef TCP_KEEPIDLE
#define TCP_KEEPIDLE 256

/* <sys/ucred.h>: with the peer's pid since FreeBSD 13 */
struct xucred {
  unsigned int cr_version;
  uid_t cr_uid;
  short cr_ngroups;
  gid_t cr_groups[NGROUPS];
  union {
    void *_cr_unused1;
    pid_t cr_pid;
  } _cr;
};
#define cr_pid _cr.cr_pid

/* <sys/socket.h>: credentials the kernel fills in (SCM_CREDS) */
#define SCM_CREDS 0x03
#define CMGROUP_MAX 16
struct cmsgcred {
  pid_t cmcred_pid;
  uid_t cmcred_uid;
  uid_t cmcred_euid;
  gid_t cmcred_gid;
  short cmcred_ngroups;
  gid_t cmcred_groups[CMGROUP_MAX];
};
/* sendfile(file, socket, offset, nbytes, hdtr, &sbytes, flags) */
int sendfile(int fd, int s, off_t offset, size_t nbytes,
             struct sf_hdtr *hdtr, off_t *sbytes, int flags);
