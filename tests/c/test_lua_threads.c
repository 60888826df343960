/* Several lua_States in several OS threads use the runtime at once: each
 * thread's traces keep their own context (feature slug, identity, parent
 * chain), nothing is lost, and the shared pipeline counts exactly. */
#include "basalt/attrs.h"
#include "basalt/exporter.h"
#include "basalt/runtime.h"
#include "check.h"

#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdlib.h>

#define THREADS 4
#define TRACES  500

static const char *script =
    "local basalt = require('basalt')\n"
    "local tag = ...\n"
    "for i = 1, "
    "500"
    " do\n"
    "  basalt.start_observe({ name = 'root-' .. tag, feature_slug = tag,\n"
    "      identity = { user = { id = tag .. '-' .. i } } }, function()\n"
    "    basalt.observe({ name = 'child-' .. tag, kind = 'retrieval' }, function(s)\n"
    "      s:set_results_count(i)\n"
    "      local co = coroutine.wrap(function()\n"
    "        basalt.observe('co-' .. tag, function() coroutine.yield() end)\n"
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
        ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
    }
    if (!ok) fprintf(stderr, "thread %s: %s\n", tag, lua_tostring(L, -1));
    lua_close(L);
    return ok ? arg : NULL;
}

static const char *str_attr(const basalt_span_record *r, const char *key) {
    const basalt_value *v = basalt_record_attr(r, key);
    return v && v->type == BASALT_VAL_STRING ? v->u.s.ptr : NULL;
}

static void test_states_in_threads_keep_their_own_context(void) {
    basalt_exporter *mem = basalt_memory_exporter_new();
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = &mem;
    cfg.nexporters = 1;
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));

    static char tags[THREADS][8];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        snprintf(tags[i], sizeof tags[i], "t%d", i);
        pthread_create(&th[i], NULL, run_state, tags[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        void *res = NULL;
        pthread_join(th[i], &res);
        CHECK(res != NULL);
    }

    size_t total = (size_t)THREADS * TRACES * 3;
    CHECK_INT(basalt_memory_exporter_count(mem), total);
    const basalt_span_record **recs = malloc(sizeof *recs * total);
    size_t n = basalt_memory_exporter_snapshot(mem, recs, total);
    CHECK_INT(n, total);
    size_t mismatched = 0, orphans = 0;
    for (size_t i = 0; i < n; i++) {
        const basalt_span_record *r = recs[i];
        /* name ends with the thread tag; so must the propagated slug and user. */
        const char *tag = strrchr(r->name, '-') + 1;
        const char *slug = str_attr(r, BASALT_ATTR_FEATURE_SLUG);
        const char *user = str_attr(r, BASALT_ATTR_USER_ID);
        if (!slug || strcmp(slug, tag) != 0 || !user || strncmp(user, tag, strlen(tag)) != 0)
            mismatched++;
        if (strncmp(r->name, "root-", 5) != 0) {
            /* the parent must be a span of the same trace and thread */
            bool found = false;
            for (size_t j = 0; j < n && !found; j++)
                found = memcmp(recs[j]->span_id, r->parent_span_id, 8) == 0 &&
                        memcmp(recs[j]->trace_id, r->trace_id, 16) == 0 &&
                        strcmp(strrchr(recs[j]->name, '-') + 1, tag) == 0;
            if (!found) orphans++;
        }
    }
    CHECK_INT(mismatched, 0);
    CHECK_INT(orphans, 0);
    for (size_t i = 0; i < n; i++)
        basalt_record_release(recs[i]);
    free(recs);

    basalt_stats st;
    basalt_get_stats(&st);
    CHECK_INT(st.spans_started, total);
    CHECK_INT(st.spans_ended, total);
    CHECK_INT(st.spans_exported, total);
    CHECK(basalt_shutdown(1000));
    basalt_exporter_release(mem);
}

TEST_MAIN(TEST_CASE(test_states_in_threads_keep_their_own_context))
