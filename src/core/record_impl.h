/* Internal: how a span record is stored while its span is live and after.
 * One allocation holds the public record, a small inline attribute array and
 * the first arena chunk; strings are bump-allocated into the arena. */
#ifndef BASALT_RECORD_IMPL_H
#define BASALT_RECORD_IMPL_H

#include "basalt/record.h"

#include <stdatomic.h>

/* One block (recycled by record_pool.c) holds a typical span whole: its
 * attributes, propagated values included, and their strings. */
#define RECORD_INLINE_ATTRS 16
#define RECORD_INLINE_ARENA 768
#define RECORD_MAX_ATTRS    128 /* OpenTelemetry default span limits */
#define RECORD_MAX_EVENTS   128

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
} arena_chunk;

typedef struct record_impl {
    basalt_span_record pub; /* first: a basalt_span_record* is a record_impl* */
    _Atomic int refcount;
    uint32_t attr_cap, event_cap;
    basalt_kv *attrs;      /* inline_attrs or heap */
    uint32_t *attr_hashes; /* parallel to attrs */
    basalt_event *events;  /* heap, NULL when none */
    arena_chunk *overflow; /* extra arena chunks */
    size_t arena_used;
    uint64_t known_set[2]; /* bit i: known key i (attr_keys.c) was set explicitly */
    /* Objects whose strings the record borrows, released with the record. */
    void (*keep_fn[2])(void *);
    void *keep_arg[2];
    basalt_kv inline_attrs[RECORD_INLINE_ATTRS];
    uint32_t inline_hashes[RECORD_INLINE_ATTRS];
    char arena[RECORD_INLINE_ARENA];
} record_impl;

/* Recycled storage (record_pool.c): records, and the engine's live spans.
 * Blocks of one kind always have the same size. */
enum { BLOCK_RECORD = 0, BLOCK_SPAN = 1, BLOCK_KINDS = 2 };
void *block_alloc(int kind, size_t size);
void block_free(int kind, void *p);
void *record_block_alloc(void);
void record_block_free(void *p);

/* A new empty record with one reference; NULL when out of memory. */
record_impl *record_new(void);
/* Out of line: record_alloc when the inline arena is full. */
void *record_alloc_chunk(record_impl *r, size_t n);
/* Bump-allocates n bytes (8-aligned) that live as long as the record. */
static inline void *record_alloc(record_impl *r, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (RECORD_INLINE_ARENA - r->arena_used >= n) {
        void *p = r->arena + r->arena_used;
        r->arena_used += n;
        return p;
    }
    return record_alloc_chunk(r, n);
}
/* Copies a string (repairing invalid UTF-8) into the arena, NUL-terminated. */
const char *record_strdup(record_impl *r, const char *s, size_t len);
/* Deep-copies a value (strings, arrays, kvlists) into the arena. */
bool record_copy_value(record_impl *r, basalt_value in, basalt_value *out);
/* Hash of an attribute key (for duplicate detection). */
uint32_t record_key_hash(const char *key);
/* The same for a key of known length. */
uint32_t record_key_hash_n(const char *key, size_t n);
/* Sets an attribute, replacing an earlier value of the same key. static_key:
 * the key outlives the record (a constant) and is not copied. */
void record_set_attr(record_impl *r, const char *key, bool static_key, basalt_value v);
/* The same with the key length known; unique: the caller guarantees the key is
 * not set yet (keys of one Lua table), which skips the duplicate scan. */
void record_set_attr_n(record_impl *r, const char *key, size_t key_len, bool static_key,
                       bool unique, basalt_value v);
/* The same with an interned key (attr_keys.c): no hashing, lookup or copy. */
struct basalt_key;
void record_set_attr_key(record_impl *r, const struct basalt_key *k, bool unique, basalt_value v);
/* Index of an attribute, or -1. */
int record_find_attr(const record_impl *r, const char *key, uint32_t hash);
/* Keeps obj alive (fn(obj) on free) so attributes may borrow its strings. */
void record_keep(record_impl *r, void (*fn)(void *), void *obj);
/* Appends an attribute whose key and value (strings included) outlive the
 * record (constants or kept objects): no copy, no duplicate check. */
void record_push_borrowed(record_impl *r, const char *key, uint32_t hash, basalt_value v);
/* The same for a key interned in attr_keys.c (no lookup). */
void record_push_interned(record_impl *r, const char *key, uint32_t hash, basalt_value v);
/* Appends n of them at once when the array has room (false: nothing done). */
bool record_push_interned_n(record_impl *r, const basalt_kv *kvs, const uint32_t *hashes,
                            uint32_t n);
/* Appends an event (attributes copied). */
void record_add_event(record_impl *r, const char *name, uint64_t time_ns, const basalt_kv *attrs,
                      size_t n);

#endif
