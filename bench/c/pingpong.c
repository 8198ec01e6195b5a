/*
** pingpong: the C baseline of bench scenarios 2 and 5 — request/response
** over one TCP connection with blocking calls.
**
**   pingpong server               echoes each connection in turn, forever
**   pingpong client HOST PORT SECONDS [SIZE]   round trips for SECONDS:
**                                 prints "rate=<round trips/s> rtt_us=<us>"
**   pingpong count HOST PORT N [SIZE]          exactly N round trips (callgrind)
** SIZE defaults to 64 bytes; every echo is compared with what was sent.
*/
#include "common.h"

#define MAXMSG 65536

static char msg[MAXMSG], back[MAXMSG];

static int roundtrip(int fd, size_t size) {
  size_t got = 0;
  if (send(fd, msg, size, MSG_NOSIGNAL) != (ssize_t)size) return -1;
  while (got < size) {
    ssize_t n = recv(fd, back + got, size - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return memcmp(msg, back, size) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
  size_t size, i;
  int fd;
  if (argc >= 2 && strcmp(argv[1], "server") == 0) {
    int lfd = bench_server(SOCK_STREAM), one = 1;
    for (;;) {
      int c = accept(lfd, NULL, NULL);
      if (c < 0) continue;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      for (;;) {
        ssize_t n = recv(c, back, sizeof back, 0);
        if (n <= 0 || bench_sendall(c, back, (size_t)n) < 0) break;
      }
      close(c);
    }
  }
  if (argc < 5 || (strcmp(argv[1], "client") != 0 && strcmp(argv[1], "count") != 0)) {
    fprintf(stderr, "usage: pingpong server | client HOST PORT SECONDS [SIZE] | count HOST PORT N [SIZE]\n");
    return 1;
  }
  size = argc > 5 ? (size_t)atol(argv[5]) : 64;
  if (size < 1 || size > MAXMSG) return 1;
  for (i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
  fd = bench_connect(argv[2], argv[3]);
  if (argv[1][0] == 'c' && argv[1][1] == 'o') {
    long n = atol(argv[4]), k;
    for (k = 0; k < n; k++)
      if (roundtrip(fd, size) < 0) bench_die("round trip");
  } else {
    double secs = atof(argv[4]), t0 = bench_now(), el;
    long n = 0;
    for (;;) {
      int k;
      for (k = 0; k < 256; k++)
        if (roundtrip(fd, size) < 0) bench_die("round trip");
      n += 256;
      el = bench_now() - t0;
      if (el >= secs) break;
    }
    printf("rate=%.0f rtt_us=%.3f\n", n / el, el / n * 1e6);
  }
  close(fd);
  return 0;
}
