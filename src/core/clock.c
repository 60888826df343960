/* Clocks: wall time for span timestamps, monotonic time for deadlines. */
#include "basalt/common.h"

#include <time.h>

uint64_t basalt_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t basalt_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *basalt_version(void) {
    return BASALT_VERSION;
}
