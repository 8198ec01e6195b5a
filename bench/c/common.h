/* Helpers shared by the C baselines of the benchmarks (header-only). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_die(const char *what) {
  perror(what);
  exit(1);
}

static inline struct sockaddr_in bench_addr(const char *host, const char *port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "%s: not a numeric IPv4 address\n", host);
    exit(1);
  }
  sa.sin_port = htons((unsigned short)atoi(port));
  return sa;
}

/* a socket bound to 127.0.0.1 port 0; prints "listening on 127.0.0.1:PORT" */
static inline int bench_server(int type) {
  struct sockaddr_in sa = bench_addr("127.0.0.1", "0");
  socklen_t len = sizeof sa;
  int one = 1, fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) bench_die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) bench_die("bind");
  if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0) bench_die("listen");
  if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) bench_die("getsockname");
  printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
  fflush(stdout);
  return fd;
}

static inline int bench_connect(const char *host, const char *port) {
  struct sockaddr_in sa = bench_addr(host, port);
  int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) bench_die("socket");
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) bench_die("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static inline int bench_sendall(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

#endif
