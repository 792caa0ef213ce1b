/* Quiet hours across midnight, in other zones, around daylight saving time. */
#include "cr_error.h"
#include "quiet.h"
#include "test.h"

/* 2026-01-15T23:30:00Z and 2026-07-15T23:30:00Z */
#define WINTER_2330 1768519800000LL
#define SUMMER_2330 1784158200000LL
#define MIN 60000LL

TEST(quiet_parse)
{
    int s, e;

    ASSERT_INT_EQ(cr_quiet_parse("22:00-07:00", &s, &e), 0);
    ASSERT_INT_EQ(s, 22 * 60);
    ASSERT_INT_EQ(e, 7 * 60);
    ASSERT_INT_EQ(cr_quiet_parse("24:00-07:00", &s, &e), CR_EINVAL);
    ASSERT_INT_EQ(cr_quiet_parse("22:00-07:00x", &s, &e), CR_EINVAL);
    ASSERT_INT_EQ(cr_quiet_parse("22-7", &s, &e), CR_EINVAL);
}

TEST(quiet_across_midnight_in_winter_london)
{
    int64_t until = 0;

    /* 23:30 UTC = 23:30 GMT: quiet until 07:00, 7.5 h later */
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "Europe/London", WINTER_2330, &until), 1);
    ASSERT_INT_EQ(until - WINTER_2330, 450 * MIN);
    /* 21:59 is not quiet, 22:00 is */
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "Europe/London", WINTER_2330 - 91 * MIN, &until), 0);
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "Europe/London", WINTER_2330 - 90 * MIN, &until), 1);
    /* the end is exclusive: 07:00 itself is not quiet */
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "Europe/London", WINTER_2330 + 450 * MIN, &until), 0);
}

TEST(quiet_uses_summer_time)
{
    int64_t until = 0;

    /* 23:30 UTC = 00:30 BST: quiet until 07:00 BST = 06:00 UTC, 6.5 h later */
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "Europe/London", SUMMER_2330, &until), 1);
    ASSERT_INT_EQ(until - SUMMER_2330, 390 * MIN);
    /* in UTC the same instant is 23:30, quiet for 7.5 h */
    ASSERT_INT_EQ(cr_quiet_until("22:00-07:00", "UTC", SUMMER_2330, &until), 1);
    ASSERT_INT_EQ(until - SUMMER_2330, 450 * MIN);
}

TEST(quiet_other_zone_and_daytime_window)
{
    int64_t until = 0;

    /* 23:30 UTC in January = 18:30 in New York: inside 18:00-20:00 */
    ASSERT_INT_EQ(cr_quiet_until("18:00-20:00", "America/New_York", WINTER_2330, &until), 1);
    ASSERT_INT_EQ(until - WINTER_2330, 90 * MIN);
    ASSERT_INT_EQ(cr_quiet_until("09:00-17:00", "America/New_York", WINTER_2330, &until), 0);
}

TEST(quiet_unset_empty_and_bad)
{
    int64_t until = 0;

    ASSERT_INT_EQ(cr_quiet_until(NULL, "UTC", WINTER_2330, &until), 0);
    ASSERT_INT_EQ(cr_quiet_until("", "UTC", WINTER_2330, &until), 0);
    ASSERT_INT_EQ(cr_quiet_until("08:00-08:00", "UTC", WINTER_2330, &until), 0);
    ASSERT_INT_EQ(cr_quiet_until("late", "UTC", WINTER_2330, &until), CR_EINVAL);
    /* an unknown or hostile zone name is UTC */
    ASSERT_INT_EQ(cr_tz_offset("../../etc/passwd", WINTER_2330), 0);
    ASSERT_INT_EQ(cr_tz_offset("Europe/London", SUMMER_2330), 3600);
}
