/*
** The kqueue(2) backend of poller.h: macOS and the BSDs, and Linux through
** libkqueue (make BACKEND=kqueue). A descriptor is one or two filters:
** EVFILT_READ for POLLIN/POLLPRI/POLLRDHUP, EVFILT_WRITE for POLLOUT. Per
** descriptor, reg[fd] keeps what was asked (so a change knows which filter
** to add or delete) and merges the two filters' events of one wait into
** one report, as epoll and poll give. One-shot is EV_DISPATCH on each
** filter; the first report disarms the whole descriptor, as EPOLLONESHOT
** does (a later report of the other filter is dropped). No edge-triggered
** mode: EV_CLEAR would never report data left behind a short read.
**
** Registrations are deleted before a socket's descriptor is closed (the
** close watch): a BSD kernel forgets them at close, libkqueue does not.
*/
#include "poller.h"

#ifdef BSD_BACKEND_KQUEUE

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/event.h>
#include <sys/stat.h>

#define MIN_EVENTS 64
#define MAX_EVENTS 4096   /* events taken per kevent */

/* reg[fd].events: the events of the last ctl, and these two */
#define REGISTERED (1u << 29)
#define DISARMED   (1u << 28)   /* one-shot, reported since the last ctl */
#define READBITS   (POLLIN | POLLPRI | POLLRDHUP)

typedef struct kreg {
  unsigned events;
  unsigned stamp;           /* the wait that reported it last */
  int at;                   /* ... at this index of res */
} kreg;

typedef struct kres {
  int fd;
  unsigned revents;
} kres;

struct bsd_pollbe {
  bsd_closewatch watch;     /* first: the watch is the backend */
  int kq;
  int cap, grow;            /* the last wait filled the buffer */
  int n;
  unsigned stamp;
  struct kevent *ev;        /* kevent's results, cap of them */
  kres *res;                /* wait's results, merged by descriptor */
  int capreg;
  kreg *reg;                /* by descriptor */
};

const char bsd_pollbe_name[] = "kqueue";
const unsigned bsd_pollbe_flags = BSD_POLL_ONESHOT;

/* the changes from events old to new of fd into ch (at most 4). A filter
** to re-arm (one-shot fired, or one-shot switched) is deleted and added
** again: EV_ADD evaluates the level on every kqueue, and libkqueue refuses
** an EV_ADD or EV_ENABLE|EV_RECEIPT of a socket's existing filter. So is
** every filter of an add (fresh): the number may have been closed and
** reused behind the poller's back (a BSD kernel then forgot the filters,
** libkqueue kept them on the closed one). A modify of a filter already
** armed as asked costs nothing. */
static int changes(struct kevent *ch, int fd, unsigned old, unsigned new,
                   int fresh) {
  static const struct { short filter; unsigned bits; } f[] = {
    {EVFILT_READ, READBITS}, {EVFILT_WRITE, POLLOUT}
  };
  unsigned short dispatch = (new & BSD_POLL_ONESHOT) ? EV_DISPATCH : 0;
  int rearm = fresh || ((old ^ new) & BSD_POLL_ONESHOT) || (old & DISARMED);
  int i, n = 0;
  for (i = 0; i < 2; i++) {
    int had = (old & f[i].bits) != 0, wants = (new & f[i].bits) != 0;
    if (had && (!wants || rearm))
      EV_SET(&ch[n++], fd, f[i].filter, EV_DELETE, 0, 0, NULL);
    if (wants && (!had || rearm))
      EV_SET(&ch[n++], fd, f[i].filter, EV_ADD | dispatch, 0, 0, NULL);
  }
  return n;
}

/* applies n changes: 0 or the first errno. A delete that finds nothing
** is no error (a BSD kernel forgot the filter when the descriptor was
** closed through another number). */
static int apply(bsd_pollbe *b, struct kevent *ch, int n) {
  static const struct timespec zero = {0, 0};
  int i, err = 0;
#ifdef EV_RECEIPT
  struct kevent out[4];
  int got;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) ch[i].flags |= EV_RECEIPT;
  got = kevent(b->kq, ch, n, out, n, &zero);  /* one receipt per change */
  if (got < 0) return errno;
  for (i = 0; i < got && i < n && !err; i++) {
    int e = (out[i].flags & EV_ERROR) ? (int)out[i].data : 0;
    if (e && !(e == ENOENT && (ch[i].flags & EV_DELETE))) err = e;
  }
#else
  for (i = 0; i < n && !err; i++)
    if (kevent(b->kq, &ch[i], 1, NULL, 0, &zero) < 0 &&
        !(errno == ENOENT && (ch[i].flags & EV_DELETE)))
      err = errno;
#endif
  return err;
}

/* deletes both filters, whatever is left of them */
static void forget(bsd_pollbe *b, int fd) {
  struct kevent ch[4];
  apply(b, ch, changes(ch, fd, READBITS | POLLOUT, 0, 0));
  b->reg[fd].events = 0;
}

static void onclose(bsd_closewatch *w, int fd) {
  bsd_pollbe *b = (bsd_pollbe *)w;
  if (fd < b->capreg && (b->reg[fd].events & REGISTERED)) forget(b, fd);
}

int bsd_pollbe_open(lua_State *L, bsd_pollbe **pb) {
  bsd_pollbe *b = (bsd_pollbe *)bsd_pollbe_resize(L, NULL, 0, sizeof *b);
  memset(b, 0, sizeof *b);
  b->kq = -1;
  b->watch.fn = onclose;
  *pb = b;
  b->ev = (struct kevent *)bsd_pollbe_resize(L, NULL, 0,
            sizeof(struct kevent) * MIN_EVENTS);
  b->res = (kres *)bsd_pollbe_resize(L, NULL, 0, sizeof(kres) * MIN_EVENTS);
  b->cap = MIN_EVENTS;
  bsd_watchcloses(L, &b->watch);
  b->kq = kqueue();
  if (b->kq < 0) return errno;
  /* a child does not inherit it across fork; nor across exec */
  if (fcntl(b->kq, F_SETFD, FD_CLOEXEC) < 0) return errno;
  return 0;
}

void bsd_pollbe_close(lua_State *L, bsd_pollbe *b) {
  bsd_unwatchcloses(&b->watch);
  if (b->kq >= 0) close(b->kq);
  bsd_pollbe_resize(L, b->ev, sizeof(struct kevent) * (size_t)b->cap, 0);
  bsd_pollbe_resize(L, b->res, sizeof(kres) * (size_t)b->cap, 0);
  bsd_pollbe_resize(L, b->reg, sizeof(kreg) * (size_t)b->capreg, 0);
  bsd_pollbe_resize(L, b, sizeof *b, 0);
}

/* what epoll_ctl says of a descriptor it cannot watch: not open (EBADF),
** or a file, always ready and never at its end for kqueue (EPERM) */
static int watchable(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ? EPERM : 0;
}

static void growreg(lua_State *L, bsd_pollbe *b, int fd) {
  int ncap = bsd_pollbe_grow(b->capreg, fd + 1);
  b->reg = (kreg *)bsd_pollbe_resize(L, b->reg,
             sizeof(kreg) * (size_t)b->capreg, sizeof(kreg) * (size_t)ncap);
  memset(b->reg + b->capreg, 0, sizeof(kreg) * (size_t)(ncap - b->capreg));
  b->capreg = ncap;
}

int bsd_pollbe_ctl(lua_State *L, bsd_pollbe *b, int op, int fd,
                   unsigned events) {
  struct kevent ch[4];
  unsigned old;
  int n, err;
  if (fd >= b->capreg || !(b->reg[fd].events & REGISTERED)) {
    if (op != BSD_POLL_ADD) return ENOENT;
    if ((err = watchable(fd)) != 0) return err;
    if (fd >= b->capreg) growreg(L, b, fd);
    b->reg[fd].events = 0;
  }
  old = b->reg[fd].events;
  if (op == BSD_POLL_DEL) events = 0;
  events &= BSD_POLL_WANT | BSD_POLL_ONESHOT;
  n = changes(ch, fd, old, events, op == BSD_POLL_ADD);
  err = apply(b, ch, n);
  if (err == EBADF && !(old & REGISTERED)) {
    /* libkqueue kept a filter of a number closed behind our back */
    forget(b, fd);
    err = apply(b, ch, changes(ch, fd, 0, events, 1));
  }
  if (err) {
    forget(b, fd);
    return err;
  }
  b->reg[fd].events = op == BSD_POLL_DEL ? 0 : events | REGISTERED;
  return 0;
}

/* one filter's report as poll bits; fflags holds a socket's error */
static unsigned pollbits(const struct kevent *e, unsigned want) {
  unsigned bits;
  if (e->flags & EV_ERROR) return POLLERR;
  if (e->filter == EVFILT_WRITE) {
    bits = POLLOUT;
    if (e->flags & EV_EOF) bits |= POLLHUP;
  }
  else {
    bits = POLLIN;
    if (e->flags & EV_EOF) bits |= want & POLLRDHUP;
  }
  if ((e->flags & EV_EOF) && e->fflags) bits |= POLLERR;
  return bits;
}

static void growevents(lua_State *L, bsd_pollbe *b) {
  int ncap = b->cap * 2;
  b->ev = (struct kevent *)bsd_pollbe_resize(L, b->ev,
            sizeof(struct kevent) * (size_t)b->cap,
            sizeof(struct kevent) * (size_t)ncap);
  b->res = (kres *)bsd_pollbe_resize(L, b->res,
             sizeof(kres) * (size_t)b->cap, sizeof(kres) * (size_t)ncap);
  b->cap = ncap;
}

int bsd_pollbe_wait(lua_State *L, bsd_pollbe *b, int ms) {
  struct timespec ts;
  int n, i;
  if (b->grow && b->cap < MAX_EVENTS) growevents(L, b);
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  b->n = 0;
  n = kevent(b->kq, NULL, 0, b->ev, b->cap, ms < 0 ? NULL : &ts);
  if (n < 0) return -1;
  b->grow = n == b->cap;
  if (++b->stamp == 0) {  /* wrapped: no stamp may look like this wait's */
    for (i = 0; i < b->capreg; i++) b->reg[i].stamp = 0;
    b->stamp = 1;
  }
  for (i = 0; i < n; i++) {
    const struct kevent *e = &b->ev[i];
    int fd = (int)e->ident;
    kreg *r;
    if (fd < 0 || fd >= b->capreg) continue;
    r = &b->reg[fd];
    if (!(r->events & REGISTERED)) continue;
    if (r->stamp == b->stamp) {  /* the other filter of the same one */
      b->res[r->at].revents |= pollbits(e, r->events);
      continue;
    }
    if (r->events & DISARMED) continue;
    if (r->events & BSD_POLL_ONESHOT) r->events |= DISARMED;
    r->stamp = b->stamp;
    r->at = b->n;
    b->res[b->n].fd = fd;
    b->res[b->n].revents = pollbits(e, r->events);
    b->n++;
  }
  return b->n;
}

unsigned bsd_pollbe_event(const bsd_pollbe *b, int i, int *fd) {
  *fd = b->res[i].fd;
  return b->res[i].revents;
}

int bsd_pollbe_fileno(const bsd_pollbe *b) {
  return b->kq;
}

int bsd_pollbe_count(const bsd_pollbe *b) {
  (void)b;
  return -1;
}

#endif
