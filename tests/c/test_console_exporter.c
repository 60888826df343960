/* Console exporter: traces printed as trees when their local root ends, with
 * kinds, durations, key attributes and errors; bounded buffering; the real
 * engine printing through it. */
#include "basalt/attrs.h"
#include "basalt/runtime.h"
#include "check.h"

#include <stdlib.h>

#define MS 1000000ull
#define T0 1700000000000000000ull

static const uint8_t TRACE_A[16] = {0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t TRACE_B[16] = {0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* A record template; attrs/events are copied by basalt_record_clone. */
static const basalt_span_record *make(const uint8_t trace[16], uint64_t id, uint64_t parent,
                                      const char *name, uint64_t start_ms, uint64_t end_us,
                                      const basalt_kv *attrs, uint32_t nattrs) {
    basalt_span_record t;
    memset(&t, 0, sizeof t);
    memcpy(t.trace_id, trace, 16);
    for (int i = 0; i < 8; i++) {
        t.span_id[i] = (uint8_t)(id >> (56 - 8 * i));
        t.parent_span_id[i] = (uint8_t)(parent >> (56 - 8 * i));
    }
    t.has_parent = parent != 0;
    t.name = name;
    t.kind = BASALT_OTEL_INTERNAL;
    t.start_ns = T0 + start_ms * MS;
    t.end_ns = t.start_ns + end_us * 1000;
    t.attrs = attrs;
    t.nattrs = nattrs;
    return basalt_record_clone(&t);
}

static void export_one(basalt_exporter *e, const basalt_span_record *r) {
    const basalt_span_record *one[1] = {r};
    CHECK(e->ops->export_spans(e, NULL, one, 1, 0) == BASALT_EXPORT_OK);
    basalt_record_release(r);
}

/* Everything written to f so far (caller frees). */
static char *slurp(FILE *f) {
    fflush(f);
    long len = ftell(f);
    char *buf = malloc((size_t)len + 1);
    if (buf == NULL) return NULL;
    rewind(f);
    size_t n = fread(buf, 1, (size_t)len, f);
    buf[n] = '\0';
    fseek(f, 0, SEEK_END);
    return buf;
}

/* Line i (0-based) of text into out; false when there is none. */
static bool line_at(const char *text, int i, char *out, size_t cap) {
    const char *p = text;
    for (; i > 0; i--) {
        p = strchr(p, '\n');
        if (p == NULL) return false;
        p++;
    }
    const char *end = strchr(p, '\n');
    if (end == NULL) return false;
    snprintf(out, cap, "%.*s", (int)(end - p), p);
    return true;
}

static int count_lines(const char *text) {
    int n = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        n++;
    return n;
}

#define CHECK_LINE(text, i, want)                                                                  \
    do {                                                                                           \
        char got_[512];                                                                            \
        CHECK_STR(line_at((text), (i), got_, sizeof got_) ? got_ : NULL, (want));                  \
    } while (0)

static void test_trace_printed_as_tree_when_root_ends(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    basalt_value evals[2] = {basalt_v_str("helpful"), basalt_v_str("toxicity")};
    basalt_kv root_attrs[] = {
        {BASALT_ATTR_SPAN_KIND, basalt_v_str("basalt_trace")},
        {BASALT_ATTR_FEATURE_SLUG, basalt_v_str("qa")},
        {BASALT_ATTR_USER_ID, basalt_v_str("u1")},
        {BASALT_ATTR_ORG_ID, basalt_v_str("org-1")},
        {BASALT_ATTR_EVALUATORS, basalt_v_array(evals, 2)},
        {BASALT_ATTR_SHOULD_EVALUATE, basalt_v_bool(true)},
    };
    /* Children inherit the propagated values; they are not repeated. */
    basalt_kv gen_attrs[] = {
        {BASALT_ATTR_SPAN_KIND, basalt_v_str("generation")},
        {BASALT_ATTR_FEATURE_SLUG, basalt_v_str("qa")},
        {BASALT_ATTR_USER_ID, basalt_v_str("u1")},
        {BASALT_ATTR_ORG_ID, basalt_v_str("org-1")},
        {BASALT_ATTR_SHOULD_EVALUATE, basalt_v_bool(true)},
    };
    basalt_kv ret_attrs[] = {
        {BASALT_ATTR_SPAN_KIND, basalt_v_str("retrieval")},
        {BASALT_ATTR_FEATURE_SLUG, basalt_v_str("qa")},
        {BASALT_ATTR_USER_ID, basalt_v_str("u2")}, /* changed: shown */
        {BASALT_ATTR_SHOULD_EVALUATE, basalt_v_bool(true)},
        {BASALT_ATTR_EVALUATORS, basalt_v_array(evals, 1)}, /* changed: shown */
    };
    basalt_kv tool_attrs[] = {{BASALT_ATTR_SPAN_KIND, basalt_v_str("tool")},
                              {BASALT_ATTR_FEATURE_SLUG, basalt_v_str("qa")}};

    /* End order: the grandchild, the later-started child, the earlier one, root. */
    basalt_span_record *g =
        (basalt_span_record *)make(TRACE_A, 4, 3, "call_tool", 3, 500, tool_attrs, 2);
    g->status_code = BASALT_STATUS_ERROR;
    export_one(e, g);
    export_one(e, make(TRACE_A, 3, 1, "llm", 2, 3000, gen_attrs, 5));
    export_one(e, make(TRACE_A, 2, 1, "search", 1, 1000, ret_attrs, 5));
    char *text = slurp(f);
    CHECK_STR(text, ""); /* nothing until the root ends */
    free(text);
    export_one(e, make(TRACE_A, 1, 0, "handle", 0, 10000, root_attrs, 6));

    text = slurp(f);
    CHECK_INT(count_lines(text), 5);
    CHECK_LINE(text, 0, "trace aa0102030405060708090a0b0c0d0e0f (4 spans)");
    CHECK_LINE(text, 1,
               "handle [basalt_trace] 10.00 ms feature=qa user=u1 org=org-1 "
               "evaluators=[helpful, toxicity] should_evaluate=true");
    CHECK_LINE(text, 2,
               "\xe2\x94\x9c\xe2\x94\x80 search [retrieval] 1.00 ms user=u2 evaluators=[helpful]");
    CHECK_LINE(text, 3, "\xe2\x94\x94\xe2\x94\x80 llm [generation] 3.00 ms");
    CHECK_LINE(text, 4, "   \xe2\x94\x94\xe2\x94\x80 call_tool [tool] 0.50 ms error");
    CHECK(strchr(text, '\033') == NULL); /* no colour into a file */
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_prompt_shown_with_its_version(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    basalt_kv gen_attrs[] = {
        {BASALT_ATTR_SPAN_KIND, basalt_v_str("generation")},
        {BASALT_ATTR_PROMPT_SLUG, basalt_v_str("qa-prompt")},
        {BASALT_ATTR_PROMPT_VERSION, basalt_v_str("1.2.0")},
    };
    basalt_kv root_attrs[] = {{BASALT_ATTR_SPAN_KIND, basalt_v_str("basalt_trace")}};
    export_one(e, make(TRACE_A, 2, 1, "llm", 1, 1000, gen_attrs, 3));
    export_one(e, make(TRACE_A, 1, 0, "handle", 0, 2000, root_attrs, 1));
    char *text = slurp(f);
    CHECK_LINE(text, 2, "\xe2\x94\x94\xe2\x94\x80 llm [generation] 1.00 ms prompt=qa-prompt@1.2.0");
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_error_message_and_exception_shown(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    basalt_kv ev_attrs[] = {{BASALT_ATTR_EXCEPTION_TYPE, basalt_v_str("IOError")},
                            {BASALT_ATTR_EXCEPTION_MESSAGE, basalt_v_str("disk full")}};
    basalt_event ev = {BASALT_EVENT_EXCEPTION, T0, ev_attrs, 2};
    basalt_event ev2 = {BASALT_EVENT_EXCEPTION, T0, ev_attrs + 1, 1};

    basalt_span_record *c = (basalt_span_record *)make(TRACE_A, 2, 1, "save", 1, 2000, NULL, 0);
    c->status_code = BASALT_STATUS_ERROR;
    c->status_message = "write failed";
    c->events = &ev;
    c->nevents = 1;
    /* The clone was made before events were set: clone again with them. */
    const basalt_span_record *c2 = basalt_record_clone(c);
    basalt_record_release(c);
    export_one(e, c2);

    /* record_exception style: the status already says the message. */
    basalt_span_record *r = (basalt_span_record *)make(TRACE_A, 1, 0, "job", 0, 5000, NULL, 0);
    r->status_code = BASALT_STATUS_ERROR;
    r->status_message = "IOError: disk full";
    r->events = &ev2;
    r->nevents = 1;
    const basalt_span_record *r2 = basalt_record_clone(r);
    basalt_record_release(r);
    export_one(e, r2);

    char *text = slurp(f);
    CHECK_LINE(text, 1, "job 5.00 ms error=\"IOError: disk full\"");
    CHECK_LINE(
        text, 2,
        "\xe2\x94\x94\xe2\x94\x80 save 2.00 ms error=\"write failed\" exception=\"disk full\"");
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_siblings_ordered_by_start_and_deep_indent(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    /* root 1 -> a(2, starts 3) with child a1(5); b(3, starts 1) ; c(4, starts 2) */
    export_one(e, make(TRACE_B, 5, 2, "a1", 4, 100, NULL, 0));
    export_one(e, make(TRACE_B, 2, 1, "a", 3, 2000, NULL, 0));
    export_one(e, make(TRACE_B, 4, 1, "c", 2, 100, NULL, 0));
    export_one(e, make(TRACE_B, 3, 1, "b", 1, 100, NULL, 0));
    export_one(e, make(TRACE_B, 1, 0, "root", 0, 9000, NULL, 0));
    char *text = slurp(f);
    CHECK_INT(count_lines(text), 6);
    CHECK_LINE(text, 1, "root 9.00 ms");
    CHECK_LINE(text, 2, "\xe2\x94\x9c\xe2\x94\x80 b 0.10 ms");
    CHECK_LINE(text, 3, "\xe2\x94\x9c\xe2\x94\x80 c 0.10 ms");
    CHECK_LINE(text, 4, "\xe2\x94\x94\xe2\x94\x80 a 2.00 ms");
    CHECK_LINE(text, 5, "   \xe2\x94\x94\xe2\x94\x80 a1 0.10 ms");
    free(text);

    /* A vertical bar continues under a child that has later siblings. */
    export_one(e, make(TRACE_A, 3, 2, "x1", 2, 100, NULL, 0));
    export_one(e, make(TRACE_A, 2, 1, "x", 1, 1000, NULL, 0));
    export_one(e, make(TRACE_A, 4, 1, "y", 3, 100, NULL, 0));
    export_one(e, make(TRACE_A, 1, 0, "top", 0, 5000, NULL, 0));
    text = slurp(f);
    CHECK_LINE(text, 7, "top 5.00 ms");
    CHECK_LINE(text, 8, "\xe2\x94\x9c\xe2\x94\x80 x 1.00 ms");
    CHECK_LINE(text, 9, "\xe2\x94\x82  \xe2\x94\x94\xe2\x94\x80 x1 0.10 ms");
    CHECK_LINE(text, 10, "\xe2\x94\x94\xe2\x94\x80 y 0.10 ms");
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_remote_parent_closes_local_root_subtree_only(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    /* Two requests continuing the same remote trace: each root prints its own. */
    export_one(e, make(TRACE_A, 0x11, 0x10, "child-1", 1, 100, NULL, 0));
    export_one(e, make(TRACE_A, 0x21, 0x20, "child-2", 1, 100, NULL, 0));
    basalt_span_record *r =
        (basalt_span_record *)make(TRACE_A, 0x10, 0x99, "req-1", 0, 1000, NULL, 0);
    r->parent_is_remote = true;
    export_one(e, r);
    char *text = slurp(f);
    CHECK_INT(count_lines(text), 3);
    CHECK_LINE(text, 0, "trace aa0102030405060708090a0b0c0d0e0f (2 spans)");
    CHECK_LINE(text, 1, "req-1 1.00 ms");
    CHECK_LINE(text, 2, "\xe2\x94\x94\xe2\x94\x80 child-1 0.10 ms");
    CHECK(strstr(text, "child-2") == NULL);
    free(text);
    /* The other request's span is an orphan now: flush shows it as incomplete. */
    CHECK(e->ops->flush(e, 0));
    text = slurp(f);
    CHECK_LINE(text, 3,
               "trace aa0102030405060708090a0b0c0d0e0f (1 span, incomplete: its root "
               "has not ended)");
    CHECK_LINE(text, 4, "child-2 0.10 ms");
    CHECK_INT(count_lines(text), 5);
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_control_characters_escaped(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    export_one(e, make(TRACE_A, 1, 0, "two\nlines\033[31m", 0, 1000, NULL, 0));
    char *text = slurp(f);
    CHECK_INT(count_lines(text), 2);
    CHECK_LINE(text, 1, "two\\nlines\\x1b[31m 1.00 ms");
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_deep_chain_drawn_flat_past_32_levels(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    /* span i+1 is the child of span i; 41 levels, the leaf at depth 40. */
    for (uint64_t i = 41; i >= 2; i--)
        export_one(e, make(TRACE_A, i, i - 1, "n", i, 10, NULL, 0));
    export_one(e, make(TRACE_A, 1, 0, "top", 0, 1000, NULL, 0));
    char *text = slurp(f);
    CHECK_INT(count_lines(text), 42);
    char want[256];
    int len = snprintf(want, sizeof want, "%s", "");
    for (int d = 1; d < 32; d++)
        len += snprintf(want + len, sizeof want - (size_t)len, "   ");
    snprintf(want + len, sizeof want - (size_t)len, "\xe2\x94\x94\xe2\x94\x80 [+8] n 0.01 ms");
    CHECK_LINE(text, 41, want);
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_buffer_is_bounded_and_shutdown_prints_orphans(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    /* A trace whose root never ends: 10000 children of a missing root. */
    for (uint64_t i = 0; i < 10000; i++)
        export_one(e, make(TRACE_A, 100 + i, 1, "leaf", i, 10, NULL, 0));
    char *text = slurp(f);
    CHECK_STR(text, "");
    free(text);
    /* One more goes over the cap: the oldest trace is printed to make room. */
    export_one(e, make(TRACE_B, 7, 6, "other", 0, 10, NULL, 0));
    text = slurp(f);
    CHECK_INT(count_lines(text), 10001);
    CHECK_LINE(text, 0,
               "trace aa0102030405060708090a0b0c0d0e0f (10000 spans, incomplete: its "
               "root has not ended)");
    CHECK_LINE(text, 1, "leaf 0.01 ms");
    CHECK(strstr(text, "other") == NULL);
    free(text);
    e->ops->shutdown(e, 0);
    text = slurp(f);
    CHECK_INT(count_lines(text), 10003);
    CHECK_LINE(text, 10002, "other 0.01 ms");
    free(text);
    basalt_exporter_release(e);
    fclose(f);
}

static void test_engine_prints_through_console_exporter(void) {
    FILE *f = tmpfile();
    basalt_exporter *e = basalt_console_exporter_new(f);
    CHECK_STR(e->ops->type, "console");
    basalt_exporter *list[1] = {e};
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = list;
    cfg.nexporters = 1;
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));

    basalt_identity id = {"u1", NULL, NULL, NULL};
    const char *evals[1] = {"helpful"};
    basalt_trace_opts t = {
        .name = "QA", .feature_slug = "qa", .identity = &id, .evaluators = evals, .nevaluators = 1};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, &err);
    CHECK(root != NULL);
    basalt_span_opts o = {.name = "llm", .kind = BASALT_KIND_GENERATION, .parent = rc};
    basalt_ctx *cc = NULL;
    basalt_span *child = basalt_span_start(&o, &cc, &err);
    CHECK(child != NULL);
    basalt_span_record_exception(child, "RuntimeError", "boom", "stack");
    basalt_span_end(child, 0);
    basalt_span_end(root, 0);
    basalt_span_release(child);
    basalt_span_release(root);
    basalt_ctx_release(cc);
    basalt_ctx_release(rc);

    char *text = slurp(f);
    CHECK_INT(count_lines(text), 3);
    char line[512];
    CHECK(line_at(text, 0, line, sizeof line) && strncmp(line, "trace ", 6) == 0 &&
          strstr(line, "(2 spans)"));
    CHECK(line_at(text, 1, line, sizeof line) && strncmp(line, "QA [basalt_trace] ", 18) == 0 &&
          strstr(line, " ms feature=qa user=u1 evaluators=[helpful] should_evaluate=false"));
    CHECK(line_at(text, 2, line, sizeof line) &&
          strncmp(line, "\xe2\x94\x94\xe2\x94\x80 llm [generation] ", 22) == 0 &&
          strstr(line, " ms error=\"RuntimeError: boom\"") && strstr(line, "feature=") == NULL);
    free(text);
    CHECK(basalt_shutdown(1000));
    basalt_exporter_release(e);
    fclose(f);
}

TEST_MAIN(TEST_CASE(test_trace_printed_as_tree_when_root_ends),
          TEST_CASE(test_error_message_and_exception_shown),
          TEST_CASE(test_prompt_shown_with_its_version),
          TEST_CASE(test_siblings_ordered_by_start_and_deep_indent),
          TEST_CASE(test_remote_parent_closes_local_root_subtree_only),
          TEST_CASE(test_control_characters_escaped),
          TEST_CASE(test_deep_chain_drawn_flat_past_32_levels),
          TEST_CASE(test_buffer_is_bounded_and_shutdown_prints_orphans),
          TEST_CASE(test_engine_prints_through_console_exporter))
