/* W3C Trace Context and Baggage: strict parsing (tables of cases), extract
 * continuing a remote trace, and inject writing headers for a live span. */
#include "basalt/attrs.h"
#include "basalt/propagation.h"
#include "basalt/runtime.h"
#include "check.h"

#include <stdlib.h>

#define TP_TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define TP_SPAN  "00f067aa0ba902b7"
#define TP_VALID "00-" TP_TRACE "-" TP_SPAN "-01"

typedef struct tp_case {
    const char *header;
    bool valid;
} tp_case;

static const tp_case traceparent_cases[] = {
    {TP_VALID, true},
    {"00-" TP_TRACE "-" TP_SPAN "-00", true}, /* not sampled: still valid */
    {"00-" TP_TRACE "-" TP_SPAN "-ff", true}, /* unknown flags are kept */
    {" \t" TP_VALID " ", true},               /* HTTP OWS around the value */
    {"01-" TP_TRACE "-" TP_SPAN "-01", true}, /* a future version, same length */
    {"cc-" TP_TRACE "-" TP_SPAN "-01-what-the-future-holds", true},
    {"cc-" TP_TRACE "-" TP_SPAN "-01-", true},
    {"", false},
    {"00", false},
    {"ff-" TP_TRACE "-" TP_SPAN "-01", false}, /* version ff is forbidden */
    {"0-" TP_TRACE "-" TP_SPAN "-01", false},
    {"000-" TP_TRACE "-" TP_SPAN "-01", false},
    {"0g-" TP_TRACE "-" TP_SPAN "-01", false},
    {"0A-" TP_TRACE "-" TP_SPAN "-01", false}, /* uppercase version */
    {TP_VALID "-extra", false},                /* version 00 is exactly 55 chars */
    {TP_VALID "0", false},
    {"cc-" TP_TRACE "-" TP_SPAN "-01x", false},                    /* future fields need a '-' */
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_SPAN "-01", false}, /* uppercase */
    {"00-" TP_TRACE "-00F067AA0BA902B7-01", false},
    {"00-" TP_TRACE "-" TP_SPAN "-0A", false},
    {"00-00000000000000000000000000000000-" TP_SPAN "-01", false}, /* zero trace id */
    {"00-" TP_TRACE "-0000000000000000-01", false},                /* zero span id */
    {"00-4bf92f3577b34da6a3ce929d0e0e473-" TP_SPAN "0-01", false}, /* shifted dash */
    {"00-" TP_TRACE "-" TP_SPAN "-1", false},
    {"00-" TP_TRACE "-" TP_SPAN "-011", false},
    {"00_" TP_TRACE "-" TP_SPAN "-01", false},
    {"00-" TP_TRACE "_" TP_SPAN "-01", false},
    {"00-" TP_TRACE "-" TP_SPAN "_01", false},
    {"00-4bf92f3577b34da6a3ce929d0e0e473z-" TP_SPAN "-01", false},
    {"00-" TP_TRACE "-00f067aa0ba902bz-01", false},
    {"00-" TP_TRACE "-" TP_SPAN "-0z", false},
    {"00-" TP_TRACE "-" TP_SPAN "-01\n", false},
};

static void test_traceparent_cases(void) {
    for (size_t i = 0; i < sizeof traceparent_cases / sizeof traceparent_cases[0]; i++) {
        const tp_case *tc = &traceparent_cases[i];
        basalt_traceparent tp;
        bool got = basalt_traceparent_parse(tc->header, &tp);
        if (got != tc->valid) {
            fprintf(stderr, "  traceparent \"%s\": expected %s\n", tc->header,
                    tc->valid ? "valid" : "invalid");
            CHECK(got == tc->valid);
        }
    }
    CHECK(!basalt_traceparent_parse(NULL, NULL));
}

static void test_traceparent_fields_and_format_roundtrip(void) {
    basalt_traceparent tp;
    CHECK(basalt_traceparent_parse("00-" TP_TRACE "-" TP_SPAN "-03", &tp));
    uint8_t tid[16], sid[8];
    CHECK(basalt_hex_decode(TP_TRACE, 16, tid));
    CHECK(basalt_hex_decode(TP_SPAN, 8, sid));
    CHECK(memcmp(tp.trace_id, tid, 16) == 0);
    CHECK(memcmp(tp.span_id, sid, 8) == 0);
    CHECK_INT(tp.flags, 3);
    char out[56];
    basalt_traceparent_format(tp.trace_id, tp.span_id, tp.flags, out);
    CHECK_STR(out, "00-" TP_TRACE "-" TP_SPAN "-03");
    CHECK_INT(strlen(out), 55);
    /* A future version parses as its version-00 prefix. */
    CHECK(basalt_traceparent_parse("cc-" TP_TRACE "-" TP_SPAN "-01-xyz", &tp));
    CHECK(memcmp(tp.trace_id, tid, 16) == 0);
    CHECK_INT(tp.flags, 1);
}

typedef struct str_case {
    const char *header;
    bool valid;
} str_case;

static const str_case tracestate_cases[] = {
    {"", true},
    {"rojo=00f067aa0ba902b7", true},
    {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
    {"rojo=00f067aa0ba902b7 , \tcongo=t61rcWkgMzE ", true},
    {"rojo=1,,congo=2", true}, /* empty members are allowed */
    {" , ,rojo=1, ", true},
    {"fw529a3039@dt=ZmFzdCB3b3JrZXI", true}, /* multi-tenant key */
    {"1tenant@sys=v", true},                 /* tenant ids may start with a digit */
    {"a_-*/9=v", true},
    {"k=va lue", true}, /* inner spaces are chr */
    {"k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", true},
    {"Rojo=1", false},  /* uppercase key */
    {"1rojo=1", false}, /* a simple key starts with lcalpha */
    {"rojo", false},
    {"rojo=", false}, /* a value has at least one char */
    {"=1", false},
    {"rojo=1=2", false}, /* '=' is not allowed in a value */
    {"rojo=a\x01", false},
    {"rojo=\xc3\xa9", false}, /* non-ASCII */
    {"tenant@Sys=v", false},
    {"tenant@1sys=v", false}, /* a system id starts with lcalpha */
    {"tenant@=v", false},
    {"@sys=v", false},
    {"t@s@x=v", false},
    {"tenant@abcdefghijklmno=v", false}, /* system id > 14 chars */
    {"ro jo=1", false},
    {"rojo=1,rojo=2", false}, /* duplicate keys */
};

static void test_tracestate_cases(void) {
    for (size_t i = 0; i < sizeof tracestate_cases / sizeof tracestate_cases[0]; i++) {
        const str_case *tc = &tracestate_cases[i];
        bool got = basalt_tracestate_valid(tc->header);
        if (got != tc->valid) {
            fprintf(stderr, "  tracestate \"%s\": expected %s\n", tc->header,
                    tc->valid ? "valid" : "invalid");
            CHECK(got == tc->valid);
        }
    }
    CHECK(!basalt_tracestate_valid(NULL));
}

/* Builds "k0=v,k1=v,..." with n members into buf. */
static void tracestate_n(char *buf, size_t cap, int n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%sk%d=v", i ? "," : "", i);
}

static void test_tracestate_limits(void) {
    char buf[1024];
    tracestate_n(buf, sizeof buf, 32);
    CHECK(basalt_tracestate_valid(buf));
    tracestate_n(buf, sizeof buf, 33);
    CHECK(!basalt_tracestate_valid(buf));

    /* A simple key of 256 chars is the longest; values up to 256 chars. */
    char key[300], val[300], hdr[700];
    memset(key, 'a', 256);
    key[256] = '\0';
    snprintf(hdr, sizeof hdr, "%s=v", key);
    CHECK(basalt_tracestate_valid(hdr));
    memset(key, 'a', 257);
    key[257] = '\0';
    snprintf(hdr, sizeof hdr, "%s=v", key);
    CHECK(!basalt_tracestate_valid(hdr));
    memset(val, 'x', 256);
    val[256] = '\0';
    snprintf(hdr, sizeof hdr, "k=%s", val);
    CHECK(basalt_tracestate_valid(hdr));
    memset(val, 'x', 257);
    val[257] = '\0';
    snprintf(hdr, sizeof hdr, "k=%s", val);
    CHECK(!basalt_tracestate_valid(hdr));
}

static const str_case baggage_cases[] = {
    {"userId=alice", true},
    {"userId=alice,serverNode=DF%2028,isProduction=false", true},
    {"userId = alice , serverNode=DF28", true},
    {"k=", true},       /* an empty value */
    {"k=v;prop", true}, /* a property without value */
    {"k=v;p1=x;p2 ; p3 = y", true},
    {"k=a=b", true},                  /* '=' is a baggage-octet */
    {"k=%E2%82%AC", true},            /* percent-encoded UTF-8 */
    {"!#$&'*+-.^_`|~09azAZ=v", true}, /* every tchar */
    {"", false},
    {"k", false},
    {"=v", false},
    {"k=v,", false}, /* empty member */
    {",k=v", false},
    {"k=v,,j=w", false},
    {"k=v w", false}, /* whitespace inside a value */
    {"k=\"v\"", false},
    {"k=a\\b", false},
    {"k=\xc3\xa9", false}, /* non-ASCII must be percent-encoded */
    {"k=50%", false},      /* a bare '%' */
    {"k=%2", false},
    {"k=%zz", false},
    {"k=%g0", false},
    {"k y=v", false},
    {"k(=v", false}, /* '(' is not a tchar */
    {"k=v;", false}, /* empty property */
    {"k=v;=x", false},
    {"k=v;p=a b", false},
};

static void test_baggage_cases(void) {
    for (size_t i = 0; i < sizeof baggage_cases / sizeof baggage_cases[0]; i++) {
        const str_case *tc = &baggage_cases[i];
        bool got = basalt_baggage_valid(tc->header);
        if (got != tc->valid) {
            fprintf(stderr, "  baggage \"%s\": expected %s\n", tc->header,
                    tc->valid ? "valid" : "invalid");
            CHECK(got == tc->valid);
        }
    }
    CHECK(!basalt_baggage_valid(NULL));
}

static void test_baggage_limits(void) {
    /* 180 members is the maximum. */
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (b == NULL) return;
    for (int i = 0; i < 180; i++)
        len += (size_t)snprintf(b + len, cap - len, "%sk%d=v", i ? "," : "", i);
    CHECK(basalt_baggage_valid(b));
    snprintf(b + len, cap - len, ",k180=v");
    CHECK(!basalt_baggage_valid(b));
    free(b);

    /* 8192 bytes is the maximum. */
    b = malloc(8194);
    if (b == NULL) return;
    memcpy(b, "k=", 2);
    memset(b + 2, 'x', 8190);
    b[8192] = '\0';
    CHECK(basalt_baggage_valid(b));
    b[8192] = 'x';
    b[8193] = '\0';
    CHECK(!basalt_baggage_valid(b));
    free(b);
}

/* ---- extract / inject against the engine ------------------------------------- */

static basalt_exporter *mem;

/* Drops the memory exporter. Cleared first: its records keep their pipeline
 * (and so this exporter) alive, a cycle only clearing breaks. */
static void drop_mem(void) {
    if (mem == NULL) return;
    basalt_memory_exporter_clear(mem);
    basalt_exporter_release(mem);
    mem = NULL;
}

static void setup(void) {
    drop_mem();
    mem = basalt_memory_exporter_new();
    basalt_exporter *list[1] = {mem};
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = list;
    cfg.nexporters = 1;
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));
}

/* Collects injected headers. */
typedef struct headers {
    int n;
    char name[4][32];
    char value[4][512];
} headers;

static void collect(void *ud, const char *name, const char *value) {
    headers *h = ud;
    if (h->n >= 4) {
        h->n++;
        return;
    }
    snprintf(h->name[h->n], sizeof h->name[0], "%s", name);
    snprintf(h->value[h->n], sizeof h->value[0], "%s", value);
    h->n++;
}

static const char *header(const headers *h, const char *name) {
    for (int i = 0; i < h->n && i < 4; i++)
        if (strcmp(h->name[i], name) == 0) return h->value[i];
    return NULL;
}

static void test_extract_rejects_invalid_traceparent(void) {
    CHECK(basalt_extract(NULL, "rojo=1", "k=v") == NULL);
    CHECK(basalt_extract("", NULL, NULL) == NULL);
    CHECK(basalt_extract("00-" TP_TRACE "-0000000000000000-01", NULL, NULL) == NULL);
    CHECK(basalt_extract("00-4BF92F3577B34DA6A3CE929D0E0E4736-" TP_SPAN "-01", NULL, NULL) == NULL);
}

static void test_extract_then_trace_continues_remote_trace(void) {
    setup();
    basalt_ctx *remote = basalt_extract(TP_VALID, "rojo=00f067aa0ba902b7", "userId=alice");
    CHECK(remote != NULL);
    basalt_trace_opts t = {.name = "handler", .feature_slug = "api", .parent = remote};
    basalt_ctx *rc = NULL;
    basalt_error err;
    basalt_span *root = basalt_trace_start(&t, &rc, &err);
    CHECK(root != NULL);
    basalt_span_end(root, 0);
    basalt_span_release(root);
    basalt_ctx_release(rc);
    basalt_ctx_release(remote);

    const basalt_span_record *recs[4];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 4);
    CHECK_INT(n, 1);
    if (n != 1) return;
    uint8_t tid[16], sid[8];
    basalt_hex_decode(TP_TRACE, 16, tid);
    basalt_hex_decode(TP_SPAN, 8, sid);
    CHECK(memcmp(recs[0]->trace_id, tid, 16) == 0);
    CHECK(recs[0]->has_parent);
    CHECK(recs[0]->parent_is_remote);
    CHECK(memcmp(recs[0]->parent_span_id, sid, 8) == 0);
    CHECK(memcmp(recs[0]->span_id, sid, 8) != 0);
    const basalt_value *v = basalt_record_attr(recs[0], BASALT_ATTR_ROOT);
    CHECK(v && v->type == BASALT_VAL_BOOL && v->u.b);
    basalt_record_release(recs[0]);
}

static void test_invalid_traceparent_starts_new_trace(void) {
    setup();
    basalt_ctx *remote = basalt_extract("00-" TP_TRACE "-" TP_SPAN "-01-x", NULL, NULL);
    CHECK(remote == NULL);
    basalt_trace_opts t = {.name = "handler", .feature_slug = "api", .parent = remote};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_span_end(root, 0);
    basalt_span_release(root);
    basalt_ctx_release(rc);
    const basalt_span_record *recs[2];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 2);
    CHECK_INT(n, 1);
    if (n != 1) return;
    uint8_t tid[16];
    basalt_hex_decode(TP_TRACE, 16, tid);
    CHECK(memcmp(recs[0]->trace_id, tid, 16) != 0);
    CHECK(!recs[0]->has_parent);
    basalt_record_release(recs[0]);
}

static void test_inject_writes_headers_for_live_span(void) {
    setup();
    basalt_ctx *remote = basalt_extract(TP_VALID, " rojo=1 , congo=2 ", "userId=alice;p");
    CHECK(remote != NULL);
    basalt_trace_opts t = {.name = "handler", .feature_slug = "api", .parent = remote};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_span_opts o = {.name = "call", .kind = BASALT_KIND_TOOL, .parent = rc};
    basalt_ctx *cc = NULL;
    basalt_span *child = basalt_span_start(&o, &cc, NULL);
    CHECK(child != NULL);

    headers h = {0};
    CHECK(basalt_inject(cc, collect, &h));
    CHECK_INT(h.n, 3);
    uint8_t sid[8];
    char hex[17], want[56];
    basalt_span_id(child, sid);
    basalt_hex_encode(sid, 8, hex);
    snprintf(want, sizeof want, "00-%s-%s-01", TP_TRACE, hex);
    CHECK_STR(header(&h, "traceparent"), want);
    CHECK_STR(header(&h, "tracestate"), "rojo=1 , congo=2");
    CHECK_STR(header(&h, "baggage"), "userId=alice;p");

    /* The injected header parses back to the same ids. */
    basalt_traceparent tp;
    CHECK(basalt_traceparent_parse(header(&h, "traceparent"), &tp));
    CHECK(memcmp(tp.span_id, sid, 8) == 0);

    basalt_span_end(child, 0);
    basalt_span_end(root, 0);
    basalt_span_release(child);
    basalt_span_release(root);
    basalt_ctx_release(cc);
    basalt_ctx_release(rc);
    basalt_ctx_release(remote);
}

static void test_inject_local_trace_without_tracestate_or_baggage(void) {
    setup();
    basalt_trace_opts t = {.name = "root", .feature_slug = "api"};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    CHECK(root != NULL);
    headers h = {0};
    CHECK(basalt_inject(rc, collect, &h));
    CHECK_INT(h.n, 1);
    uint8_t tid[16], sid[8];
    char tp[56];
    basalt_span_trace_id(root, tid);
    basalt_span_id(root, sid);
    basalt_traceparent_format(tid, sid, 0x01, tp);
    CHECK_STR(header(&h, "traceparent"), tp);
    CHECK(header(&h, "tracestate") == NULL && header(&h, "baggage") == NULL);
    basalt_span_end(root, 0);
    basalt_span_release(root);
    basalt_ctx_release(rc);
}

static void test_invalid_tracestate_and_baggage_dropped_alone(void) {
    basalt_ctx *c = basalt_extract(TP_VALID, "Bad=1", "k=v w");
    CHECK(c != NULL);
    headers h = {0};
    CHECK(basalt_inject(c, collect, &h));
    CHECK_INT(h.n, 1);
    CHECK_STR(header(&h, "traceparent"), TP_VALID);
    basalt_ctx_release(c);

    /* Each is judged on its own: a valid baggage survives a bad tracestate. */
    c = basalt_extract(TP_VALID, "rojo=1,rojo=2", "k=v");
    h.n = 0;
    CHECK(basalt_inject(c, collect, &h));
    CHECK_INT(h.n, 2);
    CHECK(header(&h, "tracestate") == NULL);
    CHECK_STR(header(&h, "baggage"), "k=v");
    basalt_ctx_release(c);

    /* An extracted context injects itself: flags become 01. */
    c = basalt_extract("00-" TP_TRACE "-" TP_SPAN "-00", "rojo=1", NULL);
    h.n = 0;
    CHECK(basalt_inject(c, collect, &h));
    CHECK_INT(h.n, 2);
    CHECK_STR(header(&h, "traceparent"), TP_VALID);
    CHECK_STR(header(&h, "tracestate"), "rojo=1");
    basalt_ctx_release(c);
}

static void test_inject_without_span_writes_nothing(void) {
    headers h = {0};
    CHECK(!basalt_inject(NULL, collect, &h));
    CHECK_INT(h.n, 0);
    basalt_ctx *empty = basalt_ctx_with_evaluators(NULL, NULL, 0);
    CHECK(!basalt_inject(empty, collect, &h));
    CHECK_INT(h.n, 0);
    basalt_ctx_release(empty);
}

static void cleanup(void) {
    basalt_shutdown(1000);
    drop_mem();
}

TEST_MAIN(TEST_CASE(test_traceparent_cases),
          TEST_CASE(test_traceparent_fields_and_format_roundtrip), TEST_CASE(test_tracestate_cases),
          TEST_CASE(test_tracestate_limits), TEST_CASE(test_baggage_cases),
          TEST_CASE(test_baggage_limits), TEST_CASE(test_extract_rejects_invalid_traceparent),
          TEST_CASE(test_extract_then_trace_continues_remote_trace),
          TEST_CASE(test_invalid_traceparent_starts_new_trace),
          TEST_CASE(test_inject_writes_headers_for_live_span),
          TEST_CASE(test_inject_local_trace_without_tracestate_or_baggage),
          TEST_CASE(test_invalid_tracestate_and_baggage_dropped_alone),
          TEST_CASE(test_inject_without_span_writes_nothing), TEST_CASE(cleanup))
