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
#include <stdint.h>
#include <lua.h>

#define LB_SPAN_MT     "basalt.Span"
#define LB_CONTEXT_MT  "basalt.Context"
#define LB_EXPORTER_MT "basalt.MemoryExporter"
#define LB_GUARD_MT    "basalt.Guard"
#define LB_FLOW_MT     "basalt.Flow"

/* ---- lrefs.c: the references the binding's userdata own ---- */
/* Lua 5.4 can free a userdata without running its finalizer: a finalizer due
 * while LUAI_MAXCCALLS - 1 C calls are nested fails with "C stack overflow"
 * and is never retried. So each span, context or exporter reference a
 * userdata owns is also noted in its state's table, one entry a reference,
 * outside Lua memory: the finalizer (or, for a block's span and the context it
 * restores, the block's end) frees its entries, and the module's sentinel,
 * finalized last at lua_close, releases the ones left by userdata whose
 * finalizer was skipped. One state runs in one OS thread at a time and its
 * finalizers run in that thread: the table needs no lock. */
enum {
    LB_REF_SPAN = 1,  /* a span reference */
    LB_REF_BLOCK = 2, /* a block's span: ended (if it is not yet) when released */
    LB_REF_CTX = 3,   /* a context reference (may be NULL) */
    LB_REF_EXPORTER = 4,
    LB_REF_TAG_BITS = 3,
    LB_REF_TAG_MASK = 7
};
/* One entry: pointer | tag, or (free) the next free index << TAG_BITS. gen
 * counts the entry's releases, so a handle that remembers (index, gen) can
 * tell that what it borrowed from the entry is gone. link chains the open
 * blocks of a coroutine (see lb_flow). */
typedef struct lb_ref_slot {
    uintptr_t v;
    uint32_t gen;
    uint32_t link;
} lb_ref_slot;
typedef struct lb_refs {
    lb_ref_slot *slot; /* slot 0 is never used nor read (writes to it are harmless) */
    uint32_t cap;      /* 0: slot is not malloc'd (NULL, or &spare once closed) */
    uint32_t free;     /* first free slot; 0 (never used) when none */
    uint32_t in_use;
    lb_ref_slot spare; /* slot 0 after lb_refs_close */
} lb_refs;
/* The state's table (made on first use; the registry holds it). */
lb_refs *lb_refs_lookup(lua_State *L);
/* Makes room; returns the first free slot, or raises when out of memory. */
uint32_t lb_refs_grow(lua_State *L, lb_refs *r);
/* At lua_close, after every other finalizer of the module: releases the
 * references still noted and frees the table; returns how many there were.
 * Entries made afterwards (by finalizers that run later) are never released,
 * like the userdata made then, whose finalizers Lua does not run. */
size_t lb_refs_close(lb_refs *r);
/* Releases the reference in slot i as lb_refs_close would (a block's span is
 * ended first) and frees the slot. */
void lb_ref_release(lb_refs *r, uint32_t i);

/* Notes p (malloc'd: its low bits are free for the tag); returns its slot. */
static inline uint32_t lb_ref_new(lua_State *L, lb_refs *r, unsigned tag, const void *p) {
    uint32_t i = r->free ? r->free : lb_refs_grow(L, r);
    r->free = (uint32_t)(r->slot[i].v >> LB_REF_TAG_BITS);
    r->slot[i].v = (uintptr_t)p | tag;
    r->in_use++;
    return i;
}
/* The pointer noted in slot i (not 0). */
static inline void *lb_ref_get(const lb_refs *r, uint32_t i) {
    return (void *)(r->slot[i].v & ~(uintptr_t)LB_REF_TAG_MASK);
}
/* The reference in slot i is now p. */
static inline void lb_ref_set(lb_refs *r, uint32_t i, unsigned tag, const void *p) {
    r->slot[i].v = (uintptr_t)p | tag;
}
/* Slot i no longer holds a reference (its owner released it). */
static inline void lb_ref_free(lb_refs *r, uint32_t i) {
    r->slot[i].v = (uintptr_t)r->free << LB_REF_TAG_BITS;
    r->slot[i].gen++;
    r->free = i;
    r->in_use--;
}
/* True while slot i still holds the reference it held at generation gen. */
static inline bool lb_ref_live(const lb_refs *r, uint32_t i, uint32_t gen) {
    return i < r->cap && r->slot[i].gen == gen;
}

/* Per-coroutine context slot (full userdata in a weak-keyed registry table).
 * It also owns the blocks left open in its coroutine: their handles have no
 * finalizer, so when a coroutine is collected mid-block, its flow's finalizer
 * ends them. open is the refs slot of the innermost open block's span; that
 * slot's link is the slot of the context to restore, whose link is the next
 * enclosing open block's span slot (0 ends the chain). */
typedef struct lb_flow {
    basalt_ctx *cur; /* owned reference, NULL = empty context; set with lb_flow_set */
    lb_refs *refs;   /* the state's */
    uint32_t cur_ref;
    uint32_t open;
} lb_flow;

/* Makes c (owned) the flow's current context; the caller released the old one
 * or took it over. */
static inline void lb_flow_set(lb_flow *f, basalt_ctx *c) {
    f->cur = c;
    lb_ref_set(f->refs, f->cur_ref, LB_REF_CTX, c);
}

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

/* A span handle. A block's handle borrows the block's span: the refs slot
 * span_ref owns it, and the block frees that slot when it ends (so the handle
 * needs no finalizer, whose cost dominated a block's). Any other handle owns
 * its span through span_ref and releases it in its finalizer. gen tells a
 * block's handle kept past its coroutine's collection that the span is gone.
 * The ids and kind are copied in, so they outlive the span. */
typedef struct lb_span {
    basalt_span *span; /* NULL for the no-op handle and once a block ended */
    lb_flow *flow;     /* block handles: the coroutine's slot (valid while it runs) */
    lb_refs *refs;     /* the state's */
    uint32_t span_ref; /* refs slot of span (0: none) */
    uint32_t prev_ref; /* block handles: refs slot of the context to restore (owned),
                          not 0 exactly while the block runs */
    uint32_t gen;      /* span_ref's generation when the handle was made */
    uint8_t block;     /* a block's handle (borrows span) */
    uint8_t kind;      /* basalt_kind */
    uint8_t trace_id[16], span_id[8];
    uint64_t magic; /* lb_mark(LB_MARK_SPAN) */
} lb_span;

/* The handle's span, NULL when it has none or (a block's) it is gone. */
static inline basalt_span *lb_span_of(lb_span *h) {
    if (h->span && h->block && !lb_ref_live(h->refs, h->span_ref, h->gen)) h->span = NULL;
    return h->span;
}

/* ---- ltraceback.c ---- */
/* Pushes a traceback of L1 from level on, after msg (may be NULL), like
 * luaL_traceback but holding no memory a skipped finalizer could leak, and
 * never raising (without stack room it pushes a short note instead). */
void lb_traceback(lua_State *L, lua_State *L1, const char *msg, int level);

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
/* The same with the state's refs table at hand. */
void lb_push_context_in(lua_State *L, lb_refs *refs, basalt_ctx *ctx);
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
/* The same with the state's refs table at hand. */
lb_span *lb_push_span_in(lua_State *L, lb_refs *refs, basalt_span *span);
/* Pushes the handle of a block's span in flow: span (owned) goes to the new
 * refs slot h->span_ref, the flow's current context to h->prev_ref (to be
 * restored). The handle has no finalizer. Raises only when out of memory,
 * never once the context is noted (the span's slot then ends it at lua_close). */
lb_span *lb_push_block_span(lua_State *L, lb_flow *flow, basalt_span *span);
/* A state's cache of interned attribute keys (lspan.c). */
typedef struct lb_key_cache lb_key_cache;
/* The state's refs table, kept by its key cache. */
lb_refs *lb_key_cache_refs(const lb_key_cache *c);
/* Pushes the state's key cache (made on first use). */
void lb_push_key_cache(lua_State *L);
/* The interned key for the Lua string k (length len) at stack index key_idx,
 * through the cache c at cache_idx; NULL: then copy it.
 * *exact: the key is exported as given (not cut at a NUL, not repaired). */
const basalt_key *lb_cached_key(lua_State *L, int cache_idx, lb_key_cache *c, int key_idx,
                                const char *k, size_t len, bool *exact);
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
