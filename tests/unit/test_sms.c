/* SMS length: GSM-7 and UCS-2 segment boundaries, the extension table,
 * Welsh and Polish letters, emoji as surrogate pairs, invalid UTF-8. */
#include "cr_error.h"
#include "sms.h"
#include "test.h"

/* Measures s (NUL-terminated) and checks encoding, units and segments. */
#define ASSERT_SMS(s, enc, nunits, nsegs)                                                          \
    do {                                                                                           \
        struct cr_sms_info i_;                                                                     \
        ASSERT_INT_EQ(cr_sms_measure((s), strlen(s), &i_), 0);                                     \
        ASSERT_INT_EQ(i_.encoding, (enc));                                                         \
        ASSERT_INT_EQ(i_.units, (nunits));                                                         \
        ASSERT_INT_EQ(i_.segments, (nsegs));                                                       \
    } while (0)

/* Fills buf with n copies of the UTF-8 sequence u. */
static const char *rep(char *buf, const char *u, size_t n)
{
    size_t l = strlen(u);
    size_t i;

    for (i = 0; i < n; i++)
        memcpy(buf + i * l, u, l);
    buf[n * l] = '\0';
    return buf;
}

TEST(sms_gsm7_boundaries)
{
    static char buf[4 * 1000];

    ASSERT_SMS("", CR_SMS_GSM7, 0, 0);
    ASSERT_SMS("Road closed", CR_SMS_GSM7, 11, 1);
    ASSERT_SMS(rep(buf, "a", 160), CR_SMS_GSM7, 160, 1);
    ASSERT_SMS(rep(buf, "a", 161), CR_SMS_GSM7, 161, 2);
    ASSERT_SMS(rep(buf, "a", 306), CR_SMS_GSM7, 306, 2);
    ASSERT_SMS(rep(buf, "a", 307), CR_SMS_GSM7, 307, 3);
    ASSERT_SMS(rep(buf, "a", 918), CR_SMS_GSM7, 918, 6);
    ASSERT_SMS(rep(buf, "a", 919), CR_SMS_GSM7, 919, 7);
}

TEST(sms_gsm7_extension_counts_twice)
{
    static char buf[4 * 1000];

    ASSERT_SMS("^{}\\[~]|€\f", CR_SMS_GSM7, 20, 1);
    ASSERT_SMS(rep(buf, "€", 80), CR_SMS_GSM7, 160, 1);
    ASSERT_SMS(rep(buf, "€", 81), CR_SMS_GSM7, 162, 2);
    ASSERT_SMS(rep(buf, "{", 80), CR_SMS_GSM7, 160, 1);
    ASSERT_SMS("Fine: [£100]", CR_SMS_GSM7, 14, 1);
}

TEST(sms_gsm7_basic_table_non_ascii)
{
    /* every non-ASCII character of the basic table, plus the ASCII specials */
    ASSERT_SMS("£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà¤¡", CR_SMS_GSM7, 40, 1);
    ASSERT_SMS("@$!\"#%&'()*+,-./:;<=>?\r\n", CR_SMS_GSM7, 24, 1);
    ASSERT_SMS("Ciao, è già così? Ça va.", CR_SMS_GSM7, 24, 1);
}

TEST(sms_ucs2_for_other_characters)
{
    /* backtick, tab, lower-case ç and curly quotes are not in GSM 03.38 */
    ASSERT_SMS("`", CR_SMS_UCS2, 1, 1);
    ASSERT_SMS("a\tb", CR_SMS_UCS2, 3, 1);
    ASSERT_SMS("ç", CR_SMS_UCS2, 1, 1);
    ASSERT_SMS("He’s safe", CR_SMS_UCS2, 9, 1);
}

TEST(sms_welsh_is_ucs2)
{
    /* ŵ and ŷ are outside GSM-7: the whole text goes as UCS-2 */
    ASSERT_SMS("Mae'r ffordd ar gau: dŵr ar y ffordd ger Tŷ Newydd.", CR_SMS_UCS2, 51, 1);
    ASSERT_SMS("Mae'r ffordd ar gau: dwr ar y ffordd ger Ty Newydd.", CR_SMS_GSM7, 51, 1);
}

TEST(sms_polish_is_ucs2)
{
    static char buf[4 * 1000];

    ASSERT_SMS("Zażółć gęślą jaźń", CR_SMS_UCS2, 17, 1);
    ASSERT_SMS(rep(buf, "ł", 70), CR_SMS_UCS2, 70, 1);
    ASSERT_SMS(rep(buf, "ą", 71), CR_SMS_UCS2, 71, 2);
    ASSERT_SMS(rep(buf, "ę", 134), CR_SMS_UCS2, 134, 2);
    ASSERT_SMS(rep(buf, "ę", 135), CR_SMS_UCS2, 135, 3);
}

TEST(sms_emoji_take_two_units)
{
    static char buf[4 * 1000];

    ASSERT_SMS("🚨", CR_SMS_UCS2, 2, 1);
    ASSERT_SMS("Alert 🚨 now", CR_SMS_UCS2, 12, 1);
    ASSERT_SMS(rep(buf, "🚨", 35), CR_SMS_UCS2, 70, 1);
    ASSERT_SMS(rep(buf, "🚨", 36), CR_SMS_UCS2, 72, 2);
}

TEST(sms_invalid_utf8)
{
    static const char *const bad[] = {
        "\xff",             /* never valid */
        "abc\xc3",          /* cut short */
        "\xc0\xaf",         /* overlong '/' */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\x80",             /* continuation alone */
        "\xe2\x82\x41",     /* bad continuation */
    };
    struct cr_sms_info info;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_INT_EQ(cr_sms_measure(bad[i], strlen(bad[i]), &info), CR_EINVAL);
}

TEST(sms_measures_only_len_bytes)
{
    struct cr_sms_info info;

    /* the euro sign is cut by len: invalid; the bytes past len never read */
    ASSERT_INT_EQ(cr_sms_measure("ab€", 4, &info), CR_EINVAL);
    ASSERT_INT_EQ(cr_sms_measure("ab€", 2, &info), 0);
    ASSERT_INT_EQ(info.units, 2);
}
