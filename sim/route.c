/* Request routing for crier-sim: which handler answers which path, plus the
 * steps every provider answer shares (fault injection, recording, latency). */
#include <http_parser.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "callbacks.h"
#include "record.h"
#include "sim.h"

#define TWILIO_PREFIX "/2010-04-01/Accounts/"
#define TWILIO_SUFFIX "/Messages.json"
#define FCM_PREFIX "/v1/projects/"
#define FCM_SUFFIX "/messages:send"

static int has_affixes(const char *path, const char *prefix, const char *suffix)
{
    size_t n = strlen(path), p = strlen(prefix), s = strlen(suffix);

    return n > p + s && strncmp(path, prefix, p) == 0 && strcmp(path + n - s, suffix) == 0;
}

/* The provider endpoint a path belongs to, or SIM_EP_COUNT for none. */
static enum sim_endpoint endpoint_of(const char *path)
{
    if (strcmp(path, "/v3/mail/send") == 0)
        return SIM_EP_SENDGRID;
    if (has_affixes(path, TWILIO_PREFIX, TWILIO_SUFFIX))
        return SIM_EP_TWILIO;
    if (has_affixes(path, FCM_PREFIX, FCM_SUFFIX))
        return SIM_EP_FCM;
    if (strcmp(path, "/gateway/send") == 0)
        return SIM_EP_GATEWAY;
    if (has_affixes(path, "/v", "/messages") && strchr(path + 2, '/') != NULL)
        return SIM_EP_META; /* /<version>/<phone-number-id>/messages */
    return SIM_EP_COUNT;
}

void sim_route_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    enum sim_endpoint ep;

    if (sim_callbacks_control(sim, req, res))
        return; /* /_sim/callbacks, /_sim/inbound */
    if (strncmp(req->path, "/_sim/", 6) == 0) {
        sim_control_handle(sim, req, res);
        return;
    }
    if (strcmp(req->path, "/token") == 0) {
        sim_oauth_handle(sim, req, res);
        return;
    }
    ep = endpoint_of(req->path);
    if (ep == SIM_EP_COUNT) {
        sim_res_literal(res, 404, "{\"error\":\"no such endpoint\"}");
        return;
    }
    if (req->method != HTTP_POST) {
        sim_res_literal(res, 405, "{\"error\":\"method not allowed\"}");
        sim_res_header(res, "Allow", "POST");
        sim_provider_done(sim, ep, req, res, NULL, 0, NULL, 0);
        return;
    }
    switch (ep) {
    case SIM_EP_SENDGRID:
        sim_sendgrid_handle(sim, req, res);
        sim_callbacks_after_sendgrid(sim, req, res);
        break;
    case SIM_EP_TWILIO:
        sim_twilio_handle(sim, req, res);
        sim_callbacks_after_twilio(sim, req, res);
        break;
    case SIM_EP_GATEWAY: sim_gateway_handle(sim, req, res); break;
    case SIM_EP_META: sim_whatsapp_meta(sim, req, res); break;
    default: sim_fcm_handle(sim, req, res); break;
    }
}

void sim_route_refused(struct sim *sim, const char *method, const char *path, int status)
{
    struct sim_log_input in;
    char clean[256];
    const char *q = strchr(path, '?');
    size_t n = q ? (size_t)(q - path) : strlen(path);

    if (n >= sizeof(clean))
        return;
    memcpy(clean, path, n);
    clean[n] = '\0';
    memset(&in, 0, sizeof(in));
    in.ep = endpoint_of(clean);
    if (in.ep == SIM_EP_COUNT)
        return;
    in.t_ms = sim_now_ms(sim);
    in.method = method;
    in.path = clean;
    in.status = status;
    in.body = "";
    sim_record_add(sim->rec, &in);
}

enum sim_inject sim_provider_inject(struct sim *sim, enum sim_endpoint ep)
{
    const struct sim_behaviour *b = &sim->behaviour[ep];
    double r;

    if (b->rate_429 <= 0 && b->error_rate <= 0)
        return SIM_INJECT_NONE;
    r = sim_rng_double(&sim->rng);
    if (r < b->rate_429)
        return SIM_INJECT_429;
    if (r < b->rate_429 + b->error_rate)
        return SIM_INJECT_5XX;
    return SIM_INJECT_NONE;
}

void sim_provider_retry_after(struct sim *sim, enum sim_endpoint ep, struct sim_response *res)
{
    const struct sim_behaviour *b = &sim->behaviour[ep];
    char v[64];

    if (b->retry_after_date) {
        /* IMF-fixdate has whole seconds: round up so the date is never earlier
         * than retry_after seconds from now. */
        struct timespec ts;
        struct tm tm;
        time_t at;

        clock_gettime(CLOCK_REALTIME, &ts);
        at = ts.tv_sec + (time_t)b->retry_after + (ts.tv_nsec > 0 ? 1 : 0);
        gmtime_r(&at, &tm);
        strftime(v, sizeof(v), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    } else {
        snprintf(v, sizeof(v), "%u", (unsigned)b->retry_after);
    }
    sim_res_header(res, "Retry-After", v);
}

int sim_provider_delivers(struct sim *sim, enum sim_endpoint ep, const char *recipient)
{
    const struct sim_behaviour *b = &sim->behaviour[ep];
    size_t rlen = recipient ? strlen(recipient) : 0;
    const char *p = b->never_deliver;

    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);

        if (n > 0 && n <= rlen && memcmp(recipient + rlen - n, p, n) == 0)
            return 0;
        p += n;
        if (*p == ',')
            p++;
    }
    if (b->deliver_rate >= 1.0)
        return 1;
    return sim_rng_double(&sim->rng) < b->deliver_rate;
}

void sim_provider_done(struct sim *sim, enum sim_endpoint ep, const struct sim_request *req,
                       struct sim_response *res, const char *const *recipients,
                       size_t nrecipients, const char *const *refs, size_t nrefs)
{
    sim_provider_done_fields(sim, ep, req, res, recipients, nrecipients, refs, nrefs, NULL);
}

void sim_provider_done_fields(struct sim *sim, enum sim_endpoint ep, const struct sim_request *req,
                              struct sim_response *res, const char *const *recipients,
                              size_t nrecipients, const char *const *refs, size_t nrefs,
                              const char *fields)
{
    const struct sim_behaviour *b = &sim->behaviour[ep];
    struct sim_log_input in;
    int64_t delay = b->latency_ms;

    in.ep = ep;
    in.t_ms = sim_now_ms(sim);
    in.method = req->method_name;
    in.path = req->path;
    in.status = res->status;
    in.recipients = recipients;
    in.nrecipients = nrecipients;
    in.auth = req->auth;
    in.ctype = req->ctype;
    in.refs = refs;
    in.nrefs = nrefs;
    in.body = req->body;
    in.body_len = req->body_len;
    in.fields = fields;
    in.count_status = 0;
    sim_record_add(sim->rec, &in);
    if (b->jitter_ms > 0) {
        uint64_t span = 2 * (uint64_t)b->jitter_ms + 1;

        delay += (int64_t)(sim_rng_next(&sim->rng) % span) - (int64_t)b->jitter_ms;
    }
    res->delay_ms = delay > 0 ? (uint32_t)delay : 0;
}
