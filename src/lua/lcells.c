/* Cells: what the binding's userdata own (span, context and exporter
 * references), kept in memory outside those userdata so that nothing is lost
 * when Lua frees one without running its finalizer (see lbasalt.h). Cells
 * are made and freed inline (lbasalt.h); this file holds their slabs. */
#include "lbasalt.h"

#include <stdlib.h>
#include <string.h>

#define CELLS_PER_SLAB 128

/* Slabs are malloc'd, not Lua userdata: memory the collector counts as live
 * would grow with the handles awaiting collection and stretch its cycles,
 * which would leave more handles waiting, and so on. The pool is the state's
 * (main thread and coroutines): a state runs in one OS thread at a time and
 * its finalizers run in that thread, so no lock. */
typedef struct lb_slab {
    struct lb_slab *next;
    lb_cell cell[CELLS_PER_SLAB];
} lb_slab;

static const char POOL_KEY = 'p';

lb_pool *lb_pool_lookup(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
    lb_pool *p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (p) return p;
    p = lua_newuserdatauv(L, sizeof *p, 0);
    memset(p, 0, sizeof *p);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
    return p;
}

void lb_pool_grow(lua_State *L, lb_pool *p) {
    lb_slab *s = calloc(1, sizeof *s);
    if (s == NULL) {
        luaL_error(L, "basalt: out of memory");
        return;
    }
    s->next = p->slabs;
    p->slabs = s;
    for (size_t i = CELLS_PER_SLAB; i-- > 0;) {
        s->cell[i].pool = p;
        s->cell[i].u.next_free = p->free;
        p->free = &s->cell[i];
    }
}

size_t lb_pool_close(lb_pool *p) {
    size_t n = 0;
    for (lb_slab *s = p->slabs; s && p->in_use; s = s->next)
        for (size_t i = 0; i < CELLS_PER_SLAB; i++) {
            lb_cell *c = &s->cell[i];
            if (c->release == NULL) continue;
            c->release(&c->u);
            lb_cell_free(&c->u);
            n++;
        }
    /* Every value that points at a cell has been finalized by now (it points at
     * its type's finalized stand-in) or was freed by Lua, so the slabs can go. */
    while (p->slabs) {
        lb_slab *s = p->slabs;
        p->slabs = s->next;
        free(s);
    }
    p->free = NULL;
    p->in_use = 0;
    return n;
}
