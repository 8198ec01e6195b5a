/*
** setsockopt/getsockopt, driven by a table that gives each known option
** its Lua value type; any other option takes and returns raw bytes.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/time.h>

#include "bsdsocket.h"

typedef enum {
  OPT_BOOL, OPT_INT, OPT_SECONDS, OPT_LINGER, OPT_MREQ, OPT_MREQ6, OPT_INADDR
} opttype;

typedef struct option { int level; int name; opttype type; } option;

static const option options[] = {
  {SOL_SOCKET, SO_REUSEADDR, OPT_BOOL},
#ifdef SO_REUSEPORT
  {SOL_SOCKET, SO_REUSEPORT, OPT_BOOL},
#endif
  {SOL_SOCKET, SO_KEEPALIVE, OPT_BOOL},
  {SOL_SOCKET, SO_BROADCAST, OPT_BOOL},
  {SOL_SOCKET, SO_DONTROUTE, OPT_BOOL},
  {SOL_SOCKET, SO_OOBINLINE, OPT_BOOL},
  {SOL_SOCKET, SO_ACCEPTCONN, OPT_BOOL},
#ifdef SO_PASSCRED
  {SOL_SOCKET, SO_PASSCRED, OPT_BOOL},
#endif
  {SOL_SOCKET, SO_RCVBUF, OPT_INT},
  {SOL_SOCKET, SO_SNDBUF, OPT_INT},
  {SOL_SOCKET, SO_RCVLOWAT, OPT_INT},
  {SOL_SOCKET, SO_SNDLOWAT, OPT_INT},
  {SOL_SOCKET, SO_ERROR, OPT_INT},
  {SOL_SOCKET, SO_TYPE, OPT_INT},
#ifdef SO_DOMAIN
  {SOL_SOCKET, SO_DOMAIN, OPT_INT},
#endif
#ifdef SO_PROTOCOL
  {SOL_SOCKET, SO_PROTOCOL, OPT_INT},
#endif
#ifdef SO_PRIORITY
  {SOL_SOCKET, SO_PRIORITY, OPT_INT},
#endif
#ifdef SO_MARK
  {SOL_SOCKET, SO_MARK, OPT_INT},
#endif
  {SOL_SOCKET, SO_RCVTIMEO, OPT_SECONDS},
  {SOL_SOCKET, SO_SNDTIMEO, OPT_SECONDS},
  {SOL_SOCKET, SO_LINGER, OPT_LINGER},
  {IPPROTO_TCP, TCP_NODELAY, OPT_BOOL},
#ifdef TCP_CORK
  {IPPROTO_TCP, TCP_CORK, OPT_BOOL},
#endif
#ifdef TCP_QUICKACK
  {IPPROTO_TCP, TCP_QUICKACK, OPT_BOOL},
#endif
#ifdef TCP_KEEPIDLE
  {IPPROTO_TCP, TCP_KEEPIDLE, OPT_INT},
#endif
#ifdef TCP_KEEPINTVL
  {IPPROTO_TCP, TCP_KEEPINTVL, OPT_INT},
#endif
#ifdef TCP_KEEPCNT
  {IPPROTO_TCP, TCP_KEEPCNT, OPT_INT},
#endif
  {IPPROTO_TCP, TCP_MAXSEG, OPT_INT},
#ifdef TCP_USER_TIMEOUT
  {IPPROTO_TCP, TCP_USER_TIMEOUT, OPT_INT},
#endif
  {IPPROTO_IP, IP_TTL, OPT_INT},
  {IPPROTO_IP, IP_TOS, OPT_INT},
  {IPPROTO_IP, IP_MULTICAST_TTL, OPT_INT},
  {IPPROTO_IP, IP_MULTICAST_LOOP, OPT_BOOL},
  {IPPROTO_IP, IP_MULTICAST_IF, OPT_INADDR},
  {IPPROTO_IP, IP_ADD_MEMBERSHIP, OPT_MREQ},
  {IPPROTO_IP, IP_DROP_MEMBERSHIP, OPT_MREQ},
#ifdef IP_RECVTTL
  {IPPROTO_IP, IP_RECVTTL, OPT_BOOL},
#endif
#ifdef IP_PKTINFO
  {IPPROTO_IP, IP_PKTINFO, OPT_BOOL},
#endif
  {IPPROTO_IPV6, IPV6_V6ONLY, OPT_BOOL},
  {IPPROTO_IPV6, IPV6_UNICAST_HOPS, OPT_INT},
  {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, OPT_INT},
  {IPPROTO_IPV6, IPV6_MULTICAST_IF, OPT_INT},
  {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, OPT_BOOL},
  {IPPROTO_IPV6, IPV6_JOIN_GROUP, OPT_MREQ6},
  {IPPROTO_IPV6, IPV6_LEAVE_GROUP, OPT_MREQ6},
#ifdef IPV6_RECVPKTINFO
  {IPPROTO_IPV6, IPV6_RECVPKTINFO, OPT_BOOL},
#endif
  {0, 0, 0}
};

static const option *findoption(int level, int name) {
  const option *o;
  for (o = options; o->level || o->name; o++)
    if (o->level == level && o->name == name) return o;
  return NULL;
}

static int checkbool(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TBOOLEAN) return lua_toboolean(L, arg);
  {
    lua_Integer v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v == 0 || v == 1, arg, "boolean (or 0/1) expected");
    return (int)v;
  }
}

static void checkinaddr(lua_State *L, int arg, const char *text,
                        struct in_addr *out) {
  if (inet_pton(AF_INET, text, out) != 1)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "not an IPv4 address: '%s'", text));
}

static const char *field(lua_State *L, int t, const char *name, int required) {
  const char *v;
  size_t len;
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1) && !required) {
    lua_pop(L, 1);
    return NULL;
  }
  v = lua_tolstring(L, -1, &len);
  if (!v) luaL_error(L, "field '%s' must be a string", name);
  if (strlen(v) != len) luaL_error(L, "field '%s' contains a NUL byte", name);
  lua_pop(L, 1);  /* still referenced by the table */
  return v;
}

static unsigned ifindexfield(lua_State *L, int t) {
  unsigned idx = 0;
  lua_getfield(L, t, "interface");
  if (lua_type(L, -1) == LUA_TSTRING) {
    idx = if_nametoindex(lua_tostring(L, -1));
    if (idx == 0) luaL_error(L, "unknown interface '%s'", lua_tostring(L, -1));
  }
  else if (!lua_isnil(L, -1)) {
    lua_Integer v = luaL_checkinteger(L, -1);
    if (v < 0 || v > 0x7FFFFFFF) luaL_error(L, "interface index out of range");
    idx = (unsigned)v;
  }
  lua_pop(L, 1);
  return idx;
}

static int sock_setsockopt(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  int level = bsd_checkint(L, 2), name = bsd_checkint(L, 3);
  const option *o = findoption(level, name);
  union {
    int i; struct timeval tv; struct linger lg; struct ip_mreq mreq;
    struct ipv6_mreq mreq6; struct in_addr in;
#if BSD_HAVE_IP_MREQN
    struct ip_mreqn mreqn;
#endif
  } v;
  const void *p = &v;
  socklen_t len;
  memset(&v, 0, sizeof v);
  luaL_argcheck(L, !lua_isnone(L, 4), 4, "value expected");
  if (!o) {
    size_t n;
    p = luaL_checklstring(L, 4, &n);
    len = (socklen_t)n;
  }
  else switch (o->type) {
    case OPT_BOOL: v.i = checkbool(L, 4); len = sizeof v.i; break;
    case OPT_INT: v.i = bsd_checkint(L, 4); len = sizeof v.i; break;
    case OPT_SECONDS: {
      lua_Number t = luaL_checknumber(L, 4);
      luaL_argcheck(L, t >= 0 && t < 1e9, 4, "seconds out of range");
      v.tv.tv_sec = (time_t)t;
      v.tv.tv_usec = (suseconds_t)((t - floor(t)) * 1e6);
      len = sizeof v.tv;
      break;
    }
    case OPT_LINGER:
      luaL_checktype(L, 4, LUA_TTABLE);
      lua_getfield(L, 4, "onoff");
      v.lg.l_onoff = lua_toboolean(L, -1);
      lua_getfield(L, 4, "linger");
      {
        lua_Integer secs = luaL_optinteger(L, -1, 0);
        if (secs < 0 || secs > 0x7FFFFFFF)
          luaL_error(L, "linger out of range 0..2^31-1 seconds");
        v.lg.l_linger = (int)secs;
      }
      lua_pop(L, 2);
      len = sizeof v.lg;
      break;
    case OPT_MREQ: {
      const char *iface;
      struct in_addr ifaddr;
      luaL_checktype(L, 4, LUA_TTABLE);
      checkinaddr(L, 4, field(L, 4, "multiaddr", 1), &v.mreq.imr_multiaddr);
#if BSD_HAVE_IP_MREQN
      /* an interface index or name (not an address): struct ip_mreqn */
      lua_getfield(L, 4, "interface");
      iface = lua_tostring(L, -1);
      if (lua_type(L, -1) == LUA_TNUMBER
          || (iface && inet_pton(AF_INET, iface, &ifaddr) != 1)) {
        lua_pop(L, 1);
        v.mreqn.imr_address.s_addr = htonl(INADDR_ANY);
        v.mreqn.imr_ifindex = (int)ifindexfield(L, 4);
        len = sizeof v.mreqn;
        break;
      }
      lua_pop(L, 1);
#endif
      iface = field(L, 4, "interface", 0);
      v.mreq.imr_interface.s_addr = htonl(INADDR_ANY);
      if (iface) checkinaddr(L, 4, iface, &v.mreq.imr_interface);
      (void)ifaddr;
      len = sizeof v.mreq;
      break;
    }
    case OPT_MREQ6: {
      const char *group;
      luaL_checktype(L, 4, LUA_TTABLE);
      group = field(L, 4, "multiaddr", 1);
      if (inet_pton(AF_INET6, group, &v.mreq6.ipv6mr_multiaddr) != 1)
        luaL_argerror(L, 4,
                      lua_pushfstring(L, "not an IPv6 address: '%s'", group));
      v.mreq6.ipv6mr_interface = ifindexfield(L, 4);
      len = sizeof v.mreq6;
      break;
    }
    default:  /* OPT_INADDR */
      checkinaddr(L, 4, luaL_checkstring(L, 4), &v.in);
      len = sizeof v.in;
  }
  if (setsockopt(s->fd, level, name, p, len) < 0)
    return bsd_pusherror(L, "setsockopt", NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static void pushvalue(lua_State *L, opttype type, const void *p) {
  switch (type) {
    case OPT_BOOL: lua_pushboolean(L, *(const int *)p != 0); break;
    case OPT_INT: lua_pushinteger(L, *(const int *)p); break;
    case OPT_SECONDS: {
      const struct timeval *tv = (const struct timeval *)p;
      lua_pushnumber(L, (lua_Number)tv->tv_sec + (lua_Number)tv->tv_usec / 1e6);
      break;
    }
    case OPT_LINGER: {
      const struct linger *lg = (const struct linger *)p;
      lua_createtable(L, 0, 2);
      lua_pushboolean(L, lg->l_onoff != 0);
      lua_setfield(L, -2, "onoff");
      lua_pushinteger(L, lg->l_linger);
      lua_setfield(L, -2, "linger");
      break;
    }
    default: {  /* OPT_INADDR */
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, p, text, sizeof text);
      lua_pushstring(L, text);
    }
  }
}

static int sock_getsockopt(lua_State *L) {
  bsd_socket *s = bsd_checkself(L);
  int level = bsd_checkint(L, 2), name = bsd_checkint(L, 3);
  const option *o = findoption(level, name);
  union {
    int i;
    struct timeval tv;
    struct linger lg;
    struct in_addr in;
    char raw[1];
  } v;
  socklen_t len = sizeof v;
  memset(&v, 0, sizeof v);
  if (o && (o->type == OPT_MREQ || o->type == OPT_MREQ6))
    return luaL_argerror(L, 3, "membership options can only be set");
  if (!o) {
    lua_Integer size = luaL_optinteger(L, 4, 256);
    luaL_Buffer b;
    char *p;
    luaL_argcheck(L, 0 < size && size <= 65536, 4,
                  "size out of range 1..65536");
    p = luaL_buffinitsize(L, &b, (size_t)size);
    len = (socklen_t)size;
    if (getsockopt(s->fd, level, name, p, &len) < 0)
      return bsd_pusherror(L, "getsockopt", NULL, errno);
    luaL_pushresultsize(&b, len);
    return 1;
  }
  if (getsockopt(s->fd, level, name, &v, &len) < 0)
    return bsd_pusherror(L, "getsockopt", NULL, errno);
  /* some Linux options answer with a single byte */
  if ((o->type == OPT_BOOL || o->type == OPT_INT) && len == 1) {
    /* read, then store: no overlapping union access */
    unsigned char b = (unsigned char)v.raw[0];
    v.i = b;
  }
  pushvalue(L, o->type, &v);
  return 1;
}

static const luaL_Reg option_methods[] = {
  {"setsockopt", sock_setsockopt},
  {"getsockopt", sock_getsockopt},
  {NULL, NULL}
};

void bsd_open_options(lua_State *L) {
  bsd_addmethods(L, option_methods);
}
