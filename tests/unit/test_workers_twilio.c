/* The Twilio adapter: config checks, the exact form-encoded Messages request,
 * and the classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"
#include "workers_fixture.h"

#define TW_PATH "providers.twilio"
#define TW_SID "AC0123456789abcdef0123456789ABCDEF"
#define TW_MG "MG0123456789abcdef0123456789abcdef"

static const char tw_conf[] = "{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"s3cret\","
                              "\"from\":\"+447700900123\","
                              "\"status_callback\":\"https://hooks.example/twilio\"}";

static const struct cr_provider_ops *tw_ops(void)
{
    return cr_provider_find("twilio");
}

static int tw_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    return cr_test_provider_init(tw_ops(), cJSON_Parse(conf), base, TW_PATH, state, err, errlen);
}

/* Unescaped value of form field name in body, into out; 0 or -1 when absent. */
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

static struct cr_message sample(void)
{
    struct cr_message m = cr_test_message(CR_CH_SMS, "+447700900456");

    m.sub_id = "10442";
    m.sms = "Police appeal: missing person & dog. Call 101 quoting 123 = 100% urgent";
    return m;
}

TEST(workers_twilio_config_errors)
{
    static const struct {
        const char *conf;
        const char *err;
    } cases[] = {
        {"{\"auth_token\":\"t\",\"from\":\"+447700900123\"}", TW_PATH ".account_sid: is required"},
        {"{\"account_sid\":\"AC123\",\"auth_token\":\"t\",\"from\":\"+447700900123\"}",
         TW_PATH ".account_sid: must be \"AC\" followed by 32 hex digits"},
        {"{\"account_sid\":\"AX0123456789abcdef0123456789abcdef\",\"auth_token\":\"t\","
         "\"from\":\"+447700900123\"}",
         TW_PATH ".account_sid: must be"},
        {"{\"account_sid\":\"AC0123456789abcdef0123456789abcdeg\",\"auth_token\":\"t\","
         "\"from\":\"+447700900123\"}",
         TW_PATH ".account_sid: must be"},
        {"{\"account_sid\":\"" TW_SID "\",\"from\":\"+447700900123\"}",
         TW_PATH ".auth_token: is required"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\"}", TW_PATH ".from: is required"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"+447700900123\","
         "\"messaging_service_sid\":\"" TW_MG "\"}",
         TW_PATH ".from: give either from or messaging_service_sid, not both"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"07700900123\"}",
         TW_PATH ".from: must be an E.164 number"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"+0447700900123\"}",
         TW_PATH ".from: must be an E.164 number"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"+4477009001234567\"}",
         TW_PATH ".from: must be an E.164 number"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"messaging_service_sid\":\"MG1\"}",
         TW_PATH ".messaging_service_sid: must be \"MG\" followed by 32 hex digits"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"+447700900123\","
         "\"status_callback\":\"ftp://x\"}",
         TW_PATH ".status_callback: must be an http:// or https:// URL"},
        {"{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\",\"from\":\"+447700900123\","
         "\"status_callback\":\"https://x/a b\"}",
         TW_PATH ".status_callback: must be"},
    };
    size_t i;
    char err[256];
    void *state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ASSERT_CONFIG_REFUSED(tw_ops(), cJSON_Parse(cases[i].conf), "https://api.twilio.com",
                              TW_PATH, cases[i].err);
    ASSERT_INT_EQ(tw_init(tw_conf, "", &state, err, sizeof(err)), CR_ECONFIG);
    ASSERT_STR_EQ(err, TW_PATH ".url: is required");
}

TEST(workers_twilio_table_entry)
{
    const struct cr_provider_ops *ops = tw_ops();
    size_t n = 0;

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "twilio");
    ASSERT_INT_EQ(ops->channel, CR_CH_SMS);
    ASSERT_INT_EQ(ops->max_batch, 1);
    while (ops->keys[n] != NULL)
        n++;
    ASSERT_INT_EQ(n, 5);
}

TEST(workers_twilio_build_request)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    char v[512];
    void *state = NULL;
    const char *body;

    ASSERT_INT_EQ(tw_init(tw_conf, "http://127.0.0.1:9001/", &state, err, sizeof(err)), 0);
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url),
                  "http://127.0.0.1:9001/2010-04-01/Accounts/" TW_SID "/Messages.json");
    ASSERT(cr_test_has_header(&req, "Content-Type: application/x-www-form-urlencoded"));
    /* base64 of TW_SID ":s3cret" */
    ASSERT(cr_test_has_header(&req, "Authorization: Basic QUMwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OUFCQ0RFRjpzM2NyZXQ="));
    ASSERT(req.userpwd == NULL);
    body = cr_buf_cstr(&req.body);
    /* Every value is escaped: no raw '+', space, '&' payload or '/' left. */
    ASSERT(strstr(body, "To=%2B447700900456") == body);
    ASSERT(strchr(body, ' ') == NULL && strchr(body, '+') == NULL && strchr(body, '/') == NULL);
    ASSERT_INT_EQ(form_get(body, "To", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "+447700900456");
    ASSERT_INT_EQ(form_get(body, "From", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "+447700900123");
    ASSERT_INT_EQ(form_get(body, "MessagingServiceSid", v, sizeof(v)), -1);
    ASSERT_INT_EQ(form_get(body, "Body", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, m.sms);
    ASSERT_INT_EQ(form_get(body, "StatusCallback", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "https://hooks.example/twilio?ref=appeal-17%2F4%2Fsms");
    cr_test_req_release(&req);
    tw_ops()->free_state(state);
}

TEST(workers_twilio_build_service_and_callback_query)
{
    static const char conf[] = "{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\","
                               "\"messaging_service_sid\":\"" TW_MG "\","
                               "\"status_callback\":\"https://hooks.example/t?src=crier\"}";
    static const char bare[] = "{\"account_sid\":\"" TW_SID "\",\"auth_token\":\"t\","
                               "\"from\":\"+447700900123\"}";
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    char v[512];
    void *state = NULL;

    ASSERT_INT_EQ(tw_init(conf, "http://127.0.0.1:9001", &state, err, sizeof(err)), 0);
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "From", v, sizeof(v)), -1);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "MessagingServiceSid", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, TW_MG);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "StatusCallback", v, sizeof(v)), 0);
    ASSERT_STR_EQ(v, "https://hooks.example/t?src=crier&ref=appeal-17%2F4%2Fsms");
    cr_test_req_release(&req);

    /* Refused: no body, no address, more than one message. */
    m.sms = NULL;
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    cr_test_req_release(&req);
    m = sample();
    m.address = NULL;
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    cr_test_req_release(&req);
    m = sample();
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 0, &req), CR_EINVAL);
    cr_test_req_release(&req);
    tw_ops()->free_state(state);

    /* No status_callback configured: no StatusCallback field. */
    ASSERT_INT_EQ(tw_init(bare, "http://127.0.0.1:9001", &state, err, sizeof(err)), 0);
    cr_test_req_init(&req);
    ASSERT_INT_EQ(tw_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_INT_EQ(form_get(cr_buf_cstr(&req.body), "StatusCallback", v, sizeof(v)), -1);
    cr_test_req_release(&req);
    tw_ops()->free_state(state);
}

#define TW_ERR(code, status, msg)                                                                  \
    "{\"code\":" #code ",\"message\":\"" msg "\",\"more_info\":"                                   \
    "\"https://www.twilio.com/docs/errors/" #code "\",\"status\":" #status "}"

static const struct cr_test_row tw_rows[] = {
    {201, "", NULL, "{\"sid\":\"SM0123456789abcdef0123456789abcdef\",\"status\":\"queued\"}",
     CR_OUT_SENT, "queued", -1, "SM0123456789abcdef0123456789abcdef", "accepted"},
    {200, "", NULL, "{\"sid\":\"SMaa\",\"status\":\"accepted\"}", CR_OUT_SENT, "accepted", -1,
     "SMaa", "accepted"},
    {201, "", NULL, "{\"sid\":\"SMbb\",\"status\":\"sent\"}", CR_OUT_SENT, "sent", -1, "SMbb", ""},
    {201, "", NULL, "not json", CR_OUT_SENT, "201", -1, "", "body unreadable"},
    /* a whole message resource: nested values (one holding a "sid" of its
     * own) skipped, numbers and null read past, the top-level members found */
    {201, "", NULL,
     " {\"account_sid\": \"AC00\", \"api_version\": \"2010-04-01\", \"body\": \"a \\\"b\\\" c\",\n"
     "  \"num_segments\": \"1\", \"price\": null, \"error_code\": 0,\n"
     "  \"subresource_uris\": {\"media\": \"/m.json\", \"sid\": \"SMnested\", \"x\": [1, {}]},\n"
     "  \"sid\": \"SMtop\", \"status\": \"queued\", \"uri\": \"/SMtop.json\"}\r\n",
     CR_OUT_SENT, "queued", -1, "SMtop", "accepted (queued)"},
    /* escapes in sid: read by cJSON instead, unescaped */
    {201, "", NULL, "{\"sid\":\"SM\\u0041\",\"status\":\"queued\"}", CR_OUT_SENT, "queued", -1,
     "SMA", ""},
    /* the first of two members counts, as with cJSON */
    {201, "", NULL, "{\"sid\":\"SM1\",\"sid\":\"SM2\",\"status\":\"sent\"}", CR_OUT_SENT, "sent",
     -1, "SM1", ""},
    /* sid not a string, the object not closed, text after it (which cJSON
     * reads past), no sid */
    {201, "", NULL, "{\"sid\":42,\"status\":\"queued\"}", CR_OUT_SENT, "201", -1, "",
     "body unreadable"},
    {201, "", NULL, "{\"sid\":\"SM1\",\"status\":\"queued\"", CR_OUT_SENT, "201", -1, "",
     "body unreadable"},
    {201, "", NULL, "{\"sid\":\"SM1\"} x", CR_OUT_SENT, "201", -1, "SM1", "no status"},
    {201, "", NULL, "{\"status\":\"queued\"}", CR_OUT_SENT, "201", -1, "", "body unreadable"},
    /* an escaped key spelling sid, and a bare word cJSON refuses */
    {201, "", NULL, "{\"s\\u0069d\":\"SM9\",\"status\":\"sent\"}", CR_OUT_SENT, "sent", -1, "SM9",
     ""},
    {201, "", NULL, "{\"sid\":\"SM1\",\"n\":abc}", CR_OUT_SENT, "201", -1, "", "body unreadable"},
    {201, "", NULL, "", CR_OUT_SENT, "201", -1, "", "body unreadable"},
    {400, "", NULL, TW_ERR(21610, 400, "Attempt to send to unsubscribed recipient"),
     CR_OUT_SUPPRESS, "21610", -1, "", "unsubscribed"},
    {400, "", NULL, TW_ERR(21211, 400, "The 'To' number is not a valid phone number."),
     CR_OUT_FAILED, "21211", -1, "", "not a valid phone number"},
    {400, "", NULL, TW_ERR(21614, 400, "not a mobile number"), CR_OUT_FAILED, "21614", -1, "", ""},
    {400, "", NULL, TW_ERR(21612, 400, "cannot route"), CR_OUT_FAILED, "21612", -1, "", ""},
    {400, "", NULL, TW_ERR(21408, 400, "region not enabled"), CR_OUT_FAILED, "21408", -1, "", ""},
    {400, "", NULL, TW_ERR(21601, 400, "not a valid SMS-capable number"), CR_OUT_FAILED, "21601",
     -1, "", ""},
    {400, "", NULL, TW_ERR(21602, 400, "Message body is required"), CR_OUT_FAILED, "21602", -1, "",
     ""},
    {400, "", NULL, TW_ERR(21604, 400, "To is required"), CR_OUT_FAILED, "21604", -1, "", ""},
    {400, "", NULL, TW_ERR(21606, 400, "From is not a valid sender"), CR_OUT_FAILED, "21606", -1,
     "", ""},
    {400, "", NULL, TW_ERR(21617, 400, "body exceeds 1600 characters"), CR_OUT_FAILED, "21617", -1,
     "", ""},
    {429, "Retry-After: 3\r\n", NULL, TW_ERR(20429, 429, "Too Many Requests"), CR_OUT_RETRY,
     "20429", 3000, "", "rate limited"},
    {400, "", NULL, TW_ERR(20429, 429, "Too Many Requests"), CR_OUT_RETRY, "20429", -1, "",
     "rate limited"},
    {429, "", NULL, "", CR_OUT_RETRY, "429", -1, "", "body unreadable"},
    {401, "", NULL, TW_ERR(20003, 401, "Authenticate"), CR_OUT_RETRY, "20003", -1, "",
     "check account_sid and auth_token"},
    {401, "", NULL, "<html/>", CR_OUT_RETRY, "401", -1, "", "auth rejected"},
    {500, "", NULL, TW_ERR(20500, 500, "Internal Server Error"), CR_OUT_RETRY, "20500", -1, "", ""},
    {503, "Retry-After: 1\r\n", NULL, TW_ERR(20503, 503, "Service Unavailable"), CR_OUT_RETRY,
     "20503", 1000, "", ""},
    {502, "", NULL, "<html>Bad Gateway</html>", CR_OUT_RETRY, "502", -1, "", "body unreadable"},
    {400, "", NULL, TW_ERR(21620, 400, "Invalid media URL"), CR_OUT_FAILED, "21620", -1, "",
     "Invalid media URL"},
    {404, "", NULL, TW_ERR(20404, 404, "not found"), CR_OUT_FAILED, "20404", -1, "", ""},
    {400, "", NULL, "{\"message\":\"no code\"}", CR_OUT_FAILED, "400", -1, "", "no code"},
    {400, "", NULL, "{\"code\":\"21610\"}", CR_OUT_SUPPRESS, "21610", -1, "", "no message"},
    {400, "", NULL, "{\"code\":-3}", CR_OUT_FAILED, "400", -1, "", ""},
    {400, "", NULL, "\xff\xfe", CR_OUT_FAILED, "400", -1, "", "body unreadable"},
};

TEST(workers_twilio_classify_table)
{
    struct cr_message m = sample();
    char err[256];
    void *state = NULL;
    size_t bad;

    ASSERT_INT_EQ(tw_init(tw_conf, "http://127.0.0.1:9001", &state, err, sizeof(err)), 0);
    bad =
        cr_test_rows_differing(tw_ops(), state, &m, tw_rows, sizeof(tw_rows) / sizeof(tw_rows[0]));
    tw_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}
