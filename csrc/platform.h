/*
** The one place that knows operating systems: it turns the platform's own
** macros into capabilities, BSD_HAVE_X, each 1 or 0. Every other file tests
** a capability, never __linux__ or __APPLE__, so a new platform is a change
** here. A capability may also be turned off from the command line with
** -DBSD_NO_X: `make check-fallbacks` builds the module so, which runs each
** fallback on Linux against real sockets.
**
** Below util in the layers: it defines no function and uses none.
*/
#ifndef BSD_PLATFORM_H
#define BSD_PLATFORM_H

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#if defined(__linux__)
#define BSD_OS "linux"
#define BSD_OS_LINUX 1
#elif defined(__APPLE__)
#define BSD_OS "macos"
#define BSD_OS_APPLE 1
#elif defined(__FreeBSD__)
#define BSD_OS "freebsd"
#define BSD_OS_FREEBSD 1
#elif defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
#define BSD_OS "bsd"
#define BSD_OS_OTHERBSD 1
#else
#define BSD_OS "unix"
#endif

#if defined(BSD_OS_LINUX) || defined(BSD_OS_FREEBSD) \
    || defined(BSD_OS_OTHERBSD)
#define BSD_OS_HAS_ACCEPT4 1   /* accept4 and pipe2 */
#endif
#if defined(BSD_OS_APPLE) || defined(BSD_OS_FREEBSD) \
    || defined(BSD_OS_OTHERBSD)
#define BSD_OS_IS_BSD 1        /* getpeereid, kqueue */
#endif

/* ---- pollers (the choice is poller.c's) ---- */
#if defined(BSD_OS_LINUX) && !defined(BSD_NO_EPOLL)
#define BSD_HAVE_EPOLL 1
#else
#define BSD_HAVE_EPOLL 0
#endif
#if defined(BSD_OS_IS_BSD) && !defined(BSD_NO_KQUEUE)
#define BSD_HAVE_KQUEUE 1
#else
#define BSD_HAVE_KQUEUE 0
#endif

/* ---- creating descriptors ---- */
/* SOCK_CLOEXEC / SOCK_NONBLOCK in socket() and socketpair()'s type */
#if defined(SOCK_CLOEXEC) && defined(SOCK_NONBLOCK) \
    && !defined(BSD_NO_SOCK_CLOEXEC)
#define BSD_HAVE_SOCK_CLOEXEC 1
#else
#define BSD_HAVE_SOCK_CLOEXEC 0
#endif
#if defined(BSD_OS_HAS_ACCEPT4) && BSD_HAVE_SOCK_CLOEXEC \
    && !defined(BSD_NO_ACCEPT4)
#define BSD_HAVE_ACCEPT4 1
#else
#define BSD_HAVE_ACCEPT4 0
#endif
#if defined(BSD_OS_HAS_ACCEPT4) && !defined(BSD_NO_PIPE2)
#define BSD_HAVE_PIPE2 1
#else
#define BSD_HAVE_PIPE2 0
#endif
/* The flag bits scripts pass in S.socket's type: real where the kernel
** takes them, else bits no platform uses, which socket.c strips and
** applies with fcntl. */
#if BSD_HAVE_SOCK_CLOEXEC
#define BSD_SOCK_NONBLOCK SOCK_NONBLOCK
#define BSD_SOCK_CLOEXEC SOCK_CLOEXEC
#elif defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define BSD_SOCK_NONBLOCK SOCK_NONBLOCK   /* known, but not used */
#define BSD_SOCK_CLOEXEC SOCK_CLOEXEC
#else
#define BSD_SOCK_NONBLOCK 0x20000000
#define BSD_SOCK_CLOEXEC 0x10000000
#endif

/* ---- SIGPIPE ---- */
#if defined(MSG_NOSIGNAL) && !defined(BSD_NO_MSG_NOSIGNAL)
#define BSD_HAVE_MSG_NOSIGNAL 1
#define BSD_MSG_NOSIGNAL MSG_NOSIGNAL
#else
#define BSD_HAVE_MSG_NOSIGNAL 0
#define BSD_MSG_NOSIGNAL 0
#endif
/* set on every socket made or adopted (sendfile takes no flags either) */
#if defined(SO_NOSIGPIPE) && !defined(BSD_NO_SO_NOSIGPIPE)
#define BSD_HAVE_SO_NOSIGPIPE 1
#else
#define BSD_HAVE_SO_NOSIGPIPE 0
#endif
/* neither: each write blocks SIGPIPE in its thread and takes off the one
** it raised (util.c's bsd_pipeguard) */
#define BSD_NEED_PIPEGUARD (!BSD_HAVE_MSG_NOSIGNAL && !BSD_HAVE_SO_NOSIGPIPE)

#if !defined(BSD_OS_APPLE) && !defined(BSD_NO_SIGTIMEDWAIT)
#define BSD_HAVE_SIGTIMEDWAIT 1
#else
#define BSD_HAVE_SIGTIMEDWAIT 0
#endif

/* ---- zero-copy ---- */
/* sendfile's three signatures; none: pread + send through one buffer */
#if defined(BSD_NO_SENDFILE)
#define BSD_HAVE_SENDFILE 0
#elif defined(BSD_OS_LINUX)
#define BSD_HAVE_SENDFILE 1
#define BSD_SENDFILE_LINUX 1
#elif defined(BSD_OS_FREEBSD)
#define BSD_HAVE_SENDFILE 1
#define BSD_SENDFILE_FREEBSD 1
#elif defined(BSD_OS_APPLE)
#define BSD_HAVE_SENDFILE 1
#define BSD_SENDFILE_APPLE 1
#else
#define BSD_HAVE_SENDFILE 0
#endif
#if defined(BSD_OS_LINUX) && BSD_HAVE_PIPE2 && !defined(BSD_NO_SPLICE)
#define BSD_HAVE_SPLICE 1
#else
#define BSD_HAVE_SPLICE 0
#endif

/* ---- messages ---- */
#if (defined(BSD_OS_LINUX) || defined(BSD_OS_FREEBSD)) \
    && defined(MSG_WAITFORONE) && !defined(BSD_NO_MMSG)
#define BSD_HAVE_MMSG 1   /* sendmmsg, recvmmsg, struct mmsghdr */
#else
#define BSD_HAVE_MMSG 0
#endif
#if defined(MSG_CMSG_CLOEXEC) && !defined(BSD_NO_MSG_CMSG_CLOEXEC)
#define BSD_HAVE_MSG_CMSG_CLOEXEC 1
#define BSD_MSG_CMSG_CLOEXEC MSG_CMSG_CLOEXEC
#else
#define BSD_HAVE_MSG_CMSG_CLOEXEC 0
#define BSD_MSG_CMSG_CLOEXEC 0
#endif
/* peer credentials: the first of these the platform has */
#if defined(SO_PEERCRED) && !defined(BSD_NO_SO_PEERCRED)
#define BSD_HAVE_SO_PEERCRED 1
#else
#define BSD_HAVE_SO_PEERCRED 0
#endif
#if defined(LOCAL_PEERCRED) && !defined(BSD_NO_LOCAL_PEERCRED)
#define BSD_HAVE_LOCAL_PEERCRED 1   /* struct xucred, <sys/ucred.h> */
#else
#define BSD_HAVE_LOCAL_PEERCRED 0
#endif
#if defined(BSD_OS_IS_BSD) && !defined(BSD_NO_GETPEEREID)
#define BSD_HAVE_GETPEEREID 1
#else
#define BSD_HAVE_GETPEEREID 0
#endif
#if BSD_HAVE_SO_PEERCRED || BSD_HAVE_LOCAL_PEERCRED || BSD_HAVE_GETPEEREID
#define BSD_HAVE_PEERCRED 1   /* getpeercred has one of them */
#else
#define BSD_HAVE_PEERCRED 0
#endif
/* credentials as ancillary data: Linux's struct ucred, FreeBSD's cmsgcred */
#if defined(SCM_CREDENTIALS) && !defined(BSD_NO_SCM_CREDENTIALS)
#define BSD_HAVE_SCM_CREDENTIALS 1
#else
#define BSD_HAVE_SCM_CREDENTIALS 0
#endif
#if !BSD_HAVE_SCM_CREDENTIALS && defined(BSD_OS_FREEBSD) \
    && defined(SCM_CREDS) && !defined(BSD_NO_SCM_CREDS)
#define BSD_HAVE_SCM_CREDS 1
#else
#define BSD_HAVE_SCM_CREDS 0
#endif

#if BSD_HAVE_SCM_CREDENTIALS || BSD_HAVE_SCM_CREDS
#define BSD_HAVE_CREDMSG 1    /* sendmsg/recvmsg carry credentials */
#else
#define BSD_HAVE_CREDMSG 0
#endif

/* ---- addresses, options ---- */
#if defined(BSD_OS_LINUX) && !defined(BSD_NO_ABSTRACT)
#define BSD_HAVE_ABSTRACT 1   /* Unix names starting with a NUL byte */
#else
#define BSD_HAVE_ABSTRACT 0
#endif
#if defined(SO_DOMAIN) && !defined(BSD_NO_SO_DOMAIN)
#define BSD_HAVE_SO_DOMAIN 1
#else
#define BSD_HAVE_SO_DOMAIN 0
#endif
#if defined(SO_PROTOCOL) && !defined(BSD_NO_SO_PROTOCOL)
#define BSD_HAVE_SO_PROTOCOL 1
#else
#define BSD_HAVE_SO_PROTOCOL 0
#endif
/* struct ip_mreqn: a multicast membership by interface index */
#if defined(BSD_OS_LINUX) && !defined(BSD_NO_IP_MREQN)
#define BSD_HAVE_IP_MREQN 1
#else
#define BSD_HAVE_IP_MREQN 0
#endif

/* ---- libc ---- */
#if !defined(BSD_NO_MEMMEM)
#define BSD_HAVE_MEMMEM 1   /* every platform above; a loop otherwise */
#else
#define BSD_HAVE_MEMMEM 0
#endif
#if !defined(BSD_NO_DLADDR)
#define BSD_HAVE_DLADDR 1   /* glibc, musl, macOS and the BSDs */
#else
#define BSD_HAVE_DLADDR 0
#endif

#endif
