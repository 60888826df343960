/* The OTLP JSON encoder: structure, value types, escaping, UTF-8 repair,
 * non-finite doubles, ids, grouping by scope, and the official schema check
 * (proto-check.js --strict) when node is there. */
#include "basalt/otlp_json.h"
#include "check.h"
#include "sink.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

static const uint8_t TID[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t SID[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static const uint8_t PID[8] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04};

static basalt_span_record base_record(const char *name) {
    basalt_span_record r;
    memset(&r, 0, sizeof r);
    memcpy(r.trace_id, TID, 16);
    memcpy(r.span_id, SID, 8);
    r.name = name;
    r.kind = BASALT_OTEL_INTERNAL;
    r.trace_flags = 1;
    r.scope_name = "qa-trace";
    r.scope_version = "1.0.0";
    r.start_ns = 1795317913713000000ull;
    r.end_ns = 1795317913713169451ull;
    return r;
}

static cJSON *encode(const basalt_resource *res, const basalt_span_record *const *recs, size_t n,
                     basalt_buf *keep) {
    basalt_buf b = {0};
    CHECK(basalt_otlp_encode(&b, res, recs, n));
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    if (j == NULL) fprintf(stderr, "  not JSON: %.*s\n", (int)b.len, b.data);
    CHECK(j != NULL);
    if (keep)
        *keep = b;
    else
        basalt_buf_free(&b);
    return j;
}

static cJSON *first_span(cJSON *req) {
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    return cJSON_GetArrayItem(cJSON_GetObjectItem(ss, "spans"), 0);
}

static const char *sval(cJSON *o, const char *k) {
    cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The AnyValue of attribute key in an attributes array. */
static cJSON *attr(cJSON *attrs, const char *key) {
    cJSON *kv;
    cJSON_ArrayForEach(kv, attrs) {
        const char *k = sval(kv, "key");
        if (k && strcmp(k, key) == 0) return cJSON_GetObjectItem(kv, "value");
    }
    return NULL;
}

static void test_span_fields_ids_and_times(void) {
    basalt_span_record root = base_record("QA System");
    basalt_span_record child = base_record("search_knowledge_base");
    child.has_parent = true;
    memcpy(child.parent_span_id, PID, 8);
    child.kind = BASALT_OTEL_CLIENT;
    const basalt_span_record *recs[2] = {&root, &child};
    cJSON *j = encode(NULL, recs, 2, NULL);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cJSON *scope = cJSON_GetObjectItem(ss, "scope");
    CHECK_STR(sval(scope, "name"), "qa-trace");
    CHECK_STR(sval(scope, "version"), "1.0.0");
    cJSON *spans = cJSON_GetObjectItem(ss, "spans");
    CHECK_INT(cJSON_GetArraySize(spans), 2);
    cJSON *s0 = cJSON_GetArrayItem(spans, 0), *s1 = cJSON_GetArrayItem(spans, 1);
    CHECK_STR(sval(s0, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
    CHECK_STR(sval(s0, "spanId"), "00f067aa0ba902b7");
    CHECK(cJSON_GetObjectItem(s0, "parentSpanId") == NULL);
    CHECK_STR(sval(s1, "parentSpanId"), "deadbeef01020304");
    CHECK_STR(sval(s0, "name"), "QA System");
    CHECK_INT(cJSON_GetObjectItem(s0, "kind")->valueint, 1);
    CHECK_INT(cJSON_GetObjectItem(s1, "kind")->valueint, 3);
    CHECK(cJSON_IsNumber(cJSON_GetObjectItem(s0, "kind")));
    CHECK_STR(sval(s0, "startTimeUnixNano"), "1795317913713000000");
    CHECK_STR(sval(s0, "endTimeUnixNano"), "1795317913713169451");
    CHECK_INT(cJSON_GetObjectItem(s0, "flags")->valueint, 0x101);
    CHECK(cJSON_GetObjectItem(s0, "status") == NULL); /* unset: default omitted */
    CHECK(cJSON_GetObjectItem(s0, "droppedAttributesCount") == NULL);
    cJSON_Delete(j);
}

/* Times are written as decimal strings exactly: fractions with leading zeros,
 * times under one second, whole seconds, the largest value, and a batch whose
 * spans cross a second (the encoder keeps the seconds' digits between spans). */
static void test_times_in_every_shape(void) {
    static const struct {
        uint64_t ns;
        const char *text;
    } cases[] = {
        {1795317913000000001ull, "1795317913000000001"},
        {1795317913000000000ull, "1795317913000000000"},
        {1795317913099000010ull, "1795317913099000010"},
        {1795317914000000999ull, "1795317914000000999"},
        {999999999ull, "999999999"},
        {1000000000ull, "1000000000"},
        {42ull, "42"},
        {18446744073709551615ull, "18446744073709551615"},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    basalt_span_record recs[N];
    const basalt_span_record *ptrs[N];
    for (int i = 0; i < N; i++) {
        recs[i] = base_record("t");
        recs[i].start_ns = cases[i].ns;
        recs[i].end_ns = cases[(i + 1) % N].ns; /* a different second each time */
        ptrs[i] = &recs[i];
    }
    cJSON *j = encode(NULL, ptrs, N, NULL);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cJSON *spans = cJSON_GetObjectItem(ss, "spans");
    for (int i = 0; i < N; i++) {
        cJSON *sp = cJSON_GetArrayItem(spans, i);
        CHECK_STR(sval(sp, "startTimeUnixNano"), cases[i].text);
        CHECK_STR(sval(sp, "endTimeUnixNano"), cases[(i + 1) % N].text);
    }
    cJSON_Delete(j);
}

static void test_attribute_value_types(void) {
    basalt_value arr[3] = {basalt_v_str("stop"), basalt_v_str("length"), basalt_v_str("x")};
    basalt_value ints[2] = {basalt_v_int(1), basalt_v_int(-2)};
    basalt_kv inner[2] = {{"a", basalt_v_int(1)}, {"b", basalt_v_bool(false)}};
    basalt_value kvv;
    kvv.type = BASALT_VAL_KVLIST;
    kvv.u.kv.items = inner;
    kvv.u.kv.n = 2;
    basalt_kv attrs[] = {
        {"s", basalt_v_str("hello")},        {"i", basalt_v_int(INT64_MAX)},
        {"imin", basalt_v_int(INT64_MIN)},   {"zero", basalt_v_int(0)},
        {"d", basalt_v_double(0.1)},         {"d2", basalt_v_double(2.0)},
        {"dbig", basalt_v_double(1e300)},    {"dtiny", basalt_v_double(-5e-324)},
        {"t", basalt_v_bool(true)},          {"f", basalt_v_bool(false)},
        {"arr", basalt_v_array(arr, 3)},     {"iarr", basalt_v_array(ints, 2)},
        {"empty", basalt_v_array(NULL, 0)},  {"kv", kvv},
        {"none", {.type = BASALT_VAL_NONE}}, {"", basalt_v_str("no key")},
    };
    basalt_span_record r = base_record("types");
    r.attrs = attrs;
    r.nattrs = sizeof attrs / sizeof attrs[0];
    r.dropped_attrs = 3;
    const basalt_span_record *recs[1] = {&r};
    cJSON *j = encode(NULL, recs, 1, NULL);
    cJSON *s = first_span(j);
    cJSON *a = cJSON_GetObjectItem(s, "attributes");
    CHECK_INT(cJSON_GetArraySize(a), 14); /* NONE and the empty key are left out */
    CHECK_STR(sval(attr(a, "s"), "stringValue"), "hello");
    CHECK_STR(sval(attr(a, "i"), "intValue"), "9223372036854775807");
    CHECK_STR(sval(attr(a, "imin"), "intValue"), "-9223372036854775808");
    CHECK_STR(sval(attr(a, "zero"), "intValue"), "0");
    CHECK(cJSON_GetObjectItem(attr(a, "d"), "doubleValue")->valuedouble == 0.1);
    CHECK(cJSON_GetObjectItem(attr(a, "d2"), "doubleValue")->valuedouble == 2.0);
    CHECK(cJSON_GetObjectItem(attr(a, "dbig"), "doubleValue")->valuedouble == 1e300);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(attr(a, "t"), "boolValue")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(attr(a, "f"), "boolValue")));
    cJSON *av = cJSON_GetObjectItem(cJSON_GetObjectItem(attr(a, "arr"), "arrayValue"), "values");
    CHECK_INT(cJSON_GetArraySize(av), 3);
    CHECK_STR(sval(cJSON_GetArrayItem(av, 1), "stringValue"), "length");
    cJSON *iv = cJSON_GetObjectItem(cJSON_GetObjectItem(attr(a, "iarr"), "arrayValue"), "values");
    CHECK_STR(sval(cJSON_GetArrayItem(iv, 1), "intValue"), "-2");
    cJSON *ev = cJSON_GetObjectItem(cJSON_GetObjectItem(attr(a, "empty"), "arrayValue"), "values");
    CHECK(cJSON_IsArray(ev) && cJSON_GetArraySize(ev) == 0);
    cJSON *kl = cJSON_GetObjectItem(cJSON_GetObjectItem(attr(a, "kv"), "kvlistValue"), "values");
    CHECK_STR(sval(attr(kl, "a"), "intValue"), "1");
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(attr(kl, "b"), "boolValue")));
    CHECK(attr(a, "none") == NULL);
    CHECK_INT(cJSON_GetObjectItem(s, "droppedAttributesCount")->valueint, 3);
    cJSON_Delete(j);
}

/* Every finite double reads back bit for bit; the text is the shortest of 15-17
 * digits. */
static void test_doubles_round_trip_and_non_finite(void) {
    static const double cases[] = {0.1,  1.0 / 3.0, 123456789.123,       1e-300, DBL_MAX, DBL_MIN,
                                   -2.5, 5e-324,    0.30000000000000004, 1e21,   -0.0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        basalt_kv kv = {"d", basalt_v_double(cases[i])};
        basalt_span_record r = base_record("d");
        r.attrs = &kv;
        r.nattrs = 1;
        const basalt_span_record *recs[1] = {&r};
        basalt_buf b = {0};
        CHECK(basalt_otlp_encode(&b, NULL, recs, 1));
        const char *p = strstr(basalt_buf_cstr(&b), "\"doubleValue\":");
        CHECK(p != NULL);
        if (p) {
            double back = strtod(p + 14, NULL);
            CHECK(memcmp(&back, &cases[i], sizeof back) == 0);
        }
        basalt_buf_free(&b);
    }
    basalt_buf b = {0};
    basalt_kv kv = {"d", basalt_v_double(0.1)};
    basalt_span_record r = base_record("d");
    r.attrs = &kv;
    r.nattrs = 1;
    const basalt_span_record *recs[1] = {&r};
    CHECK(basalt_otlp_encode(&b, NULL, recs, 1));
    CHECK(strstr(basalt_buf_cstr(&b), "\"doubleValue\":0.1}") != NULL);
    basalt_buf_free(&b);

    basalt_kv nf[3] = {{"nan", basalt_v_double(NAN)},
                       {"inf", basalt_v_double(INFINITY)},
                       {"ninf", basalt_v_double(-INFINITY)}};
    r.attrs = nf;
    r.nattrs = 3;
    cJSON *j = encode(NULL, recs, 1, NULL);
    cJSON *a = cJSON_GetObjectItem(first_span(j), "attributes");
    CHECK_STR(sval(attr(a, "nan"), "doubleValue"), "NaN");
    CHECK_STR(sval(attr(a, "inf"), "doubleValue"), "Infinity");
    CHECK_STR(sval(attr(a, "ninf"), "doubleValue"), "-Infinity");
    cJSON_Delete(j);
}

static void test_escaping_and_utf8_repair(void) {
    basalt_kv attrs[] = {
        {"q", basalt_v_str("say \"hi\"\\ now")},
        {"ctl", basalt_v_str("a\nb\tc\x01")},
        {"utf8", basalt_v_str("caf\xc3\xa9 \xe2\x82\xac")},
        {"bad", basalt_v_str("ok\xff\xfe!")},
        {"trunc", basalt_v_str("x\xe2\x82")},
        {"key \"quoted\"", basalt_v_str("v")},
    };
    basalt_span_record r = base_record("na\xffme");
    r.attrs = attrs;
    r.nattrs = sizeof attrs / sizeof attrs[0];
    r.status_code = BASALT_STATUS_ERROR;
    r.status_message = "boom \"x\"";
    const basalt_span_record *recs[1] = {&r};
    basalt_buf raw = {0};
    cJSON *j = encode(NULL, recs, 1, &raw);
    cJSON *s = first_span(j);
    cJSON *a = cJSON_GetObjectItem(s, "attributes");
    CHECK_STR(sval(attr(a, "q"), "stringValue"), "say \"hi\"\\ now");
    CHECK_STR(sval(attr(a, "ctl"), "stringValue"), "a\nb\tc\x01");
    CHECK_STR(sval(attr(a, "utf8"), "stringValue"), "caf\xc3\xa9 \xe2\x82\xac");
    CHECK_STR(sval(attr(a, "bad"), "stringValue"), "ok\xef\xbf\xbd\xef\xbf\xbd!");
    /* A cut-off sequence becomes replacement characters (how many is utf8.c's call). */
    const char *tr = sval(attr(a, "trunc"), "stringValue");
    basalt_buf scratch = {0};
    CHECK(tr && strncmp(tr, "x\xef\xbf\xbd", 4) == 0);
    CHECK(tr && basalt_utf8_repair(tr, strlen(tr), &scratch));
    basalt_buf_free(&scratch);
    CHECK_STR(sval(attr(a, "key \"quoted\""), "stringValue"), "v");
    CHECK_STR(sval(s, "name"), "na\xef\xbf\xbdme");
    cJSON *st = cJSON_GetObjectItem(s, "status");
    CHECK_INT(cJSON_GetObjectItem(st, "code")->valueint, 2);
    CHECK_STR(sval(st, "message"), "boom \"x\"");
    /* Raw bytes: control characters escaped, UTF-8 kept as is. */
    const char *txt = basalt_buf_cstr(&raw);
    CHECK(strstr(txt, "a\\nb\\tc\\u0001") != NULL);
    CHECK(strstr(txt, "caf\xc3\xa9") != NULL);
    basalt_buf_free(&raw);
    cJSON_Delete(j);
}

static void test_events_resource_and_remote_parent(void) {
    basalt_kv evattrs[2] = {{"exception.type", basalt_v_str("error")},
                            {"exception.message", basalt_v_str("x")}};
    basalt_event evs[2] = {{"exception", 1795317913713100000ull, evattrs, 2},
                           {"mark", 1795317913713100001ull, NULL, 0}};
    basalt_span_record r = base_record("ev");
    r.events = evs;
    r.nevents = 2;
    r.dropped_events = 1;
    r.has_parent = true;
    r.parent_is_remote = true;
    memcpy(r.parent_span_id, PID, 8);
    r.trace_state = "congo=t61rcWkgMzE";
    r.status_code = BASALT_STATUS_OK;
    basalt_kv res_attrs[2] = {{"service.name", basalt_v_str("qa-trace-basalt-lua")},
                              {"telemetry.sdk.language", basalt_v_str("lua")}};
    basalt_resource res = {res_attrs, 2};
    const basalt_span_record *recs[1] = {&r};
    cJSON *j = encode(&res, recs, 1, NULL);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *ra = cJSON_GetObjectItem(cJSON_GetObjectItem(rs, "resource"), "attributes");
    CHECK_STR(sval(attr(ra, "service.name"), "stringValue"), "qa-trace-basalt-lua");
    CHECK_STR(sval(attr(ra, "telemetry.sdk.language"), "stringValue"), "lua");
    cJSON *s = first_span(j);
    cJSON *e = cJSON_GetObjectItem(s, "events");
    CHECK_INT(cJSON_GetArraySize(e), 2);
    cJSON *e0 = cJSON_GetArrayItem(e, 0);
    CHECK_STR(sval(e0, "name"), "exception");
    CHECK_STR(sval(e0, "timeUnixNano"), "1795317913713100000");
    CHECK_STR(sval(attr(cJSON_GetObjectItem(e0, "attributes"), "exception.type"), "stringValue"),
              "error");
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(e, 1), "attributes") == NULL);
    CHECK_INT(cJSON_GetObjectItem(s, "droppedEventsCount")->valueint, 1);
    CHECK_INT(cJSON_GetObjectItem(s, "flags")->valueint, 0x301);
    CHECK_STR(sval(s, "traceState"), "congo=t61rcWkgMzE");
    cJSON *st = cJSON_GetObjectItem(s, "status");
    CHECK_INT(cJSON_GetObjectItem(st, "code")->valueint, 1);
    CHECK(cJSON_GetObjectItem(st, "message") == NULL);
    cJSON_Delete(j);
}

static void test_records_grouped_by_scope(void) {
    basalt_span_record a1 = base_record("a1"), b1 = base_record("b1"), a2 = base_record("a2"),
                       c1 = base_record("c1");
    a1.scope_name = a2.scope_name = "alpha";
    a1.scope_version = NULL;
    a2.scope_version = NULL;
    b1.scope_name = "beta";
    b1.scope_version = "2";
    c1.scope_name = "alpha";
    c1.scope_version = "3"; /* same name, another version: another scope */
    const basalt_span_record *recs[4] = {&a1, &b1, &a2, &c1};
    cJSON *j = encode(NULL, recs, 4, NULL);
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *sss = cJSON_GetObjectItem(rs, "scopeSpans");
    CHECK_INT(cJSON_GetArraySize(sss), 3);
    cJSON *g0 = cJSON_GetArrayItem(sss, 0);
    CHECK_STR(sval(cJSON_GetObjectItem(g0, "scope"), "name"), "alpha");
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(g0, "scope"), "version") == NULL);
    cJSON *sp = cJSON_GetObjectItem(g0, "spans");
    CHECK_INT(cJSON_GetArraySize(sp), 2);
    CHECK_STR(sval(cJSON_GetArrayItem(sp, 0), "name"), "a1");
    CHECK_STR(sval(cJSON_GetArrayItem(sp, 1), "name"), "a2");
    cJSON *g1 = cJSON_GetArrayItem(sss, 1);
    CHECK_STR(sval(cJSON_GetObjectItem(g1, "scope"), "version"), "2");
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(g1, "spans")), 1);
    cJSON *g2 = cJSON_GetArrayItem(sss, 2);
    CHECK_STR(sval(cJSON_GetObjectItem(g2, "scope"), "version"), "3");
    cJSON_Delete(j);

    /* No records: still a valid request. */
    j = encode(NULL, NULL, 0, NULL);
    rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(rs, "scopeSpans")), 0);
    cJSON_Delete(j);
}

/* One request with every feature goes through the official schema check. */
static void test_schema_check_strict(void) {
    if (!sink_available()) {
        fprintf(stderr, "  skipped: node or the sink packages are missing\n");
        return;
    }
    basalt_value arr[2] = {basalt_v_double(1.5), basalt_v_double(NAN)};
    basalt_kv inner[1] = {{"k", basalt_v_str("v\xff")}};
    basalt_value kvv;
    kvv.type = BASALT_VAL_KVLIST;
    kvv.u.kv.items = inner;
    kvv.u.kv.n = 1;
    basalt_kv attrs[] = {{"s", basalt_v_str("a\"b\n")},
                         {"i", basalt_v_int(-7)},
                         {"d", basalt_v_double(INFINITY)},
                         {"b", basalt_v_bool(true)},
                         {"arr", basalt_v_array(arr, 2)},
                         {"empty", basalt_v_array(NULL, 0)},
                         {"kv", kvv}};
    basalt_kv evattrs[1] = {{"exception.message", basalt_v_str("bad \x80 byte")}};
    basalt_event ev = {"exception", 1795317913713100000ull, evattrs, 1};
    basalt_span_record r1 = base_record("root"), r2 = base_record("child"),
                       r3 = base_record("other-scope");
    r1.attrs = attrs;
    r1.nattrs = sizeof attrs / sizeof attrs[0];
    r1.dropped_attrs = 2;
    r1.status_code = BASALT_STATUS_ERROR;
    r1.status_message = "boom";
    r1.events = &ev;
    r1.nevents = 1;
    r2.has_parent = true;
    r2.parent_is_remote = true;
    memcpy(r2.parent_span_id, PID, 8);
    r2.trace_state = "a=b";
    r2.status_code = BASALT_STATUS_OK;
    r2.kind = BASALT_OTEL_CONSUMER;
    r3.scope_name = "basalt.observability";
    r3.scope_version = NULL;
    basalt_kv res_attrs[1] = {{"service.name", basalt_v_str("test")}};
    basalt_resource res = {res_attrs, 1};
    const basalt_span_record *recs[3] = {&r1, &r2, &r3};
    basalt_buf b = {0};
    CHECK(basalt_otlp_encode(&b, &res, recs, 3));
    char path[64];
    snprintf(path, sizeof path, "/tmp/basalt-otlp-%d.json", (int)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(b.data, 1, b.len, f);
        fclose(f);
        CHECK(sink_proto_check(path));
        unlink(path);
    }
    basalt_buf_free(&b);
}

TEST_MAIN(TEST_CASE(test_span_fields_ids_and_times), TEST_CASE(test_times_in_every_shape),
          TEST_CASE(test_attribute_value_types), TEST_CASE(test_doubles_round_trip_and_non_finite),
          TEST_CASE(test_escaping_and_utf8_repair),
          TEST_CASE(test_events_resource_and_remote_parent),
          TEST_CASE(test_records_grouped_by_scope), TEST_CASE(test_schema_check_strict))
