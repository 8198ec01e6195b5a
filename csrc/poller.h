/*
** poller.h: the readiness backends under S.poller() (poller.c) and the
** loop. Exactly one is compiled in, chosen by the build (make BACKEND=...
** passes -DBSD_BACKEND_EPOLL, -DBSD_BACKEND_KQUEUE or -DBSD_BACKEND_POLL),
** else by the platform below:
**
**   poller_epoll.c   epoll(7), Linux
**   poller_kqueue.c  kqueue(2), macOS and the BSDs (libkqueue on Linux)
**   poller_poll.c    poll(2), anywhere
**
** A caller sees no difference but bsd_pollbe_name and bsd_pollbe_flags.
** Events are poll(2) bits both ways. A backend allocates through the Lua
** state's allocator and raises "not enough memory" like Lua itself; every
** other failure is an errno returned. No global state: each backend object
** is its caller's.
**
** Usage (the shape of poller.c's wait and iterator):
**
**   bsd_pollbe *b = NULL;            keep b where a __gc finds it, then
**   err = bsd_pollbe_open(L, &b);    (b may be set even when it fails)
**   err = bsd_pollbe_ctl(L, b, BSD_POLL_ADD, fd, POLLIN | BSD_POLL_ONESHOT);
**   n = bsd_pollbe_wait(L, b, ms);   (-1 and errno: EINTR and others)
**   for (i = 0; i < n; i++) revents = bsd_pollbe_event(b, i, &fd);
**   bsd_pollbe_close(L, b);          (frees b; closes its descriptor)
**
** wait reports each descriptor at most once (read and write merged), and
** only registered ones; results stay valid until the next wait, ctl or
** close of b. A descriptor whose registration outlived a close(2) shows as
** POLLNVAL once and is forgotten (poll only: the others never see it).
*/
#ifndef BSD_POLLER_H
#define BSD_POLLER_H

#include <poll.h>

#include "bsdsocket.h"

#if !defined(BSD_BACKEND_EPOLL) && !defined(BSD_BACKEND_KQUEUE) && \
    !defined(BSD_BACKEND_POLL)
/* the platform's best (platform.h) */
#if BSD_HAVE_EPOLL
#define BSD_BACKEND_EPOLL 1
#elif BSD_HAVE_KQUEUE
#define BSD_BACKEND_KQUEUE 1
#else
#define BSD_BACKEND_POLL 1
#endif
#endif

#if defined(BSD_BACKEND_EPOLL) + defined(BSD_BACKEND_KQUEUE) + \
    defined(BSD_BACKEND_POLL) != 1
#error "define one of BSD_BACKEND_EPOLL, BSD_BACKEND_KQUEUE, BSD_BACKEND_POLL"
#endif

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

/* flags besides the poll bits in ctl's events; on epoll they are EPOLLET
** and EPOLLONESHOT (poller_epoll.c checks), so it passes them through */
#define BSD_POLL_EDGE    (1u << 31)  /* edge-triggered: a report per change */
#define BSD_POLL_ONESHOT (1u << 30)  /* disarmed after a report until a ctl */

/* what ctl takes (besides the flags) and what wait reports (also POLLNVAL
** from the poll backend, see above) */
#define BSD_POLL_WANT   (POLLIN | POLLOUT | POLLPRI | POLLRDHUP)
#define BSD_POLL_REPORT (BSD_POLL_WANT | POLLERR | POLLHUP)

/* ctl's op. ADD replaces the events of a registered descriptor; MOD and
** DEL of an unregistered one fail with ENOENT. ADD of a descriptor that is
** not open fails with EBADF, of a regular file or directory with EPERM
** (never ready to wait for), on every backend. */
enum { BSD_POLL_ADD, BSD_POLL_MOD, BSD_POLL_DEL };

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

typedef struct bsd_pollbe bsd_pollbe;

/* "epoll", "kqueue" or "poll" */
extern const char bsd_pollbe_name[];
/* BSD_POLL_ONESHOT, and BSD_POLL_EDGE where edge-triggering works */
extern const unsigned bsd_pollbe_flags;

/* 0 or an errno; *pb is set as soon as there is something to close */
int bsd_pollbe_open(lua_State *L, bsd_pollbe **pb);
void bsd_pollbe_close(lua_State *L, bsd_pollbe *b);
/* 0 or an errno */
int bsd_pollbe_ctl(lua_State *L, bsd_pollbe *b, int op, int fd,
                   unsigned events);
/* waits at most ms milliseconds (-1: no limit): the number of events, or
** -1 with errno set */
int bsd_pollbe_wait(lua_State *L, bsd_pollbe *b, int ms);
/* event i (0 <= i < what wait returned): its revents, and *fd */
unsigned bsd_pollbe_event(const bsd_pollbe *b, int i, int *fd);
/* the backend's own descriptor, or -1 (poll has none) */
int bsd_pollbe_fileno(const bsd_pollbe *b);
/* descriptors registered (for tostring), or -1 when it does not count */
int bsd_pollbe_count(const bsd_pollbe *b);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

/* memory through the Lua state's allocator: raises when out of it */
static inline void *bsd_pollbe_resize(lua_State *L, void *block,
                                      size_t osize, size_t nsize) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  void *nb = f(ud, block, osize, nsize);
  if (nb == NULL && nsize > 0) luaL_error(L, "not enough memory");
  return nb;
}

/* a capacity of at least need, doubling from cap (at least 16) */
static inline int bsd_pollbe_grow(int cap, int need) {
  if (cap < 16) cap = 16;
  while (cap < need) {
    if (cap > 0x3FFFFFFF) return 0x7FFFFFFF;
    cap *= 2;
  }
  return cap;
}

#endif
