/* The dashboard's pure parts: token parsing and the constant-time check with
 * roles, the 10 s provider windows the fleet heartbeat publishes (rate,
 * percentiles, errors by class, ageing out), and the limiter's refill time. */
#include <cjson/cJSON.h>

#include "cr_error.h"
#include "limiter.h"
#include "metrics.h"
#include "test.h"
#include "tokens.h"

static int parse(const char *json, struct cr_dashboard_conf **dc, char *err, size_t errlen)
{
    cJSON *o = cJSON_Parse(json);
    int rc = cr_dashboard_conf_parse(o, dc, err, errlen);

    cJSON_Delete(o);
    return rc;
}

TEST(dashboard_tokens_roles)
{
    struct cr_dashboard_conf *dc = NULL;
    const char *name;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{\"tokens\": {\"alice\": {\"token\": \"aaaaaaaaaaaaaaaa1\", \"role\": "
                        "\"viewer\"}, \"olly\": {\"token\": \"bbbbbbbbbbbbbbbb2\", \"role\": "
                        "\"operator\"}}, \"max_streams\": 3}",
                        &dc, err, sizeof err),
                  0);
    ASSERT(dc != NULL);
    ASSERT_INT_EQ(dc->ntokens, 2);
    ASSERT_INT_EQ(dc->max_streams, 3);
    ASSERT_INT_EQ(dc->recent_jobs, 50);
    ASSERT_INT_EQ(cr_tokens_check(dc, "Bearer aaaaaaaaaaaaaaaa1", &name), CR_ROLE_VIEWER);
    ASSERT_STR_EQ(name, "alice");
    ASSERT_INT_EQ(cr_tokens_check(dc, "bearer  bbbbbbbbbbbbbbbb2 ", &name), CR_ROLE_OPERATOR);
    ASSERT_STR_EQ(name, "olly");
    /* a prefix, a longer value, another scheme, nothing: no role */
    ASSERT_INT_EQ(cr_tokens_check(dc, "Bearer aaaaaaaaaaaaaaaa", &name), CR_ROLE_NONE);
    ASSERT(name == NULL);
    ASSERT_INT_EQ(cr_tokens_check(dc, "Bearer aaaaaaaaaaaaaaaa12", NULL), CR_ROLE_NONE);
    ASSERT_INT_EQ(cr_tokens_check(dc, "Basic aaaaaaaaaaaaaaaa1", NULL), CR_ROLE_NONE);
    ASSERT_INT_EQ(cr_tokens_check(dc, "Bearer ", NULL), CR_ROLE_NONE);
    ASSERT_INT_EQ(cr_tokens_check(dc, NULL, NULL), CR_ROLE_NONE);
    ASSERT_INT_EQ(cr_tokens_check(NULL, "Bearer aaaaaaaaaaaaaaaa1", NULL), CR_ROLE_NONE);
    cr_dashboard_conf_free(dc);

    ASSERT_INT_EQ(parse("null", &dc, err, sizeof err), 0);
    ASSERT(dc == NULL);
}

TEST(dashboard_tokens_bad_config)
{
    static const struct {
        const char *json;
        const char *says;
    } bad[] = {
        {"{\"tokens\": {\"a\": {\"token\": \"short\", \"role\": \"viewer\"}}}",
         "dashboard.tokens.a.token: want 16 to 256 bytes"},
        {"{\"tokens\": {\"a\": {\"token\": \"aaaaaaaaaaaaaaaa1\", \"role\": \"root\"}}}",
         "dashboard.tokens.a.role: 'root' is not"},
        {"{\"tokens\": {\"a\": {\"token\": \"aaaaaaaa aaaaaaaa1\", \"role\": \"viewer\"}}}",
         "printable ASCII without spaces"},
        {"{\"tokens\": {\"a b\": {\"token\": \"aaaaaaaaaaaaaaaa1\", \"role\": \"viewer\"}}}",
         "the name may hold"},
        {"{\"tokens\": {\"a\": {\"token\": \"aaaaaaaaaaaaaaaa1\", \"role\": \"viewer\", "
         "\"x\": 1}}}",
         "dashboard.tokens.a.x: unknown key"},
        {"{\"tokens\": []}", "dashboard.tokens: want an object"},
        {"{\"max_streams\": -1}", "dashboard.max_streams: want a whole number from 0 to 4096"},
        {"{\"crierctl\": \"relative/crierctl\"}", "dashboard.crierctl: want an absolute path"},
        {"{\"colour\": \"red\"}", "dashboard.colour: unknown key"},
        {"[]", "dashboard: want an object"},
    };
    struct cr_dashboard_conf *dc;
    char err[256];
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dc = NULL;
        err[0] = '\0';
        ASSERT_INT_EQ(parse(bad[i].json, &dc, err, sizeof err), CR_ECONFIG);
        ASSERT(dc == NULL);
        ASSERT_STR_CONTAINS(err, bad[i].says);
    }
}

TEST(dashboard_provider_window)
{
    struct cr_metrics *m = NULL;
    struct cr_metrics_win w;
    int64_t t0 = 1700000000000;
    int i;

    ASSERT_INT_EQ(cr_metrics_init(2, &m), 0);
    cr_metrics_tick(m, t0);
    for (i = 1; i <= 100; i++) {
        cr_metrics_latency(m, 0, i * 1000L); /* 1 .. 100 ms */
        cr_metrics_message(m, CR_CH_SMS, 0, CR_ST_SENT);
    }
    cr_metrics_answer(m, 0, CR_ETIMEOUT, 0);
    cr_metrics_answer(m, 0, 0, 429);
    cr_metrics_answer(m, 0, 0, 503);
    cr_metrics_answer(m, 0, 0, 400);
    cr_metrics_answer(m, 0, 0, 200);
    cr_metrics_failover(m, 0);
    cr_metrics_window(m, 0, &w);
    ASSERT(w.rate > 9.99 && w.rate < 10.01); /* 100 messages over 10 s */
    ASSERT_INT_EQ(w.samples, 100);
    ASSERT(w.p50_ms > 49.9 && w.p50_ms < 50.1);
    ASSERT(w.p99_ms > 98.9 && w.p99_ms < 99.1);
    ASSERT_INT_EQ(w.err[CR_ERRCLASS_TRANSPORT], 1);
    ASSERT_INT_EQ(w.err[CR_ERRCLASS_THROTTLED], 1);
    ASSERT_INT_EQ(w.err[CR_ERRCLASS_SERVER], 1);
    ASSERT_INT_EQ(w.err[CR_ERRCLASS_CLIENT], 1);
    ASSERT_INT_EQ(w.recent_failovers, 1);
    cr_metrics_window(m, 1, &w); /* the other provider saw nothing */
    ASSERT_INT_EQ(w.samples, 0);
    ASSERT(w.rate == 0 && w.p99_ms == 0);

    cr_metrics_tick(m, t0 + 3000); /* 3 s later: still in the window, no longer recent */
    cr_metrics_window(m, 0, &w);
    ASSERT_INT_EQ(w.samples, 100);
    ASSERT_INT_EQ(w.failovers, 1);
    ASSERT_INT_EQ(w.recent_failovers, 0);
    cr_metrics_tick(m, t0 + 10000); /* 10 s later: aged out */
    cr_metrics_window(m, 0, &w);
    ASSERT_INT_EQ(w.samples, 0);
    ASSERT(w.rate == 0);
    ASSERT_INT_EQ(w.err[CR_ERRCLASS_SERVER], 0);
    cr_metrics_tick(m, t0); /* time going backwards changes nothing */
    cr_metrics_window(m, 0, &w);
    ASSERT_INT_EQ(w.samples, 0);
    cr_metrics_free(m);
}

TEST(dashboard_bucket_wait)
{
    struct cr_bucket b;
    int64_t wait = 0;
    int i;

    cr_bucket_init(&b, 10, 2, 1000);
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 1000), 0);
    for (i = 0; i < 2; i++)
        ASSERT(cr_bucket_take(&b, 1000, &wait));
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 1000), 100); /* 10/s: a token every 100 ms */
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 1040), 60);
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 1100), 0);
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 900), 100); /* time going backwards adds nothing */
    cr_bucket_init(&b, 0, 0, 0);
    ASSERT_INT_EQ(cr_bucket_wait_ms(&b, 5), 0);
}
