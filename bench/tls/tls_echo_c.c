/* The C baseline for the TLS echo server scenario of bench/tls/run.sh: a
** single-threaded epoll server with non-blocking OpenSSL streams that echoes
** what each client sends.   tls_echo_c CERT KEY   prints "port N". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define BUF 16384

typedef struct conn {
  int fd;
  SSL *ssl;
  char buf[BUF];
  int pending;      /* bytes of buf still to write */
} conn;

static void drop(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  SSL_free(c->ssl);
  close(c->fd);
  free(c);
  ERR_clear_error();
}

/* runs the connection as far as it goes without blocking; 0: drop it */
static int step(int ep, conn *c) {
  struct epoll_event e;
  for (;;) {
    int n, err;
    if (c->pending > 0) {
      n = SSL_write(c->ssl, c->buf, c->pending);
      if (n > 0) {
        c->pending = 0;
        continue;
      }
    }
    else n = SSL_read(c->ssl, c->buf, BUF);
    if (n > 0) {
      c->pending = n;
      continue;
    }
    err = SSL_get_error(c->ssl, n);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return 0;
    e.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
    e.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    return 1;
  }
}

int main(int argc, char **argv) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  struct epoll_event e, evs[256];
  int one = 1, ls, ep;
  SSL_CTX *ctx;
  if (argc != 3) {
    fprintf(stderr, "usage: tls_echo_c CERT KEY\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1
      || SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 512) < 0) return 1;
  getsockname(ls, (struct sockaddr *)&a, &len);
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  ep = epoll_create1(0);
  e.events = EPOLLIN;
  e.data.ptr = NULL;
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  for (;;) {
    int i, n = epoll_wait(ep, evs, 256, -1);
    for (i = 0; i < n; i++) {
      conn *c = (conn *)evs[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          c = (conn *)calloc(1, sizeof *c);
          c->fd = fd;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c->ssl = SSL_new(ctx);
          SSL_set_fd(c->ssl, fd);
          SSL_set_accept_state(c->ssl);
          e.events = EPOLLIN;
          e.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
          if (!step(ep, c)) drop(ep, c);
        }
        continue;
      }
      if (!step(ep, c)) drop(ep, c);
    }
  }
}
