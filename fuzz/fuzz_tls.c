/*
** libFuzzer target: random server bytes fed to a bsdsocket.tls client
** handshake. Each input is written into one end of a socket pair, whose
** writing side is then shut down, and a client stream (verifying or not,
** by the first byte) on the other end runs its handshake and, if that ever
** succeeds, a send and a recv. Every outcome must be a result with a
** stable code (TLS_*, EOF or an errno name): a crash, a sanitizer report,
** a raised error or an unknown code is a bug. The whole path is the
** module's (contexts, the BIO, bsd_iorun, the error classification), not
** a bare OpenSSL loop.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_bsdsocket_core(lua_State *L);
int luaopen_bsdsocket_tls(lua_State *L);

static const char script[] =
  "local S, tls, data, verify = ...\n"
  "CTX = CTX or { [true] = assert(tls.context()),\n"
  "               [false] = assert(tls.context { verify = false, alpn = { 'h2' } }) }\n"
  "local a, b = assert(S.socketpair())\n"
  "b:settimeout(0)\n"
  "b:send(data)\n"
  "b:shutdown('w')\n"
  "local t = tls.wrap(a, CTX[verify], { servername = 'fuzz.example' })\n"
  "local ok, msg, code = t:handshake()\n"
  "if ok then\n"
  "  t:send('x')\n"
  "  ok, msg, code = t:recv(100)\n"
  "  t:version(); t:peercert(); t:alpn(); tostring(t)\n"
  "end\n"
  "t:close()\n"
  "b:close()\n"
  "if not ok and not (type(code) == 'string' and (code:match('^TLS_') or code == 'EOF'\n"
  "    or S.errno[code])) then\n"
  "  error('unexpected result: ' .. tostring(msg) .. ' ' .. tostring(code))\n"
  "end\n";

static lua_State *L0;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int top;
  if (!L0) {
    L0 = luaL_newstate();
    luaL_openlibs(L0);
    luaL_getsubtable(L0, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L0, luaopen_bsdsocket_core);
    lua_setfield(L0, -2, "bsdsocket.core");
    lua_pop(L0, 1);
    luaL_requiref(L0, "bsdsocket.core", luaopen_bsdsocket_core, 0);
    lua_setglobal(L0, "S");
    luaL_requiref(L0, "bsdsocket.tls", luaopen_bsdsocket_tls, 0);
    lua_setglobal(L0, "TLS");
  }
  if (size > 100000) return 0;  /* more than a socket pair holds without a reader */
  top = lua_gettop(L0);
  if (luaL_loadbuffer(L0, script, sizeof script - 1, "=fuzz_tls") != LUA_OK) abort();
  lua_getglobal(L0, "S");
  lua_getglobal(L0, "TLS");
  lua_pushlstring(L0, (const char *)data, size);
  lua_pushboolean(L0, size > 0 && (data[0] & 1));
  if (lua_pcall(L0, 4, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_tls: %s\n", lua_tostring(L0, -1));
    abort();
  }
  lua_settop(L0, top);
  lua_gc(L0, LUA_GCSTEP, 0);
  return 0;
}
