/* A token bucket: at most burst + rate x T messages in any window of T. Pure:
 * the time is an argument. Each provider has one in every crierd to pace its
 * own sends; the account-wide limit shared by all crierd processes is the same
 * bucket kept in Redis (the tokens script), from which blocks are taken. */
#ifndef CR_LIMITER_H
#define CR_LIMITER_H

#include <stdint.h>

/* Counted in thousandths of a token, so that refills are exact integers: a
 * rate of r per second adds r thousandths every millisecond. */
struct cr_bucket {
    int64_t rate;       /* tokens per second; 0 = no limit */
    int64_t cap;        /* burst, in thousandths */
    int64_t milli;      /* tokens held, in thousandths */
    int64_t last_ms;
};

/* A full bucket of burst tokens (burst 0 = one second's worth) refilling at
 * rate_per_s; rate_per_s 0 disables the limit. */
void cr_bucket_init(struct cr_bucket *b, long rate_per_s, long burst, int64_t now_ms);

/* Takes one token at now_ms: returns 1, or 0 with *wait_ms set to the time
 * until one is available. Time going backwards adds nothing. */
int cr_bucket_take(struct cr_bucket *b, int64_t now_ms, int64_t *wait_ms);

/* Gives back a token taken and not used (never above the bucket's size). */
void cr_bucket_refund(struct cr_bucket *b);

/* Time from now_ms until a token is there to take (0: one is there now, or
 * no limit); the bucket is not changed. For the fleet heartbeat. */
int64_t cr_bucket_wait_ms(const struct cr_bucket *b, int64_t now_ms);

/* Nonzero when the bucket limits anything. */
int cr_bucket_limited(const struct cr_bucket *b);

#endif
