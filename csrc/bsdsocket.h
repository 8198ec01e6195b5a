/*
** bsdsocket internal header: what the C sources of bsdsocket.core share.
** Nothing here is visible to Lua except through luaopen_bsdsocket_core.
*/
#ifndef BSDSOCKET_H
#define BSDSOCKET_H

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netdb.h>

#include "lua.h"
#include "lauxlib.h"

#include "platform.h"
#if BSD_NEED_PIPEGUARD
#include <signal.h>   /* outside the hidden visibility below */
#endif

/* Internal functions are hidden: only luaopen_bsdsocket_core is exported,
** and calls between the sources stay direct (no PLT) and inlinable. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define BSD_SOCKET_MT "bsdsocket.socket"
#define BSD_ADDR_MT   "bsdsocket.addr"
#define BSD_POLLER_MT "bsdsocket.poller"

/* registry key of the weak table whose keys are the coroutines run by
** bsdsocket.loop; a socket call that would block inside one of them yields */
#define BSD_TASKS_KEY "bsdsocket.tasks"
/* ... also kept under this address, whence the socket methods take it
** as an upvalue */
extern const char bsd_taskskey;

/* Every socket method is a C closure with these upvalues, so the hot paths
** reach them without a registry lookup (bsd_pushmethodupvalues pushes
** them). */
#define BSD_UV_SHARED       lua_upvalueindex(1)  /* bsd_shared, below */
#define BSD_UV_SCRATCH                                                         \
  lua_upvalueindex(2) /* { read buffer } shared by the methods */
#define BSD_METHOD_UPVALUES 2
void bsd_pushmethodupvalues(lua_State *L);

/* wait-for events, as the loop sees them in a yield */
#define BSD_WANT_READ  1
#define BSD_WANT_WRITE 2

/* marks a bsd_socket (see checkself in socket.c) */
#define BSD_SOCKET_TAG 0x62736473  /* "bsds" */

typedef struct bsd_socket {
  int tag;           /* BSD_SOCKET_TAG */
  int fd;            /* -1 once closed or detached */
  int family;
  int type;          /* without SOCK_NONBLOCK/SOCK_CLOEXEC bits */
  int protocol;
  /* the descriptor the loop's poller has for it (loop.c), else -1, and
  ** which scheduler's poller that is */
  int loopfd;
  unsigned loopid;
  unsigned char fd_nonblock;  /* O_NONBLOCK is set on fd */
  unsigned char want;  /* BSD_WANT_* of the last call that would have blocked */
  /* Readiness hint for tasks on TCP sockets (see recvinto in socket.c):
  ** rdrained says a short read emptied the receive queue, so the next recv
  ** in a task may wait for the poller without trying; a poller that
  ** reports the socket readable clears it. rsticky: a poller reported
  ** urgent data (whose mark ends a read early), the peer's close or an
  ** error, which stay without a new report, so short reads prove nothing. */
  unsigned char rdrained;
  unsigned char rsticky;
  /* a loop task has waited on it: closing it wakes the waiters */
  unsigned char waited;
  double timeout;    /* seconds; < 0 means block forever */
} bsd_socket;

/* marks a bsd_addr (see bsd_testaddr in addr.c) */
#define BSD_ADDR_TAG 0x62736461  /* "bsda" */

typedef struct bsd_addr {
  int tag;           /* BSD_ADDR_TAG */
  socklen_t len;
  struct sockaddr_storage ss;
} bsd_addr;

/* ---- util.c: depends on no other project file ---- */

/* recv and its kin never read more than this per call, so recv(huge)
** allocates no more */
#define BSD_RECV_MAX (1 << 20)

/* luaL_checkinteger/luaL_optinteger for a C int: a value outside
** INT_MIN..INT_MAX raises instead of being silently truncated */
int bsd_checkint(lua_State *L, int arg);
int bsd_optint(lua_State *L, int arg, int def);
int bsd_checkfdnum(lua_State *L, int arg);        /* 0..INT_MAX */
/* >= 0, capped at BSD_RECV_MAX */
size_t bsd_checkmaxbytes(lua_State *L, int arg);
double bsd_monotime(void);
int bsd_setnonblock(int fd, int on);
/* A socket descriptor made or adopted: close-on-exec unless the kernel did
** it (cloexec 0), non-blocking when asked, and SO_NOSIGPIPE where sends
** have no MSG_NOSIGNAL. 0, or -1 with errno (fd left open). */
int bsd_prepfd(int fd, int cloexec, int nonblock);
/* Writes that cannot raise SIGPIPE: with MSG_NOSIGNAL, on an SO_NOSIGPIPE
** socket, or else with SIGPIPE blocked in this thread for the call and the
** one it raised taken off (bsd_pipeguard). No process-wide setting. */
#if BSD_NEED_PIPEGUARD
typedef struct bsd_pipeguard {
  sigset_t old;
  int pending;     /* a SIGPIPE was pending before: not ours to take */
} bsd_pipeguard;
void bsd_pipeguard_on(bsd_pipeguard *g);
void bsd_pipeguard_off(bsd_pipeguard *g);
ssize_t bsd_send(int fd, const void *p, size_t n, int flags);
ssize_t bsd_sendto(int fd, const void *p, size_t n, int flags,
                   const struct sockaddr *to, socklen_t tolen);
ssize_t bsd_sendmsg(int fd, const struct msghdr *m, int flags);
#else
/* the callers pass BSD_MSG_NOSIGNAL in flags */
#define bsd_send(fd, p, n, fl) send(fd, p, n, fl)
#define bsd_sendto(fd, p, n, fl, to, tl) sendto(fd, p, n, fl, to, tl)
#define bsd_sendmsg(fd, m, fl) sendmsg(fd, m, fl)
#endif
/* running in a coroutine of S._tasks, the loop's tasks */
int bsd_intask(lua_State *L);
/* after EINTR: true when the signal asked Lua to run a hook at once (Ctrl-C
** in lua.c), so the call must return to Lua instead of retrying */
int bsd_interrupted(lua_State *L);

/* A poller backend whose registrations would outlive close(2) (kqueue
** emulated on Linux keeps them; poll(2) would report POLLNVAL) watches
** closes: bsd_closing(L, fd) calls fn with fd, and is called just before
** the module closes a descriptor a poller may have registered (a socket's
** close, __close, __gc, a TLS stream's close, a lookup's wake socket). */
typedef struct bsd_closewatch {
  void (*fn)(struct bsd_closewatch *w, int fd);
  struct bsd_closewatch *next, *prev;   /* util.c's list */
} bsd_closewatch;
void bsd_watchcloses(lua_State *L, bsd_closewatch *w);
void bsd_unwatchcloses(bsd_closewatch *w);  /* harmless if not watching */
void bsd_closing(lua_State *L, int fd);

/* ---- buffer.c: byte buffers (S.buffer); depends on util.c only ---- */

#define BSD_BUFFER_MT "bsdsocket.buffer"
#define BSD_BUFFER_MAX 0x7fffffff

typedef struct bsd_buffer {
  size_t size;
  char data[];       /* size bytes */
} bsd_buffer;

bsd_buffer *bsd_checkbuffer(lua_State *L, int idx);
/* a string's or a buffer's bytes (raises for anything else) */
const char *bsd_checkbytes(lua_State *L, int arg, size_t *len);
/* metatable + S.buffer into table at top */
void bsd_open_buffer(lua_State *L);

/* ---- errors.c ---- */

/* nil, "<call> <peer>: <reason>" (or "<call>: <reason>"), code: the one
** shape of every failure result */
int bsd_pushfail(lua_State *L, const char *call, const char *peer,
                 const char *reason, const char *code);
int bsd_pusherror(lua_State *L, const char *call, const char *peer, int err);
int bsd_pushgaierror(lua_State *L, const char *call, const char *peer, int gai);
const char *bsd_errname(int err);
/* sets errno, strerror in table at top */
void bsd_open_errors(lua_State *L);

/* ---- resolver.c: getaddrinfo on a worker thread, for loop tasks ---- */

/* Starts getaddrinfo(host, service, hints) on a worker thread and pushes a
** request object (1), pollable (pollfd()) until released. Nothing pushed
** when it cannot: -1 when out of descriptors, threads or memory (try again
** later: bsd_resolve_later), 0 otherwise (the caller resolves in place). */
int bsd_resolve_start(lua_State *L, const char *host, const char *service,
                      const struct addrinfo *hints);
/* Yields until the latest lookup started has its answer (which frees a
** thread and descriptors) or a short while has passed; k then tries again.
** Returns 0 when no lookup is out (resolve in place then). */
int bsd_resolve_later(lua_State *L, lua_KContext ctx, lua_KFunction k);
/* Yields "bsdsocket.wait" on the request at idx; k continues. */
int bsd_resolve_yield(lua_State *L, int idx, lua_KContext ctx, lua_KFunction k);
/* 1 once the answer is in, with *gai and *res (owned by the request; errno
** set for EAI_SYSTEM), else 0 */
int bsd_resolve_answer(lua_State *L, int idx, int *gai,
                       const struct addrinfo **res);
/* closes the wake descriptor and frees the answer (at once or by the worker) */
void bsd_resolve_release(lua_State *L, int idx);
void bsd_open_resolver(lua_State *L);

/* ---- addr.c ---- */

bsd_addr *bsd_newaddr(lua_State *L, const struct sockaddr *sa, socklen_t len);
bsd_addr *bsd_testaddr(lua_State *L, int idx);
/* Reads an address from the arguments at idx: an addr, a Unix path, or
** host, port (resolved for family). Returns the number of Lua arguments
** consumed (1 or 2), or 0 after pushing nil, msg, code (3 values) on a
** resolver failure.
** In a loop task, a host name given as arguments of the running function
** (S.addr at 1; bind, connect at 2; sendto, sendmsg, sendmmsg at 3) is
** resolved on a worker thread: bsd_getaddrarg yields, and once the answer
** is in, calls the running function again with the addr in place of host,
** port, and returns its results (or the resolver's nil, msg, code). So the
** caller must not have pushed anything above its arguments before the
** call. Elsewhere the resolution is synchronous. */
int bsd_getaddrarg(lua_State *L, int idx, int family, int socktype,
                   const char *call, bsd_addr *out);
/* text form of an address: "127.0.0.1:80", "[::1]:80", "unix:/tmp/x" */
void bsd_addrtostring(const struct sockaddr *sa, socklen_t len,
                      char *buf, size_t bufsize);
void bsd_open_addr(lua_State *L);

/* ---- socket.c: the socket object and the shared I/O loop ---- */

bsd_socket *bsd_checksocket(lua_State *L, int idx);     /* any state */
bsd_socket *bsd_checkopen(lua_State *L, int idx);       /* raises if closed */
/* the methods' check of argument 1: tagged fast path, else bsd_checkopen */
bsd_socket *bsd_checkself(lua_State *L);
bsd_socket *bsd_newsocket(lua_State *L, int fd, int family, int type,
                          int protocol);
int bsd_getfd(lua_State *L, int idx);  /* socket userdata or integer fd */
/* metatable + functions into table at top */
void bsd_open_socket(lua_State *L);
/* adds methods (closures with the BSD_METHOD_UPVALUES) to sockets */
void bsd_addmethods(lua_State *L, const luaL_Reg *methods);
/* fd as a socket object (what S.fromfd does); NULL, nothing pushed and
** errno set if fd is not a socket */
bsd_socket *bsd_wrapfd(lua_State *L, int fd);
/* nil, "<call> <peer, or local end>: <reason>", code */
int bsd_sockerror(lua_State *L, bsd_socket *s, const char *call, int err);
int bsd_addrerror(lua_State *L, const char *call, const bsd_addr *a, int err);

/* The shared I/O loop (CPython's sock_call_ex). A call that may block
** supplies only its system call, as an impl that reports one of these;
** bsd_iorun does the rest: retrying on EINTR (returning to Lua when a
** signal asked for a hook), waiting (the kernel, poll(2) with the socket's
** deadline, or a yield to bsdsocket.loop inside a task, resumed into the
** call itself), the deadline, and the error result.
**
**   static int op_x(lua_State *L, int status, lua_KContext ctx) {
**     bsd_io io;
**     bsd_socket *s = bsd_iobegin(L, &io, "x", status, (int)ctx);
**     ...read the arguments into a struct, io.impl = impl_x, io.data = &it...
**     if ((r = bsd_iorun(L, &io, ctx, op_x)) != BSD_IO_FINISHED) return r;
**     ...push the results...
**   }
*/
typedef enum bsd_iostatus {
  BSD_IO_DONE,        /* the call completed: the op pushes its results */
  BSD_IO_PROGRESS,    /* part of the work is done: call again now, and the
                      ** timeout counts afresh */
  BSD_IO_WAIT,        /* would block until io->want: wait, then call again */
  BSD_IO_FAIL         /* failed with io->err */
} bsd_iostatus;

/* what bsd_iorun returns when the impl completed (else: results pushed) */
#define BSD_IO_FINISHED (-1)

typedef struct bsd_io bsd_io;
typedef bsd_iostatus (*bsd_ioimpl)(lua_State *L, bsd_io *io);

struct bsd_io {
  bsd_socket *s;
  const char *call;         /* names the call in messages */
  bsd_ioimpl impl;
  void *data;               /* the impl's arguments and results */
  int want;                 /* BSD_WANT_* when the impl says BSD_IO_WAIT */
  int err;                  /* errno when it says BSD_IO_FAIL */
  const bsd_addr *peer;     /* errors name this address (connect, sendto) */
  /* pushes the failure result itself (TLS errors); err is set */
  int (*pusherr)(lua_State *L, bsd_io *io);
  int waitfirst;            /* in a task: wait for readiness before trying */
  lua_KContext kctx;        /* what the continuation gets: impls may update
                            ** it with their progress (sendall, recvall) */
  /* private to bsd_iobegin/bsd_iorun */
  int mode;
  int late;
  int cancel;               /* resumed by loop.cancel */
  double deadline;
};

/* Begins a call or resumes it after a yield: checks the socket at index 1
** (a socket closed during the wait gives an error result, not a raise),
** keeps the first nargs stack slots, recovers the deadline. */
bsd_socket *bsd_iobegin(lua_State *L, bsd_io *io, const char *call, int status,
                        int nargs);
/* the same for an object that is not the socket at index 1 (TLS): s is the
** socket it does its I/O on; index 1 is what a task yields to the loop */
void bsd_iobeginwith(lua_State *L, bsd_io *io, bsd_socket *s, const char *call,
                     int status, int nargs);
int bsd_iorun(lua_State *L, bsd_io *io, lua_KContext kctx, lua_KFunction k);
/* a call whose flags include MSG_DONTWAIT never waits: EAGAIN is its result */
void bsd_ioflags(bsd_io *io, int flags);
/* the impl's verdict on a system call's result n (errno when n < 0) */
bsd_iostatus bsd_iosyscall(bsd_io *io, long n, int want);
/* pushes io's failure result for err (as bsd_iorun does) */
int bsd_ioerror(lua_State *L, bsd_io *io, int err);

/* The loop's scheduler (loop.c) learns here that a socket it has waited
** on loses its descriptor fd (still open during the call): a light
** userdata to this struct in the registry under bsd_closehookkey. */
typedef struct bsd_closehook {
  void (*fn)(lua_State *L, void *ud, bsd_socket *s, int fd);
  void *ud;
} bsd_closehook;
extern const char bsd_closehookkey;

/* What the socket methods share with the loop's scheduler: one full
** userdata per Lua state, the methods' upvalue BSD_UV_SHARED (and in the
** registry, for loop.c). While a scheduler resumes a task, running is the
** task's thread: a socket call is in a task when it runs there. A call
** that must wait then asks wait to link the task as a waiter on s's
** descriptor (want: BSD_WANT_*; deadline < 0: none) and yields no values,
** so the scheduler has no yielded values to read; wait returns nonzero
** when it cannot, and the call yields "bsdsocket.wait", s, want, deadline
** instead, whose failure the scheduler reports as usual. */
typedef struct bsd_shared {
  lua_State *running;
  void *sched;
  int (*wait)(void *sched, lua_State *co, bsd_socket *s, int want,
              double deadline);
  char *scratch;          /* the read buffer (see scratch in socket.c) */
  size_t scratchsize;
} bsd_shared;
bsd_shared *bsd_getshared(lua_State *L);

/* ---- options.c, msg.c, poller.c: methods and objects on sockets ---- */

void bsd_open_options(lua_State *L);  /* setsockopt/getsockopt methods */
void bsd_open_msg(lua_State *L);      /* sendmsg/recvmsg, sendmmsg/recvmmsg */
/* sendfile, splice (methods) and S.splice into table at top */
void bsd_open_zerocopy(lua_State *L);
void bsd_open_poller(lua_State *L);

/* ---- loop.c: the scheduler under bsdsocket.loop ---- */

void bsd_open_loop(lua_State *L);   /* core._scheduler into table at top */

/* ---- capi: what other C modules (bsdsocket.tls) may call ----
**
** core.so hides its internal symbols, so a module built apart reaches the
** functions it needs through this table of pointers, which
** luaopen_bsdsocket_core leaves in the registry under BSD_CAPI_KEY (a
** light userdata). A module checks version and the struct sizes it was
** built with before using it. Socket level and below only: the layering
** errors <- addr <- socket <- {tls} holds through it. */
#define BSD_CAPI_KEY     "bsdsocket.capi"
#define BSD_CAPI_VERSION 1

typedef struct bsd_capi {
  int version;              /* BSD_CAPI_VERSION */
  size_t socketsize;        /* sizeof(bsd_socket) */
  size_t iosize;            /* sizeof(bsd_io) */
  bsd_socket *(*testsocket)(lua_State *L, int idx);  /* NULL if not a socket */
  bsd_socket *(*newsocket)(lua_State *L, int fd, int family, int type,
                           int protocol);
  /* BSD_METHOD_UPVALUES values */
  void (*pushmethodupvalues)(lua_State *L);
  void (*iobeginwith)(lua_State *L, bsd_io *io, bsd_socket *s, const char *call,
                      int status, int nargs);
  int (*iorun)(lua_State *L, bsd_io *io, lua_KContext kctx, lua_KFunction k);
  int (*ioerror)(lua_State *L, bsd_io *io, int err);
  int (*sockerror)(lua_State *L, bsd_socket *s, const char *call, int err);
  int (*pushfail)(lua_State *L, const char *call, const char *peer,
                  const char *reason, const char *code);
  int (*pusherror)(lua_State *L, const char *call, const char *peer, int err);
  /* pushes "<peer address>" of s (or "(local ...)"), or returns NULL */
  const char *(*pushendtext)(lua_State *L, bsd_socket *s);
  /* closes s's descriptor; loop tasks waiting on the object at idx (which
  ** waited through s) are woken. 0 or an errno */
  int (*closewith)(lua_State *L, bsd_socket *s, int idx);
  void (*setfdmode)(bsd_socket *s, int nonblock);
  double (*monotime)(void);
} bsd_capi;

void bsd_open_capi(lua_State *L);

/* ---- core.c: the module ---- */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
