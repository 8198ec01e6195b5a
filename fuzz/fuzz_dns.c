/*
** libFuzzer target: random bytes into the DNS response parser of
** examples/dns_query.lua (through fuzz/dns_harness.lua, which loads the
** example's parse function). The parser may reject an input with a Lua
** error; the harness checks what it returns when it accepts one. A crash,
** a sanitizer report, a hang (-timeout) or a failed check in the harness
** (a Lua error outside the parser's pcall aborts) is a bug.
** Run from the repository root, or with FUZZ_ROOT set to it.
**
** The parser is Lua, which clang's instrumentation cannot see (it saw the
** interpreter's 12 edges and nothing more), so a line hook gives libFuzzer
** the parser's own coverage: each line of the parser chunk and each step
** from one line to the next is a counter in a sanitizer-coverage module of
** its own (registered below as the compiler registers a C file's), so
** libFuzzer counts them in cov and ft and keeps inputs that reach new Lua
** lines, new line-to-line steps or new loop counts.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_bsdsocket_core(lua_State *L);

/* ---- Lua coverage for libFuzzer ---- */

#define NLINES 1024   /* a counter per line of the parser chunk */
#define NSTEPS 4096   /* a counter per (line, next line) pair, hashed */
#define NSLOTS (NLINES + NSTEPS)
#define PARSER "=examples/dns_query.lua (parser)"  /* dns_harness.lua */

void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);
void __sanitizer_cov_pcs_init(const uintptr_t *start, const uintptr_t *stop);

static uint8_t counters[NSLOTS];
/* libFuzzer's PC table: (pc, flags) per counter; a counter's own address
** stands for its pc, unique and never a real instruction */
static uintptr_t pcs[2 * NSLOTS];
static int prevline;

__attribute__((constructor)) static void luacov_register(void) {
  size_t i;
  for (i = 0; i < NSLOTS; i++) pcs[2 * i] = (uintptr_t)&counters[i];
  __sanitizer_cov_8bit_counters_init(counters, counters + NSLOTS);
  __sanitizer_cov_pcs_init(pcs, pcs + 2 * NSLOTS);
}

static void bump(size_t i) {
  if (counters[i] != 255) counters[i]++;   /* saturate: a wrap reads as 0 */
}

static void linehook(lua_State *L, lua_Debug *ar) {
  int line = ar->currentline;
  if (!lua_getinfo(L, "S", ar) || strcmp(ar->source, PARSER) != 0) return;
  if (line < 0 || line >= NLINES) line = NLINES - 1;
  bump((size_t)line);
  bump(NLINES + ((size_t)prevline * 31u + (size_t)line) % NSTEPS);
  prevline = line;
}

/* ---- the target ---- */

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
    lua_sethook(L0, linehook, LUA_MASKLINE, 0);
  }
  prevline = 0;
  lua_rawgeti(L0, LUA_REGISTRYINDEX, feed);
  lua_pushlstring(L0, (const char *)data, size);
  /* the harness's own checks failed */
  if (lua_pcall(L0, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_dns: %s\n", lua_tostring(L0, -1));
    abort();
  }
  lua_settop(L0, 0);
  if (++count % 4096 == 0) lua_gc(L0, LUA_GCCOLLECT);
  return 0;
}
