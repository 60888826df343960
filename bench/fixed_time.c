/* Preloaded under callgrind by the benchmark scripts: Lua 5.4 seeds its string
 * hashes from time(), so instruction counts varied by about 100 a span from
 * run to run. With a fixed time() (and valgrind's fixed address layout) the
 * counts repeat exactly. Nothing else here calls time(): spans are timed with
 * clock_gettime. */
#include <time.h>

time_t time(time_t *t) {
    const time_t fixed = 1700000000;
    if (t) *t = fixed;
    return fixed;
}
