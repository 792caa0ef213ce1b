/* Integrator keys, signatures and scopes (daemon/auth.c). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "auth.h"
#include "cr_error.h"
#include "test.h"

static const char keys_json[] =
    "{\"web\": {\"secret\": \"web-secret-0123456789\", \"segments\": [\"area:LE1*\"],"
    "  \"channels\": [\"email\", \"sms\"], \"max_audience\": 500},"
    " \"cc\": {\"secret\": \"cc-secret-0123456789ab\", \"segments\": [\"*\"],"
    "  \"subscribers\": true, \"max_priority\": \"urgent\", \"may_schedule\": true}}";

static struct cr_integrators *load(const char *text, char *err, size_t errlen, int *rc)
{
    cJSON *o = cJSON_Parse(text);
    struct cr_integrators *k = NULL;

    *rc = cr_integrators_parse(o, &k, err, errlen);
    cJSON_Delete(o);
    return k;
}

TEST(auth_keys_parse_with_safe_defaults)
{
    char err[256] = "";
    int rc;
    struct cr_integrators *k = load(keys_json, err, sizeof(err), &rc);
    const struct cr_integrator *web;
    const struct cr_integrator *cc;

    ASSERT_INT_EQ(rc, 0);
    web = cr_integrator_find(k, "web");
    cc = cr_integrator_find(k, "cc");
    ASSERT(web != NULL && cc != NULL);
    ASSERT(cr_integrator_find(k, "nobody") == NULL);
    ASSERT_INT_EQ(web->max_priority, CR_PRIO_HIGH); /* urgent must be granted */
    ASSERT_INT_EQ(web->may_schedule, 0);
    ASSERT_INT_EQ(web->subscribers, 0);
    ASSERT_INT_EQ(web->max_audience, 500);
    ASSERT_INT_EQ(cc->max_audience, 10000);
    ASSERT_INT_EQ(web->channels, CR_CH_BIT(CR_CH_EMAIL) | CR_CH_BIT(CR_CH_SMS));
    cr_integrators_free(k);
}

TEST(auth_keys_errors_name_the_key)
{
    char err[256] = "";
    int rc;

    ASSERT(load("{\"a\": {\"secret\": \"short\"}}", err, sizeof(err), &rc) == NULL);
    ASSERT_INT_EQ(rc, CR_ECONFIG);
    ASSERT_STR_CONTAINS(err, "integrators.a.secret: must be 16");
    ASSERT(load("{\"a.b\": {\"secret\": \"0123456789abcdefgh\"}}", err, sizeof(err), &rc) ==
           NULL);
    ASSERT_STR_CONTAINS(err, "key id 'a.b'");
    ASSERT(load("{\"a\": {\"secret\": \"0123456789abcdefgh\", \"max_priority\": \"loud\"}}",
                err, sizeof(err), &rc) == NULL);
    ASSERT_STR_CONTAINS(err, "integrators.a.max_priority");
    ASSERT(load("{\"a\": {\"secret\": \"0123456789abcdefgh\", \"segmnets\": []}}", err,
                sizeof(err), &rc) == NULL);
    ASSERT_STR_CONTAINS(err, "integrators.a.segmnets: unknown key");
}

TEST(auth_glob)
{
    ASSERT(cr_glob_match("area:LE1*", "area:LE1"));
    ASSERT(cr_glob_match("area:LE1*", "area:LE12"));
    ASSERT(!cr_glob_match("area:LE1*", "area:LE2"));
    ASSERT(cr_glob_match("*", "anything"));
    ASSERT(cr_glob_match("a*b*c", "aXXbYYc"));
    ASSERT(!cr_glob_match("a*b*c", "aXXbYY"));
    ASSERT(cr_glob_match("beat:NW?2", "beat:NW12"));
    ASSERT(!cr_glob_match("beat:NW?2", "beat:NW2"));
    ASSERT(!cr_glob_match("", "x"));
}

TEST(auth_sig_parse)
{
    struct cr_sig s;
    char two[200];
    const char *v1 = "v1=00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    ASSERT_INT_EQ(cr_sig_parse(v1, strlen(v1), &s), 0);
    ASSERT_INT_EQ(s.n, 1);
    ASSERT_INT_EQ(s.mac[0][31], 0xff);
    snprintf(two, sizeof(two), "v2=whatever, %s ,%s", v1, v1);
    ASSERT_INT_EQ(cr_sig_parse(two, strlen(two), &s), 0);
    ASSERT_INT_EQ(s.n, 2);
    ASSERT_INT_EQ(cr_sig_parse("v2=abc", 6, &s), CR_EPARSE);
    ASSERT_INT_EQ(cr_sig_parse("v1=abc", 6, &s), CR_EPARSE);
    ASSERT_INT_EQ(cr_sig_parse("", 0, &s), CR_EPARSE);
    ASSERT_INT_EQ(cr_sig_parse(v1, strlen(v1) - 1, &s), CR_EPARSE);
    snprintf(two, sizeof(two), "%s,", v1);
    ASSERT_INT_EQ(cr_sig_parse(two, strlen(two), &s), CR_EPARSE);
}

TEST(auth_verify_and_scopes)
{
    char err_cfg[256];
    int rc;
    struct cr_integrators *k = load(keys_json, err_cfg, sizeof(err_cfg), &rc);
    const char *doc = "{\"audience\":{\"segments\":[\"area:LE2\"]},\"channels\":[\"push\"],"
                      "\"priority\":\"urgent\",\"message\":{\"push\":{\"title\":\"t\"}}}";
    const struct cr_integrator *who = NULL;
    struct cr_job_error err;
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_signed s;
    char sig[CR_SIG_TEXT_LEN];
    int64_t now = 1700000000000LL;

    ASSERT_INT_EQ(rc, 0);
    ASSERT_INT_EQ(cr_sig_make("web-secret-0123456789", 21, "1700000000", doc, strlen(doc), sig),
                  0);
    s.key = "web";
    s.sig = sig;
    s.ts = "1700000000";
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now, 300, &who, NULL, &err), 0);
    ASSERT(who == cr_integrator_find(k, "web"));
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc) - 1, now, 300, &who, NULL, &err),
                  CR_EINVAL);
    ASSERT_STR_EQ(err.code, "unauthorized");
    ASSERT_STR_CONTAINS(err.message, "bad signature");
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now + 301000, 300, &who, NULL, &err),
                  CR_EINVAL);
    ASSERT_STR_CONTAINS(err.message, "stale timestamp, 301 s old");
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now - 301000, 300, &who, NULL, &err),
                  CR_EINVAL);
    ASSERT_STR_CONTAINS(err.message, "future timestamp");
    s.key = "cc";
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now, 300, &who, NULL, &err), CR_EINVAL);
    ASSERT_STR_CONTAINS(err.message, "bad signature for key 'cc'");
    s.key = "nobody\x01";
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now, 300, &who, NULL, &err), CR_EINVAL);
    ASSERT_STR_CONTAINS(err.message, "unknown key 'nobody?'");
    s.key = "web";
    s.ts = "17e8";
    ASSERT_INT_EQ(cr_auth_verify(k, &s, doc, strlen(doc), now, 300, &who, NULL, &err), CR_EINVAL);
    ASSERT_STR_CONTAINS(err.message, "not unix seconds");

    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    ASSERT_INT_EQ(cr_auth_scopes(cr_integrator_find(k, "web"), &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.code, "forbidden");
    ASSERT_STR_CONTAINS(err.message, "audience.segments[0]: 'area:LE2'");
    ASSERT_INT_EQ(cr_auth_scopes(cr_integrator_find(k, "cc"), &job, &err), 0);
    cr_job_release(&job);
    cr_integrators_free(k);
}

TEST(auth_bearer)
{
    char err_cfg[256];
    char why[128];
    int rc;
    struct cr_integrators *k = load(keys_json, err_cfg, sizeof(err_cfg), &rc);
    const struct cr_integrator *who = NULL;

    ASSERT_INT_EQ(cr_auth_bearer(k, "Bearer web.web-secret-0123456789", &who, why, sizeof(why)),
                  0);
    ASSERT_STR_EQ(who->id, "web");
    ASSERT_INT_EQ(cr_auth_bearer(k, NULL, &who, why, sizeof(why)), CR_ENOTFOUND);
    ASSERT_INT_EQ(cr_auth_bearer(k, "Basic abc", &who, why, sizeof(why)), CR_ENOTFOUND);
    ASSERT_INT_EQ(cr_auth_bearer(k, "Bearer web.web-secret-012345678", &who, why, sizeof(why)),
                  CR_EINVAL);
    ASSERT_STR_CONTAINS(why, "wrong secret for key 'web'");
    ASSERT(who == NULL);
    ASSERT_INT_EQ(cr_auth_bearer(k, "Bearer nokey", &who, why, sizeof(why)), CR_EINVAL);
    ASSERT_INT_EQ(cr_auth_bearer(k, "Bearer x.y", &who, why, sizeof(why)), CR_EINVAL);
    ASSERT_STR_CONTAINS(why, "unknown key 'x'");
    cr_integrators_free(k);
}
