/*
** The socket object: creation, the calls of the Berkeley API, timeouts,
** and the one I/O loop that every call that may block goes through.
**
** bsd_iorun waits in one of three ways:
** - the kernel blocks (no timeout, descriptor in blocking mode: the fast path);
** - the descriptor is non-blocking and poll(2) waits for the deadline;
** - inside a task of bsdsocket.loop, the call yields to the scheduler and
**   is retried when it resumes us (the Lua continuation is the call itself).
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bsdsocket.h"

/* reads up to this size go through the C stack, larger ones through
** scratch() */
#define RECV_SMALL 4096
/* Lua 5.5: larger reads up to this size become their string (recvext);
** a larger block comes from mmap (glibc, musl), which costs more per call
** than the copy it saves: recv(1 MiB) of 100 bytes ran 7 times slower */
#define RECV_EXT_MAX 65536
#define ADDRSTR_SIZE (sizeof(struct sockaddr_un) + 16)

/* How a call waits. LATER: the descriptor is non-blocking already, so the
** call can be tried before knowing whether a wait would poll or yield (task
** or not); bsd_iorun decides on the first would-block only. */
typedef enum waitmode {
  MODE_BLOCK,
  MODE_POLL,
  MODE_NOWAIT,
  MODE_TASK,
  MODE_LATER
} waitmode;

/* what a wait came to */
typedef enum waitverdict {
  WAIT_READY,
  WAIT_TIMEDOUT,
  WAIT_NOWAIT,
  WAIT_INTERRUPTED
} waitverdict;

/* registry keys: only their addresses matter */
static const char scratchholderkey = 's', sharedkey = 'h';
/* the scratch table: [1] the read buffer, [SCRATCH_WAITSTR] the string a
** task yields to the loop */
#define SCRATCH_WAITSTR 2
/* loop.cancel's message, from ioresume to bsd_iorun */
static const char cancelkey = 'x';

/* ---- objects ---- */

bsd_socket *bsd_checksocket(lua_State *L, int idx) {
  return (bsd_socket *)luaL_checkudata(L, idx, BSD_SOCKET_MT);
}

bsd_socket *bsd_checkopen(lua_State *L, int idx) {
  bsd_socket *s = bsd_checksocket(L, idx);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return s;
}

bsd_socket *bsd_newsocket(lua_State *L, int fd, int family, int type,
                          int protocol) {
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
  s->waited = 0;
  s->loopfd = -1;
  s->loopid = 0;
  luaL_setmetatable(L, BSD_SOCKET_MT);
  return s;
}

/* The methods' own check. luaL_checkudata's registry lookup by name costs
** more than the send it guards on a path that runs once per message, so
** sockets carry a tag: a full userdata of exactly our size with our tag can
** only have been made by bsd_newsocket (Lua code cannot fill userdata).
** Anything else goes through luaL_checkudata, which raises the usual error. */
static bsd_socket *tagged(lua_State *L, int idx) {
  bsd_socket *s = (bsd_socket *)lua_touserdata(L, idx);
  /* size first: a smaller userdata (or a light one, whose rawlen is 0)
  ** must not have its first bytes read as a tag */
  if (s && lua_rawlen(L, idx) == sizeof(bsd_socket) && s->tag == BSD_SOCKET_TAG)
    return s;
  return NULL;
}

bsd_socket *bsd_checkself(lua_State *L) {
  bsd_socket *s = tagged(L, 1);
  if (s && s->fd >= 0) return s;
  return bsd_checkopen(L, 1);
}

int bsd_getfd(lua_State *L, int idx) {
  bsd_socket *s = tagged(L, idx);
  if (!s) s = (bsd_socket *)luaL_testudata(L, idx, BSD_SOCKET_MT);
  if (s) {
    if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
    return s->fd;
  }
  return bsd_checkfdnum(L, idx);
}

static void setfdmode(bsd_socket *s, int nonblock) {
  if (s->fd_nonblock != nonblock && bsd_setnonblock(s->fd, nonblock) == 0)
    s->fd_nonblock = nonblock;
}

/* ---- errors naming the peer ---- */

static const char *addrtext(lua_State *L, const struct sockaddr *sa,
                            socklen_t len) {
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
  if (ss->ss_family == AF_INET)
    return ((const struct sockaddr_in *)ss)->sin_port != 0;
  if (ss->ss_family == AF_INET6)
    return ((const struct sockaddr_in6 *)ss)->sin6_port != 0;
  return 1;
}

/* The peer if connected, else "(local <address>)" if bound, else nothing:
** a local end is never passed off as the peer. */
static const char *endtext(lua_State *L, bsd_socket *s) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (s->fd < 0) return NULL;
  if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0 && named(&ss, len))
    return addrtext(L, (struct sockaddr *)&ss, len);
  len = sizeof ss;
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0
      && named(&ss, len)) {
    char buf[ADDRSTR_SIZE];
    bsd_addrtostring((struct sockaddr *)&ss, len, buf, sizeof buf);
    return lua_pushfstring(L, "(local %s)", buf);
  }
  return NULL;
}

int bsd_sockerror(lua_State *L, bsd_socket *s, const char *call, int err) {
  return bsd_pusherror(L, call, endtext(L, s), err);
}

int bsd_addrerror(lua_State *L, const char *call, const bsd_addr *a, int err) {
  return bsd_pusherror(
      L, call, addrtext(L, (const struct sockaddr *)&a->ss, a->len), err);
}

/* ---- the I/O loop ---- */

/* pushes the state's bsd_shared, made on first use */
static bsd_shared *pushshared(lua_State *L) {
  bsd_shared *sh;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sharedkey) == LUA_TUSERDATA)
    return (bsd_shared *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  sh = (bsd_shared *)lua_newuserdatauv(L, sizeof(bsd_shared), 1);
  memset(sh, 0, sizeof *sh);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_taskskey);  /* S._tasks */
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sharedkey);
  return sh;
}

bsd_shared *bsd_getshared(lua_State *L) {
  bsd_shared *sh = pushshared(L);
  lua_pop(L, 1);  /* the registry keeps it */
  return sh;
}

/* the methods' bsd_shared */
static bsd_shared *shared(lua_State *L) {
  return (bsd_shared *)lua_touserdata(L, BSD_UV_SHARED);
}

/* A call runs in a task when its thread is one of S._tasks and it may
** yield there. The thread a scheduler is resuming is one: no lookup. */
static int intask(lua_State *L, const bsd_shared *sh) {
  int found;
  if (!lua_isyieldable(L)) return 0;
  if (sh->running == L) return 1;
  lua_getiuservalue(L, BSD_UV_SHARED, 1);
  lua_pushthread(L);
  found = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return found;
}

/* In the task a scheduler is resuming, waiting on socket s: links the
** task as a waiter there at once, to yield no values (see bsd_shared).
** The scheduler sets wait before it sets running. */
static int waitdirect(lua_State *L, const bsd_shared *sh, bsd_socket *s,
                      int want, double deadline) {
  return sh->running == L && sh->wait(sh->sched, L, s, want, deadline) == 0;
}

static waitmode modenow(lua_State *L, bsd_socket *s) {
  if (intask(L, shared(L))) {
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
static waitmode callmode(lua_State *L, bsd_socket *s) {
  if (s->timeout == 0) return MODE_NOWAIT;
  if (s->fd_nonblock) return MODE_LATER;
  return modenow(L, s);
}

/* On resumption of a yielded call the loop resumes with one value: true
** (ready), false (the deadline passed) or a message (loop.cancel). Drop
** what the yield left, recover the call's deadline (kept on the stack under
** the yielded values, so a spurious wake-up does not extend it) and the
** verdict; a cancel's message stays on the stack for bsd_iorun. */
static void ioresume(lua_State *L, bsd_io *io, bsd_socket *s, const char *call,
                     int status, int nargs) {
  io->s = s;
  io->call = call;
  io->impl = NULL;
  io->data = NULL;
  io->want = BSD_WANT_READ;
  io->err = 0;
  io->peer = NULL;
  io->pusherr = NULL;
  io->waitfirst = 0;
  io->kctx = 0;
  io->deadline = -1;
  io->late = 0;
  io->cancel = 0;
  if (status == LUA_YIELD) {
    io->late = !lua_toboolean(L, -1);
    io->deadline = lua_isnumber(L, -2) ? lua_tonumber(L, -2) : -1;
    /* out of the way of optional arguments */
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_rawsetp(L, LUA_REGISTRYINDEX, &cancelkey);
      io->cancel = 1;
    }
    lua_settop(L, nargs);
  }
  io->mode = s->fd < 0 ? MODE_NOWAIT : callmode(L, s);
}

void bsd_iobeginwith(lua_State *L, bsd_io *io, bsd_socket *s, const char *call,
                     int status, int nargs) {
  ioresume(L, io, s, call, status, nargs);
}

/* A socket closed while its call waited (by another task) ends the call
** with an error result, not the closed-socket error a new call raises. */
bsd_socket *bsd_iobegin(lua_State *L, bsd_io *io, const char *call, int status,
                        int nargs) {
  /* resumed: the socket may have been closed meanwhile, which is no
  ** error here */
  bsd_socket *s = status != LUA_YIELD ? bsd_checkself(L) : tagged(L, 1);
  if (!s) s = bsd_checksocket(L, 1);
  ioresume(L, io, s, call, status, nargs);
  return s;
}

int bsd_ioerror(lua_State *L, bsd_io *io, int err) {
  io->err = err;
  if (err == EBADF && io->s->fd < 0)
    return bsd_pushfail(L, io->call, NULL, "socket closed while waiting",
                        "EBADF");
  if (io->pusherr) return io->pusherr(L, io);
  if (io->peer) return bsd_addrerror(L, io->call, io->peer, err);
  return bsd_sockerror(L, io->s, io->call, err);
}

void bsd_ioflags(bsd_io *io, int flags) {
  if (flags & MSG_DONTWAIT) io->mode = MODE_NOWAIT;
}

bsd_iostatus bsd_iosyscall(bsd_io *io, long n, int want) {
  if (n >= 0) return BSD_IO_DONE;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    io->want = want;
    return BSD_IO_WAIT;
  }
  io->err = errno;
  return BSD_IO_FAIL;
}

/* Inside a task: yields "bsdsocket.wait", obj, events, deadline to the loop,
** which resumes the continuation k when the socket is ready (true) or the
** deadline passed (false). The deadline stays on the stack for ioresume. */
static int yieldwait(lua_State *L, bsd_io *io, lua_KContext kctx,
                     lua_KFunction k) {
  bsd_socket *s = io->s;
  if (s->timeout > 0 && io->deadline < 0)
    io->deadline = bsd_monotime() + s->timeout;
  if (io->deadline < 0) lua_pushnil(L);
  else lua_pushnumber(L, io->deadline);
  s->waited = 1;
  /* through s itself: a TLS stream (at 1) waits as the object it is */
  if (lua_touserdata(L, 1) == (void *)s
      && waitdirect(L, shared(L), s, io->want, io->deadline))
    return lua_yieldk(L, 0, kctx, k);
  lua_pushliteral(L, "bsdsocket.wait");
  lua_pushvalue(L, 1);
  lua_pushinteger(L, io->want);
  lua_pushvalue(L, -4);
  return lua_yieldk(L, 4, kctx, k);
}

/* Outside tasks: poll(2) until ready, the deadline, or a signal for Lua. */
static waitverdict pollwait(lua_State *L, bsd_io *io) {
  bsd_socket *s = io->s;
  for (;;) {
    struct pollfd pfd;
    int ms = -1, r;
    if (s->timeout > 0) {
      double left, now = bsd_monotime();
      if (io->deadline < 0) io->deadline = now + s->timeout;
      left = io->deadline - now;
      if (left <= 0) return WAIT_TIMEDOUT;
      ms = (int)ceil(left * 1000);
    }
    pfd.fd = s->fd;
    pfd.events = (short)((io->want & BSD_WANT_READ ? POLLIN : 0)
                         | (io->want & BSD_WANT_WRITE ? POLLOUT : 0));
    pfd.revents = 0;
    r = poll(&pfd, 1, ms);
    if (r > 0) return WAIT_READY;
    if (r < 0 && errno == EINTR) {
      if (bsd_interrupted(L)) return WAIT_INTERRUPTED;
    }
    else if (r < 0) return WAIT_READY;  /* let the call itself report */
  }
}

static waitverdict waitready(lua_State *L, bsd_io *io, lua_KContext kctx,
                             lua_KFunction k) {
  io->s->want = io->want;
  if (io->mode == MODE_NOWAIT) return WAIT_NOWAIT;
  if (io->mode == MODE_LATER) io->mode = modenow(L, io->s);
  if (io->mode == MODE_TASK) yieldwait(L, io, kctx, k);  /* does not return */
  return pollwait(L, io);
}

int bsd_iorun(lua_State *L, bsd_io *io, lua_KContext kctx, lua_KFunction k) {
  io->kctx = kctx;
  if (io->cancel) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cancelkey);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cancelkey);
    return bsd_pushfail(L, io->call, NULL, lua_tostring(L, -1), "ECANCELED");
  }
  if (io->s->fd < 0) return bsd_ioerror(L, io, EBADF);
  if (io->late) return bsd_ioerror(L, io, ETIMEDOUT);
  if (io->waitfirst && io->mode != MODE_NOWAIT
      && modenow(L, io->s) == MODE_TASK) {
    io->mode = MODE_TASK;
    waitready(L, io, io->kctx, k);
  }
  for (;;) {
    switch (io->impl(L, io)) {
      case BSD_IO_DONE:
        return BSD_IO_FINISHED;
      case BSD_IO_PROGRESS:
        io->deadline = -1;
        break;
      case BSD_IO_FAIL:
        if (io->err != EINTR) return bsd_ioerror(L, io, io->err);
        if (bsd_interrupted(L)) return bsd_ioerror(L, io, EINTR);
        break;
      case BSD_IO_WAIT:
        switch (waitready(L, io, io->kctx, k)) {
          case WAIT_READY: break;
          case WAIT_TIMEDOUT: return bsd_ioerror(L, io, ETIMEDOUT);
          case WAIT_NOWAIT: return bsd_ioerror(L, io, EAGAIN);
          case WAIT_INTERRUPTED: return bsd_ioerror(L, io, EINTR);
        }
        break;
    }
  }
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

/* The flag bits of S.socket's type, and what the kernel takes of them:
** all where socket() has SOCK_CLOEXEC, else none (finishfd sets them). */
#define SOCKFLAGS (BSD_SOCK_NONBLOCK | BSD_SOCK_CLOEXEC)
#if BSD_HAVE_SOCK_CLOEXEC
#define KERNELFLAGS(type) (((type) & SOCK_NONBLOCK) | SOCK_CLOEXEC)
#else
#define KERNELFLAGS(type) 0
#endif
#define NEEDPREP (!BSD_HAVE_SOCK_CLOEXEC || BSD_HAVE_SO_NOSIGPIPE)

/* What the kernel did not do for a new descriptor (nothing on Linux): on
** failure it is closed, and -1 returned with errno. */
static int finishfd(int fd, int cloexec, int nonblock) {
  int err;
  if (fd < 0 || bsd_prepfd(fd, cloexec, nonblock) == 0) return fd;
  err = errno;
  close(fd);
  errno = err;
  return -1;
}

static int newfd(int family, int type, int protocol) {
  int fd = socket(family, (type & ~SOCKFLAGS) | KERNELFLAGS(type), protocol);
  if (NEEDPREP)
    fd = finishfd(fd, !BSD_HAVE_SOCK_CLOEXEC,
                  !BSD_HAVE_SOCK_CLOEXEC && (type & BSD_SOCK_NONBLOCK));
  return fd;
}

static int newpair(int family, int type, int protocol, int fds[2]) {
  int ktype = (type & ~SOCKFLAGS) | KERNELFLAGS(type);
  int nonblock = !BSD_HAVE_SOCK_CLOEXEC && (type & BSD_SOCK_NONBLOCK);
  if (socketpair(family, ktype, protocol, fds) < 0) return -1;
  if (!NEEDPREP) return 0;
  /* on failure finishfd closes its own; the other is closed here (never
  ** twice: the resolver's threads may open a descriptor meanwhile) */
  if (finishfd(fds[0], !BSD_HAVE_SOCK_CLOEXEC, nonblock) < 0) {
    int err = errno;
    close(fds[1]);
    errno = err;
    return -1;
  }
  if (finishfd(fds[1], !BSD_HAVE_SOCK_CLOEXEC, nonblock) < 0) {
    int err = errno;
    close(fds[0]);
    errno = err;
    return -1;
  }
  return 0;
}

static int sock_socket(lua_State *L) {
  int family = bsd_checkint(L, 1);
  int type = bsd_checkint(L, 2);
  int protocol = bsd_optint(L, 3, 0);
  int nonblock = (type & BSD_SOCK_NONBLOCK) != 0;
  int fd = newfd(family, type, protocol);
  bsd_socket *s;
  if (fd < 0 && outoffds(L)) fd = newfd(family, type, protocol);
  if (fd < 0) return bsd_pusherror(L, "socket", NULL, errno);
  s = bsd_newsocket(L, fd, family, type & ~SOCKFLAGS, protocol);
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
  if (newpair(family, type, protocol, fds) < 0
      && (!outoffds(L) || newpair(family, type, protocol, fds) < 0))
    return bsd_pusherror(L, "socketpair", NULL, errno);
  type &= ~SOCKFLAGS;
  bsd_newsocket(L, fds[0], family, type, protocol);
  bsd_newsocket(L, fds[1], family, type, protocol);
  return 2;
}

static int getintopt(int fd, int name, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, SOL_SOCKET, name, value, &len);
}

/* Without SO_DOMAIN the family is the socket's own address's: every
** socket has one, bound or not. */
static int getfamily(int fd, int *family) {
#if BSD_HAVE_SO_DOMAIN
  return getintopt(fd, SO_DOMAIN, family);
#else
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
  *family = ss.ss_family;
  return 0;
#endif
}

/* Without SO_PROTOCOL: what protocol 0 means for the family and type */
static int getprotocol(int fd, int family, int type, int *protocol) {
#if BSD_HAVE_SO_PROTOCOL
  (void)family;
  (void)type;
  return getintopt(fd, SO_PROTOCOL, protocol);
#else
  int inet = family == AF_INET || family == AF_INET6;
  (void)fd;
  *protocol = !inet ? 0 : type == SOCK_STREAM ? IPPROTO_TCP
            : type == SOCK_DGRAM ? IPPROTO_UDP : 0;
  return 0;
#endif
}

/* Wraps fd in a socket object, its family, type and protocol read back
** from the kernel; NULL (nothing pushed, errno set) if fd is no socket. */
bsd_socket *bsd_wrapfd(lua_State *L, int fd) {
  int family, type, protocol, flags;
  bsd_socket *s;
  if (getintopt(fd, SO_TYPE, &type) < 0 || getfamily(fd, &family) < 0
      || getprotocol(fd, family, type, &protocol) < 0)
    return NULL;
  if (BSD_HAVE_SO_NOSIGPIPE) (void)bsd_prepfd(fd, 0, 0);
  flags = fcntl(fd, F_GETFL);
  s = bsd_newsocket(L, fd, family, type, protocol);
  if (flags >= 0 && (flags & O_NONBLOCK)) {
    s->fd_nonblock = 1;
    s->timeout = 0;
  }
  return s;
}

static int sock_fromfd(lua_State *L) {
  if (!bsd_wrapfd(L, bsd_checkfdnum(L, 1)))
    return bsd_pusherror(L, "fromfd", NULL, errno);
  return 1;
}

/* ---- closing ---- */

/* registry key of the loop scheduler's bsd_closehook (loop.c) */
const char bsd_closehookkey = 'c';

/* A socket the loop has waited on is about to lose its descriptor (close,
** collection, detach): the loop's scheduler forgets the registration while
** the descriptor is still open, and queues the tasks waiting on it. */
static void forget(lua_State *L, bsd_socket *s) {
  if (s->waited && s->fd >= 0) {
    s->waited = 0;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_closehookkey)
        == LUA_TLIGHTUSERDATA) {
      bsd_closehook *h = (bsd_closehook *)lua_touserdata(L, -1);
      h->fn(L, h->ud, s, s->fd);
    }
    lua_pop(L, 1);
  }
  s->loopfd = -1;
}

/* Closes the descriptor; a task of the loop that waits on the socket is
** told, so its call ends with an error result instead of waiting forever
** on a descriptor the poller no longer watches. */
static int closewith(lua_State *L, bsd_socket *s, int idx) {
  int fd = s->fd, r, err;
  (void)idx;
  if (fd < 0) return 0;
  forget(L, s);
  s->fd = -1;
  bsd_closing(L, fd);
  r = close(fd);
  err = errno;
  /* Linux frees the descriptor even when close reports EINTR */
  return r < 0 && err != EINTR ? err : 0;
}

static int closesocket(lua_State *L, bsd_socket *s) {
  return closewith(L, s, 1);
}

static int sock_close(lua_State *L) {
  int err = closesocket(L, bsd_checksocket(L, 1));
  if (err) return bsd_pusherror(L, "close", NULL, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_toclose(lua_State *L) {
  closesocket(L, bsd_checksocket(L, 1));
  return 0;
}

static int sock_gc(lua_State *L) {
  bsd_socket *s = bsd_checksocket(L, 1);
  if (s->fd >= 0) {
    forget(L, s);
    bsd_closing(L, s->fd);
    close(s->fd);
    s->fd = -1;
  }
  return 0;
}

static int sock_detach(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  forget(L, s);
  lua_pushinteger(L, s->fd);
  s->fd = -1;
  return 1;
}

static int sock_fileno(lua_State *L) {
  lua_pushinteger(L, bsd_checkself(L)->fd);
  return 1;
}

/* ---- addresses ---- */

static int sock_bind(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  bsd_addr a;
  if (bsd_getaddrarg(L, 2, s->family, s->type, "bind", &a) == 0) return 3;
  if (bind(s->fd, (struct sockaddr *)&a.ss, a.len) < 0)
    return bsd_addrerror(L, "bind", &a, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_listen(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
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
  if (r < 0)
    return bsd_sockerror(L, s, peer ? "getpeername" : "getsockname", errno);
  bsd_newaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}

static int sock_getsockname(lua_State *L) {
  return pushname(L, bsd_checkself(L), 0);
}

static int sock_getpeername(lua_State *L) {
  return pushname(L, bsd_checkself(L), 1);
}

/* ---- accept and connect ---- */

typedef struct acceptargs {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd;
  int collected;   /* the collector ran once for EMFILE already */
} acceptargs;

static bsd_iostatus impl_accept(lua_State *L, bsd_io *io) {
  acceptargs *a = (acceptargs *)io->data;
  a->len = sizeof a->ss;
#if BSD_HAVE_ACCEPT4
  a->fd = accept4(io->s->fd, (struct sockaddr *)&a->ss, &a->len, SOCK_CLOEXEC);
  if (BSD_HAVE_SO_NOSIGPIPE) a->fd = finishfd(a->fd, 0, 0);
#else
  a->fd = finishfd(accept(io->s->fd, (struct sockaddr *)&a->ss, &a->len), 1, 0);
#endif
  if (a->fd < 0 && errno == ECONNABORTED) errno = EINTR;  /* try the next one */
  if (a->fd < 0 && !a->collected && (a->collected = outoffds(L)) != 0)
    errno = EINTR;
  return bsd_iosyscall(io, a->fd, BSD_WANT_READ);
}

#if !BSD_HAVE_ACCEPT4
/* The BSDs' accept copies the listener's O_NONBLOCK: what the descriptor
** has is read back (the socket still blocks by default, through poll). */
static void readnonblock(bsd_socket *c) {
  int flags = fcntl(c->fd, F_GETFL);
  c->fd_nonblock = flags >= 0 && (flags & O_NONBLOCK) != 0;
}
#endif

static int op_accept(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  bsd_socket *s = bsd_iobegin(L, &io, "accept", status, (int)ctx);
  acceptargs a;
  int r;
  a.collected = 0;
  io.impl = impl_accept;
  io.data = &a;
  if ((r = bsd_iorun(L, &io, ctx, op_accept)) != BSD_IO_FINISHED) return r;
#if BSD_HAVE_ACCEPT4
  bsd_newsocket(L, a.fd, s->family, s->type, s->protocol);
#else
  readnonblock(bsd_newsocket(L, a.fd, s->family, s->type, s->protocol));
#endif
  bsd_newaddr(L, (struct sockaddr *)&a.ss, a.len);
  return 2;
}

static int sock_accept(lua_State *L) {
  return op_accept(L, LUA_OK, lua_gettop(L));
}

/* ctx: argument count, plus CONNECTING once the connect is under way (the
** retry then asks SO_ERROR instead of connecting again) */
#define CONNECTING 0x10000

typedef struct connectargs {
  bsd_addr a;
  int started;
} connectargs;

static bsd_iostatus impl_connect(lua_State *L, bsd_io *io) {
  connectargs *c = (connectargs *)io->data;
  int err = 0;
  socklen_t len = sizeof err;
  if (!c->started) {
    c->started = 1;
    io->kctx |= CONNECTING;
    if (connect(io->s->fd, (struct sockaddr *)&c->a.ss, c->a.len) == 0)
      return BSD_IO_DONE;
    /* the handshake goes on; Lua first */
    if (errno == EINTR && bsd_interrupted(L)) {
      io->err = EINTR;
      return BSD_IO_FAIL;
    }
    if (errno != EINPROGRESS && errno != EINTR && errno != EAGAIN) {
      c->started = 0;  /* so the message names the address parsed already */
      io->err = errno;
      return BSD_IO_FAIL;
    }
    if (io->s->timeout == 0) {  /* non-blocking: the script polls for "w" */
      io->s->want = BSD_WANT_WRITE;
      io->err = EINPROGRESS;
      return BSD_IO_FAIL;
    }
    io->want = BSD_WANT_WRITE;
    return BSD_IO_WAIT;
  }
  /* writable: the outcome is known */
  if (getsockopt(io->s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0) return BSD_IO_DONE;
  if (err == EINPROGRESS || err == EALREADY) {
    io->want = BSD_WANT_WRITE;
    return BSD_IO_WAIT;
  }
  io->err = err;
  return BSD_IO_FAIL;
}

/* Names the peer we tried, which getpeername cannot tell. On a resumed
** connect the address is read again only now, for the message; a host
** name is named as given (resolving it again could yield, and would
** re-run the call). */
static int connecterror(lua_State *L, bsd_io *io) {
  connectargs *c = (connectargs *)io->data;
  int err = io->err;
  if (io->s->fd < 0)
    return bsd_pushfail(L, io->call, NULL, "socket closed while waiting",
                        "EBADF");
  if (c->started) {
    if (io->s->family != AF_UNIX && lua_type(L, 2) == LUA_TSTRING) {
      const char *host = lua_tostring(L, 2);
      const char *fmt = strchr(host, ':') ? "[%s]:%s" : "%s:%s";
      return bsd_pusherror(
          L, "connect",
          lua_pushfstring(L, fmt, host, luaL_tolstring(L, 3, NULL)), err);
    }
    if (bsd_getaddrarg(L, 2, io->s->family, io->s->type, "connect", &c->a) == 0)
      return 3;
  }
  return bsd_addrerror(L, "connect", &c->a, err);
}

static int op_connect(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  int argc = (int)(ctx & 0xFFFF), r;
  bsd_socket *s = bsd_iobegin(L, &io, "connect", status, argc);
  connectargs c;
  c.started = (ctx & CONNECTING) != 0;
  if (!c.started
      && bsd_getaddrarg(L, 2, s->family, s->type, "connect", &c.a) == 0)
    return 3;
  io.impl = impl_connect;
  io.data = &c;
  io.pusherr = connecterror;
  /* a blocking socket waits for the handshake in poll(2), not in connect(2),
  ** whose EINTR would leave the outcome to guess */
  if (io.mode == MODE_BLOCK) io.mode = MODE_POLL;
  if ((r = bsd_iorun(L, &io, ctx, op_connect)) != BSD_IO_FINISHED) return r;
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_connect(lua_State *L) {
  return op_connect(L, LUA_OK, lua_gettop(L));
}

/* ---- sending ---- */

/* data:sub(i, j) bounds, as string.sub counts them */
static size_t posrelat(lua_Integer pos, size_t len) {
  if (pos >= 0) return (size_t)pos;
  if ((size_t)-pos > len) return 0;
  return len + (size_t)pos + 1;
}

typedef struct sendargs {
  const char *data;
  size_t len;
  size_t done;           /* bytes sent (sendall: so far) */
  int flags;
  const bsd_addr *to;    /* sendto */
} sendargs;

static bsd_iostatus impl_send(lua_State *L, bsd_io *io) {
  sendargs *a = (sendargs *)io->data;
  ssize_t n = bsd_send(io->s->fd, a->data, a->len, a->flags);
  (void)L;
  if (n >= 0) a->done = (size_t)n;
  return bsd_iosyscall(io, n, BSD_WANT_WRITE);
}

static int op_send(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  sendargs a;
  int r;
  bsd_iobegin(L, &io, "send", status, (int)ctx);
  a.data = bsd_checkbytes(L, 2, &a.len);
  if (lua_gettop(L) == 2)  /* the common send(data) */
    a.flags = BSD_MSG_NOSIGNAL;
  else {
    size_t i = posrelat(luaL_optinteger(L, 3, 1), a.len);
    size_t j = posrelat(luaL_optinteger(L, 4, -1), a.len);
    a.flags = bsd_optint(L, 5, 0) | BSD_MSG_NOSIGNAL;
    if (i < 1) i = 1;
    if (j > a.len) j = a.len;
    a.data += i - 1;
    a.len = i > j ? 0 : j - i + 1;
  }
  io.impl = impl_send;
  io.data = &a;
  bsd_ioflags(&io, a.flags);
  if ((r = bsd_iorun(L, &io, ctx, op_send)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)a.done);
  return 1;
}

static int op_sendlist(lua_State *L, int status, lua_KContext ctx);

/* ---- fast paths ----
** bsd_iorun's first act is the system call itself whenever the socket
** waits in the kernel (blocking, no timeout, outside any coroutine:
** MODE_BLOCK) or is non-blocking already (MODE_LATER, MODE_NOWAIT: every
** socket a task has used). So the commonest shapes, send(data),
** sendall(data), sendto(data, addr) and recv(max), make that call
** themselves first, without the loop's set-up, and go the full way only
** when it would block or for an EINTR that no Lua hook waits on. Any other
** outcome is the result bsd_iorun would give. The full way tries once more
** before it waits (one system call more, on a path that then waits
** anyway), except recv on TCP in a task, which the short-read hint sends
** to the wait at once. A blocking socket inside a coroutine goes the full
** way: whether it is a task's is asked there. */
static int firsttry(lua_State *L, bsd_socket *s) {
  return s->fd_nonblock || (s->timeout < 0 && !lua_isyieldable(L));
}

/* after the first try failed with err: a result to return (nonzero, the
** number of values pushed) or 0 to go the full way */
static int firstfail(lua_State *L, bsd_socket *s, const char *call, int err,
                     int want) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    if (s->timeout != 0) return 0;        /* wait as the I/O loop does */
    s->want = want;                       /* non-blocking: no wait */
    return bsd_sockerror(L, s, call, EAGAIN);
  }
  if (err == EINTR && !bsd_interrupted(L)) return 0;
  return bsd_sockerror(L, s, call, err);
}

static int sock_send(lua_State *L) {
  if (lua_gettop(L) == 2 && lua_type(L, 2) == LUA_TSTRING) {
    bsd_socket *s = bsd_checkself(L);
    if (firsttry(L, s)) {
      size_t len;
      const char *data = lua_tolstring(L, 2, &len);
      ssize_t n = bsd_send(s->fd, data, len, BSD_MSG_NOSIGNAL);
      int r;
      if (n >= 0) {
        lua_pushinteger(L, (lua_Integer)n);
        return 1;
      }
      if ((r = firstfail(L, s, "send", errno, BSD_WANT_WRITE)) != 0) return r;
    }
  }
  if (lua_type(L, 2) == LUA_TTABLE)
    return op_sendlist(L, LUA_OK, lua_gettop(L));
  return op_send(L, LUA_OK, lua_gettop(L));
}

/* sends the rest; the count so far rides in the continuation's context */
static bsd_iostatus impl_sendall(lua_State *L, bsd_io *io) {
  sendargs *a = (sendargs *)io->data;
  ssize_t n;
  (void)L;
  if (a->done >= a->len) return BSD_IO_DONE;
  n = bsd_send(io->s->fd, a->data + a->done, a->len - a->done,
               BSD_MSG_NOSIGNAL);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_WRITE);
  a->done += (size_t)n;
  io->kctx = (lua_KContext)a->done;
  return a->done >= a->len ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

static int op_sendall(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  sendargs a;
  int r;
  bsd_iobegin(L, &io, "sendall", status, 4);
  a.data = bsd_checkbytes(L, 2, &a.len);
  /* sendall(data, i, j): data:sub(i, j) */
  if (!lua_isnil(L, 3) || !lua_isnil(L, 4)) {
    size_t i = posrelat(luaL_optinteger(L, 3, 1), a.len);
    size_t j = posrelat(luaL_optinteger(L, 4, -1), a.len);
    if (i < 1) i = 1;
    if (j > a.len) j = a.len;
    a.data += i - 1;
    a.len = i > j ? 0 : j - i + 1;
  }
  a.done = (size_t)ctx;
  io.impl = impl_sendall;
  io.data = &a;
  if ((r = bsd_iorun(L, &io, ctx, op_sendall)) != BSD_IO_FINISHED) {
    lua_pushinteger(L, (lua_Integer)a.done);
    return r + 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int op_sendalllist(lua_State *L, int status, lua_KContext ctx);

static int sock_sendall(lua_State *L) {
  size_t len;
  const char *data;
  if (lua_gettop(L) == 2 && lua_type(L, 2) == LUA_TSTRING
      && (data = lua_tolstring(L, 2, &len), len > 0)) {
    bsd_socket *s = bsd_checkself(L);
    if (firsttry(L, s)) {
      ssize_t n = bsd_send(s->fd, data, len, BSD_MSG_NOSIGNAL);
      int r;
      if ((size_t)n == len) {
        lua_pushboolean(L, 1);
        return 1;
      }
      if (n >= 0) {                       /* the rest the full way */
        lua_settop(L, 4);
        return op_sendall(L, LUA_OK, (lua_KContext)n);
      }
      if ((r = firstfail(L, s, "sendall", errno, BSD_WANT_WRITE)) != 0) {
        lua_pushinteger(L, 0);            /* no byte sent */
        return r + 1;
      }
    }
  }
  lua_settop(L, 4);
  if (lua_type(L, 2) == LUA_TTABLE) return op_sendalllist(L, LUA_OK, 0);
  return op_sendall(L, LUA_OK, 0);
}

/* ---- gathered writes: send and sendall of a list of strings and buffers,
** one sendmsg for all of them (a header and a body in one system call) ---- */

#define GATHER_MAX 1024     /* IOV_MAX on Linux */
#define GATHER_STACK 16     /* lists up to this long need no allocation */

typedef struct gatherargs {
  struct iovec *iov;        /* the parts not sent yet */
  int niov;
  int all;                  /* sendall: until every byte is sent */
  int flags;
  size_t total;             /* bytes in all parts */
  size_t done;              /* bytes sent (sendall: so far, over yields) */
  struct iovec small[GATHER_STACK];
} gatherargs;

/* The list at arg as iovecs, without its first skip bytes (sent before a
** yield). The strings and buffers stay referenced by the list. */
static void gatherparts(lua_State *L, int arg, gatherargs *g, size_t skip) {
  size_t n = lua_rawlen(L, arg), i;
  luaL_argcheck(L, n <= GATHER_MAX, arg, "more than 1024 parts");
  g->iov = n <= GATHER_STACK ? g->small
         : (struct iovec *)lua_newuserdatauv(L, n * sizeof(struct iovec), 0);
  g->niov = 0;
  g->total = 0;
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *p;
    bsd_buffer *b;
    if (lua_rawgeti(L, arg, (lua_Integer)i) == LUA_TSTRING)
      p = lua_tolstring(L, -1, &len);
    else if ((b = (bsd_buffer *)luaL_testudata(L, -1, BSD_BUFFER_MT)) != NULL) {
      p = b->data;
      len = b->size;
    }
    else {
      luaL_error(L, "bad part #%d (string or buffer expected, got %s)", (int)i,
                 luaL_typename(L, -1));
      return;
    }
    lua_pop(L, 1);
    g->total += len;
    if (len <= skip) {
      skip -= len;
      continue;
    }
    g->iov[g->niov].iov_base = (void *)(p + skip);
    g->iov[g->niov].iov_len = len - skip;
    g->niov++;
    skip = 0;
  }
}

static bsd_iostatus impl_sendlist(lua_State *L, bsd_io *io) {
  gatherargs *g = (gatherargs *)io->data;
  struct msghdr msg;
  ssize_t n;
  size_t left;
  (void)L;
  if (g->all && g->done >= g->total) return BSD_IO_DONE;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = g->iov;
  msg.msg_iovlen = (size_t)g->niov;
  n = bsd_sendmsg(io->s->fd, &msg, g->flags);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_WRITE);
  g->done += (size_t)n;
  if (!g->all) return BSD_IO_DONE;
  io->kctx = (lua_KContext)g->done;
  if (g->done >= g->total) return BSD_IO_DONE;
  for (left = (size_t)n; left >= g->iov->iov_len; g->iov++, g->niov--)
    left -= g->iov->iov_len;      /* parts sent whole */
  g->iov->iov_base = (char *)g->iov->iov_base + left;
  g->iov->iov_len -= left;
  return BSD_IO_PROGRESS;
}

/* send(list [, nil, nil [, flags]]) -> bytes sent by one sendmsg */
static int op_sendlist(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  gatherargs g;
  int r;
  bsd_iobegin(L, &io, "send", status, (int)ctx);
  luaL_argcheck(L, lua_isnoneornil(L, 3) && lua_isnoneornil(L, 4), 3,
                "i, j select bytes of a string or buffer, not of a list");
  g.all = 0;
  g.done = 0;
  g.flags = bsd_optint(L, 5, 0) | BSD_MSG_NOSIGNAL;
  gatherparts(L, 2, &g, g.done);
  io.impl = impl_sendlist;
  io.data = &g;
  bsd_ioflags(&io, g.flags);
  if ((r = bsd_iorun(L, &io, ctx, op_sendlist)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)g.done);
  return 1;
}

/* sendall(list) -> true; the count so far rides in the context */
static int op_sendalllist(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  gatherargs g;
  int r;
  bsd_iobegin(L, &io, "sendall", status, 4);
  luaL_argcheck(L, lua_isnil(L, 3) && lua_isnil(L, 4), 3,
                "i, j select bytes of a string or buffer, not of a list");
  g.all = 1;
  g.done = (size_t)ctx;
  g.flags = BSD_MSG_NOSIGNAL;
  gatherparts(L, 2, &g, g.done);
  io.impl = impl_sendlist;
  io.data = &g;
  if ((r = bsd_iorun(L, &io, ctx, op_sendalllist)) != BSD_IO_FINISHED) {
    lua_pushinteger(L, (lua_Integer)g.done);
    return r + 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static bsd_iostatus impl_sendto(lua_State *L, bsd_io *io) {
  sendargs *a = (sendargs *)io->data;
  ssize_t n = bsd_sendto(io->s->fd, a->data, a->len, a->flags,
                     (const struct sockaddr *)&a->to->ss, a->to->len);
  (void)L;
  if (n >= 0) a->done = (size_t)n;
  return bsd_iosyscall(io, n, BSD_WANT_WRITE);
}

static int op_sendto(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  sendargs a;
  bsd_addr to;
  int used, r;
  bsd_socket *s = bsd_iobegin(L, &io, "sendto", status, (int)ctx);
  a.data = bsd_checkbytes(L, 2, &a.len);
  if ((used = bsd_getaddrarg(L, 3, s->family, s->type, "sendto", &to)) == 0)
    return 3;
  a.flags = (lua_gettop(L) < 3 + used ? 0 : bsd_optint(L, 3 + used, 0))
            | BSD_MSG_NOSIGNAL;
  a.to = &to;
  io.impl = impl_sendto;
  io.data = &a;
  io.peer = &to;
  bsd_ioflags(&io, a.flags);
  if ((r = bsd_iorun(L, &io, ctx, op_sendto)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)a.done);
  return 1;
}

/* the fast path of sendto(data, addr) (see firsttry above); its errors
** name the address, as io.peer makes bsd_iorun's do */
static int sock_sendto(lua_State *L) {
  const bsd_addr *to;
  if (lua_gettop(L) == 3 && lua_type(L, 2) == LUA_TSTRING
      && (to = bsd_testaddr(L, 3)) != NULL) {
    bsd_socket *s = bsd_checkself(L);
    if (firsttry(L, s)) {
      size_t len;
      const char *data = lua_tolstring(L, 2, &len);
      ssize_t n = bsd_sendto(s->fd, data, len, BSD_MSG_NOSIGNAL,
                             (const struct sockaddr *)&to->ss, to->len);
      int err;
      if (n >= 0) {
        lua_pushinteger(L, (lua_Integer)n);
        return 1;
      }
      err = errno;
      if ((err == EAGAIN || err == EWOULDBLOCK) && s->timeout == 0) {
        s->want = BSD_WANT_WRITE;
        return bsd_addrerror(L, "sendto", to, EAGAIN);
      }
      if (err != EAGAIN && err != EWOULDBLOCK
          && (err != EINTR || bsd_interrupted(L)))
        return bsd_addrerror(L, "sendto", to, err);
    }
  }
  return op_sendto(L, LUA_OK, lua_gettop(L));
}

/* ---- receiving ---- */

/* Reads over RECV_SMALL land in one buffer per module instance (the
** methods' shared BSD_UV_SCRATCH table holds it, grown on demand up to
** BSD_RECV_MAX), and only the bytes received are copied into the string:
** no allocation of maxbytes per call, none at all for a call that finds
** nothing to read. */
static char *scratch(lua_State *L, size_t size) {
  bsd_shared *sh = shared(L);
  if (size > sh->scratchsize) {
    size_t n = size < 65536 ? 65536 : size;
    sh->scratch = (char *)lua_newuserdatauv(L, n, 0);
    sh->scratchsize = n;
    lua_rawseti(L, BSD_UV_SCRATCH, 1);  /* the table keeps it alive */
  }
  return sh->scratch;
}

typedef struct recvargs {
  char *buf;
  size_t max;
  size_t got;
  int flags;
  int hinted;           /* the short-read hint applies (TCP, no flags) */
  struct sockaddr_storage from;
  socklen_t fromlen;
  int wantfrom;
} recvargs;

static bsd_iostatus impl_recv(lua_State *L, bsd_io *io) {
  recvargs *a = (recvargs *)io->data;
  bsd_socket *s = io->s;
  ssize_t n;
  if (!a->buf) a->buf = scratch(L, a->max);
  if (a->wantfrom) {
    a->fromlen = sizeof a->from;
    n = recvfrom(s->fd, a->buf, a->max, a->flags, (struct sockaddr *)&a->from,
                 &a->fromlen);
  }
  else n = recv(s->fd, a->buf, a->max, a->flags);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_READ);
  /* MSG_TRUNC reports the real length */
  if ((size_t)n > a->max) n = (ssize_t)a->max;
  /* A short TCP read: the queue was empty then, and whatever comes since
  ** makes the loop's poller report the socket (edge-triggered), so the next
  ** recv in a task may wait for that report instead of trying. Not at EOF,
  ** which no later report announces again; nor once rsticky says a short
  ** read may have left something. */
  if (a->hinted && n > 0 && (size_t)n < a->max && !s->rsticky) s->rdrained = 1;
  a->got = (size_t)n;
  return BSD_IO_DONE;
}

/* What recv, recvfrom, recv_into and recvfrom_into do once their
** arguments are read: the short-read hint, MSG_DONTWAIT, the I/O loop. */
static int recvrun(lua_State *L, bsd_io *io, bsd_socket *s, recvargs *a,
                   lua_KContext ctx, lua_KFunction k) {
  a->hinted = a->flags == 0 && s->type == SOCK_STREAM &&
              (s->family == AF_INET || s->family == AF_INET6);
  if (a->hinted && s->rdrained) {
    s->rdrained = 0;
    io->waitfirst = 1;
  }
  io->impl = impl_recv;
  io->data = a;
  bsd_ioflags(io, a->flags);
  return bsd_iorun(L, io, ctx, k);
}

/* recv and recvfrom: reads into C memory, then one copy into the string */
static int recvcommon(lua_State *L, int status, lua_KContext ctx,
                      lua_KFunction k, const char *call, recvargs *a) {
  bsd_io io;
  bsd_socket *s = bsd_iobegin(L, &io, call, status, (int)ctx);
  char small[RECV_SMALL];
  int r;
  a->max = bsd_checkmaxbytes(L, 2);
  a->flags = lua_gettop(L) == 2 ? 0 : bsd_optint(L, 3, 0);
  /* a large read's buffer is fetched by the impl: a task that waits
  ** first needs none before it yields */
  a->buf = a->max <= sizeof small ? small : NULL;
  if ((r = recvrun(L, &io, s, a, ctx, k)) != BSD_IO_FINISHED) return r;
  lua_pushlstring(L, a->buf, a->got);
  return BSD_IO_FINISHED;
}

static int op_recv(lua_State *L, int status, lua_KContext ctx) {
  recvargs a;
  int r;
  a.wantfrom = 0;
  r = recvcommon(L, status, ctx, op_recv, "recv", &a);
  return r == BSD_IO_FINISHED ? 1 : r;
}

/* recv(max) into a new string on the stack: returns recv's result, the
** string pushed when it is >= 0 */
static ssize_t recvcopy(lua_State *L, int fd, size_t max) {
  char small[RECV_SMALL];
  char *buf = max <= sizeof small ? small : scratch(L, max);
  ssize_t n = recv(fd, buf, max, 0);
  if (n >= 0) lua_pushlstring(L, buf, (size_t)n);
  return n;
}

#if LUA_VERSION_NUM >= 505
/* Lua 5.5: a large read lands in a block of the state's allocator that
** becomes the string itself (lua_pushexternalstring), shrunk to what came
** (lua_Alloc never fails a shrink), as luaL_pushresult does: no copy, and
** 10-20% less CPU for bulk recv(65536). A refused block: recvcopy. */
static ssize_t recvext(lua_State *L, int fd, size_t max) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  char *p = (char *)f(ud, NULL, LUA_TSTRING, max + 1), *q;
  ssize_t n;
  int err;
  if (!p) return recvcopy(L, fd, max);
  if ((n = recv(fd, p, max, 0)) < 0) {
    err = errno;
    f(ud, p, max + 1, 0);
    errno = err;
    return n;
  }
  if ((size_t)n < max && (q = (char *)f(ud, p, max + 1, (size_t)n + 1)))
    p = q;
  p[n] = '\0';
  lua_pushexternalstring(L, p, (size_t)n, f, ud);
  /* the collector counts the header only: told of the body too, it does
  ** not let garbage strings pile up between its cycles */
  if (lua_gc(L, LUA_GCISRUNNING)) lua_gc(L, LUA_GCSTEP, (size_t)n + 1);
  return n;
}
#endif

static ssize_t recvpush(lua_State *L, int fd, size_t max) {
#if LUA_VERSION_NUM >= 505
  if (max > RECV_SMALL && max <= RECV_EXT_MAX) return recvext(L, fd, max);
#endif
  return recvcopy(L, fd, max);
}

/* One recv(max) on s with no flags, as the fast paths make it: the
** string (1), a result to return (its count), or 0 to go the full way. The
** short-read hint is kept as impl_recv keeps it; a try that would block
** sets it too, so that a task waits instead of trying again. */
static int recvonce(lua_State *L, bsd_socket *s, size_t max) {
  ssize_t n = recvpush(L, s->fd, max);
  int hinted = s->type == SOCK_STREAM && !s->rsticky
               && (s->family == AF_INET || s->family == AF_INET6);
  int r, err;
  if (n >= 0) {
    if (hinted && n > 0 && (size_t)n < max) s->rdrained = 1;
    return 1;
  }
  err = errno;
  if ((r = firstfail(L, s, "recv", err, BSD_WANT_READ)) != 0) return r;
  if (hinted && err != EINTR) s->rdrained = 1;
  return 0;
}

/* recv(max) in a task on a socket without a timeout whose queue a short
** read found empty: wait for the loop's report at once, as yieldwait
** would (a nil deadline under the yielded values, for ioresume; max, the
** checked argument 2, as the context)... */
static int k_recvtask(lua_State *L, int status, lua_KContext ctx);

static int yieldrecv(lua_State *L, bsd_socket *s, size_t max,
                     const bsd_shared *sh) {
  s->rdrained = 0;
  s->want = BSD_WANT_READ;
  s->waited = 1;
  lua_pushnil(L);
  if (waitdirect(L, sh, s, BSD_WANT_READ, -1))
    return lua_yieldk(L, 0, (lua_KContext)max, k_recvtask);
  lua_rawgeti(L, BSD_UV_SCRATCH, SCRATCH_WAITSTR);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, BSD_WANT_READ);
  lua_pushnil(L);
  return lua_yieldk(L, 4, (lua_KContext)max, k_recvtask);
}

/* ...and once the loop says ready (true), read at once, without the I/O
** loop's set-up. Anything else (a deadline, a cancel, a close) goes the
** full way, which knows what the resumption means. */
static int k_recvtask(lua_State *L, int status, lua_KContext ctx) {
  bsd_socket *s = tagged(L, 1);
  if (status == LUA_YIELD && s && s->fd >= 0 && s->timeout < 0
      && lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    int r;
    lua_settop(L, 2);
    if ((r = recvonce(L, s, (size_t)ctx)) != 0) return r;
    if (s->rdrained) return yieldrecv(L, s, (size_t)ctx, shared(L));
    return op_recv(L, LUA_OK, 2);
  }
  return op_recv(L, status, 2);
}

/* the fast path of recv(max) (see firsttry above). A socket whose queue a
** short read found empty goes the full way (a task waits first there),
** or, in a task on a socket without a timeout, waits at once. */
static int sock_recv(lua_State *L) {
  if (lua_gettop(L) == 2) {
    bsd_socket *s = bsd_checkself(L);
    size_t max = bsd_checkmaxbytes(L, 2);
    if (!s->rdrained && firsttry(L, s)) {
      int r = recvonce(L, s, max);
      if (r != 0) return r;
    }
    if (s->rdrained && s->fd_nonblock && s->timeout < 0) {
      const bsd_shared *sh = shared(L);
      if (intask(L, sh)) return yieldrecv(L, s, max, sh);
    }
  }
  return op_recv(L, LUA_OK, lua_gettop(L));
}

static int op_recvfrom(lua_State *L, int status, lua_KContext ctx) {
  recvargs a;
  int r;
  a.wantfrom = 1;
  /* a connected stream names no sender: fromlen 0, from unwritten */
  a.from.ss_family = AF_UNSPEC;
  r = recvcommon(L, status, ctx, op_recvfrom, "recvfrom", &a);
  if (r != BSD_IO_FINISHED) return r;
  if (a.fromlen > sizeof(sa_family_t) || a.from.ss_family == AF_UNIX)
    bsd_newaddr(L, (struct sockaddr *)&a.from, a.fromlen);
  else
    lua_pushnil(L);  /* connected stream sockets report no sender */
  return 2;
}

static int sock_recvfrom(lua_State *L) {
  return op_recvfrom(L, LUA_OK, lua_gettop(L));
}

/* recv_into(buf [, n [, offset [, flags]]]): reads into the buffer's
** bytes offset .. offset+n-1 (offset counts from 0; n defaults to the rest
** of the buffer), with no copy and no string. */
static int recvinto(lua_State *L, int status, lua_KContext ctx, lua_KFunction k,
                    const char *call, recvargs *a) {
  bsd_io io;
  bsd_socket *s = bsd_iobegin(L, &io, call, status, (int)ctx);
  bsd_buffer *b = bsd_checkbuffer(L, 2);
  lua_Integer off = luaL_optinteger(L, 4, 0), n;
  int r;
  luaL_argcheck(L, 0 <= off && (size_t)off <= b->size, 4,
                lua_pushfstring(L, "offset %I outside a buffer of %I bytes",
                                off, (lua_Integer)b->size));
  n = luaL_optinteger(L, 3, (lua_Integer)(b->size - (size_t)off));
  luaL_argcheck(L, n >= 0, 3, "negative byte count");
  luaL_argcheck(L, (size_t)n <= b->size - (size_t)off, 3,
                lua_pushfstring(
                    L,
                    "%I bytes at offset %I do not fit in a buffer of %I bytes",
                    n, off, (lua_Integer)b->size));
  a->buf = b->data + off;
  a->max = (size_t)n;
  a->flags = bsd_optint(L, 5, 0);
  if ((r = recvrun(L, &io, s, a, ctx, k)) != BSD_IO_FINISHED) return r;
  lua_pushinteger(L, (lua_Integer)a->got);
  return BSD_IO_FINISHED;
}

static int op_recv_into(lua_State *L, int status, lua_KContext ctx) {
  recvargs a;
  int r;
  a.wantfrom = 0;
  r = recvinto(L, status, ctx, op_recv_into, "recv_into", &a);
  return r == BSD_IO_FINISHED ? 1 : r;
}

static int sock_recv_into(lua_State *L) {
  return op_recv_into(L, LUA_OK, lua_gettop(L));
}

static int op_recvfrom_into(lua_State *L, int status, lua_KContext ctx) {
  recvargs a;
  int r;
  a.wantfrom = 1;
  a.from.ss_family = AF_UNSPEC;
  r = recvinto(L, status, ctx, op_recvfrom_into, "recvfrom_into", &a);
  if (r != BSD_IO_FINISHED) return r;
  if (a.fromlen > sizeof(sa_family_t) || a.from.ss_family == AF_UNIX)
    bsd_newaddr(L, (struct sockaddr *)&a.from, a.fromlen);
  else
    lua_pushnil(L);
  return 2;
}

static int sock_recvfrom_into(lua_State *L) {
  return op_recvfrom_into(L, LUA_OK, lua_gettop(L));
}

/* The classic read_data loop. The bytes gathered so far live in a
** userdata at index 3 (the context counts them), so they survive a yield;
** it grows geometrically, so recvall(huge) allocates only what arrives. */
static bsd_iostatus impl_recvall(lua_State *L, bsd_io *io) {
  recvargs *a = (recvargs *)io->data;
  size_t cap = lua_rawlen(L, 3);
  ssize_t n;
  if (a->got >= a->max) return BSD_IO_DONE;
  if (a->got == cap) {
    size_t ncap = cap * 2;
    char *nbuf;
    if (ncap > a->max) ncap = a->max;
    nbuf = (char *)lua_newuserdatauv(L, ncap, 0);
    memcpy(nbuf, lua_touserdata(L, 3), a->got);
    lua_replace(L, 3);
    cap = ncap;
  }
  a->buf = (char *)lua_touserdata(L, 3);
  n = recv(io->s->fd, a->buf + a->got, cap - a->got, 0);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_READ);
  if (n == 0) {
    io->err = 0;  /* EOF: op_recvall says so */
    return BSD_IO_FAIL;
  }
  a->got += (size_t)n;
  io->kctx = (lua_KContext)a->got;
  return a->got >= a->max ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

static int eofresult(lua_State *L, bsd_io *io) {
  recvargs *a = (recvargs *)io->data;
  const char *end;
  if (io->err != 0) return bsd_sockerror(L, io->s, io->call, io->err);
  end = endtext(L, io->s);
  lua_pushfstring(L, "connection closed after %I of %I bytes",
                  (lua_Integer)a->got, (lua_Integer)a->max);
  return bsd_pushfail(L, io->call, end, lua_tostring(L, -1), "EOF");
}

static int op_recvall(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  recvargs a;
  int r;
  bsd_iobegin(L, &io, "recvall", status, 3);
  a.max = (size_t)luaL_checkinteger(L, 2);
  a.got = (size_t)ctx;
  io.impl = impl_recvall;
  io.data = &a;
  io.pusherr = eofresult;
  r = bsd_iorun(L, &io, ctx, op_recvall);
  lua_pushlstring(L, (const char *)lua_touserdata(L, 3), a.got);
  /* the bytes read so far are never lost */
  return r == BSD_IO_FINISHED ? 1 : r + 1;
}

static int sock_recvall(lua_State *L) {
  lua_Integer want;
  bsd_checkself(L);
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
  if (lua_type(L, arg) == LUA_TSTRING)
    return values[luaL_checkoption(L, arg, NULL, names)];
  how = luaL_checkinteger(L, arg);
  luaL_argcheck(L, how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR, arg,
                "\"r\", \"w\", \"rw\" or S.SHUT_* expected");
  return (int)how;
}

static int sock_shutdown(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  if (shutdown(s->fd, checkhow(L, 2)) < 0)
    return bsd_sockerror(L, s, "shutdown", errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- timeouts and the pollable-object protocol ---- */

static int sock_settimeout(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  if (lua_isnoneornil(L, 2)) s->timeout = -1;
  else {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, t >= 0 && t < 1e9, 2,
                  "timeout must be nil or 0..1e9 seconds");
    s->timeout = t;
  }
  setfdmode(s, s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_setblocking(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  s->timeout = lua_toboolean(L, 2) ? -1 : 0;
  setfdmode(s, s->timeout >= 0);
  lua_pushboolean(L, 1);
  return 1;
}

static int sock_gettimeout(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  if (s->timeout < 0) lua_pushnil(L);
  else lua_pushnumber(L, s->timeout);
  return 1;
}

/* For other event loops (cqueues reads a number as "wait at most this
** long"): the socket's own timeout, or nil where there is none to honour
** (blocking, or non-blocking: the loop waits as long as it likes). */
static int sock_polltimeout(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  if (s->timeout > 0) lua_pushnumber(L, s->timeout);
  else lua_pushnil(L);
  return 1;
}

static int sock_events(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
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

static const name typenames[] = {{SOCK_STREAM, "SOCK_STREAM"},
                                 {SOCK_DGRAM, "SOCK_DGRAM"},
                                 {SOCK_RAW, "SOCK_RAW"},
                                 {SOCK_SEQPACKET, "SOCK_SEQPACKET"},
                                 {0, NULL}};

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
  {"recv_into", sock_recv_into},
  {"recvfrom_into", sock_recvfrom_into},
  {"shutdown", sock_shutdown},
  {"close", sock_close},
  {"getsockname", sock_getsockname},
  {"getpeername", sock_getpeername},
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
  {"__close", sock_toclose},
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
  pushshared(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &scratchholderkey);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushliteral(L, "bsdsocket.wait");  /* what a task yields, at hand */
    lua_rawseti(L, -2, SCRATCH_WAITSTR);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &scratchholderkey);
  }
}

void bsd_addmethods(lua_State *L, const luaL_Reg *methods) {
  luaL_getmetatable(L, BSD_SOCKET_MT);
  lua_getfield(L, -1, "__index");
  bsd_pushmethodupvalues(L);
  luaL_setfuncs(L, methods, BSD_METHOD_UPVALUES);
  lua_pop(L, 2);
}

/* ---- the C API for bsdsocket.tls (see bsd_capi in bsdsocket.h) ---- */

static bsd_socket *testsocket(lua_State *L, int idx) {
  bsd_socket *s = tagged(L, idx);
  return s ? s : (bsd_socket *)luaL_testudata(L, idx, BSD_SOCKET_MT);
}

static const bsd_capi capi = {
    BSD_CAPI_VERSION, sizeof(bsd_socket), sizeof(bsd_io),
    testsocket,       bsd_newsocket,      bsd_pushmethodupvalues,
    bsd_iobeginwith,  bsd_iorun,          bsd_ioerror,
    bsd_sockerror,    bsd_pushfail,       bsd_pusherror,
    endtext,          closewith,          setfdmode,
    bsd_monotime};

void bsd_open_capi(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&capi);
  lua_setfield(L, LUA_REGISTRYINDEX, BSD_CAPI_KEY);
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
