/* Span records: arena-backed storage, reference counting, lookups. */
#include "record_impl.h"

#include "attr_keys.h"

#include "basalt/common.h"

#include <stdlib.h>
#include <string.h>

record_impl *record_new(void) {
    record_impl *r = record_block_alloc();
    if (r == NULL) return NULL;
    memset(&r->pub, 0, sizeof r->pub);
    atomic_init(&r->refcount, 1);
    r->attr_cap = RECORD_INLINE_ATTRS;
    r->event_cap = 0;
    r->attrs = r->inline_attrs;
    r->attr_hashes = r->inline_hashes;
    r->events = NULL;
    r->overflow = NULL;
    r->arena_used = 0;
    r->keep_fn[0] = r->keep_fn[1] = NULL;
    r->known_set[0] = r->known_set[1] = 0;
    r->pub.attrs = r->attrs;
    return r;
}

void *record_alloc_chunk(record_impl *r, size_t n) {
    arena_chunk *c = r->overflow;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 2048 ? n : 2048;
        c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = r->overflow;
        r->overflow = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

/* Copies s into the arena (repairing invalid UTF-8); *out_len gets the length.
 * One pass copies eight bytes at a time and collects their high bits: ASCII,
 * the usual case, needs no second look. */
static const char *strdup_len(record_impl *r, const char *s, size_t len, size_t *out_len) {
    if (s == NULL) s = "", len = 0;
    char *p = record_alloc(r, len + 1);
    if (p == NULL) return NULL;
    uint64_t high = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        memcpy(p + i, &w, 8);
        high |= w;
    }
    for (; i < len; i++) {
        p[i] = s[i];
        high |= (unsigned char)s[i];
    }
    p[len] = '\0';
    *out_len = len;
    if ((high & 0x8080808080808080ull) == 0) return p;
    basalt_buf fixed = {0};
    if (basalt_utf8_repair(p, len, &fixed)) return p; /* valid UTF-8 */
    char *q = record_alloc(r, fixed.len + 1);         /* the first copy stays unused in the arena */
    if (q) {
        memcpy(q, fixed.data, fixed.len);
        q[fixed.len] = '\0';
        *out_len = fixed.len;
    }
    basalt_buf_free(&fixed);
    return q;
}

const char *record_strdup(record_impl *r, const char *s, size_t len) {
    size_t n;
    return strdup_len(r, s, len, &n);
}

bool record_copy_value(record_impl *r, basalt_value in, basalt_value *out) {
    *out = in;
    switch (in.type) {
    case BASALT_VAL_STRING: {
        size_t n;
        const char *p = strdup_len(r, in.u.s.ptr, in.u.s.len, &n);
        if (p == NULL) return false;
        out->u.s.ptr = p;
        out->u.s.len = n;
        return true;
    }
    case BASALT_VAL_ARRAY: {
        basalt_value *items = record_alloc(r, sizeof *items * (in.u.arr.n ? in.u.arr.n : 1));
        if (items == NULL) return false;
        for (size_t i = 0; i < in.u.arr.n; i++)
            if (!record_copy_value(r, in.u.arr.items[i], &items[i])) return false;
        out->u.arr.items = items;
        return true;
    }
    case BASALT_VAL_KVLIST: {
        basalt_kv *items = record_alloc(r, sizeof *items * (in.u.kv.n ? in.u.kv.n : 1));
        if (items == NULL) return false;
        for (size_t i = 0; i < in.u.kv.n; i++) {
            const char *k = in.u.kv.items[i].key;
            items[i].key = record_strdup(r, k, k ? strlen(k) : 0);
            if (items[i].key == NULL) return false;
            if (!record_copy_value(r, in.u.kv.items[i].value, &items[i].value)) return false;
        }
        out->u.kv.items = items;
        return true;
    }
    default:
        return true;
    }
}

uint32_t record_key_hash(const char *key) {
    return record_key_hash_n(key, strlen(key));
}

uint32_t record_key_hash_n(const char *key, size_t n) {
    /* Eight bytes at a time (keys are typed by people: short, ASCII); the
     * value only needs to be the same for equal keys within this process. */
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    const unsigned char *p = (const unsigned char *)key;
    size_t left = n;
    while (left >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        left -= 8;
    }
    uint64_t w = 0;
    if (left && n >= 8) {
        memcpy(&w, key + n - 8, 8); /* the last eight bytes, overlapping: one load */
    } else {
        for (size_t i = 0; i < left; i++)
            w |= (uint64_t)p[i] << (8 * i);
    }
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

int record_find_attr(const record_impl *r, const char *key, uint32_t hash) {
    for (uint32_t i = 0; i < r->pub.nattrs; i++)
        if (r->attr_hashes[i] == hash && strcmp(r->attrs[i].key, key) == 0) return (int)i;
    return -1;
}

static bool grow_attrs(record_impl *r) {
    uint32_t cap = r->attr_cap * 2;
    if (cap > RECORD_MAX_ATTRS) cap = RECORD_MAX_ATTRS;
    basalt_kv *attrs = malloc(sizeof *attrs * cap);
    uint32_t *hashes = malloc(sizeof *hashes * cap);
    if (attrs == NULL || hashes == NULL) {
        free(attrs);
        free(hashes);
        return false;
    }
    memcpy(attrs, r->attrs, sizeof *attrs * r->pub.nattrs);
    memcpy(hashes, r->attr_hashes, sizeof *hashes * r->pub.nattrs);
    if (r->attrs != r->inline_attrs) {
        free(r->attrs);
        free(r->attr_hashes);
    }
    r->attrs = attrs;
    r->attr_hashes = hashes;
    r->attr_cap = cap;
    r->pub.attrs = attrs;
    return true;
}

void record_set_attr(record_impl *r, const char *key, bool static_key, basalt_value v) {
    if (key == NULL) return;
    record_set_attr_n(r, key, strlen(key), static_key, false, v);
}

/* True when some byte of s has its high bit set (not plain ASCII). Words at a
 * time, the last one overlapping, as in record_key_hash_n. */
static bool has_high_bit(const char *s, size_t len) {
    uint64_t high = 0, w;
    if (len < 8) {
        for (size_t i = 0; i < len; i++)
            high |= (unsigned char)s[i];
        return (high & 0x80u) != 0;
    }
    for (size_t i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        high |= w;
    }
    memcpy(&w, s + len - 8, 8);
    high |= w;
    return (high & 0x8080808080808080ull) != 0;
}

/* Stores an attribute whose key is final (known: its index in the known
 * table, or -1 with copy_key saying whether the key must be copied). */
static void store_attr(record_impl *r, const char *key, size_t key_len, uint32_t h, int known,
                       bool copy_key, bool unique, basalt_value v) {
    basalt_value copy;
    if (v.type == BASALT_VAL_STRING) { /* the usual case, without the generic copy */
        size_t n;
        const char *p = strdup_len(r, v.u.s.ptr, v.u.s.len, &n);
        if (p == NULL) return;
        copy = basalt_v_strn(p, n);
    } else if (!record_copy_value(r, v, &copy)) {
        return;
    }
    if (!unique) {
        int at = record_find_attr(r, key, h);
        if (at >= 0) {
            r->attrs[at].value = copy;
            return;
        }
    }
    if (r->pub.nattrs == r->attr_cap) {
        if (r->attr_cap >= RECORD_MAX_ATTRS || !grow_attrs(r)) {
            r->pub.dropped_attrs++;
            return;
        }
    }
    if (known >= 0) {
        r->known_set[known >> 6] |= 1ull << (known & 63); /* propagated values yield to it */
    } else if (copy_key) {
        key = record_strdup(r, key, key_len);
        if (key == NULL) return;
    }
    r->attrs[r->pub.nattrs].key = key;
    r->attrs[r->pub.nattrs].value = copy;
    r->attr_hashes[r->pub.nattrs] = h;
    r->pub.nattrs++;
}

void record_set_attr_n(record_impl *r, const char *key, size_t key_len, bool static_key,
                       bool unique, basalt_value v) {
    if (v.type == BASALT_VAL_NONE) return;
    uint32_t h = record_key_hash_n(key, key_len);
    const char *known = attr_key_intern(key, h); /* known keys are ASCII */
    if (known) {
        store_attr(r, known, key_len, h, attr_key_index(known), false, unique, v);
        return;
    }
    if (has_high_bit(key, key_len)) {
        /* Keys are looked up as exported: after UTF-8 repair, two different
         * invalid keys can be one key (a duplicate makes a collector reject
         * the batch). The repaired copy lives in the arena. */
        size_t n;
        const char *fixed = strdup_len(r, key, key_len, &n);
        if (fixed == NULL) return;
        store_attr(r, fixed, n, record_key_hash_n(fixed, n), -1, false, false, v);
        return;
    }
    store_attr(r, key, key_len, h, -1, !static_key, unique, v);
}

void record_set_attr_key(record_impl *r, const basalt_key *k, bool unique, basalt_value v) {
    if (v.type == BASALT_VAL_NONE) return;
    store_attr(r, k->s, k->len, k->hash, k->known, false, unique, v);
}

void record_keep(record_impl *r, void (*fn)(void *), void *obj) {
    for (int i = 0; i < 2; i++) {
        if (r->keep_fn[i] == NULL) {
            r->keep_fn[i] = fn;
            r->keep_arg[i] = obj;
            return;
        }
    }
    fn(obj); /* no slot: callers use at most two */
}

void record_push_interned(record_impl *r, const char *key, uint32_t hash, basalt_value v) {
    if (r->pub.nattrs == r->attr_cap) {
        if (r->attr_cap >= RECORD_MAX_ATTRS || !grow_attrs(r)) {
            r->pub.dropped_attrs++;
            return;
        }
    }
    r->attrs[r->pub.nattrs].key = key;
    r->attrs[r->pub.nattrs].value = v;
    r->attr_hashes[r->pub.nattrs] = hash;
    r->pub.nattrs++;
}

bool record_push_interned_n(record_impl *r, const basalt_kv *kvs, const uint32_t *hashes,
                            uint32_t n) {
    if (r->attr_cap - r->pub.nattrs < n) return false;
    memcpy(&r->attrs[r->pub.nattrs], kvs, sizeof *kvs * n);
    memcpy(&r->attr_hashes[r->pub.nattrs], hashes, sizeof *hashes * n);
    r->pub.nattrs += n;
    return true;
}

void record_push_borrowed(record_impl *r, const char *key, uint32_t hash, basalt_value v) {
    if (r->pub.nattrs == r->attr_cap) {
        if (r->attr_cap >= RECORD_MAX_ATTRS || !grow_attrs(r)) {
            r->pub.dropped_attrs++;
            return;
        }
    }
    const char *k = attr_key_intern(key, hash);
    r->attrs[r->pub.nattrs].key = k ? k : key;
    r->attrs[r->pub.nattrs].value = v;
    r->attr_hashes[r->pub.nattrs] = hash;
    r->pub.nattrs++;
}

void record_add_event(record_impl *r, const char *name, uint64_t time_ns, const basalt_kv *attrs,
                      size_t n) {
    if (r->pub.nevents >= RECORD_MAX_EVENTS) {
        r->pub.dropped_events++;
        return;
    }
    if (r->pub.nevents == r->event_cap) {
        uint32_t cap = r->event_cap ? r->event_cap * 2 : 2;
        basalt_event *ev = realloc(r->events, sizeof *ev * cap);
        if (ev == NULL) return;
        r->events = ev;
        r->event_cap = cap;
        r->pub.events = ev;
    }
    basalt_event *e = &r->events[r->pub.nevents];
    e->name = record_strdup(r, name, strlen(name));
    e->time_ns = time_ns;
    e->nattrs = 0;
    basalt_kv *copy = n ? record_alloc(r, sizeof *copy * n) : NULL;
    e->attrs = copy;
    if (copy) {
        for (size_t i = 0; i < n; i++) {
            if (attrs[i].value.type == BASALT_VAL_NONE) continue;
            const char *k = record_strdup(r, attrs[i].key, strlen(attrs[i].key));
            basalt_value v;
            if (k == NULL || !record_copy_value(r, attrs[i].value, &v)) continue;
            /* Keys as exported (cut at a NUL, UTF-8 repaired) are unique: a
             * later one replaces the value of an earlier equal one. */
            uint32_t j = 0;
            while (j < e->nattrs && strcmp(copy[j].key, k) != 0)
                j++;
            copy[j].key = k;
            copy[j].value = v;
            if (j == e->nattrs) e->nattrs++;
        }
    }
    r->pub.nevents++;
}

void basalt_record_retain(const basalt_span_record *rec) {
    record_impl *r = (record_impl *)rec;
    atomic_fetch_add_explicit(&r->refcount, 1, memory_order_relaxed);
}

void basalt_record_release(const basalt_span_record *rec) {
    if (rec == NULL) return;
    record_impl *r = (record_impl *)rec;
    if (atomic_fetch_sub_explicit(&r->refcount, 1, memory_order_acq_rel) != 1) return;
    if (r->attrs != r->inline_attrs) {
        free(r->attrs);
        free(r->attr_hashes);
    }
    free(r->events);
    for (int i = 0; i < 2; i++)
        if (r->keep_fn[i]) r->keep_fn[i](r->keep_arg[i]);
    for (arena_chunk *c = r->overflow, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    record_block_free(r);
}

const basalt_value *basalt_record_attr(const basalt_span_record *rec, const char *key) {
    const record_impl *r = (const record_impl *)rec;
    int at = record_find_attr(r, key, record_key_hash(key));
    return at >= 0 ? &r->attrs[at].value : NULL;
}

static const char *dup_opt(record_impl *r, const char *s) {
    return s ? record_strdup(r, s, strlen(s)) : NULL;
}

basalt_span_record *basalt_record_clone(const basalt_span_record *t) {
    record_impl *r = record_new();
    if (r == NULL) return NULL;
    basalt_span_record *p = &r->pub;
    memcpy(p->trace_id, t->trace_id, 16);
    memcpy(p->span_id, t->span_id, 8);
    memcpy(p->parent_span_id, t->parent_span_id, 8);
    p->has_parent = t->has_parent;
    p->parent_is_remote = t->parent_is_remote;
    p->trace_flags = t->trace_flags;
    p->trace_state = dup_opt(r, t->trace_state);
    p->name = dup_opt(r, t->name ? t->name : "");
    p->kind = t->kind;
    p->scope_name = dup_opt(r, t->scope_name);
    p->scope_version = dup_opt(r, t->scope_version);
    p->start_ns = t->start_ns;
    p->end_ns = t->end_ns;
    for (uint32_t i = 0; i < t->nattrs; i++)
        record_set_attr(r, t->attrs[i].key, false, t->attrs[i].value);
    p->dropped_attrs += t->dropped_attrs;
    for (uint32_t i = 0; i < t->nevents; i++)
        record_add_event(r, t->events[i].name, t->events[i].time_ns, t->events[i].attrs,
                         t->events[i].nattrs);
    p->dropped_events += t->dropped_events;
    p->status_code = t->status_code;
    p->status_message = dup_opt(r, t->status_message);
    return p;
}
