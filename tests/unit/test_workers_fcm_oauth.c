/* FCM with a service account: config checks, the exact token request and its
 * RS256 assertion (verified with the public key), one fetch reused across
 * builds and renewed five minutes before expiry on an injected clock, the
 * token endpoint's failures, and a 401 from the send API. */
#include <jwt.h>
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"
#include "test_workers_keys.h"
#include "workers_fixture.h"

#define FCM_PATH "providers.fcm"
#define T0 INT64_C(1795338000000)
#define TOKEN_URL "http://127.0.0.1:8089/token"

static const struct cr_provider_ops *fcm(void)
{
    return cr_provider_find("fcm");
}

/* The provider config: project_id, and a service account key whose fields can
 * be changed (extra merged into the key) or removed (drop); as_text puts the
 * key in as a JSON string the way "$file:" gives it. */
static cJSON *conf(const char *pem, const char *extra, const char *drop, int as_text,
                   const char *outer)
{
    cJSON *c = outer ? cJSON_Parse(outer) : cJSON_CreateObject();
    cJSON *sa = cJSON_CreateObject();

    cJSON_AddStringToObject(c, "project_id", "crier-demo-1");
    cJSON_AddStringToObject(sa, "type", "service_account");
    cJSON_AddStringToObject(sa, "client_email", "crier@crier-demo-1.iam.gserviceaccount.com");
    cJSON_AddStringToObject(sa, "private_key", pem);
    cJSON_AddStringToObject(sa, "token_uri", "https://oauth2.googleapis.com/token");
    cr_test_json_patch(sa, extra, drop);
    if (as_text) {
        char *text = cJSON_PrintUnformatted(sa);

        cJSON_AddStringToObject(c, "service_account", text);
        free(text);
        cJSON_Delete(sa);
    } else {
        cJSON_AddItemToObject(c, "service_account", sa);
    }
    return c;
}

static int init_with(cJSON *cfg, void **state, char *err, size_t errlen)
{
    return cr_test_provider_init(fcm(), cfg, "https://fcm.googleapis.com", FCM_PATH, state, err,
                                 errlen);
}

static int auth(void *state, int64_t now_ms)
{
    struct cr_request req;
    int rc;

    cr_request_init(&req, 1 << 20);
    req.now_ms = now_ms;
    rc = fcm()->auth_request(state, now_ms, &req);
    cr_request_release(&req);
    return rc;
}

static void answer(void *state, int64_t now_ms, long status, const char *body)
{
    struct cr_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.body = body;
    resp.body_len = strlen(body);
    resp.headers = "";
    fcm()->auth_done(state, now_ms, &resp);
}

static const char good_token[] =
    "{\"access_token\":\"ya29.fetched-1\",\"expires_in\":3600,\"token_type\":\"Bearer\"}";

static struct cr_message push(void)
{
    return cr_test_push("fcm", "fGx7:APA91bH-token", "Missing person");
}

/* Builds one push at now_ms; 1 when it carries "Authorization: Bearer <token>". */
static int builds_with(void *state, int64_t now_ms, const char *token)
{
    struct cr_message m = push();
    struct cr_request req;
    char line[256];
    int ok;

    snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
    ok = cr_test_build_one(fcm(), state, &m, now_ms, &req) == 0 &&
         cr_test_has_header(&req, line);
    cr_request_release(&req);
    return ok;
}

TEST(workers_fcm_oauth_config_errors)
{
    char *rsa = NULL, *rsa_pub = NULL, *ec = NULL, *ec_pub = NULL;
    char err[320];
    void *state;

    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    ASSERT_INT_EQ(cr_test_key_pair("EC", &ec, &ec_pub), 0);
    {
        struct {
            cJSON *cfg;
            const char *err;
        } cases[] = {
            {conf(rsa, NULL, NULL, 1, "{\"access_token\":\"t\"}"),
             FCM_PATH ".access_token: give either access_token or service_account, not both"},
            {cJSON_Parse("{\"project_id\":\"p\"}"),
             FCM_PATH ".access_token: is required (or service_account, the key file)"},
            {cJSON_Parse("{\"project_id\":\"p\",\"service_account\":\"{not json\"}"),
             FCM_PATH ".service_account: must be the service account key file (JSON)"},
            {cJSON_Parse("{\"project_id\":\"p\",\"service_account\":7}"),
             FCM_PATH ".service_account: must be the service account key file"},
            {conf(rsa, NULL, "client_email", 1, NULL),
             FCM_PATH ".service_account.client_email: is required"},
            {conf(rsa, "{\"client_email\":\"nobody\"}", NULL, 1, NULL),
             FCM_PATH ".service_account.client_email: must be an email address"},
            {conf(rsa, NULL, "private_key", 1, NULL),
             FCM_PATH ".service_account.private_key: is required"},
            {conf(ec, NULL, NULL, 1, NULL),
             FCM_PATH ".service_account.private_key: must be an RSA private key"},
            {conf("-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n", NULL, NULL, 0,
                  NULL),
             FCM_PATH ".service_account.private_key: is not a readable PEM private key"},
            {conf(rsa, NULL, "token_uri", 1, NULL),
             FCM_PATH ".service_account.token_uri: is required (or set " FCM_PATH ".token_url)"},
            {conf(rsa, "{\"token_uri\":\"ftp://x\"}", NULL, 1, NULL),
             FCM_PATH ".service_account.token_uri: must start with http:// or https://"},
            {conf(rsa, NULL, NULL, 1, "{\"token_url\":\"oauth2.example/token\"}"),
             FCM_PATH ".token_url: must start with http:// or https://"},
            {cJSON_Parse("{\"project_id\":\"p\",\"access_token\":\"t\",\"token_url\":\"http://x\"}"),
             FCM_PATH ".token_url: needs service_account"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            ASSERT_CONFIG_REFUSED(fcm(), cases[i].cfg, "https://fcm.googleapis.com", FCM_PATH,
                                  cases[i].err);
    }
    /* The key as an object works as well as the key file's text. */
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 0, NULL), &state, err, sizeof(err)), 0);
    fcm()->free_state(state);
    free(rsa);
    free(rsa_pub);
    free(ec);
    free(ec_pub);
}

TEST(workers_fcm_oauth_token_request)
{
    char *rsa = NULL, *rsa_pub = NULL;
    static const char prefix[] =
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    struct cr_request req;
    const char *body;
    jwt_t *jwt = NULL;
    char err[256];
    void *state;

    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, "{\"token_url\":\"" TOKEN_URL "\"}"), &state,
                            err, sizeof(err)),
                  0);
    cr_request_init(&req, 1 << 20);
    req.now_ms = T0;
    ASSERT_INT_EQ(fcm()->auth_request(state, T0, &req), CR_EAGAIN);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_INT_EQ(req.transport, CR_TRANSPORT_HTTP);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), TOKEN_URL);
    ASSERT(cr_test_has_header(&req, "Content-Type: application/x-www-form-urlencoded"));
    ASSERT(cr_test_has_header(&req, "Accept: application/json"));
    body = cr_buf_cstr(&req.body);
    ASSERT(strncmp(body, prefix, sizeof(prefix) - 1) == 0);
    ASSERT(strchr(body + sizeof(prefix) - 1, '&') == NULL);

    ASSERT_INT_EQ(jwt_decode(&jwt, body + sizeof(prefix) - 1, (const unsigned char *)rsa_pub,
                             (int)strlen(rsa_pub)),
                  0);
    ASSERT_INT_EQ(jwt_get_alg(jwt), JWT_ALG_RS256);
    ASSERT_STR_EQ(jwt_get_header(jwt, "typ"), "JWT");
    ASSERT_STR_EQ(jwt_get_grant(jwt, "iss"), "crier@crier-demo-1.iam.gserviceaccount.com");
    ASSERT_STR_EQ(jwt_get_grant(jwt, "scope"), "https://www.googleapis.com/auth/firebase.messaging");
    ASSERT_STR_EQ(jwt_get_grant(jwt, "aud"), TOKEN_URL);
    ASSERT_INT_EQ(jwt_get_grant_int(jwt, "iat"), T0 / 1000);
    ASSERT_INT_EQ(jwt_get_grant_int(jwt, "exp"), T0 / 1000 + 3600);
    jwt_free(jwt);
    cr_request_release(&req);

    /* Signed with another key it does not verify. */
    {
        char *other = NULL, *other_pub = NULL;

        cr_request_init(&req, 1 << 20);
        fcm()->auth_done(state, T0, NULL);
        ASSERT_INT_EQ(fcm()->auth_request(state, T0 + 2000, &req), CR_EAGAIN);
        ASSERT_INT_EQ(cr_test_key_pair("RSA", &other, &other_pub), 0);
        ASSERT(jwt_decode(&jwt, cr_buf_cstr(&req.body) + sizeof(prefix) - 1,
                          (const unsigned char *)other_pub, (int)strlen(other_pub)) != 0);
        cr_request_release(&req);
        free(other);
        free(other_pub);
    }
    fcm()->free_state(state);

    /* Without token_url the key's token_uri is the audience and the URL. */
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, NULL), &state, err, sizeof(err)), 0);
    cr_request_init(&req, 1 << 20);
    ASSERT_INT_EQ(fcm()->auth_request(state, T0, &req), CR_EAGAIN);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "https://oauth2.googleapis.com/token");
    cr_request_release(&req);
    fcm()->free_state(state);
    free(rsa);
    free(rsa_pub);
}

TEST(workers_fcm_oauth_token_reused_then_renewed)
{
    char *rsa = NULL, *rsa_pub = NULL;
    char err[256];
    void *state;
    int i;
    int fetches = 0;
    int64_t now = T0;

    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, NULL), &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(auth(state, now), CR_EAGAIN);
    fetches++;
    ASSERT_INT_EQ(auth(state, now), CR_EBUSY); /* one fetch at a time */
    answer(state, now + 150, 200, good_token);
    /* 1,000 messages over the next 54 minutes: no other fetch. */
    for (i = 0; i < 1000; i++) {
        now = T0 + 150 + (int64_t)i * 3240;
        if (auth(state, now) != 0)
            fetches++;
        ASSERT(builds_with(state, now, "ya29.fetched-1"));
    }
    ASSERT_INT_EQ(fetches, 1);
    /* Expiry is T0 + 150 + 3600 s; five minutes before it a new one is asked. */
    ASSERT_INT_EQ(auth(state, T0 + 150 + 3300 * 1000 - 1), 0);
    ASSERT_INT_EQ(auth(state, T0 + 150 + 3300 * 1000), CR_EAGAIN);
    answer(state, T0 + 150 + 3300 * 1000 + 80, 200,
           "{\"access_token\":\"ya29.fetched-2\",\"expires_in\":3599,\"token_type\":\"Bearer\"}");
    ASSERT_INT_EQ(auth(state, T0 + 150 + 3301 * 1000), 0);
    ASSERT(builds_with(state, T0 + 150 + 3301 * 1000, "ya29.fetched-2"));
    fcm()->free_state(state);
    free(rsa);
    free(rsa_pub);
}

TEST(workers_fcm_oauth_token_endpoint_errors)
{
    static const struct {
        long status;
        const char *body;
    } cases[] = {
        {400, "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}"},
        {400, "{\"error\":\"invalid_scope\"}"},
        {401, "{\"error\":\"invalid_client\",\"error_description\":\"The OAuth client was not "
              "found.\"}"},
        {403, "{\"error\":\"access_denied\"}"},
        {429, "{\"error\":\"rate_limit_exceeded\"}"},
        {500, "{\"error\":\"internal_failure\"}"},
        {503, ""},
        {200, "not json"},
        {200, "{\"expires_in\":3600,\"token_type\":\"Bearer\"}"},
        {200, "{\"access_token\":\"\",\"expires_in\":3600}"},
        {200, "{\"access_token\":\"ya29.x\",\"token_type\":\"Bearer\"}"},
        {200, "{\"access_token\":\"ya29.x\",\"expires_in\":0}"},
        {200, "{\"access_token\":\"ya29.x\",\"expires_in\":\"3600\"}"},
        {200, "{\"access_token\":\"ya29.x\",\"expires_in\":3600,\"token_type\":\"mac\"}"},
        {200, "{\"access_token\":\"ya29.x\\r\\nX-Evil: 1\",\"expires_in\":3600}"},
    };
    char *rsa = NULL, *rsa_pub = NULL;
    char err[256];
    void *state;
    size_t i;

    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, NULL), &state, err, sizeof(err)), 0);
        ASSERT_INT_EQ(auth(state, T0), CR_EAGAIN);
        answer(state, T0 + 100, cases[i].status, cases[i].body);
        /* No token kept; no new fetch within 2 s; then another try. */
        if (auth(state, T0 + 200) != CR_EHTTP)
            fprintf(stderr, "  case %zu: %ld %s\n", i, cases[i].status, cases[i].body);
        ASSERT_INT_EQ(auth(state, T0 + 200), CR_EHTTP);
        ASSERT_INT_EQ(auth(state, T0 + 2099), CR_EHTTP);
        ASSERT_INT_EQ(auth(state, T0 + 2100), CR_EAGAIN);
        fcm()->free_state(state);
    }

    /* A transport failure is the same; a token still valid stays in use. */
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, NULL), &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(auth(state, T0), CR_EAGAIN);
    fcm()->auth_done(state, T0 + 10, NULL);
    ASSERT_INT_EQ(auth(state, T0 + 20), CR_EHTTP);
    ASSERT_INT_EQ(auth(state, T0 + 2010), CR_EAGAIN);
    answer(state, T0 + 2020, 200, good_token);
    ASSERT_INT_EQ(auth(state, T0 + 3400 * 1000), CR_EAGAIN); /* renewal due */
    answer(state, T0 + 3400 * 1000, 500, "");
    ASSERT_INT_EQ(auth(state, T0 + 3400 * 1000 + 5), 0);
    ASSERT(builds_with(state, T0 + 3400 * 1000 + 5, "ya29.fetched-1"));
    ASSERT_INT_EQ(auth(state, T0 + 3402 * 1000), CR_EAGAIN);
    fcm()->free_state(state);
    free(rsa);
    free(rsa_pub);
}

TEST(workers_fcm_oauth_401_drops_the_token)
{
    char *rsa = NULL, *rsa_pub = NULL;
    struct cr_message m = push();
    struct cr_result res;
    static const char unauth[] =
        "{\"error\":{\"code\":401,\"message\":\"Request had invalid authentication "
        "credentials.\",\"status\":\"UNAUTHENTICATED\"}}";
    char err[256];
    void *state;

    ASSERT_INT_EQ(cr_test_key_pair("RSA", &rsa, &rsa_pub), 0);
    ASSERT_INT_EQ(init_with(conf(rsa, NULL, NULL, 1, NULL), &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(auth(state, T0), CR_EAGAIN);
    answer(state, T0, 200, good_token);
    ASSERT_INT_EQ(auth(state, T0 + 1000), 0);

    cr_test_classify(fcm(), state, &m, 401, "", NULL, unauth, &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_RETRY);
    ASSERT_STR_EQ(res.code, "UNAUTHENTICATED");
    ASSERT_INT_EQ(auth(state, T0 + 1001), CR_EAGAIN);
    fcm()->free_state(state);

    /* A configured token cannot be fetched again: it stays, auth says yes. */
    ASSERT_INT_EQ(init_with(cJSON_Parse("{\"project_id\":\"p\",\"access_token\":\"ya29.static\"}"),
                            &state, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(auth(state, T0), 0);
    cr_test_classify(fcm(), state, &m, 401, "", NULL, unauth, &res);
    ASSERT_INT_EQ(res.outcome, CR_OUT_RETRY);
    ASSERT_INT_EQ(auth(state, T0 + 1), 0);
    ASSERT(builds_with(state, T0 + 1, "ya29.static"));
    fcm()->free_state(state);
    free(rsa);
    free(rsa_pub);
}
