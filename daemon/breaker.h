/* A circuit breaker per provider: a run of failures (timeouts, refused or
 * reset connections, 5xx) opens it, so the channel's traffic moves to its next
 * provider; after the open period one probe request is let through, and its
 * success closes the circuit while its failure opens it again for twice as
 * long (capped). Pure: the time is an argument. */
#ifndef CR_BREAKER_H
#define CR_BREAKER_H

#include <stdint.h>

enum cr_breaker_state { CR_BREAKER_CLOSED, CR_BREAKER_OPEN, CR_BREAKER_HALF_OPEN };

struct cr_breaker {
    enum cr_breaker_state state;
    int threshold;         /* failures in a row that open it; 0 = never opens */
    int failures;
    long base_open_ms;
    long open_ms;          /* current open period */
    long max_open_ms;
    int64_t open_until_ms;
    int probing;           /* half-open: the probe is in flight */
};

void cr_breaker_init(struct cr_breaker *b, int threshold, long open_ms);

/* Whether a request may be sent at now_ms; in the half-open state only one
 * probe is allowed until its outcome is reported. Moves open → half-open when
 * the open period is over. */
int cr_breaker_allow(struct cr_breaker *b, int64_t now_ms);

/* Outcome of a request that was allowed. Return the state after it. */
enum cr_breaker_state cr_breaker_success(struct cr_breaker *b);
enum cr_breaker_state cr_breaker_failure(struct cr_breaker *b, int64_t now_ms);

/* "closed", "open", "half_open". */
const char *cr_breaker_state_name(enum cr_breaker_state s);

#endif
