/*
** The poll(2) backend of poller.h: works anywhere, costs a scan of every
** registration per wait. The registrations are an array of pollfd (what
** poll sees) with slot[fd] its index + 1; a one-shot registration fired
** is disarmed by setting its pollfd's fd to -1. The close watch drops a
** socket's registration before its descriptor is closed, so poll never
** sees a closed one (which would report POLLNVAL at once).
*/
#include "poller.h"

#ifdef BSD_BACKEND_POLL

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

typedef struct pslot {      /* one registration */
  int fd;
  unsigned events;
} pslot;

struct bsd_pollbe {
  bsd_closewatch watch;     /* first: the watch is the backend */
  int nfds, capfds;
  struct pollfd *fds;       /* what poll(2) sees; fd -1 while disarmed */
  pslot *ents;              /* parallel to fds */
  int capslot;
  int *slot;                /* slot[fd]: index in fds + 1, 0 when none */
  int n, capres;
  struct pollfd *res;       /* wait's results: fd and revents */
};

const char bsd_pollbe_name[] = "poll";
const unsigned bsd_pollbe_flags = BSD_POLL_ONESHOT;

static void dropslot(bsd_pollbe *b, int i) {
  int last = --b->nfds;
  b->slot[b->ents[i].fd] = 0;
  if (i != last) {
    b->fds[i] = b->fds[last];
    b->ents[i] = b->ents[last];
    b->slot[b->ents[i].fd] = i + 1;
  }
}

static void onclose(bsd_closewatch *w, int fd) {
  bsd_pollbe *b = (bsd_pollbe *)w;
  if (fd < b->capslot && b->slot[fd] > 0) dropslot(b, b->slot[fd] - 1);
}

int bsd_pollbe_open(lua_State *L, bsd_pollbe **pb) {
  bsd_pollbe *b = (bsd_pollbe *)bsd_pollbe_resize(L, NULL, 0, sizeof *b);
  memset(b, 0, sizeof *b);
  b->watch.fn = onclose;
  *pb = b;
  bsd_watchcloses(L, &b->watch);
  return 0;
}

void bsd_pollbe_close(lua_State *L, bsd_pollbe *b) {
  bsd_unwatchcloses(&b->watch);
  bsd_pollbe_resize(L, b->fds, sizeof(struct pollfd) * (size_t)b->capfds, 0);
  bsd_pollbe_resize(L, b->ents, sizeof(pslot) * (size_t)b->capfds, 0);
  bsd_pollbe_resize(L, b->slot, sizeof(int) * (size_t)b->capslot, 0);
  bsd_pollbe_resize(L, b->res, sizeof(struct pollfd) * (size_t)b->capres, 0);
  bsd_pollbe_resize(L, b, sizeof *b, 0);
}

/* what epoll_ctl says of a descriptor it cannot watch: not open (EBADF),
** or a file, always ready (EPERM) */
static int watchable(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  return S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) ? EPERM : 0;
}

/* a new registration of fd; grows first, so that a memory error leaves
** everything as it was */
static int newslot(lua_State *L, bsd_pollbe *b, int fd) {
  int i;
  if (fd >= b->capslot) {
    int ncap = bsd_pollbe_grow(b->capslot, fd + 1);
    b->slot = (int *)bsd_pollbe_resize(L, b->slot,
                sizeof(int) * (size_t)b->capslot, sizeof(int) * (size_t)ncap);
    memset(b->slot + b->capslot, 0,
           sizeof(int) * (size_t)(ncap - b->capslot));
    b->capslot = ncap;
  }
  if (b->nfds == b->capfds) {
    int ncap = bsd_pollbe_grow(b->capfds, b->nfds + 1);
    pslot *ents;
    b->fds = (struct pollfd *)bsd_pollbe_resize(L, b->fds,
               sizeof(struct pollfd) * (size_t)b->capfds,
               sizeof(struct pollfd) * (size_t)ncap);
    ents = (pslot *)bsd_pollbe_resize(L, NULL, 0, sizeof(pslot) * (size_t)ncap);
    if (b->nfds) memcpy(ents, b->ents, sizeof(pslot) * (size_t)b->nfds);
    bsd_pollbe_resize(L, b->ents, sizeof(pslot) * (size_t)b->capfds, 0);
    b->ents = ents;
    b->capfds = ncap;
  }
  i = b->nfds++;
  b->slot[fd] = i + 1;
  b->ents[i].fd = fd;
  return i;
}

int bsd_pollbe_ctl(lua_State *L, bsd_pollbe *b, int op, int fd,
                   unsigned events) {
  int i = fd < b->capslot ? b->slot[fd] - 1 : -1;
  if (op == BSD_POLL_ADD && i < 0) {
    int err = watchable(fd);
    if (err) return err;
    i = newslot(L, b, fd);
  }
  if (i < 0) return ENOENT;
  if (op == BSD_POLL_DEL) {
    dropslot(b, i);
    return 0;
  }
  b->ents[i].events = events;
  b->fds[i].fd = fd;
  b->fds[i].events = (short)(events & BSD_POLL_WANT);
  b->fds[i].revents = 0;
  return 0;
}

int bsd_pollbe_wait(lua_State *L, bsd_pollbe *b, int ms) {
  int n, i, found = 0;
  if (b->capres < b->nfds) {
    int ncap = bsd_pollbe_grow(b->capres, b->nfds);
    b->res = (struct pollfd *)bsd_pollbe_resize(L, b->res,
               sizeof(struct pollfd) * (size_t)b->capres,
               sizeof(struct pollfd) * (size_t)ncap);
    b->capres = ncap;
  }
  b->n = 0;
  n = poll(b->fds, (nfds_t)b->nfds, ms);
  if (n < 0) return -1;
  for (i = 0; i < b->nfds && found < n; i++) {
    short re = b->fds[i].revents;
    if (re == 0 || b->fds[i].fd < 0) continue;
    found++;
    b->fds[i].revents = 0;
    b->res[b->n].fd = b->ents[i].fd;
    b->res[b->n].revents = (short)(re & (BSD_POLL_REPORT | POLLNVAL));
    b->n++;
    if (re & POLLNVAL) {  /* closed while registered: as epoll, forget it */
      dropslot(b, i);
      i--;                /* the last registration moved here */
      continue;
    }
    if (b->ents[i].events & BSD_POLL_ONESHOT) b->fds[i].fd = -1;
  }
  return b->n;
}

unsigned bsd_pollbe_event(const bsd_pollbe *b, int i, int *fd) {
  *fd = b->res[i].fd;
  return (unsigned short)b->res[i].revents;
}

int bsd_pollbe_fileno(const bsd_pollbe *b) {
  (void)b;
  return -1;
}

int bsd_pollbe_count(const bsd_pollbe *b) {
  return b->nfds;
}

#endif
