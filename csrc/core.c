/*
** bsdsocket.core: the module table, constants, byte order and the
** inet_pton/inet_ntop conversions.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <string.h>

#include "bsdsocket.h"

typedef struct constant { const char *name; long long value; } constant;

static const constant constants[] = {
#define BSD_CONST(c) { #c, (long long)(c) },
#include "constants.h"
#undef BSD_CONST
  { NULL, 0 }
};

void bsd_open_constants(lua_State *L) {
  const constant *c;
  for (c = constants; c->name; c++) {
    lua_pushinteger(L, (lua_Integer)c->value);
    lua_setfield(L, -2, c->name);
  }
}

static int core_monotime(lua_State *L) {
  lua_pushnumber(L, bsd_monotime());
  return 1;
}

/* Byte order. Integers only, checked against the width of the C type,
** so a script never gets a silently truncated value. */
static lua_Integer checkuint(lua_State *L, int arg, lua_Integer max) {
  lua_Integer v = luaL_checkinteger(L, arg);
  luaL_argcheck(L, 0 <= v && v <= max, arg,
                lua_pushfstring(L, "value out of range 0..%I", max));
  return v;
}

static int core_htons(lua_State *L) {
  lua_pushinteger(L, htons((uint16_t)checkuint(L, 1, 0xFFFF)));
  return 1;
}

static int core_ntohs(lua_State *L) {
  lua_pushinteger(L, ntohs((uint16_t)checkuint(L, 1, 0xFFFF)));
  return 1;
}

static int core_htonl(lua_State *L) {
  lua_pushinteger(L, htonl((uint32_t)checkuint(L, 1, 0xFFFFFFFF)));
  return 1;
}

static int core_ntohl(lua_State *L) {
  lua_pushinteger(L, ntohl((uint32_t)checkuint(L, 1, 0xFFFFFFFF)));
  return 1;
}

static size_t familysize(lua_State *L, int arg, int family) {
  if (family == AF_INET) return sizeof(struct in_addr);
  if (family == AF_INET6) return sizeof(struct in6_addr);
  return (size_t)luaL_argerror(L, arg, "AF_INET or AF_INET6 expected");
}

static int core_inet_pton(lua_State *L) {
  int family = bsd_checkint(L, 1);
  size_t len, size = familysize(L, 1, family);
  const char *text = luaL_checklstring(L, 2, &len);
  unsigned char buf[sizeof(struct in6_addr)];
  if (strlen(text) != len || inet_pton(family, text, buf) != 1)
    return bsd_pushfail(L, "inet_pton", NULL,
                        lua_pushfstring(L, "not an %s address: '%s'",
                                        family == AF_INET ? "IPv4" : "IPv6", text),
                        "EINVAL");
  lua_pushlstring(L, (const char *)buf, size);
  return 1;
}

static int core_inet_ntop(lua_State *L) {
  int family = bsd_checkint(L, 1);
  size_t len, size = familysize(L, 1, family);
  const char *bytes = luaL_checklstring(L, 2, &len);
  char text[INET6_ADDRSTRLEN];
  luaL_argcheck(L, len == size, 2,
                lua_pushfstring(L, "%d bytes expected, got %d", (int)size, (int)len));
  if (!inet_ntop(family, bytes, text, sizeof text))
    return bsd_pusherror(L, "inet_ntop", NULL, errno);
  lua_pushstring(L, text);
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"htons", core_htons},
  {"ntohs", core_ntohs},
  {"htonl", core_htonl},
  {"ntohl", core_ntohl},
  {"inet_pton", core_inet_pton},
  {"inet_ntop", core_inet_ntop},
  {"monotime", core_monotime},
  {NULL, NULL}
};

LUAMOD_API int luaopen_bsdsocket_core(lua_State *L) {
  luaL_newlib(L, core_funcs);
  /* the coroutines of bsdsocket.loop: weak keys, so a finished task is
  ** collected without the loop having to unregister it (first: the socket
  ** methods get it as an upvalue) */
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &bsd_taskskey);
  lua_setfield(L, LUA_REGISTRYINDEX, BSD_TASKS_KEY);
  lua_setfield(L, -2, "_tasks");
  bsd_open_constants(L);
  bsd_open_errors(L);
  bsd_open_addr(L);
  bsd_open_socket(L);
  bsd_open_options(L);
  bsd_open_msg(L);
  bsd_open_buffer(L);
  bsd_open_zerocopy(L);
  bsd_open_poller(L);
  bsd_open_loop(L);
  bsd_open_capi(L);
  return 1;
}
