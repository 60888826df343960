/* placeholder: the Lua binding lands with the core engine */
#include <lua.h>
int luaopen_basalt_core(lua_State *L);
int luaopen_basalt_core(lua_State *L) {
    lua_newtable(L);
    return 1;
}
