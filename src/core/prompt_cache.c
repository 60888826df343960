/* The prompt caches of Decision 12: a bounded TTL map keyed by (slug, version,
 * tag). Entries hold references to immutable prompts, so a hit hands out a
 * reference instead of copying. One mutex per cache guards everything: get and
 * put come from any thread (several lua_States may share a client), and the
 * critical sections are a short scan, never I/O. */
#include "basalt/prompts.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ENTRIES 512

typedef struct entry {
    uint64_t hash;
    char *key; /* "S<slug>\0V<version>\0T<tag>\0": a NULL part is written as "-" */
    size_t keylen;
    const basalt_prompt *prompt; /* reference */
    uint64_t deadline_ns;
    uint64_t last_used; /* tick of the last put/hit, for LRU eviction */
} entry;

struct basalt_prompt_cache {
    pthread_mutex_t lock; /* guards every field below */
    entry *e;
    size_t n, max;
    uint64_t tick;
};

basalt_prompt_cache *basalt_prompt_cache_new(size_t max_entries) {
    basalt_prompt_cache *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->max = max_entries ? max_entries : DEFAULT_MAX_ENTRIES;
    c->e = calloc(c->max, sizeof *c->e);
    if (c->e == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void entry_drop(entry *e) {
    free(e->key);
    basalt_prompt_release(e->prompt);
    memset(e, 0, sizeof *e);
}

void basalt_prompt_cache_clear(basalt_prompt_cache *c) {
    if (c == NULL) return;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++)
        entry_drop(&c->e[i]);
    c->n = 0;
    pthread_mutex_unlock(&c->lock);
}

void basalt_prompt_cache_free(basalt_prompt_cache *c) {
    if (c == NULL) return;
    basalt_prompt_cache_clear(c);
    pthread_mutex_destroy(&c->lock);
    free(c->e);
    free(c);
}

/* Appends one key part: a marker byte keeps NULL distinct from "". */
static size_t key_part(char *w, char tag, const char *s) {
    size_t n = 0;
    w[n++] = s ? tag : '-';
    if (s) {
        size_t l = strlen(s);
        memcpy(w + n, s, l);
        n += l;
    }
    w[n++] = '\0';
    return n;
}

/* Builds the key in a malloc'd buffer (caller frees). */
static char *make_key(const char *slug, const char *version, const char *tag, size_t *len,
                      uint64_t *hash) {
    size_t cap =
        6 + (slug ? strlen(slug) : 0) + (version ? strlen(version) : 0) + (tag ? strlen(tag) : 0);
    char *k = malloc(cap);
    if (k == NULL) return NULL;
    size_t n = key_part(k, 'S', slug ? slug : "");
    n += key_part(k + n, 'V', version);
    n += key_part(k + n, 'T', tag);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    *len = n;
    *hash = h;
    return k;
}

static entry *find(basalt_prompt_cache *c, const char *k, size_t len, uint64_t h) {
    for (size_t i = 0; i < c->n; i++) {
        entry *e = &c->e[i];
        if (e->hash == h && e->keylen == len && memcmp(e->key, k, len) == 0) return e;
    }
    return NULL;
}

static uint64_t deadline(uint64_t now_ns, double ttl_s) {
    if (!(ttl_s > 0)) return now_ns; /* already expired: never served */
    double ns = ttl_s * 1e9;
    if (isinf(ns) || ns >= (double)(UINT64_MAX - now_ns)) return UINT64_MAX;
    return now_ns + (uint64_t)ns;
}

bool basalt_prompt_cache_put(basalt_prompt_cache *c, const char *slug, const char *version,
                             const char *tag, const basalt_prompt *p, double ttl_s,
                             uint64_t now_ns) {
    if (c == NULL || p == NULL) return false;
    size_t len;
    uint64_t h;
    char *k = make_key(slug, version, tag, &len, &h);
    if (k == NULL) return false;
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, k, len, h);
    if (e) {
        free(k);
        basalt_prompt_release(e->prompt);
    } else {
        if (c->n == c->max) {
            /* Full: an expired entry goes first, else the least recently used. */
            size_t victim = 0;
            for (size_t i = 0; i < c->n; i++) {
                if (c->e[i].deadline_ns <= now_ns) {
                    victim = i;
                    break;
                }
                if (c->e[i].last_used < c->e[victim].last_used) victim = i;
            }
            entry_drop(&c->e[victim]);
            c->e[victim] = c->e[--c->n];
            memset(&c->e[c->n], 0, sizeof c->e[c->n]);
        }
        e = &c->e[c->n++];
        e->key = k;
        e->keylen = len;
        e->hash = h;
    }
    e->prompt = basalt_prompt_retain(p);
    e->deadline_ns = deadline(now_ns, ttl_s);
    e->last_used = ++c->tick;
    pthread_mutex_unlock(&c->lock);
    return true;
}

const basalt_prompt *basalt_prompt_cache_get(basalt_prompt_cache *c, const char *slug,
                                             const char *version, const char *tag,
                                             uint64_t now_ns) {
    if (c == NULL) return NULL;
    /* The key is built on the stack for short parts: a hit must not allocate. */
    char stack[256];
    size_t need =
        6 + (slug ? strlen(slug) : 0) + (version ? strlen(version) : 0) + (tag ? strlen(tag) : 0);
    char *k = stack;
    size_t len;
    uint64_t h;
    if (need > sizeof stack) {
        k = make_key(slug, version, tag, &len, &h);
        if (k == NULL) return NULL;
    } else {
        len = key_part(k, 'S', slug ? slug : "");
        len += key_part(k + len, 'V', version);
        len += key_part(k + len, 'T', tag);
        h = 1469598103934665603ull;
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    }
    const basalt_prompt *p = NULL;
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, k, len, h);
    if (e && now_ns < e->deadline_ns) {
        p = basalt_prompt_retain(e->prompt);
        e->last_used = ++c->tick;
    } else if (e) {
        entry_drop(e); /* expired: free its memory now */
        *e = c->e[--c->n];
        memset(&c->e[c->n], 0, sizeof c->e[c->n]);
    }
    pthread_mutex_unlock(&c->lock);
    if (k != stack) free(k);
    return p;
}

size_t basalt_prompt_cache_size(basalt_prompt_cache *c) {
    if (c == NULL) return 0;
    pthread_mutex_lock(&c->lock);
    size_t n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}
