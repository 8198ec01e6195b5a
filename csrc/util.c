/*
** The bottom layer: argument checks, the clock, descriptor flags and the
** signal check that every other file shares. Like lauxlib under liolib, it
** calls nothing from the other project files.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include "bsdsocket.h"

/* registry key of the loop's tasks table: only its address matters */
const char bsd_taskskey = 't';

/* running in a coroutine of bsdsocket.loop (socket methods ask through
** their upvalue instead, which is faster) */
int bsd_intask(lua_State *L) {
  int found = 0;
  if (!lua_isyieldable(L)) return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &bsd_taskskey) == LUA_TTABLE) {
    lua_pushthread(L);
    found = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return found;
}

int bsd_checkint(lua_State *L, int arg) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, INT_MIN <= v && v <= INT_MAX, arg, "integer out of range");
  return (int)v;
}

int bsd_optint(lua_State *L, int arg, int def) {
  return lua_isnoneornil(L, arg) ? def : bsd_checkint(L, arg);
}

int bsd_checkfdnum(lua_State *L, int arg) {
  lua_Integer fd = luaL_checkinteger(L, arg);
  luaL_argcheck(L, 0 <= fd && fd <= INT_MAX, arg, "not a descriptor");
  return (int)fd;
}

size_t bsd_checkmaxbytes(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0, arg, "negative byte count");
  return n > BSD_RECV_MAX ? BSD_RECV_MAX : (size_t)n;
}

double bsd_monotime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bsd_setnonblock(int fd, int on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return -1;
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  return fcntl(fd, F_SETFL, flags);
}

int bsd_prepfd(int fd, int cloexec, int nonblock) {
#if BSD_HAVE_SO_NOSIGPIPE
  int one = 1;
  /* not every socket takes it (some families refuse): ignored then */
  (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  if (cloexec) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) return -1;
  }
  if (nonblock && bsd_setnonblock(fd, 1) < 0) return -1;
  return 0;
}

#if BSD_NEED_PIPEGUARD

void bsd_pipeguard_on(bsd_pipeguard *g) {
  sigset_t set, pend;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &g->old);
  g->pending = sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE);
}

/* A SIGPIPE the write raised is pending on this thread (sendmmsg may raise
** one and still return a count): taken off before the mask is restored. */
void bsd_pipeguard_off(bsd_pipeguard *g) {
  int err = errno;
  sigset_t set, pend;
  if (!g->pending && sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE)) {
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
#if BSD_HAVE_SIGTIMEDWAIT
    {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {}
    }
#else
    {
      int sig;
      sigwait(&set, &sig);   /* pending: returns at once */
    }
#endif
  }
  pthread_sigmask(SIG_SETMASK, &g->old, NULL);
  errno = err;
}

ssize_t bsd_send(int fd, const void *p, size_t n, int flags) {
  bsd_pipeguard g;
  ssize_t r;
  bsd_pipeguard_on(&g);
  r = send(fd, p, n, flags);
  bsd_pipeguard_off(&g);
  return r;
}

ssize_t bsd_sendto(int fd, const void *p, size_t n, int flags,
                   const struct sockaddr *to, socklen_t tolen) {
  bsd_pipeguard g;
  ssize_t r;
  bsd_pipeguard_on(&g);
  r = sendto(fd, p, n, flags, to, tolen);
  bsd_pipeguard_off(&g);
  return r;
}

ssize_t bsd_sendmsg(int fd, const struct msghdr *m, int flags) {
  bsd_pipeguard g;
  ssize_t r;
  bsd_pipeguard_on(&g);
  r = sendmsg(fd, m, flags);
  bsd_pipeguard_off(&g);
  return r;
}

#endif

/* A hook that asks to run at the very next instruction: what lua.c sets
** from its SIGINT handler (count 1), and what other hosts do to stop a
** script from a signal handler. */
static int hookpending(lua_State *T) {
  return T && lua_gethook(T) != NULL && (lua_gethookmask(T) & LUA_MASKCOUNT)
         && lua_gethookcount(T) == 1;
}

/* After an EINTR: did the signal ask Lua to run a hook? lua.c sets it on
** its main thread, which is not L inside a coroutine. */
int bsd_interrupted(lua_State *L) {
  int pending;
  if (hookpending(L)) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  pending = hookpending(lua_tothread(L, -1));
  lua_pop(L, 1);
  return pending;
}

/* ---- the close watch (bsd_closewatch) ---- */

/* registry key of the list of close watchers (a full userdata: the list's
** head, created by the first watcher) */
static const char watchkey = 'w';

void bsd_watchcloses(lua_State *L, bsd_closewatch *w) {
  bsd_closewatch *head;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &watchkey) == LUA_TNIL) {
    head = (bsd_closewatch *)lua_newuserdatauv(L, sizeof *head, 0);
    head->fn = NULL;
    head->next = head->prev = head;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &watchkey);
  }
  else head = (bsd_closewatch *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  w->prev = head;
  w->next = head->next;
  head->next->prev = w;
  head->next = w;
}

void bsd_unwatchcloses(bsd_closewatch *w) {
  if (w->next == NULL) return;
  w->prev->next = w->next;
  w->next->prev = w->prev;
  w->next = w->prev = NULL;
}

/* tells the watchers that fd is about to be closed (the head stays in the
** registry until lua_close, after every __gc that may come here) */
void bsd_closing(lua_State *L, int fd) {
  bsd_closewatch *head, *w;
  int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &watchkey);
  head = (bsd_closewatch *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return;
  for (w = head->next; w != head; w = w->next) w->fn(w, fd);
}
