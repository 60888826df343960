/* The span engine through the C API alone: roots, children, propagation,
 * evaluators, sampling, errors, the memory exporter, and threads. */
#include "basalt/attrs.h"
#include "basalt/otlp_json.h"
#include "basalt/runtime.h"
#include "check.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>

static basalt_exporter *mem;

static void setup_with(const char *const *evals, size_t nevals) {
    if (mem) basalt_exporter_release(mem);
    mem = basalt_memory_exporter_new();
    basalt_exporter *list[1] = {mem};
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = list;
    cfg.nexporters = 1;
    cfg.evaluators = evals;
    cfg.nevaluators = nevals;
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));
}

static void setup(void) {
    setup_with(NULL, 0);
}

static const basalt_span_record *find(const basalt_span_record **recs, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(recs[i]->name, name) == 0) return recs[i];
    return NULL;
}

static const char *str_attr(const basalt_span_record *r, const char *key) {
    const basalt_value *v = r ? basalt_record_attr(r, key) : NULL;
    return v && v->type == BASALT_VAL_STRING ? v->u.s.ptr : NULL;
}

static int bool_attr(const basalt_span_record *r, const char *key) {
    const basalt_value *v = r ? basalt_record_attr(r, key) : NULL;
    return v && v->type == BASALT_VAL_BOOL ? v->u.b : -1;
}

static void release_all(const basalt_span_record **recs, size_t n) {
    for (size_t i = 0; i < n; i++)
        basalt_record_release(recs[i]);
}

/* Ends s and drops the references its start handed out. */
static void finish(basalt_span *s, basalt_ctx *c) {
    basalt_span_end(s, 0);
    basalt_span_release(s);
    basalt_ctx_release(c);
}

/* Opens a child of ctx and ends it at once. */
static void leaf(basalt_ctx *ctx, const char *name, basalt_kind kind) {
    basalt_span_opts o = {.name = name, .kind = kind, .parent = ctx};
    basalt_ctx *c = NULL;
    basalt_span *s = basalt_span_start(&o, &c, NULL);
    finish(s, c);
}

static void test_root_and_children_carry_markers_and_feature_slug(void) {
    setup();
    basalt_identity id = {"u1", "Ann", "org-1", NULL};
    basalt_trace_opts t = {.name = " QA System ", .feature_slug = "qa", .identity = &id};
    basalt_ctx *rc = NULL;
    basalt_error err;
    basalt_span *root = basalt_trace_start(&t, &rc, &err);
    CHECK(root != NULL);
    basalt_span_opts o = {.name = "search", .kind = BASALT_KIND_RETRIEVAL, .parent = rc};
    basalt_ctx *cc = NULL;
    basalt_span *child = basalt_span_start(&o, &cc, &err);
    CHECK(child != NULL);
    leaf(cc, "grandchild", BASALT_KIND_GENERATION);
    basalt_span_end(child, 0);
    basalt_span_end(root, 0);
    basalt_span_release(child);
    basalt_span_release(root);
    basalt_ctx_release(cc);
    basalt_ctx_release(rc);

    const basalt_span_record *recs[8];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 8);
    CHECK_INT(n, 3);
    const basalt_span_record *r = find(recs, n, "QA System"), *c = find(recs, n, "search"),
                             *g = find(recs, n, "grandchild");
    CHECK(r && c && g);
    if (!(r && c && g)) return;
    CHECK_INT(bool_attr(r, BASALT_ATTR_ROOT), 1);
    CHECK_INT(bool_attr(r, BASALT_ATTR_TRACE), -1);
    CHECK_STR(str_attr(r, BASALT_ATTR_SPAN_KIND), "basalt_trace");
    CHECK_INT(bool_attr(c, BASALT_ATTR_TRACE), 1);
    CHECK_INT(bool_attr(c, BASALT_ATTR_ROOT), -1);
    CHECK_STR(str_attr(c, BASALT_ATTR_SPAN_KIND), "retrieval");
    CHECK_STR(str_attr(g, BASALT_ATTR_SPAN_KIND), "generation");
    for (size_t i = 0; i < n; i++) {
        CHECK_STR(str_attr(recs[i], BASALT_ATTR_FEATURE_SLUG), "qa");
        CHECK_STR(str_attr(recs[i], BASALT_ATTR_USER_ID), "u1");
        CHECK_STR(str_attr(recs[i], BASALT_ATTR_USER_NAME), "Ann");
        CHECK_STR(str_attr(recs[i], BASALT_ATTR_ORG_ID), "org-1");
        CHECK_INT(bool_attr(recs[i], BASALT_ATTR_IN_TRACE), 1);
        CHECK_INT(bool_attr(recs[i], BASALT_ATTR_SHOULD_EVALUATE), 0);
        CHECK(memcmp(recs[i]->trace_id, r->trace_id, 16) == 0);
    }
    CHECK(!r->has_parent);
    CHECK(c->has_parent && memcmp(c->parent_span_id, r->span_id, 8) == 0);
    CHECK(g->has_parent && memcmp(g->parent_span_id, c->span_id, 8) == 0);
    CHECK_STR(r->scope_name, "basalt.observability");
    CHECK_STR(c->scope_name, "basalt.observability.retrieval");
    CHECK(r->end_ns >= r->start_ns && r->start_ns > 0);
    release_all(recs, n);
}

static void test_validation_errors_name_the_field(void) {
    setup();
    basalt_ctx *c = NULL;
    basalt_error err;
    basalt_trace_opts t = {.name = "x", .feature_slug = "   "};
    CHECK(basalt_trace_start(&t, &c, &err) == NULL);
    CHECK(strncmp(err.message, "feature_slug is required", 24) == 0);
    t.feature_slug = "f";
    t.name = NULL;
    CHECK(basalt_trace_start(&t, &c, &err) == NULL);
    CHECK(strncmp(err.message, "name is required", 16) == 0);
    CHECK_INT(basalt_memory_exporter_count(mem), 0);
}

static void test_observe_outside_trace_records_nothing(void) {
    setup();
    basalt_span_opts o = {.name = "lonely", .kind = BASALT_KIND_SPAN, .parent = NULL};
    basalt_ctx *c = NULL;
    basalt_error err;
    CHECK(basalt_span_start(&o, &c, &err) == NULL);
    CHECK(err.message[0] == '\0');
    CHECK(c == NULL);
    CHECK_INT(basalt_memory_exporter_count(mem), 0);
}

static void test_nested_start_observe_replaces_slug_for_subtree_only(void) {
    setup();
    basalt_trace_opts t = {.name = "outer", .feature_slug = "a"};
    basalt_ctx *oc = NULL, *ic = NULL;
    basalt_span *outer = basalt_trace_start(&t, &oc, NULL);
    basalt_trace_opts t2 = {.name = "inner", .feature_slug = "b", .parent = oc};
    basalt_span *inner = basalt_trace_start(&t2, &ic, NULL);
    leaf(ic, "in-b", BASALT_KIND_SPAN);
    basalt_span_end(inner, 0);
    leaf(oc, "in-a", BASALT_KIND_SPAN);
    basalt_span_end(outer, 0);
    basalt_span_release(inner);
    basalt_span_release(outer);
    basalt_ctx_release(ic);
    basalt_ctx_release(oc);
    const basalt_span_record *recs[8];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 8);
    CHECK_INT(n, 4);
    const basalt_span_record *in = find(recs, n, "inner");
    CHECK_STR(str_attr(in, BASALT_ATTR_SPAN_KIND), "basalt_trace");
    CHECK_INT(bool_attr(in, BASALT_ATTR_TRACE), 1);
    CHECK_INT(bool_attr(in, BASALT_ATTR_ROOT), -1);
    CHECK_STR(str_attr(in, BASALT_ATTR_FEATURE_SLUG), "b");
    CHECK_STR(str_attr(find(recs, n, "in-b"), BASALT_ATTR_FEATURE_SLUG), "b");
    CHECK_STR(str_attr(find(recs, n, "in-a"), BASALT_ATTR_FEATURE_SLUG), "a");
    CHECK_STR(str_attr(find(recs, n, "outer"), BASALT_ATTR_FEATURE_SLUG), "a");
    release_all(recs, n);
}

static void test_evaluators_union_in_order(void) {
    const char *global[] = {"g1", " shared "};
    setup_with(global, 2);
    basalt_trace_opts t = {.name = "r", .feature_slug = "f"};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    const char *ctx_evals[] = {"c1", "shared", ""};
    basalt_ctx *ec = basalt_ctx_with_evaluators(rc, ctx_evals, 3);
    const char *own[] = {"o1", "c1"};
    basalt_span_opts o = {.name = "child", .parent = ec, .evaluators = own, .nevaluators = 2};
    basalt_ctx *cc = NULL;
    basalt_span *child = basalt_span_start(&o, &cc, NULL);
    basalt_span_add_evaluator(child, " o2 ");
    basalt_span_end(child, 0);
    basalt_span_end(root, 0);
    basalt_span_release(child);
    basalt_span_release(root);
    basalt_ctx_release(cc);
    basalt_ctx_release(ec);
    basalt_ctx_release(rc);
    const basalt_span_record *recs[4];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 4);
    const basalt_value *v = basalt_record_attr(find(recs, n, "child"), BASALT_ATTR_EVALUATORS);
    CHECK(v && v->type == BASALT_VAL_ARRAY);
    const char *want[] = {"g1", "shared", "c1", "o1", "o2"};
    CHECK_INT(v ? v->u.arr.n : 0, 5);
    for (size_t i = 0; v && i < 5 && i < v->u.arr.n; i++)
        CHECK_STR(v->u.arr.items[i].u.s.ptr, want[i]);
    v = basalt_record_attr(find(recs, n, "r"), BASALT_ATTR_EVALUATORS);
    CHECK(v && v->u.arr.n == 2);
    release_all(recs, n);
}

static void test_sampling_is_deterministic_from_trace_id(void) {
    uint8_t id[16] = {0};
    CHECK(!basalt_sample_trace_id(id, 0.0));
    CHECK(basalt_sample_trace_id(id, 1.0));
    CHECK(basalt_sample_trace_id(id, 0.0001)); /* low bits 0 < any positive rate */
    memset(id + 9, 0xff, 7);
    CHECK(!basalt_sample_trace_id(id, 0.999));
    id[9] = 0x7f; /* just under half */
    CHECK(basalt_sample_trace_id(id, 0.5));
    id[9] = 0x80;
    CHECK(!basalt_sample_trace_id(id, 0.5));
}

static void test_exception_sets_error_status_and_event(void) {
    setup();
    basalt_trace_opts t = {.name = "r", .feature_slug = "f"};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_span_record_exception(root, "ValueError", "bad input", "trace...");
    basalt_span_end(root, 0);
    basalt_span_end(root, 0); /* a second end is ignored */
    basalt_span_release(root);
    basalt_ctx_release(rc);
    const basalt_span_record *recs[2];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 2);
    CHECK_INT(n, 1);
    if (n != 1) return;
    CHECK_INT(recs[0]->status_code, BASALT_STATUS_ERROR);
    CHECK_STR(recs[0]->status_message, "ValueError: bad input");
    CHECK_INT(recs[0]->nevents, 1);
    CHECK_STR(recs[0]->events[0].name, "exception");
    CHECK_INT(recs[0]->events[0].nattrs, 3);
    release_all(recs, n);
}

static void test_explicit_attribute_beats_propagated(void) {
    setup();
    basalt_identity id = {"u1", NULL, NULL, NULL};
    basalt_trace_opts t = {.name = "r", .feature_slug = "f", .identity = &id};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_identity other = {"u2", "Bob", NULL, NULL};
    basalt_span_set_identity(root, &other);
    basalt_span_set_attr(root, "custom.int", basalt_v_int(42));
    finish(root, rc);
    const basalt_span_record *recs[2];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 2);
    CHECK_INT(n, 1);
    if (n != 1) return;
    CHECK_STR(str_attr(recs[0], BASALT_ATTR_USER_ID), "u2");
    CHECK_STR(str_attr(recs[0], BASALT_ATTR_USER_NAME), "Bob");
    const basalt_value *v = basalt_record_attr(recs[0], "custom.int");
    CHECK(v && v->type == BASALT_VAL_INT && v->u.i == 42);
    int count = 0;
    for (uint32_t i = 0; i < recs[0]->nattrs; i++)
        count += !strcmp(recs[0]->attrs[i].key, BASALT_ATTR_USER_ID);
    CHECK_INT(count, 1);
    release_all(recs, n);
}

static void test_dynamic_identity_reaches_root_and_later_spans(void) {
    setup();
    basalt_trace_opts t = {.name = "r", .feature_slug = "f"};
    basalt_ctx *rc = NULL, *cc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    leaf(rc, "before", BASALT_KIND_SPAN);
    basalt_span_opts o = {.name = "login", .parent = rc};
    basalt_span *login = basalt_span_start(&o, &cc, NULL);
    basalt_identity id = {"u9", NULL, "o9", NULL};
    basalt_set_dynamic_identity(cc, &id);
    basalt_span_end(login, 0);
    leaf(rc, "after", BASALT_KIND_SPAN);
    basalt_span_end(root, 0);
    basalt_span_release(login);
    basalt_span_release(root);
    basalt_ctx_release(cc);
    basalt_ctx_release(rc);
    const basalt_span_record *recs[8];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 8);
    CHECK(str_attr(find(recs, n, "before"), BASALT_ATTR_USER_ID) == NULL);
    CHECK_STR(str_attr(find(recs, n, "login"), BASALT_ATTR_USER_ID), "u9");
    CHECK_STR(str_attr(find(recs, n, "after"), BASALT_ATTR_USER_ID), "u9");
    CHECK_STR(str_attr(find(recs, n, "after"), BASALT_ATTR_ORG_ID), "o9");
    CHECK_STR(str_attr(find(recs, n, "r"), BASALT_ATTR_USER_ID), "u9");
    release_all(recs, n);
}

/* Several threads, each with its own thread-local current context. */
#define THREADS           4
#define TRACES_PER_THREAD 500

static void *worker(void *arg) {
    char slug[16];
    snprintf(slug, sizeof slug, "t%d", (int)(intptr_t)arg);
    for (int i = 0; i < TRACES_PER_THREAD; i++) {
        basalt_trace_opts t = {
            .name = "root", .feature_slug = slug, .parent = basalt_ctx_current()};
        basalt_ctx *rc = NULL;
        basalt_span *root = basalt_trace_start(&t, &rc, NULL);
        basalt_ctx *prev = basalt_ctx_attach(rc);
        leaf(basalt_ctx_current(), "child", BASALT_KIND_TOOL);
        basalt_ctx_detach(prev);
        finish(root, rc);
    }
    return NULL;
}

static void test_threads_keep_separate_contexts(void) {
    setup();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    size_t total = (size_t)THREADS * TRACES_PER_THREAD * 2;
    CHECK_INT(basalt_memory_exporter_count(mem), total);
    const basalt_span_record **recs = malloc(sizeof *recs * total);
    size_t n = basalt_memory_exporter_snapshot(mem, recs, total);
    /* Every child carries its own thread's slug and its own root's trace id. */
    int mismatches = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i]->name, "child") != 0) continue;
        const char *slug = str_attr(recs[i], BASALT_ATTR_FEATURE_SLUG);
        int found = 0;
        for (size_t j = 0; j < n; j++) {
            if (strcmp(recs[j]->name, "root") == 0 &&
                memcmp(recs[j]->span_id, recs[i]->parent_span_id, 8) == 0) {
                found = memcmp(recs[j]->trace_id, recs[i]->trace_id, 16) == 0 && slug &&
                        strcmp(str_attr(recs[j], BASALT_ATTR_FEATURE_SLUG), slug) == 0;
                break;
            }
        }
        mismatches += !found;
    }
    CHECK_INT(mismatches, 0);
    basalt_stats st;
    basalt_get_stats(&st);
    CHECK_INT(st.spans_started, total);
    CHECK_INT(st.spans_ended, total);
    CHECK_INT(st.spans_exported, total);
    release_all(recs, n);
    free(recs);
}

static void test_shutdown_makes_spans_noops_until_init(void) {
    setup();
    CHECK(basalt_shutdown(1000));
    basalt_trace_opts t = {.name = "r", .feature_slug = "f"};
    basalt_ctx *rc = NULL;
    basalt_error err;
    CHECK(basalt_trace_start(&t, &rc, &err) == NULL);
    CHECK(err.message[0] == '\0');
    setup();
    basalt_span *s = basalt_trace_start(&t, &rc, &err);
    CHECK(s != NULL);
    finish(s, rc);
    CHECK_INT(basalt_memory_exporter_count(mem), 1);
}

static void test_generation_prompt_and_completion_write_messages(void) {
    setup();
    basalt_trace_opts t = {.name = "r", .feature_slug = "f"};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_span_opts o = {.name = "llm", .kind = BASALT_KIND_GENERATION, .parent = rc};
    basalt_ctx *c = NULL;
    basalt_span *g = basalt_span_start(&o, &c, NULL);
    const char *prompt = "Hi \"you\"";
    basalt_span_set_prompt_text(g, prompt, strlen(prompt));
    basalt_span_set_completion(g, "ok", 2);
    finish(g, c);
    basalt_span_set_completion(root, "done", 4); /* not a generation: output only */
    finish(root, rc);
    const basalt_span_record *recs[2];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 2);
    CHECK_INT(n, 2);
    const basalt_span_record *llm = find(recs, n, "llm"), *r = find(recs, n, "r");
    CHECK_STR(str_attr(llm, BASALT_ATTR_INPUT), "Hi \"you\"");
    CHECK_STR(str_attr(llm, BASALT_ATTR_GENAI_INPUT_MESSAGES),
              "[{\"role\":\"user\",\"parts\":[{\"type\":\"text\",\"content\":\"Hi "
              "\\\"you\\\"\"}]}]");
    CHECK_STR(str_attr(llm, BASALT_ATTR_GENAI_OUTPUT_MESSAGES),
              "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"ok\"}],"
              "\"finish_reason\":\"stop\"}]");
    CHECK_STR(str_attr(r, BASALT_ATTR_OUTPUT), "done");
    CHECK(r && basalt_record_attr(r, BASALT_ATTR_GENAI_OUTPUT_MESSAGES) == NULL);
    release_all(recs, n);
}

/* Attributes set through interned keys behave as copied keys do: one key per
 * text (cut at a NUL, repaired UTF-8), replacing either way, a known key
 * beating its propagated value, and the same JSON from the encoder. */
static void test_interned_keys_behave_as_copied_keys(void) {
    setup();
    const basalt_key *step = basalt_key_intern("app.step", 8);
    CHECK(step != NULL);
    CHECK(basalt_key_intern("app.step\0tail", 13) == step);
    size_t len;
    CHECK_STR(basalt_key_str(step, &len), "app.step");
    CHECK_INT(len, 8);
    const basalt_key *bad = basalt_key_intern("bad\xff", 4);
    CHECK_STR(basalt_key_str(bad, NULL), "bad\xef\xbf\xbd");
    const basalt_key *quoted = basalt_key_intern("say \"hi\"", 8);
    const basalt_key *slug =
        basalt_key_intern(BASALT_ATTR_FEATURE_SLUG, strlen(BASALT_ATTR_FEATURE_SLUG));
    CHECK(quoted && slug);
    char big[300];
    memset(big, 'k', sizeof big);
    CHECK(basalt_key_intern(big, sizeof big) == NULL); /* too long: callers copy */

    basalt_trace_opts t = {.name = "root", .feature_slug = "qa"};
    basalt_ctx *rc = NULL;
    basalt_span *root = basalt_trace_start(&t, &rc, NULL);
    basalt_span_opts o = {.name = "child", .kind = BASALT_KIND_TOOL, .parent = rc};
    basalt_ctx *cc = NULL;
    basalt_span *child = basalt_span_start(&o, &cc, NULL);
    basalt_span_set_attr_key(child, step, basalt_v_int(1));
    basalt_span_set_attr_n(child, "app.step", 8, basalt_v_int(2)); /* replaces */
    basalt_span_set_attr_n(child, "bad\xff", 4, basalt_v_str("x"));
    basalt_span_set_attr_key(child, bad, basalt_v_str("y")); /* the same key once repaired */
    basalt_span_set_attr_key(child, quoted, basalt_v_bool(true));
    basalt_span_set_attr_key(child, slug, basalt_v_str("mine"));
    basalt_kv kvs[2] = {{"app.step", basalt_v_int(7)}, {"raw.key", basalt_v_str("v")}};
    const basalt_key *keys[2] = {step, NULL};
    basalt_raw_span_opts ro = {.name = "raw",
                               .parent = cc,
                               .attrs = kvs,
                               .nattrs = 2,
                               .attrs_unique = true,
                               .attr_keys = keys};
    basalt_span *raw = basalt_raw_span_start(&ro, NULL, NULL);
    finish(raw, NULL);
    finish(child, cc);
    finish(root, rc);

    const basalt_span_record *recs[4];
    size_t n = basalt_memory_exporter_snapshot(mem, recs, 4);
    CHECK_INT(n, 3);
    const basalt_span_record *c = find(recs, n, "child"), *r = find(recs, n, "raw");
    CHECK(c && r);
    if (!(c && r)) return;
    int steps = 0, bads = 0;
    for (uint32_t i = 0; i < c->nattrs; i++) {
        steps += strcmp(c->attrs[i].key, "app.step") == 0;
        bads += strcmp(c->attrs[i].key, "bad\xef\xbf\xbd") == 0;
    }
    CHECK_INT(steps, 1);
    CHECK_INT(bads, 1);
    CHECK_INT(basalt_record_attr(c, "app.step")->u.i, 2);
    CHECK_STR(str_attr(c, "bad\xef\xbf\xbd"), "y");
    CHECK_STR(str_attr(c, BASALT_ATTR_FEATURE_SLUG), "mine"); /* beats the propagated "qa" */
    CHECK_STR(str_attr(r, BASALT_ATTR_FEATURE_SLUG), "qa");
    CHECK_INT(basalt_record_attr(r, "app.step")->u.i, 7);
    CHECK_STR(str_attr(r, "raw.key"), "v");

    basalt_buf b = {0};
    CHECK(basalt_otlp_encode(&b, NULL, &c, 1));
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    CHECK(j != NULL);
    int found = 0;
    cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
    cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItem(rs, "scopeSpans"), 0);
    cJSON *span = cJSON_GetArrayItem(cJSON_GetObjectItem(ss, "spans"), 0);
    cJSON *kv;
    cJSON_ArrayForEach(kv, cJSON_GetObjectItem(span, "attributes")) {
        const char *k = cJSON_GetObjectItem(kv, "key")->valuestring;
        cJSON *v = cJSON_GetObjectItem(kv, "value");
        if (strcmp(k, "say \"hi\"") == 0)
            found += cJSON_IsTrue(cJSON_GetObjectItem(v, "boolValue"));
        if (strcmp(k, "app.step") == 0)
            found += strcmp(cJSON_GetObjectItem(v, "intValue")->valuestring, "2") == 0;
    }
    CHECK_INT(found, 2);
    cJSON_Delete(j);
    basalt_buf_free(&b);
    release_all(recs, n);
}

static void cleanup(void) {
    basalt_shutdown(1000);
    basalt_exporter_release(mem);
    mem = NULL;
}

TEST_MAIN(TEST_CASE(test_root_and_children_carry_markers_and_feature_slug),
          TEST_CASE(test_validation_errors_name_the_field),
          TEST_CASE(test_observe_outside_trace_records_nothing),
          TEST_CASE(test_nested_start_observe_replaces_slug_for_subtree_only),
          TEST_CASE(test_evaluators_union_in_order),
          TEST_CASE(test_sampling_is_deterministic_from_trace_id),
          TEST_CASE(test_exception_sets_error_status_and_event),
          TEST_CASE(test_explicit_attribute_beats_propagated),
          TEST_CASE(test_dynamic_identity_reaches_root_and_later_spans),
          TEST_CASE(test_threads_keep_separate_contexts),
          TEST_CASE(test_shutdown_makes_spans_noops_until_init),
          TEST_CASE(test_generation_prompt_and_completion_write_messages),
          TEST_CASE(test_interned_keys_behave_as_copied_keys), TEST_CASE(cleanup))
