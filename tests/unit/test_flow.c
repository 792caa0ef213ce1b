/* Token bucket and circuit breaker with a hand-stepped clock, including the
 * edges of windows (no off-by-one at the boundary). */
#include "breaker.h"
#include "limiter.h"
#include "test.h"

TEST(bucket_starts_full_then_paces)
{
    struct cr_bucket b;
    int64_t wait = 0;
    int i;

    cr_bucket_init(&b, 10, 5, 1000);
    for (i = 0; i < 5; i++)
        ASSERT_INT_EQ(cr_bucket_take(&b, 1000, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 1000, &wait), 0);
    ASSERT_INT_EQ(wait, 100); /* 10/s: one token every 100 ms */
    ASSERT_INT_EQ(cr_bucket_take(&b, 1099, &wait), 0);
    ASSERT_INT_EQ(wait, 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 1100, &wait), 1); /* exactly at the edge */
    ASSERT_INT_EQ(cr_bucket_take(&b, 1100, &wait), 0);
}

TEST(bucket_never_exceeds_rate_plus_burst_in_any_window)
{
    struct cr_bucket b;
    int64_t wait = 0;
    int64_t t;
    int sent[4000] = {0};
    int i;

    /* greedy sender, 1 ms steps for 4 s, rate 50/s burst 20 */
    cr_bucket_init(&b, 50, 20, 0);
    for (t = 0; t < 4000; t++) {
        while (cr_bucket_take(&b, t, &wait))
            sent[t]++;
    }
    for (t = 0; t + 1000 <= 4000; t++) {
        int n = 0;

        for (i = 0; i < 1000; i++)
            n += sent[t + i];
        ASSERT(n <= 50 + 20);
    }
    /* and it keeps up with the rate: 20 + 50 x 4 in 4 s, minus at most one */
    for (i = 0, t = 0; t < 4000; t++)
        i += sent[t];
    ASSERT(i >= 219 && i <= 220);
}

TEST(bucket_refills_to_burst_only_and_ignores_time_going_back)
{
    struct cr_bucket b;
    int64_t wait = 0;
    int i;

    cr_bucket_init(&b, 100, 3, 0);
    for (i = 0; i < 3; i++)
        ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    /* a long idle time refills to the burst, not beyond */
    for (i = 0; i < 3; i++)
        ASSERT_INT_EQ(cr_bucket_take(&b, 60000, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 60000, &wait), 0);
    ASSERT_INT_EQ(cr_bucket_take(&b, 59000, &wait), 0);
    ASSERT_INT_EQ(wait, 10);
}

TEST(bucket_refund_returns_a_token_but_never_above_burst)
{
    struct cr_bucket b;
    int64_t wait = 0;

    cr_bucket_init(&b, 10, 2, 0);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 0);
    cr_bucket_refund(&b); /* a token taken for a message that was not sent */
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 0);
    cr_bucket_refund(&b);
    cr_bucket_refund(&b);
    cr_bucket_refund(&b); /* one too many: the bucket holds its burst, no more */
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 0);
}

TEST(bucket_unlimited)
{
    struct cr_bucket b;
    int64_t wait = -5;
    int i;

    cr_bucket_init(&b, 0, 0, 0);
    for (i = 0; i < 100000; i++)
        ASSERT_INT_EQ(cr_bucket_take(&b, 0, &wait), 1);
    ASSERT_INT_EQ(wait, -5);
}

TEST(breaker_opens_after_threshold_and_probes_once)
{
    struct cr_breaker br;

    cr_breaker_init(&br, 3, 1000);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 0), 1);
    ASSERT_INT_EQ(cr_breaker_failure(&br, 0), CR_BREAKER_CLOSED);
    ASSERT_INT_EQ(cr_breaker_failure(&br, 0), CR_BREAKER_CLOSED);
    ASSERT_INT_EQ(cr_breaker_failure(&br, 10), CR_BREAKER_OPEN);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 1009), 0);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 1010), 1); /* the open period is over: one probe */
    ASSERT_INT_EQ(br.state, CR_BREAKER_HALF_OPEN);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 1010), 0); /* only one probe at a time */
    ASSERT_INT_EQ(cr_breaker_success(&br), CR_BREAKER_CLOSED);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 1011), 1);
    ASSERT_STR_EQ(cr_breaker_state_name(br.state), "closed");
}

TEST(breaker_failed_probe_doubles_the_open_period_capped)
{
    struct cr_breaker br;
    int64_t t = 0;
    int i;

    cr_breaker_init(&br, 1, 100);
    ASSERT_INT_EQ(cr_breaker_failure(&br, t), CR_BREAKER_OPEN);
    for (i = 0; i < 10; i++) {
        t = br.open_until_ms;
        ASSERT_INT_EQ(cr_breaker_allow(&br, t), 1);
        ASSERT_INT_EQ(cr_breaker_failure(&br, t), CR_BREAKER_OPEN);
    }
    ASSERT_INT_EQ(br.open_ms, 1600); /* 100 x 16 cap */
    ASSERT_INT_EQ(br.open_until_ms - t, 1600);
    /* a success resets the period and the count */
    ASSERT_INT_EQ(cr_breaker_allow(&br, br.open_until_ms), 1);
    cr_breaker_success(&br);
    ASSERT_INT_EQ(br.open_ms, 100);
}

TEST(breaker_success_resets_the_run_and_zero_threshold_never_opens)
{
    struct cr_breaker br;
    int i;

    cr_breaker_init(&br, 3, 1000);
    cr_breaker_failure(&br, 0);
    cr_breaker_failure(&br, 0);
    cr_breaker_success(&br);
    cr_breaker_failure(&br, 0);
    cr_breaker_failure(&br, 0);
    ASSERT_INT_EQ(br.state, CR_BREAKER_CLOSED);
    cr_breaker_init(&br, 0, 1000);
    for (i = 0; i < 1000; i++)
        cr_breaker_failure(&br, 0);
    ASSERT_INT_EQ(cr_breaker_allow(&br, 0), 1);
}
