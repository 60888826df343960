/* Prompt caches (Decision 12) and lenient response parsing (14.2). */
#include "basalt/prompts.h"
#include "check.h"

#include <pthread.h>
#include <stdlib.h>

#define S(x) ((uint64_t)(x)*1000000000ull)

static const basalt_prompt *mk(const char *slug, const char *text) {
    basalt_prompt t;
    memset(&t, 0, sizeof t);
    t.slug = slug;
    t.text = text;
    return basalt_prompt_new(&t);
}

static void test_hit_within_ttl_and_miss_after(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(0);
    const basalt_prompt *p = mk("a", "hello");
    CHECK(basalt_prompt_cache_put(c, "a", NULL, NULL, p, 300, S(1000)));
    const basalt_prompt *h = basalt_prompt_cache_get(c, "a", NULL, NULL, S(1299));
    CHECK(h == p);
    CHECK_STR(h ? h->text : NULL, "hello");
    basalt_prompt_release(h);
    CHECK(basalt_prompt_cache_get(c, "a", NULL, NULL, S(1300)) == NULL);
    CHECK_INT(basalt_prompt_cache_size(c), 0); /* the expired entry was evicted */
    basalt_prompt_release(p);
    basalt_prompt_cache_free(c);
}

static void test_key_is_slug_version_tag_with_null_distinct_from_empty(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(0);
    const basalt_prompt *p1 = mk("a", "1"), *p2 = mk("a", "2"), *p3 = mk("a", "3"),
                        *p4 = mk("a", "4");
    basalt_prompt_cache_put(c, "a", NULL, NULL, p1, 300, 0);
    basalt_prompt_cache_put(c, "a", "2", NULL, p2, 300, 0);
    basalt_prompt_cache_put(c, "a", NULL, "prod", p3, 300, 0);
    basalt_prompt_cache_put(c, "a", "", NULL, p4, 300, 0);
    const char *want[][3] = {
        {NULL, NULL, "1"}, {"2", NULL, "2"}, {NULL, "prod", "3"}, {"", NULL, "4"}};
    for (size_t i = 0; i < 4; i++) {
        const basalt_prompt *h = basalt_prompt_cache_get(c, "a", want[i][0], want[i][1], 1);
        CHECK_STR(h ? h->text : NULL, want[i][2]);
        basalt_prompt_release(h);
    }
    CHECK(basalt_prompt_cache_get(c, "a", "2", "prod", 1) == NULL);
    CHECK(basalt_prompt_cache_get(c, "b", NULL, NULL, 1) == NULL);
    /* "a" + version "b" must not collide with slug "ab" */
    CHECK(basalt_prompt_cache_get(c, "", "a", NULL, 1) == NULL);
    CHECK_INT(basalt_prompt_cache_size(c), 4);
    basalt_prompt_release(p1);
    basalt_prompt_release(p2);
    basalt_prompt_release(p3);
    basalt_prompt_release(p4);
    basalt_prompt_cache_free(c);
}

static void test_put_replaces_and_refreshes_deadline(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(0);
    const basalt_prompt *old = mk("a", "old"), *nw = mk("a", "new");
    basalt_prompt_cache_put(c, "a", NULL, NULL, old, 10, S(0));
    basalt_prompt_cache_put(c, "a", NULL, NULL, nw, 10, S(8));
    const basalt_prompt *h = basalt_prompt_cache_get(c, "a", NULL, NULL, S(15));
    CHECK_STR(h ? h->text : NULL, "new");
    basalt_prompt_release(h);
    CHECK_INT(basalt_prompt_cache_size(c), 1);
    basalt_prompt_release(old);
    basalt_prompt_release(nw);
    basalt_prompt_cache_free(c);
}

static void test_bounded_size_evicts_least_recently_used(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(3);
    const basalt_prompt *p = mk("x", "x");
    basalt_prompt_cache_put(c, "a", NULL, NULL, p, 300, 0);
    basalt_prompt_cache_put(c, "b", NULL, NULL, p, 300, 0);
    basalt_prompt_cache_put(c, "c", NULL, NULL, p, 300, 0);
    basalt_prompt_release(basalt_prompt_cache_get(c, "a", NULL, NULL, 1)); /* a is recent */
    basalt_prompt_cache_put(c, "d", NULL, NULL, p, 300, 1);
    CHECK_INT(basalt_prompt_cache_size(c), 3);
    const basalt_prompt *a = basalt_prompt_cache_get(c, "a", NULL, NULL, 2);
    const basalt_prompt *b = basalt_prompt_cache_get(c, "b", NULL, NULL, 2);
    CHECK(a != NULL);
    CHECK(b == NULL); /* b was the least recently used */
    basalt_prompt_release(a);
    for (int i = 0; i < 100; i++) {
        char slug[16];
        snprintf(slug, sizeof slug, "s%d", i);
        basalt_prompt_cache_put(c, slug, NULL, NULL, p, 300, 3);
    }
    CHECK_INT(basalt_prompt_cache_size(c), 3);
    basalt_prompt_cache_clear(c);
    CHECK_INT(basalt_prompt_cache_size(c), 0);
    basalt_prompt_release(p);
    basalt_prompt_cache_free(c);
}

static void test_entry_outlives_its_eviction_while_referenced(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(1);
    const basalt_prompt *p = mk("a", "kept");
    basalt_prompt_cache_put(c, "a", NULL, NULL, p, 300, 0);
    basalt_prompt_release(p); /* the cache holds the only reference */
    const basalt_prompt *h = basalt_prompt_cache_get(c, "a", NULL, NULL, 1);
    const basalt_prompt *q = mk("b", "other");
    basalt_prompt_cache_put(c, "b", NULL, NULL, q, 300, 1); /* evicts a */
    CHECK_STR(h ? h->text : NULL, "kept");
    basalt_prompt_release(h);
    basalt_prompt_release(q);
    basalt_prompt_cache_free(c);
}

typedef struct hammer_arg {
    basalt_prompt_cache *c;
    int id;
    int hits;
} hammer_arg;

static void *hammer(void *ud) {
    hammer_arg *a = ud;
    char slug[16];
    for (int i = 0; i < 20000; i++) {
        snprintf(slug, sizeof slug, "s%d", (i * 7 + a->id) % 40);
        const basalt_prompt *h = basalt_prompt_cache_get(a->c, slug, NULL, "t", 1);
        if (h) {
            a->hits += strcmp(h->text, slug) == 0;
            basalt_prompt_release(h);
        } else {
            const basalt_prompt *p = mk(slug, slug);
            basalt_prompt_cache_put(a->c, slug, NULL, "t", p, 300, 1);
            basalt_prompt_release(p);
        }
    }
    return NULL;
}

static void test_concurrent_threads_share_one_cache(void) {
    basalt_prompt_cache *c = basalt_prompt_cache_new(32); /* smaller than the key set */
    pthread_t t[4];
    hammer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (hammer_arg){c, i, 0};
        pthread_create(&t[i], NULL, hammer, &args[i]);
    }
    int hits = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        hits += args[i].hits;
    }
    CHECK(hits > 0);
    CHECK(basalt_prompt_cache_size(c) <= 32);
    basalt_prompt_cache_free(c);
}

/* ---- parsing -------------------------------------------------------------------------- */

static void test_parse_full_prompt(void) {
    const char *body =
        "{\"prompt\":{\"slug\":\"qa\",\"tag\":\"prod\",\"version\":\"1.2\",\"text\":\"Hi {{x}}\","
        "\"systemText\":\"sys\",\"model\":{\"provider\":\"openai\",\"model\":\"gpt-4o\","
        "\"version\":\"latest\",\"parameters\":{\"temperature\":0.7,\"maxLength\":512,"
        "\"responseFormat\":\"json\",\"topK\":5,\"topP\":0.9,\"frequencyPenalty\":0.1,"
        "\"presencePenalty\":0.2,\"jsonObject\":{\"a\":1},\"tools\":{\"tools\":[{\"name\":\"t\"}],"
        "\"toolChoice\":{\"type\":\"auto\"}}}}},\"warning\":\"ignored\"}";
    basalt_prompt_error err;
    basalt_prompt *p = basalt_prompt_parse(body, strlen(body), "qa", NULL, &err);
    CHECK(p != NULL);
    if (p == NULL) return;
    CHECK_STR(p->slug, "qa");
    CHECK_STR(p->tag, "prod");
    CHECK_STR(p->version, "1.2");
    CHECK_STR(p->text, "Hi {{x}}");
    CHECK_STR(p->system_text, "sys");
    CHECK_STR(p->model.provider, "openai");
    CHECK_STR(p->model.model, "gpt-4o");
    CHECK_STR(p->model.version, "latest");
    CHECK(p->model.temperature == 0.7);
    CHECK_INT(p->model.max_length, 512);
    CHECK_STR(p->model.response_format, "json");
    CHECK(p->model.has_top_k && p->model.top_k == 5);
    CHECK(p->model.has_top_p && p->model.top_p == 0.9);
    CHECK(p->model.has_frequency_penalty && p->model.has_presence_penalty);
    CHECK_STR(p->model.json_object_json, "{\"a\":1}");
    CHECK_STR(p->model.tools_json, "[{\"name\":\"t\"}]");
    CHECK_STR(p->model.tool_choice_json, "{\"type\":\"auto\"}");
    basalt_prompt_release(p);
}

static void test_parse_is_lenient_with_wrong_types(void) {
    const char *body = "{\"prompt\":{\"slug\":5,\"text\":[1],\"version\":null,\"model\":{"
                       "\"provider\":true,\"parameters\":{\"temperature\":\"hot\",\"maxLength\":"
                       "\"x\",\"topK\":\"5\",\"jsonObject\":[1],\"tools\":7}}}}";
    basalt_prompt_error err;
    basalt_prompt *p = basalt_prompt_parse(body, strlen(body), "asked", "t1", &err);
    CHECK(p != NULL);
    if (p == NULL) return;
    CHECK_STR(p->slug, "asked"); /* the requested slug fills a missing one */
    CHECK_STR(p->tag, "t1");     /* the requested tag when none came back (Decision 17) */
    CHECK_STR(p->text, "");
    CHECK_STR(p->version, "");
    CHECK_STR(p->system_text, "");
    CHECK_STR(p->model.provider, "");
    CHECK(p->model.temperature == 0.0);
    CHECK_INT(p->model.max_length, 0);
    CHECK_STR(p->model.response_format, "text");
    CHECK(!p->model.has_top_k);
    CHECK(p->model.json_object_json == NULL);
    CHECK_STR(p->model.tools_json, "[]");
    CHECK(p->model.tool_choice_json == NULL);
    basalt_prompt_release(p);
}

static void test_parse_rejects_bodies_without_a_prompt(void) {
    static const char *const bodies[] = {"",    "   ",           "not json", "{\"prompt\":\"x\"}",
                                         "[1]", "{\"other\":{}}"};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        basalt_prompt_error err;
        basalt_prompt *p = basalt_prompt_parse(bodies[i], strlen(bodies[i]), "a", NULL, &err);
        CHECK(p == NULL);
        CHECK_STR(err.code, BASALT_PERR_INVALID_JSON);
        basalt_prompt_release(p);
    }
}

static void test_parse_describe_and_list_normalise_keys(void) {
    const char *d = "{\"prompt\":{\"slug\":\"qa\",\"status\":\"live\",\"name\":\"QA\","
                    "\"availableVersions\":[\"1\",\"2\"],\"availableTags\":\"bad\","
                    "\"variables\":[{\"label\":\"q\",\"type\":\"string\"}]}}";
    basalt_buf out = {0};
    basalt_prompt_error err;
    CHECK(basalt_prompt_parse_describe(d, strlen(d), &out, &err));
    CHECK_STR(basalt_buf_cstr(&out),
              "{\"slug\":\"qa\",\"status\":\"live\",\"name\":\"QA\",\"description\":\"\","
              "\"available_versions\":[\"1\",\"2\"],\"available_tags\":[],"
              "\"variables\":[{\"label\":\"q\",\"type\":\"string\"}]}");
    basalt_buf_clear(&out);
    const char *l = "{\"prompts\":[{\"slug\":\"a\",\"variables\":[1]},7,{\"slug\":\"b\"}]}";
    CHECK(basalt_prompt_parse_list(l, strlen(l), &out, &err));
    CHECK_STR(basalt_buf_cstr(&out),
              "[{\"slug\":\"a\",\"status\":\"\",\"name\":\"\",\"description\":\"\","
              "\"available_versions\":[],\"available_tags\":[]},{\"slug\":\"b\",\"status\":\"\","
              "\"name\":\"\",\"description\":\"\",\"available_versions\":[],"
              "\"available_tags\":[]}]");
    basalt_buf_clear(&out);
    CHECK(basalt_prompt_parse_list("", 0, &out, &err));
    CHECK_STR(basalt_buf_cstr(&out), "[]");
    basalt_buf_clear(&out);
    CHECK(basalt_prompt_parse_list("{\"prompts\":{}}", 14, &out, &err));
    CHECK_STR(basalt_buf_cstr(&out), "[]");
    basalt_buf_free(&out);
}

TEST_MAIN(TEST_CASE(test_hit_within_ttl_and_miss_after),
          TEST_CASE(test_key_is_slug_version_tag_with_null_distinct_from_empty),
          TEST_CASE(test_put_replaces_and_refreshes_deadline),
          TEST_CASE(test_bounded_size_evicts_least_recently_used),
          TEST_CASE(test_entry_outlives_its_eviction_while_referenced),
          TEST_CASE(test_concurrent_threads_share_one_cache), TEST_CASE(test_parse_full_prompt),
          TEST_CASE(test_parse_is_lenient_with_wrong_types),
          TEST_CASE(test_parse_rejects_bodies_without_a_prompt),
          TEST_CASE(test_parse_describe_and_list_normalise_keys))
