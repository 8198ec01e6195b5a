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
/* ... also kept under this address, whence the socket methods take it as an upvalue */
extern const char bsd_taskskey;

/* Every socket method is a C closure with these upvalues, so the hot paths
** reach them without a registry lookup (bsd_pushmethodupvalues pushes them;
** the tasks table must be in the registry under bsd_taskskey by then). */
#define BSD_UV_TASKS        lua_upvalueindex(1)  /* S._tasks */
#define BSD_UV_SCRATCH      lua_upvalueindex(2)  /* { read buffer } shared by the methods */
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
  double timeout;    /* seconds; < 0 means block forever */
  int fd_nonblock;   /* O_NONBLOCK is set on fd */
  int want;          /* BSD_WANT_* of the last call that would have blocked */
  /* Readiness hint for tasks on TCP sockets (see recvinto in socket.c):
  ** rdrained says a short read emptied the receive queue, so the next recv
  ** in a task may wait for the poller without trying; a poller that
  ** reports the socket readable clears it. rsticky: a poller reported
  ** urgent data (whose mark ends a read early), the peer's close or an
  ** error, which stay without a new report, so short reads prove nothing. */
  unsigned char rdrained;
  unsigned char rsticky;
} bsd_socket;

/* marks a bsd_addr (see bsd_testaddr in addr.c) */
#define BSD_ADDR_TAG 0x62736461  /* "bsda" */

typedef struct bsd_addr {
  int tag;           /* BSD_ADDR_TAG */
  socklen_t len;
  struct sockaddr_storage ss;
} bsd_addr;

/* errors.c */
int bsd_pusherror(lua_State *L, const char *call, const char *peer, int err);
int bsd_pushgaierror(lua_State *L, const char *call, const char *peer, int gai);
const char *bsd_errname(int err);
void bsd_open_errors(lua_State *L);           /* sets errno, strerror in table at top */

/* socket.c */
bsd_socket *bsd_checksocket(lua_State *L, int idx);     /* any state */
bsd_socket *bsd_checkopen(lua_State *L, int idx);       /* raises if closed */
bsd_socket *bsd_newsocket(lua_State *L, int fd, int family, int type, int protocol);
int bsd_getfd(lua_State *L, int idx);  /* socket userdata or integer fd */
/* luaL_checkinteger/luaL_optinteger for a C int: a value outside
** INT_MIN..INT_MAX raises instead of being silently truncated */
int bsd_checkint(lua_State *L, int arg);
int bsd_optint(lua_State *L, int arg, int def);
double bsd_monotime(void);
int bsd_setnonblock(int fd, int on);
void bsd_open_socket(lua_State *L);   /* metatable + functions into table at top */
/* fd as a socket object (what S.fromfd does); NULL, nothing pushed and
** errno set if fd is not a socket */
bsd_socket *bsd_wrapfd(lua_State *L, int fd);
/* The blocking/timeout/yield machinery, for calls defined outside socket.c.
** A call op(L, status, ctx) begins with bsd_resumedlate (true: the deadline
** passed while yielded), takes mode = bsd_callmode(L, s) and, where the
** system call would block, returns unless
** bsd_notready(L, s, call, bsd_waitready(L, s, mode, want, &deadline, ctx, op))
** is -2 (retry); otherwise that value is the number of results pushed. */
int bsd_callmode(lua_State *L, bsd_socket *s);
int bsd_resumedlate(lua_State *L, int status, int nargs, double *deadline);
int bsd_waitready(lua_State *L, bsd_socket *s, int mode, int want,
                  double *deadline, lua_KContext ctx, lua_KFunction k);
int bsd_notready(lua_State *L, bsd_socket *s, const char *call, int verdict);
/* nil, "<call> <peer or local end>: <reason>", code */
int bsd_sockerror(lua_State *L, bsd_socket *s, const char *call, int err);
int bsd_addrerror(lua_State *L, const char *call, const bsd_addr *a, int err);

/* msg.c: sendmsg/recvmsg, getpeercred, sendmmsg/recvmmsg (Linux) */
void bsd_open_msg(lua_State *L);      /* methods into the socket metatable */

/* addr.c */
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

/* resolver.c: getaddrinfo on a worker thread, for loop tasks */
int bsd_intask(lua_State *L);  /* running in a coroutine of S._tasks */
/* Starts getaddrinfo(host, service, hints) on a worker thread and pushes a
** request object (1). Nothing pushed when it cannot: -1 when out of
** descriptors, threads or memory (try again later: bsd_resolve_later),
** 0 otherwise (the caller then resolves in place). */
int bsd_resolve_start(lua_State *L, const char *host, const char *service,
                      const struct addrinfo *hints);
/* Yields until the latest lookup started has its answer (which frees a
** thread and descriptors) or a short while has passed; k then tries again.
** Returns 0 when no lookup is out (resolve in place then). */
int bsd_resolve_later(lua_State *L, lua_KContext ctx, lua_KFunction k);
/* Yields "bsdsocket.wait" on the request's wake socket; k continues. */
int bsd_resolve_yield(lua_State *L, int idx, lua_KContext ctx, lua_KFunction k);
/* 1 once the answer is in, with *gai and *res (owned by the request; errno
** set for EAI_SYSTEM), else 0 */
int bsd_resolve_answer(lua_State *L, int idx, int *gai, const struct addrinfo **res);
/* closes the wake socket and frees the answer (at once or by the worker) */
void bsd_resolve_release(lua_State *L, int idx);
void bsd_open_resolver(lua_State *L);

/* options.c */
int bsd_setsockopt(lua_State *L);
int bsd_getsockopt(lua_State *L);

/* core.c */
void bsd_open_constants(lua_State *L);

/* poller.c (may be absent in early builds) */
void bsd_open_poller(lua_State *L);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
