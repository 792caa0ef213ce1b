/* Token bucket (see limiter.h). */
#include "limiter.h"

void cr_bucket_init(struct cr_bucket *b, long rate_per_s, long burst, int64_t now_ms)
{
    b->rate = rate_per_s > 0 ? rate_per_s : 0;
    b->cap = (burst > 0 ? burst : (b->rate > 0 ? b->rate : 1)) * 1000;
    b->milli = b->cap;
    b->last_ms = now_ms;
}

void cr_bucket_refund(struct cr_bucket *b)
{
    b->milli += 1000;
    if (b->milli > b->cap)
        b->milli = b->cap;
}

int cr_bucket_limited(const struct cr_bucket *b)
{
    return b->rate > 0;
}

static void refill(struct cr_bucket *b, int64_t now_ms)
{
    if (now_ms <= b->last_ms)
        return;
    b->milli += (now_ms - b->last_ms) * b->rate;
    if (b->milli > b->cap)
        b->milli = b->cap;
    b->last_ms = now_ms;
}

int cr_bucket_take(struct cr_bucket *b, int64_t now_ms, int64_t *wait_ms)
{
    if (!cr_bucket_limited(b))
        return 1;
    refill(b, now_ms);
    if (b->milli >= 1000) {
        b->milli -= 1000;
        return 1;
    }
    *wait_ms = (1000 - b->milli + b->rate - 1) / b->rate;
    return 0;
}

int64_t cr_bucket_wait_ms(const struct cr_bucket *b, int64_t now_ms)
{
    int64_t milli;

    if (!cr_bucket_limited(b))
        return 0;
    milli = b->milli;
    if (now_ms > b->last_ms)
        milli += (now_ms - b->last_ms) * b->rate;
    if (milli >= 1000)
        return 0;
    return (1000 - milli + b->rate - 1) / b->rate;
}
