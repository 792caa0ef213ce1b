/* The generic JSON SMS gateway adapter: config checks, the exact request and
 * the classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"
#include "workers_fixture.h"

#define GW_PATH "providers.gw"

static const char gw_conf[] = "{\"path\":\"/api/v2/sms\",\"auth_header\":\"X-Api-Key\","
                              "\"auth_value\":\"s3cret\",\"from\":\"POLICE\"}";

static const struct cr_provider_ops *gw_ops(void)
{
    return cr_provider_find("gateway");
}

static int gw_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    return cr_test_provider_init(gw_ops(), cJSON_Parse(conf), base, GW_PATH, state, err, errlen);
}

static struct cr_message sample(void)
{
    struct cr_message m = cr_test_message(CR_CH_SMS, "+447700900123");

    m.sms = "Police appeal: \"Sam\" missing. Call 101.";
    return m;
}

static int build(void *state, const struct cr_message *m, struct cr_request *req)
{
    return cr_test_build_one(gw_ops(), state, m, INT64_C(1795338000000), req);
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

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ASSERT_CONFIG_REFUSED(gw_ops(), cJSON_Parse(cases[i].conf), "https://sms.example", GW_PATH,
                              cases[i].err);
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
    ASSERT_INT_EQ(cr_test_nheaders(&req), 3);
    ASSERT(cr_test_has_header(&req, "Content-Type: application/json"));
    ASSERT(cr_test_has_header(&req, "Accept: application/json"));
    ASSERT(cr_test_has_header(&req, "X-Api-Key: s3cret"));
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
    ASSERT_INT_EQ(cr_test_nheaders(&req), 2);
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
    static const struct cr_test_row rows[] = {
        {200, "", NULL, "{\"id\":\"gw-1\"}", CR_OUT_SENT, "200", -1, "gw-1", NULL},
        {201, "", NULL, "{\"message_id\":\"m-77\"}", CR_OUT_SENT, "201", -1, "m-77", NULL},
        {202, "", NULL, "{\"message_id\":12345}", CR_OUT_SENT, "202", -1, "12345", NULL},
        {202, "", NULL, "", CR_OUT_SENT, "202", -1, "", NULL},
        {400, "", NULL, "{\"error\":\"invalid_number\",\"message\":\"bad to\"}", CR_OUT_FAILED,
         "invalid_number", -1, "", NULL},
        {422, "", NULL, "{\"error\":\"too_long\"}", CR_OUT_FAILED, "too_long", -1, "", NULL},
        {422, "", NULL, "not json", CR_OUT_FAILED, "422", -1, "", NULL},
        {410, "", NULL, "", CR_OUT_SUPPRESS, "410", -1, "", NULL},
        {400, "", NULL, "{\"error\":\"unsubscribed\"}", CR_OUT_SUPPRESS, "unsubscribed", -1, "",
         NULL},
        {200, "", NULL, "{\"error\":\"unsubscribed\"}", CR_OUT_SUPPRESS, "unsubscribed", -1, "",
         NULL},
        {429, "", "12", "{\"error\":\"slow_down\"}", CR_OUT_RETRY, "slow_down", 12000, "", NULL},
        {429, "", NULL, "", CR_OUT_RETRY, "429", -1, "", NULL},
        {500, "", NULL, "", CR_OUT_RETRY, "500", -1, "", NULL},
        {503, "", "3", "{\"error\":\"maintenance\"}", CR_OUT_RETRY, "maintenance", 3000, "", NULL},
        {401, "", NULL, "{\"error\":\"bad_key\"}", CR_OUT_RETRY, "bad_key", -1, "", NULL},
        {403, "", NULL, "", CR_OUT_RETRY, "403", -1, "", NULL},
        {404, "", NULL, "", CR_OUT_FAILED, "404", -1, "", NULL},
    };
    struct cr_message m = sample();

    ASSERT_INT_EQ(cr_test_rows_differing(gw_ops(), NULL, &m, rows, sizeof(rows) / sizeof(rows[0])),
                  0);
}
