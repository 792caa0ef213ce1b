/* Webhook checks and parsers: Twilio's published signature example, SendGrid
 * ECDSA with a key made here, the generic HMAC, the timestamp window, event
 * mapping, references, STOP words, survey answers, and the metrics page. */
#include "cr_error.h"
#include "metrics.h"
#include "replies.h"
#include "sigs.h"
#include "test.h"
#include "webhooks.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

static int form(const char *s, struct cr_form *f)
{
    return cr_form_parse(s, strlen(s), f);
}

TEST(webhooks_twilio_documented_example)
{
    /* Twilio's request validation example: token 12345 */
    static const char url[] = "https://mycompany.com/myapp.php?foo=1&bar=2";
    struct cr_form f;
    char sig[64];

    ASSERT_INT_EQ(form("CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
                       "&From=%2B14158675309&To=%2B18005551212", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_signature("12345", url, &f, sig, sizeof(sig)), 0);
    ASSERT_STR_EQ(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    ASSERT(cr_hook_twilio_verify("12345", url, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    ASSERT(!cr_hook_twilio_verify("12345", url, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8"));
    ASSERT(!cr_hook_twilio_verify("12346", url, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    ASSERT(!cr_hook_twilio_verify("12345", "https://mycompany.com/myapp.php?foo=1&bar=3", &f,
                                  "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    ASSERT(!cr_hook_twilio_verify("12345", url, &f, NULL));
    cr_form_release(&f);
    /* the order sent does not matter; a changed value does */
    ASSERT_INT_EQ(form("To=%2B18005551212&Digits=1234&From=%2B14158675309&Caller=%2B14158675309"
                       "&CallSid=CA1234567890ABCDE", &f), 0);
    ASSERT(cr_hook_twilio_verify("12345", url, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    cr_form_release(&f);
    ASSERT_INT_EQ(form("To=%2B18005551212&Digits=1235&From=%2B14158675309&Caller=%2B14158675309"
                       "&CallSid=CA1234567890ABCDE", &f), 0);
    ASSERT(!cr_hook_twilio_verify("12345", url, &f, "RSOYDt4T1cUTdK1PDd93/VVr8B8="));
    cr_form_release(&f);
    /* repeated names sort by value too (Twilio's library test vector) */
    ASSERT_INT_EQ(form("Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234", &f), 0);
    ASSERT(cr_hook_twilio_verify("12345", url, &f, "IK+Dwps556ElfBT0I3Rgjkr1wJU="));
    cr_form_release(&f);
}

TEST(webhooks_twilio_events)
{
    struct cr_form f;
    struct cr_hook_event ev;

    ASSERT_INT_EQ(form("MessageSid=SM1&MessageStatus=delivered&To=%2B447700900001", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "ref=appeal-1%2F17%2Fsms", &ev), 0);
    ASSERT_INT_EQ(ev.kind, CR_HOOK_RECEIPT);
    ASSERT_STR_EQ(ev.status, "delivered");
    ASSERT(ev.has_ref);
    ASSERT_STR_EQ(ev.ref.job, "appeal-1");
    ASSERT_INT_EQ(ev.ref.pos, 17);
    ASSERT_INT_EQ(ev.ref.ch, CR_CH_SMS);
    ASSERT_STR_EQ(ev.event_id, "SM1:delivered");
    ASSERT_INT_EQ(ev.suppress_ch, -1);
    cr_form_release(&f);

    ASSERT_INT_EQ(form("MessageSid=SM2&MessageStatus=undelivered&ErrorCode=21610&To=%2B4477", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "ref=j%2F0%2Fsms", &ev), 0);
    ASSERT_STR_EQ(ev.status, "failed");
    ASSERT_INT_EQ(ev.suppress_ch, CR_CH_SMS);
    ASSERT_STR_EQ(ev.address, "+4477");
    ASSERT_STR_EQ(ev.code, "21610");
    cr_form_release(&f);

    ASSERT_INT_EQ(form("MessageSid=SM3&MessageStatus=sent", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "", &ev), 0);
    ASSERT_INT_EQ(ev.kind, CR_HOOK_IGNORED);
    cr_form_release(&f);

    ASSERT_INT_EQ(form("MessageSid=SM4&From=%2B447700900001&Body=+Stop+", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "", &ev), 0);
    ASSERT_INT_EQ(ev.kind, CR_HOOK_INBOUND);
    ASSERT_STR_EQ(ev.from, "+447700900001");
    ASSERT_STR_EQ(ev.text, " Stop ");
    ASSERT_STR_EQ(ev.event_id, "in:SM4");
    cr_hook_event_release(&ev);
    cr_form_release(&f);

    ASSERT_INT_EQ(form("From=%2B1&Body=x", &f), 0); /* no MessageSid */
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "", &ev), CR_EPARSE);
    cr_form_release(&f);
    ASSERT_INT_EQ(form("MessageSid=SM5&Foo=bar", &f), 0);
    ASSERT_INT_EQ(cr_hook_twilio_parse(&f, "", &ev), CR_EPARSE);
    cr_form_release(&f);
}

TEST(webhooks_refs)
{
    struct cr_ref r;

    ASSERT_INT_EQ(cr_ref_parse("job:2026.1-a/123/email", &r), 0);
    ASSERT_STR_EQ(r.job, "job:2026.1-a");
    ASSERT_INT_EQ(r.pos, 123);
    ASSERT_INT_EQ(r.ch, CR_CH_EMAIL);
    ASSERT_INT_EQ(cr_ref_parse("a/b/c/0/push", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("j/1/fax", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("j/-1/sms", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("j/99999999999/sms", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("/1/sms", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("j//sms", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse("sms", &r), CR_EPARSE);
    ASSERT_INT_EQ(cr_ref_parse(NULL, &r), CR_EPARSE);
}

/* Signs ts + body with a fresh P-256 key; returns the key's base64 DER. */
static void sign_es256(EVP_PKEY *k, const char *ts, const char *body, char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t n = sizeof(der);

    EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k);
    EVP_DigestSignUpdate(ctx, ts, strlen(ts));
    EVP_DigestSignUpdate(ctx, body, strlen(body));
    EVP_DigestSignFinal(ctx, der, &n);
    EVP_MD_CTX_free(ctx);
    cr_b64_encode(der, n, 0, sig, siglen);
}

TEST(webhooks_sendgrid_ecdsa)
{
    static const char body[] = "[{\"event\":\"delivered\",\"sg_event_id\":\"e1\"}]";
    EVP_PKEY *k = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    EVP_PKEY *pub = NULL, *pub2 = NULL;
    unsigned char *der = NULL;
    char b64[512], sig[256], sig2[256];
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pemlen;
    int n;

    ASSERT(k != NULL && other != NULL && bio != NULL);
    n = i2d_PUBKEY(k, &der);
    ASSERT(n > 0);
    ASSERT(cr_b64_encode(der, (size_t)n, 0, b64, sizeof(b64)) > 0);
    OPENSSL_free(der);
    ASSERT_INT_EQ(cr_ec_public_key_load(b64, &pub), 0);
    PEM_write_bio_PUBKEY(bio, k);
    pemlen = BIO_get_mem_data(bio, &pem);
    {
        char *text = strndup(pem, (size_t)pemlen);

        ASSERT_INT_EQ(cr_ec_public_key_load(text, &pub2), 0);
        free(text);
    }
    ASSERT_INT_EQ(cr_ec_public_key_load("not a key", &pub2 /* unchanged on failure */), CR_EPARSE);

    sign_es256(k, "1700000000", body, sig, sizeof(sig));
    sign_es256(other, "1700000000", body, sig2, sizeof(sig2));
    ASSERT(cr_hook_sendgrid_verify(pub, "1700000000", body, strlen(body), sig));
    ASSERT(cr_hook_sendgrid_verify(pub2, "1700000000", body, strlen(body), sig));
    ASSERT(!cr_hook_sendgrid_verify(pub, "1700000001", body, strlen(body), sig));
    ASSERT(!cr_hook_sendgrid_verify(pub, "1700000000", body, strlen(body) - 1, sig));
    ASSERT(!cr_hook_sendgrid_verify(pub, "1700000000", body, strlen(body), sig2));
    ASSERT(!cr_hook_sendgrid_verify(pub, "1700000000", body, strlen(body), "AAAA"));
    ASSERT(!cr_hook_sendgrid_verify(pub, "1700000000", body, strlen(body), "!!"));
    ASSERT(!cr_hook_sendgrid_verify(NULL, "1700000000", body, strlen(body), sig));
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(pub2);
    BIO_free(bio);
}

TEST(webhooks_sendgrid_events)
{
    static const char body[] =
        "[{\"event\":\"delivered\",\"sg_event_id\":\"e1\",\"crier_ref\":\"j1/4/email\","
        "\"email\":\"a@x\",\"sg_message_id\":\"m1\"},"
        "{\"event\":\"bounce\",\"type\":\"bounce\",\"sg_event_id\":\"e2\",\"crier_ref\":\"j1/5/email\","
        "\"email\":\"b@x\"},"
        "{\"event\":\"bounce\",\"type\":\"blocked\",\"sg_event_id\":\"e3\",\"crier_ref\":\"j1/6/email\","
        "\"email\":\"c@x\"},"
        "{\"event\":\"spamreport\",\"sg_event_id\":\"e4\",\"email\":\"d@x\"},"
        "{\"event\":\"open\",\"sg_event_id\":\"e5\",\"email\":\"e@x\"},"
        "{\"event\":\"dropped\",\"sg_event_id\":\"e6\",\"crier_ref\":\"j1/7/email\"}]";
    struct cr_hook_event evs[8];
    size_t n = 0;

    ASSERT_INT_EQ(cr_hook_sendgrid_parse(body, strlen(body), evs, 8, &n), 0);
    ASSERT_INT_EQ(n, 6);
    ASSERT_STR_EQ(evs[0].status, "delivered");
    ASSERT_INT_EQ(evs[0].ref.pos, 4);
    ASSERT_INT_EQ(evs[0].suppress_ch, -1);
    ASSERT_STR_EQ(evs[0].event_id, "e1");
    ASSERT_STR_EQ(evs[1].status, "bounced");
    ASSERT_INT_EQ(evs[1].suppress_ch, CR_CH_EMAIL); /* a hard bounce suppresses */
    ASSERT_STR_EQ(evs[1].address, "b@x");
    ASSERT_STR_EQ(evs[2].status, "bounced");
    ASSERT_INT_EQ(evs[2].suppress_ch, -1);          /* blocked is soft */
    ASSERT(evs[3].status == NULL);
    ASSERT_INT_EQ(evs[3].kind, CR_HOOK_RECEIPT);
    ASSERT_INT_EQ(evs[3].suppress_ch, CR_CH_EMAIL);
    ASSERT_INT_EQ(evs[4].kind, CR_HOOK_IGNORED);
    ASSERT_STR_EQ(evs[5].status, "failed");
    ASSERT_INT_EQ(cr_hook_sendgrid_parse(body, strlen(body), evs, 5, &n), CR_ETOOBIG);
    ASSERT_INT_EQ(cr_hook_sendgrid_parse("{}", 2, evs, 8, &n), CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_sendgrid_parse("[1]", 3, evs, 8, &n), CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_sendgrid_parse("[{\"x\":1}]", 9, evs, 8, &n), CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_sendgrid_parse("[{\"event\":", 10, evs, 8, &n), CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_sendgrid_parse("[]", 2, evs, 8, &n), 0);
    ASSERT_INT_EQ(n, 0);
}

TEST(webhooks_generic_hmac_and_window)
{
    unsigned char mac[64];
    unsigned maclen;
    char hex[129], hdr[140];
    const void *parts[1] = {"1700000000.{}"};
    size_t lens[1] = {13};

    ASSERT_INT_EQ(cr_hmac(EVP_sha256(), "s3cret", 6, parts, lens, 1, mac, &maclen), 0);
    cr_hex(mac, maclen, hex);
    snprintf(hdr, sizeof(hdr), "sha256=%s", hex);
    ASSERT(cr_hook_generic_verify("s3cret", "1700000000", "{}", 2, hdr));
    ASSERT(!cr_hook_generic_verify("s3cret", "1700000001", "{}", 2, hdr));
    ASSERT(!cr_hook_generic_verify("s3cret", "1700000000", "{ }", 3, hdr));
    ASSERT(!cr_hook_generic_verify("other", "1700000000", "{}", 2, hdr));
    ASSERT(!cr_hook_generic_verify("s3cret", "1700000000", "{}", 2, hdr + 7));
    ASSERT(!cr_hook_generic_verify("s3cret", "1700000000", "{}", 2, "sha256="));
    ASSERT(!cr_hook_generic_verify("s3cret", NULL, "{}", 2, hdr));

    ASSERT(cr_hook_fresh("1700000000", 1700000000, 300));
    ASSERT(cr_hook_fresh("1700000300", 1700000000, 300));
    ASSERT(!cr_hook_fresh("1699999699", 1700000000, 300));
    ASSERT(!cr_hook_fresh("1700000301", 1700000000, 300));
    ASSERT(!cr_hook_fresh("-5", 1700000000, 300));
    ASSERT(!cr_hook_fresh("17e8", 1700000000, 300));
    ASSERT(!cr_hook_fresh("", 1700000000, 300));
}

TEST(webhooks_generic_events)
{
    struct cr_hook_event ev;

    ASSERT_INT_EQ(cr_hook_generic_parse("{\"ref\":\"j/2/push\",\"status\":\"bounced\",\"event_id\":\"g1\"}",
                                        53, &ev), 0);
    ASSERT_INT_EQ(ev.kind, CR_HOOK_RECEIPT);
    ASSERT_STR_EQ(ev.status, "bounced");
    ASSERT_INT_EQ(ev.ref.ch, CR_CH_PUSH);
    ASSERT_STR_EQ(ev.event_id, "g1");
    ASSERT_INT_EQ(cr_hook_generic_parse("{\"from\":\"+44\",\"body\":\"1\"}", 25, &ev), 0);
    ASSERT_INT_EQ(ev.kind, CR_HOOK_INBOUND);
    ASSERT_STR_EQ(ev.text, "1");
    cr_hook_event_release(&ev);
    ASSERT_INT_EQ(cr_hook_generic_parse("{\"ref\":\"j/2/push\",\"status\":\"opened\"}", 36, &ev),
                  CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_generic_parse("{\"ref\":\"nope\",\"status\":\"failed\"}", 32, &ev),
                  CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_generic_parse("[]", 2, &ev), CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_generic_parse("{", 1, &ev), CR_EPARSE);
}

TEST(webhooks_base64_is_strict)
{
    unsigned char out[16];

    ASSERT_INT_EQ(cr_b64_decode("aGk=", 4, 0, out, sizeof(out)), 2);
    ASSERT_INT_EQ(cr_b64_decode("aGk", 3, 0, out, sizeof(out)), 2);
    ASSERT_INT_EQ(cr_b64_decode("aGl", 3, 0, out, sizeof(out)), CR_EPARSE); /* spare bits set */
    ASSERT_INT_EQ(cr_b64_decode("a", 1, 0, out, sizeof(out)), CR_EPARSE);
    ASSERT_INT_EQ(cr_b64_decode("a-_b", 4, 0, out, sizeof(out)), CR_EPARSE);
    ASSERT_INT_EQ(cr_b64_decode("a-_b", 4, CR_B64_URL, out, sizeof(out)), 3);
    ASSERT_INT_EQ(cr_b64_decode("a+/b", 4, CR_B64_URL, out, sizeof(out)), CR_EPARSE);
    ASSERT_INT_EQ(cr_b64_decode("aGVsbG8gd29ybGQhISE=", 20, 0, out, 4), CR_ETOOBIG);
}

TEST(replies_stop_words_and_survey_answers)
{
    static const char *const opts[] = {"Yes", "No", " Not sure "};

    ASSERT_INT_EQ(cr_reply_classify("STOP"), CR_REPLY_OPTOUT);
    ASSERT_INT_EQ(cr_reply_classify("  stop\n"), CR_REPLY_OPTOUT);
    ASSERT_INT_EQ(cr_reply_classify("Unsubscribe"), CR_REPLY_OPTOUT);
    ASSERT_INT_EQ(cr_reply_classify("quit"), CR_REPLY_OPTOUT);
    ASSERT_INT_EQ(cr_reply_classify("stopall"), CR_REPLY_OPTOUT);
    ASSERT_INT_EQ(cr_reply_classify("START"), CR_REPLY_OPTIN);
    ASSERT_INT_EQ(cr_reply_classify("unstop "), CR_REPLY_OPTIN);
    ASSERT_INT_EQ(cr_reply_classify("stop it"), CR_REPLY_TEXT);
    ASSERT_INT_EQ(cr_reply_classify("thanks"), CR_REPLY_TEXT);
    ASSERT_INT_EQ(cr_reply_classify(""), CR_REPLY_TEXT);

    ASSERT_INT_EQ(cr_survey_match(opts, 3, "1"), 1);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, " 3 "), 3);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, "4"), 0);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, "0"), 0);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, "yes"), 1);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, "NOT SURE"), 3);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, "maybe"), 0);
    ASSERT_INT_EQ(cr_survey_match(opts, 3, ""), 0);
}

TEST(replies_survey_from_doc)
{
    static const char doc[] =
        "{\"id\":\"s1\",\"audience\":{\"segments\":[\"area:A\",\"area:B\"]},"
        "\"survey\":{\"question\":\"Safe?\",\"options\":[\"Yes\",\"No\"]}}";
    struct cr_survey sv;

    ASSERT_INT_EQ(cr_survey_from_doc(doc, strlen(doc), &sv), 0);
    ASSERT_STR_EQ(sv.question, "Safe?");
    ASSERT_INT_EQ(sv.noptions, 2);
    ASSERT_STR_EQ(sv.options[1], "No");
    ASSERT_INT_EQ(sv.nsegments, 2);
    ASSERT_STR_EQ(sv.segments[0], "area:A");
    cr_survey_release(&sv);
    ASSERT_INT_EQ(cr_survey_from_doc("{\"id\":\"x\"}", 10, &sv), 0);
    ASSERT(sv.question == NULL);
    cr_survey_release(&sv);
    ASSERT_INT_EQ(cr_survey_from_doc("nope", 4, &sv), CR_EPARSE);
}

TEST(metrics_render_counts_and_format)
{
    struct cr_metrics *m = NULL;
    struct cr_buf b;
    const char *s;

    ASSERT_INT_EQ(cr_metrics_init(2, &m), 0);
    cr_metrics_message(m, CR_CH_SMS, 1, CR_ST_SENT);
    cr_metrics_message(m, CR_CH_SMS, 1, CR_ST_SENT);
    cr_metrics_message(m, CR_CH__COUNT, -1, CR_ST_SKIPPED);
    cr_metrics_message(m, CR_CH_EMAIL, 7, CR_ST_SUPPRESSED); /* unknown provider: "none" */
    cr_metrics_latency(m, 0, 30000);
    cr_metrics_latency(m, 0, 70000000);
    cr_metrics_retry(m, 1);
    cr_metrics_ratelimit_wait(m, 0, 1500);
    cr_metrics_webhook(m, "twilio", "accepted");
    cr_metrics_webhook(m, "twilio", "accepted");
    cr_metrics_webhook(m, "twilio", "bad_signature");
    ASSERT_INT_EQ(cr_metrics_messages(m, CR_CH_SMS, CR_ST_SENT), 2);
    cr_buf_init(&b, 1 << 20);
    ASSERT_INT_EQ(cr_metrics_render(m, NULL, &b), 0);
    s = cr_buf_cstr(&b);
    ASSERT_STR_CONTAINS(s, "# TYPE crier_messages_total counter\n");
    ASSERT_STR_CONTAINS(s, "crier_messages_total{channel=\"sms\",provider=\"unknown\",status=\"sent\"} 2\n");
    ASSERT_STR_CONTAINS(s, "crier_messages_total{channel=\"none\",provider=\"none\",status=\"skipped\"} 1\n");
    ASSERT_STR_CONTAINS(s, "crier_messages_total{channel=\"email\",provider=\"none\",status=\"suppressed\"} 1\n");
    ASSERT_STR_CONTAINS(s, "crier_provider_request_duration_seconds_bucket{provider=\"unknown\",le=\"0.05\"} 1\n");
    ASSERT_STR_CONTAINS(s, "crier_provider_request_duration_seconds_bucket{provider=\"unknown\",le=\"30\"} 1\n");
    ASSERT_STR_CONTAINS(s, "crier_provider_request_duration_seconds_bucket{provider=\"unknown\",le=\"+Inf\"} 2\n");
    ASSERT_STR_CONTAINS(s, "crier_ratelimit_wait_seconds_total{provider=\"unknown\"} 1.5\n");
    ASSERT_STR_CONTAINS(s, "crier_webhook_requests_total{hook=\"twilio\",outcome=\"accepted\"} 2\n");
    ASSERT_STR_CONTAINS(s, "crier_webhook_requests_total{hook=\"twilio\",outcome=\"bad_signature\"} 1\n");
    ASSERT_STR_CONTAINS(s, "crier_redis_connected{conn=\"commands\"} 0\n");
    ASSERT_STR_CONTAINS(s, "crier_redis_connected{conn=\"urgent\"} 0\n");
    ASSERT_STR_CONTAINS(s, "crier_build_info{version=");
    cr_buf_release(&b);
    cr_metrics_free(m);
    /* every call takes a NULL registry (modules built without one) */
    cr_metrics_message(NULL, CR_CH_SMS, 0, CR_ST_SENT);
    cr_metrics_webhook(NULL, "x", "y");
}
