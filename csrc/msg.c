/*
** Messages: sendmsg/recvmsg with scatter/gather and ancillary data
** (SCM_RIGHTS, SCM_CREDENTIALS, any other as raw bytes), getpeercred,
** and the batched datagram calls sendmmsg/recvmmsg (the system calls
** where the kernel has them, else a loop of sendmsg/recvmsg).
**
** Every call supplies only its system call to socket.c's I/O loop
** (bsd_iorun: timeouts, non-blocking sockets, yielding to bsdsocket.loop),
** exactly as recv/send do.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bsdsocket.h"

#if BSD_HAVE_LOCAL_PEERCRED
#include <sys/ucred.h>
#endif

#define MAX_PARTS 1024                /* IOV_MAX on Linux */
#ifdef SCM_MAX_FD
#define MAX_RIGHTS SCM_MAX_FD
#else
#define MAX_RIGHTS 253                /* what Linux accepts in one message */
#endif
#define MAX_ANCILLARY 65536
#define MMSG_MAX 1024                 /* UIO_MAXIOV: messages per system call */
#define SCRATCH_KEEP (4 << 20) /* recvmmsg keeps a scratch up to this size */
#define MMSG_UV_SCRATCH                                                        \
  lua_upvalueindex(BSD_METHOD_UPVALUES + 1) /* ... in this upvalue */
#define MMSG_BYTES (16 << 20) /* recvmmsg's data buffers per call, at most */
#define FDGUARD_MT "bsdsocket.fdguard"

/* credentials as ancillary data: Linux's (sent as given, checked by the
** kernel) or FreeBSD's (filled in by the kernel) */
#if BSD_HAVE_SCM_CREDENTIALS
#define SCM_CRED SCM_CREDENTIALS
typedef struct ucred anccred;
#elif BSD_HAVE_SCM_CREDS
#define SCM_CRED SCM_CREDS
typedef struct cmsgcred anccred;
#endif
#ifdef SCM_CRED
#define ANC_CREDS CMSG_SPACE(sizeof(anccred))
#else
#define ANC_CREDS 0
#endif
/* recvmsg's default control buffer: 64 descriptors and credentials */
#define DEFAULT_ANCILLARY (CMSG_SPACE(64 * sizeof(int)) + ANC_CREDS)

/* ---- sendmsg ---- */

/* parts: a string or an array of strings, referenced by the argument, so
** the pointers stay valid for the call */
static struct iovec *checkparts(lua_State *L, int arg, struct iovec *one,
                                size_t *n) {
  struct iovec *iov;
  size_t i;
  if (lua_type(L, arg) == LUA_TSTRING) {
    one->iov_base = (void *)lua_tolstring(L, arg, &one->iov_len);
    *n = 1;
    return one;
  }
  luaL_argexpected(L, lua_type(L, arg) == LUA_TTABLE, arg,
                   "string or array of strings");
  *n = lua_rawlen(L, arg);
  luaL_argcheck(L, *n <= MAX_PARTS, arg, "more than 1024 parts");
  iov = (struct iovec *)lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *iov, 0);
  for (i = 0; i < *n; i++) {
    if (lua_rawgeti(L, arg, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "bad part #%d (string expected, got %s)", (int)i + 1,
                 luaL_typename(L, -1));
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
  if (v < INT_MIN || v > INT_MAX)
    luaL_error(L, "ancillary field '%s' out of range", name);
  return (int)v;
}

static struct cmsghdr *addcmsg(char *buf, size_t *off, int level, int type,
                               size_t len) {
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
    luaL_argexpected(L, lua_istable(L, -1), arg,
                     "rights: array of sockets or descriptors");
    nrights = lua_rawlen(L, -1);
    if (nrights > MAX_RIGHTS)
      luaL_error(L, "more than %d descriptors in one message", MAX_RIGHTS);
    if (nrights) size += CMSG_SPACE(nrights * sizeof(int));
  }
  lua_getfield(L, arg, "credentials");
  creds = lua_toboolean(L, -1);
#ifdef SCM_CRED
  if (creds) size += CMSG_SPACE(sizeof(anccred));
#else
  if (creds) luaL_error(L, "SCM_CREDENTIALS is not supported on this platform");
#endif
  nraw = lua_rawlen(L, arg);
  for (i = 1; i <= nraw; i++) {
    size_t len;
    if (lua_rawgeti(L, arg, (lua_Integer)i) != LUA_TTABLE)
      luaL_error(L,
                 "ancillary entry #%d must be a table {level=, type=, data=}",
                 (int)i);
    lua_getfield(L, -1, "data");
    if (!lua_isstring(L, -1))
      luaL_error(L, "ancillary entry #%d: data must be a string", (int)i);
    lua_tolstring(L, -1, &len);
    if (len > MAX_ANCILLARY)
      luaL_error(L, "ancillary entry #%d: data too long", (int)i);
    size += CMSG_SPACE(len);
    lua_pop(L, 2);
  }
  luaL_argcheck(L, size <= MAX_ANCILLARY, arg, "ancillary data too long");
  /* stack: rights, credentials */
  buf = (char *)lua_newuserdatauv(L, size ? size : 1, 0);
  memset(buf, 0, size ? size : 1);
  if (nrights) {
    struct cmsghdr *c =
        addcmsg(buf, &off, SOL_SOCKET, SCM_RIGHTS, nrights * sizeof(int));
    unsigned char *data = CMSG_DATA(c);
    for (i = 0; i < nrights; i++) {
      bsd_socket *s;
      int fd = -1;
      lua_rawgeti(L, -3, (lua_Integer)i + 1);
      s = (bsd_socket *)luaL_testudata(L, -1, BSD_SOCKET_MT);
      if (s) {
        if (s->fd < 0)
          luaL_error(L, "rights[%d] is a closed socket", (int)i + 1);
        fd = s->fd;
      }
      else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0
               && lua_tointeger(L, -1) <= INT_MAX)
        fd = (int)lua_tointeger(L, -1);
      else
        luaL_error(L, "rights[%d] must be a socket or a descriptor",
                   (int)i + 1);
      lua_pop(L, 1);
      memcpy(data + i * sizeof(int), &fd, sizeof(int));
    }
  }
#if BSD_HAVE_SCM_CREDS
  if (creds) {   /* the kernel fills it in: a table's fields are not used */
    anccred cr;
    struct cmsghdr *c = addcmsg(buf, &off, SOL_SOCKET, SCM_CRED, sizeof cr);
    memset(&cr, 0, sizeof cr);
    memcpy(CMSG_DATA(c), &cr, sizeof cr);
  }
#elif defined(SCM_CRED)
  if (creds) {
    anccred cr;
    struct cmsghdr *c = addcmsg(buf, &off, SOL_SOCKET, SCM_CRED, sizeof cr);
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

typedef struct msgargs {
  struct msghdr msg;
  int flags;
  ssize_t n;
} msgargs;

static bsd_iostatus impl_sendmsg(lua_State *L, bsd_io *io) {
  msgargs *m = (msgargs *)io->data;
  (void)L;
  m->n = bsd_sendmsg(io->s->fd, &m->msg, m->flags);
  return bsd_iosyscall(io, m->n, BSD_WANT_WRITE);
}

static int op_sendmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  bsd_socket *s = bsd_iobegin(L, &io, "sendmsg", status, (int)ctx);
  int used = 1, flags, anc, r;
  bsd_addr a;
  msgargs m;
  struct msghdr msg;
  struct iovec one;
  size_t niov;
  memset(&msg, 0, sizeof msg);
  if (!lua_isnoneornil(L, 3)) {
    if ((used = bsd_getaddrarg(L, 3, s->family, s->type, "sendmsg", &a)) == 0)
      return 3;
    msg.msg_name = &a.ss;
    msg.msg_namelen = a.len;
  }
  anc = 3 + used;
  flags = bsd_optint(L, anc + 1, 0) | BSD_MSG_NOSIGNAL;
  if (lua_isnoneornil(L, anc)) anc = 0;
  else luaL_checktype(L, anc, LUA_TTABLE);
  /* what follows pushes its buffers above the arguments */
  lua_settop(L, (int)ctx);
  msg.msg_iov = checkparts(L, 2, &one, &niov);
  msg.msg_iovlen = niov;
  if (anc) buildcontrol(L, anc, &msg);
  m.msg = msg;
  m.flags = flags;
  io.impl = impl_sendmsg;
  io.data = &m;
  bsd_ioflags(&io, flags);
  if (msg.msg_name) io.peer = &a;
  if ((r = bsd_iorun(L, &io, ctx, op_sendmsg)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)m.n);
  return 1;
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

/* what guardwalk does with each descriptor received */
#define CLOSE 0
#define CONVERT 1
#define CLOEXEC 2   /* without MSG_CMSG_CLOEXEC: set it at once */

static void guardwalk(fdguard *g, lua_State *L, int convert, int rights);

static int guard_gc(lua_State *L) {
  fdguard *g = (fdguard *)luaL_checkudata(L, 1, FDGUARD_MT);
  if (g->armed) guardwalk(g, L, CLOSE, 0);
  g->armed = 0;
  return 0;
}

/* Walks the SCM_RIGHTS descriptors: closes them (CLOSE), makes them
** close-on-exec (CLOEXEC), or appends each to the table at index rights as
** a socket object or an integer (CONVERT). */
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
      if (convert == CLOEXEC) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0) (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        continue;
      }
      if (convert) {
        if (!bsd_wrapfd(L, fd)) lua_pushinteger(L, fd);  /* not a socket */
        lua_rawseti(L, rights, (lua_Integer)lua_rawlen(L, rights) + 1);
      }
      else close(fd);
      memcpy(data + i * sizeof(int), &none, sizeof none);
    }
  }
}

#if defined(SCM_CRED) || BSD_HAVE_PEERCRED
/* { pid =, uid =, gid = }; pid < 0: not known (left out) */
static void pushcred(lua_State *L, lua_Integer pid, lua_Integer uid,
                     lua_Integer gid) {
  lua_createtable(L, 0, 3);
  if (pid >= 0) {
    lua_pushinteger(L, pid);
    lua_setfield(L, -2, "pid");
  }
  lua_pushinteger(L, uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, gid);
  lua_setfield(L, -2, "gid");
}
#endif

#ifdef SCM_CRED
static void pushcredentials(lua_State *L, const void *p) {
  anccred cr;
  memcpy(&cr, p, sizeof cr);
#if BSD_HAVE_SCM_CREDS
  pushcred(L, cr.cmcred_pid, (lua_Integer)cr.cmcred_euid,
           (lua_Integer)cr.cmcred_groups[0]);   /* the effective gid */
#else
  pushcred(L, cr.pid, (lua_Integer)cr.uid, (lua_Integer)cr.gid);
#endif
}
#endif

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
#ifdef SCM_CRED
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CRED
        && len >= sizeof(anccred)) {
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
  guardwalk(g, L, CONVERT, lua_gettop(L));
  if (lua_rawlen(L, -1) > 0) lua_setfield(L, t, "rights");
  else lua_pop(L, 1);
  g->armed = 0;
}

typedef struct recvmsgargs {
  struct sockaddr_storage from;
  struct msghdr msg;
  struct iovec iov;
  fdguard *g;
  size_t ancsize;
  int flags;
  ssize_t n;
} recvmsgargs;

static bsd_iostatus impl_recvmsg(lua_State *L, bsd_io *io) {
  recvmsgargs *a = (recvmsgargs *)io->data;
  (void)L;
  memset(&a->msg, 0, sizeof a->msg);
  a->msg.msg_name = &a->from;
  a->msg.msg_namelen = sizeof a->from;
  a->msg.msg_iov = &a->iov;
  a->msg.msg_iovlen = 1;
  a->msg.msg_control = a->ancsize ? GUARD_BUF(a->g) : NULL;
  a->msg.msg_controllen = a->ancsize;
  a->n = recvmsg(io->s->fd, &a->msg, a->flags);
  return bsd_iosyscall(io, a->n, BSD_WANT_READ);
}

static int op_recvmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  size_t max;
  lua_Integer ancsize;
  recvmsgargs a;
  luaL_Buffer b;
  int r;
  bsd_iobegin(L, &io, "recvmsg", status, (int)ctx);
  max = bsd_checkmaxbytes(L, 2);
  ancsize = luaL_optinteger(L, 3, (lua_Integer)DEFAULT_ANCILLARY);
  a.flags = bsd_optint(L, 4, 0) | BSD_MSG_CMSG_CLOEXEC;
  luaL_argcheck(L, 0 <= ancsize && ancsize <= MAX_ANCILLARY, 3,
                "ancillary size out of range 0..65536");
  a.ancsize = (size_t)ancsize;
  a.g = (fdguard *)lua_newuserdatauv(L, GUARD_OFF + a.ancsize, 0);
  a.g->len = 0;
  a.g->armed = 0;
  luaL_setmetatable(L, FDGUARD_MT);
  a.iov.iov_base = luaL_buffinitsize(L, &b, max);
  a.iov.iov_len = max;
  io.impl = impl_recvmsg;
  io.data = &a;
  bsd_ioflags(&io, a.flags);
  if ((r = bsd_iorun(L, &io, ctx, op_recvmsg)) != BSD_IO_FINISHED) return r;
  a.g->len = a.msg.msg_controllen;
  a.g->armed = 1;
  if (!BSD_HAVE_MSG_CMSG_CLOEXEC) guardwalk(a.g, L, CLOEXEC, 0);
  /* with MSG_TRUNC, n is the datagram's real length */
  luaL_pushresultsize(&b, (size_t)a.n > max ? max : (size_t)a.n);
  pushancillary(L, a.g);
  if (a.msg.msg_namelen > 0)
    bsd_newaddr(L, (struct sockaddr *)&a.from, a.msg.msg_namelen);
  else lua_pushnil(L);
  lua_rotate(L, -2, 1);   /* data, addr, ancillary */
  lua_pushinteger(L, a.msg.msg_flags & ~BSD_MSG_CMSG_CLOEXEC);
  return 4;
}

/* sock:recvmsg(maxbytes [, maxancillary [, flags]])
**   → data, addr, ancillary, msgflags */
static int sock_recvmsg(lua_State *L) {
  return op_recvmsg(L, LUA_OK, lua_gettop(L));
}

/* ---- getpeercred ---- */

/* Each platform's way, the first it has: SO_PEERCRED (Linux: pid, uid,
** gid), LOCAL_PEERCRED (the BSDs' xucred: uid and groups; pid where the
** kernel gives it), getpeereid (uid, gid). */
#if BSD_HAVE_PEERCRED
static int peercred(int fd, lua_State *L) {
#if BSD_HAVE_SO_PEERCRED
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) return -1;
  pushcred(L, cr.pid, (lua_Integer)cr.uid, (lua_Integer)cr.gid);
  return 0;
#elif BSD_HAVE_LOCAL_PEERCRED
  struct xucred cr;
  socklen_t len = sizeof cr;
  lua_Integer pid = -1;
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERCRED, &cr, &len) < 0) return -1;
  if (cr.cr_version != XUCRED_VERSION || cr.cr_ngroups < 1) {
    errno = EINVAL;
    return -1;
  }
#if defined(cr_pid)
  pid = cr.cr_pid;                      /* FreeBSD 13 and later */
#elif defined(LOCAL_PEERPID)
  {
    pid_t p;
    socklen_t plen = sizeof p;
    if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &p, &plen) == 0) pid = p;
  }
#endif
  pushcred(L, pid, (lua_Integer)cr.cr_uid, (lua_Integer)cr.cr_groups[0]);
  return 0;
#elif BSD_HAVE_GETPEEREID
  uid_t uid;
  gid_t gid;
  if (getpeereid(fd, &uid, &gid) < 0) return -1;
  pushcred(L, -1, (lua_Integer)uid, (lua_Integer)gid);
  return 0;
#endif
}
#endif

static int sock_getpeercred(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
#if BSD_HAVE_PEERCRED
  if (peercred(s->fd, L) < 0) return bsd_sockerror(L, s, "getpeercred", errno);
  return 1;
#else
  (void)s;
  return bsd_pushfail(L, "getpeercred", NULL,
                      "not supported on " BSD_OS, "ENOTSUP");
#endif
}

/* ---- sendmmsg / recvmmsg ---- */

#if BSD_HAVE_MMSG
typedef struct mmsghdr mmsg;
#define WAITFORONE MSG_WAITFORONE
#else
/* mmsg's shape, for the loops that stand in for the calls */
typedef struct mmsg {
  struct msghdr msg_hdr;
  unsigned msg_len;
} mmsg;
#define WAITFORONE 0
#endif

/* sendmmsg's results: the count sent, or -1 (errno) when none went. The
** loop stops at the first error, which the next call meets again. */
static int sendbatch(int fd, mmsg *m, size_t n, int flags) {
#if BSD_HAVE_MMSG && BSD_NEED_PIPEGUARD
  bsd_pipeguard g;
  int r;
  bsd_pipeguard_on(&g);
  r = (int)sendmmsg(fd, m, (unsigned)n, flags);
  bsd_pipeguard_off(&g);
  return r;
#elif BSD_HAVE_MMSG
  return (int)sendmmsg(fd, m, (unsigned)n, flags);
#else
  size_t i;
  for (i = 0; i < n; i++) {
    ssize_t r = bsd_sendmsg(fd, &m[i].msg_hdr, flags);
    if (r < 0) return i > 0 ? (int)i : -1;
    m[i].msg_len = (unsigned)r;
  }
  return (int)n;
#endif
}

/* recvmmsg's with MSG_WAITFORONE: the first datagram as flags say, then
** what is queued; an error after the first ends the batch. */
static int recvbatch(int fd, mmsg *m, size_t n, int flags) {
#if BSD_HAVE_MMSG
  return (int)recvmmsg(fd, m, (unsigned)n, flags, NULL);
#else
  size_t i;
  for (i = 0; i < n; i++) {
    ssize_t r = recvmsg(fd, &m[i].msg_hdr, i ? flags | MSG_DONTWAIT : flags);
    if (r < 0) return i > 0 ? (int)i : -1;
    m[i].msg_len = (unsigned)r;
  }
  return (int)n;
#endif
}

/* One batch of at most MMSG_MAX datagrams from list[first..first+n-1]. An
** entry is a string (sent to the default address, if any) or a table
** {data, addr} where addr is an addr, a Unix path, or host, port.
** Returns 0 with nil, msg, code on top when a host does not resolve. */
static int buildbatch(lua_State *L, bsd_socket *s, int list, size_t first,
                      size_t n, const bsd_addr *def, mmsg *m, struct iovec *iov,
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
            if (bsd_getaddrarg(L, top - 1, s->family, s->type, "sendmmsg",
                               &addrs[i])
                == 0)
              return 0;
            to = &addrs[i];
            lua_pop(L, 1);
          }
        }
        lua_pop(L, 1);
        break;
      }
      default:
        luaL_error(L, "datagram #%I must be a string or a table {data, addr}",
                   k);
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

typedef struct mmsgargs {
  mmsg *m;
  size_t n;           /* datagrams in the batch */
  size_t done;        /* ... sent of it */
  size_t before;      /* datagrams sent in earlier batches */
  int flags;
  int stop;           /* an error after some went: report the count */
  int r;
} mmsgargs;

/* names the address of the datagram that failed, if it has one */
static int batcherror(lua_State *L, bsd_io *io) {
  const mmsg *m = ((mmsgargs *)io->data)->m;
  bsd_addr a;
  if (!m->msg_hdr.msg_name) return bsd_sockerror(L, io->s, io->call, io->err);
  a.len = m->msg_hdr.msg_namelen;
  memcpy(&a.ss, m->msg_hdr.msg_name, a.len);
  return bsd_addrerror(L, io->call, &a, io->err);
}

static bsd_iostatus impl_sendmmsg(lua_State *L, bsd_io *io) {
  mmsgargs *a = (mmsgargs *)io->data;
  int r = sendbatch(io->s->fd, a->m + a->done, a->n - a->done, a->flags);
  (void)L;
  a->r = r;
  if (r > 0) return BSD_IO_DONE;
  if (r < 0 && errno == EINTR) return bsd_iosyscall(io, r, BSD_WANT_WRITE);
  /* report what went; the error comes again next call */
  if (a->before + a->done > 0) {
    a->stop = 1;
    return BSD_IO_DONE;
  }
  if (r == 0) errno = EAGAIN;
  return bsd_iosyscall(io, -1, BSD_WANT_WRITE);
}

/* ctx: the argument count. The call waits only while nothing is sent, so
** a retry after a yield starts from the first datagram again. */
static int op_sendmmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  bsd_socket *s = bsd_iobegin(L, &io, "sendmmsg", status, (int)ctx);
  int used = 1, flags, hasdef;
  size_t total, sent = 0, cap;
  bsd_addr def, *addrs;
  mmsg *m;
  struct iovec *iov;
  char *scratch;
  mmsgargs a;
  luaL_checktype(L, 2, LUA_TTABLE);
  hasdef = !lua_isnoneornil(L, 3);
  if (hasdef
      && (used = bsd_getaddrarg(L, 3, s->family, s->type, "sendmmsg", &def))
             == 0)
    return 3;
  flags = bsd_optint(L, 3 + used, 0) | BSD_MSG_NOSIGNAL;
  total = lua_rawlen(L, 2);
  cap = total < MMSG_MAX ? total : MMSG_MAX;
  scratch = (char *)lua_newuserdatauv(
      L, (cap ? cap : 1) * (sizeof *m + sizeof *iov + sizeof *addrs), 0);
  m = (mmsg *)(void *)scratch;
  iov = (struct iovec *)(void *)(scratch + cap * sizeof *m);
  addrs = (bsd_addr *)(void *)(scratch + cap * (sizeof *m + sizeof *iov));
  while (sent < total) {
    /* cppcheck takes lua_rawlen for 0 here */
    // cppcheck-suppress knownConditionTrueFalse
    size_t n = total - sent < cap ? total - sent : cap, done = 0;
    if (!buildbatch(L, s, 2, sent, n, hasdef ? &def : NULL, m, iov, addrs)) {
      if (sent == 0) return 3;   /* nil, msg, code of the resolver */
      break;
    }
    a.m = m;
    a.n = n;
    a.before = sent;
    a.flags = flags;
    a.stop = 0;
    io.impl = impl_sendmmsg;
    io.data = &a;
    bsd_ioflags(&io, flags);
    io.pusherr = batcherror;
    // cppcheck-suppress knownConditionTrueFalse
    while (done < n) {
      int r;
      a.done = done;
      if ((r = bsd_iorun(L, &io, ctx, op_sendmmsg)) != BSD_IO_FINISHED)
        return r;
      if (a.stop) {
        lua_pushinteger(L, (lua_Integer)sent + (lua_Integer)done);
        return 1;
      }
      done += (size_t)a.r;
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
typedef struct rmmsgargs {
  mmsg *m;
  struct iovec *iov;
  struct sockaddr_storage *from;
  char *data;
  size_t count, max;
  int flags;
  int n;
} rmmsgargs;

static bsd_iostatus impl_recvmmsg(lua_State *L, bsd_io *io) {
  rmmsgargs *a = (rmmsgargs *)io->data;
  size_t i;
  (void)L;
  for (i = 0; i < a->count; i++) {
    a->iov[i].iov_base = a->data + i * a->max;
    a->iov[i].iov_len = a->max;
    memset(&a->m[i], 0, sizeof a->m[i]);
    a->m[i].msg_hdr.msg_name = &a->from[i];
    a->m[i].msg_hdr.msg_namelen = sizeof a->from[i];
    a->m[i].msg_hdr.msg_iov = &a->iov[i];
    a->m[i].msg_hdr.msg_iovlen = 1;
  }
  a->n = recvbatch(io->s->fd, a->m, a->count, a->flags);
  return bsd_iosyscall(io, a->n, BSD_WANT_READ);
}

static int op_recvmmsg(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  lua_Integer count;
  size_t max, i, need, per;
  int flags, n, prev = 0, scr;
  mmsg *m;
  struct iovec *iov;
  struct sockaddr_storage *from;
  char *data;
  rmmsgargs a;
  bsd_iobegin(L, &io, "recvmmsg", status, (int)ctx);
  count = luaL_checkinteger(L, 2);
  max = bsd_checkmaxbytes(L, 3);
  flags = bsd_optint(L, 4, 0) | WAITFORONE;
  luaL_argcheck(L, 1 <= count && count <= MMSG_MAX, 2,
                "count out of range 1..1024");
  per = sizeof *m + sizeof *iov + sizeof *from;
  /* a batch fills at most MMSG_BYTES of buffers: fewer datagrams per call
  ** (recvmmsg may always return fewer) rather than count * maxbytes */
  if ((size_t)count * max > MMSG_BYTES)
    count = max >= MMSG_BYTES ? 1 : (lua_Integer)(MMSG_BYTES / max);
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
  m = (mmsg *)lua_touserdata(L, scr);
  iov = (struct iovec *)(void *)((char *)m + (size_t)count * sizeof *m);
  from = (struct sockaddr_storage *)(void *)((char *)iov
                                             + (size_t)count * sizeof *iov);
  data = (char *)from + (size_t)count * sizeof *from;
  a.m = m;
  a.iov = iov;
  a.from = from;
  a.data = data;
  a.count = (size_t)count;
  a.max = max;
  a.flags = flags;
  io.impl = impl_recvmmsg;
  io.data = &a;
  bsd_ioflags(&io, flags);
  if ((n = bsd_iorun(L, &io, ctx, op_recvmmsg)) != BSD_IO_FINISHED) return n;
  n = a.n;
  lua_createtable(L, n, 0);
  for (i = 0; i < (size_t)n; i++) {
    size_t len = (size_t)m[i].msg_len > max ? max : (size_t)m[i].msg_len;
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

static const luaL_Reg msg_methods[] = {
  {"sendmsg", sock_sendmsg},
  {"recvmsg", sock_recvmsg},
  {"getpeercred", sock_getpeercred},
  {"sendmmsg", sock_sendmmsg},
  {NULL, NULL}
};

void bsd_open_msg(lua_State *L) {
  luaL_newmetatable(L, FDGUARD_MT);
  lua_pushcfunction(L, guard_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  bsd_addmethods(L, msg_methods);
  luaL_getmetatable(L, BSD_SOCKET_MT);
  lua_getfield(L, -1, "__index");
  bsd_pushmethodupvalues(L);
  lua_newuserdatauv(L, 0, 0);   /* recvmmsg's own scratch, grown on demand */
  lua_pushcclosure(L, sock_recvmmsg, BSD_METHOD_UPVALUES + 1);
  lua_setfield(L, -2, "recvmmsg");
  lua_pop(L, 2);
}
