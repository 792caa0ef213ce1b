/* The generic JSON SMS gateway adapter: config checks, the exact request and
 * the classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"

#define GW_PATH "providers.gw"

static const char gw_conf[] = "{\"path\":\"/api/v2/sms\",\"auth_header\":\"X-Api-Key\","
                              "\"auth_value\":\"s3cret\",\"from\":\"POLICE\"}";

static const struct cr_provider_ops *gw_ops(void)
{
    return cr_provider_find("gateway");
}

static int gw_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    cJSON *cfg = cJSON_Parse(conf);
    int rc;

    err[0] = '\0';
    rc = gw_ops()->init(cfg, base, GW_PATH, state, err, errlen);
    cJSON_Delete(cfg);
    return rc;
}

static int nheaders(const struct cr_request *req)
{
    const struct curl_slist *h;
    int n = 0;

    for (h = req->headers; h != NULL; h = h->next)
        n++;
    return n;
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

static struct cr_message sample(void)
{
    struct cr_message m;

    memset(&m, 0, sizeof(m));
    m.job_id = "appeal-17";
    m.ref = "appeal-17/4/sms";
    m.channel = CR_CH_SMS;
    m.priority = CR_PRIO_URGENT;
    m.address = "+447700900123";
    m.sms = "Police appeal: \"Sam\" missing. Call 101.";
    return m;
}

static int build(void *state, const struct cr_message *m, struct cr_request *req)
{
    const struct cr_message *one = m;

    cr_request_init(req, 1 << 20);
    req->now_ms = INT64_C(1795338000000);
    return gw_ops()->build(state, &one, 1, req);
}

TEST(workers_gateway_config_errors)
{
    static const struct {
        const char *conf;
        const char *err;
    } cases[] = {
        {"{\"path\":\"send\"}", GW_PATH ".path: must start with '/'"},
        {"{\"path\":\"/send me\"}", GW_PATH ".path: must start with '/'"},
        {"{\"path\":7}", GW_PATH ".path: must be a string"},
        {"{\"auth_header\":\"X-Key\"}", GW_PATH ".auth_value: is required"},
        {"{\"auth_value\":\"k\"}", GW_PATH ".auth_header: is required when auth_value is set"},
        {"{\"auth_header\":\"X Key\",\"auth_value\":\"k\"}",
         GW_PATH ".auth_header: must be a header name"},
        {"{\"auth_header\":\"X-Key:\",\"auth_value\":\"k\"}",
         GW_PATH ".auth_header: must be a header name"},
        {"{\"auth_header\":\"X-Key\",\"auth_value\":\"k\\r\\nX: y\"}",
         GW_PATH ".auth_value: must not contain CR or LF"},
        {"{\"from\":\"\"}", GW_PATH ".from: must not be empty"},
        {"[]", GW_PATH ": must be an object"},
    };
    size_t i;
    char err[256];
    void *state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        state = (void *)1;
        ASSERT_INT_EQ(gw_init(cases[i].conf, "https://sms.example", &state, err, sizeof(err)),
                      CR_ECONFIG);
        ASSERT(state == NULL);
        ASSERT_STR_CONTAINS(err, cases[i].err);
    }
    ASSERT_INT_EQ(gw_init(gw_conf, NULL, &state, err, sizeof(err)), CR_ECONFIG);
    ASSERT_STR_EQ(err, GW_PATH ".url: is required");
    ASSERT_INT_EQ(gw_init("{}", "https://sms.example", &state, err, sizeof(err)), 0);
    gw_ops()->free_state(state);
}

TEST(workers_gateway_table_entry)
{
    const struct cr_provider_ops *ops = gw_ops();

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "gateway");
    ASSERT_INT_EQ(ops->channel, CR_CH_SMS);
    ASSERT_INT_EQ(ops->max_batch, 1);
    ASSERT(ops->auth_request == NULL);
}

TEST(workers_gateway_build_request)
{
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;

    ASSERT_INT_EQ(gw_init(gw_conf, "https://sms.example/", &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_INT_EQ(req.transport, CR_TRANSPORT_HTTP);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "https://sms.example/api/v2/sms");
    ASSERT_STR_EQ(cr_buf_cstr(&req.body),
                  "{\"to\":\"+447700900123\",\"from\":\"POLICE\",\"text\":\"Police appeal: "
                  "\\\"Sam\\\" missing. Call 101.\",\"reference\":\"appeal-17/4/sms\"}");
    ASSERT_INT_EQ(nheaders(&req), 3);
    ASSERT(has_header(&req, "Content-Type: application/json"));
    ASSERT(has_header(&req, "Accept: application/json"));
    ASSERT(has_header(&req, "X-Api-Key: s3cret"));
    ASSERT(req.userpwd == NULL);
    cr_request_release(&req);
    gw_ops()->free_state(state);

    /* Defaults: /send, no sender, no auth header. */
    ASSERT_INT_EQ(gw_init("{}", "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "http://127.0.0.1:9000/send");
    ASSERT_STR_EQ(cr_buf_cstr(&req.body),
                  "{\"to\":\"+447700900123\",\"text\":\"Police appeal: \\\"Sam\\\" missing. "
                  "Call 101.\",\"reference\":\"appeal-17/4/sms\"}");
    ASSERT_INT_EQ(nheaders(&req), 2);
    cr_request_release(&req);

    /* Refusals: not E.164, no text, a batch. */
    m.address = "07700900123";
    ASSERT_INT_EQ(build(state, &m, &req), CR_EINVAL);
    cr_request_release(&req);
    m.address = "+4477009001\r\n";
    ASSERT_INT_EQ(build(state, &m, &req), CR_EINVAL);
    cr_request_release(&req);
    m = sample();
    m.sms = "";
    ASSERT_INT_EQ(build(state, &m, &req), CR_EINVAL);
    cr_request_release(&req);
    {
        struct cr_message m2 = sample();
        const struct cr_message *two[2] = {&m2, &m2};

        cr_request_init(&req, 1 << 20);
        ASSERT_INT_EQ(gw_ops()->build(state, two, 2, &req), CR_EINVAL);
        cr_request_release(&req);
    }
    gw_ops()->free_state(state);
}

TEST(workers_gateway_classify_table)
{
    static const struct {
        long status;
        const char *body;
        const char *retry_after;
        enum cr_outcome outcome;
        const char *code;
        const char *id;
        int64_t retry_ms;
    } cases[] = {
        {200, "{\"id\":\"gw-1\"}", NULL, CR_OUT_SENT, "200", "gw-1", -1},
        {201, "{\"message_id\":\"m-77\"}", NULL, CR_OUT_SENT, "201", "m-77", -1},
        {202, "{\"message_id\":12345}", NULL, CR_OUT_SENT, "202", "12345", -1},
        {202, "", NULL, CR_OUT_SENT, "202", "", -1},
        {400, "{\"error\":\"invalid_number\",\"message\":\"bad to\"}", NULL, CR_OUT_FAILED,
         "invalid_number", "", -1},
        {422, "{\"error\":\"too_long\"}", NULL, CR_OUT_FAILED, "too_long", "", -1},
        {422, "not json", NULL, CR_OUT_FAILED, "422", "", -1},
        {410, "", NULL, CR_OUT_SUPPRESS, "410", "", -1},
        {400, "{\"error\":\"unsubscribed\"}", NULL, CR_OUT_SUPPRESS, "unsubscribed", "", -1},
        {200, "{\"error\":\"unsubscribed\"}", NULL, CR_OUT_SUPPRESS, "unsubscribed", "", -1},
        {429, "{\"error\":\"slow_down\"}", "12", CR_OUT_RETRY, "slow_down", "", 12000},
        {429, "", NULL, CR_OUT_RETRY, "429", "", -1},
        {500, "", NULL, CR_OUT_RETRY, "500", "", -1},
        {503, "{\"error\":\"maintenance\"}", "3", CR_OUT_RETRY, "maintenance", "", 3000},
        {401, "{\"error\":\"bad_key\"}", NULL, CR_OUT_RETRY, "bad_key", "", -1},
        {403, "", NULL, CR_OUT_RETRY, "403", "", -1},
        {404, "", NULL, CR_OUT_FAILED, "404", "", -1},
    };
    struct cr_message m = sample();
    const struct cr_message *one = &m;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_response resp;
        struct cr_result res;

        memset(&resp, 0, sizeof(resp));
        resp.status = cases[i].status;
        resp.body = cases[i].body;
        resp.body_len = strlen(cases[i].body);
        resp.retry_after = cases[i].retry_after;
        resp.headers = "";
        gw_ops()->classify(NULL, &one, 1, &resp, &res);
        if (res.outcome != cases[i].outcome)
            fprintf(stderr, "  case %zu: HTTP %ld %s\n", i, cases[i].status, cases[i].body);
        ASSERT_INT_EQ(res.outcome, cases[i].outcome);
        ASSERT_STR_EQ(res.code, cases[i].code);
        ASSERT_STR_EQ(res.provider_id, cases[i].id);
        ASSERT_INT_EQ(res.retry_after_ms, cases[i].retry_ms);
        ASSERT(res.detail[0] != '\0');
    }
}
