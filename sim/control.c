/* The /_sim/ control API of crier-sim, for tests and the benchmark: health,
 * counters, the recipient tables and request log (streamed), reset, and the
 * per-endpoint behaviour knobs. No auth: the simulator listens on loopback. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <http_parser.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "server.h"
#include "sim.h"

#define LOG_LIMIT_DEFAULT 1000
#define LOG_LIMIT_MAX 10000

static void bad_request(struct sim_response *res, const char *message)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "error", message);
    sim_res_cjson(res, 400, doc);
    cJSON_Delete(doc);
}

static int want_method(const struct sim_request *req, struct sim_response *res, int method)
{
    if (req->method == method)
        return 1;
    sim_res_literal(res, 405, "{\"error\":\"method not allowed\"}");
    sim_res_header(res, "Allow", http_method_str((enum http_method)method));
    return 0;
}

/* Reads query parameter key as an unsigned number. Returns 1 when present and
 * valid, 0 when absent, -1 when malformed. */
static int query_u64(const struct sim_request *req, const char *key, uint64_t *out)
{
    struct cr_buf v;
    char *end;
    unsigned long long n;
    int rc;

    cr_buf_init(&v, 64);
    rc = sim_form_get(req->query, strlen(req->query), key, &v);
    if (rc != 1) {
        rc = rc == 0 ? 0 : -1;
        goto out;
    }
    errno = 0;
    n = strtoull(cr_buf_cstr(&v), &end, 10);
    if (v.len == 0 || *end != '\0' || errno != 0 || cr_buf_cstr(&v)[0] == '-') {
        rc = -1;
        goto out;
    }
    *out = n;
    rc = 1;
out:
    cr_buf_release(&v);
    return rc;
}

/* Reads the endpoint query parameter. Returns 1 and *ep, 0 when absent, -1 when unknown. */
static int query_endpoint(const struct sim_request *req, enum sim_endpoint *ep)
{
    struct cr_buf v;
    int rc;

    cr_buf_init(&v, 64);
    rc = sim_form_get(req->query, strlen(req->query), "endpoint", &v);
    if (rc == 1)
        rc = sim_endpoint_parse(cr_buf_cstr(&v), v.len, ep) == 0 ? 1 : -1;
    else
        rc = rc == 0 ? 0 : -1;
    cr_buf_release(&v);
    return rc;
}

static void answer_stats(struct sim *sim, struct sim_response *res)
{
    struct cr_buf *b = &res->body;
    int rc;
    int i;

    cr_buf_reset(b);
    rc = cr_buf_appendf(b, "{\"uptime_ms\":%llu,\"connections\":%u,\"endpoints\":{",
                        (unsigned long long)sim_uptime_ms(sim),
                        sim_server_connections(sim->server));
    for (i = 0; rc == 0 && i < SIM_EP_COUNT; i++) {
        const struct sim_counts *c = sim_record_counts(sim->rec, (enum sim_endpoint)i);

        rc = cr_buf_appendf(b,
                            "%s\"%s\":{\"requests\":%llu,\"accepted\":%llu,\"rejected\":%llu,"
                            "\"throttled\":%llu,\"failed\":%llu,\"recipients\":%llu,"
                            "\"unique_recipients\":%llu,\"duplicates\":%llu}",
                            i ? "," : "", sim_endpoint_name((enum sim_endpoint)i),
                            (unsigned long long)c->requests, (unsigned long long)c->accepted,
                            (unsigned long long)c->rejected, (unsigned long long)c->throttled,
                            (unsigned long long)c->failed, (unsigned long long)c->recipients,
                            (unsigned long long)c->unique_recipients,
                            (unsigned long long)c->duplicates);
    }
    if (rc == 0)
        rc = cr_buf_appends(b, "}}");
    res->status = rc == 0 ? 200 : 500;
    res->ctype = SIM_JSON;
}

static void answer_stream(struct sim_response *res, int rc, void *state)
{
    if (rc < 0) {
        sim_res_literal(res, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    res->status = 200;
    res->ctype = SIM_JSON;
    res->fill = sim_record_fill;
    res->fill_free = sim_record_fill_free;
    res->fill_state = state;
}

static void answer_recipients(struct sim *sim, const struct sim_request *req,
                              struct sim_response *res)
{
    enum sim_endpoint ep;
    void *state = NULL;
    int rc;

    if (query_endpoint(req, &ep) != 1) {
        bad_request(res, "endpoint must be sendgrid, twilio or fcm");
        return;
    }
    rc = sim_record_recipients_stream(sim->rec, ep, &state);
    answer_stream(res, rc, state);
}

static void answer_log(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    enum sim_endpoint ep = SIM_EP_COUNT;
    uint64_t since = 0;
    uint64_t limit = LOG_LIMIT_DEFAULT;
    void *state = NULL;
    int rc;

    if (query_endpoint(req, &ep) < 0) {
        bad_request(res, "endpoint must be sendgrid, twilio or fcm");
        return;
    }
    if (query_u64(req, "since", &since) < 0 || since == UINT64_MAX) {
        bad_request(res, "since must be a sequence number");
        return;
    }
    if (query_u64(req, "limit", &limit) < 0 || limit < 1 || limit > LOG_LIMIT_MAX) {
        bad_request(res, "limit must be between 1 and 10000");
        return;
    }
    rc = sim_record_log_stream(sim->rec, ep, since, (size_t)limit, &state);
    answer_stream(res, rc, state);
}

static void put_behaviour(cJSON *obj, const struct sim_behaviour *b)
{
    cJSON_AddNumberToObject(obj, "latency_ms", b->latency_ms);
    cJSON_AddNumberToObject(obj, "jitter_ms", b->jitter_ms);
    cJSON_AddNumberToObject(obj, "error_rate", b->error_rate);
    cJSON_AddNumberToObject(obj, "rate_429", b->rate_429);
    cJSON_AddNumberToObject(obj, "retry_after", b->retry_after);
    cJSON_AddBoolToObject(obj, "retry_after_date", b->retry_after_date);
    cJSON_AddNumberToObject(obj, "deliver_rate", b->deliver_rate);
    cJSON_AddStringToObject(obj, "never_deliver", b->never_deliver);
}

static void answer_settings(struct sim *sim, struct sim_response *res)
{
    cJSON *doc = cJSON_CreateObject();
    int i;

    for (i = 0; i < SIM_EP_COUNT; i++)
        put_behaviour(cJSON_AddObjectToObject(doc, sim_endpoint_name((enum sim_endpoint)i)),
                      &sim->behaviour[i]);
    sim_res_cjson(res, 200, doc);
    cJSON_Delete(doc);
}

/* Reads an optional number member within [lo, hi]. Returns 0 (absent or set)
 * or -1 (present but not a number in range). */
static int member_num(const cJSON *doc, const char *key, double lo, double hi, double *out,
                      int *present)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);

    *present = v != NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || isnan(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return -1;
    *out = v->valuedouble;
    return 0;
}

static void answer_config(struct sim *sim, const struct sim_request *req,
                          struct sim_response *res)
{
    static const struct {
        const char *key;
        double hi;
        const char *error;
    } knobs[] = {
        {"latency_ms", SIM_MAX_LATENCY_MS, "latency_ms must be 0..600000"},
        {"jitter_ms", SIM_MAX_LATENCY_MS, "jitter_ms must be 0..600000"},
        {"error_rate", 1.0, "error_rate must be 0..1"},
        {"rate_429", 1.0, "rate_429 must be 0..1"},
        {"retry_after", SIM_MAX_RETRY_AFTER, "retry_after must be 0..86400"},
        {"retry_after_date", 1.0, "retry_after_date must be 0 or 1"},
        {"deliver_rate", 1.0, "deliver_rate must be 0..1"},
    };
    double val[7] = {0};
    int present[7] = {0};
    cJSON *doc = cJSON_ParseWithLength(req->body, req->body_len);
    const cJSON *epv, *never;
    enum sim_endpoint ep = SIM_EP_COUNT;
    size_t k;
    int i;

    if (!cJSON_IsObject(doc)) {
        bad_request(res, "the body must be a JSON object");
        goto out;
    }
    epv = cJSON_GetObjectItemCaseSensitive(doc, "endpoint");
    if (epv != NULL && !(cJSON_IsString(epv) && strcmp(epv->valuestring, "*") == 0)) {
        if (!cJSON_IsString(epv) ||
            sim_endpoint_parse(epv->valuestring, strlen(epv->valuestring), &ep) < 0) {
            bad_request(res, "endpoint must be sendgrid, twilio, fcm or *");
            goto out;
        }
    }
    for (k = 0; k < sizeof(knobs) / sizeof(knobs[0]); k++) {
        if (member_num(doc, knobs[k].key, 0, knobs[k].hi, &val[k], &present[k]) < 0) {
            bad_request(res, knobs[k].error);
            goto out;
        }
    }
    never = cJSON_GetObjectItemCaseSensitive(doc, "never_deliver");
    if (never != NULL &&
        (!cJSON_IsString(never) || strlen(never->valuestring) >= SIM_NEVER_DELIVER_MAX)) {
        bad_request(res, "never_deliver must be a string of comma-separated suffixes, "
                         "at most 127 bytes");
        goto out;
    }
    for (i = 0; i < SIM_EP_COUNT; i++) {
        struct sim_behaviour *b = &sim->behaviour[i];

        if (ep != SIM_EP_COUNT && (int)ep != i)
            continue;
        if (present[6])
            b->deliver_rate = val[6];
        if (never != NULL)
            snprintf(b->never_deliver, sizeof(b->never_deliver), "%s", never->valuestring);
        if (present[0])
            b->latency_ms = (uint32_t)val[0];
        if (present[1])
            b->jitter_ms = (uint32_t)val[1];
        if (present[2])
            b->error_rate = val[2];
        if (present[3])
            b->rate_429 = val[3];
        if (present[4])
            b->retry_after = (uint32_t)val[4];
        if (present[5])
            b->retry_after_date = val[5] >= 0.5;
    }
    answer_settings(sim, res);
out:
    cJSON_Delete(doc);
}

void sim_control_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    const char *what = req->path + strlen("/_sim/");

    if (strcmp(what, "health") == 0) {
        if (want_method(req, res, HTTP_GET))
            sim_res_literal(res, 200, "{\"ok\":true}");
    } else if (strcmp(what, "stats") == 0) {
        if (want_method(req, res, HTTP_GET))
            answer_stats(sim, res);
    } else if (strcmp(what, "recipients") == 0) {
        if (want_method(req, res, HTTP_GET))
            answer_recipients(sim, req, res);
    } else if (strcmp(what, "log") == 0) {
        if (want_method(req, res, HTTP_GET))
            answer_log(sim, req, res);
    } else if (strcmp(what, "reset") == 0) {
        if (want_method(req, res, HTTP_POST)) {
            sim_record_reset(sim->rec);
            sim_res_literal(res, 200, "{\"ok\":true}");
        }
    } else if (strcmp(what, "config") == 0) {
        if (req->method == HTTP_GET)
            answer_settings(sim, res);
        else if (want_method(req, res, HTTP_POST))
            answer_config(sim, req, res);
    } else {
        sim_res_literal(res, 404, "{\"error\":\"no such endpoint\"}");
    }
}
