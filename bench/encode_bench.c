/* OTLP JSON encoding cost per span for qa-trace spans (WORKLOAD.md: 4 spans a
 * trace, 7 to 9 attributes each), in 512-span requests as the batch processor
 * sends them. Also times span-end hand-over into a batch processor whose
 * exporter discards. Prints one JSON line. Build: cmake -DBASALT_BENCH=ON.
 * Usage: encode_bench [requests]   (default 400 requests = 204,800 spans) */
#include "basalt/exporter.h"
#include "basalt/otlp_json.h"
#include "basalt/processor.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 512

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The i-th span of the workload: root, retrieval, prompt, generation in turn. */
static const basalt_span_record *qa_span(uint64_t i) {
    char user[32];
    snprintf(user, sizeof user, "user-%llu", (unsigned long long)((i / 4) % 1000));
    basalt_kv prop[4] = {{"basalt.span.feature_slug", basalt_v_str("qa")},
                         {"basalt.user.id", basalt_v_str(user)},
                         {"basalt.user.name", basalt_v_str("Alice")},
                         {"basalt.organization.id", basalt_v_str("org-1")}};
    basalt_kv attrs[9];
    size_t n = 0;
    for (int k = 0; k < 4; k++)
        attrs[n++] = prop[k];
    basalt_span_record t;
    memset(&t, 0, sizeof t);
    switch (i % 4) {
    case 0:
        t.name = "QA System";
        attrs[n++] = (basalt_kv){"basalt.metadata",
                                 basalt_v_str("{\"version\":\"2.0\",\"environment\":\"prod\"}")};
        attrs[n++] = (basalt_kv){"basalt.span.kind", basalt_v_str("span")};
        attrs[n++] = (basalt_kv){"basalt.in_trace", basalt_v_bool(true)};
        break;
    case 1:
        t.name = "search_knowledge_base";
        attrs[n++] = (basalt_kv){"basalt.span.kind", basalt_v_str("retrieval")};
        attrs[n++] = (basalt_kv){"basalt.retrieval.query", basalt_v_str("what is basalt?")};
        attrs[n++] = (basalt_kv){"basalt.retrieval.results.count", basalt_v_int(5)};
        break;
    case 2:
        t.name = "prompt.get";
        attrs[n++] = (basalt_kv){"basalt.prompt.slug", basalt_v_str("qa-prompt")};
        attrs[n++] = (basalt_kv){"basalt.prompt.version", basalt_v_str("1.2.0")};
        attrs[n++] =
            (basalt_kv){"basalt.prompt.variables", basalt_v_str("{\"query\":\"what is basalt?\"}")};
        break;
    default:
        t.name = "openai.chat.completions";
        attrs[n++] = (basalt_kv){"basalt.span.kind", basalt_v_str("generation")};
        attrs[n++] = (basalt_kv){"gen_ai.request.model", basalt_v_str("gpt-4o")};
        attrs[n++] = (basalt_kv){"gen_ai.usage.input_tokens", basalt_v_int(120)};
        attrs[n++] = (basalt_kv){"gen_ai.usage.output_tokens", basalt_v_int(48)};
        attrs[n++] = (basalt_kv){"gen_ai.provider.name", basalt_v_str("openai")};
        break;
    }
    memset(t.trace_id, 0x3c, 16);
    memcpy(t.trace_id, &i, sizeof i);
    t.trace_id[15] = 1;
    uint64_t sid = i + 1;
    memcpy(t.span_id, &sid, 8);
    t.has_parent = i % 4 != 0;
    memset(t.parent_span_id, 0x42, 8);
    t.kind = BASALT_OTEL_INTERNAL;
    t.trace_flags = 1;
    t.scope_name = "qa-trace";
    t.scope_version = "1.0.0";
    t.start_ns = 1795317913713000000ull + i * 1000;
    t.end_ns = t.start_ns + 169451;
    t.attrs = attrs;
    t.nattrs = (uint32_t)n;
    return basalt_record_clone(&t);
}

static basalt_export_result discard(basalt_exporter *e, const basalt_resource *res,
                                    const basalt_span_record *const *recs, size_t n, uint64_t d) {
    (void)e, (void)res, (void)recs, (void)n, (void)d;
    return BASALT_EXPORT_OK;
}

static void destroy(basalt_exporter *e) {
    free(e);
}

static const basalt_exporter_ops discard_ops = {"discard", discard, NULL, NULL, destroy};

int main(int argc, char **argv) {
    int requests = argc > 1 ? atoi(argv[1]) : 400;
    if (requests <= 0) requests = 400;
    const basalt_span_record *recs[BATCH];
    for (uint64_t i = 0; i < BATCH; i++)
        recs[i] = qa_span(i);
    basalt_kv res_attrs[] = {{"service.name", basalt_v_str("qa-trace-basalt-lua")},
                             {"service.version", basalt_v_str("0.1.0")},
                             {"telemetry.sdk.name", basalt_v_str("basalt-lua")},
                             {"telemetry.sdk.language", basalt_v_str("lua")},
                             {"telemetry.sdk.version", basalt_v_str("0.1.0")},
                             {"basalt.sdk.type", basalt_v_str("lua")},
                             {"basalt.sdk.version", basalt_v_str("0.1.0")}};
    basalt_resource res = {res_attrs, sizeof res_attrs / sizeof res_attrs[0]};

    basalt_buf b = {0};
    for (int w = 0; w < 20; w++) { /* warm-up: caches, buffer growth */
        basalt_buf_clear(&b);
        basalt_otlp_encode(&b, &res, recs, BATCH);
    }
    size_t bytes = 0;
    uint64_t t0 = cpu_ns();
    for (int r = 0; r < requests; r++) {
        basalt_buf_clear(&b);
        if (!basalt_otlp_encode(&b, &res, recs, BATCH)) return 1;
        bytes = b.len;
    }
    uint64_t enc = cpu_ns() - t0;
    double spans = (double)requests * BATCH;

    /* Span end hand-over: retain + enqueue into a batch processor (app thread only). */
    basalt_exporter *e = calloc(1, sizeof *e);
    basalt_exporter_init(e, &discard_ops, false);
    basalt_batch_config cfg;
    basalt_batch_config_defaults(&cfg);
    cfg.blocking = true;
    cfg.schedule_delay_ms = 200;
    basalt_processor *p = basalt_batch_processor_new(e, &res, &cfg);
    uint64_t handed = (uint64_t)requests * BATCH;
    uint64_t t1 = thread_ns();
    for (uint64_t i = 0; i < handed; i++)
        basalt_processor_on_end(p, recs[i % BATCH]);
    uint64_t hand = thread_ns() - t1;
    basalt_processor_flush(p, 10000);
    basalt_processor_shutdown(p, 10000);
    uint64_t exported = atomic_load(&e->counters.exported);
    basalt_processor_free(p);
    basalt_exporter_release(e);

    printf("{\"bench\":\"otlp_encode\",\"spans\":%.0f,\"requests\":%d,\"encode_ns_per_span\":%.1f,"
           "\"bytes_per_span\":%.1f,\"request_bytes\":%zu,\"on_end_ns_per_span\":%.1f,"
           "\"handed_over\":%llu,\"exported\":%llu}\n",
           spans, requests, (double)enc / spans, (double)bytes / BATCH, bytes,
           (double)hand / (double)handed, (unsigned long long)handed, (unsigned long long)exported);
    for (int i = 0; i < BATCH; i++)
        basalt_record_release(recs[i]);
    basalt_buf_free(&b);
    return 0;
}
