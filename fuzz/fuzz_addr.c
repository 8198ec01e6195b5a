/*
** libFuzzer target: the code that turns Lua values into socket addresses
** and resolver hints (bsd_getaddrarg through S.addr and sock:bind,
** S.getaddrinfo with its hints table, getnameinfo, inet_pton/inet_ntop,
** if_nametoindex). A lua_State embeds the module; each input is decoded
** into a short program of calls with fuzzed strings and integers, each run
** under lua_pcall: a Lua error is a right answer, a crash or a sanitizer
** report is a bug.
**
** The resolver never leaves the machine: getaddrinfo and getnameinfo are
** interposed here and always get AI_NUMERICHOST / NI_NUMERICHOST added, so
** a fuzzed host name is parsed but never looked up.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_bsdsocket_core(lua_State *L);

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **);
typedef int (*gni_fn)(const struct sockaddr *, socklen_t, char *, socklen_t,
                      char *, socklen_t, int);

int getaddrinfo(const char *node, const char *service,
                const struct addrinfo *hints, struct addrinfo **res) {
  static gai_fn real;
  struct addrinfo h;
  if (!real) real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  memset(&h, 0, sizeof h);
  if (hints) h = *hints;
  h.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &h, res);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                socklen_t hostlen, char *serv, socklen_t servlen, int flags) {
  static gni_fn real;
  if (!real) real = (gni_fn)dlsym(RTLD_NEXT, "getnameinfo");
  return real(sa, salen, host, hostlen, serv, servlen,
              flags | NI_NUMERICHOST | NI_NUMERICSERV);
}

/* ---- decoding the input ---- */

typedef struct in { const uint8_t *p; size_t n; } in;

static int byte(in *d) {
  if (d->n == 0) return 0;
  d->n--;
  return *d->p++;
}

static const lua_Integer interesting[] = {
    0,
    1,
    -1,
    80,
    65535,
    65536,
    -65536,
    0x7FFFFFFF,
    -0x7FFFFFFF - 1,
    0x80000000LL,
    0xFFFFFFFFLL,
    0x100000000LL,
    (lua_Integer)0x7FFFFFFFFFFFFFFFLL,
    (lua_Integer)(-0x7FFFFFFFFFFFFFFFLL - 1),
    2,
    10,
    1,
    2,
    3,
    5,
    10,
    17,
    6,
    0x400,
    0x8,
    0x20,
    0x100};

static void pushint(lua_State *L, in *d) {
  int k = byte(d);
  if (k < 128)
    lua_pushinteger(
        L, interesting[k % (sizeof interesting / sizeof interesting[0])]);
  else {
    lua_Integer v = 0;
    int i;
    for (i = 0; i < 8; i++)
      v = (lua_Integer)(((uint64_t)v << 8) | (uint64_t)byte(d));
    lua_pushinteger(L, v);
  }
}

static void pushstr(lua_State *L, in *d) {
  size_t len = (size_t)byte(d);
  /* longer than sun_path now and then */
  if (len == 255) len = 255 + (size_t)byte(d) * 4;
  if (len > d->n) len = d->n;
  lua_pushlstring(L, (const char *)d->p, len);
  d->p += len;
  d->n -= len;
}

/* a Lua value of a fuzzed kind: mostly strings and integers */
static void pushvalue(lua_State *L, in *d) {
  switch (byte(d) % 8) {
    case 0: case 1: case 2: pushstr(L, d); break;
    case 3: case 4: pushint(L, d); break;
    case 5: lua_pushnil(L); break;
    /* fractions */
    case 6: lua_pushnumber(L, (lua_Number)(int8_t)byte(d) / 4.0); break;
    default: lua_newtable(L);
  }
}

/* ---- the calls ---- */

static lua_State *L0;

static int run(lua_State *L) {
  in *d = (in *)lua_touserdata(L, 1);
  int op = byte(d) % 9, top;
  lua_settop(L, 0);
  lua_getglobal(L, "S");
  top = lua_gettop(L);
  switch (op) {
    case 0:   /* S.addr(host, port) */
      lua_getfield(L, top, "addr");
      pushstr(L, d);
      pushvalue(L, d);
      lua_call(L, 2, 3);
      if (luaL_testudata(L, -3, "bsdsocket.addr")) {   /* read it back */
        lua_getfield(L, -3, "host");
        lua_getfield(L, -4, "port");
        luaL_tolstring(L, -5, NULL);
      }
      break;
    case 1:   /* S.addr(path) */
      lua_getfield(L, top, "addr");
      pushstr(L, d);
      lua_call(L, 1, 3);
      if (luaL_testudata(L, -3, "bsdsocket.addr")) {
        lua_getfield(L, -3, "path");
        luaL_tolstring(L, -4, NULL);
      }
      break;
    case 2: { /* S.getaddrinfo(host, service, hints) */
      int i;
      static const char *const fields[] = {"family", "socktype", "protocol",
                                           "flags"};
      lua_getfield(L, top, "getaddrinfo");
      pushvalue(L, d);
      pushvalue(L, d);
      lua_newtable(L);
      for (i = 0; i < 4; i++) {
        if (byte(d) & 1) {
          pushvalue(L, d);
          lua_setfield(L, -2, fields[i]);
        }
      }
      lua_call(L, 3, 3);
      break;
    }
    case 3:   /* S.getnameinfo(S.addr(host, port), flags) */
      lua_getfield(L, top, "getnameinfo");
      lua_getfield(L, top, "addr");
      pushstr(L, d);
      pushint(L, d);
      lua_call(L, 2, 1);
      pushint(L, d);
      lua_call(L, 2, 3);
      break;
    case 4:   /* S.inet_pton(family, text) */
      lua_getfield(L, top, "inet_pton");
      pushint(L, d);
      pushstr(L, d);
      lua_call(L, 2, 3);
      break;
    case 5:   /* S.inet_ntop(family, bytes) */
      lua_getfield(L, top, "inet_ntop");
      pushint(L, d);
      pushstr(L, d);
      lua_call(L, 2, 3);
      break;
    case 6:   /* sock:bind(host, port) on an AF_INET or AF_INET6 socket */
    case 7: {
      lua_getfield(L, top, "socket");
      lua_getfield(L, top, op == 6 ? "AF_INET" : "AF_INET6");
      lua_getfield(L, top, "SOCK_DGRAM");
      lua_call(L, 2, 1);
      if (lua_isuserdata(L, -1)) {
        int s = lua_gettop(L);
        lua_getfield(L, s, "bind");
        lua_pushvalue(L, s);
        pushvalue(L, d);
        pushvalue(L, d);
        if (lua_pcall(L, 3, 3, 0) != LUA_OK) lua_pop(L, 1);
        lua_getfield(L, s, "close");
        lua_pushvalue(L, s);
        lua_call(L, 1, 1);
      }
      break;
    }
    default:  /* S.if_nametoindex(name), S.addr(a) == S.addr(b) */
      lua_getfield(L, top, "if_nametoindex");
      pushstr(L, d);
      lua_call(L, 1, 3);
      lua_getfield(L, top, "addr");
      pushstr(L, d);
      pushint(L, d);
      lua_call(L, 2, 1);
      lua_getfield(L, top, "addr");
      pushstr(L, d);
      lua_call(L, 1, 1);
      lua_compare(L, -1, -2, LUA_OPEQ);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  in d;
  int calls = 0;
  static unsigned long count;
  if (!L0) {
    L0 = luaL_newstate();
    luaL_openlibs(L0);
    luaL_requiref(L0, "bsdsocket.core", luaopen_bsdsocket_core, 0);
    lua_setglobal(L0, "S");
  }
  d.p = data;
  d.n = size;
  while (d.n > 0 && calls++ < 16) {
    lua_settop(L0, 0);
    lua_pushcfunction(L0, run);
    lua_pushlightuserdata(L0, &d);
    (void)lua_pcall(L0, 1, 0, 0);   /* a Lua error is a right answer */
  }
  lua_settop(L0, 0);
  if (++count % 4096 == 0) lua_gc(L0, LUA_GCCOLLECT);
  return 0;
}
