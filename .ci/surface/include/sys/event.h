/*
** make check-macos / check-freebsd: kqueue(2) as macOS and FreeBSD declare
** it in <sys/event.h> (macOS's struct layout; FreeBSD's adds ext[4]), for
** the kqueue poller backend. Compile only.
*/
#ifndef BSD_SURFACE_SYS_EVENT_H
#define BSD_SURFACE_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
  uintptr_t ident;
  int16_t filter;
  uint16_t flags;
  uint32_t fflags;
  intptr_t data;
  void *udata;
};

#define EV_SET(kevp, a, b, c, d, e, f) do { \
    struct kevent *kevp_ = (kevp);           \
    kevp_->ident = (a);                      \
    kevp_->filter = (b);                     \
    kevp_->flags = (c);                      \
    kevp_->fflags = (d);                     \
    kevp_->data = (e);                       \
    kevp_->udata = (f);                      \
  } while (0)

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_TIMER (-7)
#define EVFILT_USER (-10)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_ONESHOT 0x0010
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_DISPATCH 0x0080
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define NOTE_LOWAT 0x0001
#define NOTE_TRIGGER 0x01000000

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout);

#endif
