/* TEMPORARY weak stand-ins for components being built on other branches (batch
 * processor, OTLP and console exporters). The real definitions are strong
 * symbols and win at link time; this file goes away once they have landed. */
#include "basalt/exporter.h"
#include "basalt/processor.h"

#define WEAK __attribute__((weak))

#include "basalt/propagation.h"

WEAK basalt_ctx *basalt_extract(const char *traceparent, const char *tracestate,
                                const char *baggage) {
    (void)traceparent;
    (void)tracestate;
    (void)baggage;
    return NULL;
}

WEAK bool basalt_inject(const basalt_ctx *c, basalt_header_fn fn, void *ud) {
    (void)c;
    (void)fn;
    (void)ud;
    return false;
}

