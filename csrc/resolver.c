/*
** getaddrinfo off the loop: a request runs getaddrinfo on a worker thread,
** so a task of bsdsocket.loop that resolves a name waits like any other
** call while the other tasks run (addr.c decides when to use it).
**
** A request is a full userdata (metatable bsdsocket.resolve) pointing to a
** job shared with its worker, and holding the read end of a socketpair: a
** pollable object (pollfd()) that the task yields on ("bsdsocket.wait",
** request, read). The worker owns the write end; once the answer is in the
** job it writes a byte there and closes it, which makes the request
** readable. Neither side ever touches the other's descriptor, so no
** descriptor number can be written to after being reused.
**
** It sits below addr.c (which decides when to use it) and uses nothing of
** the socket layer: the request is its own pollable object.
**
** The job is reference-counted under its mutex (the request and the
** worker): whoever drops it last frees it and the answer, so a request
** collected while its worker still runs (a task that was cancelled or
** collected) leaks nothing: the worker frees on its way out.
**
** One detached thread per request: no pool, no global state, nothing to
** shut down when the Lua state closes. The worker blocks every signal, so
** SIGINT and friends still reach the thread that runs Lua. When no thread
** or no descriptor can be had, start says so, and the task waits for the
** latest lookup to finish (which frees both) before trying again
** (bsd_resolve_later); with no lookup out, the caller resolves in place,
** as outside tasks.
*/
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsdsocket.h"

#define BSD_RESOLVE_MT "bsdsocket.resolve"
#define WORKER_STACK ((size_t)512 * 1024)
/* seconds a task out of descriptors or threads waits at most before trying
** to start its lookup again (an answer that frees some wakes it earlier) */
#define RETRY_AFTER 0.05

typedef struct job {
  pthread_mutex_t lock;
  int refs;                /* 2 while both the request and the worker hold it */
  int done;                /* the answer is in: gai and res */
  int gai;
  int err;                 /* the worker's errno, for EAI_SYSTEM */
  int wfd;                 /* the worker's end of the wake socketpair */
  struct addrinfo *res;
  struct addrinfo hints;
  char *host, *service;    /* copies (NULL when not given), in the same block */
} job;

typedef struct request {
  job *j;                  /* NULL once released */
  /* the read end of the wake socketpair; -1 once closed */
  int rfd;
} request;

static void jobfree(job *j) {
  if (j->res) freeaddrinfo(j->res);
  pthread_mutex_destroy(&j->lock);
  free(j);
}

/* drops one reference; the last one frees */
static void jobunref(job *j) {
  int last;
  pthread_mutex_lock(&j->lock);
  last = --j->refs == 0;
  pthread_mutex_unlock(&j->lock);
  if (last) jobfree(j);
}

static void *worker(void *arg) {
  job *j = (job *)arg;
  struct addrinfo *res = NULL;
  int gai, err, wfd = j->wfd, last;
  errno = 0;
  gai = getaddrinfo(j->host, j->service, &j->hints, &res);
  err = errno;
  pthread_mutex_lock(&j->lock);
  j->res = gai == 0 ? res : NULL;
  j->gai = gai;
  j->err = err;
  j->done = 1;
  last = --j->refs == 0;
  pthread_mutex_unlock(&j->lock);
  /* after the answer: the wake socket becomes readable (a byte, so that a
  ** copy of wfd in a forked child cannot delay it); a reader already gone
  ** makes this fail with EPIPE, harmlessly (MSG_NOSIGNAL, or else the
  ** SIGPIPE stays pending on this thread, which blocks every signal) */
  (void)send(wfd, "", 1, BSD_MSG_NOSIGNAL | MSG_DONTWAIT);
  close(wfd);
  if (last) jobfree(j);
  return NULL;
}

/* The worker runs code of this shared object after its getaddrinfo
** returns, and lua_close unloads C modules (dlclose): pin the object so a
** worker still running when the state closes has code to return to. */
static const char selfmark = 'p';  /* any address inside this object names it */

static void pinself(void) {
#if BSD_HAVE_DLADDR
  Dl_info info;
  if (dladdr(&selfmark, &info) && info.dli_fname) {
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (h) dlclose(h);  /* RTLD_NODELETE stays on the object */
  }
#endif
}

/* the wake socketpair: close-on-exec and non-blocking, by the kernel's
** flags or else by fcntl */
static int wakepair(int fds[2]) {
#if BSD_HAVE_SOCK_CLOEXEC
  return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                    fds);
#else
  int err;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) return -1;
  if (bsd_prepfd(fds[0], 1, 1) == 0 && bsd_prepfd(fds[1], 1, 1) == 0)
    return 0;
  err = errno;
  close(fds[0]);
  close(fds[1]);
  errno = err;
  return -1;
#endif
}

static int startworker(job *j) {
  pthread_attr_t attr;
  pthread_t t;
  sigset_t all, old;
  int r;
  if ((r = pthread_attr_init(&attr)) != 0) return r;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* getaddrinfo keeps its large buffers off the stack (glibc caps alloca
  ** by the stack size): a few hundred KiB reserve less than the default
  ** 8 MiB per thread when many tasks resolve at once */
  pthread_attr_setstacksize(&attr, WORKER_STACK);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  /* inherited by the worker */
  r = pthread_create(&t, &attr, worker, j);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return r;
}

static job *newjob(const char *host, const char *service,
                   const struct addrinfo *hints) {
  size_t hl = host ? strlen(host) + 1 : 0,
         sl = service ? strlen(service) + 1 : 0;
  job *j = (job *)malloc(sizeof(job) + hl + sl);
  char *p;
  if (!j) return NULL;
  memset(j, 0, sizeof *j);
  if (pthread_mutex_init(&j->lock, NULL) != 0) {
    free(j);
    return NULL;
  }
  p = (char *)(j + 1);
  if (host) {
    memcpy(p, host, hl);
    j->host = p;
    p += hl;
  }
  if (service) {
    memcpy(p, service, sl);
    j->service = p;
  }
  j->hints.ai_family = hints->ai_family;
  j->hints.ai_socktype = hints->ai_socktype;
  j->hints.ai_protocol = hints->ai_protocol;
  j->hints.ai_flags = hints->ai_flags;
  j->refs = 2;
  j->wfd = -1;
  return j;
}

static request *checkrequest(lua_State *L, int idx) {
  return (request *)luaL_checkudata(L, idx, BSD_RESOLVE_MT);
}

/* the latest request, in a weak table in the registry: what a task out of
** descriptors or threads waits on (see bsd_resolve_later) */
static const char latestkey = 'l';

static void setlatest(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &latestkey) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &latestkey);
  }
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
}

static int outofresources(int err) {
  return err == EMFILE || err == ENFILE || err == EAGAIN || err == ENOMEM;
}

int bsd_resolve_start(lua_State *L, const char *host, const char *service,
                      const struct addrinfo *hints) {
  request *rq;
  job *j;
  int fds[2], r, err;
  /* everything Lua allocates first: a memory error raised later would
  ** leak the descriptors and the thread */
  luaL_checkstack(L, 8, NULL);
  rq = (request *)lua_newuserdatauv(L, sizeof(request), 0);
  rq->j = NULL;
  rq->rfd = -1;
  luaL_setmetatable(L, BSD_RESOLVE_MT);
  if ((j = newjob(host, service, hints)) == NULL) {
    err = ENOMEM;
    goto fail;
  }
  r = wakepair(fds);
  if (r < 0 && (errno == EMFILE || errno == ENFILE)) {
    /* forgotten sockets may hold descriptors until the collector runs */
    lua_gc(L, LUA_GCCOLLECT);
    r = wakepair(fds);
  }
  if (r < 0) {
    err = errno;
    jobfree(j);
    goto fail;
  }
  j->wfd = fds[1];
  pinself();
  if ((err = startworker(j)) != 0) {
    close(fds[0]);
    close(fds[1]);
    jobfree(j);
    goto fail;
  }
  rq->j = j;
  rq->rfd = fds[0];
  setlatest(L, -1);
  return 1;
fail:
  lua_pop(L, 1);
  return outofresources(err) ? -1 : 0;
}

int bsd_resolve_later(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  request *latest = NULL;
  luaL_checkstack(L, 5, NULL);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &latestkey) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    latest = (request *)luaL_testudata(L, -1, BSD_RESOLVE_MT);
    lua_remove(L, -2);
  }
  if (!latest || latest->rfd < 0) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushliteral(L, "bsdsocket.wait");
  lua_insert(L, -2);
  lua_pushinteger(L, BSD_WANT_READ);
  lua_pushnumber(L, bsd_monotime() + RETRY_AFTER);
  return lua_yieldk(L, 4, ctx, k);
}

int bsd_resolve_yield(lua_State *L, int idx, lua_KContext ctx,
                      lua_KFunction k) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 4, NULL);
  lua_pushliteral(L, "bsdsocket.wait");
  lua_pushvalue(L, idx);
  lua_pushinteger(L, BSD_WANT_READ);
  lua_pushnil(L);  /* no deadline: the resolver has its own timeouts */
  return lua_yieldk(L, 4, ctx, k);
}

int bsd_resolve_answer(lua_State *L, int idx, int *gai,
                       const struct addrinfo **res) {
  request *rq = checkrequest(L, idx);
  int done = 0;
  if (rq->j) {
    pthread_mutex_lock(&rq->j->lock);
    done = rq->j->done;
    pthread_mutex_unlock(&rq->j->lock);
  }
  if (done) {  /* the worker no longer touches the job's answer */
    *gai = rq->j->gai;
    *res = rq->j->res;
    if (*gai == EAI_SYSTEM) errno = rq->j->err;
  }
  return done;
}

/* Closes the wake descriptor and drops the request's reference to the job
** (freeing it if the worker is done). Idempotent; __gc does the same. */
static void release(lua_State *L, int idx) {
  request *rq = (request *)lua_touserdata(L, idx);
  if (rq->j) {
    jobunref(rq->j);
    rq->j = NULL;
  }
  if (rq->rfd >= 0) {
    bsd_closing(L, rq->rfd);  /* a loop's poller may have registered it */
    close(rq->rfd);
    rq->rfd = -1;
  }
}

void bsd_resolve_release(lua_State *L, int idx) {
  checkrequest(L, idx);
  release(L, lua_absindex(L, idx));
}

static int request_gc(lua_State *L) {
  release(L, 1);
  return 0;
}

static int request_tostring(lua_State *L) {
  request *rq = checkrequest(L, 1);
  lua_pushstring(L, rq->j ? "bsdsocket.resolve (pending)"
                          : "bsdsocket.resolve (released)");
  return 1;
}

/* the pollable-object protocol, so that the loop's poller can wait on it */
static int request_pollfd(lua_State *L) {
  request *rq = checkrequest(L, 1);
  if (rq->rfd < 0) lua_pushnil(L);
  else lua_pushinteger(L, rq->rfd);
  return 1;
}

static int request_events(lua_State *L) {
  checkrequest(L, 1);
  lua_pushliteral(L, "r");
  return 1;
}

static const luaL_Reg request_meta[] = {
  {"__gc", request_gc},
  {"__close", request_gc},
  {"__tostring", request_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg request_methods[] = {
  {"pollfd", request_pollfd},
  {"events", request_events},
  {NULL, NULL}
};

void bsd_open_resolver(lua_State *L) {
  luaL_newmetatable(L, BSD_RESOLVE_MT);
  luaL_setfuncs(L, request_meta, 0);
  luaL_newlib(L, request_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
