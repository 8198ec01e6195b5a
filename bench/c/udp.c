/*
** udp: the C baseline of bench scenario 4 — datagrams per second sending
** 64-byte datagrams with sendto(2) to a prebuilt struct sockaddr_in.
**
**   udp sink                      binds 127.0.0.1 port 0, never reads: once
**                                 its buffer is full the kernel drops what
**                                 arrives, so the sender's rate is its own
**                                 cost (no reader competing for the CPU)
**   udp drain                     the same, but reads everything
**   udp send HOST PORT SECONDS [SIZE]   prints "dps=<datagrams/s>"
**   udp sendmmsg HOST PORT SECONDS [SIZE]   the same in batches of 64 per
**                                 sendmmsg(2): the best C can do (reference)
*/
#include "common.h"

static char buf[65536];

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "sink") == 0) {
    bench_server(SOCK_DGRAM);
    for (;;) pause();
  }
  if (argc >= 2 && strcmp(argv[1], "drain") == 0) {
    int fd = bench_server(SOCK_DGRAM);
    for (;;) recv(fd, buf, sizeof buf, 0);
  }
  if (argc < 5 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "sendmmsg") != 0)) {
    fprintf(stderr, "usage: udp sink | drain | send|sendmmsg HOST PORT SECONDS [SIZE]\n");
    return 1;
  }
  {
    struct sockaddr_in sa = bench_addr(argv[2], argv[3]);
    double secs = atof(argv[4]), t0, el;
    size_t size = argc > 5 ? (size_t)atol(argv[5]) : 64;
    long n = 0;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) bench_die("socket");
    if (size > sizeof buf) return 1;
    memset(buf, 'u', size);
    t0 = bench_now();
    if (strcmp(argv[1], "sendmmsg") == 0) {
      struct mmsghdr m[64];
      struct iovec iov;
      int k;
      iov.iov_base = buf;
      iov.iov_len = size;
      memset(m, 0, sizeof m);
      for (k = 0; k < 64; k++) {
        m[k].msg_hdr.msg_iov = &iov;
        m[k].msg_hdr.msg_iovlen = 1;
        m[k].msg_hdr.msg_name = &sa;
        m[k].msg_hdr.msg_namelen = sizeof sa;
      }
      for (;;) {
        for (k = 0; k < 16; k++) {
          int r = sendmmsg(fd, m, 64, 0);
          if (r < 0 && errno != ENOBUFS) bench_die("sendmmsg");
          if (r > 0) n += r;
        }
        el = bench_now() - t0;
        if (el >= secs) break;
      }
      printf("dps=%.0f\n", n / el);
      return 0;
    }
    for (;;) {
      int k;
      for (k = 0; k < 1024; k++)
        if (sendto(fd, buf, size, 0, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != ENOBUFS)
          bench_die("sendto");
      n += 1024;
      el = bench_now() - t0;
      if (el >= secs) break;
    }
    printf("dps=%.0f\n", n / el);
  }
  return 0;
}
