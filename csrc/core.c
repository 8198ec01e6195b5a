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

/* S.SOCK_NONBLOCK and S.SOCK_CLOEXEC work in S.socket's type everywhere:
** where the kernel lacks them, socket.c applies them with fcntl. */
static void open_sockflags(lua_State *L) {
  lua_pushinteger(L, BSD_SOCK_NONBLOCK);
  lua_setfield(L, -2, "SOCK_NONBLOCK");
  lua_pushinteger(L, BSD_SOCK_CLOEXEC);
  lua_setfield(L, -2, "SOCK_CLOEXEC");
}

/* S.platform: which way each call goes on this build (API.md's platform
** table): true where the system call is there, false for the fallback */
typedef struct capability { const char *name; int native; } capability;

static const capability capabilities[] = {
  {"accept4", BSD_HAVE_ACCEPT4},
  {"sock_cloexec", BSD_HAVE_SOCK_CLOEXEC},
  {"msg_nosignal", BSD_HAVE_MSG_NOSIGNAL},
  {"so_nosigpipe", BSD_HAVE_SO_NOSIGPIPE},
  {"sendfile", BSD_HAVE_SENDFILE},
  {"splice", BSD_HAVE_SPLICE},
  {"mmsg", BSD_HAVE_MMSG},
  {"msg_cmsg_cloexec", BSD_HAVE_MSG_CMSG_CLOEXEC},
  {"so_domain", BSD_HAVE_SO_DOMAIN},
  {"so_protocol", BSD_HAVE_SO_PROTOCOL},
  {"peercred", BSD_HAVE_PEERCRED},
  {"scm_credentials", BSD_HAVE_CREDMSG},
  {"abstract", BSD_HAVE_ABSTRACT},
  {"memmem", BSD_HAVE_MEMMEM},
  {"ip_mreqn", BSD_HAVE_IP_MREQN},
  {NULL, 0}
};

static void open_platform(lua_State *L) {
  const capability *c;
  lua_createtable(L, 0, 16);
  lua_pushliteral(L, BSD_OS);
  lua_setfield(L, -2, "os");
#ifdef BSD_FALLBACK_BUILD
  lua_pushboolean(L, 1);   /* make check-fallbacks: capabilities turned off */
  lua_setfield(L, -2, "fallbacks");
#endif
  for (c = capabilities; c->name; c++) {
    lua_pushboolean(L, c->native);
    lua_setfield(L, -2, c->name);
  }
  lua_setfield(L, -2, "platform");
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
                                        family == AF_INET ? "IPv4" : "IPv6",
                                        text),
                        "EINVAL");
  lua_pushlstring(L, (const char *)buf, size);
  return 1;
}

static int core_inet_ntop(lua_State *L) {
  int family = bsd_checkint(L, 1);
  size_t len, size = familysize(L, 1, family);
  const char *bytes = luaL_checklstring(L, 2, &len);
  char text[INET6_ADDRSTRLEN];
  luaL_argcheck(
      L, len == size, 2,
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
  open_sockflags(L);
  open_platform(L);
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
