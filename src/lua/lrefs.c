/* The table of references the binding's userdata own (see lbasalt.h): one
 * tagged pointer a reference, outside Lua memory, so that what a userdata
 * held is still known when Lua frees it without running its finalizer. */
#include "lbasalt.h"

#include <stdlib.h>
#include <string.h>

static const char REFS_KEY = 'r';

lb_refs *lb_refs_lookup(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &REFS_KEY);
    lb_refs *r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (r) return r;
    r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &REFS_KEY);
    return r;
}

uint32_t lb_refs_grow(lua_State *L, lb_refs *r) {
    uint32_t cap = r->cap ? r->cap * 2 : 256;
    lb_ref_slot *s = cap > r->cap ? realloc(r->cap ? r->slot : NULL, cap * sizeof *s) : NULL;
    if (s == NULL) {
        luaL_error(L, "basalt: out of memory");
        return 0;
    }
    /* Slot 0 stays unused: index 0 means "none". */
    for (uint32_t i = cap; i-- > (r->cap ? r->cap : 1);) {
        s[i].v = (uintptr_t)r->free << LB_REF_TAG_BITS;
        s[i].gen = 0;
        s[i].link = 0;
        r->free = i;
    }
    r->slot = s;
    r->cap = cap;
    return r->free;
}

static void release(uintptr_t v) {
    void *p = (void *)(v & ~(uintptr_t)LB_REF_TAG_MASK);
    switch (v & LB_REF_TAG_MASK) {
    case LB_REF_BLOCK:
        basalt_span_end(p, 0); /* a block abandoned in a coroutine: end it once */
        basalt_span_release(p);
        break;
    case LB_REF_SPAN:
        basalt_span_release(p);
        break;
    case LB_REF_CTX:
        basalt_ctx_release(p);
        break;
    case LB_REF_EXPORTER:
        basalt_exporter_release(p);
        break;
    default:
        break;
    }
}

void lb_ref_release(lb_refs *r, uint32_t i) {
    release(r->slot[i].v);
    lb_ref_free(r, i);
}

size_t lb_refs_close(lb_refs *r) {
    size_t n = 0;
    for (uint32_t i = 1; i < r->cap && r->in_use; i++) {
        uintptr_t v = r->slot[i].v;
        if ((v & LB_REF_TAG_MASK) == 0) continue; /* free */
        lb_ref_release(r, i);
        n += (v & ~(uintptr_t)LB_REF_TAG_MASK) != 0;
    }
    if (r->cap) free(r->slot);
    /* Finalizers of values made before the module was loaded run later and
     * may still set a flow's context: its slot writes land in the spare. */
    r->slot = &r->spare;
    r->cap = r->free = r->in_use = 0;
    return n;
}
