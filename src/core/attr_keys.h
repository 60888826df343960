/* Internal: interned attribute keys (see attr_keys.c). */
#ifndef BASALT_ATTR_KEYS_H
#define BASALT_ATTR_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "basalt/span.h"

#define ATTR_KEY_SLOT 48

typedef struct attr_key_slot {
    char s[ATTR_KEY_SLOT];
} attr_key_slot;

/* An interned key (basalt_key_intern in basalt/span.h). */
struct basalt_key {
    const char *s;      /* the key as exported: the known table's copy, or just after this header */
    const char *frag;   /* its `{"key":..,"value":` JSON */
    uint32_t len, hash; /* hash = record_key_hash_n(s, len) */
    int known;          /* index in the known table, or -1 */
    uint16_t frag_len;
};

/* Bounds of the interned strings (an interned key points inside). */
extern const char *const attr_keys_begin, *const attr_keys_end;

/* Index of an interned key in the table, or -1 for any other pointer. */
static inline int attr_key_index(const char *k) {
    if (k < attr_keys_begin || k >= attr_keys_end) return -1;
    return (int)((k - attr_keys_begin) / ATTR_KEY_SLOT);
}

/* Builds the table (idempotent, thread-safe); call before the lookups. */
void attr_keys_init(void);
/* The interned copy of key (hash = record_key_hash(key)), or NULL when unknown. */
const char *attr_key_intern(const char *key, uint32_t hash);
/* For an interned key: its `{"key":"...","value":` JSON fragment; else NULL. */
const char *attr_key_fragment(const char *key, size_t *len);

/* A process-lifetime copy of an instrumentation scope name or version (one
 * per distinct value), or NULL when the table is full (then copy it). */
const char *attr_intern_scope(const char *s);

#endif
