/* The FCM HTTP v1 adapter: config checks, the exact messages:send request,
 * and the classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"

#define FCM_PATH "providers.fcm"

static const char fcm_conf[] = "{\"project_id\":\"crier-demo-1\",\"access_token\":\"ya29.tok\"}";

static const struct cr_provider_ops *fcm_ops(void)
{
    return cr_provider_find("fcm");
}

static int fcm_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    cJSON *cfg = cJSON_Parse(conf);
    int rc;

    err[0] = '\0';
    rc = fcm_ops()->init(cfg, base, FCM_PATH, state, err, errlen);
    cJSON_Delete(cfg);
    return rc;
}

static void req_init(struct cr_request *req)
{
    memset(req, 0, sizeof(*req));
    snprintf(req->method, sizeof(req->method), "GET");
    cr_buf_init(&req->url, 4096);
    cr_buf_init(&req->body, 1 << 20);
}

static void req_release(struct cr_request *req)
{
    cr_buf_release(&req->url);
    cr_buf_release(&req->body);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
}

static int has_header(const struct cr_request *req, const char *line)
{
    const struct curl_slist *h;

    for (h = req->headers; h != NULL; h = h->next) {
        if (strcmp(h->data, line) == 0)
            return 1;
    }
    return 0;
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
    struct cr_message m;

    memset(&m, 0, sizeof(m));
    m.job_id = "appeal-17";
    m.sub_id = "10442";
    m.ref = "appeal-17/4/push";
    m.channel = CR_CH_PUSH;
    m.priority = CR_PRIO_URGENT;
    m.address = "fGx7:APA91bH-token";
    m.platform = "fcm";
    m.push_title = "Police appeal";
    m.push_body = "Missing person in LE1 \"Sam\"";
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
    char err[256];
    void *state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        state = (void *)1;
        ASSERT_INT_EQ(fcm_init(cases[i].conf, "https://fcm.googleapis.com", &state, err,
                               sizeof(err)),
                      CR_ECONFIG);
        ASSERT(state == NULL);
        ASSERT_STR_CONTAINS(err, cases[i].err);
    }
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
    ASSERT(ops->keys[4] == NULL);
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
    req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url),
                  "http://127.0.0.1:9002/v1/projects/crier-demo-1/messages:send");
    ASSERT(has_header(&req, "Authorization: Bearer ya29.tok"));
    ASSERT(has_header(&req, "Content-Type: application/json"));
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
    ASSERT_STR_EQ(jpath(msg, "android", "collapse_key", NULL), "appeal-17/4/push");
    ASSERT_STR_EQ(jpath(msg, "apns", "headers", "apns-priority"), "10");
    ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(msg, "android"), "ttl") == NULL);
    cJSON_Delete(doc);
    req_release(&req);
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
        {CR_PRIO_HIGH, "high", "5"},
        {CR_PRIO_NORMAL, "normal", "5"},
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
        req_init(&req);
        ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
        doc = cJSON_Parse(cr_buf_cstr(&req.body));
        msg = cJSON_GetObjectItem(doc, "message");
        ok = jpath(msg, "android", "priority", NULL) != NULL &&
             strcmp(jpath(msg, "android", "priority", NULL), cases[i].android) == 0 &&
             jpath(msg, "apns", "headers", "apns-priority") != NULL &&
             strcmp(jpath(msg, "apns", "headers", "apns-priority"), cases[i].apns) == 0;
        cJSON_Delete(doc);
        req_release(&req);
        ASSERT(ok);
    }
    fcm_ops()->free_state(state);
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
    req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);
    m = sample();
    m.address = "";
    req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);
    m = sample();
    req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    req_release(&req);

    /* A data-only message: no notification object. */
    m = sample();
    m.push_title = NULL;
    m.push_body = NULL;
    req_init(&req);
    ASSERT_INT_EQ(fcm_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "message"), "notification") == NULL);
    cJSON_Delete(doc);
    req_release(&req);
    fcm_ops()->free_state(state);
}

struct row {
    long status;
    const char *headers;
    const char *body;
    enum cr_outcome outcome;
    const char *code;
    int64_t retry_after_ms;
    const char *provider_id;
    const char *detail;
};

#define FCM_ERR(code, status, ec)                                                                  \
    "{\"error\":{\"code\":" #code ",\"message\":\"msg " ec "\",\"status\":\"" status "\","        \
    "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\","                       \
    "\"fieldViolations\":[]},"                                                                     \
    "{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"" ec       \
    "\"}]}}"
#define FCM_STATUS(code, status)                                                                   \
    "{\"error\":{\"code\":" #code ",\"message\":\"msg\",\"status\":\"" status "\"}}"

static const struct row fcm_rows[] = {
    {200, "", "{\"name\":\"projects/crier-demo-1/messages/0:1500415314455276%31bd1c9631bd1c96\"}",
     CR_OUT_SENT, "200", -1, "projects/crier-demo-1/messages/0:1500415314455276%31bd1c9631bd1c96",
     "accepted"},
    {200, "", "{\"nam", CR_OUT_SENT, "200", -1, "", "body unreadable"},
    {200, "", "", CR_OUT_SENT, "200", -1, "", "body unreadable"},
    {404, "", FCM_ERR(404, "NOT_FOUND", "UNREGISTERED"), CR_OUT_SUPPRESS, "UNREGISTERED", -1, "",
     "no longer registered"},
    {400, "", FCM_ERR(400, "INVALID_ARGUMENT", "UNREGISTERED"), CR_OUT_SUPPRESS, "UNREGISTERED",
     -1, "", ""},
    {404, "", FCM_STATUS(404, "NOT_FOUND"), CR_OUT_FAILED, "NOT_FOUND", -1, "", "msg"},
    {400, "", FCM_ERR(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), CR_OUT_FAILED,
     "INVALID_ARGUMENT", -1, "", "msg INVALID_ARGUMENT"},
    {400, "", FCM_STATUS(400, "INVALID_ARGUMENT"), CR_OUT_FAILED, "INVALID_ARGUMENT", -1, "", ""},
    {403, "", FCM_ERR(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), CR_OUT_FAILED,
     "SENDER_ID_MISMATCH", -1, "", ""},
    {429, "Retry-After: 60\r\n", FCM_ERR(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
     CR_OUT_RETRY, "QUOTA_EXCEEDED", 60000, "", "quota"},
    {429, "", FCM_STATUS(429, "RESOURCE_EXHAUSTED"), CR_OUT_RETRY, "RESOURCE_EXHAUSTED", -1, "",
     ""},
    {429, "Retry-After: 5\r\n", "", CR_OUT_RETRY, "429", 5000, "", "body unreadable"},
    {503, "Retry-After: 10\r\n", FCM_ERR(503, "UNAVAILABLE", "UNAVAILABLE"), CR_OUT_RETRY,
     "UNAVAILABLE", 10000, "", "provider error"},
    {500, "", FCM_ERR(500, "INTERNAL", "INTERNAL"), CR_OUT_RETRY, "INTERNAL", -1, "", ""},
    {502, "", "<html>Bad Gateway</html>", CR_OUT_RETRY, "502", -1, "", "body unreadable"},
    {401, "", FCM_STATUS(401, "UNAUTHENTICATED"), CR_OUT_RETRY, "UNAUTHENTICATED", -1, "",
     "check the access token"},
    {401, "", FCM_ERR(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), CR_OUT_RETRY,
     "THIRD_PARTY_AUTH_ERROR", -1, "", "auth rejected"},
    {401, "", "", CR_OUT_RETRY, "401", -1, "", "body unreadable"},
    {403, "", FCM_STATUS(403, "PERMISSION_DENIED"), CR_OUT_RETRY, "PERMISSION_DENIED", -1, "",
     "auth rejected"},
    /* An errorCode we do not know falls back to the status. */
    {500, "", FCM_ERR(500, "INTERNAL", "UNSPECIFIED_ERROR"), CR_OUT_RETRY, "UNSPECIFIED_ERROR",
     -1, "", ""},
    {400, "", FCM_ERR(400, "FAILED_PRECONDITION", "UNSPECIFIED_ERROR"), CR_OUT_FAILED,
     "UNSPECIFIED_ERROR", -1, "", ""},
    {400, "", "{\"error\":\"bad\"}", CR_OUT_FAILED, "400", -1, "", "no error message"},
    {400, "", "[]", CR_OUT_FAILED, "400", -1, "", ""},
    {400, "", "{\"error\":{\"details\":[{\"errorCode\":\"UNREGISTERED\"}]}}", CR_OUT_FAILED,
     "400", -1, "", ""},
    {413, "", "nope", CR_OUT_FAILED, "413", -1, "", "body unreadable"},
};

static int row_differs(size_t i, const struct row *want, const struct cr_result *got)
{
    if (got->outcome == want->outcome && strcmp(got->code, want->code) == 0 &&
        got->retry_after_ms == want->retry_after_ms &&
        strcmp(got->provider_id, want->provider_id) == 0 &&
        strstr(got->detail, want->detail) != NULL)
        return 0;
    fprintf(stderr,
            "  row %zu (HTTP %ld): got outcome %d code \"%s\" retry %lld id \"%s\" detail \"%s\"; "
            "want %d \"%s\" %lld \"%s\" \"...%s...\"\n",
            i, want->status, (int)got->outcome, got->code, (long long)got->retry_after_ms,
            got->provider_id, got->detail, (int)want->outcome, want->code,
            (long long)want->retry_after_ms, want->provider_id, want->detail);
    return 1;
}

TEST(workers_fcm_classify_table)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    char err[256];
    void *state = NULL;
    size_t i;
    int bad = 0;

    ASSERT_INT_EQ(fcm_init(fcm_conf, "http://127.0.0.1:9002", &state, err, sizeof(err)), 0);
    for (i = 0; i < sizeof(fcm_rows) / sizeof(fcm_rows[0]); i++) {
        struct cr_response resp;
        struct cr_result res;

        memset(&resp, 0, sizeof(resp));
        memset(&res, 0x55, sizeof(res));
        resp.status = fcm_rows[i].status;
        resp.headers = fcm_rows[i].headers;
        resp.body = fcm_rows[i].body;
        resp.body_len = strlen(fcm_rows[i].body);
        fcm_ops()->classify(state, msgs, 1, &resp, &res);
        bad += row_differs(i, &fcm_rows[i], &res);
    }
    fcm_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}
