/* The C OpenSSL baseline of the TLS benchmarks (bench/tls/run.sh), and the
** servers every client is measured against.
**
**   tls_c server CERT KEY sink|source:MB|hs   binds 127.0.0.1:0, prints
**       "port N", serves connections one after another: sink reads to the
**       end, source sends MB MiB in 64 KiB writes, hs only handshakes
**   tls_c client CAFILE PORT send:MB|recv|hs:N  the client side; prints
**       "MBps X" or "hsps X"
** TLS 1.3, the default ciphersuites, the peer verified against CAFILE and
** the name "localhost" (what bsdsocket.tls does by default). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CHUNK 65536

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stderr, "tls_c: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static void serve(SSL_CTX *ctx, const char *kind) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
  static char buf[CHUNK];
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 128) < 0) die("bind");
  getsockname(ls, (struct sockaddr *)&a, &len);
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  memset(buf, 'x', sizeof buf);
  for (;;) {
    int fd = accept(ls, NULL, NULL);
    SSL *ssl;
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      if (strcmp(kind, "sink") == 0) {
        while (SSL_read(ssl, buf, sizeof buf) > 0) {}
      }
      else if (strncmp(kind, "source:", 7) == 0) {
        long long left = atoll(kind + 7) << 20;
        while (left > 0) {
          int n = SSL_write(ssl, buf, left < CHUNK ? (int)left : CHUNK);
          if (n <= 0) break;
          left -= n;
        }
      }
      SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
  }
}

static SSL *dial(SSL_CTX *ctx, int port) {
  struct sockaddr_in a;
  int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
  SSL *ssl;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  SSL_set1_host(ssl, "localhost");
  if (SSL_connect(ssl) != 1) die("handshake");
  return ssl;
}

static void hangup(SSL *ssl) {
  int fd = SSL_get_fd(ssl);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
}

static void client(SSL_CTX *ctx, int port, const char *kind) {
  static char buf[CHUNK];
  double t0 = now();
  memset(buf, 'y', sizeof buf);
  if (strncmp(kind, "send:", 5) == 0) {
    long long total = atoll(kind + 5) << 20, left = total;
    SSL *ssl = dial(ctx, port);
    t0 = now();
    while (left > 0) {
      int n = SSL_write(ssl, buf, CHUNK);
      if (n <= 0) die("write");
      left -= n;
    }
    hangup(ssl);
    printf("MBps %.1f\n", (double)total / 1048576.0 / (now() - t0));
  }
  else if (strcmp(kind, "recv") == 0) {
    long long total = 0;
    SSL *ssl = dial(ctx, port);
    int n;
    t0 = now();
    while ((n = SSL_read(ssl, buf, CHUNK)) > 0) total += n;
    hangup(ssl);
    printf("MBps %.1f\n", (double)total / 1048576.0 / (now() - t0));
  }
  else if (strncmp(kind, "hs:", 3) == 0) {
    int i, count = atoi(kind + 3);
    for (i = 0; i < count; i++) hangup(dial(ctx, port));
    printf("hsps %.1f\n", count / (now() - t0));
  }
  else if (strncmp(kind, "echo:", 5) == 0) {
    /* echo:SECS:CONNS:MSG  CONNS processes, each a ping-pong of MSG bytes
    ** on one connection for SECS; prints the requests per second in all */
    double secs = atof(kind + 5);
    int conns = atoi(strchr(kind + 5, ':') + 1), msg = atoi(strrchr(kind, ':') + 1), i;
    int fds[2];
    long long total = 0, part;
    if (pipe(fds) < 0) die("pipe");
    for (i = 0; i < conns; i++) {
      if (fork() == 0) {
        SSL *ssl = dial(ctx, port);
        long long count = 0;
        double end = now() + secs;
        while (now() < end) {
          int got = 0;
          if (SSL_write(ssl, buf, msg) != msg) break;
          while (got < msg) {
            int n = SSL_read(ssl, buf, msg - got);
            if (n <= 0) die("echo read");
            got += n;
          }
          count++;
        }
        hangup(ssl);
        if (write(fds[1], &count, sizeof count) != sizeof count) _exit(1);
        _exit(0);
      }
    }
    for (i = 0; i < conns; i++)
      if (read(fds[0], &part, sizeof part) == sizeof part) total += part;
    printf("rps %.1f\n", (double)total / secs);
  }
  else die("unknown client kind");
}

int main(int argc, char **argv) {
  SSL_CTX *ctx;
  signal(SIGPIPE, SIG_IGN);  /* a peer gone before our close_notify */
  if (argc == 5 && strcmp(argv[1], "server") == 0) {
    ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1)
      die("certificate");
    serve(ctx, argv[4]);
  }
  else if (argc == 5 && strcmp(argv[1], "client") == 0) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, argv[2], NULL) != 1) die("cafile");
    client(ctx, atoi(argv[3]), argv[4]);
  }
  else {
    fprintf(stderr, "usage: tls_c server CERT KEY KIND | tls_c client CAFILE PORT KIND\n");
    return 2;
  }
  return 0;
}
