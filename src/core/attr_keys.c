/* The attribute keys this runtime writes, interned: a record stores a known
 * key as a pointer into this table instead of copying it, and the OTLP encoder
 * writes its precomputed `{"key":"...","value":` fragment in one copy. The
 * table is built once (pthread_once) and read-only afterwards. */
#include "attr_keys.h"
#include "record_impl.h"

#include "basalt/attrs.h"
#include "basalt/otlp_json.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const known[] = {
    BASALT_ATTR_ROOT,
    BASALT_ATTR_TRACE,
    BASALT_ATTR_IN_TRACE,
    BASALT_ATTR_SPAN_KIND,
    BASALT_ATTR_FEATURE_SLUG,
    BASALT_ATTR_USER_ID,
    BASALT_ATTR_USER_NAME,
    BASALT_ATTR_ORG_ID,
    BASALT_ATTR_ORG_NAME,
    BASALT_ATTR_EXPERIMENT_ID,
    BASALT_ATTR_EXPERIMENT_NAME,
    BASALT_ATTR_EXPERIMENT_FEATURE_SLUG,
    BASALT_ATTR_SHOULD_EVALUATE,
    BASALT_ATTR_EVALUATORS,
    BASALT_ATTR_EVALUATION_CONFIG,
    BASALT_ATTR_INPUT,
    BASALT_ATTR_OUTPUT,
    BASALT_ATTR_VARIABLES,
    BASALT_ATTR_METADATA,
    BASALT_ATTR_GENAI_REQUEST_MODEL,
    BASALT_ATTR_GENAI_RESPONSE_MODEL,
    BASALT_ATTR_GENAI_OPERATION_NAME,
    BASALT_ATTR_GENAI_PROVIDER_NAME,
    BASALT_ATTR_GENAI_INPUT_TOKENS,
    BASALT_ATTR_GENAI_OUTPUT_TOKENS,
    BASALT_ATTR_GENAI_TEMPERATURE,
    BASALT_ATTR_GENAI_TOP_P,
    BASALT_ATTR_GENAI_TOP_K,
    BASALT_ATTR_GENAI_MAX_TOKENS,
    BASALT_ATTR_GENAI_RESPONSE_ID,
    BASALT_ATTR_GENAI_FINISH_REASONS,
    BASALT_ATTR_GENAI_LATENCY,
    BASALT_ATTR_GENAI_INPUT_MESSAGES,
    BASALT_ATTR_GENAI_OUTPUT_MESSAGES,
    BASALT_ATTR_RETRIEVAL_QUERY,
    BASALT_ATTR_RETRIEVAL_RESULTS_COUNT,
    BASALT_ATTR_RETRIEVAL_TOP_K,
    BASALT_ATTR_TOOL_NAME,
    BASALT_ATTR_TOOL_INPUT,
    BASALT_ATTR_TOOL_OUTPUT,
    BASALT_ATTR_FUNCTION_NAME,
    BASALT_ATTR_FUNCTION_STAGE,
    BASALT_ATTR_EVENT_TYPE,
    BASALT_ATTR_EVENT_PAYLOAD,
    BASALT_ATTR_PROMPT_SLUG,
    BASALT_ATTR_PROMPT_VERSION,
    BASALT_ATTR_PROMPT_TAG,
    BASALT_ATTR_PROMPT_MODEL_PROVIDER,
    BASALT_ATTR_PROMPT_MODEL_MODEL,
    BASALT_ATTR_PROMPT_VARIABLES,
    BASALT_ATTR_PROMPT_FROM_CACHE,
    BASALT_ATTR_REQUEST_DURATION_MS,
    BASALT_ATTR_REQUEST_SUCCESS,
    BASALT_ATTR_HTTP_RESPONSE_TIME_MS,
    BASALT_ATTR_HTTP_STATUS_CODE,
    BASALT_ATTR_HTTP_METHOD,
    BASALT_ATTR_HTTP_URL,
    BASALT_ATTR_EXCEPTION_TYPE,
    BASALT_ATTR_EXCEPTION_MESSAGE,
    BASALT_ATTR_EXCEPTION_STACKTRACE,
    "service.name",
};
#define NKEYS (sizeof known / sizeof known[0])

/* Interned copies; the encoder tells an interned key by its address. */
static attr_key_slot table[NKEYS];
const char *const attr_keys_begin = table[0].s;
const char *const attr_keys_end = table[0].s + sizeof table;
/* Hash -> index + 1 (open addressing; 0 = empty). */
#define NSLOTS 256
static unsigned char slots[NSLOTS];
static char fragments[NKEYS][ATTR_KEY_SLOT + 24];
static unsigned char fragment_len[NKEYS];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void build(void) {
    _Static_assert(NKEYS < 255 && NKEYS * 2 < NSLOTS, "key table too small");
    _Static_assert(NKEYS <= 128, "record_impl.known_set holds 128 bits");
    for (size_t i = 0; i < NKEYS; i++) {
        size_t n = strlen(known[i]);
        if (n >= ATTR_KEY_SLOT) continue; /* never interned */
        memcpy(table[i].s, known[i], n + 1);
        uint32_t h = record_key_hash(known[i]) % NSLOTS;
        while (slots[h])
            h = (h + 1) % NSLOTS;
        slots[h] = (unsigned char)(i + 1);
        basalt_buf b = {0};
        basalt_buf_puts(&b, "{\"key\":");
        basalt_json_write_string(&b, known[i], n);
        basalt_buf_puts(&b, ",\"value\":");
        if (b.len < sizeof fragments[i]) {
            memcpy(fragments[i], b.data, b.len);
            fragment_len[i] = (unsigned char)b.len;
        }
        basalt_buf_free(&b);
    }
}

/* Built when the library is loaded, before any thread can look keys up, so
 * lookups need no synchronisation; attr_keys_init is kept for static links. */
__attribute__((constructor)) static void build_at_load(void) {
    pthread_once(&once, build);
}

void attr_keys_init(void) {
    pthread_once(&once, build);
}

/* ---- application keys ------------------------------------------------------------ */

/* Keys that applications set, interned on first use (basalt_key_intern): a
 * record then points at one process-lifetime copy instead of copying the key
 * per span, and the encoder writes the entry's ready `{"key":..,"value":`.
 * Each entry is a basalt_key header followed by the key and the fragment, in
 * one static arena, so the encoder tells an interned key by its address.
 * Bounded (USER_KEYS_MAX entries, the arena's size); past that callers copy as
 * before. Guarded by user_keys_lock; published entries never change. */
#define USER_KEYS_MAX   4096
#define USER_KEY_MAXLEN 255
static pthread_mutex_t user_keys_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { _Alignas(basalt_key) char bytes[256 * 1024]; } user_arena;
static size_t user_arena_used;
static const basalt_key *user_slots[USER_KEYS_MAX * 2]; /* open addressing by hash */
static size_t user_nkeys;

const char *attr_key_intern(const char *key, uint32_t hash) {
    if (key >= attr_keys_begin && key < attr_keys_end) return key; /* already interned */
    for (uint32_t h = hash % NSLOTS; slots[h]; h = (h + 1) % NSLOTS) {
        const char *k = table[slots[h] - 1].s;
        if (k[0] == key[0] && strcmp(k, key) == 0) return k;
    }
    return NULL;
}

const char *attr_key_fragment(const char *key, size_t *len) {
    /* Addresses compared as integers: key may point into any object. */
    uintptr_t p = (uintptr_t)key, base = (uintptr_t)table[0].s;
    if (p - base < sizeof table) { /* known keys first: most attributes are */
        size_t i = (size_t)(p - base) / ATTR_KEY_SLOT;
        if (table[i].s != key || fragment_len[i] == 0) return NULL;
        *len = fragment_len[i];
        return fragments[i];
    }
    uintptr_t off = p - (uintptr_t)user_arena.bytes;
    if (off >= sizeof(basalt_key) && off < sizeof user_arena.bytes) {
        const basalt_key *k = (const basalt_key *)(const void *)key - 1; /* see key_new */
        if (k->s != key || k->frag_len == 0) return NULL;
        *len = k->frag_len;
        return k->frag;
    }
    return NULL;
}

/* ---- instrumentation scope names ------------------------------------------------ */

/* Scope names and versions of tracers, kept for the life of the process so that
 * records point at one copy (the encoder groups spans by pointer equality
 * first). Few distinct values exist; past SCOPES_MAX, callers copy. Guarded by
 * scopes_lock; entries are never removed or changed once published. */
#define SCOPES_MAX 128
static pthread_mutex_t scopes_lock = PTHREAD_MUTEX_INITIALIZER;
static char *scopes[SCOPES_MAX];
static _Atomic size_t nscopes; /* published with release after the entry is set */

const char *attr_intern_scope(const char *s) {
    if (s == NULL) return NULL;
    /* Lock-free first: the caller usually passes an interned pointer back. */
    size_t n_pub = atomic_load_explicit(&nscopes, memory_order_acquire);
    for (size_t i = 0; i < n_pub; i++)
        if (scopes[i] == s) return s;
    const char *found = NULL;
    pthread_mutex_lock(&scopes_lock);
    for (size_t i = 0; i < nscopes && !found; i++)
        if (strcmp(scopes[i], s) == 0) found = scopes[i];
    if (!found && nscopes < SCOPES_MAX) {
        size_t n = strlen(s);
        basalt_buf fixed = {0};
        const char *src = s;
        if (!basalt_utf8_repair(s, n, &fixed)) {
            src = fixed.data;
            n = fixed.len;
        }
        char *copy = malloc(n + 1);
        if (copy) {
            memcpy(copy, src, n);
            copy[n] = '\0';
            scopes[nscopes] = copy;
            atomic_store_explicit(&nscopes, nscopes + 1, memory_order_release);
            found = copy;
        }
        basalt_buf_free(&fixed);
    }
    pthread_mutex_unlock(&scopes_lock);
    return found;
}

/* A new entry for key (valid UTF-8, no NUL) in the arena; NULL when full. */
static const basalt_key *key_new(const char *key, size_t len, uint32_t hash) {
    basalt_buf b = {0};
    basalt_buf_puts(&b, "{\"key\":");
    basalt_json_write_string(&b, key, len);
    basalt_buf_puts(&b, ",\"value\":");
    size_t need = sizeof(basalt_key) + len + 1 + b.len;
    need = (need + _Alignof(basalt_key) - 1) & ~(_Alignof(basalt_key) - 1);
    basalt_key *k = NULL;
    if (b.data && b.len <= UINT16_MAX && sizeof user_arena.bytes - user_arena_used >= need) {
        k = (basalt_key *)(void *)(user_arena.bytes + user_arena_used);
        user_arena_used += need;
        char *text = (char *)(k + 1);
        memcpy(text, key, len);
        text[len] = '\0';
        memcpy(text + len + 1, b.data, b.len);
        k->len = (uint32_t)len;
        k->hash = hash;
        k->frag = text + len + 1;
        k->frag_len = (uint16_t)b.len;
        /* A key the runtime knows keeps the known key's identity (its record
         * bit, its interned pointer); this copy then only carries the header. */
        const char *known_key = attr_key_intern(text, hash);
        k->known = known_key ? attr_key_index(known_key) : -1;
        k->s = known_key ? known_key : text;
    }
    basalt_buf_free(&b);
    return k;
}

const basalt_key *basalt_key_intern(const char *key, size_t len) {
    if (key == NULL) return NULL;
    const char *nul = memchr(key, '\0', len);
    if (nul) len = (size_t)(nul - key); /* keys are C strings: cut at a NUL */
    basalt_buf fixed = {0};
    if (!basalt_utf8_repair(key, len, &fixed)) { /* as exported: see record_set_attr_n */
        key = fixed.data;
        len = fixed.len;
    }
    const basalt_key *found = NULL;
    if (key && len <= USER_KEY_MAXLEN) {
        uint32_t hash = record_key_hash_n(key, len);
        size_t mask = USER_KEYS_MAX * 2 - 1;
        pthread_mutex_lock(&user_keys_lock);
        size_t i = hash & mask;
        for (; user_slots[i]; i = (i + 1) & mask) {
            const basalt_key *k = user_slots[i];
            if (k->hash == hash && k->len == len && memcmp(k->s, key, len) == 0) {
                found = k;
                break;
            }
        }
        if (!found && user_nkeys < USER_KEYS_MAX && (found = key_new(key, len, hash))) {
            user_slots[i] = found;
            user_nkeys++;
        }
        pthread_mutex_unlock(&user_keys_lock);
    }
    basalt_buf_free(&fixed);
    return found;
}

const char *basalt_key_str(const basalt_key *k, size_t *len) {
    if (len) *len = k->len;
    return k->s;
}
