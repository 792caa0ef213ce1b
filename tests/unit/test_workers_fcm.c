/* The FCM HTTP v1 adapter: config checks, the exact messages:send request,
 * and the classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"
#include "workers_fixture.h"

#define FCM_PATH "providers.fcm"
#define NOW_MS INT64_C(1795338000000) /* Sun, 22 Nov 2026 09:00:00 UTC */

static const char fcm_conf[] = "{\"project_id\":\"crier-demo-1\",\"access_token\":\"ya29.tok\"}";

static const struct cr_provider_ops *fcm_ops(void)
{
    return cr_provider_find("fcm");
}

static int fcm_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    return cr_test_provider_init(fcm_ops(), cJSON_Parse(conf), base, FCM_PATH, state, err, errlen);
}

static const char *jpath(const cJSON *o, const char *a, const char *b, const char *c)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, a);

    if (b != NULL)
        it = cJSON_GetObjectItemCaseSensitive(it, b);
    if (c != NULL)
        it = cJSON_GetObjectItemCaseSensitive(it, c);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static struct cr_message sample(void)
{
    struct cr_message m =
        cr_test_push("fcm", "fGx7:APA91bH-token", "Missing person in LE1 \"Sam\"");

    m.sub_id = "10442";
    return m;
}

TEST(workers_fcm_config_errors)
{
    static const struct {
        const char *conf;
        const char *err;
    } cases[] = {
        {"{\"access_token\":\"t\"}", FCM_PATH ".project_id: is required"},
        {"{\"project_id\":\"p\"}", FCM_PATH ".access_token: is required"},
        {"{\"project_id\":\"a/../b\",\"access_token\":\"t\"}", FCM_PATH ".project_id: may hold only"},
        {"{\"project_id\":\"p\",\"access_token\":\"t\\r\\nX: y\"}",
         FCM_PATH ".access_token: must not contain CR or LF"},
        {"{\"project_id\":true,\"access_token\":\"t\"}", FCM_PATH ".project_id: must be a string"},
        {"null", FCM_PATH ": must be an object"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ASSERT_CONFIG_REFUSED(fcm_ops(), cJSON_Parse(cases[i].conf), "https://fcm.googleapis.com",
                              FCM_PATH, cases[i].err);
}

TEST(workers_fcm_table_entry)
{
    const struct cr_provider_ops *ops = fcm_ops();

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "fcm");
    ASSERT_INT_EQ(ops->channel, CR_CH_PUSH);
    ASSERT_STR_EQ(ops->platform, "fcm");
    ASSERT_INT_EQ(ops->max_batch, 1);
    ASSERT_STR_EQ(ops->keys[0], "project_id");
    ASSERT_STR_EQ(ops->keys[1], "access_token");
    ASSERT_STR_EQ(ops->keys[2], "service_account");
    ASSERT_STR_EQ(ops->keys[3], "token_url");
    ASSERT_STR_EQ(ops->keys[4], "default_ttl_s");
    ASSERT(ops->keys[5] == NULL);
    ASSERT(ops->auth_request != NULL && ops->auth_done != NULL);
}

TEST(workers_fcm_build_request)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;
    const cJSON *msg;

    ASSERT_INT_EQ(fcm_init(fcm_conf, "http://127.0.0.1:9002/", &state, err, sizeof(err)), 0);
    cr_test_req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url),
                  "http://127.0.0.1:9002/v1/projects/crier-demo-1/messages:send");
    ASSERT(cr_test_has_header(&req, "Authorization: Bearer ya29.tok"));
    ASSERT(cr_test_has_header(&req, "Content-Type: application/json"));
    ASSERT(req.userpwd == NULL);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    msg = cJSON_GetObjectItem(doc, "message");
    ASSERT_STR_EQ(jpath(msg, "token", NULL, NULL), "fGx7:APA91bH-token");
    ASSERT_STR_EQ(jpath(msg, "notification", "title", NULL), "Police appeal");
    ASSERT_STR_EQ(jpath(msg, "notification", "body", NULL), "Missing person in LE1 \"Sam\"");
    ASSERT_STR_EQ(jpath(msg, "data", "crier_ref", NULL), "appeal-17/4/push");
    ASSERT_STR_EQ(jpath(msg, "data", "crier_job", NULL), "appeal-17");
    ASSERT_STR_EQ(jpath(msg, "android", "priority", NULL), "high");
    /* Non-collapsible: a collapse key per message would pass FCM's four per
     * device and make it drop messages for an offline phone. */
    ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "android"), "collapse_key") == NULL);
    /* No expires_at: kept for default_ttl_s, a day; for iPhones the same. */
    ASSERT_STR_EQ(jpath(msg, "android", "ttl", NULL), "86400s");
    ASSERT_STR_EQ(jpath(msg, "apns", "headers", "apns-priority"), "10");
    ASSERT_STR_EQ(jpath(msg, "apns", "headers", "apns-expiration"), "86400");
    ASSERT_STR_EQ(jpath(msg, "apns", "headers", "apns-collapse-id"), "appeal-17");
    cJSON_Delete(doc);
    cr_test_req_release(&req);
    fcm_ops()->free_state(state);
}

TEST(workers_fcm_priorities)
{
    static const struct {
        enum cr_priority prio;
        const char *android;
        const char *apns;
    } cases[] = {
        {CR_PRIO_URGENT, "high", "10"},
        {CR_PRIO_HIGH, "high", "10"}, /* an appeal marked high does not wait */
        {CR_PRIO_NORMAL, "normal", "10"},
        {CR_PRIO_BULK, "normal", "5"},
    };
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    char err[256];
    void *state = NULL;
    size_t i;

    ASSERT_INT_EQ(fcm_init(fcm_conf, "http://127.0.0.1:9002", &state, err, sizeof(err)), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_request req;
        cJSON *doc;
        const cJSON *msg;
        int ok;

        m.priority = cases[i].prio;
        cr_test_req_init(&req);
        ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
        doc = cJSON_Parse(cr_buf_cstr(&req.body));
        msg = cJSON_GetObjectItem(doc, "message");
        ok = jpath(msg, "android", "priority", NULL) != NULL &&
             strcmp(jpath(msg, "android", "priority", NULL), cases[i].android) == 0 &&
             jpath(msg, "apns", "headers", "apns-priority") != NULL &&
             strcmp(jpath(msg, "apns", "headers", "apns-priority"), cases[i].apns) == 0;
        cJSON_Delete(doc);
        cr_test_req_release(&req);
        ASSERT(ok);
    }
    fcm_ops()->free_state(state);
}

TEST(workers_fcm_expiry)
{
    static const struct {
        const char *conf;
        int64_t expires_at_ms; /* 0 = the job has none */
        const char *ttl;        /* android.ttl */
        const char *expiration; /* apns.headers apns-expiration */
    } cases[] = {
        {NULL, 0, "86400s", "1795424400"},
        {NULL, NOW_MS + 3600 * 1000 + 999, "3600s", "1795341600"},
        {NULL, NOW_MS - 1, "0s", "0"},
        {NULL, NOW_MS + INT64_C(60) * 86400 * 1000, "2419200s", "1797757200"},
        {"{\"project_id\":\"p\",\"access_token\":\"t\",\"default_ttl_s\":600}", 0, "600s",
         "1795338600"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_message m = sample();
        const struct cr_message *msgs[1] = {&m};
        struct cr_request req;
        char err[256];
        void *state = NULL;
        cJSON *doc;
        const cJSON *msg;
        const char *ttl;
        const char *exp;
        int ok;

        ASSERT_INT_EQ(fcm_init(cases[i].conf ? cases[i].conf : fcm_conf, "http://127.0.0.1:9002",
                               &state, err, sizeof(err)),
                      0);
        m.expires_at_ms = cases[i].expires_at_ms;
        cr_test_req_init(&req);
        req.now_ms = NOW_MS;
        ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
        doc = cJSON_Parse(cr_buf_cstr(&req.body));
        msg = cJSON_GetObjectItem(doc, "message");
        ttl = jpath(msg, "android", "ttl", NULL);
        exp = jpath(msg, "apns", "headers", "apns-expiration");
        ok = ttl != NULL && exp != NULL && strcmp(ttl, cases[i].ttl) == 0 &&
             strcmp(exp, cases[i].expiration) == 0;
        if (!ok)
            fprintf(stderr, "  case %zu: ttl %s apns-expiration %s, want %s %s\n", i,
                    ttl ? ttl : "(none)", exp ? exp : "(none)", cases[i].ttl,
                    cases[i].expiration);
        cJSON_Delete(doc);
        cr_test_req_release(&req);
        fcm_ops()->free_state(state);
        ASSERT(ok);
    }
    ASSERT_CONFIG_REFUSED(fcm_ops(),
                          cJSON_Parse("{\"project_id\":\"p\",\"access_token\":\"t\","
                                      "\"default_ttl_s\":1.5}"),
                          "https://fcm.googleapis.com", FCM_PATH,
                          FCM_PATH ".default_ttl_s: must be a whole number of seconds from 0 to "
                          "2419200 (28 days)");
}

TEST(workers_fcm_build_refusals)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;

    ASSERT_INT_EQ(fcm_init(fcm_conf, "http://127.0.0.1:9002", &state, err, sizeof(err)), 0);
    m.platform = "apns";
    cr_test_req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    cr_test_req_release(&req);
    m = sample();
    m.address = "";
    cr_test_req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    cr_test_req_release(&req);
    m = sample();
    cr_test_req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    cr_test_req_release(&req);

    /* A data-only message: no notification object. */
    m = sample();
    m.push_title = NULL;
    m.push_body = NULL;
    cr_test_req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "message"), "notification") == NULL);
    cJSON_Delete(doc);
    cr_test_req_release(&req);
    fcm_ops()->free_state(state);
}

#define FCM_ERR(code, status, ec)                                                                  \
    "{\"error\":{\"code\":" #code ",\"message\":\"msg " ec "\",\"status\":\"" status "\","         \
    "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\","                       \
    "\"fieldViolations\":[]},"                                                                     \
    "{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"" ec       \
    "\"}]}}"
#define FCM_STATUS(code, status)                                                                   \
    "{\"error\":{\"code\":" #code ",\"message\":\"msg\",\"status\":\"" status "\"}}"

static const struct cr_test_row fcm_rows[] = {
    {200, "", NULL,
     "{\"name\":\"projects/crier-demo-1/messages/0:1500415314455276%31bd1c9631bd1c96\"}",
     CR_OUT_SENT, "200", -1, "projects/crier-demo-1/messages/0:1500415314455276%31bd1c9631bd1c96",
     "accepted"},
    {200, "", NULL, "{\"nam", CR_OUT_SENT, "200", -1, "", "body unreadable"},
    {200, "", NULL, "", CR_OUT_SENT, "200", -1, "", "body unreadable"},
    {404, "", NULL, FCM_ERR(404, "NOT_FOUND", "UNREGISTERED"), CR_OUT_SUPPRESS, "UNREGISTERED", -1,
     "", "no longer registered"},
    {400, "", NULL, FCM_ERR(400, "INVALID_ARGUMENT", "UNREGISTERED"), CR_OUT_SUPPRESS,
     "UNREGISTERED", -1, "", ""},
    {404, "", NULL, FCM_STATUS(404, "NOT_FOUND"), CR_OUT_FAILED, "NOT_FOUND", -1, "", "msg"},
    {400, "", NULL, FCM_ERR(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), CR_OUT_FAILED,
     "INVALID_ARGUMENT", -1, "", "msg INVALID_ARGUMENT"},
    {400, "", NULL, FCM_STATUS(400, "INVALID_ARGUMENT"), CR_OUT_FAILED, "INVALID_ARGUMENT", -1, "",
     ""},
    {403, "", NULL, FCM_ERR(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), CR_OUT_FAILED,
     "SENDER_ID_MISMATCH", -1, "", ""},
    {429, "Retry-After: 60\r\n", NULL, FCM_ERR(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
     CR_OUT_RETRY, "QUOTA_EXCEEDED", 60000, "", "quota"},
    {429, "", NULL, FCM_STATUS(429, "RESOURCE_EXHAUSTED"), CR_OUT_RETRY, "RESOURCE_EXHAUSTED", -1,
     "", ""},
    {429, "Retry-After: 5\r\n", NULL, "", CR_OUT_RETRY, "429", 5000, "", "body unreadable"},
    {503, "Retry-After: 10\r\n", NULL, FCM_ERR(503, "UNAVAILABLE", "UNAVAILABLE"), CR_OUT_RETRY,
     "UNAVAILABLE", 10000, "", "provider error"},
    {500, "", NULL, FCM_ERR(500, "INTERNAL", "INTERNAL"), CR_OUT_RETRY, "INTERNAL", -1, "", ""},
    {502, "", NULL, "<html>Bad Gateway</html>", CR_OUT_RETRY, "502", -1, "", "body unreadable"},
    {401, "", NULL, FCM_STATUS(401, "UNAUTHENTICATED"), CR_OUT_RETRY, "UNAUTHENTICATED", -1, "",
     "check the access token"},
    {401, "", NULL, FCM_ERR(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), CR_OUT_RETRY,
     "THIRD_PARTY_AUTH_ERROR", -1, "", "auth rejected"},
    {401, "", NULL, "", CR_OUT_RETRY, "401", -1, "", "body unreadable"},
    {403, "", NULL, FCM_STATUS(403, "PERMISSION_DENIED"), CR_OUT_RETRY, "PERMISSION_DENIED", -1, "",
     "auth rejected"},
    /* An errorCode we do not know falls back to the status. */
    {500, "", NULL, FCM_ERR(500, "INTERNAL", "UNSPECIFIED_ERROR"), CR_OUT_RETRY,
     "UNSPECIFIED_ERROR", -1, "", ""},
    {400, "", NULL, FCM_ERR(400, "FAILED_PRECONDITION", "UNSPECIFIED_ERROR"), CR_OUT_FAILED,
     "UNSPECIFIED_ERROR", -1, "", ""},
    {400, "", NULL, "{\"error\":\"bad\"}", CR_OUT_FAILED, "400", -1, "", "no error message"},
    {400, "", NULL, "[]", CR_OUT_FAILED, "400", -1, "", ""},
    {400, "", NULL, "{\"error\":{\"details\":[{\"errorCode\":\"UNREGISTERED\"}]}}", CR_OUT_FAILED,
     "400", -1, "", ""},
    {413, "", NULL, "nope", CR_OUT_FAILED, "413", -1, "", "body unreadable"},
};

TEST(workers_fcm_classify_table)
{
    struct cr_message m = sample();
    char err[256];
    void *state = NULL;
    size_t bad;

    ASSERT_INT_EQ(fcm_init(fcm_conf, "http://127.0.0.1:9002", &state, err, sizeof(err)), 0);
    bad = cr_test_rows_differing(fcm_ops(), state, &m, fcm_rows,
                                 sizeof(fcm_rows) / sizeof(fcm_rows[0]));
    fcm_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}
