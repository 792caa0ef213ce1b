/* Signed unsubscribe and survey links (see links.h). Payload: "2|<kind>|<sub>|
 * <arg>|<expiry seconds>|<lang>"; version 1 tokens (the same without the
 * language, made before pages were translated) are still accepted. */
#include "links.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_str.h"
#include "sigs.h"

#define PAYLOAD_MAX (2 * CR_LINK_ID_MAX + CR_LINK_LANG_MAX + 48)
#define MAC_LEN 32

static int id_ok(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;

    if (n == 0 || n > CR_LINK_ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '|' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    }
    return 1;
}

/* "" or up to CR_LINK_LANG_MAX - 1 of A-Z a-z - (a job's language tag). */
static int lang_ok(const char *s, size_t n)
{
    return n < CR_LINK_LANG_MAX && cr_chars_ok(s, n, CR_CHARS_LETTERS, "-");
}

static int mac(const char *secret, const char *payload, size_t len, unsigned char *out)
{
    const void *parts[1] = {payload};
    size_t lens[1] = {len};
    unsigned n = 0;
    int rc = cr_hmac(EVP_sha256(), secret, strlen(secret), parts, lens, 1, out, &n);

    return (rc == 0 && n != MAC_LEN) ? CR_EINVAL : rc;
}

int cr_link_make(const char *secret, enum cr_link_kind kind, const char *sub, const char *arg,
                 const char *lang, int64_t expires_s, char *out, size_t outlen)
{
    char payload[PAYLOAD_MAX];
    unsigned char m[MAC_LEN];
    int plen, n, k;
    int rc;

    if (lang == NULL)
        lang = "";
    if (secret == NULL || !id_ok(sub) || !id_ok(arg) || !lang_ok(lang, strlen(lang)) ||
        (kind != CR_LINK_UNSUBSCRIBE && kind != CR_LINK_SURVEY && kind != CR_LINK_CONFIRM))
        return CR_EINVAL;
    plen = snprintf(payload, sizeof(payload), "2|%c|%s|%s|%lld|%s", (char)kind, sub, arg,
                    (long long)expires_s, lang);
    if (plen < 0 || (size_t)plen >= sizeof(payload))
        return CR_ETOOBIG;
    rc = mac(secret, payload, (size_t)plen, m);
    if (rc < 0)
        return rc;
    n = cr_b64_encode(payload, (size_t)plen, CR_B64_URL | CR_B64_NOPAD, out, outlen);
    if (n < 0 || (size_t)n + 2 > outlen)
        return CR_ETOOBIG;
    out[n] = '.';
    k = cr_b64_encode(m, sizeof(m), CR_B64_URL | CR_B64_NOPAD, out + n + 1, outlen - (size_t)n - 1);
    if (k < 0 || (size_t)(n + 1 + k) >= CR_LINK_TOKEN_MAX)
        return CR_ETOOBIG;
    return 0;
}

/* Splits "2|k|sub|arg|exp|lang" or "1|k|sub|arg|exp" (lang "") into out;
 * CR_EPARSE when it is neither. */
static int parse_payload(const char *p, size_t len, struct cr_link *out)
{
    const char *f[6];
    size_t fl[6];
    size_t i, k = 0, start = 0;
    char num[24];
    char *end = NULL;
    long long exp;

    for (i = 0; i <= len; i++) {
        if (i == len || p[i] == '|') {
            if (k == 6)
                return CR_EPARSE;
            f[k] = p + start;
            fl[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    if (k < 5 || fl[0] != 1 || fl[1] != 1)
        return CR_EPARSE;
    if (!(f[0][0] == '1' && k == 5) && !(f[0][0] == '2' && k == 6))
        return CR_EPARSE;
    if (k == 6 && !lang_ok(f[5], fl[5]))
        return CR_EPARSE;
    if (f[1][0] != CR_LINK_UNSUBSCRIBE && f[1][0] != CR_LINK_SURVEY && f[1][0] != CR_LINK_CONFIRM)
        return CR_EPARSE;
    if (fl[2] == 0 || fl[2] > CR_LINK_ID_MAX || fl[3] == 0 || fl[3] > CR_LINK_ID_MAX ||
        fl[4] == 0 || fl[4] >= sizeof(num))
        return CR_EPARSE;
    memcpy(num, f[4], fl[4]);
    num[fl[4]] = '\0';
    errno = 0;
    exp = strtoll(num, &end, 10);
    if (errno != 0 || *end != '\0' || exp <= 0)
        return CR_EPARSE;
    out->kind = (enum cr_link_kind)f[1][0];
    memcpy(out->sub, f[2], fl[2]);
    out->sub[fl[2]] = '\0';
    memcpy(out->arg, f[3], fl[3]);
    out->arg[fl[3]] = '\0';
    out->expires_s = exp;
    if (k == 6) {
        memcpy(out->lang, f[5], fl[5]);
        out->lang[fl[5]] = '\0';
    }
    if (memchr(out->sub, '\0', fl[2]) != NULL || memchr(out->arg, '\0', fl[3]) != NULL)
        return CR_EPARSE;
    return 0;
}

int cr_link_verify(const char *secret, const char *token, size_t len, int64_t now_s,
                   struct cr_link *out)
{
    unsigned char payload[PAYLOAD_MAX];
    unsigned char given[MAC_LEN + 4];
    unsigned char want[MAC_LEN];
    const char *dot;
    int plen, glen;
    int rc;

    if (secret == NULL || token == NULL || len == 0 || len >= CR_LINK_TOKEN_MAX)
        return CR_EPARSE;
    dot = memchr(token, '.', len);
    if (dot == NULL)
        return CR_EPARSE;
    plen = cr_b64_decode(token, (size_t)(dot - token), CR_B64_URL, payload, sizeof(payload));
    glen = cr_b64_decode(dot + 1, len - (size_t)(dot - token) - 1, CR_B64_URL, given,
                         sizeof(given));
    if (plen <= 0 || glen < 0)
        return CR_EPARSE;
    rc = mac(secret, (const char *)payload, (size_t)plen, want);
    if (rc < 0)
        return rc;
    if (!cr_same_bytes(given, (size_t)glen, want, sizeof(want)))
        return CR_EPARSE;
    memset(out, 0, sizeof(*out));
    rc = parse_payload((const char *)payload, (size_t)plen, out);
    if (rc < 0)
        return rc;
    if (out->expires_s < now_s)
        return CR_ETIMEOUT;
    return 0;
}

int cr_link_url(const struct cr_config *cfg, enum cr_link_kind kind, const char *sub,
                const char *arg, const char *lang, int64_t now_ms, char *out, size_t outlen)
{
    char token[CR_LINK_TOKEN_MAX];
    int64_t exp;
    int n;
    int rc;

    if (cfg == NULL || cfg->links_secret == NULL || cfg->webhooks_public_url == NULL)
        return CR_ENOTFOUND;
    exp = now_ms / 1000 + (int64_t)cfg->links_ttl_days * 86400;
    rc = cr_link_make(cfg->links_secret, kind, sub, arg, lang, exp, token, sizeof(token));
    if (rc < 0)
        return rc;
    n = snprintf(out, outlen, "%s/%c/%s", cfg->webhooks_public_url, (char)kind, token);
    return (n < 0 || (size_t)n >= outlen) ? CR_ETOOBIG : 0;
}
