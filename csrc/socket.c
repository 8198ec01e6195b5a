/*
** The socket object: creation, the calls of the Berkeley API, timeouts,
** and the cooperation with bsdsocket.loop.
**
** Every call that may block goes through the same three modes:
** - the kernel blocks (no timeout, descriptor in blocking mode: the fast path);
** - the descriptor is non-blocking and poll(2) waits for the deadline;
** - inside a task of bsdsocket.loop, the call yields to the scheduler and
**   is retried when it resumes us (the Lua continuation is the call itself).
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bsdsocket.h"

/* recv never reads more than this per call, so recv(huge) allocates no more */
#define RECV_MAX (1 << 20)
/* reads up to this size go through the C stack, larger ones through scratch() */
#define RECV_SMALL 4096
#define ADDRSTR_SIZE (sizeof(struct sockaddr_un) + 16)

/* MODE_LATER: the descriptor is non-blocking already, so the call can be
** tried before knowing whether a wait would poll or yield (task or not);
** bsd_waitready decides, on EAGAIN only. */
enum { MODE_BLOCK, MODE_POLL, MODE_NOWAIT, MODE_TASK, MODE_LATER };

/* registry keys: only their addresses matter */
const char bsd_taskskey = 't';
static const char scratchholderkey = 's';

/* ---- objects ---- */

bsd_socket *bsd_checksocket(lua_State *L, int idx) {
  return (bsd_socket *)luaL_checkudata(L, idx, BSD_SOCKET_MT);
}

bsd_socket *bsd_checkopen(lua_State *L, int idx) {
  bsd_socket *s = bsd_checksocket(L, idx);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return s;
}

bsd_socket *bsd_newsocket(lua_State *L, int fd, int family, int type, int protocol) {
  bsd_socket *s = (bsd_socket *)lua_newuserdatauv(L, sizeof(bsd_socket), 0);
  s->tag = BSD_SOCKET_TAG;
  s->fd = fd;
  s->family = family;
  s->type = type;
  s->protocol = protocol;
  s->timeout = -1;
  s->fd_nonblock = 0;
  s->want = BSD_WANT_READ;
  s->rdrained = 0;
  s->rsticky = 0;
  luaL_setmetatable(L, BSD_SOCKET_MT);
  return s;
}

/* The methods' own check. luaL_checkudata's registry lookup by name costs
** more than the send it guards on a path that runs once per message, so
** sockets carry a tag: a full userdata of exactly our size with our tag can
** only have been made by bsd_newsocket (Lua code cannot fill userdata).
** Anything else goes through luaL_checkudata, which raises the usual error. */
static bsd_socket *checkself(lua_State *L) {
  bsd_socket *s = (bsd_socket *)lua_touserdata(L, 1);
  /* size first: a smaller userdata (or a light one, whose rawlen is 0)
  ** must not have its first bytes read as a tag */
  if (s && lua_rawlen(L, 1) == sizeof(bsd_socket) && s->tag == BSD_SOCKET_TAG
      && s->fd >= 0)
    return s;
  return bsd_checkopen(L, 1);
}

int bsd_getfd(lua_State *L, int idx) {
  bsd_socket *s = (bsd_socket *)luaL_testudata(L, idx, BSD_SOCKET_MT);
  lua_Integer fd;
  if (s) {
    if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
    return s->fd;
  }
  fd = luaL_checkinteger(L, idx);
  luaL_argcheck(L, 0 <= fd && fd <= 0x7FFFFFFF, idx, "not a descriptor");
  return (int)fd;
}

int bsd_checkint(lua_State *L, int arg) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, INT_MIN <= v && v <= INT_MAX, arg, "integer out of range");
  return (int)v;
}

int bsd_optint(lua_State *L, int arg, int def) {
  return lua_isnoneornil(L, arg) ? def : bsd_checkint(L, arg);
}

int bsd_setnonblock(int fd, int on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return -1;
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  return fcntl(fd, F_SETFL, flags);
}

static void setfdmode(bsd_socket *s, int nonblock) {
  if (s->fd_nonblock != nonblock && bsd_setnonblock(s->fd, nonblock) == 0)
    s->fd_nonblock = nonblock;
}

/* ---- errors naming the peer ---- */

static const char *addrtext(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  char buf[ADDRSTR_SIZE];
  bsd_addrtostring(sa, len, buf, sizeof buf);
  return lua_pushstring(L, buf);
}

/* an address worth naming: not the 0.0.0.0:0 / [::]:0 of an unbound socket */
static int named(const struct sockaddr_storage *ss, socklen_t len) {
  if (len <= sizeof(sa_family_t)) return 0;
  /* the analyzer does not know that the caller's getpeername/getsockname
  ** succeeded and wrote len > 2 bytes: ss_family is set */
  /* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
  if (ss->ss_family == AF_INET) return ((const struct sockaddr_in *)ss)->sin_port != 0;
  if (ss->ss_family == AF_INET6) return ((const struct sockaddr_in6 *)ss)->sin6_port != 0;
  return 1;
}

/* the peer if connected, else the local address if bound, else nothing */
static const char *endtext(lua_State *L, bsd_socket *s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0 && named(&ss, len))
    return addrtext(L, (struct sockaddr *)&ss, len);
  len = sizeof ss;
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0 && named(&ss, len))
    return addrtext(L, (struct sockaddr *)&ss, len);
  return NULL;
}

int bsd_sockerror(lua_State *L, bsd_socket *s, const char *call, int err) {
  return bsd_pusherror(L, call, endtext(L, s), err);
}

int bsd_addrerror(lua_State *L, const char *call, const bsd_addr *a, int err) {
  return bsd_pusherror(L, call, addrtext(L, (const struct sockaddr *)&a->ss, a->len), err);
}

/* ---- waiting ---- */

static int intask(lua_State *L) {
  int found;
  if (!lua_isyieldable(L)) return 0;
  lua_pushthread(L);
  found = lua_rawget(L, BSD_UV_TASKS) != LUA_TNIL;
  lua_pop(L, 1);
  return found;
}

static int waitmode(lua_State *L, bsd_socket *s) {
  if (intask(L)) {
    setfdmode(s, 1);
    return MODE_TASK;
  }
  if (s->timeout > 0 || s->fd_nonblock) return MODE_POLL;
  return MODE_BLOCK;
}

/* How a call that may block will wait. Asking whether the caller is a loop
** task costs a table lookup by thread, so on a non-blocking descriptor
** (every socket a task has used) the question waits until the call would
** block. */
int bsd_callmode(lua_State *L, bsd_socket *s) {
  if (s->timeout == 0) return MODE_NOWAIT;
  if (s->fd_nonblock) return MODE_LATER;
  return waitmode(L, s);
}

/* On resumption of a yielded call (the loop resumes with one value): drop
** what the yield left, recover the call's deadline (kept on the stack under
** the yielded values, so a spurious wake-up does not extend it) and tell
** whether the scheduler said the deadline passed. */
int bsd_resumedlate(lua_State *L, int status, int nargs, double *deadline) {
  int late = 0;
  if (status == LUA_YIELD) {
    late = !lua_toboolean(L, -1);
    *deadline = lua_isnumber(L, -2) ? lua_tonumber(L, -2) : -1;
    lua_settop(L, nargs);
  }
  return late;
}

/* Called when a call would block. Returns 1 when the socket is ready (retry
** the call), 0 when the deadline passed (ETIMEDOUT), -1 for a non-blocking
** socket (EAGAIN). In a task it yields to the loop and does not return:
** the loop resumes k, which retries. */
int bsd_waitready(lua_State *L, bsd_socket *s, int mode, int want,
                     double *deadline, lua_KContext ctx, lua_KFunction k) {
  s->want = want;
  if (mode == MODE_NOWAIT) return -1;
  if (mode == MODE_LATER) mode = waitmode(L, s);
  if (mode == MODE_TASK) {
    if (s->timeout > 0 && *deadline < 0) *deadline = bsd_monotime() + s->timeout;
    if (*deadline < 0) lua_pushnil(L);
    else lua_pushnumber(L, *deadline);  /* stays for resumedlate */
    lua_pushliteral(L, "bsdsocket.wait");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, want);
    lua_pushvalue(L, -4);
    return lua_yieldk(L, 4, ctx, k);
  }
  for (;;) {
    struct pollfd pfd;
    int ms = -1, r;
    if (s->timeout > 0) {
      double left, now = bsd_monotime();
      if (*deadline < 0) *deadline = now + s->timeout;
      left = *deadline - now;
      if (left <= 0) return 0;
      ms = (int)ceil(left * 1000);
    }
    pfd.fd = s->fd;
    pfd.events = (short)((want & BSD_WANT_READ ? POLLIN : 0) | (want & BSD_WANT_WRITE ? POLLOUT : 0));
    pfd.revents = 0;
    r = poll(&pfd, 1, ms);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return 1;  /* let the call itself report */
  }
}

/* Maps waitready's verdict to a result: retry (-2) or an error pushed. */
int bsd_notready(lua_State *L, bsd_socket *s, const char *call, int verdict) {
  if (verdict == 1) return -2;
  return bsd_sockerror(L, s, call, verdict == 0 ? ETIMEDOUT : EAGAIN);
}


/* ---- creation ---- */

/* Out of descriptors (EMFILE/ENFILE): sockets the script forgot may hold
** them until the collector runs, which knows nothing of descriptors; so
** collect once (their __gc closes them) and tell the caller to retry.
** errno is kept for a caller that does not retry. */
static int outoffds(lua_State *L) {
  int err = errno;
  if (err != EMFILE && err != ENFILE) return 0;
  lua_gc(L, LUA_GCCOLLECT);
  errno = err;
  return 1;
}

static int sock_socket(lua_State *L) {
  int family = bsd_checkint(L, 1);
  int type = bsd_checkint(L, 2);
  int protocol = bsd_optint(L, 3, 0);
  int nonblock = (type & SOCK_NONBLOCK) != 0;
  int fd = socket(family, type | SOCK_CLOEXEC, protocol);
  bsd_socket *s;
  if (fd < 0 && outoffds(L)) fd = socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) return bsd_pusherror(L, "socket", NULL, errno);
  s = bsd_newsocket(L, fd, family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), protocol);
  if (nonblock) {
    s->fd_nonblock = 1;
    s->timeout = 0;
  }
  return 1;
}

static int sock_socketpair(lua_State *L) {
  int family = bsd_optint(L, 1, AF_UNIX);
  int type = bsd_optint(L, 2, SOCK_STREAM);
  int protocol = bsd_optint(L, 3, 0);
  int fds[2];
  if (socketpair(family, type | SOCK_CLOEXEC, protocol, fds) < 0
      && (!outoffds(L) || socketpair(family, type | SOCK_CLOEXEC, protocol, fds) < 0))
    return bsd_pusherror(L, "socketpair", NULL, errno);
  type &= ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  bsd_newsocket(L, fds[0], family, type, protocol);
  bsd_newsocket(L, fds[1], family, type, protocol);
  return 2;
}

static int getintopt(int fd, int name, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, SOL_SOCKET, name, value, &len);
}

/* Wraps fd in a socket object, its family, type and protocol read back
** from the kernel; NULL (nothing pushed, errno set) if fd is no socket. */
bsd_socket *bsd_wrapfd(lua_State *L, int fd) {
  int family, type, protocol, flags;
  bsd_socket *s;
  if (getintopt(fd, SO_DOMAIN, &family) < 0 || getintopt(fd, SO_TYPE, &type) < 0
      || getintopt(fd, SO_PROTOCOL, &protocol) < 0)
    return NULL;
  flags = fcntl(fd, F_GETFL);
  s = bsd_newsocket(L, fd, family, type, protocol);
  if (flags >= 0 && (flags & O_NONBLOCK)) {
    s->fd_nonblock = 1;
    s->timeout = 0;
  }
  return s;
}

static int sock_fromfd(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  luaL_argcheck(L, 0 <= fd && fd <= 0x7FFFFFFF, 1, "not a descriptor");
  if (!bsd_wrapfd(L, (int)fd)) return bsd_pusherror(L, "fromfd", NULL, errno);
  return 1;
}

/* ---- closing ---- */

static int sock_close(lua_State *L) {
  bsd_socket *s = bsd_checksocket(L, 1);
  if (s->fd >= 0) {
    int fd = s->fd;
    s->fd = -1;
    /* Linux frees the descriptor even when close reports EINTR */
    if (close(fd) < 0 && errno != EINTR) return bsd_pusherror(L, "close", NULL, errno);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  bsd_socket *s = bsd_checksocket(L, 1);
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}

static int sock_detach(lua_State *L) {
  bsd_socket *s = checkself(L);
  lua_pushinteger(L, s->fd);
  s->fd = -1;
  return 1;
}

static int sock_fileno(lua_State *L) {
  lua_pushinteger(L, checkself(L)->fd);
  return 1;
}

/* ---- addresses ---- */

static int sock_bind(lua_State *L) {
  bsd_socket *s = checkself(L);
  bsd_addr a;
  if (bsd_getaddrarg(L, 2, s->family, s->type, "bind", &a) == 0) return 3;
  if (bind(s->fd, (struct sockaddr *)&a.ss, a.len) < 0)
    return bsd_addrerror(L, "bind", &a, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_listen(lua_State *L) {
  bsd_socket *s = checkself(L);
  int backlog = bsd_optint(L, 2, SOMAXCONN);
  if (listen(s->fd, backlog) < 0) return bsd_sockerror(L, s, "listen", errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int pushname(lua_State *L, bsd_socket *s, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
               : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (r < 0) return bsd_sockerror(L, s, peer ? "getpeername" : "getsockname", errno);
  bsd_newaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}

static int sock_getsockname(lua_State *L) {
  return pushname(L, checkself(L), 0);
}

static int sock_getpeername(lua_State *L) {
  return pushname(L, checkself(L), 1);
}

/* ---- accept and connect ---- */

static int op_accept(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  int mode = bsd_callmode(L, s);
  double deadline = -1;
  struct sockaddr_storage ss;
  socklen_t len;
  int fd, collected = 0;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline)) return bsd_sockerror(L, s, "accept", ETIMEDOUT);
  for (;;) {
    int r;
    len = sizeof ss;
    fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
    if (fd >= 0) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (!collected && (collected = outoffds(L)) != 0) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_sockerror(L, s, "accept", errno);
    r = bsd_notready(L, s, "accept", bsd_waitready(L, s, mode, BSD_WANT_READ, &deadline, ctx, op_accept));
    if (r != -2) return r;
  }
  bsd_newsocket(L, fd, s->family, s->type, s->protocol);
  bsd_newaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

static int sock_accept(lua_State *L) {
  return op_accept(L, LUA_OK, lua_gettop(L));
}

static int connectresult(lua_State *L, bsd_socket *s, int err) {
  bsd_addr a;
  if (err == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* name the peer we tried, which getpeername cannot tell */
  if (bsd_getaddrarg(L, 2, s->family, s->type, "connect", &a) == 0) return 3;
  return bsd_addrerror(L, "connect", &a, err);
}

/* ctx: argument count, plus CONNECTING once the connect is under way (the
** retry then asks SO_ERROR instead of connecting again) */
#define CONNECTING 0x10000

static int op_connect(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  int argc = (int)(ctx & 0xFFFF), mode = bsd_callmode(L, s), wait;
  double deadline = -1;
  bsd_addr a;
  if (bsd_resumedlate(L, status, argc, &deadline)) return connectresult(L, s, ETIMEDOUT);
  if (!(ctx & CONNECTING)) {
    if (bsd_getaddrarg(L, 2, s->family, s->type, "connect", &a) == 0) return 3;
    if (connect(s->fd, (struct sockaddr *)&a.ss, a.len) == 0) return connectresult(L, s, 0);
    if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN)
      return bsd_addrerror(L, "connect", &a, errno);
    if (mode == MODE_NOWAIT) {
      s->want = BSD_WANT_WRITE;  /* events() tells a scheduler to wait for writability */
      return bsd_addrerror(L, "connect", &a, EINPROGRESS);
    }
    ctx |= CONNECTING;
  }
  /* resumed by the loop: the socket is writable, so the outcome is known */
  for (wait = status == LUA_YIELD ? 0 : 1;; wait = 1) {
    int err = 0;
    socklen_t len = sizeof err;
    if (wait && bsd_waitready(L, s, mode == MODE_BLOCK ? MODE_POLL : mode, BSD_WANT_WRITE,
                          &deadline, ctx, op_connect) == 0)
      return connectresult(L, s, ETIMEDOUT);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != EINPROGRESS && err != EALREADY) return connectresult(L, s, err);
  }
}

static int sock_connect(lua_State *L) {
  return op_connect(L, LUA_OK, lua_gettop(L));
}

/* ---- sending ---- */

static const char *checkdata(lua_State *L, int arg, size_t *len) {
  return luaL_checklstring(L, arg, len);
}

/* data:sub(i, j) bounds, as string.sub counts them */
static size_t posrelat(lua_Integer pos, size_t len) {
  if (pos >= 0) return (size_t)pos;
  if ((size_t)-pos > len) return 0;
  return len + (size_t)pos + 1;
}

static int op_send(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  size_t len, i, j;
  const char *data = checkdata(L, 2, &len);
  int flags, mode = bsd_callmode(L, s);
  double deadline = -1;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline)) return bsd_sockerror(L, s, "send", ETIMEDOUT);
  if (lua_gettop(L) == 2) {  /* the common send(data) */
    flags = MSG_NOSIGNAL;
    i = 1;
    j = len;
  }
  else {
    flags = bsd_optint(L, 5, 0) | MSG_NOSIGNAL;
    i = posrelat(luaL_optinteger(L, 3, 1), len);
    j = posrelat(luaL_optinteger(L, 4, -1), len);
    if (i < 1) i = 1;
    if (j > len) j = len;
  }
  for (;;) {
    ssize_t n = i > j ? send(s->fd, data, 0, flags)
                      : send(s->fd, data + i - 1, j - i + 1, flags);
    int r;
    if (n >= 0) {
      lua_pushinteger(L, n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_sockerror(L, s, "send", errno);
    r = bsd_notready(L, s, "send", bsd_waitready(L, s, mode, BSD_WANT_WRITE, &deadline, ctx, op_send));
    if (r != -2) return r;
  }
}

static int sock_send(lua_State *L) {
  return op_send(L, LUA_OK, lua_gettop(L));
}

/* ctx: bytes sent so far, kept across yields */
static int op_sendall(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  size_t len, sent = (size_t)ctx;
  const char *data = checkdata(L, 2, &len);
  int mode = bsd_callmode(L, s);
  double deadline = -1;
  if (bsd_resumedlate(L, status, 2, &deadline)) {
    bsd_sockerror(L, s, "sendall", ETIMEDOUT);
    lua_pushinteger(L, (lua_Integer)sent);
    return 4;
  }
  while (sent < len) {
    ssize_t n = send(s->fd, data + sent, len - sent, MSG_NOSIGNAL);
    int r;
    if (n >= 0) {
      sent += (size_t)n;
      deadline = -1;  /* progress: the timeout counts from here */
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) r = bsd_sockerror(L, s, "sendall", errno);
    else r = bsd_notready(L, s, "sendall",
                      bsd_waitready(L, s, mode, BSD_WANT_WRITE, &deadline, (lua_KContext)sent, op_sendall));
    if (r == -2) continue;
    lua_pushinteger(L, (lua_Integer)sent);
    return r + 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_sendall(lua_State *L) {
  lua_settop(L, 2);
  return op_sendall(L, LUA_OK, 0);
}

static int op_sendto(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  size_t len;
  const char *data = checkdata(L, 2, &len);
  int mode = bsd_callmode(L, s), used, flags;
  double deadline = -1;
  bsd_addr a;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline)) return bsd_sockerror(L, s, "sendto", ETIMEDOUT);
  if ((used = bsd_getaddrarg(L, 3, s->family, s->type, "sendto", &a)) == 0) return 3;
  flags = (lua_gettop(L) < 3 + used ? 0 : bsd_optint(L, 3 + used, 0)) | MSG_NOSIGNAL;
  for (;;) {
    ssize_t n = sendto(s->fd, data, len, flags, (struct sockaddr *)&a.ss, a.len);
    int r;
    if (n >= 0) {
      lua_pushinteger(L, n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_addrerror(L, "sendto", &a, errno);
    r = bsd_notready(L, s, "sendto", bsd_waitready(L, s, mode, BSD_WANT_WRITE, &deadline, ctx, op_sendto));
    if (r != -2) return r;
  }
}

static int sock_sendto(lua_State *L) {
  return op_sendto(L, LUA_OK, lua_gettop(L));
}

/* ---- receiving ---- */

static size_t checkmaxbytes(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0, arg, "negative byte count");
  return n > RECV_MAX ? RECV_MAX : (size_t)n;
}

/* Reads over RECV_SMALL land in one buffer per module instance (the
** methods' shared BSD_UV_SCRATCH table holds it, grown on demand up to
** RECV_MAX), and only the bytes received are copied into the string: no
** allocation of maxbytes per call, none at all for a call that finds
** nothing to read. */
static char *scratch(lua_State *L, size_t size) {
  char *p;
  lua_rawgeti(L, BSD_UV_SCRATCH, 1);
  p = (char *)lua_touserdata(L, -1);
  if (!p || lua_rawlen(L, -1) < size) {
    p = (char *)lua_newuserdatauv(L, size < 65536 ? 65536 : size, 0);
    lua_rawseti(L, BSD_UV_SCRATCH, 1);
  }
  lua_pop(L, 1);  /* the table keeps it alive */
  return p;
}

static int recvinto(lua_State *L, lua_KContext ctx, lua_KFunction k, double deadline,
                    const char *call, struct sockaddr_storage *from, socklen_t *fromlen) {
  bsd_socket *s = checkself(L);
  size_t max = checkmaxbytes(L, 2);
  int flags = lua_gettop(L) == 2 ? 0 : bsd_optint(L, 3, 0);
  int mode = bsd_callmode(L, s);
  int hinted = flags == 0 && s->type == SOCK_STREAM &&
               (s->family == AF_INET || s->family == AF_INET6);
  char small[RECV_SMALL];
  char *p;
  if (hinted && s->rdrained && mode != MODE_NOWAIT && waitmode(L, s) == MODE_TASK) {
    /* The last read was short: TCP had no more then, and whatever came
    ** since makes the loop's poller report the socket (edge-triggered: a
    ** report per arrival, and a report clears rdrained). So a task waits
    ** for that report instead of a recv that would say EAGAIN; the retry
    ** after the wake-up does read. */
    s->rdrained = 0;
    bsd_waitready(L, s, MODE_TASK, BSD_WANT_READ, &deadline, ctx, k);  /* yields */
  }
  p = max <= sizeof small ? small : scratch(L, max);
  for (;;) {
    ssize_t n;
    int r;
    if (from) *fromlen = sizeof *from;
    n = from ? recvfrom(s->fd, p, max, flags, (struct sockaddr *)from, fromlen)
             : recv(s->fd, p, max, flags);
    if (n >= 0) {
      if ((size_t)n > max) n = (ssize_t)max;  /* MSG_TRUNC reports the real length */
      /* (not at EOF, which no later report would announce again; nor
      ** once rsticky says a short read may have left something) */
      if (hinted && n > 0 && (size_t)n < max && !s->rsticky) s->rdrained = 1;
      lua_pushlstring(L, p, (size_t)n);
      return -2;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_sockerror(L, s, call, errno);
    r = bsd_notready(L, s, call, bsd_waitready(L, s, mode, BSD_WANT_READ, &deadline, ctx, k));
    if (r != -2) return r;
  }
}

static int op_recv(lua_State *L, int status, lua_KContext ctx) {
  double deadline = -1;
  int r;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline))
    return bsd_sockerror(L, checkself(L), "recv", ETIMEDOUT);
  r = recvinto(L, ctx, op_recv, deadline, "recv", NULL, NULL);
  return r == -2 ? 1 : r;
}

static int sock_recv(lua_State *L) {
  return op_recv(L, LUA_OK, lua_gettop(L));
}

static int op_recvfrom(lua_State *L, int status, lua_KContext ctx) {
  struct sockaddr_storage from;
  socklen_t fromlen;
  double deadline = -1;
  int r;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline))
    return bsd_sockerror(L, checkself(L), "recvfrom", ETIMEDOUT);
  from.ss_family = AF_UNSPEC;  /* a connected stream names no sender: fromlen 0, from unwritten */
  r = recvinto(L, ctx, op_recvfrom, deadline, "recvfrom", &from, &fromlen);
  if (r != -2) return r;
  if (fromlen > sizeof(sa_family_t) || from.ss_family == AF_UNIX)
    bsd_newaddr(L, (struct sockaddr *)&from, fromlen);
  else
    lua_pushnil(L);  /* connected stream sockets report no sender */
  return 2;
}

static int sock_recvfrom(lua_State *L) {
  return op_recvfrom(L, LUA_OK, lua_gettop(L));
}

/* The classic read_data loop. The bytes gathered so far live in a
** userdata at index 3 (ctx counts them), so they survive a yield;
** it grows geometrically, so recvall(huge) allocates only what arrives. */
static int op_recvall(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = checkself(L);
  lua_Integer want = luaL_checkinteger(L, 2);
  size_t got = (size_t)ctx;
  int mode = bsd_callmode(L, s);
  double deadline = -1;
  if (bsd_resumedlate(L, status, 3, &deadline))
    return bsd_sockerror(L, s, "recvall", ETIMEDOUT);
  while (got < (size_t)want) {
    size_t cap = lua_rawlen(L, 3);
    ssize_t n;
    if (got == cap) {
      size_t ncap = cap * 2;
      char *nbuf;
      if (ncap > (size_t)want) ncap = (size_t)want;
      nbuf = (char *)lua_newuserdatauv(L, ncap, 0);
      memcpy(nbuf, lua_touserdata(L, 3), got);
      lua_replace(L, 3);
      cap = ncap;
    }
    n = recv(s->fd, (char *)lua_touserdata(L, 3) + got, cap - got, 0);
    if (n > 0) {
      got += (size_t)n;
      deadline = -1;
      continue;
    }
    if (n == 0) {
      const char *end = endtext(L, s);
      lua_pushnil(L);
      lua_pushfstring(L, "recvall%s%s: connection closed after %I of %I bytes",
                      end ? " " : "", end ? end : "", (lua_Integer)got, want);
      lua_pushliteral(L, "EOF");
      lua_pushlstring(L, (const char *)lua_touserdata(L, 3), got);
      return 4;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {  /* the bytes read so far are not lost */
      bsd_sockerror(L, s, "recvall", errno);
      lua_pushlstring(L, (const char *)lua_touserdata(L, 3), got);
      return 4;
    }
    {
      int r = bsd_notready(L, s, "recvall", bsd_waitready(L, s, mode, BSD_WANT_READ, &deadline,
                                                  (lua_KContext)got, op_recvall));
      if (r != -2) {
        lua_pushlstring(L, (const char *)lua_touserdata(L, 3), got);
        return r + 1;
      }
    }
  }
  lua_pushlstring(L, (const char *)lua_touserdata(L, 3), got);
  return 1;
}

static int sock_recvall(lua_State *L) {
  lua_Integer want;
  checkself(L);
  want = luaL_checkinteger(L, 2);
  luaL_argcheck(L, want >= 0, 2, "negative byte count");
  lua_settop(L, 2);
  lua_newuserdatauv(L, want < 4096 ? (size_t)want : 4096, 0);
  return op_recvall(L, LUA_OK, 0);
}

/* ---- shutdown ---- */

static int checkhow(lua_State *L, int arg) {
  static const char *const names[] = {"r", "w", "rw", NULL};
  static const int values[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  lua_Integer how;
  if (lua_type(L, arg) == LUA_TSTRING) return values[luaL_checkoption(L, arg, NULL, names)];
  how = luaL_checkinteger(L, arg);
  luaL_argcheck(L, how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR, arg,
                "\"r\", \"w\", \"rw\" or S.SHUT_* expected");
  return (int)how;
}

static int sock_shutdown(lua_State *L) {
  bsd_socket *s = checkself(L);
  if (shutdown(s->fd, checkhow(L, 2)) < 0) return bsd_sockerror(L, s, "shutdown", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- timeouts and the pollable-object protocol ---- */

static int sock_settimeout(lua_State *L) {
  bsd_socket *s = checkself(L);
  if (lua_isnoneornil(L, 2)) s->timeout = -1;
  else {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t >= 0 && t < 1e9, 2, "timeout must be nil or 0..1e9 seconds");
    s->timeout = t;
  }
  setfdmode(s, s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_setblocking(lua_State *L) {
  bsd_socket *s = checkself(L);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  s->timeout = lua_toboolean(L, 2) ? -1 : 0;
  setfdmode(s, s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gettimeout(lua_State *L) {
  bsd_socket *s = checkself(L);
  if (s->timeout < 0) lua_pushnil(L);
  else lua_pushnumber(L, s->timeout);
  return 1;
}

/* timeout() of the pollable-object protocol: how long a scheduler such as
** cqueues may wait for this socket. nil (no limit of its own) for a blocking
** socket and for a non-blocking one: 0 would read as "expire now". */
static int sock_polltimeout(lua_State *L) {
  bsd_socket *s = checkself(L);
  if (s->timeout <= 0) lua_pushnil(L);
  else lua_pushnumber(L, s->timeout);
  return 1;
}

static int sock_events(lua_State *L) {
  bsd_socket *s = checkself(L);
  static const char *const names[] = {"r", "r", "w", "rw"};
  lua_pushstring(L, names[s->want & 3]);
  return 1;
}

/* ---- tostring ---- */

typedef struct name { int value; const char *name; } name;

static const name familynames[] = {
  {AF_INET, "AF_INET"}, {AF_INET6, "AF_INET6"}, {AF_UNIX, "AF_UNIX"},
#ifdef AF_PACKET
  {AF_PACKET, "AF_PACKET"},
#endif
#ifdef AF_NETLINK
  {AF_NETLINK, "AF_NETLINK"},
#endif
  {0, NULL}
};

static const name typenames[] = {
  {SOCK_STREAM, "SOCK_STREAM"}, {SOCK_DGRAM, "SOCK_DGRAM"}, {SOCK_RAW, "SOCK_RAW"},
  {SOCK_SEQPACKET, "SOCK_SEQPACKET"}, {0, NULL}
};

static const char *nameof(const name *t, int value, char *buf, size_t size) {
  for (; t->name; t++)
    if (t->value == value) return t->name;
  snprintf(buf, size, "%d", value);
  return buf;
}

static void endstring(bsd_socket *s, int peer, char *buf, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
               : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (r < 0) snprintf(buf, size, "-");
  else bsd_addrtostring((struct sockaddr *)&ss, len, buf, size);
}

static int sock_tostring(lua_State *L) {
  bsd_socket *s = bsd_checksocket(L, 1);
  char fam[16], typ[16], local[ADDRSTR_SIZE], peer[ADDRSTR_SIZE];
  if (s->fd < 0) {
    lua_pushliteral(L, "bsdsocket.socket (closed)");
    return 1;
  }
  endstring(s, 0, local, sizeof local);
  endstring(s, 1, peer, sizeof peer);
  lua_pushfstring(L, "bsdsocket.socket fd=%d %s %s %s <-> %s", s->fd,
                  nameof(familynames, s->family, fam, sizeof fam),
                  nameof(typenames, s->type, typ, sizeof typ), local, peer);
  return 1;
}

static const luaL_Reg sock_methods[] = {
  {"bind", sock_bind},
  {"listen", sock_listen},
  {"accept", sock_accept},
  {"connect", sock_connect},
  {"send", sock_send},
  {"sendall", sock_sendall},
  {"recv", sock_recv},
  {"recvall", sock_recvall},
  {"sendto", sock_sendto},
  {"recvfrom", sock_recvfrom},
  {"shutdown", sock_shutdown},
  {"close", sock_close},
  {"getsockname", sock_getsockname},
  {"getpeername", sock_getpeername},
  {"setsockopt", bsd_setsockopt},
  {"getsockopt", bsd_getsockopt},
  {"setblocking", sock_setblocking},
  {"settimeout", sock_settimeout},
  {"gettimeout", sock_gettimeout},
  {"fileno", sock_fileno},
  {"detach", sock_detach},
  {"pollfd", sock_fileno},
  {"events", sock_events},
  {"timeout", sock_polltimeout},
  {NULL, NULL}
};

static const luaL_Reg sock_meta[] = {
  {"__gc", sock_gc},
  {"__close", sock_gc},
  {"__tostring", sock_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg sock_funcs[] = {
  {"socket", sock_socket},
  {"socketpair", sock_socketpair},
  {"fromfd", sock_fromfd},
  {NULL, NULL}
};

void bsd_pushmethodupvalues(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_taskskey);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &scratchholderkey);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &scratchholderkey);
  }
}

void bsd_open_socket(lua_State *L) {
  luaL_newmetatable(L, BSD_SOCKET_MT);
  luaL_setfuncs(L, sock_meta, 0);
  luaL_newlibtable(L, sock_methods);
  bsd_pushmethodupvalues(L);
  luaL_setfuncs(L, sock_methods, BSD_METHOD_UPVALUES);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, sock_funcs, 0);
}
