/* Prompts: the Jinja2-subset template engine, the prompt cache and the client
 * of the Basalt REST API (get / describe / list) with its request tracing.
 * Pure C: a C host can fetch, cache, render and trace prompts without Lua.
 *
 * Phases, one file each: prompt_template.c (parse + render templates),
 * prompt_parse.c (lenient response parsing), prompt_cache.c (TTL caches),
 * prompts_client.c (HTTP requests, retries, status mapping, caching flow,
 * spans). */
#ifndef BASALT_PROMPTS_H
#define BASALT_PROMPTS_H

#include "basalt/common.h"
#include "basalt/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------ */

/* Stable error codes (lua-api.md conventions); "http_<status>" is built. */
#define BASALT_PERR_BAD_REQUEST          "bad_request"
#define BASALT_PERR_UNAUTHORIZED         "unauthorized"
#define BASALT_PERR_FORBIDDEN            "forbidden"
#define BASALT_PERR_NOT_FOUND            "not_found"
#define BASALT_PERR_NETWORK              "network"
#define BASALT_PERR_TIMEOUT              "timeout"
#define BASALT_PERR_INVALID_JSON         "invalid_json"
#define BASALT_PERR_TEMPLATE_UNSUPPORTED "template_unsupported"
#define BASALT_PERR_TEMPLATE_SYNTAX      "template_syntax"

/* A failure a program should handle. Never contains the API key. */
typedef struct basalt_prompt_error {
    char code[32];     /* one of the codes above or "http_<status>"; "" = no error */
    char message[512]; /* the API's error/errors field when present */
    long status;       /* HTTP status, 0 when none */
    unsigned line;     /* template errors: 1-based position, 0 otherwise */
    unsigned column;
} basalt_prompt_error;

/* ---- templates (Decision 13) ------------------------------------------------------- */

/* A parsed template: {{ name }}, {{ a.b }}, {% if %}/{% elif %}/{% else %}/{% endif %},
 * {% for v in list %}/{% endfor %} (with loop.index, index0, revindex, revindex0,
 * first, last, length), {# comments #}; one trailing newline removed. Anything else
 * fails to parse with template_unsupported (template_syntax when malformed). */
typedef struct basalt_template basalt_template;

/* Parses src[0..len); NULL with err filled (code, message with line:column). */
BASALT_API basalt_template *basalt_template_parse(const char *src, size_t len,
                                                  basalt_prompt_error *err);
/* Renders with vars (a KVLIST value, or NULL for none) appended to out. Missing
 * names render as ""; truthiness as in Jinja (none, false, 0, "", empty list/map
 * are false). Returns false with err filled (e.g. iterating over a number). */
BASALT_API bool basalt_template_render(const basalt_template *t, const basalt_value *vars,
                                       basalt_buf *out, basalt_prompt_error *err);
/* Frees a template (NULL is fine). */
BASALT_API void basalt_template_free(basalt_template *t);
/* Parses and renders in one call. */
BASALT_API bool basalt_template_render_text(const char *src, size_t len, const basalt_value *vars,
                                            basalt_buf *out, basalt_prompt_error *err);

/* ---- prompts ----------------------------------------------------------------------- */

/* Model of a prompt (14.2 defaults applied). JSON fields hold JSON text. */
typedef struct basalt_prompt_model {
    const char *provider, *model, *version; /* "" when absent */
    double temperature;                     /* 0.0 when absent */
    int64_t max_length;                     /* 0 when absent */
    const char *response_format;            /* "text" when absent */
    bool has_top_k, has_top_p, has_frequency_penalty, has_presence_penalty;
    double top_k, top_p, frequency_penalty, presence_penalty;
    const char *json_object_json; /* JSON object, NULL when absent */
    const char *tools_json;       /* JSON array, "[]" when absent */
    const char *tool_choice_json; /* JSON value, NULL when absent */
} basalt_prompt_model;

/* A fetched prompt: immutable, reference-counted (shared with the caches), with
 * the raw (uncompiled) templates. */
typedef struct basalt_prompt {
    const char *slug;        /* the returned slug, else the requested one */
    const char *version;     /* the returned version ("" when absent) */
    const char *tag;         /* the returned tag, else the requested one; NULL when none */
    const char *text;        /* raw template */
    const char *system_text; /* raw system template ("" when absent) */
    basalt_prompt_model model;
} basalt_prompt;

/* Parses a get response body ({"prompt": {...}}) leniently. requested_slug and
 * requested_tag fill slug and tag when the response has none. NULL with err
 * (invalid_json) when the body is not JSON or has no prompt object. */
BASALT_API basalt_prompt *basalt_prompt_parse(const char *body, size_t len,
                                              const char *requested_slug, const char *requested_tag,
                                              basalt_prompt_error *err);
/* Builds a prompt from its parts (copies everything; NULL JSON fields take the
 * defaults). For C hosts and tests. NULL when out of memory. */
BASALT_API basalt_prompt *basalt_prompt_new(const basalt_prompt *tmpl);
BASALT_API const basalt_prompt *basalt_prompt_retain(const basalt_prompt *p);
BASALT_API void basalt_prompt_release(const basalt_prompt *p);

/* Normalises a describe response body ({"prompt": {...}}) into a JSON object with
 * the lua-api.md keys (slug, status, name, description, available_versions,
 * available_tags, variables) appended to out. False with err when invalid. */
BASALT_API bool basalt_prompt_parse_describe(const char *body, size_t len, basalt_buf *out,
                                             basalt_prompt_error *err);
/* Normalises a list response body ({"prompts": [...]}) into a JSON array of the
 * describe objects without variables (non-map items skipped; a missing or wrong
 * list gives []). False with err only when the body is not JSON. */
BASALT_API bool basalt_prompt_parse_list(const char *body, size_t len, basalt_buf *out,
                                         basalt_prompt_error *err);

/* ---- cache (Decision 12) ----------------------------------------------------------- */

/* A bounded TTL cache keyed by (slug, version, tag); NULL version/tag are keys of
 * their own (distinct from ""). Thread-safe. */
typedef struct basalt_prompt_cache basalt_prompt_cache;

/* A cache of at most max_entries (0 = 512). NULL when out of memory. */
BASALT_API basalt_prompt_cache *basalt_prompt_cache_new(size_t max_entries);
BASALT_API void basalt_prompt_cache_free(basalt_prompt_cache *c);
/* Stores p (retained) for ttl_s seconds from now_ns, replacing the entry. When full,
 * an expired entry, else the least recently used one, makes room. */
BASALT_API bool basalt_prompt_cache_put(basalt_prompt_cache *c, const char *slug,
                                        const char *version, const char *tag,
                                        const basalt_prompt *p, double ttl_s, uint64_t now_ns);
/* A new reference to the entry if it is live at now_ns, else NULL. */
BASALT_API const basalt_prompt *basalt_prompt_cache_get(basalt_prompt_cache *c, const char *slug,
                                                        const char *version, const char *tag,
                                                        uint64_t now_ns);
/* Number of entries held (expired ones included until evicted). */
BASALT_API size_t basalt_prompt_cache_size(basalt_prompt_cache *c);
/* Drops every entry. */
BASALT_API void basalt_prompt_cache_clear(basalt_prompt_cache *c);

/* ---- client (sections 14-16, Decisions 11-12) -------------------------------------- */

typedef struct basalt_prompts_client basalt_prompts_client;

/* Client options; zero-initialise. Unset fields come from the runtime's API
 * settings (basalt_get_api_settings) at every call, so a later init applies. */
typedef struct basalt_prompts_client_opts {
    const char *api_key;      /* NULL: runtime settings (init{api_key}, BASALT_API_KEY) */
    const char *api_url;      /* NULL: runtime settings */
    uint32_t timeout_ms;      /* per attempt; 0: runtime settings */
    double cache_ttl_s;       /* 0: runtime settings (300) */
    double fallback_ttl_s;    /* 0: runtime settings (86400) */
    uint32_t retry_base_ms;   /* backoff base (sleeps base, then 2 x base); 0: env
                                 BASALT_API_RETRY_BASE_MS, else 500 */
    unsigned max_attempts;    /* 0 = 3 */
    size_t max_cache_entries; /* per cache; 0 = 512 */
} basalt_prompts_client_opts;

/* A client (NULL opts = all defaults). Thread-safe: several threads may share one
 * (caches are locked; idle connections are pooled under a lock). NULL on OOM. */
BASALT_API basalt_prompts_client *basalt_prompts_client_new(const basalt_prompts_client_opts *o);
BASALT_API void basalt_prompts_client_free(basalt_prompts_client *c);

/* What get asks for. */
typedef struct basalt_prompt_get_opts {
    const char *slug;              /* required */
    const char *version;           /* NULL = none */
    const char *tag;               /* NULL = none */
    bool no_cache;                 /* cache = false: no cache read or write, no fallback */
    const basalt_value *variables; /* KVLIST to render with; NULL/empty: texts stay raw */
    const char *variables_json;    /* the same variables as JSON (for spans), or NULL */
    const basalt_ctx *parent;      /* current context: inside a trace a prompt.get span opens */
} basalt_prompt_get_opts;

/* What get returns. */
typedef struct basalt_prompt_result {
    const basalt_prompt *prompt; /* a reference (raw templates) */
    bool from_cache;             /* served from the cache or the fallback cache */
    char *text;                  /* rendered text (malloc'd), NULL when not rendered */
    char *system_text;           /* rendered system text, NULL when not rendered */
} basalt_prompt_result;

/* Fetches a prompt: cache, else GET {base}/prompts/{slug}?version=&tag= (up to 3
 * attempts on transport errors), else the fallback cache (from_cache, one warning).
 * Renders when variables are given. Returns false with err filled. */
BASALT_API bool basalt_prompts_get(basalt_prompts_client *c, const basalt_prompt_get_opts *o,
                                   basalt_prompt_result *out, basalt_prompt_error *err);
/* Releases what a result holds (safe on a zeroed result). */
BASALT_API void basalt_prompt_result_free(basalt_prompt_result *r);
/* GET {base}/prompts/{slug}/describe: the normalised JSON object appended to out.
 * Inside a trace opens a basalt.sdk.prompts.describe request span. */
BASALT_API bool basalt_prompts_describe(basalt_prompts_client *c, const char *slug,
                                        const char *version, const char *tag,
                                        const basalt_ctx *parent, basalt_buf *out,
                                        basalt_prompt_error *err);
/* GET {base}/prompts?featureSlug=: the normalised JSON array appended to out.
 * Inside a trace opens a basalt.sdk.prompts.list request span. */
BASALT_API bool basalt_prompts_list(basalt_prompts_client *c, const char *feature_slug,
                                    const basalt_ctx *parent, basalt_buf *out,
                                    basalt_prompt_error *err);

#ifdef __cplusplus
}
#endif
#endif
