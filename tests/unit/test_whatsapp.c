/* WhatsApp: message.whatsapp in the job document, the 24-hour window rule,
 * and both adapters (Twilio and Meta Cloud API): the exact requests they build
 * for a template and for free text, and the classification of their answers. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "job.h"
#include "test.h"
#include "sigs.h"
#include "webhooks.h"
#include "whatsapp_doc.h"
#include "whatsapp_hook.h"
#include "workers_fixture.h"

#define WT_SID "AC0123456789abcdef0123456789ABCDEF"
#define WT_HX "HX0123456789abcdef0123456789abcdef"

static char *slurp_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

TEST(whatsapp_job_document_parsed)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    size_t len = 0;
    char *doc = slurp_file("docs/examples/whatsapp-appeal.json", &len);
    size_t row;

    ASSERT(doc != NULL);
    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(doc, len, &lim, &job, &err), 0);
    free(doc);
    ASSERT(job.channels & CR_CH_BIT(CR_CH_WHATSAPP));
    ASSERT_STR_EQ(job.content.wa_template, "police_appeal");
    ASSERT_STR_EQ(job.content.wa_language, "en_GB");
    ASSERT_STR_EQ(job.content.wa_vars, "{{name}}\x1fSam, 14");
    ASSERT_STR_CONTAINS(job.content.wa_text, "Hello {{name}}");
    /* a Polish resident gets the Polish template, an unknown language the default */
    row = cr_job_pick(&job, "pl", CR_CH_WHATSAPP);
    ASSERT_INT_EQ(row, 1);
    ASSERT_STR_EQ(cr_job_row_content(&job, row)->wa_language, "pl");
    ASSERT_INT_EQ(cr_job_pick(&job, "fr", CR_CH_WHATSAPP), 0);
    cr_job_release(&job);
}

TEST(whatsapp_window_is_24_hours_from_the_last_inbound)
{
    int64_t now = 1800000000000LL;

    ASSERT_INT_EQ(cr_wa_window_open(NULL, now), 0);
    ASSERT_INT_EQ(cr_wa_window_open("", now), 0);
    ASSERT_INT_EQ(cr_wa_window_open("yesterday", now), 0);
    ASSERT_INT_EQ(cr_wa_window_open("1799999000000", now), 1);
    ASSERT_INT_EQ(cr_wa_window_open("1799913600001", now), 1); /* 24 h less 1 ms ago */
    ASSERT_INT_EQ(cr_wa_window_open("1799913600000", now), 0); /* exactly 24 h ago */
    ASSERT_INT_EQ(cr_wa_window_open("1800000600000", now), 0); /* 10 min in the future */
}

/* ---- Twilio ---- */

static const char wt_conf[] = "{\"account_sid\":\"" WT_SID "\",\"auth_token\":\"s3cret\","
                              "\"from\":\"+447700900123\","
                              "\"status_callback\":\"https://hooks.example/twilio\","
                              "\"content_sids\":{\"police_appeal:pl\":"
                              "\"HXffffffffffffffffffffffffffffffff\","
                              "\"police_appeal\":\"" WT_HX "\"}}";

static const struct cr_provider_ops *wt_ops(void)
{
    return cr_provider_find("twilio_whatsapp");
}

static int form_get(const char *body, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = body;

    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);

        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            int olen = 0;
            char *v = curl_easy_unescape(NULL, p + nlen + 1, (int)(len - nlen - 1), &olen);

            if (v == NULL)
                return -1;
            snprintf(out, outlen, "%s", v);
            curl_free(v);
            return 0;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return -1;
}

static struct cr_message wa_sample(void)
{
    struct cr_message m = cr_test_message(CR_CH_WHATSAPP, "+447700900456");

    m.wa_template = "police_appeal";
    m.wa_language = "en_GB";
    m.wa_vars = "Jane \"J\" & co\x1fSam, 14";
    m.ref = "appeal-17/4/whatsapp";
    return m;
}

TEST(whatsapp_twilio_config_errors)
{
    ASSERT_CONFIG_REFUSED(wt_ops(), cJSON_Parse("{\"account_sid\":\"" WT_SID "\","
                                                "\"auth_token\":\"t\"}"),
                          "http://h", "providers.wa", "providers.wa.from: is required");
    ASSERT_CONFIG_REFUSED(wt_ops(), cJSON_Parse("{\"account_sid\":\"" WT_SID "\","
                                                "\"auth_token\":\"t\",\"from\":\"whatsapp:+44\"}"),
                          "http://h", "providers.wa", "providers.wa.from: must be");
    ASSERT_CONFIG_REFUSED(wt_ops(), cJSON_Parse("{\"account_sid\":\"" WT_SID "\","
                                                "\"auth_token\":\"t\",\"from\":\"+447700900123\","
                                                "\"content_sids\":{\"a\":\"HX1\"}}"),
                          "http://h", "providers.wa", "providers.wa.content_sids: 'a' must map");
}

TEST(whatsapp_twilio_builds_a_template_request)
{
    struct cr_message m = wa_sample();
    struct cr_request req;
    char err[256];
    char v[512];
    void *state = NULL;

    ASSERT_INT_EQ(cr_test_provider_init(wt_ops(), cJSON_Parse(wt_conf), "http://127.0.0.1:9",
                                        "providers.wa", &state, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(cr_test_build_one(wt_ops(), state, &m, 0, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url),
                  "http://127.0.0.1:9/2010-04-01/Accounts/" WT_SID "/Messages.json");
    ASSERT(cr_test_has_header(&req, "Content-Type: application/x-www-form-urlencoded"));
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "To", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "whatsapp:+447700900456");
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "From", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "whatsapp:+447700900123");
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "ContentSid", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, WT_HX);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "ContentVariables", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "{\"1\":\"Jane \\\"J\\\" & co\",\"2\":\"Sam, 14\"}");
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "Body", v, sizeof(v)), -1);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "StatusCallback", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "https://hooks.example/twilio?ref=appeal-17%2F4%2Fwhatsapp");
    cr_request_release(&req);

    /* the language picks its own content SID */
    m.wa_language = "pl";
    ASSERT_INT_EQ(cr_test_build_one(wt_ops(), state, &m, 0, &req), 0);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "ContentSid", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "HXffffffffffffffffffffffffffffffff");
    cr_request_release(&req);

    /* inside the window: Body, no template */
    m.wa_text = "Hello Jane, Sam is found.";
    ASSERT_INT_EQ(cr_test_build_one(wt_ops(), state, &m, 0, &req), 0);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "Body", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "Hello Jane, Sam is found.");
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "ContentSid", v, sizeof(v)), -1);
    cr_request_release(&req);

    /* a template this account has no content SID for cannot be sent */
    m.wa_text = NULL;
    m.wa_template = "unknown_template";
    ASSERT_INT_EQ(cr_test_build_one(wt_ops(), state, &m, 0, &req), CR_EINVAL);
    cr_request_release(&req);
    wt_ops()->free_state(state);
}

#define TW_ERR(code, msg) "{\"code\":" #code ",\"message\":\"" msg "\",\"status\":400}"

static const struct cr_test_row wt_rows[] = {
    {201, "", NULL, "{\"sid\":\"SM01\",\"status\":\"queued\"}", CR_OUT_SENT, "queued", -1, "SM01",
     "accepted"},
    {400, "", NULL, TW_ERR(63016, "Outside the allowed window"), CR_OUT_FAILED, "63016", -1, "",
     "24-hour window"},
    {400, "", NULL, TW_ERR(63003, "Channel could not find To address"), CR_OUT_SUPPRESS, "63003",
     -1, "", "not a WhatsApp user"},
    {400, "", NULL, TW_ERR(63024, "Invalid message recipient"), CR_OUT_SUPPRESS, "63024", -1, "",
     "not a WhatsApp user"},
    {400, "", NULL, TW_ERR(63027, "Template does not exist"), CR_OUT_FAILED, "63027", -1, "",
     "template"},
    {429, "", "7", TW_ERR(63018, "Rate limit exceeded"), CR_OUT_RETRY, "63018", 7000, "",
     "rate limited"},
    {503, "", NULL, "", CR_OUT_RETRY, "503", -1, "", ""},
};

TEST(whatsapp_twilio_classify_table)
{
    struct cr_message m = wa_sample();
    char err[256];
    void *state = NULL;
    size_t bad;

    ASSERT_INT_EQ(cr_test_provider_init(wt_ops(), cJSON_Parse(wt_conf), "http://127.0.0.1:9",
                                        "providers.wa", &state, err, sizeof(err)),
                  0);
    bad = cr_test_rows_differing(wt_ops(), state, &m, wt_rows, sizeof(wt_rows) / sizeof(wt_rows[0]));
    wt_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}

/* ---- Meta Cloud API ---- */

static const char wm_conf[] = "{\"phone_number_id\":\"106540352242922\","
                              "\"access_token\":\"EAAtoken\",\"api_version\":\"v21.0\"}";

static const struct cr_provider_ops *wm_ops(void)
{
    return cr_provider_find("meta_whatsapp");
}

TEST(whatsapp_meta_config_errors)
{
    ASSERT_CONFIG_REFUSED(wm_ops(), cJSON_Parse("{\"access_token\":\"t\"}"), "http://h",
                          "providers.m", "providers.m.phone_number_id: is required");
    ASSERT_CONFIG_REFUSED(wm_ops(), cJSON_Parse("{\"phone_number_id\":\"abc\",\"access_token\":\"t\"}"),
                          "http://h", "providers.m", "providers.m.phone_number_id: must be");
    ASSERT_CONFIG_REFUSED(wm_ops(), cJSON_Parse("{\"phone_number_id\":\"1\",\"access_token\":\"t\","
                                                "\"api_version\":\"21\"}"),
                          "http://h", "providers.m", "providers.m.api_version: must look like");
}

TEST(whatsapp_meta_builds_template_and_text)
{
    struct cr_message m = wa_sample();
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;
    const cJSON *tpl;
    const cJSON *params;

    ASSERT_INT_EQ(cr_test_provider_init(wm_ops(), cJSON_Parse(wm_conf), "http://127.0.0.1:9",
                                        "providers.m", &state, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(cr_test_build_one(wm_ops(), state, &m, 0, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "http://127.0.0.1:9/v21.0/106540352242922/messages");
    ASSERT(cr_test_has_header(&req, "Authorization: Bearer EAAtoken"));
    ASSERT(cr_test_has_header(&req, "Content-Type: application/json"));
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "messaging_product")->valuestring, "whatsapp");
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "to")->valuestring, "447700900456");
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "type")->valuestring, "template");
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "biz_opaque_callback_data")->valuestring,
                  "appeal-17/4/whatsapp");
    tpl = cJSON_GetObjectItem(doc, "template");
    ASSERT_STR_EQ(cJSON_GetObjectItem(tpl, "name")->valuestring, "police_appeal");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(tpl, "language"), "code")->valuestring,
                  "en_GB");
    params = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(tpl, "components"), 0),
                                 "parameters");
    ASSERT_INT_EQ(cJSON_GetArraySize(params), 2);
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(params, 0), "text")->valuestring,
                  "Jane \"J\" & co");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(params, 1), "type")->valuestring, "text");
    ASSERT(cJSON_GetObjectItem(doc, "text") == NULL);
    cJSON_Delete(doc);
    cr_request_release(&req);

    m.wa_text = "Hello Jane";
    ASSERT_INT_EQ(cr_test_build_one(wm_ops(), state, &m, 0, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "type")->valuestring, "text");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "text"), "body")->valuestring,
                  "Hello Jane");
    ASSERT(cJSON_GetObjectItem(doc, "template") == NULL);
    cJSON_Delete(doc);
    cr_request_release(&req);

    m.address = "447700900456"; /* not E.164 */
    ASSERT_INT_EQ(cr_test_build_one(wm_ops(), state, &m, 0, &req), CR_EINVAL);
    cr_request_release(&req);
    wm_ops()->free_state(state);
}

#define META_ERR(code, msg)                                                                        \
    "{\"error\":{\"message\":\"" msg "\",\"type\":\"OAuthException\",\"code\":" #code ","          \
    "\"error_data\":{\"messaging_product\":\"whatsapp\",\"details\":\"d\"},"                      \
    "\"fbtrace_id\":\"Az8or2yhqkZfEZ-_4Qn_Bam\"}}"

static const struct cr_test_row wm_rows[] = {
    {200, "", NULL,
     "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"447700900456\","
     "\"wa_id\":\"447700900456\"}],\"messages\":[{\"id\":\"wamid.HBgM\"}]}",
     CR_OUT_SENT, "accepted", -1, "wamid.HBgM", "accepted"},
    {400, "", NULL, META_ERR(131047, "Re-engagement message"), CR_OUT_FAILED, "131047", -1, "",
     "24-hour window"},
    {400, "", NULL, META_ERR(131026, "Message undeliverable"), CR_OUT_SUPPRESS, "131026", -1, "",
     "not a WhatsApp user"},
    {404, "", NULL, META_ERR(132001, "Template name does not exist in the translation"),
     CR_OUT_FAILED, "132001", -1, "", "template refused"},
    {400, "", NULL, META_ERR(132015, "Template is paused"), CR_OUT_FAILED, "132015", -1, "",
     "template"},
    {429, "", "3", META_ERR(130429, "Rate limit hit"), CR_OUT_RETRY, "130429", 3000, "",
     "rate limited"},
    {400, "", NULL, META_ERR(131056, "Pair rate limit hit"), CR_OUT_RETRY, "131056", -1, "",
     "rate limited"},
    {401, "", NULL, META_ERR(190, "Error validating access token"), CR_OUT_RETRY, "190", -1, "",
     "access_token"},
    {500, "", NULL, META_ERR(131000, "Something went wrong"), CR_OUT_RETRY, "131000", -1, "", ""},
    {400, "", NULL, "not json", CR_OUT_FAILED, "400", -1, "", "body unreadable"},
};

TEST(whatsapp_meta_classify_table)
{
    struct cr_message m = wa_sample();
    char err[256];
    void *state = NULL;
    size_t bad;

    ASSERT_INT_EQ(cr_test_provider_init(wm_ops(), cJSON_Parse(wm_conf), "http://127.0.0.1:9",
                                        "providers.m", &state, err, sizeof(err)),
                  0);
    bad = cr_test_rows_differing(wm_ops(), state, &m, wm_rows, sizeof(wm_rows) / sizeof(wm_rows[0]));
    wm_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}

/* ---- Meta webhook ---- */

static char *corpus(const char *name, size_t *len)
{
    char path[256];

    snprintf(path, sizeof(path), "fuzz/corpus/hook_meta/%s", name);
    return slurp_file(path, len);
}

TEST(whatsapp_meta_hook_statuses_and_messages)
{
    struct cr_hook_event evs[8];
    size_t len = 0, n = 0, i;
    char *body = corpus("statuses", &len);

    ASSERT(body != NULL);
    ASSERT_INT_EQ(cr_hook_meta_parse(body, len, evs, 8, &n), 0);
    free(body);
    ASSERT_INT_EQ(n, 2);
    ASSERT_INT_EQ(evs[0].kind, CR_HOOK_RECEIPT);
    ASSERT_STR_EQ(evs[0].status, "delivered");
    ASSERT_INT_EQ(evs[0].has_ref, 1);
    ASSERT_STR_EQ(evs[0].ref.job, "appeal-17");
    ASSERT_INT_EQ(evs[0].ref.pos, 4);
    ASSERT_INT_EQ(evs[0].ref.ch, CR_CH_WHATSAPP);
    ASSERT_STR_EQ(evs[1].status, "read");
    ASSERT(strcmp(evs[0].event_id, evs[1].event_id) != 0);
    for (i = 0; i < n; i++)
        cr_hook_event_release(&evs[i]);

    body = corpus("failed_131026", &len);
    ASSERT(body != NULL);
    ASSERT_INT_EQ(cr_hook_meta_parse(body, len, evs, 8, &n), 0);
    free(body);
    ASSERT_INT_EQ(n, 1);
    ASSERT_STR_EQ(evs[0].status, "failed");
    ASSERT_STR_EQ(evs[0].code, "131026");
    ASSERT_INT_EQ(evs[0].suppress_ch, CR_CH_WHATSAPP);
    ASSERT_STR_EQ(evs[0].address, "+447700900999");
    cr_hook_event_release(&evs[0]);

    body = corpus("inbound", &len);
    ASSERT(body != NULL);
    ASSERT_INT_EQ(cr_hook_meta_parse(body, len, evs, 8, &n), 0);
    free(body);
    ASSERT_INT_EQ(n, 1);
    ASSERT_INT_EQ(evs[0].kind, CR_HOOK_INBOUND);
    ASSERT_STR_EQ(evs[0].from, "whatsapp:+447700900456");
    ASSERT_STR_EQ(evs[0].text, "STOP");
    cr_hook_event_release(&evs[0]);

    ASSERT_INT_EQ(cr_hook_meta_parse("{\"object\":\"page\",\"entry\":[]}", 28, evs, 8, &n),
                  CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_meta_parse("[1]", 3, evs, 8, &n), CR_EPARSE);
}

TEST(whatsapp_meta_hook_signature_and_handshake)
{
    /* HMAC-SHA256("app-secret", "{}") */
    static const char body[] = "{}";
    char sig[160];
    char challenge[CR_META_CHALLENGE_MAX + 1];
    unsigned char mac[64];
    unsigned maclen = 0;
    const void *parts[1] = {body};
    size_t lens[1] = {2};
    char hex[129];

    ASSERT_INT_EQ(cr_hmac(EVP_sha256(), "app-secret", 10, parts, lens, 1, mac, &maclen), 0);
    cr_hex(mac, maclen, hex);
    snprintf(sig, sizeof(sig), "sha256=%s", hex);
    ASSERT_INT_EQ(cr_hook_meta_verify("app-secret", body, 2, sig), 1);
    ASSERT_INT_EQ(cr_hook_meta_verify("other-secret", body, 2, sig), 0);
    ASSERT_INT_EQ(cr_hook_meta_verify("app-secret", "{ }", 3, sig), 0);
    ASSERT_INT_EQ(cr_hook_meta_verify("app-secret", body, 2, hex), 0); /* no sha256= */
    ASSERT_INT_EQ(cr_hook_meta_verify("app-secret", body, 2, NULL), 0);
    ASSERT_INT_EQ(cr_hook_meta_verify(NULL, body, 2, sig), 0);

    ASSERT_INT_EQ(cr_hook_meta_handshake("verify-me",
                                         "hub.mode=subscribe&hub.verify_token=verify-me"
                                         "&hub.challenge=1158201444",
                                         challenge, sizeof(challenge)),
                  0);
    ASSERT_STR_EQ(challenge, "1158201444");
    ASSERT_INT_EQ(cr_hook_meta_handshake("verify-me",
                                         "hub.mode=subscribe&hub.verify_token=guess"
                                         "&hub.challenge=1158201444",
                                         challenge, sizeof(challenge)),
                  CR_EINVAL);
    ASSERT_INT_EQ(cr_hook_meta_handshake("verify-me", "hub.mode=unsubscribe&hub.verify_token="
                                                      "verify-me&hub.challenge=1",
                                         challenge, sizeof(challenge)),
                  CR_EPARSE);
    ASSERT_INT_EQ(cr_hook_meta_handshake("verify-me", "hub.mode=subscribe&hub.verify_token="
                                                      "verify-me&hub.challenge=%3Cscript%3E",
                                         challenge, sizeof(challenge)),
                  CR_EPARSE);
}

TEST(whatsapp_twilio_callbacks_suppress_on_whatsapp)
{
    struct cr_hook_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.suppress_ch = -1;
    cr_hook_twilio_whatsapp("63003", "whatsapp:+447700900999", &ev);
    ASSERT_INT_EQ(ev.suppress_ch, CR_CH_WHATSAPP);
    ASSERT_STR_EQ(ev.address, "+447700900999");
    ev.suppress_ch = -1;
    cr_hook_twilio_whatsapp("63003", "+447700900999", &ev); /* an SMS: not ours */
    ASSERT_INT_EQ(ev.suppress_ch, -1);
    cr_hook_twilio_whatsapp("30003", "whatsapp:+447700900999", &ev);
    ASSERT_INT_EQ(ev.suppress_ch, -1);
}
