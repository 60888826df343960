/* Trace and span ids: a fast per-thread generator (xoshiro256**) seeded from the
 * OS (getrandom), reseeded in a forked child. Never time or pid based. */
#ifndef BASALT_IDS_H
#define BASALT_IDS_H

#include "basalt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new non-zero trace id. */
BASALT_API void basalt_new_trace_id(uint8_t out[16]);
/* A new non-zero span id. */
BASALT_API void basalt_new_span_id(uint8_t out[8]);
/* A uniformly random 64-bit value (jitter, sampling). */
BASALT_API uint64_t basalt_random_u64(void);

#ifdef __cplusplus
}
#endif
#endif
