/*
** echo_server: the C baseline of bench scenario 1 — a single-threaded epoll
** echo server, written the way a careful C programmer would: non-blocking
** sockets, level-triggered epoll, accept4 until EAGAIN, read up to 64 KiB
** and write it straight back (a short write waits for EPOLLOUT).
**
**   echo_server [HOST]      prints "listening on HOST:PORT", serves forever
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSIZE 65536

typedef struct pending {  /* bytes a short write left behind, per fd */
  char *data;
  size_t len;
} pending;

static pending *pend;
static size_t npend;
static char buf[BUFSIZE];

static void die(const char *what) {
  perror(what);
  exit(1);
}

static pending *pending_of(int fd) {
  if ((size_t)fd >= npend) {
    size_t n = npend ? npend : 1024, i;
    while (n <= (size_t)fd) n *= 2;
    pend = realloc(pend, n * sizeof *pend);
    if (!pend) die("realloc");
    for (i = npend; i < n; i++) pend[i].data = NULL, pend[i].len = 0;
    npend = n;
  }
  return &pend[fd];
}

static void drop(int ep, int fd) {
  pending *p = pending_of(fd);
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(p->data);
  p->data = NULL;
  p->len = 0;
}

/* writes data; keeps what did not fit and waits for EPOLLOUT. -1: drop fd */
static int put(int ep, int fd, const char *data, size_t len) {
  pending *p = pending_of(fd);
  struct epoll_event ev;
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return -1;
      break;
    }
    data += n;
    len -= (size_t)n;
  }
  if (len == 0) return 0;
  p->data = malloc(len);
  if (!p->data) return -1;
  memcpy(p->data, data, len);
  p->len = len;
  ev.events = EPOLLOUT;
  ev.data.fd = fd;
  return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "127.0.0.1";
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  struct epoll_event ev, evs[1024];
  int one = 1, lfd, ep;

  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "echo_server: HOST must be a numeric IPv4 address\n");
    return 1;
  }
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(lfd, SOMAXCONN) < 0) die("listen");
  if (getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) die("getsockname");
  printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
  fflush(stdout);

  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");

  for (;;) {
    int n = epoll_wait(ep, evs, 1024, -1), i;
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EMFILE && errno != ENFILE) die("accept4");
            break;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ev.events = EPOLLIN;
          ev.data.fd = c;
          if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) die("epoll_ctl");
        }
      } else if (evs[i].events & EPOLLOUT) {
        pending *p = pending_of(fd);
        char *data = p->data;
        size_t plen = p->len;
        p->data = NULL;
        p->len = 0;
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0 || put(ep, fd, data, plen) < 0) drop(ep, fd);
        free(data);
      } else {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
          if (put(ep, fd, buf, (size_t)r) < 0) drop(ep, fd);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          drop(ep, fd);
        }
      }
    }
  }
}
