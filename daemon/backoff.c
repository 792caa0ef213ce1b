/* Backoff with full jitter (see backoff.h). */
#include "backoff.h"

int64_t cr_backoff_delay(int attempt, int64_t retry_after_ms, long base_ms, long max_ms,
                         uint64_t rnd)
{
    int64_t cap = base_ms;
    int i;

    if (retry_after_ms >= 0)
        return retry_after_ms < max_ms ? retry_after_ms : max_ms;
    for (i = 1; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    return (int64_t)(rnd % (uint64_t)(cap + 1));
}

uint64_t cr_rand_next(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}
