/*
** bulk: the C baseline of bench scenario 3 — one TCP connection carrying
** TOTAL bytes in 64 KiB chunks.
**
**   bulk sink                 server: per connection, reads until EOF, closes
**   bulk source TOTAL         server: per connection, sends TOTAL bytes, closes
**   bulk send HOST PORT TOTAL client: sends TOTAL bytes, shuts down its write
**                             side, waits for the sink to close (so every byte
**                             arrived); prints "mbps=<MiB/s>"
**   bulk recv HOST PORT TOTAL client: reads until EOF, checks the count;
**                             prints "mbps=<MiB/s>"
*/
#include "common.h"

#define CHUNK 65536

static char buf[CHUNK];

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "sink") == 0 || strcmp(mode, "source") == 0) {
    long long total = argc > 2 ? atoll(argv[2]) : 0;
    int lfd = bench_server(SOCK_STREAM);
    memset(buf, 'x', sizeof buf);
    for (;;) {
      int c = accept(lfd, NULL, NULL);
      if (c < 0) continue;
      if (mode[1] == 'i') {
        while (recv(c, buf, sizeof buf, 0) > 0) {}
      } else {
        long long left = total;
        while (left > 0) {
          size_t n = left < CHUNK ? (size_t)left : CHUNK;
          if (bench_sendall(c, buf, n) < 0) break;
          left -= (long long)n;
        }
      }
      close(c);
    }
  }
  if (argc < 5 || (strcmp(mode, "send") != 0 && strcmp(mode, "recv") != 0)) {
    fprintf(stderr, "usage: bulk sink | source TOTAL | send HOST PORT TOTAL | recv HOST PORT TOTAL\n");
    return 1;
  }
  {
    long long total = atoll(argv[4]), done = 0;
    double t0 = bench_now(), el;
    int fd = bench_connect(argv[2], argv[3]);
    memset(buf, 'x', sizeof buf);
    if (mode[0] == 's') {
      while (done < total) {
        size_t n = total - done < CHUNK ? (size_t)(total - done) : CHUNK;
        if (bench_sendall(fd, buf, n) < 0) bench_die("send");
        done += (long long)n;
      }
      shutdown(fd, SHUT_WR);
      if (recv(fd, buf, sizeof buf, 0) != 0) bench_die("waiting for the sink to close");
    } else {
      for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) bench_die("recv");
        if (n == 0) break;
        done += n;
      }
      if (done != total) {
        fprintf(stderr, "bulk: received %lld bytes, expected %lld\n", done, total);
        return 1;
      }
    }
    el = bench_now() - t0;
    close(fd);
    printf("mbps=%.1f\n", (double)total / 1048576.0 / el);
  }
  return 0;
}
