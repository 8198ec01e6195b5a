/*
** Errors: errno names, `nil, message, code` results, S.errno, S.strerror.
*/
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "bsdsocket.h"

typedef struct errname { const char *name; int value; } errname;

static const errname errnames[] = {
#define BSD_ERRNAME(e) { #e, e },
#include "errnames.h"
#undef BSD_ERRNAME
  { NULL, 0 }
};

/* EAGAIN first: where EWOULDBLOCK shares its value, scripts test "EAGAIN" */
static const char *preferred(int err) {
  if (err == EAGAIN) return "EAGAIN";
#if defined(EOPNOTSUPP)
  if (err == EOPNOTSUPP) return "EOPNOTSUPP";
#endif
  if (err == EDEADLK) return "EDEADLK";
  return NULL;
}

const char *bsd_errname(int err) {
  const char *p = preferred(err);
  const errname *e;
  if (p) return p;
  for (e = errnames; e->name; e++)
    if (e->value == err) return e->name;
  return "EUNKNOWN";
}

static const errname gainames[] = {
#ifdef EAI_ADDRFAMILY
  { "EAI_ADDRFAMILY", EAI_ADDRFAMILY },
#endif
  { "EAI_AGAIN", EAI_AGAIN }, { "EAI_BADFLAGS", EAI_BADFLAGS },
  { "EAI_FAIL", EAI_FAIL }, { "EAI_FAMILY", EAI_FAMILY },
  { "EAI_MEMORY", EAI_MEMORY },
#ifdef EAI_NODATA
  { "EAI_NODATA", EAI_NODATA },
#endif
  { "EAI_NONAME", EAI_NONAME }, { "EAI_SERVICE", EAI_SERVICE },
  { "EAI_SOCKTYPE", EAI_SOCKTYPE }, { "EAI_SYSTEM", EAI_SYSTEM },
#ifdef EAI_OVERFLOW
  { "EAI_OVERFLOW", EAI_OVERFLOW },
#endif
  { NULL, 0 }
};

static void pushcallpeer(lua_State *L, const char *call, const char *peer) {
  if (peer && *peer) lua_pushfstring(L, "%s %s: ", call, peer);
  else lua_pushfstring(L, "%s: ", call);
}

int bsd_pushfail(lua_State *L, const char *call, const char *peer,
                 const char *reason, const char *code) {
  lua_pushnil(L);
  pushcallpeer(L, call, peer);
  lua_pushstring(L, reason);
  lua_concat(L, 2);
  lua_pushstring(L, code);
  return 3;
}

int bsd_pusherror(lua_State *L, const char *call, const char *peer, int err) {
  return bsd_pushfail(L, call, peer,
                      err == ETIMEDOUT ? "timed out" : strerror(err),
                      bsd_errname(err));
}

int bsd_pushgaierror(lua_State *L, const char *call, const char *peer,
                     int gai) {
  const errname *e;
  if (gai == EAI_SYSTEM) return bsd_pusherror(L, call, peer, errno);
  for (e = gainames; e->name; e++)
    if (e->value == gai) break;
  return bsd_pushfail(L, call, peer, gai_strerror(gai),
                      e->name ? e->name : "EAI_UNKNOWN");
}

/* accepts an errno number or its name; raises on names it does not know */
static int bsd_strerror(lua_State *L) {
  int err;
  if (lua_type(L, 1) == LUA_TSTRING) {
    const char *name = lua_tostring(L, 1);
    const errname *e;
    for (e = gainames; e->name; e++)
      if (strcmp(e->name, name) == 0) {
        lua_pushstring(L, gai_strerror(e->value));
        return 1;
      }
    for (e = errnames; e->name; e++)
      if (strcmp(e->name, name) == 0) break;
    if (!e->name)
      return luaL_argerror(L, 1,
                           lua_pushfstring(L, "unknown error name '%s'", name));
    err = e->value;
  }
  else err = bsd_checkint(L, 1);
  lua_pushstring(L, strerror(err));
  return 1;
}

void bsd_open_errors(lua_State *L) {
  const errname *e;
  lua_createtable(L, 0, (int)(2 * sizeof(errnames) / sizeof(errnames[0])));
  for (e = errnames; e->name; e++) {
    lua_pushinteger(L, e->value);
    lua_setfield(L, -2, e->name);
    lua_pushstring(L, bsd_errname(e->value));
    lua_rawseti(L, -2, e->value);
  }
  lua_setfield(L, -2, "errno");
  lua_pushcfunction(L, bsd_strerror);
  lua_setfield(L, -2, "strerror");
}
