/*
** Addresses (the Lua form of sockaddr_in/sockaddr_in6/sockaddr_un),
** argument parsing for every address-taking call, and the resolver.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "bsdsocket.h"

#define UNIX_PATH_OFFSET offsetof(struct sockaddr_un, sun_path)

bsd_addr *bsd_newaddr(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  bsd_addr *a = (bsd_addr *)lua_newuserdatauv(L, sizeof(bsd_addr), 0);
  a->tag = BSD_ADDR_TAG;
  if (len > (socklen_t)sizeof(a->ss)) len = (socklen_t)sizeof(a->ss);
  memset(&a->ss, 0, sizeof(a->ss));
  memcpy(&a->ss, sa, len);
  a->len = len;
  luaL_setmetatable(L, BSD_ADDR_MT);
  return a;
}

/* sendto(data, addr) runs once per datagram: a tagged userdata of our size
** can only come from bsd_newaddr (Lua code cannot fill userdata), which
** spares the registry lookup by name; anything else takes luaL_testudata. */
bsd_addr *bsd_testaddr(lua_State *L, int idx) {
  bsd_addr *a = (bsd_addr *)lua_touserdata(L, idx);
  /* size first: a smaller userdata must not have its first bytes read */
  if (a && lua_rawlen(L, idx) == sizeof(bsd_addr) && a->tag == BSD_ADDR_TAG)
    return a;
  return (bsd_addr *)luaL_testudata(L, idx, BSD_ADDR_MT);
}

static bsd_addr *checkaddr(lua_State *L, int idx) {
  return (bsd_addr *)luaL_checkudata(L, idx, BSD_ADDR_MT);
}

static int checkport(lua_State *L, int arg) {
  lua_Integer port = luaL_checkinteger(L, arg);
  luaL_argcheck(L, 0 <= port && port <= 65535, arg,
                "port out of range 0..65535");
  return (int)port;
}

/* A Unix path: a leading NUL makes a Linux abstract name, whose length
** counts; others are NUL-terminated and must fit sun_path with the NUL. */
static void unixaddr(lua_State *L, int arg, bsd_addr *out) {
  size_t len;
  const char *path = luaL_checklstring(L, arg, &len);
  struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
  int abstract = len > 0 && path[0] == '\0';
  memset(&out->ss, 0, sizeof(out->ss));
  if (!BSD_HAVE_ABSTRACT && abstract)
    luaL_argerror(L, arg, "abstract Unix names (a leading NUL) are Linux's");
  if (!abstract)
    luaL_argcheck(L, strlen(path) == len, arg, "Unix path contains a NUL byte");
  luaL_argcheck(L, len + !abstract <= sizeof(sun->sun_path), arg,
                lua_pushfstring(L, "Unix path longer than %d bytes",
                                (int)sizeof(sun->sun_path) - 1));
  sun->sun_family = AF_UNIX;
  memcpy(sun->sun_path, path, len);
  out->len = (socklen_t)(UNIX_PATH_OFFSET + len + !abstract);
}

/* Numeric hosts of the requested family skip the resolver: they are the
** common case and must not cost a getaddrinfo call. */
static int numericaddr(const char *host, int port, int family, bsd_addr *out) {
  memset(&out->ss, 0, sizeof(out->ss));
  if (family != AF_INET6) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    if (strcmp(host, "*") == 0
        || inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
      sin->sin_family = AF_INET;
      sin->sin_port = htons((uint16_t)port);
      out->len = sizeof(*sin);
      return 1;
    }
  }
  if (family != AF_INET && !strchr(host, '%')) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons((uint16_t)port);
      out->len = sizeof(*sin6);
      return 1;
    }
  }
  return 0;
}

/* ---- resolving inside loop tasks ---- */

/* What a resolving task was resumed with, the request being at rq: 1 when
** the answer is in (*gai, *res), the stack back to rq. A spurious wake-up
** yields again (k continues). A falsy first value means the wait was cut
** short (no deadline was asked for, so someone cancelled the task): the
** request is released, and the result is 2 when what the task was resumed
** with reads as nil, msg [, code] (its values, above rq, are then the call's
** results), else 0 (the stack back to rq: the caller reports ETIMEDOUT).
** A string is loop.cancel's message: 2, with nil, "<call>: <msg>",
** "ECANCELED" above rq. */
static int awaited(lua_State *L, int rq, int *gai, const struct addrinfo **res,
                   lua_KFunction k, const char *call) {
  if (lua_gettop(L) == rq + 1 && lua_type(L, rq + 1) == LUA_TSTRING) {
    bsd_resolve_release(L, rq);
    bsd_pushfail(L, call, NULL, lua_tostring(L, rq + 1), "ECANCELED");
    lua_remove(L, rq + 1);
    return 2;
  }
  if (lua_gettop(L) > rq && !lua_toboolean(L, rq + 1)) {
    bsd_resolve_release(L, rq);
    if (lua_gettop(L) >= rq + 2 && lua_type(L, rq + 2) == LUA_TSTRING) {
      lua_settop(L, rq + 3 < lua_gettop(L) ? rq + 3 : lua_gettop(L));
      return 2;
    }
    lua_settop(L, rq);
    return 0;
  }
  lua_settop(L, rq);
  if (bsd_resolve_answer(L, rq, gai, res)) return 1;
  return bsd_resolve_yield(L, rq, rq, k);  /* not yet: wait again */
}

static int k_return(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* The (call, argument) pairs where bsd_getaddrarg reads host, port from
** the running function's own arguments, so that it can call the function
** again with the resolved addr in their place. (sendmmsg's per-datagram
** addresses come from a table and resolve in place.) */
static const struct argcall { const char *call; int idx; } argcalls[] = {
  {"addr", 1}, {"bind", 2}, {"connect", 2},
  {"sendto", 3}, {"sendmsg", 3}, {"sendmmsg", 3},
  {NULL, 0}
};

static int isargcall(const char *call, int idx) {
  const struct argcall *c;
  for (c = argcalls; c->call; c++)
    if (c->idx == idx && strcmp(c->call, call) == 0) return 1;
  return 0;
}

/* The stack of a task resolving for bsd_getaddrarg: the function's n
** arguments, the function, the host's argument index, the call's name and
** the request, at ctx = n + 4. */
static int k_addrarg(lua_State *L, int status, lua_KContext ctx) {
  int rq = (int)ctx, n = rq - 4, idx = (int)lua_tointeger(L, n + 2), gai = 0, r;
  const char *call = lua_tostring(L, n + 3);
  const struct addrinfo *res = NULL;
  (void)status;
  if ((r = awaited(L, rq, &gai, &res, k_addrarg, call)) != 1) {
    const char *peer;
    if (r == 2) return lua_gettop(L) - rq;
    peer = lua_pushfstring(L, "%s:%d", lua_tostring(L, idx),
                           (int)lua_tointeger(L, idx + 1));
    return bsd_pusherror(L, call, peer, ETIMEDOUT);
  }
  if (gai != 0) {
    const char *peer = lua_pushfstring(L, "%s:%d", lua_tostring(L, idx),
                                       (int)lua_tointeger(L, idx + 1));
    bsd_resolve_release(L, rq);
    return bsd_pushgaierror(L, call, peer, gai);
  }
  {  /* a socket closed by another task meanwhile: as a waiter woken by close */
    const bsd_socket *s =
        (const bsd_socket *)luaL_testudata(L, 1, BSD_SOCKET_MT);
    if (s && s->fd < 0) {
      const char *peer = lua_pushfstring(L, "%s:%d", lua_tostring(L, idx),
                                         (int)lua_tointeger(L, idx + 1));
      bsd_resolve_release(L, rq);
      return bsd_pusherror(L, call, peer, EBADF);
    }
  }
  bsd_newaddr(L, res->ai_addr, res->ai_addrlen);
  bsd_resolve_release(L, rq);
  lua_replace(L, idx);       /* the addr in place of host */
  lua_settop(L, n + 1);      /* the arguments and the function */
  lua_remove(L, idx + 1);    /* ... and of port */
  lua_rotate(L, 1, 1);       /* the function below its arguments */
  lua_callk(L, n - 1, LUA_MULTRET, 0, k_return);
  return k_return(L, LUA_OK, 0);
}

/* Out of threads or descriptors, a task waited a little: the stack holds
** the function's arguments and the function, at ctx. Call it again. */
static int k_retryarg(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, (int)ctx);
  lua_rotate(L, 1, 1);
  lua_callk(L, (int)ctx - 1, LUA_MULTRET, 0, k_return);
  return k_return(L, LUA_OK, 0);
}

/* In a loop task, starts resolving on a worker thread and yields (does not
** return); returns 0 when it cannot (resolve in place then). */
static int resolveintask(lua_State *L, const char *host, const char *service,
                         const struct addrinfo *hints, int idx,
                         const char *call) {
  int n = lua_gettop(L), r;
  lua_Debug ar;
  if (!isargcall(call, idx) || !bsd_intask(L)) return 0;
  luaL_checkstack(L, 4, NULL);
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "f", &ar)) return 0;
  lua_pushinteger(L, idx);
  lua_pushstring(L, call);
  if ((r = bsd_resolve_start(L, host, service, hints)) > 0)
    return bsd_resolve_yield(L, n + 4, n + 4, k_addrarg);
  lua_settop(L, n + 1);  /* the arguments and the function */
  /* yields, unless none is out */
  if (r < 0) bsd_resolve_later(L, n + 1, k_retryarg);
  lua_settop(L, n);
  return 0;
}

static int resolve(lua_State *L, int idx, const char *host, int port,
                   int family, int socktype, const char *call, bsd_addr *out) {
  struct addrinfo hints, *res;
  char service[8];
  int gai;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = socktype;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(service, sizeof service, "%d", port);
  /* yields, or resolve here */
  resolveintask(L, host, service, &hints, idx, call);
  gai = getaddrinfo(host, service, &hints, &res);
  if (gai != 0) {
    bsd_pushgaierror(L, call, lua_pushfstring(L, "%s:%d", host, port), gai);
    lua_remove(L, -4);  /* the peer text */
    return 0;
  }
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->len = res->ai_addrlen;
  freeaddrinfo(res);
  return 1;
}

int bsd_getaddrarg(lua_State *L, int idx, int family, int socktype,
                   const char *call, bsd_addr *out) {
  bsd_addr *a = bsd_testaddr(L, idx);
  const char *host;
  int port;
  size_t len;
  if (a) {
    memcpy(&out->ss, &a->ss, a->len);
    out->len = a->len;
    return 1;
  }
  if (family == AF_UNIX) {
    unixaddr(L, idx, out);
    return 1;
  }
  host = luaL_checklstring(L, idx, &len);
  luaL_argcheck(L, strlen(host) == len, idx, "host name contains a NUL byte");
  port = checkport(L, idx + 1);
  if (family == AF_UNSPEC && *host == '\0') host = "*";
  if (numericaddr(host, port, family, out)) return 2;
  return resolve(L, idx, host, port, family, socktype, call, out) ? 2 : 0;
}

void bsd_addrtostring(const struct sockaddr *sa, socklen_t len,
                      char *buf, size_t size) {
  char host[INET6_ADDRSTRLEN];
  switch (sa->sa_family) {
    case AF_INET: {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
      inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
      snprintf(buf, size, "%s:%d", host, ntohs(sin->sin_port));
      break;
    }
    case AF_INET6: {
      const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
      char scope[IF_NAMESIZE + 1] = "";
      inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
      if (sin6->sin6_scope_id != 0) {
        char name[IF_NAMESIZE];
        if (if_indextoname(sin6->sin6_scope_id, name))
          snprintf(scope, sizeof scope, "%%%s", name);
        else
          snprintf(scope, sizeof scope, "%%%u", (unsigned)sin6->sin6_scope_id);
      }
      snprintf(buf, size, "[%s%s]:%d", host, scope, ntohs(sin6->sin6_port));
      break;
    }
    case AF_UNIX: {
      const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
      size_t n = len > UNIX_PATH_OFFSET ? len - UNIX_PATH_OFFSET : 0;
      if (n > 0 && sun->sun_path[0] == '\0')  /* abstract: shown with '@' */
        snprintf(buf, size, "unix:@%.*s", (int)(n - 1), sun->sun_path + 1);
      else
        snprintf(buf, size, "unix:%.*s", (int)strnlen(sun->sun_path, n),
                 sun->sun_path);
      break;
    }
    default:
      snprintf(buf, size, "family %d", sa->sa_family);
  }
}

/* S.addr(host, port) | S.addr(path) */
static int addr_new(lua_State *L) {
  bsd_addr tmp;
  int family = AF_UNSPEC;
  if (lua_isnoneornil(L, 2)) family = AF_UNIX;
  if (bsd_getaddrarg(L, 1, family, 0, "addr", &tmp) == 0) return 3;
  bsd_newaddr(L, (struct sockaddr *)&tmp.ss, tmp.len);
  return 1;
}

static int addr_tostring(lua_State *L) {
  bsd_addr *a = checkaddr(L, 1);
  char buf[sizeof(struct sockaddr_un) + 16];
  bsd_addrtostring((struct sockaddr *)&a->ss, a->len, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

static int addr_eq(lua_State *L) {
  bsd_addr *a = checkaddr(L, 1), *b = checkaddr(L, 2);
  lua_pushboolean(L, a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0);
  return 1;
}

static void pushhost(lua_State *L, const bsd_addr *a) {
  char host[INET6_ADDRSTRLEN];
  if (a->ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, host,
              sizeof host);
  else
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, host,
              sizeof host);
  lua_pushstring(L, host);
}

static void pushpath(lua_State *L, const bsd_addr *a) {
  const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
  size_t n = a->len > UNIX_PATH_OFFSET ? a->len - UNIX_PATH_OFFSET : 0;
  if (n > 0 && sun->sun_path[0] != '\0') n = strnlen(sun->sun_path, n);
  lua_pushlstring(L, sun->sun_path, n);
}

static int addr_index(lua_State *L) {
  bsd_addr *a = checkaddr(L, 1);
  const char *key = luaL_checkstring(L, 2);
  int family = a->ss.ss_family;
  int inet = family == AF_INET || family == AF_INET6;
  if (strcmp(key, "family") == 0) lua_pushinteger(L, family);
  else if (strcmp(key, "host") == 0 && inet) pushhost(L, a);
  else if (strcmp(key, "port") == 0 && inet)
    lua_pushinteger(L, ntohs(((const struct sockaddr_in *)&a->ss)->sin_port));
  else if (strcmp(key, "path") == 0 && family == AF_UNIX) pushpath(L, a);
  else if (strcmp(key, "scope_id") == 0 && family == AF_INET6)
    lua_pushinteger(L, ((const struct sockaddr_in6 *)&a->ss)->sin6_scope_id);
  else lua_pushnil(L);
  return 1;
}

/* ---- getaddrinfo and friends ---- */

static int optfield(lua_State *L, int t, const char *name) {
  int v;
  lua_getfield(L, t, name);
  v = (int)luaL_optinteger(L, -1, 0);
  if (lua_tointeger(L, -1) != v)
    luaL_error(L, "hints field '%s' out of range", name);
  lua_pop(L, 1);
  return v;
}

static void pushaddrinfo(lua_State *L, const struct addrinfo *ai, int first) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, ai->ai_family);
  lua_setfield(L, -2, "family");
  lua_pushinteger(L, ai->ai_socktype);
  lua_setfield(L, -2, "socktype");
  lua_pushinteger(L, ai->ai_protocol);
  lua_setfield(L, -2, "protocol");
  bsd_newaddr(L, ai->ai_addr, ai->ai_addrlen);
  lua_setfield(L, -2, "addr");
  if (first && ai->ai_canonname) {
    lua_pushstring(L, ai->ai_canonname);
    lua_setfield(L, -2, "canonname");
  }
}

static const char *optnulfree(lua_State *L, int arg) {
  size_t len;
  const char *s;
  if (lua_isnoneornil(L, arg)) return NULL;
  if (lua_type(L, arg) == LUA_TNUMBER) {
    /* a service given as a port number */
    lua_Integer port = luaL_checkinteger(L, arg);
    luaL_argcheck(L, 0 <= port && port <= 65535, arg,
                  "port out of range 0..65535");
    lua_tostring(L, arg);        /* converts in place */
  }
  s = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, strlen(s) == len, arg, "contains a NUL byte");
  return s;
}

/* canon: AI_CANONNAME was asked for. musl names the first entry anyway
** (and glibc not), so a name asked for by no one is left out. */
static int pushanswer(lua_State *L, const char *host, const char *service,
                      int gai, const struct addrinfo *res, int canon) {
  const struct addrinfo *ai;
  int i = 1;
  if (gai != 0) {
    const char *peer =
        lua_pushfstring(L, "%s%s%s", host ? host : "", service ? ":" : "",
                        service ? service : "");
    return bsd_pushgaierror(L, "getaddrinfo", peer, gai);
  }
  lua_newtable(L);
  for (ai = res; ai; ai = ai->ai_next) {
    pushaddrinfo(L, ai, canon && ai == res);
    lua_rawseti(L, -2, i++);
  }
  return 1;
}

/* hints.flags has AI_CANONNAME; read raw, so that nothing can raise
** while a request is held */
static int askedcanon(lua_State *L, int t) {
  lua_Integer flags;
  if (!lua_istable(L, t)) return 0;
  lua_pushliteral(L, "flags");
  lua_rawget(L, t);
  flags = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return (flags & AI_CANONNAME) != 0;
}

/* a task's getaddrinfo: host, service, hints at 1..3, the request at 4 */
static int k_getaddrinfo(lua_State *L, int status, lua_KContext ctx) {
  const struct addrinfo *res = NULL;
  int gai = 0, r, n;
  (void)status;
  if ((r = awaited(L, (int)ctx, &gai, &res, k_getaddrinfo, "getaddrinfo"))
      != 1) {
    if (r == 2) return lua_gettop(L) - (int)ctx;
    return bsd_pusherror(L, "getaddrinfo", lua_tostring(L, 1), ETIMEDOUT);
  }
  n = pushanswer(L, lua_tostring(L, 1), lua_tostring(L, 2), gai, res,
                 askedcanon(L, 3));
  bsd_resolve_release(L, (int)ctx);
  return n;
}

static int addr_getaddrinfo(lua_State *L);

/* out of threads or descriptors, a task waited a little: try again */
static int k_retrygetaddrinfo(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_settop(L, (int)ctx);
  return addr_getaddrinfo(L);
}

static int addr_getaddrinfo(lua_State *L) {
  const char *host = optnulfree(L, 1);
  const char *service = optnulfree(L, 2);
  struct addrinfo hints, *res = NULL;
  int gai, n;
  memset(&hints, 0, sizeof hints);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    hints.ai_family = optfield(L, 3, "family");
    hints.ai_socktype = optfield(L, 3, "socktype");
    hints.ai_protocol = optfield(L, 3, "protocol");
    hints.ai_flags = optfield(L, 3, "flags");
  }
  if (!host && !service)
    return luaL_error(L, "getaddrinfo: host and service cannot both be nil");
  if (host && !(hints.ai_flags & AI_NUMERICHOST) && bsd_intask(L)) {
    /* a name (not a numeric address) goes to a worker thread; numeric
    ** hosts are answered here, but for AI_CANONNAME, whose answer for them
    ** is left to getaddrinfo proper */
    struct addrinfo numeric = hints;
    numeric.ai_flags |= AI_NUMERICHOST;
    gai = (hints.ai_flags & AI_CANONNAME)
              ? EAI_NONAME
              : getaddrinfo(host, service, &numeric, &res);
    if (gai == EAI_NONAME) {
      int r;
      lua_settop(L, 3);
      if ((r = bsd_resolve_start(L, host, service, &hints)) > 0)
        return bsd_resolve_yield(L, 4, 4, k_getaddrinfo);
      /* yields, unless none is out */
      if (r < 0) bsd_resolve_later(L, 3, k_retrygetaddrinfo);
      gai = getaddrinfo(host, service, &hints, &res);
    }
  }
  else gai = getaddrinfo(host, service, &hints, &res);
  n = pushanswer(L, host, service, gai, res,
                 (hints.ai_flags & AI_CANONNAME) != 0);
  if (gai == 0) freeaddrinfo(res);
  return n;
}

static int addr_getnameinfo(lua_State *L) {
  bsd_addr *a = checkaddr(L, 1);
  int flags = bsd_optint(L, 2, 0);
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  int gai = getnameinfo((struct sockaddr *)&a->ss, a->len, host, sizeof host,
                        serv, sizeof serv, flags);
  if (gai != 0) {
    char text[sizeof(struct sockaddr_un) + 16];
    bsd_addrtostring((struct sockaddr *)&a->ss, a->len, text, sizeof text);
    return bsd_pushgaierror(L, "getnameinfo", text, gai);
  }
  lua_pushstring(L, host);
  lua_pushstring(L, serv);
  return 2;
}

static int addr_if_nametoindex(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  unsigned idx;
  luaL_argcheck(L, strlen(name) == len, 1,
                "interface name contains a NUL byte");
  idx = if_nametoindex(name);
  if (idx == 0)
    return bsd_pusherror(L, "if_nametoindex", lua_tostring(L, 1), errno);
  lua_pushinteger(L, idx);
  return 1;
}

static int addr_if_indextoname(lua_State *L) {
  char name[IF_NAMESIZE];
  lua_Integer idx = luaL_checkinteger(L, 1);
  luaL_argcheck(L, idx > 0 && idx <= 0x7FFFFFFF, 1,
                "interface index out of range");
  if (!if_indextoname((unsigned)idx, name))
    return bsd_pusherror(L, "if_indextoname", lua_tostring(L, 1), errno);
  lua_pushstring(L, name);
  return 1;
}

static const luaL_Reg addr_meta[] = {
  {"__index", addr_index},
  {"__tostring", addr_tostring},
  {"__eq", addr_eq},
  {NULL, NULL}
};

static const luaL_Reg addr_funcs[] = {
  {"addr", addr_new},
  {"getaddrinfo", addr_getaddrinfo},
  {"getnameinfo", addr_getnameinfo},
  {"if_nametoindex", addr_if_nametoindex},
  {"if_indextoname", addr_if_indextoname},
  {NULL, NULL}
};

void bsd_open_addr(lua_State *L) {
  luaL_newmetatable(L, BSD_ADDR_MT);
  luaL_setfuncs(L, addr_meta, 0);
  lua_pop(L, 1);
  luaL_setfuncs(L, addr_funcs, 0);
  bsd_open_resolver(L);
}
