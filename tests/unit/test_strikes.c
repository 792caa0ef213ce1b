/* Strikes: counting per step and reason, doubling waits, forgetting. */
#include <stdio.h>

#include "strikes.h"
#include "test.h"

TEST(strikes_count_same_reason_and_double_the_wait)
{
    static struct cr_strikes s;
    long wait = 0;

    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR x", 1000, 250, 60000, &wait), 1);
    ASSERT_INT_EQ(wait, 250);
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR x", 1300, 250, 60000, &wait), 2);
    ASSERT_INT_EQ(wait, 500);
    ASSERT_INT_EQ(cr_strikes_add(&s, "2-0", "ERR x", 1300, 250, 60000, &wait), 1);
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR x", 1900, 250, 60000, &wait), 3);
    ASSERT_INT_EQ(wait, 1000);
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR x", 2000, 250, 700, &wait), 4);
    ASSERT_INT_EQ(wait, 700); /* capped */
    /* another reason starts again */
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR y", 2100, 250, 60000, &wait), 1);
    /* a long quiet spell starts again */
    ASSERT_INT_EQ(
        cr_strikes_add(&s, "1-0", "ERR y", 2100 + CR_STRIKES_FORGET_MS + 1, 250, 60000, &wait), 1);
    {
        const char *why = NULL;

        ASSERT_INT_EQ(cr_strikes_count(&s, "1-0", &why), 1);
        ASSERT_STR_EQ(why, "ERR y");
        ASSERT_INT_EQ(cr_strikes_count(&s, "nope", &why), 0);
        ASSERT(why == NULL);
    }
    cr_strikes_clear(&s, "1-0");
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR y", 5000, 250, 60000, &wait), 1);
}

TEST(strikes_table_drops_the_stalest_when_full)
{
    static struct cr_strikes s;
    char subject[16];
    long wait;
    int i;

    for (i = 0; i < CR_STRIKES_SLOTS; i++) {
        snprintf(subject, sizeof(subject), "%d-0", i);
        cr_strikes_add(&s, subject, "ERR", 1000 + i, 1, 1, &wait);
    }
    cr_strikes_add(&s, "0-0", "ERR", 5000, 1, 1, &wait); /* "0-0" is now the freshest */
    ASSERT_INT_EQ(cr_strikes_add(&s, "new", "ERR", 6000, 1, 1, &wait), 1);
    /* "1-0" was the stalest and made room; "0-0" kept its count */
    ASSERT_INT_EQ(cr_strikes_add(&s, "0-0", "ERR", 7000, 1, 1, &wait), 3);
    ASSERT_INT_EQ(cr_strikes_add(&s, "1-0", "ERR", 7000, 1, 1, &wait), 1);
}
