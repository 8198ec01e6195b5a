/*
** loadgen: an epoll load generator for echo servers (bench scenario 1).
**
**   loadgen HOST PORT CONNS IDLE SECONDS MSGSIZE [SERVER_PID]
**
** Opens IDLE connections first, each doing one checked round trip (so the
** server has really accepted it) and then staying silent for the rest of
** the run; then CONNS active connections, each with exactly one MSGSIZE-byte
** request in flight: send, wait for the whole echo, check every byte, send
** the next. After a short warm-up it counts completed requests for SECONDS.
** Prints one line:  rps=<requests/s> srv_us=<server CPU us/request or -1>
**                   gen_cpu=<this process's CPU share of the timed phase>
**                   srv_user_us=<its user-space part> srv_sys_us=<its kernel part>
** Any failure (refused, reset, wrong byte, no progress for 5 s, a set-up
** phase over 60 s) prints a reason on stderr and exits 1.
*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXMSG 4096
#define BATCH 250

typedef struct conn {
  int fd;
  unsigned seq;      /* request number, part of the payload */
  size_t got;        /* bytes of the echo received so far */
  unsigned char want[MAXMSG];
} conn;

static struct sockaddr_in peer;
static size_t msgsize;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

static void fail(const char *what) {
  fprintf(stderr, "loadgen: %s\n", what);
  exit(1);
}

/* CPU ticks (utime + stime) of a process, or -1; its user part in *user */
static long long proc_ticks(long pid, long long *user) {
  char path[64], buf[1024], *p;
  unsigned long ut, st;
  FILE *f;
  size_t n;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  f = fopen(path, "r");
  if (!f) return -1;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  p = strrchr(buf, ')');  /* the command name may hold spaces */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  *user = (long long)ut;
  return (long long)(ut + st);
}

static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int open_conn(void) {
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&peer, sizeof peer) < 0 && errno != EINPROGRESS)
    die("connect");
  return fd;
}

static void fill(conn *c, unsigned id) {
  size_t i;
  unsigned x = id * 2654435761u + c->seq * 40503u + 1;
  for (i = 0; i < msgsize; i++) {
    x = x * 1103515245u + 12345u;
    c->want[i] = (unsigned char)(x >> 16);
  }
}

/* sends the next request of c; 0 when the socket is not writable yet */
static int send_req(conn *c, unsigned id) {
  ssize_t n;
  fill(c, id);
  c->got = 0;
  n = send(c->fd, c->want, msgsize, MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == ENOTCONN)) return 0;
  if (n < 0) die("send");
  if ((size_t)n != msgsize) fail("short send of a small request");
  return 1;
}

/* reads what is there of c's echo; 1 once the whole echo came and matched */
static int recv_echo(conn *c) {
  unsigned char buf[MAXMSG];
  ssize_t n = recv(c->fd, buf, msgsize - c->got, 0);
  if (n == 0) fail("the server closed a connection");
  if (n < 0) {
    if (errno == EAGAIN) return 0;
    die("recv");
  }
  if (memcmp(buf, c->want + c->got, (size_t)n) != 0) fail("an echoed byte differs from the request");
  c->got += (size_t)n;
  if (c->got < msgsize) return 0;
  c->seq++;
  return 1;
}

/* Opens n connections and does one checked round trip on each (batches of
** BATCH), so the server has accepted and served them all. */
static void open_batch(conn *cs, unsigned base, int n, int ep, double deadline) {
  struct epoll_event ev, evs[BATCH];
  int i, pending = n;
  for (i = 0; i < n; i++) {
    cs[i].fd = open_conn();
    cs[i].seq = 0;
    cs[i].got = 0;
    ev.events = EPOLLOUT | EPOLLIN;
    ev.data.u32 = (unsigned)i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) die("epoll_ctl");
  }
  while (pending > 0) {
    int k, r;
    if (now() > deadline) fail("set-up of the connections took over 60 s");
    r = epoll_wait(ep, evs, BATCH, 1000);
    if (r < 0 && errno != EINTR) die("epoll_wait");
    for (k = 0; k < r; k++) {
      conn *c = &cs[evs[k].data.u32];
      if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        die("connection set-up");
      }
      if (evs[k].events & EPOLLOUT) {
        ev.events = EPOLLIN;
        ev.data.u32 = evs[k].data.u32;
        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
        if (!send_req(c, base + evs[k].data.u32)) fail("connected socket not writable");
      } else if (evs[k].events & EPOLLIN) {
        if (recv_echo(c)) {
          pending--;
          if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) die("epoll_ctl");
        }
      }
    }
  }
}

int main(int argc, char **argv) {
  int nconn, nidle, i, ep;
  double secs, t0, t1, deadline, cpu0 = 0, cpu1, last;
  long spid = 0;
  long long tick0 = -1, tick1 = -1, user0 = 0, user1 = 0, done = 0;
  conn *active, *idle;
  struct rlimit rl;
  struct epoll_event ev, evs[1024];

  if (argc < 7) fail("usage: loadgen HOST PORT CONNS IDLE SECONDS MSGSIZE [SERVER_PID]");
  memset(&peer, 0, sizeof peer);
  peer.sin_family = AF_INET;
  if (inet_pton(AF_INET, argv[1], &peer.sin_addr) != 1) fail("HOST must be a numeric IPv4 address");
  peer.sin_port = htons((unsigned short)atoi(argv[2]));
  nconn = atoi(argv[3]);
  nidle = atoi(argv[4]);
  secs = atof(argv[5]);
  msgsize = (size_t)atol(argv[6]);
  if (argc > 7) spid = atol(argv[7]);
  if (nconn < 1 || nidle < 0 || secs <= 0 || msgsize < 1 || msgsize > MAXMSG) fail("bad arguments");

  /* room for every connection: the soft limit up to the hard one */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(nconn + nidle + 16))
    fail("RLIMIT_NOFILE too low for that many connections");

  active = calloc((size_t)nconn, sizeof *active);
  idle = calloc((size_t)(nidle ? nidle : 1), sizeof *idle);
  if (!active || !idle) die("calloc");
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");

  deadline = now() + 60;
  for (i = 0; i < nidle; i += BATCH) {
    int n = nidle - i < BATCH ? nidle - i : BATCH;
    open_batch(idle + i, 1000000u + (unsigned)i, n, ep, deadline);
  }
  for (i = 0; i < nconn; i += BATCH) {
    int n = nconn - i < BATCH ? nconn - i : BATCH;
    open_batch(active + i, (unsigned)i, n, ep, deadline);
  }

  /* the timed phase: every active connection in the set, one request each */
  for (i = 0; i < nconn; i++) {
    ev.events = EPOLLIN;
    ev.data.u32 = (unsigned)i;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, active[i].fd, &ev) < 0) die("epoll_ctl");
    if (!send_req(&active[i], (unsigned)i)) fail("active socket not writable");
  }
  t0 = now();
  t1 = t0 + (secs < 1 ? 0.3 * secs : 0.3);  /* warm-up, then count */
  deadline = -1;                            /* set when counting starts */
  last = t0;
  for (;;) {
    int r, k;
    double t = now();
    if (deadline < 0 && t >= t1) {
      t1 = t;
      cpu0 = self_cpu();
      tick0 = spid ? proc_ticks(spid, &user0) : -1;
      done = 0;
      deadline = t1 + secs;
    }
    if (deadline >= 0 && t >= deadline) break;
    if (t - last > 5) fail("no echo for 5 s");
    r = epoll_wait(ep, evs, 1024, 1000);
    if (r < 0 && errno != EINTR) die("epoll_wait");
    if (r > 0) last = t;
    for (k = 0; k < r; k++) {
      unsigned id = evs[k].data.u32;
      conn *c = &active[id];
      if (recv_echo(c)) {
        done++;
        if (!send_req(c, id)) fail("active socket not writable");
      }
    }
  }
  {
    double el = now() - t1;
    double srv = -1, srv_user = -1, per = 0;
    cpu1 = self_cpu();
    tick1 = tick0 >= 0 ? proc_ticks(spid, &user1) : -1;
    if (tick1 >= tick0 && tick0 >= 0 && done > 0) {
      per = 1e6 / (double)sysconf(_SC_CLK_TCK) / (double)done;
      srv = (double)(tick1 - tick0) * per;
      srv_user = (double)(user1 - user0) * per;
    }
    printf("rps=%.0f srv_us=%.2f gen_cpu=%.2f srv_user_us=%.2f srv_sys_us=%.2f\n",
           (double)done / el, srv, (cpu1 - cpu0) / el, srv_user,
           srv >= 0 ? srv - srv_user : -1);
  }
  return 0;
}
