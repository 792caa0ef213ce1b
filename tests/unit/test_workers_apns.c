/* The APNs adapter: config checks, the exact HTTP/2 request, the ES256
 * provider token (verified with the public key, reused, refreshed on time and
 * when refused) and the classification table of Apple's answers. */
#include <jwt.h>
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"
#include "test_workers_keys.h"
#include "workers_fixture.h"

#define APNS_PATH "providers.apns"
#define NOW_MS INT64_C(1795338000000)
#define DEVICE "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

static const struct cr_provider_ops *apns_ops(void)
{
    return cr_provider_find("apns");
}

/* {"key_id":"ABC123DEFG","team_id":"DEF123GHIJ","topic":"uk.police.alerts",
 *  "private_key": pem} plus extra (a JSON object text merged in), minus drop. */
static cJSON *conf(const char *pem, const char *extra, const char *drop)
{
    cJSON *c = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "key_id", "ABC123DEFG");
    cJSON_AddStringToObject(c, "team_id", "DEF123GHIJ");
    cJSON_AddStringToObject(c, "topic", "uk.police.alerts");
    if (pem != NULL)
        cJSON_AddStringToObject(c, "private_key", pem);
    cr_test_json_patch(c, extra, drop);
    return c;
}

static int init_with(cJSON *cfg, void **state, char *err, size_t errlen)
{
    return cr_test_provider_init(apns_ops(), cfg, "https://api.push.apple.com/", APNS_PATH, state,
                                 err, errlen);
}

static struct cr_message sample(void)
{
    return cr_test_push("apns", DEVICE, "Missing person in LE1 \"Sam\"");
}

static int build_at(void *state, const struct cr_message *m, int64_t now_ms,
                    struct cr_request *req)
{
    return cr_test_build_one(apns_ops(), state, m, now_ms, req);
}

/* The provider token of a build at now_ms, copied into out. */
static int token_at(void *state, int64_t now_ms, char *out, size_t outlen)
{
    struct cr_message m = sample();
    struct cr_request req;
    const char *auth;
    int rc = build_at(state, &m, now_ms, &req);

    out[0] = '\0';
    auth = cr_test_header(&req, "authorization");
    if (rc == 0 && auth != NULL && strncmp(auth, "bearer ", 7) == 0)
        snprintf(out, outlen, "%s", auth + 7);
    cr_request_release(&req);
    return rc == 0 && out[0] != '\0' ? 0 : -1;
}

static void classify(void *state, long status, const char *body, const char *headers,
                     struct cr_result *res)
{
    struct cr_message m = sample();

    cr_test_classify(apns_ops(), state, &m, status, headers, NULL, body, res);
}

TEST(workers_apns_config_errors)
{
    char *ec = NULL, *ec_pub = NULL, *rsa = NULL, *rsa_pub = NULL;
    char err[256];
    void *state;

    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    {
        struct {
            cJSON *cfg;
            const char *err;
        } cases[] = {
            {conf(ec, NULL, "key_id"), APNS_PATH ".key_id: is required"},
            {conf(ec, NULL, "team_id"), APNS_PATH ".team_id: is required"},
            {conf(ec, NULL, "topic"), APNS_PATH ".topic: is required"},
            {conf(NULL, NULL, NULL), APNS_PATH ".private_key: is required"},
            {conf(ec, "{\"key_id\":\"AB-12\"}", NULL), APNS_PATH ".key_id: must be the 10"},
            {conf(ec, "{\"team_id\":\"T\\r\\n\"}", NULL), APNS_PATH ".team_id: must be the 10"},
            {conf(ec, "{\"topic\":\"uk.police/alerts\"}", NULL), APNS_PATH ".topic: must be"},
            {conf("not a key", NULL, NULL), APNS_PATH ".private_key: is not a PEM private key"},
            {conf("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", NULL, NULL),
             APNS_PATH ".private_key: is not a readable PEM private key"},
            {conf(rsa, NULL, NULL), APNS_PATH ".private_key: must be an EC P-256 private key"},
            {conf(ec, "{\"token_refresh_s\":600}", NULL),
             APNS_PATH ".token_refresh_s: must be a whole number of seconds from 1200 to 3600"},
            {conf(ec, "{\"token_refresh_s\":3601}", NULL), APNS_PATH ".token_refresh_s: must"},
            {conf(ec, "{\"token_refresh_s\":1500.5}", NULL), APNS_PATH ".token_refresh_s: must"},
            {conf(ec, "{\"token_refresh_s\":\"2400\"}", NULL), APNS_PATH ".token_refresh_s: must"},
            {cJSON_CreateArray(), APNS_PATH ": must be an object"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            ASSERT_CONFIG_REFUSED(apns_ops(), cases[i].cfg, "https://api.push.apple.com/",
                                  APNS_PATH, cases[i].err);
    }
    ASSERT_INT_EQ(init_with(conf(ec, "{\"token_refresh_s\":1200}", NULL), &state, err,
                            sizeof(err)),
                  0);
    apns_ops()->free_state(state);
    free(ec);
    free(ec_pub);
    free(rsa);
    free(rsa_pub);
}

TEST(workers_apns_table_entry)
{
    const struct cr_provider_ops *ops = apns_ops();

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "apns");
    ASSERT_INT_EQ(ops->channel, CR_CH_PUSH);
    ASSERT_STR_EQ(ops->platform, "apns");
    ASSERT_INT_EQ(ops->max_batch, 1);
    ASSERT_INT_EQ(ops->flags, CR_PROVIDER_HTTP2);
    ASSERT(ops->auth_request == NULL);
}

TEST(workers_apns_build_request)
{
    char *ec = NULL, *ec_pub = NULL;
    struct cr_message m = sample();
    struct cr_request req;
    const struct curl_slist *h;
    const char *auth;
    jwt_t *jwt = NULL;
    char err[256];
    char id1[64];
    void *state;
    int n = 0;

    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    ASSERT_INT_EQ(init_with(conf(ec, NULL, NULL), &state, err, sizeof(err)), 0);
    m.expires_at_ms = NOW_MS + 3600 * 1000 + 999;
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_INT_EQ(req.transport, CR_TRANSPORT_HTTP);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "https://api.push.apple.com/3/device/" DEVICE);
    ASSERT_STR_EQ(cr_buf_cstr(&req.body),
                  "{\"aps\":{\"alert\":{\"title\":\"Police appeal\",\"body\":\"Missing person in "
                  "LE1 \\\"Sam\\\"\"},\"sound\":\"default\"},\"crier_ref\":\"appeal-17/4/push\"}");
    for (h = req.headers; h != NULL; h = h->next)
        n++;
    ASSERT_INT_EQ(n, 8);
    ASSERT_STR_EQ(cr_test_header(&req, "apns-topic"), "uk.police.alerts");
    ASSERT_STR_EQ(cr_test_header(&req, "apns-push-type"), "alert");
    ASSERT_STR_EQ(cr_test_header(&req, "apns-priority"), "10");
    ASSERT_STR_EQ(cr_test_header(&req, "apns-expiration"), "1795341600");
    ASSERT_STR_EQ(cr_test_header(&req, "apns-collapse-id"), "appeal-17");
    ASSERT_STR_EQ(cr_test_header(&req, "content-type"), "application/json");
    snprintf(id1, sizeof(id1), "%s", cr_test_header(&req, "apns-id"));
    ASSERT_INT_EQ(strlen(id1), 36);
    ASSERT_INT_EQ(id1[14], '5'); /* a name-based (SHA-1) UUID */
    auth = cr_test_header(&req, "authorization");
    ASSERT(auth != NULL && strncmp(auth, "bearer ", 7) == 0);

    /* The provider token verifies with the public key and says who we are. */
    ASSERT_INT_EQ(jwt_decode(&jwt, auth + 7, (const unsigned char *)ec_pub, (int)strlen(ec_pub)),
                  0);
    ASSERT_INT_EQ(jwt_get_alg(jwt), JWT_ALG_ES256);
    ASSERT_STR_EQ(jwt_get_header(jwt, "kid"), "ABC123DEFG");
    ASSERT_STR_EQ(jwt_get_header(jwt, "alg"), "ES256");
    ASSERT_STR_EQ(jwt_get_grant(jwt, "iss"), "DEF123GHIJ");
    ASSERT_INT_EQ(jwt_get_grant_int(jwt, "iat"), NOW_MS / 1000);
    jwt_free(jwt);
    cr_request_release(&req);

    /* The same ref gives the same apns-id; another ref another. Bulk
     * priority is 5; no expiry is a day from now (default_ttl_s), never 0;
     * a job id over 64 bytes is no collapse id. */
    m.priority = CR_PRIO_BULK;
    m.expires_at_ms = 0;
    m.job_id = "j123456789012345678901234567890123456789012345678901234567890-065";
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), 0);
    ASSERT_STR_EQ(cr_test_header(&req, "apns-id"), id1);
    ASSERT_STR_EQ(cr_test_header(&req, "apns-priority"), "5");
    ASSERT_STR_EQ(cr_test_header(&req, "apns-expiration"), "1795424400");
    ASSERT(cr_test_header(&req, "apns-collapse-id") == NULL);
    cr_request_release(&req);
    m.ref = "appeal-17/5/push";
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), 0);
    ASSERT(strcmp(cr_test_header(&req, "apns-id"), id1) != 0);
    cr_request_release(&req);

    apns_ops()->free_state(state);
    free(ec);
    free(ec_pub);
}

TEST(workers_apns_expiry_and_priority)
{
    static const struct {
        const char *extra;     /* config merged in */
        enum cr_priority prio;
        int64_t expires_at_ms; /* 0 = the job has none */
        const char *priority;  /* apns-priority */
        const char *expiration; /* apns-expiration */
    } cases[] = {
        /* high must not wait for the device's power budget */
        {NULL, CR_PRIO_URGENT, 0, "10", "1795424400"},
        {NULL, CR_PRIO_HIGH, 0, "10", "1795424400"},
        {NULL, CR_PRIO_NORMAL, 0, "10", "1795424400"},
        {NULL, CR_PRIO_BULK, 0, "5", "1795424400"},
        /* the job's expiry, to its second */
        {NULL, CR_PRIO_HIGH, NOW_MS + 7200 * 1000 + 500, "10", "1795345200"},
        /* a configured default; 0 is allowed and means deliver now or never */
        {"{\"default_ttl_s\":3600}", CR_PRIO_NORMAL, 0, "10", "1795341600"},
        {"{\"default_ttl_s\":0}", CR_PRIO_NORMAL, 0, "10", "0"},
        /* an expiry already past: now or never */
        {NULL, CR_PRIO_URGENT, NOW_MS - 1000, "10", "0"},
        /* at most 28 days ahead */
        {NULL, CR_PRIO_BULK, NOW_MS + INT64_C(90) * 86400 * 1000, "5", "1797757200"},
    };
    char *ec = NULL, *ec_pub = NULL;
    char err[256];
    size_t i;

    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_message m = sample();
        struct cr_request req;
        void *state;
        const char *p;
        const char *e;
        int ok;

        ASSERT_INT_EQ(init_with(conf(ec, cases[i].extra, NULL), &state, err, sizeof(err)), 0);
        m.priority = cases[i].prio;
        m.expires_at_ms = cases[i].expires_at_ms;
        ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), 0);
        p = cr_test_header(&req, "apns-priority");
        e = cr_test_header(&req, "apns-expiration");
        ok = p != NULL && e != NULL && strcmp(p, cases[i].priority) == 0 &&
             strcmp(e, cases[i].expiration) == 0;
        if (!ok)
            fprintf(stderr, "  case %zu: apns-priority %s apns-expiration %s, want %s %s\n", i,
                    p ? p : "(none)", e ? e : "(none)", cases[i].priority, cases[i].expiration);
        cr_request_release(&req);
        apns_ops()->free_state(state);
        ASSERT(ok);
    }
    ASSERT_CONFIG_REFUSED(apns_ops(), conf(ec, "{\"default_ttl_s\":-1}", NULL),
                          "https://api.push.apple.com/", APNS_PATH,
                          APNS_PATH ".default_ttl_s: must be a whole number of seconds from 0 to "
                          "2419200 (28 days)");
    ASSERT_CONFIG_REFUSED(apns_ops(), conf(ec, "{\"default_ttl_s\":2419201}", NULL),
                          "https://api.push.apple.com/", APNS_PATH,
                          APNS_PATH ".default_ttl_s: must be");
    ASSERT_CONFIG_REFUSED(apns_ops(), conf(ec, "{\"default_ttl_s\":\"1d\"}", NULL),
                          "https://api.push.apple.com/", APNS_PATH,
                          APNS_PATH ".default_ttl_s: must be");
    free(ec);
    free(ec_pub);
}

TEST(workers_apns_build_refusals)
{
    char *ec = NULL, *ec_pub = NULL;
    struct cr_request req;
    char err[256];
    char big[5000];
    void *state;
    struct cr_message m;

    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    ASSERT_INT_EQ(init_with(conf(ec, NULL, NULL), &state, err, sizeof(err)), 0);
    m = sample();
    m.address = "not-hex/../../x";
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), CR_EINVAL);
    cr_request_release(&req);
    m.address = "";
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), CR_EINVAL);
    cr_request_release(&req);
    m = sample();
    m.platform = "fcm";
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), CR_EINVAL);
    cr_request_release(&req);
    m = sample();
    m.push_title = NULL;
    m.push_body = NULL;
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), CR_EINVAL);
    cr_request_release(&req);
    m = sample();
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    m.push_body = big;
    ASSERT_INT_EQ(build_at(state, &m, NOW_MS, &req), CR_ETOOBIG);
    cr_request_release(&req);
    apns_ops()->free_state(state);
    free(ec);
    free(ec_pub);
}

TEST(workers_apns_provider_token_reuse_and_refresh)
{
    char *ec = NULL, *ec_pub = NULL;
    char err[256];
    char first[1024], t[1024], second[1024];
    struct cr_result res;
    jwt_t *jwt = NULL;
    void *state;
    int i;

    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    ASSERT_INT_EQ(init_with(conf(ec, NULL, NULL), &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(token_at(state, NOW_MS, first, sizeof(first)), 0);
    /* ECDSA signatures are randomised: an equal token is the same token. */
    for (i = 1; i <= 1000; i++) {
        ASSERT_INT_EQ(token_at(state, NOW_MS + (int64_t)i * 2399, t, sizeof(t)), 0);
        ASSERT_STR_EQ(t, first);
    }
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2400 * 1000 - 1, t, sizeof(t)), 0);
    ASSERT_STR_EQ(t, first);
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2400 * 1000, second, sizeof(second)), 0);
    ASSERT(strcmp(second, first) != 0);
    ASSERT_INT_EQ(jwt_decode(&jwt, second, (const unsigned char *)ec_pub, (int)strlen(ec_pub)),
                  0);
    ASSERT_INT_EQ(jwt_get_grant_int(jwt, "iat"), NOW_MS / 1000 + 2400);
    jwt_free(jwt);
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2400 * 1000 + 5, t, sizeof(t)), 0);
    ASSERT_STR_EQ(t, second);

    /* Refused as expired: RETRY, and the next build makes a new token... */
    classify(state, 403, "{\"reason\":\"ExpiredProviderToken\"}", "", &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_RETRY);
    ASSERT_STR_EQ(res.code, "ExpiredProviderToken");
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2500 * 1000, first, sizeof(first)), 0);
    ASSERT(strcmp(first, second) != 0);
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2500 * 1000 + 10, t, sizeof(t)), 0);
    ASSERT_STR_EQ(t, first);
    /* ...but refusals of requests still in flight with the old token do not
     * churn the one just made. */
    classify(state, 403, "{\"reason\":\"InvalidProviderToken\"}", "", &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_RETRY);
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2500 * 1000 + 20, t, sizeof(t)), 0);
    ASSERT_STR_EQ(t, first);
    /* A refusal once the token is older than a minute makes another. */
    classify(state, 403, "{\"reason\":\"InvalidProviderToken\"}", "", &res);
    ASSERT_INT_EQ(token_at(state, NOW_MS + 2561 * 1000, t, sizeof(t)), 0);
    ASSERT(strcmp(t, first) != 0);

    apns_ops()->free_state(state);
    free(ec);
    free(ec_pub);
}

TEST(workers_apns_classify_table)
{
    static const struct {
        long status;
        const char *reason;
        enum cr_outcome outcome;
    } cases[] = {
        {400, "BadCollapseId", CR_OUT_FAILED},
        {400, "BadDeviceToken", CR_OUT_SUPPRESS},
        {400, "BadExpirationDate", CR_OUT_FAILED},
        {400, "BadMessageId", CR_OUT_FAILED},
        {400, "BadPriority", CR_OUT_FAILED},
        {400, "BadTopic", CR_OUT_FAILED},
        {400, "DeviceTokenNotForTopic", CR_OUT_FAILED},
        {400, "DuplicateHeaders", CR_OUT_FAILED},
        {400, "IdleTimeout", CR_OUT_RETRY},
        {400, "InvalidPushType", CR_OUT_FAILED},
        {400, "MissingDeviceToken", CR_OUT_FAILED},
        {400, "MissingTopic", CR_OUT_FAILED},
        {400, "PayloadEmpty", CR_OUT_FAILED},
        {400, "TopicDisallowed", CR_OUT_FAILED},
        {403, "BadCertificate", CR_OUT_RETRY},
        {403, "BadCertificateEnvironment", CR_OUT_RETRY},
        {403, "ExpiredProviderToken", CR_OUT_RETRY},
        {403, "Forbidden", CR_OUT_RETRY},
        {403, "InvalidProviderToken", CR_OUT_RETRY},
        {403, "MissingProviderToken", CR_OUT_RETRY},
        {404, "BadPath", CR_OUT_FAILED},
        {405, "MethodNotAllowed", CR_OUT_FAILED},
        {410, "ExpiredToken", CR_OUT_SUPPRESS},
        {410, "Unregistered", CR_OUT_SUPPRESS},
        {413, "PayloadTooLarge", CR_OUT_FAILED},
        {429, "TooManyProviderTokenUpdates", CR_OUT_RETRY},
        {429, "TooManyRequests", CR_OUT_RETRY},
        {500, "InternalServerError", CR_OUT_RETRY},
        {503, "ServiceUnavailable", CR_OUT_RETRY},
        {503, "Shutdown", CR_OUT_RETRY},
    };
    struct cr_message m = sample();
    struct cr_result res;
    size_t i, bad = 0;

    /* Apple's reason is the code, named in the detail; no id for a refusal. */
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[128];
        struct cr_test_row row = {cases[i].status, "", NULL, body, cases[i].outcome,
                                  cases[i].reason, -1, "", cases[i].reason};

        snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", cases[i].reason);
        bad += (size_t)cr_test_row_differs(apns_ops(), NULL, &m, &row, i);
    }
    ASSERT_INT_EQ(bad, 0);

    classify(NULL, 200, "", "apns-id: 8E1F4C2A-0000-4000-8000-0123456789AB\r\n", &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_SENT);
    ASSERT_STR_EQ(res.code, "200");
    ASSERT_STR_EQ(res.provider_id, "8E1F4C2A-0000-4000-8000-0123456789AB");
    classify(NULL, 200, "", "", &res); /* no header: the id we sent */
    ASSERT_INT_EQ(res.outcome, CR_OUT_SENT);
    ASSERT_INT_EQ(strlen(res.provider_id), 36);
    classify(NULL, 429, "{\"reason\":\"TooManyRequests\"}", "Retry-After: 30\r\n", &res);
    ASSERT_INT_EQ(res.retry_after_ms, 30000);
    classify(NULL, 400, "", "", &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_FAILED);
    ASSERT_STR_EQ(res.code, "400");
    classify(NULL, 502, "<html>", "", &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_RETRY);
    ASSERT_STR_EQ(res.code, "502");
}
