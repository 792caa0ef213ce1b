/* Counting the failures of one step of work (a job entry's accept or
 * expansion): a step that keeps failing for the same reason is retried a
 * bounded number of times, with doubling waits, and then given up with the
 * reason, instead of being retried for ever. Pure: time is passed in. */
#ifndef CR_STRIKES_H
#define CR_STRIKES_H

#include <stddef.h>
#include <stdint.h>

#define CR_STRIKES_MAX 5                        /* attempts before a step is given up */
#define CR_STRIKES_SLOTS 64                     /* steps tracked at once; the stalest is dropped */
#define CR_STRIKES_FORGET_MS (30LL * 60 * 1000) /* a step quiet this long starts again */

struct cr_strike {
    char subject[48]; /* "" = free slot */
    char reason[160];
    unsigned count; /* consecutive failures with this reason */
    int64_t last_ms;
};

struct cr_strikes {
    struct cr_strike slot[CR_STRIKES_SLOTS];
};

/* Records a failure of subject (e.g. a stream entry id) for reason at now_ms.
 * Returns the number of consecutive failures with the same reason (1 for the
 * first, or after a different reason, or after CR_STRIKES_FORGET_MS without
 * one) and sets *wait_ms to the wait before the next attempt: base_ms doubled
 * per failure, at most max_ms. A count >= CR_STRIKES_MAX means give up. */
unsigned cr_strikes_add(struct cr_strikes *s, const char *subject, const char *reason,
                        int64_t now_ms, long base_ms, long max_ms, long *wait_ms);

/* The failures counted for subject so far (0 when none), and the reason of
 * the last one in *reason (NULL when none; valid until the next call). A
 * count >= CR_STRIKES_MAX means the step was given up: do not try it again,
 * only record that it was given up. */
unsigned cr_strikes_count(const struct cr_strikes *s, const char *subject, const char **reason);

/* Forgets subject's failures (its step succeeded or was given up). */
void cr_strikes_clear(struct cr_strikes *s, const char *subject);

#endif
