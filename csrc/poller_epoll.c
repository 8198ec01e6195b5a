/*
** The epoll(7) backend of poller.h (Linux). epoll's bits are poll's bits
** and its EPOLLET/EPOLLONESHOT are BSD_POLL_EDGE/BSD_POLL_ONESHOT, so the
** events pass through untranslated; the kernel forgets a descriptor when
** its last reference is closed.
*/
#include "poller.h"

#ifdef BSD_BACKEND_EPOLL

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>

typedef char bsd_epoll_bits_are_poll_bits[
  (EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLPRI == POLLPRI &&
   EPOLLERR == POLLERR && EPOLLHUP == POLLHUP &&
   (POLLRDHUP == 0 || EPOLLRDHUP == POLLRDHUP) &&
   (unsigned)EPOLLET == BSD_POLL_EDGE &&
   (unsigned)EPOLLONESHOT == BSD_POLL_ONESHOT) ? 1 : -1];

#define MIN_EVENTS 64
#define MAX_EVENTS 4096   /* events taken per epoll_wait */

struct bsd_pollbe {
  int epfd;
  int cap;
  int grow;                 /* the last wait filled the buffer */
  struct epoll_event *ev;   /* wait's results */
};

const char bsd_pollbe_name[] = "epoll";
const unsigned bsd_pollbe_flags = BSD_POLL_EDGE | BSD_POLL_ONESHOT;

int bsd_pollbe_open(lua_State *L, bsd_pollbe **pb) {
  bsd_pollbe *b = (bsd_pollbe *)bsd_pollbe_resize(L, NULL, 0, sizeof *b);
  memset(b, 0, sizeof *b);
  b->epfd = -1;
  *pb = b;
  b->ev = (struct epoll_event *)bsd_pollbe_resize(L, NULL, 0,
            sizeof(struct epoll_event) * MIN_EVENTS);
  b->cap = MIN_EVENTS;
  b->epfd = epoll_create1(EPOLL_CLOEXEC);
  return b->epfd < 0 ? errno : 0;
}

void bsd_pollbe_close(lua_State *L, bsd_pollbe *b) {
  if (b->epfd >= 0) close(b->epfd);
  bsd_pollbe_resize(L, b->ev, sizeof(struct epoll_event) * (size_t)b->cap,
                    0);
  bsd_pollbe_resize(L, b, sizeof *b, 0);
}

int bsd_pollbe_ctl(lua_State *L, bsd_pollbe *b, int op, int fd,
                   unsigned events) {
  struct epoll_event e;
  (void)L;
  memset(&e, 0, sizeof e);
  e.events = events;
  e.data.fd = fd;
  if (op == BSD_POLL_ADD) {
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &e) == 0) return 0;
    if (errno != EEXIST) return errno;
    op = BSD_POLL_MOD;
  }
  if (op == BSD_POLL_MOD)
    return epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &e) == 0 ? 0 : errno;
  return epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, &e) == 0 ? 0 : errno;
}

int bsd_pollbe_wait(lua_State *L, bsd_pollbe *b, int ms) {
  int n;
  if (b->grow && b->cap < MAX_EVENTS) {
    int ncap = b->cap * 2;
    b->ev = (struct epoll_event *)bsd_pollbe_resize(L, b->ev,
              sizeof(struct epoll_event) * (size_t)b->cap,
              sizeof(struct epoll_event) * (size_t)ncap);
    b->cap = ncap;
  }
  n = epoll_wait(b->epfd, b->ev, b->cap, ms);
  if (n >= 0) b->grow = n == b->cap;
  return n;
}

unsigned bsd_pollbe_event(const bsd_pollbe *b, int i, int *fd) {
  *fd = b->ev[i].data.fd;
  return b->ev[i].events & BSD_POLL_REPORT;
}

int bsd_pollbe_fileno(const bsd_pollbe *b) {
  return b->epfd;
}

int bsd_pollbe_count(const bsd_pollbe *b) {
  (void)b;
  return -1;
}

#endif
