/* Internal header of the Lua binding: a thin layer turning Lua values into
 * calls of the C API. Module state lives in the registry (several lua_States
 * may load the module at once); nothing here is process-global. */
#ifndef LBASALT_H
#define LBASALT_H

#include "basalt/attrs.h"
#include "basalt/common.h"
#include "basalt/context.h"
#include "basalt/exporter.h"
#include "basalt/runtime.h"
#include "basalt/span.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <lua.h>

#define LB_SPAN_MT     "basalt.Span"
#define LB_CONTEXT_MT  "basalt.Context"
#define LB_EXPORTER_MT "basalt.MemoryExporter"
#define LB_GUARD_MT    "basalt.Guard"
#define LB_FLOW_MT     "basalt.Flow"

/* ---- lcells.c: what the binding's userdata own ---- */
/* Lua 5.4 can free a userdata without running its finalizer: a finalizer due
 * while LUAI_MAXCCALLS - 1 C calls are nested fails with "C stack overflow"
 * and is never retried. So what a userdata owns (span and context references)
 * lives in a cell of its state's pool, outside the userdata: the finalizer
 * releases it and frees the cell, and the module's sentinel, finalized last
 * at lua_close, releases the cells whose finalizer was skipped. */
typedef struct lb_pool lb_pool;
/* Releases what a cell's payload owns (run by its finalizer, or at close). */
typedef void (*lb_cell_release)(void *payload);
/* The state's pool (made on first use; the registry holds it). */
lb_pool *lb_pool_lookup(lua_State *L);
/* At lua_close, after every other finalizer of the module: releases the cells
 * still in use and frees the pool's memory; returns how many were in use.
 * Cells made afterwards (by finalizers that run later) are never freed, like
 * the userdata made then, whose finalizers Lua does not run. */
size_t lb_pool_close(lb_pool *pool);
/* Adds a slab of free cells (lb_cell_new's slow path; may run the collector). */
void lb_pool_grow(lua_State *L, lb_pool *pool);

/* Per-coroutine context slot, in a cell; its userdata (lb_flow_ud) lives in a
 * weak-keyed registry table, keyed by the coroutine. */
typedef struct lb_flow {
    basalt_ctx *cur; /* owned reference, NULL = empty context */
    lb_pool *pool;   /* the state's, for cells made while this coroutine runs */
} lb_flow;

/* Marks in the memory of this binding's handles (spans, contexts, tracers):
 * with the userdata's size, a mark identifies a handle without fetching its
 * metatable (span methods are the hottest calls of the binding). A mark is a
 * per-process random secret mixed with the type, so no other library's
 * userdata of the same size passes for a handle: scripts cannot write
 * userdata memory, and a byte-buffer userdata holds what its user wrote but
 * not a secret no script can read. Set once by luaopen (pthread_once), then
 * read-only. */
extern uint64_t lb_secret;
enum { LB_MARK_SPAN = 1, LB_MARK_CONTEXT = 2, LB_MARK_TRACER = 3 };
static inline uint64_t lb_mark(unsigned type) {
    return lb_secret ^ (0x9e3779b97f4a7c15ull * type);
}
/* Makes the secret (idempotent, thread-safe). */
void lb_init_secret(void);

/* A span handle. A block handle also remembers what to restore on exit. */

typedef struct lb_span {
    basalt_span *span; /* owned reference, NULL for the no-op handle */
    basalt_ctx *prev;  /* block handles: the context to restore (owned) */
    lb_flow *flow;     /* block handles: the coroutine's slot (valid while it runs) */
    int active;        /* block still running */
} lb_span;

/* The userdata of span handles and context values: the cell, and the mark
 * that tells them apart from any other userdata (see lb_mark). */
typedef struct lb_handle {
    void *cell;     /* lb_span * or the context's cell; never NULL */
    uint64_t magic; /* lb_mark(LB_MARK_SPAN or LB_MARK_CONTEXT) */
} lb_handle;

/* A guard restores the previous context when a with_context block finishes,
 * fails, or is abandoned (a coroutine collected while suspended inside it). */
typedef struct lb_guard {
    basalt_ctx *prev;
    lb_flow *flow;
    int active;
} lb_guard;

/* A cell: its pool, what releases it, and the payload a userdata points at.
 * The allocation and free are inline: a block makes and frees a handle. */
typedef struct lb_cell lb_cell;
struct lb_cell {
    lb_pool *pool;
    lb_cell_release release; /* NULL while the cell is free */
    union {
        lb_span span;
        lb_flow flow;
        lb_guard guard;
        void *ptr;
        lb_cell *next_free;
    } u;
};
/* Only lcells.c reads or writes more than the free list. */
struct lb_pool {
    lb_cell *free;
    struct lb_slab *slabs;
    size_t in_use;
};

/* A zeroed payload (room for an lb_span) whose release is `release`. May run
 * the collector. */
static inline void *lb_cell_new(lua_State *L, lb_pool *p, lb_cell_release release) {
    if (p->free == NULL) lb_pool_grow(L, p);
    lb_cell *c = p->free;
    p->free = c->u.next_free;
    p->in_use++;
    memset(&c->u, 0, sizeof c->u);
    c->release = release;
    return &c->u;
}

/* Gives a payload's cell back to its pool, without releasing what it owns. */
static inline void lb_cell_free(void *payload) {
    lb_cell *c = (lb_cell *)((char *)payload - offsetof(lb_cell, u));
    if (c->release == NULL) return; /* released already */
    c->release = NULL;
    c->u.next_free = c->pool->free;
    c->pool->free = c;
    c->pool->in_use--;
}

/* ---- argument errors ---- */
/* Raises "bad argument #arg to 'fname' (msg)" with the public function name
 * (luaL_argerror would name it after the loaded module, 'basalt.core.x'). */
int lb_argerror(lua_State *L, int arg, const char *fname, const char *msg);
/* Raises unless the value at arg has type t. */
void lb_checktype(lua_State *L, int arg, int t, const char *fname);

/* ---- lcontext.c ---- */
/* The running coroutine's flow (created on first use). */
lb_flow *lb_flow_get(lua_State *L);
/* Pushes a basalt.Context userdata taking ownership of ctx (may be NULL). */
void lb_push_context(lua_State *L, basalt_ctx *ctx);
/* The context held by a basalt.Context argument (borrowed), or raises naming
 * argument `arg` of fname. */
basalt_ctx *lb_check_context(lua_State *L, int idx, int arg, const char *fname);
/* Runs the function at stack index fn_idx with the nargs values above it inside
 * ctx (takes ownership), restoring the previous context afterwards, on errors
 * and across yields. Returns like a lua_CFunction (results on top). */
int lb_run_in_context(lua_State *L, basalt_ctx *ctx, int fn_idx, int nargs);
void lb_open_context(lua_State *L);

/* ---- lconvert.c ---- */
/* Appends the JSON text of the value at idx (Decision 8 rules). */
void lb_json_append(lua_State *L, int idx, basalt_buf *out);
/* Converts the value at idx into an attribute value: scalars keep their type,
 * same-typed scalar arrays become arrays (when arrays_ok), other tables JSON.
 * Storage for strings/arrays goes to *scratch (free with basalt_buf_free) or
 * borrows Lua strings (valid while the value stays on the stack). */
basalt_value lb_to_value(lua_State *L, int idx, basalt_buf *scratch, int arrays_ok);
/* Like lb_to_value without arrays: scalars typed, everything else JSON. */
basalt_value lb_to_payload(lua_State *L, int idx, basalt_buf *scratch);
/* Identity from a table/string/number at idx into out (strings pushed on the Lua
 * stack to stay alive: the caller keeps the stack). Raises the 9.2 errors.
 * Returns 0 when there is no identity. */
int lb_parse_identity(lua_State *L, int idx, basalt_identity *out);
/* Evaluator specification at idx flattened into a new Lua table of slugs pushed
 * on the stack; raises the 10.1 errors. Returns the number of slugs. */
int lb_parse_evaluators(lua_State *L, int idx);
/* Experiment at idx (string or table); 0 when none. Strings stay on the stack. */
int lb_parse_experiment(lua_State *L, int idx, basalt_experiment *out);
/* Extracts the prompt attributes of a prompt object/table at idx. */
int lb_parse_prompt(lua_State *L, int idx, basalt_prompt_attrs *out, basalt_buf *vars_json);

/* ---- lspan.c ---- */
/* Pushes a new handle for span (takes ownership; NULL = no-op handle). */
lb_span *lb_push_span(lua_State *L, basalt_span *span);
/* The same with the state's pool at hand (a block has its flow's). */
lb_span *lb_push_span_in(lua_State *L, lb_pool *pool, basalt_span *span);
/* The handle state of the span handle at idx (made by lb_push_span). */
static inline lb_span *lb_span_at(lua_State *L, int idx) {
    return ((lb_handle *)lua_touserdata(L, idx))->cell;
}
/* A state's cache of interned attribute keys (lspan.c). */
typedef struct lb_key_cache lb_key_cache;
/* Pushes the state's key cache (made on first use). */
void lb_push_key_cache(lua_State *L);
/* The interned key for the Lua string k (length len), or NULL: then copy it.
 * *exact: the key is exported as given (not cut at a NUL, not repaired). */
const basalt_key *lb_cached_key(lb_key_cache *c, const char *k, size_t len, bool *exact);
void lb_open_span(lua_State *L);
/* Raises, before any span opens (Decision 6), when the metadata, variables or
 * prompt option (stack indices, 0 when absent) has the wrong type. */
void lb_check_payload_opts(lua_State *L, int metadata, int variables, int prompt,
                           const char *fname);
/* Reads the prompt option at stack index prompt (0: none) into out, before the
 * span opens (reading may run __index and raise); its strings stay on the
 * stack. Returns 0 when there is no usable prompt. */
int lb_read_prompt_opt(lua_State *L, int prompt, basalt_prompt_attrs *out);
/* Applies observe/start_observe payload options to the span: stack indices of
 * the metadata, input and variables values (0 when absent), and the prompt
 * read by lb_read_prompt_opt (NULL when none). Raises nothing. */
void lb_apply_payload_opts(lua_State *L, int metadata, int input, int variables,
                           const basalt_prompt_attrs *prompt, basalt_span *span);
/* Records a Lua error value as an exception on span. */
void lb_record_error(lua_State *L, int err_idx, basalt_span *span, const char *traceback);

/* ---- lobserve.c ---- */
void lb_open_observe(lua_State *L);

/* ---- lpolicy.c ---- */
/* Calls the function at fn_idx with nargs arguments above it, protected, in a
 * fresh coroutine with an instruction budget and no yields. On success leaves
 * nresults values on the stack and returns 1; on failure logs one warning
 * (once per distinct message, with traceback) naming `what`, leaves nothing and
 * returns 0. The function and arguments are popped either way. */
int lb_safe_call(lua_State *L, int nargs, int nresults, const char *what);
/* True while this thread runs a user callback through lb_safe_call. */
bool lb_in_callback(void);
/* Logs (once per distinct message) that the user callback at fn_idx returned
 * an unusable value: names `what`, where the function is defined, the problem,
 * and the traceback of the call into the binding that ran it. */
void lb_callback_bad_result(lua_State *L, int fn_idx, const char *what, const char *problem);
/* What the policy trampoline needs: the running coroutine and the opts index. */
typedef struct lb_policy_call {
    lua_State *L;
    int opts;
} lb_policy_call;
/* The sampling policy trampoline when this state has a policy (ud must then be
 * set to an lb_policy_call), else NULL. */
basalt_policy_fn lb_policy_for(lua_State *L, void **ud);
/* init{}: registers sampling_policy / policy_instruction_limit for this state. */
void lb_policy_configure(lua_State *L, int opts);

/* ---- lexporter.c ---- */
/* The exporter behind a basalt.MemoryExporter value at idx, or NULL. */
basalt_exporter *lb_test_exporter(lua_State *L, int idx);
/* Pushes the plain-table form of a finished record. */
void lb_push_record(lua_State *L, const basalt_span_record *r);
/* Builds the exporters of init{ exporters = } from the value at idx into out
 * (borrowed pointers); pushes one table that owns them: keep it on the stack
 * until basalt_init has taken its own references. Raises on a bad entry. */
size_t lb_parse_exporters(lua_State *L, int idx, const char *api_key, basalt_exporter **out,
                          size_t cap);
/* Registers memory_exporter() in the module table on top of the stack. */
void lb_open_exporter(lua_State *L);

/* ---- ltracer.c ---- */
/* Registers tracer() and context_with() in the module table on top. */
void lb_open_tracer(lua_State *L);

/* ---- lbasalt.c ---- */
/* Delivers queued log messages to this state's Lua logger (cheap when none). */
void lb_log_drain(lua_State *L);

/* ---- lcontext.c (coroutine patching) ---- */
/* Wraps (on) or restores (off) coroutine.create / coroutine.wrap. */
void lb_patch_coroutines(lua_State *L, int on);

/* ---- lprompts.c (weak until the prompts client lands) ---- */
void lb_open_prompts(lua_State *L);

#endif
