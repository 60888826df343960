/* Tracebacks for exception events and callback warnings. luaL_traceback
 * builds its text in a luaL_Buffer, which keeps a text over about 1 KiB in a
 * box whose finalizer frees it; Lua 5.4 skips a finalizer that falls due at
 * its C-stack limit (deep inside nested blocks, where errors and their
 * tracebacks happen), and the box's text then leaks. Here the text is made of
 * plain strings joined with lua_concat, which owns no memory outside the
 * collector. The layout follows luaL_traceback's. */
#include "lbasalt.h"

#include <string.h>

/* Levels shown before and after the ones skipped in a deep stack. */
#define FIRST_LEVELS 10
#define LAST_LEVELS  11
/* Pieces pushed before they are joined, to keep the stack small. */
#define JOIN_EVERY 32

/* The number of levels of L1, by bisection: lua_getstack walks the stack
 * from the top, so probing each level of a deep stack would cost its square. */
static int count_levels(lua_State *L1) {
    lua_Debug ar;
    if (!lua_getstack(L1, 0, &ar)) return 0;
    int have = 0, missing = 1; /* level `have` exists, level `missing` does not */
    while (lua_getstack(L1, missing, &ar)) {
        have = missing;
        missing *= 2;
    }
    while (missing - have > 1) {
        int mid = have + (missing - have) / 2;
        if (lua_getstack(L1, mid, &ar))
            have = mid;
        else
            missing = mid;
    }
    return missing;
}

/* Pushes how the function of level ar is named: 1 piece. */
static void push_where(lua_State *L, const lua_Debug *ar) {
    if (*ar->namewhat != '\0')
        lua_pushfstring(L, " %s '%s'", strcmp(ar->namewhat, "global") ? ar->namewhat : "function",
                        ar->name);
    else if (*ar->what == 'm')
        lua_pushliteral(L, " main chunk");
    else if (*ar->what != 'C')
        lua_pushfstring(L, " function <%s:%d>", ar->short_src, ar->linedefined);
    else
        lua_pushliteral(L, " ?");
}

void lb_traceback(lua_State *L, lua_State *L1, const char *msg, int level) {
    /* Never raises: a block records its error with this before it ends, and at
     * the Lua stack's limit a raise here would leave the block open. Callers
     * are C functions, so one more slot is always there. */
    if (!lua_checkstack(L, JOIN_EVERY + 8)) {
        lua_pushliteral(L, "stack traceback: (no stack space left for it)");
        return;
    }
    int pieces = 0;
    if (msg) {
        lua_pushstring(L, msg);
        lua_pushliteral(L, "\n");
        pieces += 2;
    }
    lua_pushliteral(L, "stack traceback:");
    pieces++;
    int last = count_levels(L1);
    lua_Debug ar;
    for (int lv = level; lua_getstack(L1, lv, &ar); lv++) {
        if (lv - level == FIRST_LEVELS && last - lv > LAST_LEVELS + 1) {
            int skip = last - lv - LAST_LEVELS;
            lua_pushfstring(L, "\n\t...\t(skipping %d levels)", skip);
            pieces++;
            lv += skip - 1;
            continue;
        }
        lua_getinfo(L1, "Slnt", &ar);
        if (ar.currentline > 0)
            lua_pushfstring(L, "\n\t%s:%d: in", ar.short_src, ar.currentline);
        else
            lua_pushfstring(L, "\n\t%s: in", ar.short_src);
        push_where(L, &ar);
        pieces += 2;
        if (ar.istailcall) {
            lua_pushliteral(L, "\n\t(...tail calls...)");
            pieces++;
        }
        if (pieces >= JOIN_EVERY) {
            lua_concat(L, pieces);
            pieces = 1;
        }
    }
    lua_concat(L, pieces);
}
