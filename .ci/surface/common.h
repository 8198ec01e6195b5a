/*
** What .ci/surface/macos.h and freebsd.h share. The system headers that
** hold the names to take away are read once here with glibc's view, so
** that the surface header can then #undef the macros the other system
** lacks, #pragma GCC poison its missing calls, and add what it has that
** glibc does not. Other headers are left to the file compiled, with the
** feature macros of the surface (macOS: no _GNU_SOURCE, so glibc hides
** its GNU calls as macOS lacks them). Compile only: nothing runs.
*/
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>

/* not Linux any more: platform.h must pick the other system's branch */
#undef __linux__
#undef __linux
#undef linux
#undef __gnu_linux__

/* Linux-only names neither BSD has */
#undef SO_PEERCRED
#undef SO_PASSCRED
#undef SO_PRIORITY
#undef SO_MARK
#undef SCM_CREDENTIALS
#undef SCM_MAX_FD
#undef TCP_CORK
#undef TCP_QUICKACK
#undef TCP_USER_TIMEOUT
#undef POLLRDHUP
#undef AF_PACKET
#undef AF_NETLINK
#undef IP_RECVERR
#undef SPLICE_F_MOVE
#undef SPLICE_F_NONBLOCK
/* a use of these types is an incomplete-type error */
#define ucred bsd_surface_has_no_struct_ucred
#define ip_mreqn bsd_surface_has_no_struct_ip_mreqn

/* the BSDs' <sys/socket.h> and <sys/un.h> */
#define SO_NOSIGPIPE 0x1022
#define SOL_LOCAL 0
#define LOCAL_PEERCRED 0x001
#define XUCRED_VERSION 0
#define NGROUPS 16
int getpeereid(int s, uid_t *euid, gid_t *egid);
struct sf_hdtr {
  struct iovec *headers;
  int hdr_cnt;
  struct iovec *trailers;
  int trl_cnt;
};

#pragma GCC poison splice epoll_create epoll_create1 epoll_ctl epoll_wait
