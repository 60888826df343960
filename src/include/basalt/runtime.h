/* The process-wide runtime: configuration, the export pipeline, lifecycle and
 * counters. One runtime per process (it is what exporters and the worker
 * threads hang off); every function here is thread-safe. */
#ifndef BASALT_RUNTIME_H
#define BASALT_RUNTIME_H

#include "basalt/common.h"
#include "basalt/exporter.h"
#include "basalt/processor.h"
#include "basalt/span.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Configuration given to basalt_init. Zero-initialise, then set what you need;
 * unset fields come from the environment, then defaults (an explicit field
 * always beats its environment variable). Strings are copied. */
typedef struct basalt_config {
    const char *api_key;         /* BASALT_API_KEY */
    const char *api_url;         /* BASALT_API_URL, then https://api.getbasalt.ai */
    uint32_t api_timeout_ms;     /* 0 = 30000 */
    const char *service_name;    /* BASALT_SERVICE_NAME / OTEL_SERVICE_NAME, then "basalt-lua" */
    const char *service_version; /* library version when unset */
    const char *environment;     /* BASALT_ENVIRONMENT */
    int enabled; /* -1/0 unset (env BASALT_TELEMETRY_ENABLED, default on), 1 on, 2 off */
    /* Exporters: when exporters_set, exactly these (retained; may be empty);
     * otherwise the default: OTLP when an API key or an OTLP endpoint variable is
     * known, else the console exporter. */
    bool exporters_set;
    basalt_exporter *const *exporters;
    size_t nexporters;
    bool batch_set;                /* when false: defaults + OTEL_BSP_* */
    basalt_batch_config batch;     /* batching of non-synchronous exporters */
    const char *const *evaluators; /* global evaluators, propagating */
    size_t nevaluators;
    const basalt_kv *metadata; /* global metadata -> basalt.meta.<key> */
    size_t nmetadata;
    bool has_sample_rate; /* else BASALT_SAMPLE_RATE, else 0.0 */
    double sample_rate;
    basalt_policy_fn policy; /* process-wide sampling policy of a C host */
    void *policy_ud;
    int trace_content; /* -1/0 unset (env BASALT_TRACE_CONTENT, TRACELOOP_TRACE_CONTENT), 1 on, 2
                          off */
    double prompt_cache_ttl_s;       /* 0 = 300 */
    double prompt_fallback_ttl_s;    /* 0 = 86400 */
    const basalt_kv *resource_attrs; /* extra resource attributes (win over defaults) */
    size_t nresource_attrs;
} basalt_config;

/* (Re)configures the runtime: an existing pipeline is flushed and shut down
 * first (bounded by its export timeout). Returns false with err filled when the
 * configuration is invalid (e.g. sample_rate out of range). */
BASALT_API bool basalt_init(const basalt_config *cfg, basalt_error *err);
/* Initialises with defaults if nothing was configured yet (first span). */
BASALT_API void basalt_ensure_init(void);
/* Flushes every exporter within timeout_ms; false on timeout. */
BASALT_API bool basalt_force_flush(uint32_t timeout_ms);
/* Flushes and stops the pipeline within timeout_ms. Later spans are no-ops until
 * basalt_init. Returns true when everything was handed over in time. */
BASALT_API bool basalt_shutdown(uint32_t timeout_ms);

/* Counters since init. */
#define BASALT_MAX_EXPORTERS 16
typedef struct basalt_exporter_stats {
    const char *type;
    uint64_t spans_exported, spans_failed, spans_dropped, export_failures, export_retries;
    uint64_t queue_size;
} basalt_exporter_stats;

typedef struct basalt_stats {
    uint64_t spans_started, spans_ended, spans_exported, spans_dropped;
    uint64_t export_failures, export_retries, queue_size;
    size_t nexporters;
    basalt_exporter_stats exporters[BASALT_MAX_EXPORTERS];
} basalt_stats;

BASALT_API void basalt_get_stats(basalt_stats *out);

/* Settings of the Basalt REST API client, copied out under the runtime lock. */
typedef struct basalt_api_settings {
    char api_key[512]; /* "" when none */
    char api_url[512];
    uint32_t timeout_ms;
    double prompt_cache_ttl_s;
    double prompt_fallback_ttl_s;
} basalt_api_settings;

/* Copies the effective API settings (defaults when not initialised). */
BASALT_API void basalt_get_api_settings(basalt_api_settings *out);
/* Whether content capture (input, output, variables, messages) is on. */
BASALT_API bool basalt_config_trace_content(void);
/* True when the runtime is initialised, enabled and not shut down. */
BASALT_API bool basalt_is_enabled(void);

#ifdef __cplusplus
}
#endif
#endif
