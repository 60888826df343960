/* Generation-span content helpers (semantics 7.2): the prompt text and the
 * completion, each written as the span's input/output and, content gating
 * permitting, as the GenAI messages attribute in the OpenTelemetry GenAI
 * message shape. */
#include "basalt/attrs.h"
#include "basalt/common.h"
#include "basalt/otlp_json.h"
#include "basalt/span.h"

#include <stdbool.h>

/* [{"role":ROLE,"parts":[{"type":"text","content":TEXT}]TAIL}] */
static void write_messages(basalt_span *s, const char *key, const char *role, const char *text,
                           size_t len, const char *tail) {
    basalt_buf b = {0};
    basalt_buf_puts(&b, "[{\"role\":\"");
    basalt_buf_puts(&b, role);
    basalt_buf_puts(&b, "\",\"parts\":[{\"type\":\"text\",\"content\":");
    bool ok = basalt_json_write_string(&b, text, len);
    basalt_buf_puts(&b, "}]");
    basalt_buf_puts(&b, tail);
    basalt_buf_puts(&b, "}]");
    if (ok && b.data) basalt_span_set_content_attr(s, key, basalt_v_strn(b.data, b.len));
    basalt_buf_free(&b);
}

void basalt_span_set_prompt_text(basalt_span *s, const char *text, size_t len) {
    if (s == NULL || text == NULL) return;
    basalt_span_set_input(s, basalt_v_strn(text, len));
    if (basalt_span_kind(s) == BASALT_KIND_GENERATION)
        write_messages(s, BASALT_ATTR_GENAI_INPUT_MESSAGES, "user", text, len, "");
}

void basalt_span_set_completion(basalt_span *s, const char *text, size_t len) {
    if (s == NULL || text == NULL) return;
    basalt_span_set_output(s, basalt_v_strn(text, len));
    if (basalt_span_kind(s) == BASALT_KIND_GENERATION)
        write_messages(s, BASALT_ATTR_GENAI_OUTPUT_MESSAGES, "assistant", text, len,
                       ",\"finish_reason\":\"stop\"");
}
