/*
** For the static analyzers only (make static force-includes it): the Lua
** API functions that raise an error never return (they longjmp), but
** lauxlib.h does not say so, so clang-tidy and cppcheck follow paths past
** luaL_error/luaL_argerror that cannot happen (e.g. a NULL string used after
** `if (!s) luaL_error(...)`). Redeclaring them noreturn models them exactly;
** it changes nothing in the build.
*/
#include "lua.h"
#include "lauxlib.h"

__attribute__((noreturn)) int lua_error(lua_State *L);
__attribute__((noreturn)) int luaL_error(lua_State *L, const char *fmt, ...);
__attribute__((noreturn)) int luaL_argerror(lua_State *L, int arg, const char *extramsg);
__attribute__((noreturn)) int luaL_typeerror(lua_State *L, int arg, const char *tname);
