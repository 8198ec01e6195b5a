/*
** libFuzzer target: a peer's bytes fed to a bsdsocket.tls stream. Each
** input is a mode byte, a chunk byte and the peer's bytes. The peer's bytes
** go into one end of a socket pair, whose writing side is then shut down;
** on the other end a stream (client or server, by the mode) runs its
** handshake and, if that succeeds, a request and an answer, its inspection
** methods and a shutdown. Every outcome must be a result with a stable code
** (TLS_*, EOF or an errno name): a crash, a sanitizer report, a raised
** error or an unknown code is a bug. The whole path is the module's
** (contexts, the BIO, bsd_iorun, the error classification), not a bare
** OpenSSL loop.
**
** Mode bits: 1 verify (a client checks the peer against FUZZ_TLS_DIR's
** ca.pem; a server requires a client certificate), 2 ALPN {h2, http/1.1},
** 4 TLS 1.2 at most, 8 server, 16 non-blocking: the bytes arrive
** (chunk byte + 1) at a time between the calls, which see EAGAIN in
** between, 32 a server that picks its context by an sni function, 64
** sendall and recvall instead of send and recv, 128 a client that names
** the peer by hostname instead of servername (the same hello).
**
** Seeds that get past the first record: OpenSSL draws its randomness here
** from a generator restarted before each wrap, so this stream's hello, key
** share and signatures are the same on every run, and bytes a real peer
** sent it once replay a whole handshake and the data after it. With
** FUZZ_TLS_CONNECT=port the target runs its stream over TCP to
** 127.0.0.1:port instead of the pair; fuzz/tls_record.py puts a real peer
** there and records what it sends (`make fuzz` does this first). The
** certificates are in FUZZ_TLS_DIR (default build/fuzz/tls). With
** FUZZ_TLS_DEBUG set, each call's results go to stderr.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

int luaopen_bsdsocket_core(lua_State *L);
int luaopen_bsdsocket_tls(lua_State *L);

/* ---- a repeatable random generator, as an OpenSSL 3 provider ---- */

static uint64_t rngstate;
static OSSL_PROVIDER *rngprov;   /* kept for the leak checker's sake */

static void rngrestart(void) { rngstate = 0x6275736f636b6574ULL; }

static void *rng_new(void *prov, void *parent, const OSSL_DISPATCH *pd) {
  static int state;   /* every instance is the same generator */
  (void)prov; (void)parent; (void)pd;
  return &state;
}

static void rng_free(void *r) { (void)r; }

static int rng_instantiate(void *r, unsigned int strength, int pr,
                           const unsigned char *ps, size_t n,
                           const OSSL_PARAM params[]) {
  (void)r; (void)strength; (void)pr; (void)ps; (void)n; (void)params;
  return 1;
}

static int rng_uninstantiate(void *r) { (void)r; return 1; }

/* splitmix64: enough for key shares and nonces that only must repeat */
static int rng_generate(void *r, unsigned char *out, size_t len,
                        unsigned int strength, int pr,
                        const unsigned char *adin, size_t adinlen) {
  (void)r; (void)strength; (void)pr; (void)adin; (void)adinlen;
  while (len > 0) {
    uint64_t z = (rngstate += 0x9E3779B97F4A7C15ULL);
    size_t k = len < 8 ? len : 8;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    memcpy(out, &z, k);
    out += k;
    len -= k;
  }
  return 1;
}

static int rng_locking(void *r) { (void)r; return 1; }

static const OSSL_PARAM *rng_gettable(void *r, void *provctx) {
  static const OSSL_PARAM known[] = {
    OSSL_PARAM_int(OSSL_RAND_PARAM_STATE, NULL),
    OSSL_PARAM_uint(OSSL_RAND_PARAM_STRENGTH, NULL),
    OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, NULL),
    OSSL_PARAM_END
  };
  (void)r; (void)provctx;
  return known;
}

static int rng_get(void *r, OSSL_PARAM params[]) {
  OSSL_PARAM *p;
  (void)r;
  p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STATE);
  if (p && !OSSL_PARAM_set_int(p, EVP_RAND_STATE_READY)) return 0;
  p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STRENGTH);
  if (p && !OSSL_PARAM_set_uint(p, 256)) return 0;
  p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_MAX_REQUEST);
  if (p && !OSSL_PARAM_set_size_t(p, 1 << 16)) return 0;
  return 1;
}

static const OSSL_DISPATCH rng_functions[] = {
  {OSSL_FUNC_RAND_NEWCTX, (void (*)(void))rng_new},
  {OSSL_FUNC_RAND_FREECTX, (void (*)(void))rng_free},
  {OSSL_FUNC_RAND_INSTANTIATE, (void (*)(void))rng_instantiate},
  {OSSL_FUNC_RAND_UNINSTANTIATE, (void (*)(void))rng_uninstantiate},
  {OSSL_FUNC_RAND_GENERATE, (void (*)(void))rng_generate},
  {OSSL_FUNC_RAND_ENABLE_LOCKING, (void (*)(void))rng_locking},
  {OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS, (void (*)(void))rng_gettable},
  {OSSL_FUNC_RAND_GET_CTX_PARAMS, (void (*)(void))rng_get},
  {0, NULL}
};

static const OSSL_ALGORITHM rng_algorithms[] = {
  {"fuzz-repeat", "provider=fuzz-repeat", rng_functions, NULL},
  {NULL, NULL, NULL, NULL}
};

static const OSSL_ALGORITHM *rng_query(void *provctx, int op, int *nocache) {
  (void)provctx;
  *nocache = 0;
  return op == OSSL_OP_RAND ? rng_algorithms : NULL;
}

static const OSSL_DISPATCH rng_provider[] = {
  {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))rng_query},
  {0, NULL}
};

static int rng_init(const OSSL_CORE_HANDLE *h, const OSSL_DISPATCH *in,
                    const OSSL_DISPATCH **out, void **provctx) {
  static int ctx;
  (void)h; (void)in;
  *out = rng_provider;
  *provctx = &ctx;
  return 1;
}

/* before OpenSSL makes its first generator, or it keeps the system's */
static void rngsetup(void) {
  if (!OSSL_PROVIDER_add_builtin(NULL, "fuzz-repeat", rng_init)
      || !RAND_set_DRBG_type(NULL, "fuzz-repeat", NULL, NULL, NULL)
      || !(rngprov = OSSL_PROVIDER_try_load(NULL, "fuzz-repeat", 1))) {
    fprintf(stderr, "fuzz_tls: cannot install the repeatable generator\n");
    abort();
  }
  rngrestart();
}

static int l_restart(lua_State *L) {
  (void)L;
  rngrestart();
  return 0;
}

/* ---- the stream's side of the conversation ---- */

static const char script[] =
  "local S, tls, data, mode, chunk, dir, port, restart = ...\n"
  "local verify, alpn = mode & 1 ~= 0, mode & 2 ~= 0\n"
  "local tls12, server = mode & 4 ~= 0, mode & 8 ~= 0\n"
  "local chunked, sni = mode & 16 ~= 0 and not port, mode & 32 ~= 0\n"
  "local all, byhost = mode & 64 ~= 0, mode & 128 ~= 0\n"
  "local key = mode & 47\n"
  "local function file(name)\n"
  "  local f = io.open(dir .. '/' .. name)\n"
  "  if f then f:close() return dir .. '/' .. name end\n"
  "end\n"
  "local ca, cert, pkey = file('ca.pem'), file('server.pem'),\n"
  "  file('server.key')\n"
  "if server and not (cert and pkey) then return end\n"
  "local function context(usesni)\n"
  "  local o = { alpn = alpn and { 'h2', 'http/1.1' } or nil,\n"
  "    max_version = tls12 and 'TLSv1.2' or nil }\n"
  "  if server then\n"
  "    o.mode, o.certfile, o.keyfile = 'server', cert, pkey\n"
  "    if verify then o.require_cert, o.cafile = true, ca end\n"
  "    if usesni then o.sni = function() return SNICTX[key] end end\n"
  "  else\n"
  "    o.verify, o.cafile = verify, verify and ca or nil\n"
  "  end\n"
  "  return assert(tls.context(o))\n"
  "end\n"
  "CTX, SNICTX = CTX or {}, SNICTX or {}\n"
  "if not CTX[key] then\n"
  "  if server and sni then SNICTX[key] = context(false) end\n"
  "  CTX[key] = context(server and sni)\n"
  "end\n"
  "local a, b\n"
  "if port then\n"
  "  a = assert(S.socket(S.AF_INET, S.SOCK_STREAM))\n"
  "  assert(a:connect('127.0.0.1', port))\n"
  "  a:settimeout(10)\n"
  "else\n"
  "  a, b = assert(S.socketpair())\n"
  "  b:settimeout(0)\n"
  "end\n"
  "local pos, eof = 1, false\n"
  "local function feed()\n"
  "  if not b or eof then return false end\n"
  "  local n = chunked and chunk or #data\n"
  "  if n > 0 then b:send(data, pos, pos + n - 1) end\n"
  "  pos = pos + n\n"
  "  if pos > #data then b:shutdown('w'); eof = true end\n"
  "  return true\n"
  "end\n"
  "if not chunked then feed() end\n"
  "local function check(ok, msg, code)\n"
  "  if not ok and not (type(code) == 'string' and (code:match('^TLS_')\n"
  "      or code == 'EOF' or S.errno[code])) then\n"
  "    error('unexpected result: ' .. tostring(msg) .. ' ' .. tostring(code))\n"
  "  end\n"
  "  return ok, msg, code\n"
  "end\n"
  "local function step(t, name, ...)\n"
  "  for _ = 1, #data + 3 do\n"
  "    local ok, msg, code = t[name](t, ...)\n"
  "    if DEBUG then\n"
  "      io.stderr:write(name, ' ', tostring(ok), ' ', tostring(msg), ' ',\n"
  "        tostring(code), '\\n')\n"
  "    end\n"
  "    if ok or code ~= 'EAGAIN' or not feed() then\n"
  "      return check(ok, msg, code)\n"
  "    end\n"
  "  end\n"
  "  return nil\n"
  "end\n"
  "restart()\n"
  "local t = tls.wrap(a, CTX[key], not server and\n"
  "  { [byhost and 'hostname' or 'servername'] = 'fuzz.example' } or nil)\n"
  "if chunked then t:settimeout(0) end\n"
  "local function look()\n"
  "  t:version(); t:cipher(); t:alpn(); t:servername(); t:peercert()\n"
  "  t:session_reused(); t:pending(); t:events(); t:timeout()\n"
  "  t:gettimeout(); t:getsockname(); t:getpeername(); tostring(t)\n"
  "end\n"
  "local function send(s)\n"
  "  return step(t, all and 'sendall' or 'send', s)\n"
  "end\n"
  "local function recv()\n"
  "  if all then return step(t, 'recvall', 100) end\n"
  "  local ok = step(t, 'recv', 7)\n"   /* leaves the rest pending */
  "  t:pending()\n"
  "  if ok and ok ~= '' then ok = step(t, 'recv', 100) end\n"
  "  return ok\n"
  "end\n"
  "local ok = step(t, 'handshake')\n"
  "look()\n"
  "if ok then\n"
  "  if server then\n"
  "    ok = recv()\n"
  "    if ok then ok = send('HTTP/1.0 200 OK\\r\\n\\r\\nfuzz\\n') end\n"
  "  else\n"
  "    ok = send('GET / HTTP/1.0\\r\\n\\r\\n')\n"
  "    if ok then ok = recv() end\n"
  "    if ok then t:session() end\n"
  "  end\n"
  "  look()\n"
  "  if ok then step(t, 'shutdown') end\n"
  "end\n"
  "t:close()\n"
  "if b then b:close() end\n";

static lua_State *L0;

static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_bsdsocket_core);
  lua_setfield(L, -2, "bsdsocket.core");
  lua_pop(L, 1);
  luaL_requiref(L, "bsdsocket.core", luaopen_bsdsocket_core, 0);
  lua_setglobal(L, "S");
  luaL_requiref(L, "bsdsocket.tls", luaopen_bsdsocket_tls, 0);
  lua_setglobal(L, "TLS");
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *dir = getenv("FUZZ_TLS_DIR");
  const char *port = getenv("FUZZ_TLS_CONNECT");
  int top;
  if (!L0) {
    rngsetup();
    L0 = newstate();
    lua_pushboolean(L0, getenv("FUZZ_TLS_DEBUG") != NULL);
    lua_setglobal(L0, "DEBUG");
  }
  if (size < 2) return 0;
  /* more than a socket pair holds without a reader */
  if (size > 100000) return 0;
  top = lua_gettop(L0);
  if (luaL_loadbuffer(L0, script, sizeof script - 1, "=fuzz_tls") != LUA_OK)
    abort();
  lua_getglobal(L0, "S");
  lua_getglobal(L0, "TLS");
  lua_pushlstring(L0, (const char *)data + 2, size - 2);
  lua_pushinteger(L0, data[0]);
  lua_pushinteger(L0, (lua_Integer)data[1] + 1);
  lua_pushstring(L0, dir ? dir : "build/fuzz/tls");
  if (port) lua_pushinteger(L0, atoi(port));
  else lua_pushnil(L0);
  lua_pushcfunction(L0, l_restart);
  if (lua_pcall(L0, 8, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_tls: %s\n", lua_tostring(L0, -1));
    abort();
  }
  lua_settop(L0, top);
  lua_gc(L0, LUA_GCSTEP, 0);
  return 0;
}
