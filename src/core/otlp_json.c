/* OTLP JSON encoding of span records (ExportTraceServiceRequest), written
 * straight into the output buffer: no tree, no per-value allocation. Follows
 * the OTLP specification's JSON mapping: lowerCamelCase keys, lowercase hex
 * ids, 64-bit integers as decimal strings, enums as integers, proto3 spellings
 * of non-finite doubles. Default values (empty lists, zero counts, unset
 * status) are left out, as proto3 JSON allows. */
#include "basalt/otlp_json.h"
#include "basalt/attrs.h"

#include "attr_keys.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Span.flags bits (opentelemetry-proto trace.proto, SpanFlags). */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE     0x200u

/* Appends n bytes; the fast path stays in this file (no call per literal). */
static inline bool put(basalt_buf *b, const char *s, size_t n) {
    if (b->cap - b->len <= n && !basalt_buf_reserve(b, n)) return false;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return true;
}

#define PUTL(b, lit) put((b), (lit), sizeof(lit) - 1)

/* Whether any of eight bytes needs escaping or checking: < 0x20, >= 0x7f,
 * '"' or '\\' (a byte equal to c is found as a zero byte of w ^ c). */
static inline bool needs_care(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    uint64_t low = (w - ones * 0x20) & ~w;
    uint64_t zq = (q - ones) & ~q, zb = (bs - ones) & ~bs;
    return (((low | zq | zb | w) & highs) | ((w + ones) & highs)) != 0;
}

/* Whether s can be written between quotes as is: printable ASCII without '"'
 * or '\\' (keys and most values). */
static bool json_plain(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) { /* eight bytes at a time */
        uint64_t w;
        memcpy(&w, u + i, 8);
        if (needs_care(w)) return false;
    }
    if (i == len) return true;
    if (len >= 8) { /* the last eight bytes, overlapping: one more word, no byte loop */
        uint64_t w;
        memcpy(&w, u + len - 8, 8);
        return !needs_care(w);
    }
    uint64_t w = 0x6161616161616161ull; /* shorter than a word: padded with 'a' */
    memcpy(&w, u, len);
    return !needs_care(w);
}

/* A JSON string literal. Plain text is copied as is; anything else goes
 * through the escaping and UTF-8 repairing writer. */
static bool put_str(basalt_buf *b, const char *s, size_t len) {
    if (s == NULL) return PUTL(b, "\"\"");
    if (!json_plain(s, len)) return basalt_json_write_string(b, s, len);
    if (b->cap - b->len <= len + 2 && !basalt_buf_reserve(b, len + 2)) return false;
    char *w = b->data + b->len;
    *w++ = '"';
    memcpy(w, s, len);
    w[len] = '"';
    b->len += len + 2;
    return true;
}

/* Unchecked writers for fixed-size parts: the caller reserved the room. */
static inline char *w_lit(char *w, const char *s, size_t n) {
    memcpy(w, s, n);
    return w + n;
}
#define WL(w, lit) w_lit((w), (lit), sizeof(lit) - 1)

static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

/* Decimal digits of v (at most 20). Two digits per division: timestamps have 19. */
static char *w_u64(char *w, uint64_t v) {
    char tmp[24];
    char *p = tmp + sizeof tmp;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, digit_pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, digit_pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(w, p, n);
    return w + n;
}

/* Decimal nanosecond times. The seconds rarely change between the spans of a
 * batch, so their digits are kept; the nine digits of the fraction need only
 * 32-bit arithmetic. One cache per encode call. */
typedef struct time_cache {
    uint64_t sec;
    size_t n; /* 0: empty */
    char digits[24];
} time_cache;

static char *w_time(char *w, uint64_t ns, time_cache *tc) {
    uint64_t sec = ns / 1000000000u;
    if (sec == 0) return w_u64(w, ns); /* no leading zeros to pad */
    uint32_t frac = (uint32_t)(ns - sec * 1000000000u);
    if (tc->n == 0 || tc->sec != sec) {
        tc->sec = sec;
        tc->n = (size_t)(w_u64(tc->digits, sec) - tc->digits);
    }
    w = w_lit(w, tc->digits, tc->n);
    w[8] = (char)('0' + frac % 10);
    frac /= 10;
    for (int i = 6; i >= 0; i -= 2) {
        memcpy(w + i, digit_pairs + 2 * (frac % 100), 2);
        frac /= 100;
    }
    return w + 9;
}

/* "hex" of n bytes (2n + 3 bytes of room: hex_encode ends with a NUL). */
static char *w_hex(char *w, const uint8_t *bytes, size_t n) {
    *w++ = '"';
    basalt_hex_encode(bytes, n, w);
    w += 2 * n;
    *w++ = '"';
    return w;
}

/* Room for n more bytes; returns the write position or NULL. */
static inline char *room(basalt_buf *b, size_t n) {
    if (b->cap - b->len <= n && !basalt_buf_reserve(b, n)) return NULL;
    return b->data + b->len;
}

static inline void done(basalt_buf *b, char *w) {
    b->len = (size_t)(w - b->data);
}

static inline bool put_cstr(basalt_buf *b, const char *s) {
    return put_str(b, s, s ? strlen(s) : 0);
}

/* Decimal digits of v, unquoted. */
static bool put_u64(basalt_buf *b, uint64_t v) {
    char *w = room(b, 24);
    if (w == NULL) return false;
    done(b, w_u64(w, v));
    return true;
}

/* The shortest of %.15g/%.16g/%.17g that reads back as d (finite d only). The
 * decimal point is forced to '.' whatever LC_NUMERIC the host has set. */
static bool put_double(basalt_buf *b, double d) {
    char tmp[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d) break;
    }
    for (int i = 0; i < n; i++) {
        char c = tmp[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e')) tmp[i] = '.';
    }
    return put(b, tmp, (size_t)n);
}

static bool put_kvs(basalt_buf *b, const basalt_kv *kvs, size_t n);

/* An AnyValue object. NONE values are never passed here (callers skip them). */
static bool put_any(basalt_buf *b, const basalt_value *v) {
    switch (v->type) {
    case BASALT_VAL_STRING:
        return PUTL(b, "{\"stringValue\":") && put_str(b, v->u.s.ptr, v->u.s.len) && PUTL(b, "}");
    case BASALT_VAL_INT: {
        char *w = room(b, 48);
        if (w == NULL) return false;
        w = WL(w, "{\"intValue\":\"");
        uint64_t u = (uint64_t)v->u.i;
        if (v->u.i < 0) {
            *w++ = '-';
            u = (uint64_t)0 - u; /* INT64_MIN safe */
        }
        w = w_u64(w, u);
        done(b, WL(w, "\"}"));
        return true;
    }
    case BASALT_VAL_BOOL:
        return v->u.b ? PUTL(b, "{\"boolValue\":true}") : PUTL(b, "{\"boolValue\":false}");
    case BASALT_VAL_DOUBLE:
        if (isnan(v->u.d)) return PUTL(b, "{\"doubleValue\":\"NaN\"}");
        if (isinf(v->u.d))
            return v->u.d > 0 ? PUTL(b, "{\"doubleValue\":\"Infinity\"}")
                              : PUTL(b, "{\"doubleValue\":\"-Infinity\"}");
        return PUTL(b, "{\"doubleValue\":") && put_double(b, v->u.d) && PUTL(b, "}");
    case BASALT_VAL_ARRAY: {
        if (!PUTL(b, "{\"arrayValue\":{\"values\":[")) return false;
        bool first = true;
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (v->u.arr.items[i].type == BASALT_VAL_NONE) continue;
            if (!first && !PUTL(b, ",")) return false;
            first = false;
            if (!put_any(b, &v->u.arr.items[i])) return false;
        }
        return PUTL(b, "]}}");
    }
    case BASALT_VAL_KVLIST:
        return PUTL(b, "{\"kvlistValue\":{\"values\":") && put_kvs(b, v->u.kv.items, v->u.kv.n) &&
               PUTL(b, "}}");
    case BASALT_VAL_NONE:
    default:
        return PUTL(b, "{\"stringValue\":\"\"}");
    }
}

static inline bool kv_skipped(const basalt_kv *kv) {
    /* An absent value or a missing key would make a collector reject the batch.
     */
    return kv->value.type == BASALT_VAL_NONE || kv->key == NULL || kv->key[0] == '\0';
}

/* [{"key":..,"value":AnyValue},...] */
static bool put_kvs(basalt_buf *b, const basalt_kv *kvs, size_t n) {
    if (!PUTL(b, "[")) return false;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (kv_skipped(&kvs[i])) continue;
        size_t fl;
        const char *frag = attr_key_fragment(kvs[i].key, &fl);
        const basalt_value *v = &kvs[i].value;
        if (frag && v->type == BASALT_VAL_STRING && json_plain(v->u.s.ptr, v->u.s.len)) {
            /* The usual attribute whole, with one check for room. */
            char *w = room(b, fl + v->u.s.len + 24);
            if (w == NULL) return false;
            if (!first) *w++ = ',';
            w = WL(w_lit(w, frag, fl), "{\"stringValue\":\"");
            done(b, WL(w_lit(w, v->u.s.ptr, v->u.s.len), "\"}}"));
            first = false;
            continue;
        }
        if (frag) { /* a known key: its {"key":..,"value": is ready */
            char *w = room(b, fl + 1);
            if (w == NULL) return false;
            if (!first) *w++ = ',';
            done(b, w_lit(w, frag, fl));
        } else if ((!first && !PUTL(b, ",")) || !PUTL(b, "{\"key\":") || !put_cstr(b, kvs[i].key) ||
                   !PUTL(b, ",\"value\":")) {
            return false;
        }
        first = false;
        if (!put_any(b, &kvs[i].value) || !PUTL(b, "}")) return false;
    }
    return PUTL(b, "]");
}

static size_t count_kvs(const basalt_kv *kvs, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !kv_skipped(&kvs[i]);
    return c;
}

static bool put_event(basalt_buf *b, const basalt_event *ev, time_cache *tc) {
    char *w = room(b, 48);
    if (w == NULL) return false;
    done(b, WL(w_time(WL(w, "{\"timeUnixNano\":\""), ev->time_ns, tc), "\""));
    if (!PUTL(b, ",\"name\":") || !put_cstr(b, ev->name && *ev->name ? ev->name : "event"))
        return false;
    if (count_kvs(ev->attrs, ev->nattrs) &&
        (!PUTL(b, ",\"attributes\":") || !put_kvs(b, ev->attrs, ev->nattrs)))
        return false;
    return PUTL(b, "}");
}

static bool put_span(basalt_buf *b, const basalt_span_record *r, time_cache *tc) {
    char *w = room(b, 128); /* ids: the fixed-size head in one go */
    if (w == NULL) return false;
    w = w_hex(WL(w, "{\"traceId\":"), r->trace_id, 16);
    w = w_hex(WL(w, ",\"spanId\":"), r->span_id, 8);
    if (r->has_parent) w = w_hex(WL(w, ",\"parentSpanId\":"), r->parent_span_id, 8);
    done(b, w);
    if (r->trace_state && *r->trace_state &&
        (!PUTL(b, ",\"traceState\":") || !put_cstr(b, r->trace_state)))
        return false;
    /* Whether the parent is remote is always known here, so say so. */
    uint32_t flags =
        r->trace_flags | FLAG_HAS_IS_REMOTE | (r->parent_is_remote ? FLAG_IS_REMOTE : 0);
    if ((w = room(b, 48)) == NULL) return false;
    done(b, WL(w_u64(WL(w, ",\"flags\":"), flags), ",\"name\":"));
    if (!put_cstr(b, r->name && *r->name ? r->name : "unnamed")) return false;
    int kind =
        r->kind >= BASALT_OTEL_UNSPECIFIED && r->kind <= BASALT_OTEL_CONSUMER ? (int)r->kind : 1;
    if ((w = room(b, 128)) == NULL) return false; /* kind and times */
    w = WL(w, ",\"kind\":");
    *w++ = (char)('0' + kind);
    w = w_time(WL(w, ",\"startTimeUnixNano\":\""), r->start_ns, tc);
    w = w_time(WL(w, "\",\"endTimeUnixNano\":\""), r->end_ns, tc);
    done(b, WL(w, "\""));
    if (count_kvs(r->attrs, r->nattrs) &&
        (!PUTL(b, ",\"attributes\":") || !put_kvs(b, r->attrs, r->nattrs)))
        return false;
    if (r->dropped_attrs &&
        (!PUTL(b, ",\"droppedAttributesCount\":") || !put_u64(b, r->dropped_attrs)))
        return false;
    if (r->nevents) {
        if (!PUTL(b, ",\"events\":[")) return false;
        for (uint32_t i = 0; i < r->nevents; i++) {
            if (i && !PUTL(b, ",")) return false;
            if (!put_event(b, &r->events[i], tc)) return false;
        }
        if (!PUTL(b, "]")) return false;
    }
    if (r->dropped_events &&
        (!PUTL(b, ",\"droppedEventsCount\":") || !put_u64(b, r->dropped_events)))
        return false;
    int code = r->status_code >= BASALT_STATUS_UNSET && r->status_code <= BASALT_STATUS_ERROR
                   ? (int)r->status_code
                   : 0;
    bool msg = r->status_message && *r->status_message;
    if (code || msg) {
        if (!PUTL(b, ",\"status\":{")) return false;
        if (code) {
            char cbuf[16] = "\"code\":0";
            cbuf[7] = (char)('0' + code);
            if (!put(b, cbuf, 8)) return false;
        }
        if (msg && (!(code ? PUTL(b, ",\"message\":") : PUTL(b, "\"message\":")) ||
                    !put_cstr(b, r->status_message)))
            return false;
        if (!PUTL(b, "}")) return false;
    }
    return PUTL(b, "}");
}

/* Records wait in the queue while the collector works, long enough to leave
 * the caches: fetching the one after next while this one is written hides
 * that. A record and its attributes and strings are one block (record_impl.h)
 * of about 1.5 KiB; a prefetch past a smaller struct is harmless. */
static inline void prefetch_record(const basalt_span_record *r) {
    const char *p = (const char *)r;
    for (size_t off = 0; off < 1536; off += 64)
        __builtin_prefetch(p + off);
}

static bool str_eq(const char *a, const char *b) {
    if (a == b) return true;
    if (a == NULL || b == NULL) return false;
    return strcmp(a, b) == 0;
}

static bool same_scope(const basalt_span_record *a, const basalt_span_record *b) {
    return str_eq(a->scope_name, b->scope_name) && str_eq(a->scope_version, b->scope_version);
}

static bool put_scope_open(basalt_buf *b, const basalt_span_record *r) {
    if (!PUTL(b, "{\"scope\":{\"name\":") ||
        !put_cstr(b, r->scope_name ? r->scope_name : BASALT_SCOPE_DEFAULT))
        return false;
    if (r->scope_version && *r->scope_version &&
        (!PUTL(b, ",\"version\":") || !put_cstr(b, r->scope_version)))
        return false;
    return PUTL(b, "},\"spans\":[");
}

bool basalt_otlp_encode(basalt_buf *out, const basalt_resource *res,
                        const basalt_span_record *const *recs, size_t n) {
    if (!PUTL(out, "{\"resourceSpans\":[{\"resource\":{")) return false;
    if (res && count_kvs(res->attrs, res->nattrs) &&
        (!PUTL(out, "\"attributes\":") || !put_kvs(out, res->attrs, res->nattrs)))
        return false;
    if (!PUTL(out, "},\"scopeSpans\":[")) return false;

    time_cache tc = {0};
    /* Group by scope. Nearly always one scope: a single pass, no allocation. */
    bool one_scope = true;
    for (size_t i = 1; i < n && one_scope; i++)
        one_scope = same_scope(recs[0], recs[i]);
    if (n && one_scope) {
        if (!put_scope_open(out, recs[0])) return false;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n) prefetch_record(recs[i + 2]);
            if (i && !PUTL(out, ",")) return false;
            if (!put_span(out, recs[i], &tc)) return false;
        }
        if (!PUTL(out, "]}")) return false;
    } else if (n) {
        bool *done = calloc(n, sizeof *done);
        if (done == NULL) return false;
        bool ok = true, first_scope = true;
        for (size_t i = 0; i < n && ok; i++) {
            if (done[i]) continue;
            ok = (first_scope || PUTL(out, ",")) && put_scope_open(out, recs[i]);
            first_scope = false;
            bool first = true;
            for (size_t j = i; j < n && ok; j++) {
                if (done[j] || !same_scope(recs[i], recs[j])) continue;
                done[j] = true;
                ok = (first || PUTL(out, ",")) && put_span(out, recs[j], &tc);
                first = false;
            }
            ok = ok && PUTL(out, "]}");
        }
        free(done);
        if (!ok) return false;
    }
    return PUTL(out, "]}]}");
}
