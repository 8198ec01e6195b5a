/*
** libFuzzer target: random bytes into the DNS response parser of
** examples/dns_query.lua (through fuzz/dns_harness.lua, which loads the
** example's parse function). The parser may reject an input with a Lua
** error; the harness checks what it returns when it accepts one. A crash,
** a sanitizer report, a hang (-timeout) or a failed check in the harness
** (a Lua error outside the parser's pcall aborts) is a bug.
** Run from the repository root, or with FUZZ_ROOT set to it.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_bsdsocket_core(lua_State *L);

static lua_State *L0;
static int feed;   /* registry reference of the harness function */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static unsigned long count;
  if (!L0) {
    const char *root = getenv("FUZZ_ROOT");
    char path[4096];
    L0 = luaL_newstate();
    luaL_openlibs(L0);
    luaL_requiref(L0, "bsdsocket.core", luaopen_bsdsocket_core, 0);
    lua_pop(L0, 1);
    snprintf(path, sizeof path, "%s/fuzz/dns_harness.lua", root ? root : ".");
    if (luaL_dofile(L0, path) != LUA_OK) {
      fprintf(stderr, "fuzz_dns: %s\n", lua_tostring(L0, -1));
      abort();
    }
    lua_settop(L0, 1);
    feed = luaL_ref(L0, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L0, LUA_REGISTRYINDEX, feed);
  lua_pushlstring(L0, (const char *)data, size);
  if (lua_pcall(L0, 1, 1, 0) != LUA_OK) {   /* the harness's own checks failed */
    fprintf(stderr, "fuzz_dns: %s\n", lua_tostring(L0, -1));
    abort();
  }
  lua_settop(L0, 0);
  if (++count % 4096 == 0) lua_gc(L0, LUA_GCCOLLECT);
  return 0;
}
