/* Backoff: the cap, the doubling, full jitter bounds, Retry-After honoured. */
#include "backoff.h"
#include "test.h"

TEST(backoff_honours_retry_after_capped)
{
    ASSERT_INT_EQ(cr_backoff_delay(1, 1500, 100, 30000, 12345), 1500);
    ASSERT_INT_EQ(cr_backoff_delay(3, 0, 100, 30000, 12345), 0);
    ASSERT_INT_EQ(cr_backoff_delay(1, 90000, 100, 30000, 1), 30000);
}

TEST(backoff_full_jitter_within_doubling_cap)
{
    uint64_t st = 42;
    int attempt;
    int i;

    for (attempt = 1; attempt <= 12; attempt++) {
        int64_t cap = 100;
        int64_t maxseen = 0;

        for (i = 1; i < attempt; i++)
            cap = cap * 2 > 5000 ? 5000 : cap * 2;
        for (i = 0; i < 2000; i++) {
            int64_t d = cr_backoff_delay(attempt, -1, 100, 5000, cr_rand_next(&st));

            ASSERT(d >= 0);
            ASSERT(d <= cap);
            if (d > maxseen)
                maxseen = d;
        }
        ASSERT(maxseen > cap / 2); /* jitter spans the range */
    }
    ASSERT_INT_EQ(cr_backoff_delay(1, -1, 100, 5000, 100), 100);
    ASSERT_INT_EQ(cr_backoff_delay(1, -1, 100, 5000, 101), 0);
}
