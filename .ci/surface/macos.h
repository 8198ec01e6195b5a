/*
** make check-macos: macOS's API surface, pre-included (-include) before a
** csrc/ file on Linux. It defines __APPLE__, hides what macOS lacks and
** poisons the calls it does not have, so a use outside a BSD_HAVE_*
** branch fails to compile here as it would on a Mac. MSG_NOSIGNAL is
** hidden too (macOS before 11), which puts every write on SO_NOSIGPIPE.
*/
#include "common.h"
#include <signal.h>   /* declares sigtimedwait, poisoned below */

#define __APPLE__ 1
#define __MACH__ 1

/* what macOS declares by default and glibc only for _GNU_SOURCE */
void *memmem(const void *big, size_t blen, const void *little, size_t llen);
typedef struct dl_info {
  const char *dli_fname;
  void *dli_fbase;
  const char *dli_sname;
  void *dli_saddr;
} Dl_info;
int dladdr(const void *addr, Dl_info *info);

#undef SOCK_NONBLOCK
#undef SOCK_CLOEXEC
#undef SO_DOMAIN
#undef SO_PROTOCOL
#undef MSG_NOSIGNAL
#undef MSG_WAITFORONE
#undef MSG_CMSG_CLOEXEC
#undef TCP_KEEPIDLE
#define mmsghdr bsd_surface_has_no_struct_mmsghdr

/* <sys/un.h>, <sys/ucred.h> */
#define LOCAL_PEERPID 0x002
struct xucred {
  unsigned int cr_version;
  uid_t cr_uid;
  short cr_ngroups;
  gid_t cr_groups[NGROUPS];
};
/* <sys/socket.h>: sendfile(file, socket, offset, &len, hdtr, flags) */
int sendfile(int fd, int s, off_t offset, off_t *len, struct sf_hdtr *hdtr,
             int flags);

#pragma GCC poison accept4 pipe2 sigtimedwait sendmmsg recvmmsg
