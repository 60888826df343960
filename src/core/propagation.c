/* W3C Trace Context (traceparent, tracestate) and W3C Baggage: strict parsers
 * and the inject/extract pair. A malformed header is rejected as a whole; the
 * only leniency is the optional whitespace (OWS) HTTP allows around a field
 * value, which a header table may still carry. */
#include "basalt/propagation.h"
#include "basalt/record.h" /* basalt_hex_encode */

#include <stdlib.h>
#include <string.h>

#define TRACEPARENT_LEN        55 /* "00-" 32 "-" 16 "-" 2 */
#define TRACESTATE_MAX_MEMBERS 32
#define BAGGAGE_MAX_BYTES      8192
#define BAGGAGE_MAX_MEMBERS    180

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* Trims surrounding OWS off [*s, *s + *len). */
static void trim_ows(const char **s, size_t *len) {
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* Lowercase hex only: W3C forbids uppercase in traceparent. */
static int lchex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool decode_lchex(const char *s, size_t nbytes, uint8_t *out) {
    for (size_t i = 0; i < nbytes; i++) {
        int hi = lchex(s[2 * i]), lo = lchex(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

/* ---- traceparent ------------------------------------------------------------ */

static bool traceparent_parse_n(const char *s, size_t len, basalt_traceparent *out) {
    if (len < TRACEPARENT_LEN) return false;
    uint8_t version;
    if (!decode_lchex(s, 1, &version) || version == 0xff) return false;
    /* Version 00 is exactly 55 chars; a later version may append "-..." fields
     * we do not understand but must still accept (forward compatibility). */
    if (version == 0 ? len != TRACEPARENT_LEN : (len > TRACEPARENT_LEN && s[55] != '-'))
        return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
    basalt_traceparent tp;
    if (!decode_lchex(s + 3, 16, tp.trace_id) || !decode_lchex(s + 36, 8, tp.span_id) ||
        !decode_lchex(s + 53, 1, &tp.flags))
        return false;
    if (all_zero(tp.trace_id, 16) || all_zero(tp.span_id, 8)) return false;
    if (out) *out = tp;
    return true;
}

bool basalt_traceparent_parse(const char *s, basalt_traceparent *out) {
    if (s == NULL) return false;
    size_t len = strlen(s);
    trim_ows(&s, &len);
    return traceparent_parse_n(s, len, out);
}

void basalt_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                               char out[56]) {
    memcpy(out, "00-", 3);
    basalt_hex_encode(trace_id, 16, out + 3);
    out[35] = '-';
    basalt_hex_encode(span_id, 8, out + 36);
    out[52] = '-';
    basalt_hex_encode(&flags, 1, out + 53);
}

/* ---- tracestate ------------------------------------------------------------- */

static bool is_lcalpha(char c) {
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* lcalpha / DIGIT / "_" / "-" / "*" / "/": the tail of every key part. */
static bool is_key_char(char c) {
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / tenant-id "@" system-id. */
static bool tracestate_key_valid(const char *k, size_t len) {
    const char *at = memchr(k, '@', len);
    if (at == NULL) {
        /* simple-key = lcalpha 0*255(keychar) */
        if (len < 1 || len > 256 || !is_lcalpha(k[0])) return false;
        for (size_t i = 1; i < len; i++)
            if (!is_key_char(k[i])) return false;
        return true;
    }
    size_t tlen = (size_t)(at - k), slen = len - tlen - 1;
    /* tenant-id = (lcalpha / DIGIT) 0*240(keychar); system-id = lcalpha 0*13(keychar) */
    if (tlen < 1 || tlen > 241 || slen < 1 || slen > 14) return false;
    if (!is_lcalpha(k[0]) && !is_digit(k[0])) return false;
    for (size_t i = 1; i < tlen; i++)
        if (!is_key_char(k[i])) return false;
    if (!is_lcalpha(at[1])) return false;
    for (size_t i = 2; i <= slen; i++)
        if (!is_key_char(at[i])) return false;
    return true;
}

/* nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (printable, not ',' '=' or space). */
static bool is_nblk(char c) {
    return c >= 0x21 && c <= 0x7e && c != ',' && c != '=';
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr. */
static bool tracestate_value_valid(const char *v, size_t len) {
    if (len < 1 || len > 256 || !is_nblk(v[len - 1])) return false;
    for (size_t i = 0; i < len; i++)
        if (v[i] != ' ' && !is_nblk(v[i])) return false;
    return true;
}

/* Number of (non-empty) list-members, or -1 when the header is invalid. */
static int tracestate_members(const char *s, size_t len) {
    struct {
        const char *p;
        size_t n;
    } keys[TRACESTATE_MAX_MEMBERS];
    int nkeys = 0;
    size_t pos = 0;
    for (;;) {
        const char *m = s + pos;
        const char *comma = memchr(m, ',', len - pos);
        size_t mlen = comma ? (size_t)(comma - m) : len - pos;
        trim_ows(&m, &mlen);
        if (mlen > 0) { /* empty or whitespace-only members are allowed */
            const char *eq = memchr(m, '=', mlen);
            if (eq == NULL) return -1;
            size_t klen = (size_t)(eq - m);
            if (!tracestate_key_valid(m, klen) || !tracestate_value_valid(eq + 1, mlen - klen - 1))
                return -1;
            if (nkeys == TRACESTATE_MAX_MEMBERS) return -1;
            /* A key appears once: a list with duplicates is malformed. */
            for (int i = 0; i < nkeys; i++)
                if (keys[i].n == klen && memcmp(keys[i].p, m, klen) == 0) return -1;
            keys[nkeys].p = m;
            keys[nkeys].n = klen;
            nkeys++;
        }
        if (comma == NULL) break;
        pos = (size_t)(comma - s) + 1;
    }
    return nkeys;
}

bool basalt_tracestate_valid(const char *s) {
    return s != NULL && tracestate_members(s, strlen(s)) >= 0;
}

/* ---- baggage ---------------------------------------------------------------- */

/* tchar of RFC 9110 (token). */
static bool is_tchar(char c) {
    if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E. */
static bool is_baggage_octet(char c) {
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static bool is_hex(char c) {
    return lchex(c) >= 0 || (c >= 'A' && c <= 'F');
}

static bool token_valid(const char *k, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar(k[i])) return false;
    return true;
}

/* value = *baggage-octet, where '%' must start a percent-encoded octet. */
static bool baggage_value_valid(const char *v, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (!is_baggage_octet(v[i])) return false;
        if (v[i] == '%') {
            if (i + 2 >= len || !is_hex(v[i + 1]) || !is_hex(v[i + 2])) return false;
            i += 2;
        }
    }
    return true;
}

/* key OWS "=" OWS value, or (properties only) a bare key. */
static bool baggage_pair_valid(const char *p, size_t len, bool bare_key_ok) {
    trim_ows(&p, &len);
    const char *eq = memchr(p, '=', len);
    if (eq == NULL) return bare_key_ok && token_valid(p, len);
    const char *k = p, *v = eq + 1;
    size_t klen = (size_t)(eq - p), vlen = len - klen - 1;
    trim_ows(&k, &klen);
    trim_ows(&v, &vlen);
    return token_valid(k, klen) && baggage_value_valid(v, vlen);
}

/* list-member = key OWS "=" OWS value *(OWS ";" OWS property). */
static bool baggage_member_valid(const char *m, size_t len) {
    const char *semi = memchr(m, ';', len);
    size_t first = semi ? (size_t)(semi - m) : len;
    if (!baggage_pair_valid(m, first, false)) return false;
    while (semi) {
        const char *prop = semi + 1;
        size_t rest = len - (size_t)(prop - m);
        semi = memchr(prop, ';', rest);
        size_t plen = semi ? (size_t)(semi - prop) : rest;
        if (!baggage_pair_valid(prop, plen, true)) return false;
    }
    return true;
}

static bool baggage_valid_n(const char *s, size_t len) {
    if (len == 0 || len > BAGGAGE_MAX_BYTES) return false;
    int members = 0;
    size_t pos = 0;
    for (;;) {
        const char *m = s + pos;
        const char *comma = memchr(m, ',', len - pos);
        size_t mlen = comma ? (size_t)(comma - m) : len - pos;
        if (++members > BAGGAGE_MAX_MEMBERS || !baggage_member_valid(m, mlen)) return false;
        if (comma == NULL) return true;
        pos = (size_t)(comma - s) + 1;
    }
}

bool basalt_baggage_valid(const char *s) {
    if (s == NULL) return false;
    size_t len = strlen(s);
    trim_ows(&s, &len);
    return baggage_valid_n(s, len);
}

/* ---- extract / inject ------------------------------------------------------- */

/* A NUL-terminated copy of [s, s + len), or NULL when out of memory. */
static char *dup_n(const char *s, size_t len) {
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

basalt_ctx *basalt_extract(const char *traceparent, const char *tracestate, const char *baggage) {
    basalt_traceparent tp;
    if (!basalt_traceparent_parse(traceparent, &tp)) return NULL;

    /* tracestate and baggage are each dropped on their own when malformed (or
     * empty); the rest is kept trimmed so inject writes clean values. */
    char *ts = NULL, *bg = NULL;
    if (tracestate) {
        size_t len = strlen(tracestate);
        trim_ows(&tracestate, &len);
        if (tracestate_members(tracestate, len) > 0) ts = dup_n(tracestate, len);
    }
    if (baggage) {
        size_t len = strlen(baggage);
        trim_ows(&baggage, &len);
        if (baggage_valid_n(baggage, len)) bg = dup_n(baggage, len);
    }
    basalt_ctx *c = basalt_ctx_remote(tp.trace_id, tp.span_id, tp.flags, ts, bg);
    free(ts);
    free(bg);
    return c;
}

bool basalt_inject(const basalt_ctx *c, basalt_header_fn fn, void *ud) {
    uint8_t trace_id[16], span_id[8], flags;
    const char *ts = NULL, *bg = NULL;
    if (fn == NULL || !basalt_ctx_w3c(c, trace_id, span_id, &flags, &ts, &bg)) return false;
    if (all_zero(trace_id, 16) || all_zero(span_id, 8)) return false;
    char tp[56];
    /* Flags 01: every span this runtime records is sampled. */
    basalt_traceparent_format(trace_id, span_id, 0x01, tp);
    fn(ud, "traceparent", tp);
    if (ts && *ts) fn(ud, "tracestate", ts);
    if (bg && *bg) fn(ud, "baggage", bg);
    return true;
}
