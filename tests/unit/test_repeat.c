/* Repeat suppression of log lines: a new line is written, repeats are counted
 * and summed up when the line changes or the window passes. */
#include "repeat.h"
#include "test.h"

TEST(repeat_new_lines_are_written)
{
    struct cr_repeat rp;
    char sum[600];
    int lvl = -1;

    cr_repeat_init(&rp, 30000);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "a", 0, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "b", 10, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "a", 20, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
}

TEST(repeat_counts_then_sums_up_on_change)
{
    struct cr_repeat rp;
    char sum[600];
    int lvl = -1;
    int i;

    cr_repeat_init(&rp, 30000);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 2, "refused", 0, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    for (i = 1; i <= 57; i++)
        ASSERT_INT_EQ(cr_repeat_note(&rp, 2, "refused", (uint64_t)i * 100, sum, sizeof sum, &lvl),
                      0);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 3, "ok", 9000, sum, sizeof sum, &lvl),
                  CR_REPEAT_WRITE | CR_REPEAT_SUMMARY);
    ASSERT_STR_EQ(sum, "refused (repeated 57 times in 9 s)");
    ASSERT_INT_EQ(lvl, 2);
}

TEST(repeat_sums_up_after_the_window)
{
    struct cr_repeat rp;
    char sum[600];
    int lvl = -1;

    cr_repeat_init(&rp, 30000);
    cr_repeat_note(&rp, 1, "x", 1000, sum, sizeof sum, &lvl);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "x", 2000, sum, sizeof sum, &lvl), 0);
    ASSERT_INT_EQ(cr_repeat_flush(&rp, 20000, sum, sizeof sum, &lvl), 0);
    ASSERT_INT_EQ(cr_repeat_flush(&rp, 31000, sum, sizeof sum, &lvl), 1);
    ASSERT_STR_EQ(sum, "x (repeated 1 times in 30 s)");
    ASSERT_INT_EQ(cr_repeat_flush(&rp, 90000, sum, sizeof sum, &lvl), 0); /* nothing counted */
    /* The same line after a quiet window is news again: written plainly. */
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "x", 100000, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    /* Repeats counted, then the line after the window: summed up at once. */
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "x", 101000, sum, sizeof sum, &lvl), 0);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "x", 140000, sum, sizeof sum, &lvl), CR_REPEAT_SUMMARY);
    ASSERT_STR_EQ(sum, "x (repeated 2 times in 40 s)");
}

TEST(repeat_reset_writes_the_next_line_whatever_it_is)
{
    struct cr_repeat rp;
    char sum[600];
    int lvl = -1;

    cr_repeat_init(&rp, 30000);
    cr_repeat_note(&rp, 1, "lost", 0, sum, sizeof sum, &lvl);
    cr_repeat_note(&rp, 1, "lost", 100, sum, sizeof sum, &lvl);
    ASSERT_INT_EQ(cr_repeat_reset(&rp, 500, sum, sizeof sum, &lvl), 1);
    ASSERT_STR_EQ(sum, "lost (repeated 1 times in 1 s)");
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, "lost", 600, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    ASSERT_INT_EQ(cr_repeat_reset(&rp, 700, sum, sizeof sum, &lvl), 0);
}

TEST(repeat_long_lines_compare_by_their_kept_part)
{
    struct cr_repeat rp;
    char line[2000];
    char sum[600];
    int lvl = -1;

    memset(line, 'z', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    cr_repeat_init(&rp, 30000);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, line, 0, sum, sizeof sum, &lvl), CR_REPEAT_WRITE);
    ASSERT_INT_EQ(cr_repeat_note(&rp, 1, line, 1, sum, sizeof sum, &lvl), 0);
}
