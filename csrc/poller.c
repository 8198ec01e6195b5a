/*
** S.poller(): the readiness of many descriptors at once.
**
** epoll(7) on Linux; poll(2) elsewhere, or anywhere with -DBSD_USE_POLL.
** Both backends share the Lua interface:
**
**   p = S.poller([{ weak = true }])
**   p:add(sock_or_fd, events)     -- registers, or replaces a registration
**   p:modify(sock_or_fd, events)
**   p:remove(sock_or_fd)
**   for obj, revents in p:wait([timeout]) do ... end
**   p:close(), p:fileno(), p:backend()
**
** events: a string of "r" (readable), "w" (writable), "e" (edge-triggered,
** epoll only), "o" (one-shot: disarmed after it fires until the next
** add/modify), or an integer of S.POLLIN, S.POLLOUT, S.POLLPRI,
** S.EPOLLET, S.EPOLLONESHOT bits. revents: an integer of S.POLLIN,
** S.POLLOUT, S.POLLPRI, S.POLLERR, S.POLLHUP (and S.POLLRDHUP) bits.
**
** The poller keeps, per descriptor, the Lua object registered for it (in a
** table indexed by descriptor: the userdata's first user value), and wait
** hands that object back. wait fills a buffer of the poller and returns an
** iterator made once per poller, so a wait allocates nothing and each event
** costs one table lookup. A socket object closed while registered drops out
** (the kernel forgets it under epoll; poll(2) reports POLLNVAL, which the
** poller swallows), and an event for it is never handed out.
*/
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__) && !defined(BSD_USE_POLL)
#define BSD_EPOLL 1
#include <sys/epoll.h>
#endif

#include "bsdsocket.h"

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

/* what add/modify take (besides the two flags) and what wait reports */
#define EV_WANT    (POLLIN | POLLOUT | POLLPRI | POLLRDHUP)
#define EV_REPORT  (POLLIN | POLLOUT | POLLPRI | POLLRDHUP | POLLERR | POLLHUP)

#ifdef BSD_EPOLL
/* epoll's bits are poll's bits on Linux; the interface relies on it */
typedef char bsd_epoll_bits_are_poll_bits[
  (EPOLLIN == POLLIN && EPOLLOUT == POLLOUT && EPOLLPRI == POLLPRI &&
   EPOLLERR == POLLERR && EPOLLHUP == POLLHUP &&
   (POLLRDHUP == 0 || EPOLLRDHUP == POLLRDHUP)) ? 1 : -1];
#define EV_EDGE    ((unsigned)EPOLLET)
#define EV_ONESHOT ((unsigned)EPOLLONESHOT)
#define BACKEND    "epoll"
#else
#define EV_EDGE    0u  /* not available */
#define EV_ONESHOT (1u << 30)
#define BACKEND    "poll"
#endif

#define MIN_EVENTS 64
#define MAX_EVENTS 4096   /* events taken per epoll_wait */

/* the members are used by the poll(2) backend only (cppcheck, checking the
** epoll configuration, sees them unused) */
typedef struct pslot {      /* poll(2) backend: one registration */
  int fd;                   /* cppcheck-suppress unusedStructMember */
  unsigned events;          /* cppcheck-suppress unusedStructMember */
} pslot;

struct bsd_poller {
  int closed;
  int n, pos;               /* results of the last wait; iterator position */
  int grow;                 /* the last wait filled the buffer */
#ifdef BSD_EPOLL
  int epfd;
  int cap;
  struct epoll_event *ev;   /* wait's results */
#else
  int nfds, capfds;
  struct pollfd *fds;       /* what poll(2) sees; fd -1 while disarmed */
  pslot *ents;              /* parallel to fds */
  int capslot;
  int *slot;                /* slot[fd]: index in fds + 1, 0 when none */
  int capres;
  struct pollfd *res;       /* wait's results: fd and revents */
#endif
};

/* ---- memory, through the state's allocator ---- */

static void *resize(lua_State *L, void *block, size_t osize, size_t nsize) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  void *nb = f(ud, block, osize, nsize);
  if (nb == NULL && nsize > 0) luaL_error(L, "not enough memory");
  return nb;
}

static void freeall(lua_State *L, bsd_poller *p) {
#ifdef BSD_EPOLL
  resize(L, p->ev, sizeof(struct epoll_event) * (size_t)p->cap, 0);
  p->ev = NULL;
  p->cap = 0;
#else
  resize(L, p->fds, sizeof(struct pollfd) * (size_t)p->capfds, 0);
  resize(L, p->ents, sizeof(pslot) * (size_t)p->capfds, 0);
  resize(L, p->slot, sizeof(int) * (size_t)p->capslot, 0);
  resize(L, p->res, sizeof(struct pollfd) * (size_t)p->capres, 0);
  p->fds = NULL;
  p->ents = NULL;
  p->slot = NULL;
  p->res = NULL;
  p->nfds = p->capfds = p->capslot = p->capres = 0;
#endif
  p->n = p->pos = 0;
}

/* ---- arguments ---- */

static bsd_poller *checkpoller(lua_State *L) {
  return (bsd_poller *)luaL_checkudata(L, 1, BSD_POLLER_MT);
}

static bsd_poller *checkopen(lua_State *L) {
  bsd_poller *p = checkpoller(L);
  if (p->closed) luaL_error(L, "attempt to use a closed poller");
  return p;
}

static unsigned checkevents(lua_State *L, int arg) {
  unsigned ev = 0;
  if (lua_type(L, arg) == LUA_TSTRING) {
    size_t len, i;
    const char *s = lua_tolstring(L, arg, &len);
    for (i = 0; i < len; i++) {
      switch (s[i]) {
        case 'r': ev |= POLLIN; break;
        case 'w': ev |= POLLOUT; break;
        case 'o': ev |= EV_ONESHOT; break;
        case 'e':
          if (EV_EDGE == 0)
            luaL_argerror(L, arg, "edge-triggered events ('e') need the epoll backend");
          ev |= EV_EDGE;
          break;
        default:
          luaL_argerror(L, arg, lua_pushfstring(L,
            "unknown event '%c' in \"%s\" (expected r, w, e, o)", s[i], s));
      }
    }
  }
  else {
    lua_Integer v = luaL_checkinteger(L, arg);
    lua_Integer allowed = (lua_Integer)(EV_WANT | EV_EDGE | EV_ONESHOT);
    luaL_argcheck(L, v >= 0 && (v & ~allowed) == 0, arg,
                  "unknown event bits (expected S.POLLIN, S.POLLOUT, S.POLLPRI, "
                  "S.POLLRDHUP, S.EPOLLET, S.EPOLLONESHOT)");
    ev = (unsigned)v;
  }
  return ev;
}

/* has a pollfd method: a table, or a userdata whose metatable has __index */
static int pollable(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TTABLE) return 1;
  if (t != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__index") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* the descriptor of a registered object, or -1 for a closed socket object
** (which the kernel or the next wait has already dropped). Besides sockets
** and integers, any object of the pollable-object protocol (a TLS stream)
** gives its descriptor through pollfd(). */
static int objfd(lua_State *L, int idx) {
  bsd_socket *s = (bsd_socket *)luaL_testudata(L, idx, BSD_SOCKET_MT);
  if (s) return s->fd;
  if (pollable(L, idx)) {
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, idx, "pollfd") == LUA_TFUNCTION) {
      lua_Integer fd;
      int isint;
      lua_pushvalue(L, idx);
      lua_call(L, 1, 1);
      fd = lua_tointegerx(L, -1, &isint);
      lua_pop(L, 1);
      if (!isint || fd < 0 || fd > 0x7FFFFFFF)
        luaL_argerror(L, idx, "pollfd() gave no descriptor");
      return (int)fd;
    }
    lua_pop(L, 1);
  }
  return bsd_getfd(L, idx);
}

/* An object from the table is still the one its descriptor was registered
** for; false for a socket object that was closed or detached since. A
** socket reported readable loses its drained hint (see recvinto). */
static int current(lua_State *L, int idx, int fd, unsigned revents) {
  bsd_socket *s;
  if (lua_type(L, idx) != LUA_TUSERDATA) return 1;
  s = (bsd_socket *)lua_touserdata(L, idx);
  if (lua_rawlen(L, idx) == sizeof(bsd_socket) && s->tag == BSD_SOCKET_TAG) {
    if (s->fd != fd) return 0;
    if (revents & (POLLIN | POLLPRI | POLLHUP | POLLERR)) s->rdrained = 0;
    if (revents & (POLLPRI | POLLRDHUP | POLLHUP | POLLERR)) s->rsticky = 1;
  }
  return 1;
}

static int fderror(lua_State *L, const char *call, int fd, int err) {
  char peer[32];
  sprintf(peer, "fd %d", fd);
  return bsd_pusherror(L, call, peer, err);
}

static double checktimeout(lua_State *L, int arg) {
  lua_Number t = luaL_optnumber(L, arg, -1);
  luaL_argcheck(L, t == t, arg, "timeout is NaN");
  return t < 0 ? -1 : t;
}

static int millis(double seconds) {
  double ms;
  if (seconds < 0) return -1;
  ms = ceil(seconds * 1000);  /* never wake before the deadline */
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* ---- the epoll backend ---- */
#ifdef BSD_EPOLL

static int backend_open(lua_State *L, bsd_poller *p) {
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return errno;
  p->ev = (struct epoll_event *)resize(L, NULL, 0, sizeof(struct epoll_event) * MIN_EVENTS);
  p->cap = MIN_EVENTS;
  return 0;
}

static void backend_close(bsd_poller *p) {
  if (p->epfd >= 0) close(p->epfd);
  p->epfd = -1;
}

/* 0 or an errno; replace: an existing registration is modified */
static int backend_ctl(lua_State *L, bsd_poller *p, int fd, unsigned ev, int op) {
  struct epoll_event e;
  (void)L;
  memset(&e, 0, sizeof e);
  e.events = ev;
  e.data.fd = fd;
  if (op == 'a') {
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &e) == 0) return 0;
    if (errno != EEXIST) return errno;
    op = 'm';
  }
  if (op == 'm') return epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &e) == 0 ? 0 : errno;
  return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &e) == 0 ? 0 : errno;
}

static int backend_wait(lua_State *L, bsd_poller *p, int ms) {
  int n;
  if (p->grow && p->cap < MAX_EVENTS) {
    int ncap = p->cap * 2;
    p->ev = (struct epoll_event *)resize(L, p->ev, sizeof(struct epoll_event) * (size_t)p->cap,
                                         sizeof(struct epoll_event) * (size_t)ncap);
    p->cap = ncap;
  }
  n = epoll_wait(p->epfd, p->ev, p->cap, ms);
  if (n < 0) return -1;
  p->grow = n == p->cap;
  p->n = n;
  return n;
}

/* the iterator: upvalues poller, object table */
static int poller_next(lua_State *L) {
  bsd_poller *p = (bsd_poller *)lua_touserdata(L, lua_upvalueindex(1));
  while (p->pos < p->n) {
    struct epoll_event *e = &p->ev[p->pos++];
    int fd = e->data.fd;
    if (lua_rawgeti(L, lua_upvalueindex(2), fd) != LUA_TNIL) {
      if (current(L, -1, fd, e->events)) {
        lua_pushinteger(L, (lua_Integer)(e->events & EV_REPORT));
        return 2;
      }
      lua_pushnil(L);  /* a closed socket: forget it */
      lua_rawseti(L, lua_upvalueindex(2), fd);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int poller_fileno(lua_State *L) {
  lua_pushinteger(L, checkopen(L)->epfd);
  return 1;
}

#else
/* ---- the poll(2) backend ---- */

static int backend_open(lua_State *L, bsd_poller *p) {
  (void)L;
  (void)p;
  return 0;
}

static void backend_close(bsd_poller *p) {
  (void)p;
}

static int growto(int cap, int need) {
  if (cap < 16) cap = 16;
  while (cap < need) {
    if (cap > INT_MAX / 2) return INT_MAX;
    cap *= 2;
  }
  return cap;
}

static void dropslot(bsd_poller *p, int i) {
  int last = --p->nfds;
  p->slot[p->ents[i].fd] = 0;
  if (i != last) {
    p->fds[i] = p->fds[last];
    p->ents[i] = p->ents[last];
    p->slot[p->ents[i].fd] = i + 1;
  }
}

static void arm(bsd_poller *p, int i) {
  p->fds[i].fd = p->ents[i].fd;
  p->fds[i].events = (short)(p->ents[i].events & EV_WANT);
  p->fds[i].revents = 0;
}

static int backend_ctl(lua_State *L, bsd_poller *p, int fd, unsigned ev, int op) {
  int i = fd < p->capslot ? p->slot[fd] - 1 : -1;
  if (op == 'a' && i < 0) {
    /* grow first, so that a memory error leaves everything as it was */
    if (fd >= p->capslot) {
      int ncap = growto(p->capslot, fd + 1);
      p->slot = (int *)resize(L, p->slot, sizeof(int) * (size_t)p->capslot, sizeof(int) * (size_t)ncap);
      memset(p->slot + p->capslot, 0, sizeof(int) * (size_t)(ncap - p->capslot));
      p->capslot = ncap;
    }
    if (p->nfds == p->capfds) {
      int ncap = growto(p->capfds, p->nfds + 1);
      pslot *ents;
      p->fds = (struct pollfd *)resize(L, p->fds, sizeof(struct pollfd) * (size_t)p->capfds,
                                       sizeof(struct pollfd) * (size_t)ncap);
      ents = (pslot *)resize(L, NULL, 0, sizeof(pslot) * (size_t)ncap);
      if (p->nfds) memcpy(ents, p->ents, sizeof(pslot) * (size_t)p->nfds);
      resize(L, p->ents, sizeof(pslot) * (size_t)p->capfds, 0);
      p->ents = ents;
      p->capfds = ncap;
    }
    i = p->nfds++;
    p->slot[fd] = i + 1;
    p->ents[i].fd = fd;
  }
  if (i < 0) return ENOENT;
  if (op == 'd') {
    dropslot(p, i);
    return 0;
  }
  p->ents[i].events = ev;
  arm(p, i);
  return 0;
}

static int backend_wait(lua_State *L, bsd_poller *p, int ms) {
  int n, i, found = 0;
  if (p->capres < p->nfds) {
    int ncap = growto(p->capres, p->nfds);
    p->res = (struct pollfd *)resize(L, p->res, sizeof(struct pollfd) * (size_t)p->capres,
                                     sizeof(struct pollfd) * (size_t)ncap);
    p->capres = ncap;
  }
  p->n = 0;
  n = poll(p->fds, (nfds_t)p->nfds, ms);
  if (n < 0) return -1;
  for (i = 0; i < p->nfds && found < n; i++) {
    short re = p->fds[i].revents;
    if (re == 0 || p->fds[i].fd < 0) continue;
    found++;
    p->fds[i].revents = 0;
    p->res[p->n].fd = p->ents[i].fd;
    p->res[p->n].revents = (short)(re & (EV_REPORT | POLLNVAL));
    p->n++;
    if (re & POLLNVAL) {  /* closed while registered: as epoll, forget it */
      dropslot(p, i);     /* (the iterator forgets its object) */
      i--;                /* the last registration moved here */
      continue;
    }
    if (p->ents[i].events & EV_ONESHOT) p->fds[i].fd = -1;
  }
  return p->n;
}

static int poller_next(lua_State *L) {
  bsd_poller *p = (bsd_poller *)lua_touserdata(L, lua_upvalueindex(1));
  while (p->pos < p->n) {
    struct pollfd *r = &p->res[p->pos++];
    int fd = r->fd;
    if (r->revents & POLLNVAL) {
      lua_pushnil(L);
      lua_rawseti(L, lua_upvalueindex(2), fd);
      continue;
    }
    if (lua_rawgeti(L, lua_upvalueindex(2), fd) != LUA_TNIL) {
      if (current(L, -1, fd, (unsigned short)r->revents)) {
        lua_pushinteger(L, (lua_Integer)(unsigned short)r->revents);
        return 2;
      }
      /* a closed socket whose number was reused: forget the registration */
      lua_pushnil(L);
      lua_rawseti(L, lua_upvalueindex(2), fd);
      if (fd < p->capslot && p->slot[fd] > 0) dropslot(p, p->slot[fd] - 1);
    }
    else if (fd < p->capslot && p->slot[fd] > 0) {
      /* the object was collected (weak poller): forget the registration */
      dropslot(p, p->slot[fd] - 1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int poller_fileno(lua_State *L) {
  checkopen(L);
  lua_pushnil(L);  /* poll(2) has no descriptor of its own */
  return 1;
}

#endif

/* ---- methods ---- */

static int ctl(lua_State *L, int op, const char *call) {
  bsd_poller *p = checkopen(L);
  int fd = objfd(L, 2);
  unsigned ev = op == 'd' ? 0 : checkevents(L, 3);
  int err;
  if (fd < 0) {
    if (op == 'd') {  /* a closed socket: nothing left to remove */
      lua_pushboolean(L, 1);
      return 1;
    }
    return luaL_error(L, "attempt to use a closed socket");
  }
  err = backend_ctl(L, p, fd, ev, op);
  if (err) return fderror(L, call, fd, err);
  if (op != 'd') {
    /* a registered socket tells bsdsocket.loop when it is closed, so the
    ** tasks waiting on it wake (see closesocket in socket.c) */
    bsd_socket *s = (bsd_socket *)luaL_testudata(L, 2, BSD_SOCKET_MT);
    if (s) s->waited = 1;
  }
  lua_getiuservalue(L, 1, 1);
  if (op == 'd') lua_pushnil(L);
  else lua_pushvalue(L, 2);
  lua_rawseti(L, -2, fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int poller_add(lua_State *L) {
  return ctl(L, 'a', "poller add");
}

static int poller_modify(lua_State *L) {
  return ctl(L, 'm', "poller modify");
}

static int poller_remove(lua_State *L) {
  return ctl(L, 'd', "poller remove");
}

static int poller_wait(lua_State *L) {
  bsd_poller *p = checkopen(L);
  double t = checktimeout(L, 2), deadline = 0;
  int ms = millis(t);
  if (t > 0) deadline = bsd_monotime() + t;
  p->n = p->pos = 0;
  while (backend_wait(L, p, ms) < 0) {
    if (errno != EINTR) return bsd_pusherror(L, "poller wait", NULL, errno);
    /* a signal asked Lua to run a hook (Ctrl-C): return, reporting nothing */
    if (bsd_interrupted(L)) {
      p->n = p->pos = 0;
      break;
    }
    if (t > 0) {
      double left = deadline - bsd_monotime();
      ms = millis(left < 0 ? 0 : left);
    }
  }
  lua_getiuservalue(L, 1, 2);
  return 1;
}

static int poller_close(lua_State *L) {
  bsd_poller *p = checkpoller(L);
  if (!p->closed) {
    p->closed = 1;
    backend_close(p);
    freeall(L, p);
    /* drop the references to the registered objects */
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, 2);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, 2, 2);
    lua_setiuservalue(L, 1, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int poller_gc(lua_State *L) {
  bsd_poller *p = checkpoller(L);
  if (!p->closed) {
    p->closed = 1;
    backend_close(p);
    freeall(L, p);
  }
  return 0;
}

static int poller_backend(lua_State *L) {
  checkpoller(L);
  lua_pushliteral(L, BACKEND);
  return 1;
}

static int poller_tostring(lua_State *L) {
  bsd_poller *p = checkpoller(L);
  if (p->closed) lua_pushliteral(L, "bsdsocket.poller (closed)");
#ifdef BSD_EPOLL
  else lua_pushfstring(L, "bsdsocket.poller epoll fd=%d", p->epfd);
#else
  else lua_pushfstring(L, "bsdsocket.poller poll %d registered", p->nfds);
#endif
  return 1;
}

static int poller_new(lua_State *L) {
  bsd_poller *p;
  int weak = 0, err;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "weak");
    weak = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  p = (bsd_poller *)lua_newuserdatauv(L, sizeof(bsd_poller), 2);
  memset(p, 0, sizeof *p);  /* __gc frees whatever backend_open made */
#ifdef BSD_EPOLL
  p->epfd = -1;
#endif
  luaL_setmetatable(L, BSD_POLLER_MT);
  err = backend_open(L, p);
  if (err) return bsd_pusherror(L, "poller", NULL, err);
  lua_newtable(L);               /* descriptor -> registered object */
  if (weak) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, poller_next, 2);
  lua_setiuservalue(L, 1, 2);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

static const luaL_Reg poller_methods[] = {
  {"add", poller_add},
  {"modify", poller_modify},
  {"remove", poller_remove},
  {"wait", poller_wait},
  {"close", poller_close},
  {"fileno", poller_fileno},
  {"backend", poller_backend},
  {NULL, NULL}
};

static const luaL_Reg poller_meta[] = {
  {"__gc", poller_gc},
  {"__close", poller_gc},
  {"__tostring", poller_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

/* S._ready(obj, "r"|"w" [, timeout]): poll(2) on one descriptor; true
** once it is ready, false when timeout seconds (default 0: just ask) pass
** first or when a signal asks Lua to run a hook. bsdsocket.loop's wait
** asks it before trusting an edge-triggered poller, and waits on it
** outside tasks. */
static int poller_ready(lua_State *L) {
  static const char *const names[] = {"r", "w", NULL};
  struct pollfd pfd;
  int fd = objfd(L, 1), ms, r;
  short events = luaL_checkoption(L, 2, NULL, names) == 0 ? POLLIN : POLLOUT;
  double t = checktimeout(L, 3), deadline;
  if (fd < 0) luaL_error(L, "attempt to use a closed socket");
  if (lua_isnoneornil(L, 3)) t = 0;
  deadline = t > 0 ? bsd_monotime() + t : 0;
  ms = millis(t);
  for (;;) {
    pfd.fd = fd;
    pfd.events = events;
    pfd.revents = 0;
    r = poll(&pfd, 1, ms);
    if (r >= 0) break;
    if (errno != EINTR) return bsd_pusherror(L, "ready", NULL, errno);
    if (bsd_interrupted(L)) break;
    if (t > 0) {
      double left = deadline - bsd_monotime();
      ms = millis(left < 0 ? 0 : left);
    }
  }
  lua_pushboolean(L, r > 0);
  return 1;
}

void bsd_open_poller(lua_State *L) {
  static const struct { const char *name; lua_Integer value; } bits[] = {
    {"POLLIN", POLLIN}, {"POLLPRI", POLLPRI}, {"POLLOUT", POLLOUT},
    {"POLLERR", POLLERR}, {"POLLHUP", POLLHUP}, {"POLLNVAL", POLLNVAL},
#if POLLRDHUP
    {"POLLRDHUP", POLLRDHUP},
#endif
#ifdef BSD_EPOLL
    {"EPOLLET", (lua_Integer)EV_EDGE},
#endif
    {"EPOLLONESHOT", (lua_Integer)EV_ONESHOT},
    {NULL, 0}
  };
  int i;
  luaL_newmetatable(L, BSD_POLLER_MT);
  luaL_setfuncs(L, poller_meta, 0);
  luaL_newlib(L, poller_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, poller_new);
  lua_setfield(L, -2, "poller");
  lua_pushcfunction(L, poller_ready);
  lua_setfield(L, -2, "_ready");
  for (i = 0; bits[i].name; i++) {
    lua_pushinteger(L, bits[i].value);
    lua_setfield(L, -2, bits[i].name);
  }
}

/* ---- for the loop's scheduler (loop.c): the backend without Lua ---- */

/* a new poller, pushed (raises when the kernel refuses one) */
bsd_poller *bsd_poller_open(lua_State *L) {
  lua_pushcfunction(L, poller_new);
  lua_call(L, 0, 2);
  if (lua_isnil(L, -2)) lua_error(L);  /* the message: poller <reason> */
  lua_pop(L, 1);
  return (bsd_poller *)lua_touserdata(L, -1);
}

/* 0 or an errno; op 'a' (add or replace), 'd' (remove) */
int bsd_poller_ctl(lua_State *L, bsd_poller *p, int fd, unsigned ev, int op) {
  return backend_ctl(L, p, fd, ev, op);
}

/* the number of events, or -1 with errno (EINTR included) */
int bsd_poller_waitfds(lua_State *L, bsd_poller *p, int ms) {
  p->n = p->pos = 0;
  return backend_wait(L, p, ms);
}

void bsd_poller_event(const bsd_poller *p, int i, int *fd, unsigned *revents) {
#ifdef BSD_EPOLL
  *fd = p->ev[i].data.fd;
  *revents = p->ev[i].events & EV_REPORT;
#else
  *fd = p->res[i].fd;
  *revents = (unsigned short)p->res[i].revents;
#endif
}

/* the events a loop registers: edge-triggered where the backend has it
** (registered once), else one-shot (armed per wait) */
unsigned bsd_poller_loopevents(int want) {
  unsigned ev = (want & BSD_WANT_READ ? POLLIN | POLLPRI | POLLRDHUP : 0)
                | (want & BSD_WANT_WRITE ? POLLOUT : 0);
  return ev | (EV_EDGE ? EV_EDGE : EV_ONESHOT);
}

int bsd_poller_isedge(void) {
  return EV_EDGE != 0;
}
