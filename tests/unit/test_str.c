/* cr_str: copies cut to fit and always terminate; numbers print as printf would. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cr_str.h"
#include "test.h"

TEST(strlcpy_cuts_to_fit_and_terminates)
{
    char d[6];

    memset(d, 'x', sizeof(d));
    ASSERT_INT_EQ((long)cr_strlcpy(d, "abc", sizeof(d)), 3);
    ASSERT_STR_EQ(d, "abc");
    ASSERT_INT_EQ((long)cr_strlcpy(d, "abcdefgh", sizeof(d)), 5);
    ASSERT_STR_EQ(d, "abcde");
    ASSERT_INT_EQ((long)cr_strlcpy(d, NULL, sizeof(d)), 0);
    ASSERT_STR_EQ(d, "");
    ASSERT_INT_EQ((long)cr_strlcpy(d, "abc", 1), 0);
    ASSERT_STR_EQ(d, "");
    d[0] = 'q';
    ASSERT_INT_EQ((long)cr_strlcpy(d, "abc", 0), 0);
    ASSERT_INT_EQ(d[0], 'q'); /* no room: nothing written */
}

TEST(fmt_i64_matches_printf)
{
    static const int64_t vals[] = {0, 7, -7, 10, 99, 100, 4294967295LL, -1000000,
                                   INT64_MAX, INT64_MIN};
    char got[CR_NUM_MAX];
    char want[32];
    size_t i;

    for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        snprintf(want, sizeof(want), "%" PRId64, vals[i]);
        ASSERT_STR_EQ(cr_fmt_i64(got, vals[i]), want);
    }
}

TEST(utf8_invalid_at_finds_the_first_bad_byte)
{
    ASSERT_INT_EQ(cr_utf8_invalid_at(""), -1);
    ASSERT_INT_EQ(cr_utf8_invalid_at("plain"), -1);
    ASSERT_INT_EQ(cr_utf8_invalid_at("Cymraeg \xc5\xb5 \xe8\xad\xa6 \xf0\x9f\x9a\x93"), -1);
    ASSERT_INT_EQ(cr_utf8_invalid_at("ab\xff"), 2);           /* never in UTF-8 */
    ASSERT_INT_EQ(cr_utf8_invalid_at("a\xc3("), 1);           /* cut sequence */
    ASSERT_INT_EQ(cr_utf8_invalid_at("\xc0\xaf"), 0);         /* overlong '/' */
    ASSERT_INT_EQ(cr_utf8_invalid_at("x\xed\xa0\x80"), 1);    /* surrogate D800 */
    ASSERT_INT_EQ(cr_utf8_invalid_at("\xf4\x90\x80\x80"), 0); /* past U+10FFFF */
    ASSERT_INT_EQ(cr_utf8_invalid_at("\xe2\x82"), 0);         /* ends early */
}

TEST(hex_value_of_either_case)
{
    ASSERT_INT_EQ(cr_hex_value('0'), 0);
    ASSERT_INT_EQ(cr_hex_value('9'), 9);
    ASSERT_INT_EQ(cr_hex_value('a'), 10);
    ASSERT_INT_EQ(cr_hex_value('F'), 15);
    ASSERT_INT_EQ(cr_hex_value('g'), -1);
    ASSERT_INT_EQ(cr_hex_value('%'), -1);
    ASSERT_INT_EQ(cr_hex_value('\0'), -1);
}

TEST(utf8_seq_len_valid_invalid_and_cut)
{
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"a", 1), 1);
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xC3\xA9", 2), 2);         /* é */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xE2\x82\xAC", 3), 3);     /* € */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xF0\x9F\x98\x80", 4), 4); /* emoji */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xE2\x82\xAC", 2), -1);    /* cut */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xC0\xAF", 2), 0);         /* overlong */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xE0\x80\xAF", 3), 0);     /* overlong */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xED\xA0\x80", 3), 0);     /* surrogate */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xF4\x90\x80\x80", 4), 0); /* > U+10FFFF */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\xE2\x82", 4), 0);         /* NUL ends it */
    ASSERT_INT_EQ(cr_utf8_seq_len((const unsigned char *)"\x80", 1), 0);
    ASSERT_INT_EQ(cr_utf8_invalid_at("ok \xC3\xA9 \xE2\x82"), 6);
    ASSERT_INT_EQ(cr_utf8_invalid_at("ok \xC3\xA9"), -1);
}

TEST(chars_ok_by_class_and_extra)
{
    ASSERT(cr_chars_ok("en-GB", 5, CR_CHARS_LETTERS, "-"));
    ASSERT(!cr_chars_ok("en-GB1", 6, CR_CHARS_LETTERS, "-"));
    ASSERT(cr_chars_ok("job-1.a:b_c", 11, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "._:-"));
    ASSERT(!cr_chars_ok("job 1", 5, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "._:-"));
    ASSERT(!cr_chars_ok("ab\0c", 4, CR_CHARS_LETTERS, "-"));   /* NUL is never in extra */
    ASSERT(!cr_chars_ok("\xC3\xA9", 2, CR_CHARS_LETTERS, NULL)); /* ASCII only */
    ASSERT(cr_chars_ok("123", 3, CR_CHARS_DIGITS, NULL));
    ASSERT(cr_chars_ok("", 0, CR_CHARS_LETTERS, NULL));
}

TEST(str_trim_both_ends)
{
    size_t n = 99;
    const char *s = cr_str_trim(" \t yes please \r\n", &n);

    ASSERT_INT_EQ((int)n, 10);
    ASSERT(strncmp(s, "yes please", n) == 0);
    s = cr_str_trim(" \n ", &n);
    ASSERT_INT_EQ((int)n, 0);
    ASSERT_INT_EQ(*s, '\0');
    s = cr_str_trim("", &n);
    ASSERT_INT_EQ((int)n, 0);
}
