/*
** Zero-copy sending: sock:sendfile(file, offset, count) (sendfile(2): file
** pages go to the socket without passing through user space) and
** src:splice(dst [, max]) / S.splice(src, dst [, max]) (splice(2) through a
** pipe: socket to socket, the proxy's copy loop without the copies).
**
** Where the platform has no sendfile, sendfile reads the file with pread
** and sends it through one buffer (same results, a copy more); splice is
** there only where the kernel has it (Linux).
**
** Both supply only their system calls to socket.c's I/O loop (bsd_iorun:
** timeouts, non-blocking sockets, yielding to bsdsocket.loop), as send does.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bsdsocket.h"

#if BSD_SENDFILE_LINUX
#include <sys/sendfile.h>
#elif BSD_HAVE_SENDFILE
#include <sys/uio.h>
#endif

#define SENDFILE_CHUNK 0x7ffff000   /* what Linux moves per call at most */
#define COPY_CHUNK 32768            /* the buffer of sendfile's fallback */
#define SPLICE_DEFAULT 65536
#define SPLICE_MAX (1 << 20)
#define PIPE_MT "bsdsocket.splicepipe"

/* ---- SIGPIPE ----
** sendfile and splice take no MSG_NOSIGNAL, yet a write to a closed peer
** must return EPIPE without killing the process, and the library changes
** no process-wide signal setting. So SIGPIPE is blocked in this thread for
** the call, and one that became pending during it is taken off again
** before the mask is restored: whatever the call returned, since one that
** moved some bytes and then met the peer's close returns the count yet
** has raised SIGPIPE. One pending before the call is left alone; another
** thread's write signals that thread, so its SIGPIPE is not seen here
** (only a process-wide kill -PIPE that lands during the call could be). */

typedef struct pipeguard {
  sigset_t old;
  int pending;     /* a SIGPIPE was pending before: not ours to take */
} pipeguard;

static void guardon(pipeguard *g) {
  sigset_t set, pend;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &g->old);
  g->pending = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
}

/* takes off the pending SIGPIPE (without sigtimedwait: sigwait, which
** returns at once when it is pending) */
static void takesigpipe(const sigset_t *set) {
#if BSD_HAVE_SIGTIMEDWAIT
  struct timespec zero = {0, 0};
  while (sigtimedwait(set, NULL, &zero) < 0 && errno == EINTR) {}
#else
  sigset_t pend;
  int sig;
  if (sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE))
    sigwait(set, &sig);
#endif
}

static void guardoff(pipeguard *g) {
  int err = errno;
  sigset_t pend;
  if (!g->pending && sigpending(&pend) == 0
      && sigismember(&pend, SIGPIPE)) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    takesigpipe(&set);
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
  errno = err;
}

/* ---- sendfile ---- */

/* A Lua file handle (io.open: a luaL_Stream, its FILE's descriptor) or an
** integer descriptor. */
static int checkfilefd(lua_State *L, int arg) {
  luaL_Stream *p = (luaL_Stream *)luaL_testudata(L, arg, LUA_FILEHANDLE);
  if (p) {
    if (p->closef == NULL)
      luaL_argerror(L, arg, "attempt to use a closed file");
    return fileno(p->f);
  }
  if (!lua_isinteger(L, arg)) luaL_typeerror(L, arg, "file or descriptor");
  return bsd_checkfdnum(L, arg);
}

typedef struct fileargs {
  int fd;
  off_t offset;    /* where the next byte comes from */
  size_t left;     /* bytes still to send */
  size_t done;     /* bytes sent (over yields) */
} fileargs;

/* sendfile's flavours: up to n bytes of file at off to sock; the count
** sent (0 at the file's end), or -1 with errno when nothing went. */
#if BSD_SENDFILE_LINUX
static ssize_t sendchunk(int sock, int file, off_t off, size_t n) {
  return sendfile(sock, file, &off, n);
}
#elif BSD_SENDFILE_FREEBSD
static ssize_t sendchunk(int sock, int file, off_t off, size_t n) {
  off_t sent = 0;
  /* n is never 0 here, which would mean "to the end" */
  if (sendfile(file, sock, off, n, NULL, &sent, 0) < 0 && sent == 0)
    return -1;
  return (ssize_t)sent;
}
#elif BSD_SENDFILE_APPLE
static ssize_t sendchunk(int sock, int file, off_t off, size_t n) {
  off_t len = (off_t)n;  /* in: at most; out: sent, also on EAGAIN/EINTR */
  if (sendfile(file, sock, off, &len, NULL, 0) < 0 && len == 0) return -1;
  return (ssize_t)len;
}
#else
/* no sendfile: pread and send through one buffer; a short send leaves the
** rest of the buffer to be read again on the next call */
static ssize_t sendchunk(int sock, int file, off_t off, size_t n) {
  char buf[COPY_CHUNK];
  ssize_t got = pread(file, buf, n < sizeof buf ? n : sizeof buf, off);
  if (got <= 0) return got;
  return bsd_send(sock, buf, (size_t)got, BSD_MSG_NOSIGNAL);
}
#endif

static bsd_iostatus impl_sendfile(lua_State *L, bsd_io *io) {
  fileargs *f = (fileargs *)io->data;
  ssize_t n;
  (void)L;
  pipeguard g;
  if (f->left == 0) return BSD_IO_DONE;
  guardon(&g);
  n = sendchunk(io->s->fd, f->fd, f->offset,
                f->left > SENDFILE_CHUNK ? SENDFILE_CHUNK : f->left);
  guardoff(&g);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_WRITE);
  /* the file ended first: a short count */
  if (n == 0) return BSD_IO_DONE;
  f->offset += (off_t)n;
  f->done += (size_t)n;
  f->left -= (size_t)n;
  io->kctx = (lua_KContext)f->done;
  return f->left == 0 ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

/* sendfile(file, [offset [, count]]) -> bytes sent: count bytes from
** offset (default 0: the handle's position is neither used nor moved), or
** up to the end of the file when count is nil; fewer only when the file
** ends first. On failure nil, msg, code, bytes sent before it. */
static int op_sendfile(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  fileargs f;
  lua_Integer offset, count;
  int r;
  bsd_iobegin(L, &io, "sendfile", status, 4);
  f.fd = checkfilefd(L, 2);
  offset = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, offset >= 0, 3, "negative offset");
  if (lua_isnil(L, 4)) {
    struct stat st;
    /* not a regular file (or fstat failed): until sendfile finds its end */
    if (fstat(f.fd, &st) < 0 || !S_ISREG(st.st_mode)) count = LUA_MAXINTEGER;
    else count = st.st_size > offset ? (lua_Integer)st.st_size - offset : 0;
  }
  else {
    count = luaL_checkinteger(L, 4);
    luaL_argcheck(L, count >= 0, 4, "negative byte count");
  }
  f.done = (size_t)ctx;
  f.offset = (off_t)(offset + (lua_Integer)f.done);
  f.left = (size_t)count > f.done ? (size_t)count - f.done : 0;
  io.impl = impl_sendfile;
  io.data = &f;
  if ((r = bsd_iorun(L, &io, ctx, op_sendfile)) != BSD_IO_FINISHED) {
    lua_pushinteger(L, (lua_Integer)f.done);
    return r + 1;
  }
  lua_pushinteger(L, (lua_Integer)f.done);
  return 1;
}

static int sock_sendfile(lua_State *L) {
  lua_settop(L, 4);
  return op_sendfile(L, LUA_OK, 0);
}

/* ---- splice ---- */

#if BSD_HAVE_SPLICE

/* The pipe a splice moves the bytes through: made for the call, kept on
** its stack (so it lives across yields) and closed when the call ends; its
** __gc closes it if the call never ends (a task that is dropped). */
typedef struct splicepipe {
  int fd[2];
} splicepipe;

static void closepipe(splicepipe *p) {
  if (p->fd[0] >= 0) close(p->fd[0]);
  if (p->fd[1] >= 0) close(p->fd[1]);
  p->fd[0] = p->fd[1] = -1;
}

static int pipe_gc(lua_State *L) {
  closepipe((splicepipe *)luaL_checkudata(L, 1, PIPE_MT));
  return 0;
}

/* The context: which half runs, and the counts, so a resumed call goes on.
** Phase 1 reads from src into the pipe, with src at index 1; phase 2 writes
** the pipe to dst, with the two sockets swapped, so that a task waits on
** (and a message names) the socket the half works on. */
#define PHASE2 1
#define CTX(moved, inpipe, phase)                                              \
  ((lua_KContext)(((lua_Integer)(moved) << 22) | ((lua_Integer)(inpipe) << 1)  \
                  | (phase)))
#define CTX_MOVED(c)  ((size_t)((c) >> 22))
#define CTX_INPIPE(c) ((size_t)(((c) >> 1) & 0x1FFFFF))

typedef struct spliceargs {
  splicepipe *p;
  size_t max;
  size_t moved;    /* read from src */
  size_t inpipe;   /* of which still in the pipe */
} spliceargs;

static bsd_iostatus impl_splicein(lua_State *L, bsd_io *io) {
  spliceargs *a = (spliceargs *)io->data;
  ssize_t n;
  (void)L;
  n = splice(io->s->fd, NULL, a->p->fd[1], NULL, a->max,
             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_READ);
  a->moved = a->inpipe = (size_t)n;
  return BSD_IO_DONE;
}

static bsd_iostatus impl_spliceout(lua_State *L, bsd_io *io) {
  spliceargs *a = (spliceargs *)io->data;
  ssize_t n;
  (void)L;
  pipeguard g;
  if (a->inpipe == 0) return BSD_IO_DONE;
  guardon(&g);
  n = splice(a->p->fd[0], NULL, io->s->fd, NULL, a->inpipe,
             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  guardoff(&g);
  if (n < 0) return bsd_iosyscall(io, n, BSD_WANT_WRITE);
  a->inpipe -= (size_t)n;
  io->kctx = CTX(a->moved, a->inpipe, PHASE2);
  return a->inpipe == 0 ? BSD_IO_DONE : BSD_IO_PROGRESS;
}

static int splicefail(spliceargs *a, int r) {
  closepipe(a->p);
  return r;
}

/* src:splice(dst [, max]) -> bytes moved (at most max, default 64 KiB),
** 0 when src is at EOF; nil, msg, code. Stack: src, dst, max, pipe. */
static int op_splice(lua_State *L, int status, lua_KContext ctx) {
  bsd_io io;
  spliceargs a;
  int r;
  a.p = (splicepipe *)lua_touserdata(L, 4);
  a.max = (size_t)lua_tointeger(L, 3);
  if (!(ctx & PHASE2)) {
    bsd_iobegin(L, &io, "splice", status, 4);
    io.impl = impl_splicein;
    io.data = &a;
    if ((r = bsd_iorun(L, &io, 0, op_splice)) != BSD_IO_FINISHED)
      return splicefail(&a, r);
    if (a.moved == 0) {
      closepipe(a.p);
      lua_pushinteger(L, 0);
      return 1;
    }
    /* dst to index 1 for the second half */
    lua_pushvalue(L, 1);
    lua_copy(L, 2, 1);
    lua_replace(L, 2);
    ctx = CTX(a.moved, a.inpipe, PHASE2);
    status = LUA_OK;
  }
  a.moved = CTX_MOVED(ctx);
  a.inpipe = CTX_INPIPE(ctx);
  bsd_iobeginwith(L, &io, bsd_checksocket(L, 1), "splice", status, 4);
  io.impl = impl_spliceout;
  io.data = &a;
  if ((r = bsd_iorun(L, &io, ctx, op_splice)) != BSD_IO_FINISHED)
    return splicefail(&a, r);
  closepipe(a.p);
  lua_pushinteger(L, (lua_Integer)a.moved);
  return 1;
}

static int sock_splice(lua_State *L) {
  lua_Integer max;
  splicepipe *p;
  bsd_checkself(L);
  bsd_checkopen(L, 2);
  max = luaL_optinteger(L, 3, SPLICE_DEFAULT);
  luaL_argcheck(L, max > 0, 3, "byte count must be positive");
  if (max > SPLICE_MAX) max = SPLICE_MAX;
  lua_settop(L, 2);
  lua_pushinteger(L, max);
  p = (splicepipe *)lua_newuserdatauv(L, sizeof *p, 0);
  p->fd[0] = p->fd[1] = -1;
  luaL_setmetatable(L, PIPE_MT);
  if (pipe2(p->fd, O_CLOEXEC | O_NONBLOCK) < 0)
    return bsd_pusherror(L, "splice", NULL, errno);
  return op_splice(L, LUA_OK, 0);
}

#endif

static const luaL_Reg zc_methods[] = {
  {"sendfile", sock_sendfile},
#if BSD_HAVE_SPLICE
  {"splice", sock_splice},
#endif
  {NULL, NULL}
};

/* without splice(2), sock.splice and S.splice are nil: a script tests
** them and copies through recv/send itself (examples/tcp_proxy.lua) */
void bsd_open_zerocopy(lua_State *L) {
  bsd_addmethods(L, zc_methods);
#if BSD_HAVE_SPLICE
  luaL_newmetatable(L, PIPE_MT);
  lua_pushcfunction(L, pipe_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  /* S.splice(src, dst [, max]): the same call, for scripts that read it so */
  bsd_pushmethodupvalues(L);
  lua_pushcclosure(L, sock_splice, BSD_METHOD_UPVALUES);
  lua_setfield(L, -2, "splice");
#endif
}
