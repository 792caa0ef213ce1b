/* SMS length as carriers bill it (see sms.h): one pass over the UTF-8 text
 * counts both GSM 03.38 septets and UTF-16 units, and the text is GSM-7 only
 * when every code point is in the default alphabet or its extension table. */
#include "sms.h"
#include "cr_error.h"
#include "cr_str.h"

#include <stdint.h>

#define GSM7_SINGLE 160
#define GSM7_PART 153
#define UCS2_SINGLE 70
#define UCS2_PART 67

/* Septets per ASCII character: 0 = not in GSM 03.38, 1 = basic table,
 * 2 = extension table (escape + character). */
/* clang-format off */
static const unsigned char ascii_septets[128] = {
    /* 0x00-0x1f: only LF and CR are in the basic table, FF in the extension */
    [0x0A] = 1, [0x0C] = 2, [0x0D] = 1,
    [' '] = 1, ['!'] = 1, ['"'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1,
    ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, ['-'] = 1,
    ['.'] = 1, ['/'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, [':'] = 1, [';'] = 1,
    ['<'] = 1, ['='] = 1, ['>'] = 1, ['?'] = 1, ['@'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['['] = 2, ['\\'] = 2, [']'] = 2, ['^'] = 2,
    ['_'] = 1, /* '`' is not in GSM 03.38 */
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['{'] = 2, ['|'] = 2,
    ['}'] = 2, ['~'] = 2,
};

/* The non-ASCII code points of the basic table. */
static const uint16_t basic_non_ascii[] = {
    0x00A1, /* ¡ */ 0x00A3, /* £ */ 0x00A4, /* ¤ */ 0x00A5, /* ¥ */ 0x00A7, /* § */
    0x00BF, /* ¿ */ 0x00C4, /* Ä */ 0x00C5, /* Å */ 0x00C6, /* Æ */ 0x00C7, /* Ç */
    0x00C9, /* É */ 0x00D1, /* Ñ */ 0x00D6, /* Ö */ 0x00D8, /* Ø */ 0x00DC, /* Ü */
    0x00DF, /* ß */ 0x00E0, /* à */ 0x00E4, /* ä */ 0x00E5, /* å */ 0x00E6, /* æ */
    0x00E8, /* è */ 0x00E9, /* é */ 0x00EC, /* ì */ 0x00F1, /* ñ */ 0x00F2, /* ò */
    0x00F6, /* ö */ 0x00F8, /* ø */ 0x00F9, /* ù */ 0x00FC, /* ü */ 0x0393, /* Γ */
    0x0394, /* Δ */ 0x0398, /* Θ */ 0x039B, /* Λ */ 0x039E, /* Ξ */ 0x03A0, /* Π */
    0x03A3, /* Σ */ 0x03A6, /* Φ */ 0x03A8, /* Ψ */ 0x03A9, /* Ω */
};
/* clang-format on */

#define EURO_SIGN 0x20AC /* the only non-ASCII character of the extension table */

/* Septets for code point cp, 0 when GSM-7 cannot carry it. */
static unsigned gsm_septets(uint32_t cp)
{
    size_t i;

    if (cp < 0x80)
        return ascii_septets[cp];
    if (cp == EURO_SIGN)
        return 2;
    for (i = 0; i < sizeof(basic_non_ascii) / sizeof(basic_non_ascii[0]); i++) {
        if (basic_non_ascii[i] == cp)
            return 1;
    }
    return 0;
}

/* Decodes one UTF-8 sequence at s (n bytes left, n > 0), rejecting overlong
 * forms, surrogates and values past U+10FFFF. Returns its length or 0. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    static const unsigned char lead_bits[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    int len = cr_utf8_seq_len(s, n);
    uint32_t v;
    int i;

    if (len <= 0)
        return 0;
    v = s[0] & lead_bits[len];
    for (i = 1; i < len; i++)
        v = (v << 6) | (s[i] & 0x3Fu);
    *cp = v;
    return (size_t)len;
}

int cr_sms_measure(const char *utf8, size_t len, struct cr_sms_info *out)
{
    const unsigned char *s = (const unsigned char *)utf8;
    size_t septets = 0;
    size_t utf16 = 0;
    int gsm = 1;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(s + i, len - i, &cp);
        unsigned sep;

        if (n == 0)
            return CR_EINVAL;
        i += n;
        utf16 += cp > 0xFFFF ? 2 : 1;
        if (gsm) {
            sep = gsm_septets(cp);
            if (sep == 0)
                gsm = 0;
            septets += sep;
        }
    }
    if (gsm) {
        out->encoding = CR_SMS_GSM7;
        out->units = septets;
        out->segments = septets == 0             ? 0
                        : septets <= GSM7_SINGLE ? 1
                                                 : (septets + GSM7_PART - 1) / GSM7_PART;
    } else {
        out->encoding = CR_SMS_UCS2;
        out->units = utf16;
        out->segments = utf16 <= UCS2_SINGLE ? 1 : (utf16 + UCS2_PART - 1) / UCS2_PART;
    }
    return 0;
}
