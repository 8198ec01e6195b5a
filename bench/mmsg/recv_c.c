/*
** The C baseline of the recvmmsg benchmark: a UDP socket on loopback is
** filled with BATCH datagrams of SIZE bytes (sendmmsg, not timed), then
** drained (timed) with one plain recv(2) per datagram ("recv"), or with
** recvmmsg batches of 32 and their addresses ("mmsg", for reference);
** ROUNDS times. Prints: datagrams/second of the drain.
** Usage: recv_c recv|mmsg ROUNDS BATCH SIZE
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* recvmmsg in batches of 32 until n datagrams arrived, as the Lua side does */
static int drain_mmsg(int fd, int n) {
  static struct mmsghdr mm[32];
  static struct iovec io[32];
  static struct sockaddr_storage from[32];
  static char bufs[32][2048];
  int got = 0, j;
  while (got < n) {
    int r;
    for (j = 0; j < 32; j++) {
      io[j].iov_base = bufs[j];
      io[j].iov_len = sizeof bufs[j];
      memset(&mm[j], 0, sizeof mm[j]);
      mm[j].msg_hdr.msg_iov = &io[j];
      mm[j].msg_hdr.msg_iovlen = 1;
      mm[j].msg_hdr.msg_name = &from[j];
      mm[j].msg_hdr.msg_namelen = sizeof from[j];
    }
    r = recvmmsg(fd, mm, 32, MSG_WAITFORONE, NULL);
    if (r <= 0) return -1;
    got += r;
  }
  return 0;
}

int main(int argc, char **argv) {
  int mmsg = argc > 1 && strcmp(argv[1], "mmsg") == 0;
  int rounds = argc > 2 ? atoi(argv[2]) : 2000;
  int batch = argc > 3 ? atoi(argv[3]) : 256;
  int size = argc > 4 ? atoi(argv[4]) : 64;
  int r = socket(AF_INET, SOCK_DGRAM, 0), s = socket(AF_INET, SOCK_DGRAM, 0);
  int rcvbuf = 8 << 20, i, k;
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  char *payload = calloc(1, (size_t)size), buf[2048];
  struct mmsghdr *m = calloc((size_t)batch, sizeof *m);
  struct iovec iov = { payload, (size_t)size };
  double t = 0;
  if (r < 0 || s < 0 || !payload || !m || batch < 1 || size < 1 || size > 2048) return 1;
  setsockopt(r, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  setsockopt(r, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);  /* as root */
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(r, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(r, (struct sockaddr *)&a, &alen) < 0)
    return 1;
  for (k = 0; k < batch; k++) {
    m[k].msg_hdr.msg_iov = &iov;
    m[k].msg_hdr.msg_iovlen = 1;
    m[k].msg_hdr.msg_name = &a;
    m[k].msg_hdr.msg_namelen = sizeof a;
  }
  for (i = 0; i < rounds; i++) {
    double t0;
    int sent = 0;
    while (sent < batch) {
      int n = sendmmsg(s, m + sent, (unsigned)(batch - sent), 0);
      if (n <= 0) return 1;
      sent += n;
    }
    t0 = now();
    if (mmsg) {
      if (drain_mmsg(r, batch) < 0) return 2;
    }
    else for (k = 0; k < batch; k++)
      if (recv(r, buf, sizeof buf, 0) != size) return 2;
    t += now() - t0;
  }
  printf("%.0f\n", (double)rounds * batch / t);
  free(payload);
  free(m);
  close(r);
  close(s);
  return 0;
}
