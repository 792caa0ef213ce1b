/* Signed links: a token verifies for its own subscriber and purpose only, any
 * change to it is refused, and it stops working at its expiry. */
#include "cr_error.h"
#include "links.h"
#include "sigs.h"
#include "test.h"

#include <string.h>

static const char secret[] = "link-secret-0123456789";

TEST(links_make_and_verify)
{
    char tok[CR_LINK_TOKEN_MAX];
    struct cr_link l;

    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_UNSUBSCRIBE, "10442", "email", NULL, 2000000000, tok,
                               sizeof(tok)),
                  0);
    ASSERT(strchr(tok, '=') == NULL && strchr(tok, '+') == NULL && strchr(tok, '/') == NULL);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1900000000, &l), 0);
    ASSERT_INT_EQ(l.kind, CR_LINK_UNSUBSCRIBE);
    ASSERT_STR_EQ(l.sub, "10442");
    ASSERT_STR_EQ(l.arg, "email");
    ASSERT_INT_EQ(l.expires_s, 2000000000);

    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "r:77", "survey-job.1", NULL, 2000000000,
                               tok, sizeof(tok)),
                  0);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1900000000, &l), 0);
    ASSERT_INT_EQ(l.kind, CR_LINK_SURVEY);
    ASSERT_STR_EQ(l.sub, "r:77");
    ASSERT_STR_EQ(l.arg, "survey-job.1");
}

TEST(links_tampered_or_foreign_tokens_are_refused)
{
    char tok[CR_LINK_TOKEN_MAX], other[CR_LINK_TOKEN_MAX], forged[2 * CR_LINK_TOKEN_MAX];
    struct cr_link l;
    size_t i, n;
    const char *dot;

    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_UNSUBSCRIBE, "alice", "email", NULL, 2000000000, tok,
                               sizeof(tok)),
                  0);
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_UNSUBSCRIBE, "bob", "email", NULL, 2000000000, other,
                               sizeof(other)),
                  0);
    n = strlen(tok);
    /* every single-character change is refused */
    for (i = 0; i < n; i++) {
        char saved = tok[i];

        tok[i] = saved == 'A' ? 'B' : 'A';
        ASSERT(cr_link_verify(secret, tok, n, 1900000000, &l) != 0);
        tok[i] = saved;
    }
    /* alice's payload with bob's signature, and the reverse */
    dot = strchr(tok, '.');
    snprintf(forged, sizeof(forged), "%.*s%s", (int)(dot - tok), tok, strchr(other, '.'));
    ASSERT_INT_EQ(cr_link_verify(secret, forged, strlen(forged), 1900000000, &l), CR_EPARSE);
    /* another secret, a truncated token, no signature, garbage */
    ASSERT_INT_EQ(cr_link_verify("another-secret-0123", tok, n, 1900000000, &l), CR_EPARSE);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, n - 1, 1900000000, &l), CR_EPARSE);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, (size_t)(dot - tok), 1900000000, &l), CR_EPARSE);
    ASSERT_INT_EQ(cr_link_verify(secret, "....", 4, 1900000000, &l), CR_EPARSE);
    ASSERT_INT_EQ(cr_link_verify(secret, "", 0, 1900000000, &l), CR_EPARSE);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, n, 1900000000, &l), 0);
}

TEST(links_expire)
{
    char tok[CR_LINK_TOKEN_MAX];
    struct cr_link l;

    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "s1", "job1", NULL, 1000, tok, sizeof(tok)),
                  0);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1000, &l), 0);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1001, &l), CR_ETIMEOUT);
}

TEST(links_refuse_ids_they_cannot_carry)
{
    char tok[CR_LINK_TOKEN_MAX];
    char longid[CR_LINK_ID_MAX + 2];

    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "a|b", "job", NULL, 5, tok, sizeof(tok)),
                  CR_EINVAL);
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "", "job", NULL, 5, tok, sizeof(tok)),
                  CR_EINVAL);
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, longid, "job", NULL, 5, tok, sizeof(tok)),
                  CR_EINVAL);
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "s", "job", NULL, 5, tok, 20), CR_ETOOBIG);
}

TEST(links_url_uses_the_public_url_and_ttl)
{
    struct cr_config cfg;
    char url[1024];
    struct cr_link l;

    memset(&cfg, 0, sizeof(cfg));
    ASSERT_INT_EQ(cr_link_url(&cfg, CR_LINK_UNSUBSCRIBE, "s", "sms", NULL, 0, url, sizeof(url)),
                  CR_ENOTFOUND);
    cfg.links_secret = (char *)(uintptr_t)secret;
    cfg.webhooks_public_url = (char *)(uintptr_t) "https://alerts.example.org";
    cfg.links_ttl_days = 2;
    ASSERT_INT_EQ(
        cr_link_url(&cfg, CR_LINK_UNSUBSCRIBE, "s", "sms", "cy", 1000000, url, sizeof(url)), 0);
    ASSERT(strncmp(url, "https://alerts.example.org/u/", 29) == 0);
    ASSERT_INT_EQ(cr_link_verify(secret, url + 29, strlen(url + 29), 1000, &l), 0);
    ASSERT_INT_EQ(l.expires_s, 1000 + 2 * 86400);
    ASSERT_STR_EQ(l.lang, "cy");
}

/* A token names the language of the message it came in (its page is shown
 * in it); tokens made before that (version 1, no language) still verify. */
TEST(links_carry_the_language_and_old_tokens_still_verify)
{
    static const char v1[] = "1|u|10442|email|2000000000";
    char tok[CR_LINK_TOKEN_MAX];
    char payload[CR_LINK_TOKEN_MAX];
    unsigned char mac[32];
    unsigned n = 0;
    const void *parts[1] = {v1};
    size_t lens[1] = {sizeof(v1) - 1};
    struct cr_link l;
    int k;

    ASSERT_INT_EQ(
        cr_link_make(secret, CR_LINK_SURVEY, "s1", "job1", "cy", 2000000000, tok, sizeof(tok)), 0);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1900000000, &l), 0);
    ASSERT_STR_EQ(l.lang, "cy");
    ASSERT_STR_EQ(l.arg, "job1");
    ASSERT_INT_EQ(
        cr_link_make(secret, CR_LINK_SURVEY, "s1", "job1", "pt-BR", 2000000000, tok, sizeof(tok)),
        0);
    ASSERT_INT_EQ(cr_link_verify(secret, tok, strlen(tok), 1900000000, &l), 0);
    ASSERT_STR_EQ(l.lang, "pt-BR");
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "s1", "job1", "c|y", 5, tok, sizeof(tok)),
                  CR_EINVAL);
    ASSERT_INT_EQ(cr_link_make(secret, CR_LINK_SURVEY, "s1", "job1", "a-very-long-language", 5, tok,
                               sizeof(tok)),
                  CR_EINVAL);

    /* a version 1 token, signed as crierd signed them: still valid, no language */
    ASSERT_INT_EQ(cr_hmac(EVP_sha256(), secret, strlen(secret), parts, lens, 1, mac, &n), 0);
    k = cr_b64_encode(v1, sizeof(v1) - 1, CR_B64_URL | CR_B64_NOPAD, payload, sizeof(payload));
    ASSERT(k > 0);
    payload[k] = '.';
    ASSERT(cr_b64_encode(mac, n, CR_B64_URL | CR_B64_NOPAD, payload + k + 1,
                         sizeof(payload) - (size_t)k - 1) > 0);
    ASSERT_INT_EQ(cr_link_verify(secret, payload, strlen(payload), 1900000000, &l), 0);
    ASSERT_STR_EQ(l.sub, "10442");
    ASSERT_STR_EQ(l.arg, "email");
    ASSERT_STR_EQ(l.lang, "");
}
