/* Retry delays: exponential backoff with full jitter, capped, honouring a
 * provider's Retry-After. Pure: the random value comes from the caller. */
#ifndef CR_BACKOFF_H
#define CR_BACKOFF_H

#include <stdint.h>

/* Delay before attempt number `attempt` + 1 (attempt >= 1 attempts made):
 * retry_after_ms when >= 0 (the provider's word, capped at max_ms), else a
 * uniform value in [0, min(max_ms, base_ms * 2^(attempt-1))] drawn from rnd. */
int64_t cr_backoff_delay(int attempt, int64_t retry_after_ms, long base_ms, long max_ms,
                         uint64_t rnd);

/* xorshift64*: advances *state (never 0) and returns the next value. */
uint64_t cr_rand_next(uint64_t *state);

#endif
