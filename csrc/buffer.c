/*
** Byte buffers: S.buffer(size), a fixed-size block of bytes that recv_into
** and recvfrom_into fill in place (no scratch copy, no string per read)
** and that send, sendall and sendto accept as data, like a string.
**
** A buffer is a full userdata that Lua never moves, so a pointer into it
** stays valid across a yield of the call using it (the call keeps the
** buffer on its stack). It sits next to util.c at the bottom: it knows
** nothing of sockets.
*/
#include <string.h>

#include "bsdsocket.h"

/* bsd_buffer's header is followed by its bytes */
static bsd_buffer *newbuffer(lua_State *L, size_t size) {
  bsd_buffer *b =
      (bsd_buffer *)lua_newuserdatauv(L, sizeof(bsd_buffer) + size, 0);
  b->size = size;
  luaL_setmetatable(L, BSD_BUFFER_MT);
  return b;
}

bsd_buffer *bsd_checkbuffer(lua_State *L, int idx) {
  return (bsd_buffer *)luaL_checkudata(L, idx, BSD_BUFFER_MT);
}

/* The bytes of a string or a buffer at arg (the send calls' data). */
const char *bsd_checkbytes(lua_State *L, int arg, size_t *len) {
  bsd_buffer *b;
  if (lua_type(L, arg) == LUA_TSTRING) return lua_tolstring(L, arg, len);
  b = (bsd_buffer *)luaL_testudata(L, arg, BSD_BUFFER_MT);
  if (!b) luaL_typeerror(L, arg, "string or buffer");
  *len = b->size;
  return b->data;
}

/* S.buffer(size) -> zero-filled buffer; S.buffer(string) -> a copy of it */
static int buf_new(lua_State *L) {
  bsd_buffer *b;
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    b = newbuffer(L, len);
    memcpy(b->data, s, len);
  }
  else {
    lua_Integer size = luaL_checkinteger(L, 1);
    luaL_argcheck(L, 0 <= size && size <= BSD_BUFFER_MAX, 1,
                  "size out of range 0..2^31-1");
    b = newbuffer(L, (size_t)size);
    memset(b->data, 0, (size_t)size);
  }
  return 1;
}

static int buf_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bsd_checkbuffer(L, 1)->size);
  return 1;
}

/* i, j as string.sub reads them (negative: from the end), clipped to
** 1..len; start > end means the empty range */
static void subrange(lua_State *L, int arg, size_t len, size_t *start,
                     size_t *end) {
  lua_Integer i = luaL_optinteger(L, arg, 1);
  lua_Integer j = luaL_optinteger(L, arg + 1, -1);
  lua_Integer n = (lua_Integer)len;
  if (i < 0) i = i < -n ? 1 : n + i + 1;
  else if (i == 0) i = 1;
  if (j < 0) j = j < -n ? 0 : n + j + 1;
  else if (j > n) j = n;
  *start = (size_t)i;
  *end = (size_t)j;
}

/* buf:tostring([i [, j]]) -> the bytes i..j as a string */
static int buf_tostring(lua_State *L) {
  bsd_buffer *b = bsd_checkbuffer(L, 1);
  size_t i, j;
  subrange(L, 2, b->size, &i, &j);
  if (i > j) lua_pushliteral(L, "");
  else lua_pushlstring(L, b->data + i - 1, j - i + 1);
  return 1;
}

#if BSD_HAVE_MEMMEM
#define findbytes memmem
#else
/* memmem's results, for a libc without it (lstrlib's lmemfind) */
static void *findbytes(const void *s, size_t n, const void *p, size_t pn) {
  const char *h = (const char *)s, *end;
  if (pn == 0) return (void *)h;
  if (pn > n) return NULL;
  for (end = h + (n - pn); h <= end; h++) {
    h = (const char *)memchr(h, *(const char *)p, (size_t)(end - h) + 1);
    if (h == NULL) return NULL;
    if (memcmp(h + 1, (const char *)p + 1, pn - 1) == 0) return (void *)h;
  }
  return NULL;
}
#endif

/* a pattern without magic characters is found with memmem, as
** string.find does */
static int nospecials(const char *p, size_t len) {
  return strpbrk(p, "^$*+?.([%-") == NULL && strlen(p) == len;
}

/* buf:find(pattern [, init [, plain]]) -> what string.find gives on the
** bytes. A plain search runs on the buffer itself; a pattern runs through
** string.find (the upvalue) on a copy, as lstrlib's matcher is not exported. */
static int buf_find(lua_State *L) {
  bsd_buffer *b = bsd_checkbuffer(L, 1);
  lua_settop(L, 4);  /* string.find's results come after these */
  size_t plen;
  const char *p = luaL_checklstring(L, 2, &plen);
  lua_Integer init = luaL_optinteger(L, 3, 1);
  lua_Integer n = (lua_Integer)b->size;
  if (init < 0) init = init < -n ? 1 : n + init + 1;
  else if (init == 0) init = 1;
  if (init > n + 1) {
    luaL_pushfail(L);
    return 1;
  }
  if (lua_toboolean(L, 4) || nospecials(p, plen)) {
    const char *s = b->data + init - 1, *hit;
    size_t left = b->size - (size_t)(init - 1);
    if (plen == 0) hit = s;
    else hit = plen > left ? NULL : (const char *)findbytes(s, left, p, plen);
    if (!hit) {
      luaL_pushfail(L);
      return 1;
    }
    lua_pushinteger(L, (lua_Integer)(hit - b->data) + 1);
    lua_pushinteger(L, (lua_Integer)(hit - b->data) + (lua_Integer)plen);
    return 2;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushlstring(L, b->data, b->size);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, init);
  lua_call(L, 3, LUA_MULTRET);
  return lua_gettop(L) - 4;
}

static int buf_name(lua_State *L) {
  lua_pushfstring(L, "bsdsocket.buffer (%I bytes)",
                  (lua_Integer)bsd_checkbuffer(L, 1)->size);
  return 1;
}

static const luaL_Reg buf_methods[] = {
  {"tostring", buf_tostring},
  {"find", buf_find},
  {NULL, NULL}
};

static const luaL_Reg buf_meta[] = {
  {"__len", buf_len},
  {"__tostring", buf_name},
  {"__index", NULL},
  {NULL, NULL}
};

/* the metatable, and S.buffer into the table at the top */
void bsd_open_buffer(lua_State *L) {
  luaL_newmetatable(L, BSD_BUFFER_MT);
  luaL_setfuncs(L, buf_meta, 0);
  luaL_newlibtable(L, buf_methods);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "string");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "find");
  else lua_pushnil(L);  /* no string library: find with a pattern raises */
  lua_replace(L, -3);
  lua_pop(L, 1);
  luaL_setfuncs(L, buf_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, buf_new);
  lua_setfield(L, -2, "buffer");
}
