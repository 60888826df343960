/* Four OS threads, each with its own lua_State running traces, export
 * concurrently over OTLP/HTTP to one sink (node, --strict --proto) through the
 * process-wide runtime configured from C: every span started arrives exactly
 * once, with the right thread's attributes, and the counters agree. The queue
 * is small and blocking, so span ends from several threads wait for room at
 * once while the worker exports. */
#include "basalt/attrs.h"
#include "basalt/exporter.h"
#include "basalt/runtime.h"
#include "check.h"
#include "sink.h"

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdlib.h>

#define THREADS         4
#define TRACES          400
#define SPANS_PER_TRACE 3

static const char *script =
    "local basalt = require('basalt')\n"
    "local tag, n = ...\n"
    "for i = 1, n do\n"
    "  basalt.start_observe({ name = 'root-' .. tag, feature_slug = tag }, function(root)\n"
    "    root:set_attribute('thread', tag)\n"
    "    basalt.observe({ name = 'child-' .. tag, kind = 'tool' }, function(s)\n"
    "      s:set_attribute('i', i)\n"
    "      local co = coroutine.wrap(function()\n"
    "        basalt.observe('co-' .. tag, function(c) c:set_attribute('i', i); coroutine.yield() "
    "end)\n"
    "      end)\n"
    "      co(); co()\n"
    "    end)\n"
    "  end)\n"
    "end\n";

static void *run_state(void *arg) {
    const char *tag = arg;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int ok = luaL_loadstring(L, script) == LUA_OK;
    if (ok) {
        lua_pushstring(L, tag);
        lua_pushinteger(L, TRACES);
        ok = lua_pcall(L, 2, 0, 0) == LUA_OK;
    }
    if (!ok) fprintf(stderr, "thread %s: %s\n", tag, lua_tostring(L, -1));
    lua_close(L); /* flushes what this state produced, concurrently with the others */
    return ok ? arg : NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the sink's records: counts spans per thread tag (from the name) and
 * those whose `thread` / feature slug attribute disagrees with the name;
 * returns the number of distinct span ids. */
static size_t read_records(const char *file, size_t *total, size_t per_tag[THREADS],
                           size_t *mismatched) {
    FILE *f = fopen(file, "r");
    *total = 0;
    *mismatched = 0;
    if (f == NULL) return 0;
    size_t cap = 4096, n = 0;
    char **ids = malloc(cap * sizeof *ids);
    char *line = NULL;
    size_t lcap = 0;
    while (ids && getline(&line, &lcap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (j == NULL) continue;
        (*total)++;
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(j, "name"));
        const char *sid = cJSON_GetStringValue(cJSON_GetObjectItem(j, "span_id"));
        const cJSON *attrs = cJSON_GetObjectItem(j, "attributes");
        const char *slug =
            cJSON_GetStringValue(cJSON_GetObjectItem(attrs, BASALT_ATTR_FEATURE_SLUG));
        const char *tag = name ? strrchr(name, '-') : NULL;
        int t = tag && tag[1] == 't' ? atoi(tag + 2) : -1;
        if (t >= 0 && t < THREADS) per_tag[t]++;
        if (tag == NULL || slug == NULL || strcmp(slug, tag + 1) != 0) (*mismatched)++;
        if (name && strncmp(name, "root-", 5) == 0) {
            const char *th = cJSON_GetStringValue(cJSON_GetObjectItem(attrs, "thread"));
            if (th == NULL || strcmp(th, tag + 1) != 0) (*mismatched)++;
        }
        if (n == cap) {
            char **grown = realloc(ids, (cap *= 2) * sizeof *ids);
            if (grown == NULL) break;
            ids = grown;
        }
        ids[n++] = strdup(sid ? sid : "");
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    size_t distinct = 0;
    if (ids) {
        qsort(ids, n, sizeof *ids, cmp_str);
        for (size_t i = 0; i < n; i++)
            if (i == 0 || strcmp(ids[i], ids[i - 1]) != 0) distinct++;
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        free(ids);
    }
    return distinct;
}

static void test_states_in_threads_export_concurrently_without_loss(void) {
    if (!sink_available()) {
        fprintf(stderr, "  skipped: node or the sink packages are missing\n");
        return;
    }
    sink_proc s;
    CHECK(sink_start(&s, "--quiet"));
    if (s.port <= 0) return;

    basalt_otlp_config oc = {0};
    oc.endpoint = s.url;
    basalt_exporter *e = basalt_otlp_exporter_new(&oc);
    CHECK(e != NULL);
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = &e;
    cfg.nexporters = 1;
    cfg.batch_set = true;
    basalt_batch_config_defaults(&cfg.batch);
    cfg.batch.max_queue_size = 256;
    cfg.batch.max_export_batch_size = 128;
    cfg.batch.schedule_delay_ms = 20;
    cfg.batch.blocking = true;
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));

    static char tags[THREADS][8];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        snprintf(tags[i], sizeof tags[i], "t%d", i);
        CHECK(pthread_create(&th[i], NULL, run_state, tags[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *res = NULL;
        pthread_join(th[i], &res);
        CHECK(res != NULL);
    }

    const size_t total = (size_t)THREADS * TRACES * SPANS_PER_TRACE;
    CHECK(basalt_force_flush(20000));
    basalt_stats st;
    basalt_get_stats(&st);
    CHECK_INT(st.spans_started, total);
    CHECK_INT(st.spans_ended, total);
    CHECK_INT(st.spans_exported, total);
    CHECK_INT(st.spans_dropped, 0);
    CHECK_INT(st.export_failures, 0);
    CHECK_INT(st.queue_size, 0);
    CHECK(basalt_shutdown(5000));
    basalt_exporter_release(e);

    cJSON *k = sink_stop(&s);
    CHECK(k != NULL);
    CHECK_INT(sink_counter(k, "spans"), total);
    CHECK_INT(sink_counter(k, "rejected"), 0);
    CHECK_INT(sink_counter(k, "proto_rejected"), 0);
    CHECK_INT(sink_counter(k, "accepted"), sink_counter(k, "requests"));
    cJSON_Delete(k);

    size_t got = 0, per_tag[THREADS] = {0}, mismatched = 0;
    size_t distinct = read_records(s.out, &got, per_tag, &mismatched);
    CHECK_INT(got, total);
    CHECK_INT(distinct, total);
    CHECK_INT(mismatched, 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_INT(per_tag[i], (size_t)TRACES * SPANS_PER_TRACE);
    unlink(s.out);
}

TEST_MAIN(TEST_CASE(test_states_in_threads_export_concurrently_without_loss))
