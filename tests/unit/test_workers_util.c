/* workers/util.c and the registry: Retry-After in both forms, response header
 * lookup, result filling, and finding adapters by type. */
#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"

/* 2015-10-21T07:28:00Z, the example date of RFC 7231. */
#define RFC_DATE_S 1445412480LL

TEST(workers_retry_after_seconds)
{
    ASSERT_INT_EQ(cr_retry_after_parse("120", 0), 120000);
    ASSERT_INT_EQ(cr_retry_after_parse("  7 ", 0), 7000);
    ASSERT_INT_EQ(cr_retry_after_parse("0", 5), 0);
    ASSERT_INT_EQ(cr_retry_after_parse("-5", 0), 0);
    ASSERT_INT_EQ(cr_retry_after_parse("99999999999999999999999", 0), INT64_MAX / 1000 * 1000);
}

TEST(workers_retry_after_dates)
{
    int64_t now = RFC_DATE_S * 1000;

    /* IMF-fixdate, RFC 850 and asctime name the same instant. */
    ASSERT_INT_EQ(cr_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", now - 1500), 1500);
    ASSERT_INT_EQ(cr_retry_after_parse("Wednesday, 21-Oct-15 07:28:00 GMT", now - 60000), 60000);
    ASSERT_INT_EQ(cr_retry_after_parse("Wed Oct 21 07:28:00 2015", now - 2000), 2000);
    /* In the past: go now. */
    ASSERT_INT_EQ(cr_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", now + 3600000), 0);
}

TEST(workers_retry_after_garbage)
{
    ASSERT_INT_EQ(cr_retry_after_parse(NULL, 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("   ", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("soon", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("12abc", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("1.5", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("Wed, 99 Foo 2015 07:28:00 GMT", 0), -1);
    ASSERT_INT_EQ(cr_retry_after_parse("Xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                       "xxxxxxxxxxxxxx",
                                       0),
                  -1);
}

TEST(workers_response_header)
{
    struct cr_response resp;
    char out[32];

    memset(&resp, 0, sizeof(resp));
    ASSERT_INT_EQ(cr_response_header(&resp, "X-Message-Id", out, sizeof(out)), CR_ENOTFOUND);
    resp.headers = "HTTP/1.1 202 Accepted\r\n"
                   "Server: nginx\r\n"
                   "x-message-id:   abc123 \t\r\n"
                   "Retry-After: 5\r\n"
                   "Empty:\r\n"
                   "Long: 0123456789012345678901234567890123456789\r\n"
                   "\r\n";
    ASSERT_INT_EQ(cr_response_header(&resp, "X-Message-Id", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "abc123");
    ASSERT_INT_EQ(cr_response_header(&resp, "retry-after", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "5");
    ASSERT_INT_EQ(cr_response_header(&resp, "Empty", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "");
    ASSERT_INT_EQ(cr_response_header(&resp, "Long", out, sizeof(out)), CR_ETOOBIG);
    ASSERT_INT_EQ(strlen(out), sizeof(out) - 1);
    ASSERT_INT_EQ(cr_response_header(&resp, "Server-Timing", out, sizeof(out)), CR_ENOTFOUND);
    ASSERT_INT_EQ(cr_response_header(&resp, "Serve", out, sizeof(out)), CR_ENOTFOUND);

    /* After an interim answer the final answer's value wins; bare LF is fine. */
    resp.headers = "HTTP/1.1 100 Continue\nX-A: first\n\nHTTP/1.1 200 OK\nX-A: second";
    ASSERT_INT_EQ(cr_response_header(&resp, "x-a", out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "second");
}

TEST(workers_result_set_truncates)
{
    struct cr_result r;
    char big[400];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memset(&r, 0x55, sizeof(r));
    cr_result_set(&r, CR_OUT_FAILED, big, big);
    ASSERT_INT_EQ(r.outcome, CR_OUT_FAILED);
    ASSERT_INT_EQ(r.retry_after_ms, -1);
    ASSERT_INT_EQ(strlen(r.code), sizeof(r.code) - 1);
    ASSERT_INT_EQ(strlen(r.detail), sizeof(r.detail) - 1);
    ASSERT_STR_EQ(r.provider_id, "");
    cr_result_set(&r, CR_OUT_SENT, NULL, NULL);
    ASSERT_STR_EQ(r.code, "");
    ASSERT_STR_EQ(r.detail, "");
}

TEST(workers_registry_finds_each_adapter)
{
    size_t i;

    for (i = 0; cr_provider_table[i] != NULL; i++)
        ASSERT(cr_provider_find(cr_provider_table[i]->type) == cr_provider_table[i]);
    ASSERT_INT_EQ(i, 8);
    ASSERT_INT_EQ(cr_provider_find("twilio_whatsapp")->channel, CR_CH_WHATSAPP);
    ASSERT_INT_EQ(cr_provider_find("meta_whatsapp")->channel, CR_CH_WHATSAPP);
    ASSERT(cr_provider_find("sendgrid") != NULL);
    ASSERT_INT_EQ(cr_provider_find("sendgrid")->channel, CR_CH_EMAIL);
    ASSERT_INT_EQ(cr_provider_find("smtp")->channel, CR_CH_EMAIL);
    ASSERT_INT_EQ(cr_provider_find("twilio")->channel, CR_CH_SMS);
    ASSERT_INT_EQ(cr_provider_find("gateway")->channel, CR_CH_SMS);
    ASSERT_INT_EQ(cr_provider_find("fcm")->channel, CR_CH_PUSH);
    ASSERT_STR_EQ(cr_provider_find("fcm")->platform, "fcm");
    ASSERT(cr_provider_find("mailgun") == NULL);
    ASSERT(cr_provider_find(NULL) == NULL);
}
