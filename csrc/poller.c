/*
** S.poller(): the readiness of many descriptors at once.
**
** The Lua side of the backend poller.h names (epoll, kqueue or poll, one
** compiled in); every backend shares the Lua interface:
**
**   p = S.poller([{ weak = true }])
**   p:add(sock_or_fd, events)     -- registers, or replaces a registration
**   p:modify(sock_or_fd, events)
**   p:remove(sock_or_fd)
**   for obj, revents in p:wait([timeout]) do ... end
**   p:close(), p:fileno(), p:backend()
**
** events: a string of "r" (readable), "w" (writable), "e" (edge-triggered,
** where the backend can: epoll), "o" (one-shot: disarmed after it fires
** until the next add/modify), or an integer of S.POLLIN, S.POLLOUT, S.POLLPRI,
** S.EPOLLET, S.EPOLLONESHOT bits. revents: an integer of S.POLLIN,
** S.POLLOUT, S.POLLPRI, S.POLLERR, S.POLLHUP (and S.POLLRDHUP) bits.
**
** The poller keeps, per descriptor, the Lua object registered for it (in a
** table indexed by descriptor: the userdata's first user value), and wait
** hands that object back. wait fills a buffer of the poller and returns an
** iterator made once per poller, so a wait allocates nothing and each event
** costs one table lookup. A socket object closed while registered drops out
** (the kernel forgets it under epoll; kqueue and poll are told before the
** close, see bsd_closewatch), and an event for it is never handed out.
*/
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "poller.h"

typedef struct bsd_poller {
  int closed;
  int n, pos;               /* results of the last wait; iterator position */
  bsd_pollbe *be;           /* NULL until opened (__gc may find it so) */
} bsd_poller;

static void closebackend(lua_State *L, bsd_poller *p) {
  p->closed = 1;
  p->n = p->pos = 0;
  if (p->be) bsd_pollbe_close(L, p->be);
  p->be = NULL;
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
        case 'o': ev |= BSD_POLL_ONESHOT; break;
        case 'e':
          if (!(bsd_pollbe_flags & BSD_POLL_EDGE))
            luaL_argerror(L, arg, "edge-triggered events ('e') need the "
                          "epoll backend");
          ev |= BSD_POLL_EDGE;
          break;
        default:
          luaL_argerror(L, arg, lua_pushfstring(L,
            "unknown event '%c' in \"%s\" (expected r, w, e, o)", s[i], s));
      }
    }
  }
  else {
    lua_Integer v = luaL_checkinteger(L, arg);
    lua_Integer allowed = (lua_Integer)(BSD_POLL_WANT | BSD_POLL_ONESHOT |
                                        (bsd_pollbe_flags & BSD_POLL_EDGE));
    luaL_argcheck(
        L, v >= 0 && (v & ~allowed) == 0, arg,
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
  if (t != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__index") == LUA_TNIL)
    return 0;
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

/* the iterator: upvalues poller, object table */
static int poller_next(lua_State *L) {
  bsd_poller *p = (bsd_poller *)lua_touserdata(L, lua_upvalueindex(1));
  while (p->pos < p->n) {
    int fd;
    unsigned revents = bsd_pollbe_event(p->be, p->pos++, &fd);
    if (revents & POLLNVAL) {  /* closed behind the poller's back */
      lua_pushnil(L);
      lua_rawseti(L, lua_upvalueindex(2), fd);
      continue;
    }
    if (lua_rawgeti(L, lua_upvalueindex(2), fd) != LUA_TNIL) {
      if (current(L, -1, fd, revents)) {
        lua_pushinteger(L, (lua_Integer)revents);
        return 2;
      }
      /* a closed socket whose number was reused: forget it */
      lua_pushnil(L);
      lua_rawseti(L, lua_upvalueindex(2), fd);
      bsd_pollbe_ctl(L, p->be, BSD_POLL_DEL, fd, 0);
    }
    else if (strcmp(bsd_pollbe_name, "epoll") != 0) {
      /* removed meanwhile, or collected (a weak poller): under epoll its
      ** close made the kernel forget it */
      bsd_pollbe_ctl(L, p->be, BSD_POLL_DEL, fd, 0);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int poller_fileno(lua_State *L) {
  int fd = bsd_pollbe_fileno(checkopen(L)->be);
  if (fd < 0) lua_pushnil(L);  /* poll(2) has no descriptor of its own */
  else lua_pushinteger(L, fd);
  return 1;
}

/* ---- methods ---- */

static int ctl(lua_State *L, int op, const char *call) {
  bsd_poller *p = checkopen(L);
  int fd = objfd(L, 2);
  unsigned ev = op == BSD_POLL_DEL ? 0 : checkevents(L, 3);
  int err;
  if (fd < 0) {
    if (op == BSD_POLL_DEL) {  /* a closed socket: nothing to remove */
      lua_pushboolean(L, 1);
      return 1;
    }
    return luaL_error(L, "attempt to use a closed socket");
  }
  err = bsd_pollbe_ctl(L, p->be, op, fd, ev);
  if (err) return fderror(L, call, fd, err);
  if (op != BSD_POLL_DEL) {
    /* a registered socket tells bsdsocket.loop when it is closed, so the
    ** tasks waiting on it wake (see closesocket in socket.c) */
    bsd_socket *s = (bsd_socket *)luaL_testudata(L, 2, BSD_SOCKET_MT);
    if (s) s->waited = 1;
  }
  lua_getiuservalue(L, 1, 1);
  if (op == BSD_POLL_DEL) lua_pushnil(L);
  else lua_pushvalue(L, 2);
  lua_rawseti(L, -2, fd);
  lua_pushboolean(L, 1);
  return 1;
}

static int poller_add(lua_State *L) {
  return ctl(L, BSD_POLL_ADD, "poller add");
}

static int poller_modify(lua_State *L) {
  return ctl(L, BSD_POLL_MOD, "poller modify");
}

static int poller_remove(lua_State *L) {
  return ctl(L, BSD_POLL_DEL, "poller remove");
}

static int poller_wait(lua_State *L) {
  bsd_poller *p = checkopen(L);
  double t = checktimeout(L, 2), deadline = 0;
  int ms = millis(t);
  if (t > 0) deadline = bsd_monotime() + t;
  p->n = p->pos = 0;
  while ((p->n = bsd_pollbe_wait(L, p->be, ms)) < 0) {
    if (errno != EINTR) {
      p->n = 0;
      return bsd_pusherror(L, "poller wait", NULL, errno);
    }
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
    closebackend(L, p);
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
  if (!p->closed) closebackend(L, p);
  return 0;
}

static int poller_backend(lua_State *L) {
  checkpoller(L);
  lua_pushstring(L, bsd_pollbe_name);
  return 1;
}

static int poller_tostring(lua_State *L) {
  bsd_poller *p = checkpoller(L);
  if (p->closed) lua_pushliteral(L, "bsdsocket.poller (closed)");
  else if (bsd_pollbe_fileno(p->be) >= 0)
    lua_pushfstring(L, "bsdsocket.poller %s fd=%d", bsd_pollbe_name,
                    bsd_pollbe_fileno(p->be));
  else
    lua_pushfstring(L, "bsdsocket.poller %s %d registered", bsd_pollbe_name,
                    bsd_pollbe_count(p->be));
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
  memset(p, 0, sizeof *p);  /* __gc frees whatever bsd_pollbe_open made */
  luaL_setmetatable(L, BSD_POLLER_MT);
  err = bsd_pollbe_open(L, &p->be);
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
    {"EPOLLONESHOT", (lua_Integer)BSD_POLL_ONESHOT},
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
  if (bsd_pollbe_flags & BSD_POLL_EDGE) {
    lua_pushinteger(L, (lua_Integer)BSD_POLL_EDGE);
    lua_setfield(L, -2, "EPOLLET");
  }
}
