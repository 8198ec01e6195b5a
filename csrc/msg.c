/*
** Messages: sendmsg/recvmsg with scatter/gather and ancillary data
** (SCM_RIGHTS, SCM_CREDENTIALS, any other as raw bytes), getpeercred,
** and the batched datagram calls sendmmsg/recvmmsg (Linux).
**
** Every call goes through the waiting machinery of socket.c (timeouts,
** non-blocking sockets, yielding to bsdsocket.loop), exactly as recv/send.
*/
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bsdsocket.h"

#define RECV_MAX (1 << 20)            /* as recv: no more than this per message */
#define MAX_PARTS 1024                /* IOV_MAX on Linux */
#ifdef SCM_MAX_FD
#define MAX_RIGHTS SCM_MAX_FD
#else
#define MAX_RIGHTS 253                /* what Linux accepts in one message */
#endif
#define MAX_ANCILLARY 65536
#define MMSG_MAX 1024                 /* UIO_MAXIOV: messages per system call */
#define SCRATCH_KEEP (4 << 20)        /* recvmmsg keeps a scratch up to this size */
#define MMSG_UV_SCRATCH lua_upvalueindex(BSD_METHOD_UPVALUES + 1)  /* ... in this upvalue */
#define MMSG_BYTES (16 << 20)         /* recvmmsg's data buffers per call, at most */
#define FDGUARD_MT "bsdsocket.fdguard"
#ifndef MSG_CMSG_CLOEXEC
#define MSG_CMSG_CLOEXEC 0            /* then received descriptors are not close-on-exec */
#endif

#ifdef SCM_CREDENTIALS
#define ANC_CREDS CMSG_SPACE(sizeof(struct ucred))
#else
#define ANC_CREDS 0
#endif
/* recvmsg's default control buffer: 64 descriptors and credentials */
#define DEFAULT_ANCILLARY (CMSG_SPACE(64 * sizeof(int)) + ANC_CREDS)

static size_t checkmaxbytes(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0, arg, "negative byte count");
  return n > RECV_MAX ? RECV_MAX : (size_t)n;
}

/* ---- sendmsg ---- */

/* parts: a string or an array of strings, referenced by the argument, so
** the pointers stay valid for the call */
static struct iovec *checkparts(lua_State *L, int arg, struct iovec *one, size_t *n) {
  struct iovec *iov;
  size_t i;
  if (lua_type(L, arg) == LUA_TSTRING) {
    one->iov_base = (void *)lua_tolstring(L, arg, &one->iov_len);
    *n = 1;
    return one;
  }
  luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg, "string or array of strings");
  *n = lua_rawlen(L, arg);
  luaL_argcheck(L, *n <= MAX_PARTS, arg, "more than 1024 parts");
  iov = (struct iovec *)lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *iov, 0);
  for (i = 0; i < *n; i++) {
    if (lua_rawgeti(L, arg, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "bad part #%d (string expected, got %s)", (int)i + 1, luaL_typename(L, -1));
    iov[i].iov_base = (void *)lua_tolstring(L, -1, &iov[i].iov_len);
    lua_pop(L, 1);
  }
  return iov;
}

static int ancfield(lua_State *L, int t, const char *name, lua_Integer def) {
  lua_Integer v;
  lua_getfield(L, t, name);
  v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  if (v < INT_MIN || v > INT_MAX) luaL_error(L, "ancillary field '%s' out of range", name);
  return (int)v;
}

static struct cmsghdr *addcmsg(char *buf, size_t *off, int level, int type, size_t len) {
  struct cmsghdr *c = (struct cmsghdr *)(void *)(buf + *off);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(len);
  *off += CMSG_SPACE(len);
  return c;
}

/* The control buffer from the ancillary table at arg:
** { rights = {sock | fd, ...}, credentials = true | {pid=, uid=, gid=},
**   {level=, type=, data=}, ... }. Pushes the buffer (a userdata). */
static void buildcontrol(lua_State *L, int arg, struct msghdr *msg) {
  size_t size = 0, off = 0, nrights = 0, i, nraw;
  int creds;
  char *buf;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, "rights");          /* at arg+? : keep on the stack */
  if (!lua_isnil(L, -1)) {
    luaL_argexpected(L, lua_istable(L, -1), arg, "rights: array of sockets or descriptors");
    nrights = lua_rawlen(L, -1);
    if (nrights > MAX_RIGHTS) luaL_error(L, "more than %d descriptors in one message", MAX_RIGHTS);
    if (nrights) size += CMSG_SPACE(nrights * sizeof(int));
  }
  lua_getfield(L, arg, "credentials");
  creds = lua_toboolean(L, -1);
#ifdef SCM_CREDENTIALS
  if (creds) size += CMSG_SPACE(sizeof(struct ucred));
#else
  if (creds) luaL_error(L, "SCM_CREDENTIALS is not supported on this platform");
#endif
  nraw = lua_rawlen(L, arg);
  for (i = 1; i <= nraw; i++) {
    size_t len;
    if (lua_rawgeti(L, arg, (lua_Integer)i) != LUA_TTABLE)
      luaL_error(L, "ancillary entry #%d must be a table {level=, type=, data=}", (int)i);
    lua_getfield(L, -1, "data");
    if (!lua_isstring(L, -1)) luaL_error(L, "ancillary entry #%d: data must be a string", (int)i);
    lua_tolstring(L, -1, &len);
    if (len > MAX_ANCILLARY) luaL_error(L, "ancillary entry #%d: data too long", (int)i);
    size += CMSG_SPACE(len);
    lua_pop(L, 2);
  }
  luaL_argcheck(L, size <= MAX_ANCILLARY, arg, "ancillary data too long");
  /* stack: rights, credentials */
  buf = (char *)lua_newuserdatauv(L, size ? size : 1, 0);
  memset(buf, 0, size ? size : 1);
  if (nrights) {
    struct cmsghdr *c = addcmsg(buf, &off, SOL_SOCKET, SCM_RIGHTS, nrights * sizeof(int));
    unsigned char *data = CMSG_DATA(c);
    for (i = 0; i < nrights; i++) {
      bsd_socket *s;
      int fd = -1;
      lua_rawgeti(L, -3, (lua_Integer)i + 1);
      s = (bsd_socket *)luaL_testudata(L, -1, BSD_SOCKET_MT);
      if (s) {
        if (s->fd < 0) luaL_error(L, "rights[%d] is a closed socket", (int)i + 1);
        fd = s->fd;
      }
      else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0
               && lua_tointeger(L, -1) <= INT_MAX)
        fd = (int)lua_tointeger(L, -1);
      else
        luaL_error(L, "rights[%d] must be a socket or a descriptor", (int)i + 1);
      lua_pop(L, 1);
      memcpy(data + i * sizeof(int), &fd, sizeof(int));
    }
  }
#ifdef SCM_CREDENTIALS
  if (creds) {
    struct ucred cr;
    struct cmsghdr *c = addcmsg(buf, &off, SOL_SOCKET, SCM_CREDENTIALS, sizeof cr);
    int t = lua_gettop(L) - 1;
    cr.pid = getpid();
    cr.uid = geteuid();
    cr.gid = getegid();
    if (lua_istable(L, t)) {
      cr.pid = (pid_t)ancfield(L, t, "pid", cr.pid);
      cr.uid = (uid_t)ancfield(L, t, "uid", (lua_Integer)cr.uid);
      cr.gid = (gid_t)ancfield(L, t, "gid", (lua_Integer)cr.gid);
    }
    memcpy(CMSG_DATA(c), &cr, sizeof cr);
  }
#endif
  for (i = 1; i <= nraw; i++) {
    size_t len;
    const char *data;
    struct cmsghdr *c;
    int level, type;
    lua_rawgeti(L, arg, (lua_Integer)i);
    level = ancfield(L, -1, "level", 0);
    type = ancfield(L, -1, "type", 0);
    lua_getfield(L, -1, "data");
    data = lua_tolstring(L, -1, &len);
    c = addcmsg(buf, &off, level, type, len);
    memcpy(CMSG_DATA(c), data, len);
    lua_pop(L, 2);
  }
  msg->msg_control = size ? buf : NULL;
  msg->msg_controllen = size;
}

static int op_sendmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = bsd_checkopen(L, 1);
  int mode = bsd_callmode(L, s), used = 1, flags, anc;
  double deadline = -1;
  bsd_addr a;
  struct msghdr msg;
  struct iovec one;
  size_t niov;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline))
    return bsd_sockerror(L, s, "sendmsg", ETIMEDOUT);
  memset(&msg, 0, sizeof msg);
  if (!lua_isnoneornil(L, 3)) {
    if ((used = bsd_getaddrarg(L, 3, s->family, s->type, "sendmsg", &a)) == 0) return 3;
    msg.msg_name = &a.ss;
    msg.msg_namelen = a.len;
  }
  anc = 3 + used;
  flags = bsd_optint(L, anc + 1, 0) | MSG_NOSIGNAL;
  if (lua_isnoneornil(L, anc)) anc = 0;
  else luaL_checktype(L, anc, LUA_TTABLE);
  lua_settop(L, (int)ctx);   /* what follows pushes its buffers above the arguments */
  msg.msg_iov = checkparts(L, 2, &one, &niov);
  msg.msg_iovlen = niov;
  if (anc) buildcontrol(L, anc, &msg);
  for (;;) {
    ssize_t n = sendmsg(s->fd, &msg, flags);
    int r;
    if (n >= 0) {
      lua_pushinteger(L, n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return msg.msg_name ? bsd_addrerror(L, "sendmsg", &a, errno)
                          : bsd_sockerror(L, s, "sendmsg", errno);
    r = bsd_notready(L, s, "sendmsg",
                     bsd_waitready(L, s, mode, BSD_WANT_WRITE, &deadline, ctx, op_sendmsg));
    if (r != -2) return r;
  }
}

/* sock:sendmsg(parts [, addr | path | host, port [, ancillary [, flags]]]) */
static int sock_sendmsg(lua_State *L) {
  return op_sendmsg(L, LUA_OK, lua_gettop(L));
}

/* ---- recvmsg ---- */

/* The control buffer of recvmsg. Descriptors the kernel installs stay
** owned by the guard until they become socket objects or integers (their
** slot is then set to -1); whatever is left when the guard is collected
** (an error while building the results) is closed. */
typedef struct fdguard {
  size_t len;     /* msg_controllen after recvmsg; 0 before */
  int armed;
} fdguard;

#define GUARD_OFF CMSG_ALIGN(sizeof(fdguard))
#define GUARD_BUF(g) ((char *)(g) + GUARD_OFF)

static void guardwalk(fdguard *g, lua_State *L, int convert, int rights);

static int guard_gc(lua_State *L) {
  fdguard *g = (fdguard *)luaL_checkudata(L, 1, FDGUARD_MT);
  if (g->armed) guardwalk(g, L, 0, 0);
  g->armed = 0;
  return 0;
}

/* Walks the SCM_RIGHTS descriptors: closes them (convert = 0), or appends
** each to the table at index rights as a socket object or an integer. */
static void guardwalk(fdguard *g, lua_State *L, int convert, int rights) {
  struct msghdr msg;
  struct cmsghdr *c;
  memset(&msg, 0, sizeof msg);
  msg.msg_control = GUARD_BUF(g);
  msg.msg_controllen = g->len;
  for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    unsigned char *data = CMSG_DATA(c);
    size_t i, n;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (i = 0; i < n; i++) {
      int fd, none = -1;
      memcpy(&fd, data + i * sizeof(int), sizeof fd);
      if (fd < 0) continue;
      if (convert) {
        if (!bsd_wrapfd(L, fd)) lua_pushinteger(L, fd);  /* not a socket */
        lua_rawseti(L, rights, (lua_Integer)lua_rawlen(L, rights) + 1);
      }
      else close(fd);
      memcpy(data + i * sizeof(int), &none, sizeof none);
    }
  }
}

static void pushcredentials(lua_State *L, const void *p) {
#ifdef SCM_CREDENTIALS
  struct ucred cr;
  memcpy(&cr, p, sizeof cr);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, cr.pid);
  lua_setfield(L, -2, "pid");
  lua_pushinteger(L, (lua_Integer)cr.uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)cr.gid);
  lua_setfield(L, -2, "gid");
#else
  (void)p;
  lua_pushnil(L);
#endif
}

/* the ancillary table of a received message */
static void pushancillary(lua_State *L, fdguard *g) {
  struct msghdr msg;
  struct cmsghdr *c;
  int t;
  lua_Integer nraw = 0;
  lua_newtable(L);
  t = lua_gettop(L);
  memset(&msg, 0, sizeof msg);
  msg.msg_control = GUARD_BUF(g);
  msg.msg_controllen = g->len;
  for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    size_t len = c->cmsg_len - CMSG_LEN(0);
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) continue;
#ifdef SCM_CREDENTIALS
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS
        && len >= sizeof(struct ucred)) {
      pushcredentials(L, CMSG_DATA(c));
      lua_setfield(L, t, "credentials");
      continue;
    }
#endif
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, c->cmsg_level);
    lua_setfield(L, -2, "level");
    lua_pushinteger(L, c->cmsg_type);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, (const char *)CMSG_DATA(c), len);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, t, ++nraw);
  }
  lua_newtable(L);
  guardwalk(g, L, 1, lua_gettop(L));
  if (lua_rawlen(L, -1) > 0) lua_setfield(L, t, "rights");
  else lua_pop(L, 1);
  g->armed = 0;
}

static int op_recvmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = bsd_checkopen(L, 1);
  double deadline = -1;
  int late = bsd_resumedlate(L, status, (int)ctx, &deadline);  /* first: restores the stack */
  size_t max = checkmaxbytes(L, 2);
  lua_Integer ancsize = luaL_optinteger(L, 3, (lua_Integer)DEFAULT_ANCILLARY);
  int flags = bsd_optint(L, 4, 0) | MSG_CMSG_CLOEXEC;
  int mode;
  struct sockaddr_storage from;
  struct msghdr msg;
  struct iovec iov;
  fdguard *g;
  luaL_Buffer b;
  luaL_argcheck(L, 0 <= ancsize && ancsize <= MAX_ANCILLARY, 3, "ancillary size out of range 0..65536");
  if (late) return bsd_sockerror(L, s, "recvmsg", ETIMEDOUT);
  mode = bsd_callmode(L, s);
  g = (fdguard *)lua_newuserdatauv(L, GUARD_OFF + (size_t)ancsize, 0);
  g->len = 0;
  g->armed = 0;
  luaL_setmetatable(L, FDGUARD_MT);
  iov.iov_base = luaL_buffinitsize(L, &b, max);
  iov.iov_len = max;
  for (;;) {
    ssize_t n;
    int r;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ancsize ? GUARD_BUF(g) : NULL;
    msg.msg_controllen = (size_t)ancsize;
    n = recvmsg(s->fd, &msg, flags);
    if (n >= 0) {
      g->len = msg.msg_controllen;
      g->armed = 1;
      /* with MSG_TRUNC, n is the datagram's real length */
      luaL_pushresultsize(&b, (size_t)n > max ? max : (size_t)n);
      pushancillary(L, g);
      if (msg.msg_namelen > 0) bsd_newaddr(L, (struct sockaddr *)&from, msg.msg_namelen);
      else lua_pushnil(L);
      lua_rotate(L, -2, 1);   /* data, addr, ancillary */
      lua_pushinteger(L, msg.msg_flags & ~MSG_CMSG_CLOEXEC);
      return 4;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_sockerror(L, s, "recvmsg", errno);
    r = bsd_notready(L, s, "recvmsg",
                     bsd_waitready(L, s, mode, BSD_WANT_READ, &deadline, ctx, op_recvmsg));
    if (r != -2) return r;
  }
}

/* sock:recvmsg(maxbytes [, maxancillary [, flags]]) → data, addr, ancillary, msgflags */
static int sock_recvmsg(lua_State *L) {
  return op_recvmsg(L, LUA_OK, lua_gettop(L));
}

/* ---- getpeercred ---- */

static int sock_getpeercred(lua_State *L) {
  bsd_socket *s = bsd_checkopen(L, 1);
#ifdef SO_PEERCRED
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
    return bsd_sockerror(L, s, "getpeercred", errno);
  pushcredentials(L, &cr);
  return 1;
#else
  return bsd_sockerror(L, s, "getpeercred", ENOTSUP);
#endif
}

/* ---- sendmmsg / recvmmsg ---- */

#if defined(__linux__) && defined(MSG_WAITFORONE)

/* One batch of at most MMSG_MAX datagrams from list[first..first+n-1]. An
** entry is a string (sent to the default address, if any) or a table
** {data, addr} where addr is an addr, a Unix path, or host, port.
** Returns 0 with nil, msg, code on top when a host does not resolve. */
static int buildbatch(lua_State *L, bsd_socket *s, int list, size_t first, size_t n,
                       const bsd_addr *def, struct mmsghdr *m, struct iovec *iov,
                       bsd_addr *addrs) {
  size_t i;
  for (i = 0; i < n; i++) {
    lua_Integer k = (lua_Integer)first + (lua_Integer)i + 1;
    const bsd_addr *to = def;
    memset(&m[i], 0, sizeof m[i]);
    switch (lua_rawgeti(L, list, k)) {
      case LUA_TSTRING:
        iov[i].iov_base = (void *)lua_tolstring(L, -1, &iov[i].iov_len);
        break;
      case LUA_TTABLE: {
        int e = lua_gettop(L);
        if (lua_rawgeti(L, e, 1) != LUA_TSTRING)
          luaL_error(L, "datagram #%I: data must be a string", k);
        iov[i].iov_base = (void *)lua_tolstring(L, -1, &iov[i].iov_len);
        lua_pop(L, 1);  /* referenced by the entry */
        lua_rawgeti(L, e, 2);
        if (!lua_isnil(L, -1)) {
          bsd_addr *a = bsd_testaddr(L, -1);
          if (a) to = a;   /* referenced by the entry: no copy */
          else {
            int top;
            lua_rawgeti(L, e, 3);
            top = lua_gettop(L);
            if (bsd_getaddrarg(L, top - 1, s->family, s->type, "sendmmsg", &addrs[i]) == 0)
              return 0;
            to = &addrs[i];
            lua_pop(L, 1);
          }
        }
        lua_pop(L, 1);
        break;
      }
      default:
        luaL_error(L, "datagram #%I must be a string or a table {data, addr}", k);
    }
    lua_pop(L, 1);
    m[i].msg_hdr.msg_iov = &iov[i];
    m[i].msg_hdr.msg_iovlen = 1;
    if (to) {
      m[i].msg_hdr.msg_name = (void *)&to->ss;
      m[i].msg_hdr.msg_namelen = to->len;
    }
  }
  return 1;
}

static int batcherror(lua_State *L, bsd_socket *s, const char *call,
                      const struct mmsghdr *m, int err) {
  bsd_addr a;
  if (!m->msg_hdr.msg_name) return bsd_sockerror(L, s, call, err);
  a.len = m->msg_hdr.msg_namelen;
  memcpy(&a.ss, m->msg_hdr.msg_name, a.len);
  return bsd_addrerror(L, call, &a, err);
}

/* ctx: the argument count. The call waits only while nothing is sent, so
** a retry after a yield starts from the first datagram again. */
static int op_sendmmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = bsd_checkopen(L, 1);
  int mode = bsd_callmode(L, s), used = 1, flags, hasdef;
  double deadline = -1;
  size_t total, sent = 0, cap;
  bsd_addr def, *addrs;
  struct mmsghdr *m;
  struct iovec *iov;
  char *scratch;
  if (bsd_resumedlate(L, status, (int)ctx, &deadline))
    return bsd_sockerror(L, s, "sendmmsg", ETIMEDOUT);
  luaL_checktype(L, 2, LUA_TTABLE);
  hasdef = !lua_isnoneornil(L, 3);
  if (hasdef
      && (used = bsd_getaddrarg(L, 3, s->family, s->type, "sendmmsg", &def)) == 0)
    return 3;
  flags = bsd_optint(L, 3 + used, 0) | MSG_NOSIGNAL;
  total = lua_rawlen(L, 2);
  cap = total < MMSG_MAX ? total : MMSG_MAX;
  scratch = (char *)lua_newuserdatauv(L, (cap ? cap : 1) * (sizeof *m + sizeof *iov + sizeof *addrs), 0);
  m = (struct mmsghdr *)(void *)scratch;
  iov = (struct iovec *)(void *)(scratch + cap * sizeof *m);
  addrs = (bsd_addr *)(void *)(scratch + cap * (sizeof *m + sizeof *iov));
  while (sent < total) {
    size_t n = total - sent < cap ? total - sent : cap, done = 0;
    if (!buildbatch(L, s, 2, sent, n, hasdef ? &def : NULL, m, iov, addrs)) {
      if (sent == 0) return 3;   /* nil, msg, code of the resolver */
      break;
    }
    while (done < n) {
      int r = sendmmsg(s->fd, m + done, (unsigned)(n - done), flags);
      if (r > 0) {
        done += (size_t)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (sent + done > 0) {   /* report what went; the error comes again next call */
        lua_pushinteger(L, (lua_Integer)sent + (lua_Integer)done);
        return 1;
      }
      if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return batcherror(L, s, "sendmmsg", m, errno);
      r = bsd_notready(L, s, "sendmmsg",
                       bsd_waitready(L, s, mode, BSD_WANT_WRITE, &deadline, ctx, op_sendmmsg));
      if (r != -2) return r;
    }
    sent += n;
  }
  lua_pushinteger(L, (lua_Integer)sent);
  return 1;
}

/* sock:sendmmsg(list [, addr | path | host, port [, flags]]) → count sent */
static int sock_sendmmsg(lua_State *L) {
  return op_sendmmsg(L, LUA_OK, lua_gettop(L));
}

/* The receive scratch (headers, iovecs, addresses and count * maxbytes of
** data) lives in upvalue 1 and is reused while it is at most SCRATCH_KEEP
** bytes; each datagram then costs its string, its table and, when its
** sender differs from the previous one's, its addr. */
static int op_recvmmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = bsd_checkopen(L, 1);
  double deadline = -1;
  int late = bsd_resumedlate(L, status, (int)ctx, &deadline);  /* first: restores the stack */
  lua_Integer count = luaL_checkinteger(L, 2);
  size_t max = checkmaxbytes(L, 3), i, need, per;
  int flags = bsd_optint(L, 4, 0) | MSG_WAITFORONE;
  int mode, n, prev = 0, scr;
  struct mmsghdr *m;
  struct iovec *iov;
  struct sockaddr_storage *from;
  char *data;
  luaL_argcheck(L, 1 <= count && count <= MMSG_MAX, 2, "count out of range 1..1024");
  if (late) return bsd_sockerror(L, s, "recvmmsg", ETIMEDOUT);
  mode = bsd_callmode(L, s);
  per = sizeof *m + sizeof *iov + sizeof *from;
  /* a batch fills at most MMSG_BYTES of buffers: fewer datagrams per call
  ** (recvmmsg may always return fewer) rather than count * maxbytes */
  if ((size_t)count * max > MMSG_BYTES) count = max >= MMSG_BYTES ? 1 : (lua_Integer)(MMSG_BYTES / max);
  need = (size_t)count * (per + max);
  lua_pushvalue(L, MMSG_UV_SCRATCH);
  if (lua_rawlen(L, -1) < need) {
    lua_pop(L, 1);
    lua_newuserdatauv(L, need, 0);
    if (need <= SCRATCH_KEEP) {
      lua_pushvalue(L, -1);
      lua_replace(L, MMSG_UV_SCRATCH);
    }
  }
  scr = lua_gettop(L);   /* on the stack, so it lives through the call */
  m = (struct mmsghdr *)lua_touserdata(L, scr);
  iov = (struct iovec *)(void *)((char *)m + (size_t)count * sizeof *m);
  from = (struct sockaddr_storage *)(void *)((char *)iov + (size_t)count * sizeof *iov);
  data = (char *)from + (size_t)count * sizeof *from;
  for (;;) {
    for (i = 0; i < (size_t)count; i++) {
      iov[i].iov_base = data + i * max;
      iov[i].iov_len = max;
      memset(&m[i], 0, sizeof m[i]);
      m[i].msg_hdr.msg_name = &from[i];
      m[i].msg_hdr.msg_namelen = sizeof from[i];
      m[i].msg_hdr.msg_iov = &iov[i];
      m[i].msg_hdr.msg_iovlen = 1;
    }
    n = recvmmsg(s->fd, m, (unsigned)count, flags, NULL);
    if (n >= 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return bsd_sockerror(L, s, "recvmmsg", errno);
    n = bsd_notready(L, s, "recvmmsg",
                     bsd_waitready(L, s, mode, BSD_WANT_READ, &deadline, ctx, op_recvmmsg));
    if (n != -2) return n;
  }
  lua_createtable(L, n, 0);
  for (i = 0; i < (size_t)n; i++) {
    size_t len = m[i].msg_len > max ? max : m[i].msg_len;
    socklen_t alen = m[i].msg_hdr.msg_namelen;
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, iov[i].iov_base, len);
    lua_setfield(L, -2, "data");
    if (alen > 0) {
      if (prev && m[prev - 1].msg_hdr.msg_namelen == alen
          && memcmp(&from[prev - 1], &from[i], alen) == 0)
        lua_pushvalue(L, scr + 2);   /* same sender: the same addr object */
      else {
        bsd_newaddr(L, (struct sockaddr *)&from[i], alen);
        lua_pushvalue(L, -1);
        if (prev) lua_replace(L, scr + 2);
        else lua_insert(L, scr + 2);
        prev = (int)i + 1;
      }
      lua_setfield(L, -2, "addr");
    }
    if (m[i].msg_hdr.msg_flags & MSG_TRUNC) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "truncated");
    }
    lua_rawseti(L, scr + 1, (lua_Integer)i + 1);
  }
  lua_settop(L, scr + 1);
  return 1;
}

/* sock:recvmmsg(count, maxbytes [, flags]) → { {data=, addr=}, ... } */
static int sock_recvmmsg(lua_State *L) {
  return op_recvmmsg(L, LUA_OK, lua_gettop(L));
}

#endif

static const luaL_Reg msg_methods[] = {
  {"sendmsg", sock_sendmsg},
  {"recvmsg", sock_recvmsg},
  {"getpeercred", sock_getpeercred},
#if defined(__linux__) && defined(MSG_WAITFORONE)
  {"sendmmsg", sock_sendmmsg},
#endif
  {NULL, NULL}
};

void bsd_open_msg(lua_State *L) {
  luaL_newmetatable(L, FDGUARD_MT);
  lua_pushcfunction(L, guard_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_getmetatable(L, BSD_SOCKET_MT);
  lua_getfield(L, -1, "__index");
  bsd_pushmethodupvalues(L);
  luaL_setfuncs(L, msg_methods, BSD_METHOD_UPVALUES);
#if defined(__linux__) && defined(MSG_WAITFORONE)
  bsd_pushmethodupvalues(L);
  lua_newuserdatauv(L, 0, 0);   /* recvmmsg's own scratch, grown on demand */
  lua_pushcclosure(L, sock_recvmmsg, BSD_METHOD_UPVALUES + 1);
  lua_setfield(L, -2, "recvmmsg");
#endif
  lua_pop(L, 2);
}
