/*
** bsdsocket.tls: TLS streams on OpenSSL 3, a separate module so that the
** core builds without OpenSSL.
**
** A stream owns a connected stream socket (tls.wrap moves the descriptor
** out of the socket object the script passed, which then reads as closed)
** and does its I/O through a small BIO of its own: send(MSG_NOSIGNAL) and
** recv on the descriptor, so SIGPIPE never fires and errno is kept for the
** error result. Every call that may block is an impl for the core's one
** I/O loop (bsd_iorun, reached through the bsd_capi table the core leaves
** in the registry): SSL_ERROR_WANT_READ/WANT_WRITE become BSD_IO_WAIT with
** that want, so timeouts, non-blocking mode and bsdsocket.loop tasks behave
** as on sockets. OpenSSL's error queue is read into the failure result and
** cleared on every call.
*/
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bsdsocket.h"

#define TLS_CTX_MT "bsdsocket.tls.context"
#define TLS_MT     "bsdsocket.tls"
/* SSL_read never returns more than one record's plaintext */
#define TLS_RECORD 16384

/* every function of the module is a closure with the socket methods'
** upvalues (the core's bsd_iorun finds the loop's tasks there) and this */
#define UV_CAPI   lua_upvalueindex(BSD_METHOD_UPVALUES + 1)
#define UV_BIOMETH lua_upvalueindex(BSD_METHOD_UPVALUES + 2)
#define NUPVALUES (BSD_METHOD_UPVALUES + 2)

typedef struct tlsctx {
  SSL_CTX *ctx;         /* NULL only while being built */
  int server;
  int verify;           /* 0 off, 1 verify a certificate given, 2 require one */
  const unsigned char *alpn;  /* wire form, a string in user value 2 */
  size_t alpnlen;
  /* what an SNI switch to this context must set on the connection, which
  ** SSL_set_SSL_CTX leaves as the first context made it; the strings
  ** live in user values 3 and 4 */
  const char *ciphers, *ciphersuites;
} tlsctx;

/* marks a tlsstream (see checkstream) */
#define TLS_TAG 0x62736474  /* "bsdt" */

typedef struct tlsstream {
  int tag;              /* TLS_TAG */
  SSL *ssl;             /* NULL once closed */
  bsd_socket *s;        /* the socket it owns: user value 1 */
  const bsd_capi *api;
  lua_State *L;         /* the calling thread, for the SNI callback */
  int server;
  int handshaken;
  int shutdown;         /* close_notify sent */
  int nowait;           /* the BIO sends with MSG_DONTWAIT (close) */
  int lasterr;          /* errno of the BIO's last failed call */
  int eof;              /* the BIO read EOF */
  int insni;            /* its SNI function runs: no re-entry */
  int closing;          /* closed from there: closes when it returns */
  char name[256];       /* the name verified (client), for messages */
} tlsstream;

/* what an impl found, for the failure result */
typedef struct tlsfail {
  const char *code;     /* TLS_* or NULL for the errno in io->err */
  const char *reason;
  long verify;          /* X509_V_* for TLS_VERIFY, or X509_V_OK */
} tlsfail;


/* Empties OpenSSL's error queue (of this thread) so that no error leaks
** into the next call's verdict. ERR_clear_error walks all of the queue's
** slots even when it is empty, and calls run per message: ask first. */
static void clearerrors(void) {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
static const bsd_capi *capi(lua_State *L) {
  return (const bsd_capi *)lua_touserdata(L, UV_CAPI);
}

/* ---- the BIO: the socket's descriptor without SIGPIPE ---- */

static int bio_write(BIO *b, const char *buf, int len) {
  tlsstream *t = (tlsstream *)BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  if (t->s->fd < 0) {
    t->lasterr = EBADF;
    return -1;
  }
  n = send(t->s->fd, buf, (size_t)len,
           BSD_MSG_NOSIGNAL | (t->nowait ? MSG_DONTWAIT : 0));
  if (n < 0) {
    t->lasterr = errno;
    /* EINTR too: the impl sees WANT_WRITE with lasterr EINTR and lets the
    ** I/O loop decide (retry, or return to Lua for Ctrl-C) */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      BIO_set_retry_write(b);
  }
  return (int)n;
}

static int bio_read(BIO *b, char *buf, int len) {
  tlsstream *t = (tlsstream *)BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  if (t->s->fd < 0) {
    t->lasterr = EBADF;
    return -1;
  }
  n = recv(t->s->fd, buf, (size_t)len, 0);
  if (n < 0) {
    t->lasterr = errno;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      BIO_set_retry_read(b);
  }
  else if (n == 0) t->eof = 1;
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b; (void)num; (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* the BIO_METHOD lives in a userdata made by luaopen (an upvalue of every
** function), freed when the Lua state closes: no global state */
typedef struct biobox { BIO_METHOD *meth; } biobox;

static int biobox_gc(lua_State *L) {
  biobox *b = (biobox *)lua_touserdata(L, 1);
  if (b->meth) BIO_meth_free(b->meth);
  b->meth = NULL;
  return 0;
}

static BIO_METHOD *newbiometh(void) {
  BIO_METHOD *m =
      BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "bsdsocket");
  if (!m) return NULL;
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  return m;
}

/* ---- errors ---- */

typedef struct reasoncode { int reason; const char *code; } reasoncode;

/* OpenSSL's reasons (library SSL) that say which failure it was. The
** others count as TLS_HANDSHAKE during the handshake, TLS_PROTOCOL after. */
static const reasoncode reasoncodes[] = {
  /* the peer's certificate, or the peer rejecting ours */
  {SSL_R_CERTIFICATE_VERIFY_FAILED, "TLS_VERIFY"},
  {SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, "TLS_VERIFY"},
  {SSL_R_TLSV1_ALERT_UNKNOWN_CA, "TLS_VERIFY"},
  {SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, "TLS_VERIFY"},
  {SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED, "TLS_VERIFY"},
  {SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN, "TLS_VERIFY"},
  {SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE, "TLS_VERIFY"},
  /* no common version, or the peer does not speak TLS at all */
  {SSL_R_WRONG_VERSION_NUMBER, "TLS_PROTOCOL"},
  {SSL_R_UNSUPPORTED_PROTOCOL, "TLS_PROTOCOL"},
  {SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, "TLS_PROTOCOL"},
  {SSL_R_NO_PROTOCOLS_AVAILABLE, "TLS_PROTOCOL"},
  {SSL_R_PACKET_LENGTH_TOO_LONG, "TLS_PROTOCOL"},
  {SSL_R_HTTP_REQUEST, "TLS_PROTOCOL"},
  {SSL_R_HTTPS_PROXY_REQUEST, "TLS_PROTOCOL"},
  {SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, "TLS_PROTOCOL"},
  {SSL_R_SSLV3_ALERT_BAD_RECORD_MAC, "TLS_PROTOCOL"},
  /* negotiation failed: nothing in common, or a certificate missing */
  {SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED, "TLS_HANDSHAKE"},
  {SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE, "TLS_HANDSHAKE"},
  {SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE, "TLS_HANDSHAKE"},
  {SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL, "TLS_HANDSHAKE"},
  {SSL_R_NO_SHARED_CIPHER, "TLS_HANDSHAKE"},
  {0, NULL}
};

/* Reads OpenSSL's verdict on a failed call into f, and clears the queue.
** The oldest error in the queue is the cause; later ones are context. */
static void readfailure(tlsstream *t, tlsfail *f) {
  unsigned long e = ERR_peek_error();
  const reasoncode *rc;
  f->code = t->handshaken ? "TLS_PROTOCOL" : "TLS_HANDSHAKE";
  f->reason = e ? ERR_reason_error_string(e) : NULL;
  f->verify = X509_V_OK;
  if (!f->reason) f->reason = "protocol error";
  if (e && ERR_GET_LIB(e) == ERR_LIB_SSL) {
    int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      f->code = t->handshaken ? "TLS_TRUNCATED" : "TLS_HANDSHAKE";
      f->reason = t->handshaken
                      ? "connection closed without close_notify (truncated)"
                      : "connection closed during the handshake";
    }
    for (rc = reasoncodes; rc->code; rc++)
      if (rc->reason == reason) {
        f->code = rc->code;
        break;
      }
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
      f->verify = SSL_get_verify_result(t->ssl);
  }
  clearerrors();
}

/* The peer as messages name it: the name verified with the port
** ("example.com:443"), else its address. */
static const char *peertext(lua_State *L, tlsstream *t) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int port = -1;
  ss.ss_family = AF_UNSPEC;
  if (!t->name[0]) return t->api->pushendtext(L, t->s);
  if (t->s->fd >= 0
      && getpeername(t->s->fd, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  if (port < 0) return lua_pushstring(L, t->name);
  if (strchr(t->name, ':')) return lua_pushfstring(L, "[%s]:%d", t->name, port);
  return lua_pushfstring(L, "%s:%d", t->name, port);
}

/* the stream of a call in progress: index 1 */
static tlsstream *stream(lua_State *L) {
  return (tlsstream *)lua_touserdata(L, 1);
}

/* io->pusherr: a TLS failure (io->err is EPROTO then) or an errno */
static int pushfailure(lua_State *L, bsd_io *io, tlsfail *f) {
  tlsstream *t = stream(L);
  const char *peer = peertext(L, t);
  if (f->code) {
    if (f->verify != X509_V_OK)
      lua_pushfstring(L, "%s (%s)", f->reason,
                      X509_verify_cert_error_string(f->verify));
    else lua_pushstring(L, f->reason);
    return t->api->pushfail(L, io->call, peer, lua_tostring(L, -1), f->code);
  }
  return t->api->pusherror(L, io->call, peer, io->err);
}

/* a TCP close without close_notify, and the context allows it */
static int eofallowed(tlsstream *t, const tlsfail *f) {
  return t->handshaken && f->code && strcmp(f->code, "TLS_TRUNCATED") == 0
         && (SSL_get_options(t->ssl) & SSL_OP_IGNORE_UNEXPECTED_EOF);
}

/* After an SSL call returned r <= 0: the wait, or the failure in f. */
static bsd_iostatus sslstatus(tlsstream *t, bsd_io *io, tlsfail *f, int r) {
  int e = SSL_get_error(t->ssl, r);
  f->code = NULL;
  switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      clearerrors();
      if (t->lasterr == EINTR) {  /* the loop retries, or returns for Ctrl-C */
        t->lasterr = 0;
        io->err = EINTR;
        return BSD_IO_FAIL;
      }
      io->want = e == SSL_ERROR_WANT_READ ? BSD_WANT_READ : BSD_WANT_WRITE;
      return BSD_IO_WAIT;
    case SSL_ERROR_ZERO_RETURN:
      clearerrors();
      f->code = t->handshaken ? "EOF" : "TLS_HANDSHAKE";
      f->reason = "connection closed by the peer (close_notify)";
      f->verify = X509_V_OK;
      break;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error()) readfailure(t, f);
      else if (t->lasterr && !t->eof) {
        io->err = t->lasterr;
        return BSD_IO_FAIL;
      }
      else {
        f->code = t->handshaken ? "TLS_TRUNCATED" : "TLS_HANDSHAKE";
        f->reason = t->handshaken
                        ? "connection closed without close_notify (truncated)"
                        : "connection closed during the handshake";
        f->verify = X509_V_OK;
      }
      break;
    default:
      readfailure(t, f);
      break;
  }
  io->err = EPROTO;
  return BSD_IO_FAIL;
}

/* ---- contexts ---- */

static tlsctx *checkctx(lua_State *L, int idx) {
  return (tlsctx *)luaL_checkudata(L, idx, TLS_CTX_MT);
}

static int ctx_gc(lua_State *L) {
  tlsctx *c = checkctx(L, 1);
  if (c->ctx) SSL_CTX_free(c->ctx);
  c->ctx = NULL;
  return 0;
}

static int ctx_tostring(lua_State *L) {
  tlsctx *c = checkctx(L, 1);
  lua_pushfstring(L, "bsdsocket.tls.context (%s%s)",
                  c->server ? "server" : "client",
                  c->verify ? ", verifying peers" : ", verify off");
  return 1;
}

typedef struct version { const char *name; int value; } version;

static const version versions[] = {
  {"TLSv1", TLS1_VERSION}, {"TLSv1.1", TLS1_1_VERSION},
  {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION}, {NULL, 0}
};

static const char *const optionnames[] = {
    "mode",         "verify",       "cafile",           "capath",
    "certfile",     "keyfile",      "password",         "cert",
    "key",          "alpn",         "min_version",      "max_version",
    "ciphers",      "ciphersuites", "verify_depth",     "request_cert",
    "require_cert", "sni",          "allow_truncation", NULL};

static void checkoptions(lua_State *L, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *const *n;
    const char *key =
        lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    for (n = optionnames; key && *n; n++)
      if (strcmp(*n, key) == 0) break;
    if (!key || !*n)
      luaL_error(L, "tls.context: unknown option '%s'",
                 key ? key : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

/* string option or NULL; raises naming the option when of another type */
static const char *optstring(lua_State *L, int idx, const char *name) {
  const char *s;
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "tls.context: option '%s' must be a string", name);
  s = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the options table keeps it */
  return s;
}

static int optbool(lua_State *L, int idx, const char *name, int def) {
  int t = lua_getfield(L, idx, name), v = def;
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "tls.context: option '%s' must be a boolean", name);
  lua_pop(L, 1);
  return v;
}

static int optversion(lua_State *L, int idx, const char *name, int def) {
  const char *s = optstring(L, idx, name);
  const version *v;
  if (!s) return def;
  for (v = versions; v->name; v++)
    if (strcmp(v->name, s) == 0) return v->value;
  return luaL_error(L, "tls.context: option '%s': unknown version '%s' "
                    "(\"TLSv1.2\" or \"TLSv1.3\" expected)", name, s);
}

/* ALPN's wire form (length-prefixed names) from a list of strings */
static void optalpn(lua_State *L, int idx, luaL_Buffer *b) {
  lua_Integer i, n;
  int list;
  lua_getfield(L, idx, "alpn");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    return;
  }
  if (lua_type(L, -1) != LUA_TTABLE)
    luaL_error(L, "tls.context: option 'alpn' must be a list of strings");
  list = lua_gettop(L);
  n = luaL_len(L, list);
  luaL_buffinit(L, b);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    lua_geti(L, list, i);
    p = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || len == 0 || len > 255)
      luaL_error(L, "tls.context: option 'alpn': protocol names must be "
                    "strings of 1..255 bytes");
    lua_pop(L, 1);
    luaL_addchar(b, (char)len);
    luaL_addlstring(b, p, len);
  }
  luaL_pushresult(b);
  lua_remove(L, list);
}

/* nil, "tls.context <what>: <OpenSSL's reason>", code */
static int configfail(lua_State *L, const char *what, const char *code) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  clearerrors();
  lua_pushfstring(L, "tls.context %s", what);
  return capi(L)->pushfail(L, lua_tostring(L, -1), NULL,
                           reason ? reason : "failed", code);
}

/* a file the script named: unreadable is an errno, bad content EINVAL */
static int fileproblem(lua_State *L, const char *opt, const char *path) {
  if (access(path, R_OK) != 0) {
    int err = errno;
    lua_pushfstring(L, "tls.context %s %s", opt, path);
    return capi(L)->pusherror(L, lua_tostring(L, -1), NULL, err);
  }
  lua_pushfstring(L, "%s %s", opt, path);
  return configfail(L, lua_tostring(L, -1), "EINVAL");
}

/* OpenSSL reads a capath only when it looks a certificate up: one that
** is not there would pass silently. 0 with errno set when not a dir. */
static int isdir(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  if (S_ISDIR(st.st_mode)) return 1;
  errno = ENOTDIR;
  return 0;
}

static int pwcallback(char *buf, int size, int rwflag, void *u) {
  const char *pw = (const char *)u;
  size_t len;
  (void)rwflag;
  if (!pw) return 0;
  len = strlen(pw);
  if (len > (size_t)size) len = (size_t)size;
  memcpy(buf, pw, len);
  return (int)len;
}

/* cert/key as PEM strings: the certificate and any chain after it */
static int usepemcert(SSL_CTX *ctx, const char *pem, size_t len) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
      X509_free(x);
      ok = 0;
    }
  clearerrors();  /* the end of the chain reads as an error */
  BIO_free(b);
  return ok;
}

static int usepemkey(SSL_CTX *ctx, const char *pem, size_t len,
                     const char *pw) {
  BIO *b = BIO_new_mem_buf(pem, (int)len);
  EVP_PKEY *k =
      b ? PEM_read_bio_PrivateKey(b, NULL, pwcallback, (void *)pw) : NULL;
  int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}

/* the server's ALPN choice: its own order of preference; no name in
** common fails the handshake (no_application_protocol) */
static int alpnselect(SSL *ssl, const unsigned char **out,
                      unsigned char *outlen, const unsigned char *in,
                      unsigned int inlen, void *arg) {
  tlsctx *c = (tlsctx *)arg;
  (void)ssl;
  if (SSL_select_next_proto((unsigned char **)out, outlen, c->alpn,
                            (unsigned)c->alpnlen, in, inlen)
      != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  return SSL_TLSEXT_ERR_OK;
}

/* sni[name] or sni(name), under lua_pcall: an error there (an __index
** that raises, the function's own) fails the handshake instead of
** unwinding through OpenSSL's frames */
static int snirun(lua_State *L) {
  const char *name = (const char *)lua_touserdata(L, 2);
  lua_settop(L, 1);
  lua_pushstring(L, name);
  if (lua_type(L, 1) == LUA_TTABLE) lua_gettable(L, 1);
  else lua_call(L, 1, 1);
  return 1;
}

/* SSL_set_SSL_CTX takes only the certificate from the chosen context:
** the rest of what it says is set here. Runs before OpenSSL picks the
** version and the cipher. 0 when OpenSSL refused a setting. */
static int switchctx(SSL *ssl, const tlsctx *c) {
  SSL_CTX *ctx = c->ctx;
  int min = (int)SSL_CTX_get_min_proto_version(ctx);
  int max = (int)SSL_CTX_get_max_proto_version(ctx);
  const char *suites = c->ciphersuites;
  const char *list = c->ciphers;
  if (!SSL_set_SSL_CTX(ssl, ctx)) return 0;
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx),
                 SSL_CTX_get_verify_callback(ctx));
  SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
  SSL_clear_options(ssl, ~SSL_CTX_get_options(ctx));
  SSL_set_options(ssl, SSL_CTX_get_options(ctx));
  if (!SSL_set_min_proto_version(ssl, min)
      || !SSL_set_max_proto_version(ssl, max)) return 0;
  if (!suites) suites = OSSL_default_ciphersuites();
  if (!list) list = OSSL_default_cipher_list();
  return SSL_set_ciphersuites(ssl, suites) == 1
         && SSL_set_cipher_list(ssl, list) == 1;
}

/* the host name of the ClientHello's server_name extension into buf
** (size bytes), or 0 */
static int helloname(SSL *ssl, char *buf, size_t size) {
  const unsigned char *p;
  size_t len, n;
  if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len)
      || len < 5 || (((size_t)p[0] << 8) | p[1]) + 2 != len
      || p[2] != TLSEXT_NAMETYPE_host_name)
    return 0;
  n = ((size_t)p[3] << 8) | p[4];
  if (n == 0 || n + 5 > len || n >= size || memchr(p + 5, '\0', n)) return 0;
  memcpy(buf, p + 5, n);
  buf[n] = '\0';
  return 1;
}

/* SNI on a server: sni = { [name] = ctx } or function(name) -> ctx. A
** ClientHello callback, so the switch comes before OpenSSL reads the
** versions, ciphers and the rest (its servername callback comes after
** some of them). Runs inside SSL_do_handshake, called from an op whose
** stream is at index 1; the stream refuses its methods meanwhile. */
static int hellocallback(SSL *ssl, int *alert, void *arg) {
  tlsstream *t = (tlsstream *)SSL_get_app_data(ssl);
  lua_State *L = t ? t->L : NULL;
  char name[256];
  tlsctx *other;
  int top, st, r = SSL_CLIENT_HELLO_SUCCESS;
  (void)arg;
  if (!L || !helloname(ssl, name, sizeof name) || !lua_checkstack(L, 6))
    return SSL_CLIENT_HELLO_SUCCESS;
  top = lua_gettop(L);
  lua_getiuservalue(L, 1, 2);              /* the context */
  lua_pushcfunction(L, snirun);
  if (lua_getiuservalue(L, -2, 1) != LUA_TTABLE && !lua_isfunction(L, -1)) {
    lua_settop(L, top);
    return SSL_CLIENT_HELLO_SUCCESS;
  }
  lua_pushlightuserdata(L, name);
  t->insni = 1;
  st = lua_pcall(L, 2, 1, 0);
  t->insni = 0;
  *alert = SSL_AD_HANDSHAKE_FAILURE;
  if (st != LUA_OK || t->closing) r = SSL_CLIENT_HELLO_ERROR;
  else if ((other = (tlsctx *)luaL_testudata(L, -1, TLS_CTX_MT)) != NULL
           && other->ctx && other->server) {
    if (!switchctx(ssl, other)) {
      clearerrors();
      r = SSL_CLIENT_HELLO_ERROR;
    }
    /* the stream keeps what its callbacks point into */
    else lua_setiuservalue(L, 1, 2);
  }
  lua_settop(L, top);
  return r;
}

/* s (an option's string, or NULL) kept in user value uv of the context
** at index 2, for as long as the context lives */
static const char *keepstring(lua_State *L, const char *s, int uv) {
  if (!s) return NULL;
  lua_pushstring(L, s);
  s = lua_tostring(L, -1);
  lua_setiuservalue(L, 2, uv);
  return s;
}

static int tls_context(lua_State *L) {
  tlsctx *c;
  const char *s, *certfile, *keyfile, *pw, *cafile, *capath;
  size_t certlen = 0, keylen = 0, alpnlen;
  const char *cert, *key, *alpn;
  int depth;
  luaL_Buffer b;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  checkoptions(L, 1);
  c = (tlsctx *)lua_newuserdatauv(L, sizeof(tlsctx), 4);  /* index 2 */
  c->ctx = NULL;
  c->alpn = NULL;
  c->alpnlen = 0;
  c->server = 0;
  c->ciphers = c->ciphersuites = NULL;
  luaL_setmetatable(L, TLS_CTX_MT);
  s = optstring(L, 1, "mode");
  if (s && strcmp(s, "server") == 0) c->server = 1;
  else if (s && strcmp(s, "client") != 0)
    luaL_error(L,
               "tls.context: option 'mode' must be \"client\" or \"server\"");
  c->verify = optbool(L, 1, "verify", !c->server);
  if (optbool(L, 1, "require_cert", 0)) c->verify = 2;
  else if (optbool(L, 1, "request_cert", 0))
    c->verify = c->verify ? c->verify : 1;
  cafile = optstring(L, 1, "cafile");
  capath = optstring(L, 1, "capath");
  certfile = optstring(L, 1, "certfile");
  keyfile = optstring(L, 1, "keyfile");
  pw = optstring(L, 1, "password");
  lua_getfield(L, 1, "cert");
  cert = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &certlen);
  lua_getfield(L, 1, "key");
  key = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &keylen);
  lua_pop(L, 2);
  if ((lua_getfield(L, 1, "cert") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
      || (lua_getfield(L, 1, "key") != LUA_TNIL
          && lua_type(L, -1) != LUA_TSTRING))
    luaL_error(L, "tls.context: options 'cert' and 'key' must be PEM strings");
  lua_pop(L, 2);
  lua_getfield(L, 1, "verify_depth");
  depth = lua_isnil(L, -1) ? -1 : (int)luaL_checkinteger(L, -1);
  if (!lua_isnil(L, -1) && (lua_tointeger(L, -1) < 0
                            || lua_tointeger(L, -1) > INT_MAX))
    luaL_error(L, "tls.context: option 'verify_depth' must be 0 or more");
  lua_pop(L, 1);
  lua_getfield(L, 1, "sni");
  if (!lua_isnil(L, -1) && !lua_istable(L, -1) && !lua_isfunction(L, -1))
    luaL_error(L, "tls.context: option 'sni' must be a table or a function");
  lua_setiuservalue(L, 2, 1);
  optalpn(L, 1, &b);
  alpn = lua_tolstring(L, -1, &alpnlen);
  c->alpn = (const unsigned char *)alpn;
  c->alpnlen = alpnlen;
  lua_setiuservalue(L, 2, 2);  /* keeps the string c->alpn points into */

  c->ctx = SSL_CTX_new(c->server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) return configfail(L, "SSL_CTX_new", "ENOMEM");
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                               | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (optbool(L, 1, "allow_truncation", 0))
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (!SSL_CTX_set_min_proto_version(
          c->ctx, optversion(L, 1, "min_version", TLS1_2_VERSION))
      || !SSL_CTX_set_max_proto_version(c->ctx,
                                        optversion(L, 1, "max_version", 0)))
    return configfail(L, "min_version/max_version", "EINVAL");
  if ((s = optstring(L, 1, "ciphers"))
      && SSL_CTX_set_cipher_list(c->ctx, s) != 1)
    return configfail(L, "ciphers", "EINVAL");
  c->ciphers = keepstring(L, s, 3);
  if ((s = optstring(L, 1, "ciphersuites"))
      && SSL_CTX_set_ciphersuites(c->ctx, s) != 1)
    return configfail(L, "ciphersuites", "EINVAL");
  c->ciphersuites = keepstring(L, s, 4);
  if (c->verify) {
    SSL_CTX_set_verify(
        c->ctx,
        SSL_VERIFY_PEER
            | (c->verify == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
    if (depth >= 0) SSL_CTX_set_verify_depth(c->ctx, depth);
  }
  if (capath && !isdir(capath)) {
    int err = errno;
    lua_pushfstring(L, "tls.context capath %s", capath);
    return capi(L)->pusherror(L, lua_tostring(L, -1), NULL, err);
  }
  if (cafile || capath) {
    if (SSL_CTX_load_verify_locations(c->ctx, cafile, capath) != 1)
      return fileproblem(L, cafile ? "cafile" : "capath",
                         cafile ? cafile : capath);
    if (c->server && cafile)
      SSL_CTX_set_client_CA_list(c->ctx, SSL_load_client_CA_file(cafile));
  }
  else if (c->verify && !c->server
           && SSL_CTX_set_default_verify_paths(c->ctx) != 1)
    return configfail(L, "system trust store", "EINVAL");
  /* always our callback: OpenSSL's default one would prompt on the terminal */
  SSL_CTX_set_default_passwd_cb(c->ctx, pwcallback);
  SSL_CTX_set_default_passwd_cb_userdata(c->ctx, (void *)pw);
  if (certfile && SSL_CTX_use_certificate_chain_file(c->ctx, certfile) != 1)
    return fileproblem(L, "certfile", certfile);
  if (cert && !usepemcert(c->ctx, cert, certlen))
    return configfail(L, "cert", "EINVAL");
  if (!keyfile && !key && certfile) keyfile = certfile;  /* one PEM with both */
  if (keyfile
      && SSL_CTX_use_PrivateKey_file(c->ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_set_default_passwd_cb_userdata(c->ctx, NULL);
    return fileproblem(L, "keyfile", keyfile);
  }
  if (key && !usepemkey(c->ctx, key, keylen, pw)) {
    SSL_CTX_set_default_passwd_cb_userdata(c->ctx, NULL);
    return configfail(L, "key", "EINVAL");
  }
  /* the password is not kept: the options table owns the string */
  SSL_CTX_set_default_passwd_cb_userdata(c->ctx, NULL);
  if ((keyfile || key) && SSL_CTX_check_private_key(c->ctx) != 1)
    return configfail(L, "key (does not match the certificate)", "EINVAL");
  if (c->server && !(certfile || cert))
    luaL_error(L, "tls.context: a server needs 'certfile' or 'cert'");
  if (c->server) {
    /* resumption with client certificates needs a session id context;
    ** one of its own per context, so that a session made under one
    ** context is never resumed under another an SNI switch picked */
    unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
    if (RAND_bytes(sid, (int)sizeof sid) != 1
        || !SSL_CTX_set_session_id_context(c->ctx, sid, sizeof sid))
      return configfail(L, "session id context", "ENOMEM");
    SSL_CTX_set_client_hello_cb(c->ctx, hellocallback, NULL);
    if (alpnlen > 0) SSL_CTX_set_alpn_select_cb(c->ctx, alpnselect, c);
  }
  else if (alpnlen > 0
           && SSL_CTX_set_alpn_protos(c->ctx, (const unsigned char *)alpn,
                                      (unsigned)alpnlen)
                  != 0)
    return configfail(L, "alpn", "EINVAL");
  clearerrors();
  lua_settop(L, 2);
  return 1;
}

/* ---- streams ---- */

/* As bsd_checkself does for sockets: luaL_checkudata's registry lookup by
** name costs more than the read it guards, so a full userdata of exactly
** our size with our tag is taken at once. */
static tlsstream *checkstream(lua_State *L, int idx) {
  tlsstream *t = (tlsstream *)lua_touserdata(L, idx);
  if (t && lua_type(L, idx) == LUA_TUSERDATA
      && lua_rawlen(L, idx) == sizeof(tlsstream) && t->tag == TLS_TAG)
    return t;
  return (tlsstream *)luaL_checkudata(L, idx, TLS_MT);
}

/* argument 1 of a method: an open stream */
static tlsstream *checkopen(lua_State *L) {
  tlsstream *t = checkstream(L, 1);
  if (!t->ssl || t->s->fd < 0)
    luaL_error(L, "attempt to use a closed TLS stream");
  if (t->insni)
    luaL_error(L, "attempt to use a TLS stream inside its own SNI function");
  t->L = L;
  return t;
}

static int islisting(int fd) {
  int v = 0;
  socklen_t len = sizeof v;
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

static int isliteral(const char *name) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, name, buf) == 1
         || inet_pton(AF_INET6, name, buf) == 1;
}

/* the name to verify when none was given: the peer's address */
static int peeraddress(bsd_socket *s, char *buf, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ss.ss_family = AF_UNSPEC;
  if (getpeername(s->fd, (struct sockaddr *)&ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET)
    return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf,
                     (socklen_t)size)
           != NULL;
  if (ss.ss_family == AF_INET6)
    return inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf,
                     (socklen_t)size)
           != NULL;
  return 0;
}

static const char *wrapopt(lua_State *L, const char *name, size_t *len) {
  const char *s = NULL;
  if (lua_isnoneornil(L, 3)) return NULL;
  lua_getfield(L, 3, name);
  if (lua_type(L, -1) == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "tls.wrap: option '%s' must be a string", name);
  lua_pop(L, 1);  /* the options table keeps the string */
  return s;
}

/* a host name: dot-separated labels of 1..63 letters, digits, '-', '_' */
static int validname(const char *p) {
  size_t label = 0;
  for (; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '.') {
      if (label == 0) return 0;
      label = 0;
    }
    else if ((ch < 128 && (isalnum(ch) || ch == '-' || ch == '_'))
             && ++label <= 63) continue;
    else return 0;
  }
  return label > 0;
}

static const char *badname(lua_State *L, const char *opt, const char *why) {
  luaL_argerror(L, 3, lua_pushfstring(L, "option '%s': %s", opt, why));
  return NULL;
}

/* servername/hostname into buf (256 bytes): a host name (a trailing dot
** dropped: "localhost." is "localhost", in SNI too) or an address
** literal ("[::1]" is "::1"), or NULL when not given. Anything else
** raises: an empty name must never mean "verify no name". */
static const char *wrapname(lua_State *L, const char *opt, char *buf) {
  size_t len = 0;
  const char *s = wrapopt(L, opt, &len);
  if (!s) return NULL;
  if (memchr(s, '\0', len)) return badname(L, opt, "contains a NUL");
  if (len > 2 && s[0] == '[' && s[len - 1] == ']' && len - 2 < 256) {
    memcpy(buf, s + 1, len - 2);
    buf[len - 2] = '\0';
    if (strchr(buf, ':') && isliteral(buf)) return buf;
    return badname(L, opt, "brackets hold an IPv6 address only");
  }
  if (len > 0 && s[len - 1] == '.') len--;
  if (len == 0)
    return badname(L, opt, "empty name (only verify = false turns "
                          "verification off)");
  if (len > 253) return badname(L, opt, "longer than 253 bytes");
  memcpy(buf, s, len);
  buf[len] = '\0';
  if (!isliteral(buf) && !validname(buf))
    return badname(L, opt, "not a valid host name");
  return buf;
}

/* tls.wrap(sock, ctx [, {servername =, hostname =, session =}]) */
static int tls_wrap(lua_State *L) {
  const bsd_capi *api = capi(L);
  bsd_socket *s = api->testsocket(L, 1), *own;
  tlsctx *c = checkctx(L, 2);
  tlsstream *t;
  const char *servername, *hostname, *session, *sni;
  char sbuf[256], hbuf[256];
  size_t sesslen = 0;
  BIO *bio;
  if (!s) return luaL_typeerror(L, 1, BSD_SOCKET_MT);
  if (s->fd < 0) return luaL_argerror(L, 1, "attempt to wrap a closed socket");
  if (s->type != SOCK_STREAM || (s->family != AF_INET && s->family != AF_INET6
                                 && s->family != AF_UNIX))
    return luaL_argerror(L, 1, "TCP or Unix stream socket expected");
  if (islisting(s->fd))
    return luaL_argerror(L, 1,
                         "connected socket expected, got a listening one");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  servername = wrapname(L, "servername", sbuf);
  hostname = wrapname(L, "hostname", hbuf);
  session = wrapopt(L, "session", &sesslen);
  /* SNI is for names only */
  sni = servername && !isliteral(servername) ? servername : NULL;
  if (!sni && hostname && !isliteral(hostname)) sni = hostname;
  lua_settop(L, 3);
  t = (tlsstream *)lua_newuserdatauv(L, sizeof(tlsstream), 2);  /* index 4 */
  memset(t, 0, sizeof *t);
  t->tag = TLS_TAG;
  t->api = api;
  t->L = L;
  t->server = c->server;
  luaL_setmetatable(L, TLS_MT);
  t->ssl = SSL_new(c->ctx);
  bio = t->ssl ? BIO_new(
            (BIO_METHOD *)((biobox *)lua_touserdata(L, UV_BIOMETH))->meth)
               : NULL;
  if (!bio) {
    if (t->ssl) SSL_free(t->ssl);
    t->ssl = NULL;
    return configfail(L, "SSL_new", "ENOMEM");
  }
  /* the descriptor moves into a socket object of the stream's own */
  own = api->newsocket(L, s->fd, s->family, s->type, s->protocol);
  own->timeout = s->timeout;
  own->fd_nonblock = s->fd_nonblock;
  s->fd = -1;
  t->s = own;
  lua_setiuservalue(L, 4, 1);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 4, 2);
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_app_data(t->ssl, t);
  if (c->server) SSL_set_accept_state(t->ssl);
  else {
    const char *verifyname = hostname ? hostname : servername;
    if (sni) SSL_set_tlsext_host_name(t->ssl, sni);
    if (!verifyname && c->verify) {
      if (!peeraddress(own, t->name, sizeof t->name))
        return luaL_error(
            L,
            "tls.wrap: no name to verify the peer against "
            "(give servername or hostname, or a context with verify = false)");
      verifyname = t->name;
    }
    if (verifyname) {
      if (verifyname != t->name)
        snprintf(t->name, sizeof t->name, "%s", verifyname);
      if (c->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        int ok;
        if (isliteral(t->name))
          ok = X509_VERIFY_PARAM_set1_ip_asc(param, t->name);
        else {
          /* SANs only, as browsers: never the subject's CN */
          X509_VERIFY_PARAM_set_hostflags(param,
              X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS
              | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
          ok = SSL_set1_host(t->ssl, t->name);
        }
        if (ok != 1) {
          clearerrors();
          return luaL_error(L, "tls.wrap: bad host name '%s'", t->name);
        }
      }
    }
    if (session) {
      const unsigned char *p = (const unsigned char *)session;
      SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &p, (long)sesslen);
      if (sess) {  /* a bad one only costs a full handshake */
        SSL_set_session(t->ssl, sess);
        SSL_SESSION_free(sess);
      }
    }
    SSL_set_connect_state(t->ssl);
  }
  clearerrors();
  lua_settop(L, 4);
  return 1;
}

/* ---- the impls ---- */

typedef struct tlsop {
  tlsfail f;
  const char *call;     /* the call's own name, after an implicit handshake */
  const char *data;     /* send */
  size_t len, done;
  char *buf;            /* recv */
  size_t max, got;
} tlsop;

static int closenow(lua_State *L, tlsstream *t);

/* The handshake first, whichever call runs it: DONE once done, and the
** call goes on with the same deadline (a timeout covers the whole call).
** A close from the SNI function takes effect here, once it returned. */
static bsd_iostatus handshake(lua_State *L, tlsstream *t, bsd_io *io,
                              tlsop *op) {
  int r;
  clearerrors();
  t->lasterr = 0;
  r = SSL_do_handshake(t->ssl);
  io->call = "tls handshake";
  if (t->closing) {
    clearerrors();
    closenow(L, t);
    op->f.code = "TLS_HANDSHAKE";
    op->f.reason = "stream closed by its SNI function";
    op->f.verify = X509_V_OK;
    io->err = EPROTO;
    return BSD_IO_FAIL;
  }
  if (r == 1) {
    t->handshaken = 1;
    io->call = op->call;
    return BSD_IO_DONE;
  }
  return sslstatus(t, io, &op->f, r);
}

static bsd_iostatus impl_handshake(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  if (t->handshaken) return BSD_IO_DONE;
  return handshake(L, t, io, (tlsop *)io->data);
}

/* one SSL_write of what is left: BSD_IO_PROGRESS once some of it went */
static bsd_iostatus writesome(tlsstream *t, bsd_io *io, tlsop *op) {
  size_t n;
  int r;
  if (op->done >= op->len) return BSD_IO_DONE;
  clearerrors();
  t->lasterr = 0;
  r = SSL_write_ex(t->ssl, op->data + op->done, op->len - op->done, &n);
  if (r != 1) return sslstatus(t, io, &op->f, r);
  op->done += n;
  return BSD_IO_PROGRESS;
}

static bsd_iostatus impl_send(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  tlsop *op = (tlsop *)io->data;
  bsd_iostatus st;
  if (!t->handshaken && (st = handshake(L, t, io, op)) != BSD_IO_DONE)
    return st;
  st = writesome(t, io, op);
  return st == BSD_IO_PROGRESS ? BSD_IO_DONE : st;
}

/* sendall: the count so far rides in the continuation's context */
static bsd_iostatus impl_sendall(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  tlsop *op = (tlsop *)io->data;
  bsd_iostatus st;
  if (!t->handshaken && (st = handshake(L, t, io, op)) != BSD_IO_DONE)
    return st;
  if ((st = writesome(t, io, op)) != BSD_IO_PROGRESS) return st;
  io->kctx = (lua_KContext)op->done;
  return op->done >= op->len ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

static bsd_iostatus impl_recv(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  tlsop *op = (tlsop *)io->data;
  bsd_iostatus st;
  int r;
  if (!t->handshaken && (st = handshake(L, t, io, op)) != BSD_IO_DONE)
    return st;
  if (op->max == 0) return BSD_IO_DONE;
  clearerrors();
  t->lasterr = 0;
  r = SSL_read_ex(t->ssl, op->buf, op->max, &op->got);
  if (r == 1) return BSD_IO_DONE;
  op->got = 0;
  /* close_notify: "" */
  if (SSL_get_error(t->ssl, r) == SSL_ERROR_ZERO_RETURN) {
    clearerrors();
    return BSD_IO_DONE;
  }
  st = sslstatus(t, io, &op->f, r);
  /* allowed: "" */
  if (st == BSD_IO_FAIL && eofallowed(t, &op->f)) return BSD_IO_DONE;
  return st;
}

/* recvall: the bytes so far in a userdata at index 3, grown geometrically */
static bsd_iostatus impl_recvall(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  tlsop *op = (tlsop *)io->data;
  size_t cap = lua_rawlen(L, 3), n;
  bsd_iostatus st;
  int r;
  if (!t->handshaken && (st = handshake(L, t, io, op)) != BSD_IO_DONE)
    return st;
  if (op->got >= op->max) return BSD_IO_DONE;
  if (op->got == cap) {
    size_t ncap = cap * 2;
    char *nbuf;
    if (ncap > op->max) ncap = op->max;
    nbuf = (char *)lua_newuserdatauv(L, ncap, 0);
    memcpy(nbuf, lua_touserdata(L, 3), op->got);
    lua_replace(L, 3);
    cap = ncap;
  }
  clearerrors();
  t->lasterr = 0;
  r = SSL_read_ex(t->ssl, (char *)lua_touserdata(L, 3) + op->got, cap - op->got,
                  &n);
  if (r != 1) {
    st = sslstatus(t, io, &op->f, r);
    if (st == BSD_IO_FAIL && eofallowed(t, &op->f)) op->f.code = "EOF";
    return st;
  }
  op->got += n;
  io->kctx = (lua_KContext)op->got;
  return op->got >= op->max ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

static bsd_iostatus impl_shutdown(lua_State *L, bsd_io *io) {
  tlsstream *t = stream(L);
  tlsop *op = (tlsop *)io->data;
  int r;
  /* nothing to close, or close_notify already sent: a shutdown never
  ** waits for the peer's */
  if (!t->handshaken || t->shutdown) return BSD_IO_DONE;
  clearerrors();
  t->lasterr = 0;
  r = SSL_shutdown(t->ssl);
  if (r >= 0) {  /* 0: sent, the peer's not read yet; 1: both */
    t->shutdown = 1;
    return BSD_IO_DONE;
  }
  return sslstatus(t, io, &op->f, r);
}

/* ---- the ops ---- */

static int iofail(lua_State *L, bsd_io *io) {
  return pushfailure(L, io, &((tlsop *)io->data)->f);
}

/* Begins or resumes a call on the stream at index 1: NULL after pushing
** an error result when another task closed it during the wait. */
static tlsstream *begin(lua_State *L, bsd_io *io, tlsop *op, const char *call,
                        int status, int nargs) {
  tlsstream *t;
  if (status == LUA_YIELD) {
    t = checkstream(L, 1);
    if (!t->ssl || t->s->fd < 0) {
      capi(L)->pushfail(L, call, NULL, "TLS stream closed while waiting",
                        "EBADF");
      return NULL;
    }
    t->L = L;
  }
  else t = checkopen(L);
  t->api->iobeginwith(L, io, t->s, call, status, nargs);
  memset(op, 0, sizeof *op);
  op->call = call;
  io->data = op;
  io->pusherr = iofail;
  return t;
}

/* The calls that only exchange records, no data: the handshake and the
** close_notify. ctx (what the continuation gets) says which. */
enum { EXCHANGE_HANDSHAKE, EXCHANGE_SHUTDOWN };

static const struct exchange {
  const char *call;
  bsd_ioimpl impl;
} exchanges[] = {
  {"tls handshake", impl_handshake},
  {"tls shutdown", impl_shutdown},
};

static int op_exchange(lua_State *L, int status, lua_KContext ctx) {
  const struct exchange *e = &exchanges[ctx];
  bsd_io io;
  tlsop op;
  int r;
  tlsstream *t = begin(L, &io, &op, e->call, status, 1);
  if (!t) return 3;
  io.impl = e->impl;
  if ((r = t->api->iorun(L, &io, ctx, op_exchange)) != BSD_IO_FINISHED)
    return r;
  lua_pushboolean(L, 1);
  return 1;
}

static int t_handshake(lua_State *L) {
  lua_settop(L, 1);
  return op_exchange(L, LUA_OK, EXCHANGE_HANDSHAKE);
}

/* data:sub(i, j) bounds, as string.sub counts them */
static size_t posrelat(lua_Integer pos, size_t len) {
  if (pos >= 0) return (size_t)pos;
  if ((size_t)-pos > len) return 0;
  return len + (size_t)pos + 1;
}

static int op_send(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  tlsop op;
  int r;
  tlsstream *t = begin(L, &io, &op, "tls send", status, 4);
  if (!t) return 3;
  op.data = luaL_checklstring(L, 2, &op.len);
  if (!lua_isnoneornil(L, 3) || !lua_isnoneornil(L, 4)) {
    size_t i = posrelat(luaL_optinteger(L, 3, 1), op.len);
    size_t j = posrelat(luaL_optinteger(L, 4, -1), op.len);
    if (i < 1) i = 1;
    if (j > op.len) j = op.len;
    op.data += i - 1;
    op.len = i > j ? 0 : j - i + 1;
  }
  io.impl = impl_send;
  if ((r = t->api->iorun(L, &io, ctx, op_send)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)op.done);
  return 1;
}

static int t_send(lua_State *L) {
  lua_settop(L, 4);
  return op_send(L, LUA_OK, 0);
}

static int op_sendall(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  tlsop op;
  int r;
  tlsstream *t = begin(L, &io, &op, "tls sendall", status, 2);
  if (!t) {  /* closed while waiting: the count so far, as on sockets */
    lua_pushinteger(L, (lua_Integer)ctx);
    return 4;
  }
  op.data = luaL_checklstring(L, 2, &op.len);
  op.done = (size_t)ctx;
  io.impl = impl_sendall;
  if ((r = t->api->iorun(L, &io, ctx, op_sendall)) != BSD_IO_FINISHED) {
    lua_pushinteger(L, (lua_Integer)op.done);
    return r + 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int t_sendall(lua_State *L) {
  lua_settop(L, 2);
  return op_sendall(L, LUA_OK, 0);
}

static int op_recv(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  tlsop op;
  char buf[TLS_RECORD];
  lua_Integer max;
  int r;
  tlsstream *t = begin(L, &io, &op, "tls recv", status, 2);
  if (!t) return 3;
  max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max >= 0, 2, "negative byte count");
  op.max = max > TLS_RECORD ? TLS_RECORD : (size_t)max;
  op.buf = buf;
  io.impl = impl_recv;
  if ((r = t->api->iorun(L, &io, ctx, op_recv)) != BSD_IO_FINISHED) return r;
  lua_pushlstring(L, buf, op.got);
  return 1;
}

static int t_recv(lua_State *L) {
  lua_settop(L, 2);
  return op_recv(L, LUA_OK, 0);
}

static int eofresult(lua_State *L, bsd_io *io) {
  tlsop *op = (tlsop *)io->data;
  if (op->f.code && strcmp(op->f.code, "EOF") == 0) {
    tlsstream *t = stream(L);
    const char *peer = peertext(L, t);
    lua_pushfstring(L, "connection closed after %I of %I bytes",
                    (lua_Integer)op->got, (lua_Integer)op->max);
    return t->api->pushfail(L, io->call, peer, lua_tostring(L, -1), "EOF");
  }
  return iofail(L, io);
}

static int op_recvall(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  tlsop op;
  int r;
  tlsstream *t = begin(L, &io, &op, "tls recvall", status, 3);
  if (!t) {  /* closed while waiting: the bytes so far, as on sockets */
    lua_pushlstring(L, (const char *)lua_touserdata(L, 3), (size_t)ctx);
    return 4;
  }
  op.max = (size_t)luaL_checkinteger(L, 2);
  op.got = (size_t)ctx;
  io.impl = impl_recvall;
  io.pusherr = eofresult;
  r = t->api->iorun(L, &io, ctx, op_recvall);
  lua_pushlstring(L, (const char *)lua_touserdata(L, 3), op.got);
  /* the bytes read so far are never lost */
  return r == BSD_IO_FINISHED ? 1 : r + 1;
}

static int t_recvall(lua_State *L) {
  lua_Integer want;
  checkopen(L);
  want = luaL_checkinteger(L, 2);
  luaL_argcheck(L, want >= 0, 2, "negative byte count");
  lua_settop(L, 2);
  lua_newuserdatauv(L, want < 4096 ? (size_t)want : 4096, 0);
  return op_recvall(L, LUA_OK, 0);
}

static int t_shutdown(lua_State *L) {
  lua_settop(L, 1);
  return op_exchange(L, LUA_OK, EXCHANGE_SHUTDOWN);
}

/* ---- closing ---- */

static void freessl(tlsstream *t) {
  if (t->ssl) SSL_free(t->ssl);
  t->ssl = NULL;
  clearerrors();
}

/* Sends close_notify if the handshake is done and the kernel takes it at
** once (never waits), then closes; tasks waiting on the stream wake.
** 0 or the errno of close. */
static int closenow(lua_State *L, tlsstream *t) {
  t->closing = 0;
  if (t->ssl && t->s->fd >= 0 && t->handshaken && !t->shutdown) {
    t->nowait = 1;
    SSL_shutdown(t->ssl);
  }
  freessl(t);
  return t->s->fd >= 0 ? t->api->closewith(L, t->s, 1) : 0;
}

/* from inside its SNI function, OpenSSL still holds the SSL: the close
** waits for the function to return (the handshake then fails) */
static int t_close(lua_State *L) {
  tlsstream *t = checkstream(L, 1);
  int err = 0;
  if (t->insni) t->closing = 1;
  else err = closenow(L, t);
  if (lua_gettop(L) > 1 && lua_isnil(L, 2)) return 0;  /* __close */
  if (err) return t->api->pusherror(L, "tls close", NULL, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int t_toclose(lua_State *L) {
  lua_settop(L, 1);
  lua_pushnil(L);
  return t_close(L);
}

/* a forgotten stream: no close_notify (its data may not be complete) */
static int t_gc(lua_State *L) {
  tlsstream *t = checkstream(L, 1);
  freessl(t);
  if (t->s && t->s->fd >= 0) {
    close(t->s->fd);
    t->s->fd = -1;
  }
  return 0;
}

/* ---- timeouts, the pollable protocol, the socket's ends ---- */

static int t_settimeout(lua_State *L) {
  tlsstream *t = checkopen(L);
  if (lua_isnoneornil(L, 2)) t->s->timeout = -1;
  else {
    lua_Number v = luaL_checknumber(L, 2);
    luaL_argcheck(L, v >= 0 && v < 1e9, 2,
                  "timeout must be nil or 0..1e9 seconds");
    t->s->timeout = v;
  }
  t->api->setfdmode(t->s, t->s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int t_setblocking(lua_State *L) {
  tlsstream *t = checkopen(L);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  t->s->timeout = lua_toboolean(L, 2) ? -1 : 0;
  t->api->setfdmode(t->s, t->s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int t_gettimeout(lua_State *L) {
  tlsstream *t = checkopen(L);
  if (t->s->timeout < 0) lua_pushnil(L);
  else lua_pushnumber(L, t->s->timeout);
  return 1;
}

static int t_polltimeout(lua_State *L) {
  tlsstream *t = checkopen(L);
  if (t->s->timeout > 0) lua_pushnumber(L, t->s->timeout);
  else lua_pushnil(L);
  return 1;
}

static int t_events(lua_State *L) {
  static const char *const names[] = {"r", "r", "w", "rw"};
  tlsstream *t = checkopen(L);
  lua_pushstring(L, names[t->s->want & 3]);
  return 1;
}

static int t_fileno(lua_State *L) {
  lua_pushinteger(L, checkopen(L)->s->fd);
  return 1;
}

/* plaintext OpenSSL holds already: a script polling by hand reads it
** before waiting for the descriptor */
static int t_pending(lua_State *L) {
  lua_pushinteger(L, SSL_pending(checkopen(L)->ssl));
  return 1;
}

/* getsockname/getpeername: the socket's own methods */
static int sockmethod(lua_State *L, const char *name) {
  int base;
  checkopen(L);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, name);
  lua_insert(L, -2);
  base = lua_gettop(L) - 2;
  lua_call(L, 1, LUA_MULTRET);
  return lua_gettop(L) - base;
}

static int t_getsockname(lua_State *L) {
  return sockmethod(L, "getsockname");
}

static int t_getpeername(lua_State *L) {
  return sockmethod(L, "getpeername");
}

/* ---- inspection ---- */

static int t_version(lua_State *L) {
  tlsstream *t = checkopen(L);
  if (!t->handshaken) lua_pushnil(L);
  else lua_pushstring(L, SSL_get_version(t->ssl));
  return 1;
}

static int t_cipher(lua_State *L) {
  tlsstream *t = checkopen(L);
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  if (!t->handshaken || !c) lua_pushnil(L);
  else lua_pushstring(L, SSL_CIPHER_get_name(c));
  return 1;
}

static int t_alpn(lua_State *L) {
  tlsstream *t = checkopen(L);
  const unsigned char *p;
  unsigned int len;
  SSL_get0_alpn_selected(t->ssl, &p, &len);
  if (!p || len == 0) lua_pushnil(L);
  else lua_pushlstring(L, (const char *)p, len);
  return 1;
}

static int t_servername(lua_State *L) {
  tlsstream *t = checkopen(L);
  const char *n = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  if (n) lua_pushstring(L, n);
  else lua_pushnil(L);
  return 1;
}

static int t_session_reused(lua_State *L) {
  tlsstream *t = checkopen(L);
  lua_pushboolean(L, t->handshaken && SSL_session_reused(t->ssl));
  return 1;
}

/* the session as DER, for tls.wrap's session option (TLS 1.3 tickets
** arrive after the handshake: read something first) */
static int t_session(lua_State *L) {
  tlsstream *t = checkopen(L);
  SSL_SESSION *s = SSL_get1_session(t->ssl);
  unsigned char *der = NULL;
  int len;
  if (!s || !SSL_SESSION_is_resumable(s)
      || (len = i2d_SSL_SESSION(s, &der)) <= 0) {
    SSL_SESSION_free(s);
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, (const char *)der, (size_t)len);
  OPENSSL_free(der);
  SSL_SESSION_free(s);
  return 1;
}

static void pushname(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long len;
  if (!b) {
    lua_pushnil(L);
    return;
  }
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  len = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)len);
  BIO_free(b);
}

static void pushtime(lua_State *L, const ASN1_TIME *at) {
  struct tm tm;
  if (at && ASN1_TIME_to_tm(at, &tm) == 1)
    lua_pushinteger(L, (lua_Integer)timegm(&tm));
  else lua_pushnil(L);
}

static void pushsans(lua_State *L, X509 *x) {
  GENERAL_NAMES *names =
      (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int i, ndns = 0, nip = 0;
  lua_createtable(L, 0, 2);
  lua_newtable(L);  /* dns */
  lua_newtable(L);  /* ip */
  for (i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName));
      lua_rawseti(L, -3, ++ndns);
    }
    else if (g->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN];
      int len = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *p = ASN1_STRING_get0_data(g->d.iPAddress);
      if ((len == 4 && inet_ntop(AF_INET, p, text, sizeof text))
          || (len == 16 && inet_ntop(AF_INET6, p, text, sizeof text))) {
        lua_pushstring(L, text);
        lua_rawseti(L, -2, ++nip);
      }
    }
  }
  GENERAL_NAMES_free(names);
  lua_setfield(L, -3, "ip");
  lua_setfield(L, -2, "dns");
}

static void pushhex(lua_State *L, const unsigned char *p, size_t len,
                    const char *sep) {
  luaL_Buffer b;
  size_t i;
  luaL_buffinit(L, &b);
  for (i = 0; i < len; i++) {
    char two[3];
    snprintf(two, sizeof two, "%02X", p[i]);
    if (i > 0) luaL_addstring(&b, sep);
    luaL_addlstring(&b, two, 2);
  }
  luaL_pushresult(&b);
}

static int t_peercert(lua_State *L) {
  tlsstream *t = checkopen(L);
  X509 *x = SSL_get1_peer_certificate(t->ssl);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  const ASN1_INTEGER *serial;
  BIO *b;
  if (!x) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 8);
  pushname(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  pushname(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  pushsans(L, x);
  lua_setfield(L, -2, "san");
  pushtime(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "not_before");
  pushtime(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "not_after");
  serial = X509_get0_serialNumber(x);
  pushhex(L, ASN1_STRING_get0_data(serial), (size_t)ASN1_STRING_length(serial),
          "");
  lua_setfield(L, -2, "serial");
  if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
    pushhex(L, md, mdlen, ":");
    lua_setfield(L, -2, "sha256");
  }
  if ((b = BIO_new(BIO_s_mem())) != NULL) {
    char *p;
    long len;
    PEM_write_bio_X509(b, x);
    len = BIO_get_mem_data(b, &p);
    lua_pushlstring(L, p, (size_t)len);
    lua_setfield(L, -2, "pem");
    BIO_free(b);
  }
  X509_free(x);
  clearerrors();
  return 1;
}

static int t_tostring(lua_State *L) {
  tlsstream *t = checkstream(L, 1);
  if (!t->ssl || t->s->fd < 0) {
    lua_pushliteral(L, "bsdsocket.tls (closed)");
    return 1;
  }
  lua_pushfstring(
      L, "bsdsocket.tls fd=%d %s %s", t->s->fd, t->server ? "server" : "client",
      t->handshaken ? SSL_get_version(t->ssl) : "(handshake pending)");
  if (t->name[0]) lua_pushfstring(L, " %s", t->name);
  else lua_pushliteral(L, "");
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, " on %s", luaL_tolstring(L, -1, NULL));
  lua_remove(L, -2);
  lua_remove(L, -2);
  lua_concat(L, 3);
  return 1;
}

static const luaL_Reg stream_methods[] = {
  {"handshake", t_handshake},
  {"send", t_send},
  {"sendall", t_sendall},
  {"recv", t_recv},
  {"recvall", t_recvall},
  {"shutdown", t_shutdown},
  {"close", t_close},
  {"settimeout", t_settimeout},
  {"setblocking", t_setblocking},
  {"gettimeout", t_gettimeout},
  {"getsockname", t_getsockname},
  {"getpeername", t_getpeername},
  {"fileno", t_fileno},
  {"pollfd", t_fileno},
  {"events", t_events},
  {"timeout", t_polltimeout},
  {"pending", t_pending},
  {"version", t_version},
  {"cipher", t_cipher},
  {"alpn", t_alpn},
  {"servername", t_servername},
  {"session_reused", t_session_reused},
  {"session", t_session},
  {"peercert", t_peercert},
  {NULL, NULL}
};

static const luaL_Reg stream_meta[] = {
  {"__gc", t_gc},
  {"__close", t_toclose},
  {"__tostring", t_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg ctx_meta[] = {
  {"__gc", ctx_gc},
  {"__tostring", ctx_tostring},
  {NULL, NULL}
};

static const luaL_Reg tls_funcs[] = {
  {"context", tls_context},
  {"wrap", tls_wrap},
  {NULL, NULL}
};

/* pushes the upvalues every function gets */
static void pushupvalues(lua_State *L, const bsd_capi *api, int box) {
  api->pushmethodupvalues(L);
  lua_pushlightuserdata(L, (void *)api);
  lua_pushvalue(L, box);
}

LUAMOD_API int luaopen_bsdsocket_tls(lua_State *L) {
  const bsd_capi *api;
  biobox *box;
  int boxidx;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "bsdsocket.core");
  lua_call(L, 1, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, BSD_CAPI_KEY);
  api = (const bsd_capi *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!api || api->version != BSD_CAPI_VERSION
      || api->socketsize != sizeof(bsd_socket) || api->iosize != sizeof(bsd_io))
    return luaL_error(L, "bsdsocket.tls: bsdsocket.core is of another version");
  box = (biobox *)lua_newuserdatauv(L, sizeof(biobox), 0);
  box->meth = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, biobox_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  box->meth = newbiometh();
  if (!box->meth)
    return luaL_error(L, "bsdsocket.tls: cannot make the BIO method");
  boxidx = lua_gettop(L);

  luaL_newmetatable(L, TLS_CTX_MT);
  luaL_setfuncs(L, ctx_meta, 0);
  lua_pop(L, 1);
  luaL_newmetatable(L, TLS_MT);
  luaL_setfuncs(L, stream_meta, 0);
  luaL_newlibtable(L, stream_methods);
  pushupvalues(L, api, boxidx);
  luaL_setfuncs(L, stream_methods, NUPVALUES);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newlibtable(L, tls_funcs);
  pushupvalues(L, api, boxidx);
  luaL_setfuncs(L, tls_funcs, NUPVALUES);
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  lua_setfield(L, -2, "openssl");
  return 1;
}
