/* Provider callbacks made by crier-sim (see callbacks.h): each callback is a
 * job with its own timer (delay, then backoff between attempts) that sends one
 * signed HTTP request through crier's own HTTP client, and a record in
 * a capped ring that /_sim/callbacks reports. Nothing here blocks the loop. */
#include "callbacks.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <http_parser.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_provider.h"
#include "http.h"
#include "server.h"
#include "sigs.h"

#define MAX_ATTEMPTS 4          /* first try + 3 retries */
#define BACKOFF_MS 250          /* before retry n: BACKOFF_MS << (n - 1) */
#define MAX_STAGED_EVENTS 200000 /* SendGrid events waiting for their batch */
#define MAX_BATCH_EVENTS 1000   /* events per event-webhook POST */
#define MAX_RECORDS 10000       /* /_sim/callbacks keeps the newest */
#define RECORD_BODY_BYTES (64 * 1024)
#define MAX_CALLBACK_BODY (16 * 1024 * 1024)
#define STREAM_CHUNK (64 * 1024)
#define API_VERSION "2010-04-01"
#define BOUNCE_DOMAIN "bounce.sim"

enum cb_kind { CB_TWILIO_STATUS, CB_TWILIO_INBOUND, CB_SENDGRID, CB_META, CB_GENERIC };

static const char *const kind_names[] = {"twilio_status", "twilio_inbound", "sendgrid_events",
                                         "meta_whatsapp", "generic_receipt"};

/* What /_sim/callbacks shows of one callback; updated while it runs. */
struct cb_record {
    uint64_t seq;
    enum cb_kind kind;
    uint64_t t_ms, done_ms;
    int attempts;
    int status;        /* last HTTP status, 0 when none arrived */
    const char *state; /* "pending", "delivered", "failed", "abandoned" */
    char error[160];
    char *url;
    char *body; /* cut to RECORD_BODY_BYTES */
    int body_cut;
    char signature[200];
    char timestamp[24]; /* SendGrid only */
};

struct cb_job {
    struct sim_callbacks *cbs;
    struct cb_job *prev, *next; /* every live job */
    enum cb_kind kind;
    uint64_t seq;
    char *url;
    char *body;
    size_t body_len;
    char signature[80];         /* X-Twilio-Signature, or Meta's X-Hub-Signature-256 */
    struct cb_job *then;        /* started when this one is done (not owned: in the list) */
    struct sim_pending *answer; /* /_sim/inbound waiting for the result */
    char sid[40];
    int attempts;
    int inflight;
    int started;
    uv_timer_t timer;
};

struct sim_callbacks {
    struct sim *sim;
    struct cr_http *http;
    EVP_PKEY *sg_key;
    struct cb_job *jobs;
    size_t njobs;
    int warned_full;
    /* records: a ring with contiguous seqs */
    struct cb_record *ring;
    size_t ring_head, ring_count;
    uint64_t next_seq;
    /* SendGrid events: a = "processed" waiting for its batch, with the final
     * events that follow them; b = final events waiting for theirs */
    cJSON *stage_a, *stage_a_final, *stage_b;
    size_t staged;
    uv_timer_t timer_a, timer_b;
    int closing;
    int handles_open;
};

/* ---- records ---- */

static struct cb_record *record_find(struct sim_callbacks *cbs, uint64_t seq)
{
    uint64_t first;

    if (cbs->ring_count == 0)
        return NULL;
    first = cbs->ring[cbs->ring_head].seq;
    if (seq < first || seq - first >= cbs->ring_count)
        return NULL;
    return &cbs->ring[(cbs->ring_head + (size_t)(seq - first)) % MAX_RECORDS];
}

static void record_free(struct cb_record *r)
{
    free(r->url);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Adds a record for a new callback; returns its seq (0 when out of memory). */
static uint64_t record_new(struct sim_callbacks *cbs, enum cb_kind kind, const char *url,
                           const char *body, size_t body_len)
{
    struct cb_record *r;
    size_t n = body_len > RECORD_BODY_BYTES ? RECORD_BODY_BYTES : body_len;

    if (cbs->ring == NULL) {
        cbs->ring = calloc(MAX_RECORDS, sizeof(*cbs->ring));
        if (cbs->ring == NULL)
            return 0;
    }
    if (cbs->ring_count == MAX_RECORDS) {
        record_free(&cbs->ring[cbs->ring_head]);
        cbs->ring_head = (cbs->ring_head + 1) % MAX_RECORDS;
        cbs->ring_count--;
    }
    r = &cbs->ring[(cbs->ring_head + cbs->ring_count) % MAX_RECORDS];
    memset(r, 0, sizeof(*r));
    r->url = strdup(url);
    r->body = malloc(n + 1);
    if (r->url == NULL || r->body == NULL) {
        record_free(r);
        return 0;
    }
    memcpy(r->body, body, n);
    r->body[n] = '\0';
    r->body_cut = n < body_len;
    r->seq = cbs->next_seq++;
    r->kind = kind;
    r->t_ms = sim_now_ms(cbs->sim);
    r->state = "pending";
    cbs->ring_count++;
    return r->seq;
}

static cJSON *record_json(const struct cb_record *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *h = cJSON_AddObjectToObject(o, "headers");
    struct cr_buf clean;

    cr_buf_init(&clean, 4 * RECORD_BODY_BYTES);
    cJSON_AddNumberToObject(o, "seq", (double)r->seq);
    cJSON_AddStringToObject(o, "kind", kind_names[r->kind]);
    cJSON_AddStringToObject(o, "url", r->url);
    cJSON_AddStringToObject(o, "state", r->state);
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    cJSON_AddNumberToObject(o, "status", r->status);
    if (r->error[0] != '\0')
        cJSON_AddStringToObject(o, "error", r->error);
    else
        cJSON_AddNullToObject(o, "error");
    cJSON_AddNumberToObject(o, "t_ms", (double)r->t_ms);
    cJSON_AddNumberToObject(o, "done_ms", (double)r->done_ms);
    if (r->kind == CB_SENDGRID) {
        cJSON_AddStringToObject(h, "Content-Type", "application/json");
        cJSON_AddStringToObject(h, "X-Twilio-Email-Event-Webhook-Signature", r->signature);
        cJSON_AddStringToObject(h, "X-Twilio-Email-Event-Webhook-Timestamp", r->timestamp);
    } else if (r->kind == CB_META) {
        cJSON_AddStringToObject(h, "Content-Type", "application/json");
        cJSON_AddStringToObject(h, "X-Hub-Signature-256", r->signature);
    } else if (r->kind == CB_GENERIC) {
        cJSON_AddStringToObject(h, "Content-Type", "application/json");
        cJSON_AddStringToObject(h, "X-Crier-Signature", r->signature);
        cJSON_AddStringToObject(h, "X-Crier-Timestamp", r->timestamp);
    } else {
        cJSON_AddStringToObject(h, "Content-Type", "application/x-www-form-urlencoded");
        cJSON_AddStringToObject(h, "X-Twilio-Signature", r->signature);
    }
    if (sim_utf8_clean(&clean, r->body, strlen(r->body), r->body_cut) == 0)
        cJSON_AddStringToObject(o, "body", cr_buf_cstr(&clean));
    cJSON_AddBoolToObject(o, "body_cut", r->body_cut);
    cr_buf_release(&clean);
    return o;
}

/* ---- jobs ---- */

static void on_job_closed(uv_handle_t *h)
{
    struct cb_job *job = h->data;
    struct sim_callbacks *cbs = job->cbs;

    free(job->url);
    free(job->body);
    free(job);
    cbs->handles_open--;
    if (cbs->closing && cbs->handles_open == 0) {
        EVP_PKEY_free(cbs->sg_key);
        free(cbs);
    }
}

/* Takes job out of the list and frees it once its timer is closed. */
static void job_free(struct cb_job *job)
{
    struct sim_callbacks *cbs = job->cbs;

    if (job->prev)
        job->prev->next = job->next;
    else
        cbs->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    cbs->njobs--;
    /* a job is only ever another's "then" until that one finishes and starts
     * it, and both are freed together on close: no link is left dangling */
    uv_close((uv_handle_t *)&job->timer, on_job_closed);
}

static void job_start(struct cb_job *job, uint64_t delay_ms);

/* Answers a waiting /_sim/inbound with what crierd answered (or why not). */
static void answer_inbound(struct cb_job *job, int err, const struct cr_response *resp,
                           const char *detail)
{
    struct sim_response *res = sim_pending_response(job->answer);

    if (res != NULL) {
        cJSON *doc = cJSON_CreateObject();
        int status = 502;

        cJSON_AddStringToObject(doc, "message_sid", job->sid);
        cJSON_AddNumberToObject(doc, "attempts", job->attempts);
        if (err == 0 && resp != NULL && resp->status >= 100 && resp->status <= 599) {
            status = (int)resp->status;
            cJSON_AddNumberToObject(doc, "status", status);
            cJSON_AddStringToObject(doc, "response", resp->body ? resp->body : "");
        } else {
            cJSON_AddStringToObject(doc, "error", detail ? detail : "callback not delivered");
        }
        sim_res_cjson(res, status, doc);
        cJSON_Delete(doc);
    }
    sim_pending_finish(job->answer);
    job->answer = NULL;
}

/* The last attempt is over: record, answer, start what follows, free. */
static void job_finish(struct cb_job *job, int ok, int err, const struct cr_response *resp,
                       const char *detail)
{
    struct sim_callbacks *cbs = job->cbs;
    struct cb_record *r = record_find(cbs, job->seq);
    struct cb_job *then = job->then;
    struct sim_pending *answer = job->answer;

    if (r != NULL) {
        r->state = ok ? "delivered" : "failed";
        r->done_ms = sim_now_ms(cbs->sim);
    }
    if (!ok && !cbs->sim->opt.quiet) {
        cr_warn("sim callback %s to %s: %s after %d attempts, given up", kind_names[job->kind],
                job->url, r && r->error[0] ? r->error : "failed", job->attempts);
    }
    job->then = NULL;
    if (then != NULL)
        job_start(then, cbs->sim->opt.callback_delay_ms);
    if (answer != NULL)
        answer_inbound(job, err, resp, detail);
    job_free(job);
}

static void on_sent(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct cb_job *job = ud;
    struct sim_callbacks *cbs = job->cbs;
    struct cb_record *r = record_find(cbs, job->seq);
    int ok = err == 0 && resp->status >= 200 && resp->status < 300;
    int retry;

    (void)latency_us;
    job->inflight = 0;
    job->attempts++;
    if (r != NULL) {
        r->attempts = job->attempts;
        r->status = err == 0 ? (int)resp->status : 0;
        if (err != 0)
            snprintf(r->error, sizeof(r->error), "%s", detail ? detail : cr_strerror(err));
        else if (!ok)
            snprintf(r->error, sizeof(r->error), "HTTP %ld", resp->status);
        else
            r->error[0] = '\0';
    }
    if (cbs->closing)
        return; /* sim_callbacks_close frees the job */
    /* like Twilio: transport failures, 429 and 5xx are tried again, with backoff */
    retry = !ok && (err != 0 || resp->status == 429 || resp->status >= 500);
    if (retry && job->attempts < MAX_ATTEMPTS) {
        job_start(job, (uint64_t)BACKOFF_MS << (job->attempts - 1));
        return;
    }
    job_finish(job, ok, err, resp, detail);
}

/* Signs timestamp + body with the SendGrid key: base64 of the DER ECDSA
 * signature over SHA-256. Returns 0 or CR_EIO. */
static int sendgrid_sign(EVP_PKEY *key, const char *ts, const char *body, size_t len,
                         char *out, size_t outn)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[160];
    size_t siglen = sizeof(sig);
    int rc = CR_EIO;

    if (ctx == NULL)
        return CR_ENOMEM;
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSignUpdate(ctx, ts, strlen(ts)) != 1 ||
        EVP_DigestSignUpdate(ctx, body, len) != 1 || EVP_DigestSignFinal(ctx, sig, &siglen) != 1)
        goto out;
    if (outn < (siglen + 2) / 3 * 4 + 1)
        goto out;
    EVP_EncodeBlock((unsigned char *)out, sig, (int)siglen);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Sends one attempt; a failure to even submit counts as a failed attempt. */
static void job_send(struct cb_job *job)
{
    struct sim_callbacks *cbs = job->cbs;
    struct cb_record *r = record_find(cbs, job->seq);
    struct cr_http_target target;
    struct cr_request req;
    struct cr_buf line;
    char sig[200];
    char ts[24];
    int rc;

    memset(&target, 0, sizeof(target));
    target.connect_timeout_ms = 2000;
    target.timeout_ms = 10000;
    target.max_response = 64 * 1024;
    cr_request_init(&req, job->body_len + 1);
    cr_buf_init(&line, 512);
    rc = cr_buf_appends(&req.url, job->url);
    if (rc == 0)
        rc = cr_buf_append(&req.body, job->body, job->body_len);
    if (rc < 0)
        goto out;
    if (job->kind == CB_SENDGRID) {
        /* signed per attempt: the timestamp is when this attempt is made */
        snprintf(ts, sizeof(ts), "%llu", (unsigned long long)(sim_now_ms(cbs->sim) / 1000));
        rc = sendgrid_sign(cbs->sg_key, ts, job->body, job->body_len, sig, sizeof(sig));
        if (rc < 0)
            goto out;
        if (r != NULL) {
            snprintf(r->signature, sizeof(r->signature), "%s", sig);
            snprintf(r->timestamp, sizeof(r->timestamp), "%s", ts);
        }
        rc = cr_buf_appendf(&line, "X-Twilio-Email-Event-Webhook-Signature: %s", sig);
        req.headers = curl_slist_append(req.headers, "Content-Type: application/json");
        req.headers = curl_slist_append(req.headers, "User-Agent: SendGrid Event API");
    } else if (job->kind == CB_META) {
        rc = cr_buf_appendf(&line, "X-Hub-Signature-256: %s", job->signature);
        req.headers = curl_slist_append(req.headers, "Content-Type: application/json");
        req.headers = curl_slist_append(req.headers, "User-Agent: facebookexternalua");
    } else if (job->kind == CB_GENERIC) {
        /* what crierd's /hooks/generic checks: HMAC-SHA256 over "<ts>.<body>" */
        unsigned char mac[CR_HMAC_SHA256_LEN];

        snprintf(ts, sizeof(ts), "%llu", (unsigned long long)(sim_now_ms(cbs->sim) / 1000));
        rc = cr_hmac_ts_body(cbs->sim->opt.generic_webhook_secret,
                             strlen(cbs->sim->opt.generic_webhook_secret), ts, job->body,
                             job->body_len, mac);
        if (rc < 0)
            goto out;
        memcpy(sig, "sha256=", 7);
        cr_hex(mac, sizeof(mac), sig + 7);
        if (r != NULL) {
            snprintf(r->signature, sizeof(r->signature), "%s", sig);
            snprintf(r->timestamp, sizeof(r->timestamp), "%s", ts);
        }
        rc = cr_buf_appendf(&line, "X-Crier-Signature: %s", sig);
        req.headers = curl_slist_append(req.headers, "Content-Type: application/json");
        req.headers = curl_slist_append(req.headers, "User-Agent: crier-sim-app");
    } else {
        rc = cr_buf_appendf(&line, "X-Twilio-Signature: %s", job->signature);
        req.headers = curl_slist_append(req.headers,
                                        "Content-Type: application/x-www-form-urlencoded");
        req.headers = curl_slist_append(req.headers, "User-Agent: TwilioProxy/1.1");
    }
    if (rc == 0 && req.headers != NULL)
        req.headers = curl_slist_append(req.headers, cr_buf_cstr(&line));
    if (rc == 0 && req.headers != NULL && (job->kind == CB_SENDGRID || job->kind == CB_GENERIC)) {
        cr_buf_reset(&line);
        rc = cr_buf_appendf(&line, "%s: %s",
                            job->kind == CB_GENERIC ? "X-Crier-Timestamp"
                                                    : "X-Twilio-Email-Event-Webhook-Timestamp",
                            ts);
        if (rc == 0)
            req.headers = curl_slist_append(req.headers, cr_buf_cstr(&line));
    }
    if (rc == 0 && req.headers == NULL)
        rc = CR_ENOMEM;
    if (rc == 0)
        rc = cr_http_submit(cbs->http, &req, &target, on_sent, job);
    if (rc == 0)
        job->inflight = 1;
out:
    cr_request_release(&req);
    cr_buf_release(&line);
    if (rc < 0) {
        /* as if the attempt failed in transport: on_sent retries or gives up */
        char detail[96];

        snprintf(detail, sizeof(detail), "callback not sent: %s", cr_strerror(rc));
        on_sent(job, rc, NULL, detail, 0);
    }
}

static void on_job_timer(uv_timer_t *t)
{
    job_send(t->data);
}

static void job_start(struct cb_job *job, uint64_t delay_ms)
{
    job->started = 1;
    uv_timer_start(&job->timer, on_job_timer, delay_ms, 0);
}

/* Whether n more callbacks fit in the queue now. The loop runs one request at
 * a time, so a caller that checks before accepting a message and queues its
 * callbacks in the same turn always finds them room. */
static int room(const struct sim_callbacks *cbs, size_t n)
{
    return !cbs->closing && cbs->njobs + n <= cbs->sim->opt.callback_queue;
}

/* Makes a job (not started) that owns url and body; NULL when over the cap or
 * out of memory (both are logged; url and body are freed). */
static struct cb_job *job_new(struct sim_callbacks *cbs, enum cb_kind kind, char *url,
                              char *body, size_t body_len)
{
    struct cb_job *job = NULL;

    if (cbs->closing || cbs->njobs >= cbs->sim->opt.callback_queue) {
        if (!cbs->warned_full) {
            cbs->warned_full = 1;
            cr_warn("sim callbacks: %u waiting, further callbacks are dropped",
                    (unsigned)cbs->sim->opt.callback_queue);
        }
        goto fail;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL)
        goto fail;
    job->seq = record_new(cbs, kind, url, body, body_len);
    if (job->seq == 0)
        goto fail;
    job->cbs = cbs;
    job->kind = kind;
    job->url = url;
    job->body = body;
    job->body_len = body_len;
    uv_timer_init(cbs->sim->loop, &job->timer);
    job->timer.data = job;
    cbs->handles_open++;
    job->next = cbs->jobs;
    if (cbs->jobs)
        cbs->jobs->prev = job;
    cbs->jobs = job;
    cbs->njobs++;
    return job;
fail:
    free(job);
    free(url);
    free(body);
    return NULL;
}

/* ---- Twilio ---- */

struct param {
    const char *name;
    const char *value;
};

static int param_cmp(const void *a, const void *b)
{
    return strcmp(((const struct param *)a)->name, ((const struct param *)b)->name);
}

/* Sorts p by name, form-encodes it into *body and computes Twilio's signature:
 * base64(HMAC-SHA1(token, url + name1 + value1 + name2 + value2 ...)). */
static int twilio_form(const char *token, const char *url, struct param *p, size_t n,
                       char **body, size_t *body_len, char *sig, size_t sign)
{
    struct cr_buf data, form;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t i;
    int rc;

    qsort(p, n, sizeof(*p), param_cmp);
    cr_buf_init(&data, MAX_CALLBACK_BODY);
    cr_buf_init(&form, MAX_CALLBACK_BODY);
    rc = cr_buf_appends(&data, url);
    for (i = 0; rc == 0 && i < n; i++) {
        rc = cr_buf_appends(&data, p[i].name);
        if (rc == 0)
            rc = cr_buf_appends(&data, p[i].value);
        if (rc == 0 && i > 0)
            rc = cr_buf_append(&form, "&", 1);
        if (rc == 0)
            rc = cr_buf_append_pct(&form, p[i].name);
        if (rc == 0)
            rc = cr_buf_append(&form, "=", 1);
        if (rc == 0)
            rc = cr_buf_append_pct(&form, p[i].value);
    }
    if (rc == 0 && HMAC(EVP_sha1(), token, (int)strlen(token), (unsigned char *)data.data,
                        data.len, mac, &maclen) == NULL)
        rc = CR_EIO;
    if (rc == 0 && sign < (maclen + 2) / 3 * 4 + 1)
        rc = CR_ETOOBIG;
    if (rc == 0) {
        EVP_EncodeBlock((unsigned char *)sig, mac, (int)maclen);
        *body_len = form.len;
        *body = cr_buf_steal(&form);
        if (*body == NULL)
            rc = CR_ENOMEM;
    }
    cr_buf_release(&data);
    cr_buf_release(&form);
    return rc;
}

/* Makes (not starts) a signed Twilio callback job to url with params p. */
static struct cb_job *twilio_job(struct sim_callbacks *cbs, enum cb_kind kind, const char *url,
                                 struct param *p, size_t n)
{
    char sig[64];
    char *body = NULL;
    size_t len = 0;
    char *u;
    struct cb_job *job;

    if (twilio_form(cbs->sim->opt.twilio_token, url, p, n, &body, &len, sig, sizeof(sig)) < 0) {
        free(body);
        return NULL;
    }
    u = strdup(url);
    if (u == NULL) {
        free(body);
        return NULL;
    }
    job = job_new(cbs, kind, u, body, len);
    if (job != NULL) {
        struct cb_record *r = record_find(cbs, job->seq);

        snprintf(job->signature, sizeof(job->signature), "%s", sig);
        if (r != NULL)
            snprintf(r->signature, sizeof(r->signature), "%s", sig);
    }
    return job;
}

static const char *json_str(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int sim_callbacks_twilio_room(struct sim *sim, const struct sim_request *req, int whatsapp)
{
    struct sim_callbacks *cbs = sim->callbacks;
    struct cr_buf url;
    int wants;

    if (cbs == NULL || !sim_starts_with_ci(req->ctype, "application/x-www-form-urlencoded"))
        return 1;
    cr_buf_init(&url, 8192);
    wants = sim_form_get(req->body, req->body_len, "StatusCallback", &url) == 1 && url.len > 0;
    cr_buf_release(&url);
    /* sent and the final status; WhatsApp adds read */
    return !wants || room(cbs, whatsapp ? 3 : 2);
}

int sim_callbacks_meta_room(struct sim *sim)
{
    struct sim_callbacks *cbs = sim->callbacks;

    if (cbs == NULL || sim->opt.meta_webhook_url == NULL || sim->opt.meta_app_secret == NULL)
        return 1;
    return room(cbs, 3); /* sent, delivered, read */
}

void sim_callbacks_after_twilio(struct sim *sim, const struct sim_request *req,
                                const struct sim_response *res)
{
    struct sim_callbacks *cbs = sim->callbacks;
    struct cr_buf url;
    cJSON *doc = NULL;
    const char *sid, *to, *from, *msid;
    struct param p[10];
    struct cb_job *sent, *final;
    size_t n = 0;

    if (cbs == NULL || res->status != 201 ||
        !sim_starts_with_ci(req->ctype, "application/x-www-form-urlencoded"))
        return;
    cr_buf_init(&url, 8192);
    if (sim_form_get(req->body, req->body_len, "StatusCallback", &url) != 1 || url.len == 0)
        goto out;
    doc = cJSON_ParseWithLength(res->body.data, res->body.len);
    sid = json_str(doc, "sid");
    to = json_str(doc, "to");
    from = json_str(doc, "from");
    msid = json_str(doc, "messaging_service_sid");
    if (sid == NULL || to == NULL)
        goto out;
    p[n++] = (struct param){"AccountSid", sim->opt.twilio_sid};
    p[n++] = (struct param){"ApiVersion", API_VERSION};
    if (from != NULL)
        p[n++] = (struct param){"From", from};
    p[n++] = (struct param){"MessageSid", sid};
    p[n++] = (struct param){"MessageStatus", "sent"};
    if (msid != NULL)
        p[n++] = (struct param){"MessagingServiceSid", msid};
    p[n++] = (struct param){"SmsSid", sid};
    p[n++] = (struct param){"SmsStatus", "sent"};
    p[n++] = (struct param){"To", to};
    sent = twilio_job(cbs, CB_TWILIO_STATUS, cr_buf_cstr(&url), p, n);
    if (sent == NULL)
        goto out;
    /* the final status; p was sorted by name, so find the members again */
    {
        int lost = ends_with(to, "99") || !sim_provider_delivers(sim, SIM_EP_TWILIO, to);
        const char *final_status = lost ? "undelivered" : "delivered";
        size_t i;

        for (i = 0; i < n; i++) {
            if (strcmp(p[i].name, "MessageStatus") == 0 || strcmp(p[i].name, "SmsStatus") == 0)
                p[i].value = final_status;
        }
        if (lost)
            p[n++] = (struct param){"ErrorCode", "30003"};
    }
    final = twilio_job(cbs, CB_TWILIO_STATUS, cr_buf_cstr(&url), p, n);
    sent->then = final;
    if (final != NULL && strncmp(to, "whatsapp:", 9) == 0 && !ends_with(to, "99")) {
        size_t i;

        for (i = 0; i < n; i++) { /* WhatsApp: the resident read it */
            if (strcmp(p[i].name, "MessageStatus") == 0 || strcmp(p[i].name, "SmsStatus") == 0)
                p[i].value = "read";
        }
        final->then = twilio_job(cbs, CB_TWILIO_STATUS, cr_buf_cstr(&url), p, n);
    }
    job_start(sent, sim->opt.callback_delay_ms);
out:
    cJSON_Delete(doc);
    cr_buf_release(&url);
}

/* ---- Meta WhatsApp ---- */

/* One signed status notification as Meta's webhook sends it. */
static struct cb_job *meta_job(struct sim_callbacks *cbs, const char *wamid, const char *to,
                               const char *ref, const char *status)
{
    struct sim *sim = cbs->sim;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    char ts[24];
    cJSON *doc = cJSON_CreateObject();
    cJSON *entry = cJSON_AddArrayToObject(doc, "entry");
    cJSON *e = cJSON_CreateObject();
    cJSON *changes = cJSON_AddArrayToObject(e, "changes");
    cJSON *ch = cJSON_CreateObject();
    cJSON *value = cJSON_AddObjectToObject(ch, "value");
    cJSON *meta = cJSON_AddObjectToObject(value, "metadata");
    cJSON *sts = cJSON_AddArrayToObject(value, "statuses");
    cJSON *st = cJSON_CreateObject();
    struct cb_job *job = NULL;
    char *body = NULL;
    char *u = NULL;
    size_t i;

    snprintf(ts, sizeof(ts), "%llu", (unsigned long long)(sim_now_ms(sim) / 1000));
    cJSON_AddStringToObject(doc, "object", "whatsapp_business_account");
    cJSON_AddItemToArray(entry, e);
    cJSON_AddStringToObject(e, "id", "102290129340398");
    cJSON_AddItemToArray(changes, ch);
    cJSON_AddStringToObject(ch, "field", "messages");
    cJSON_AddStringToObject(value, "messaging_product", "whatsapp");
    cJSON_AddStringToObject(meta, "display_phone_number", "447700900000");
    cJSON_AddStringToObject(meta, "phone_number_id", sim->opt.meta_phone_id);
    cJSON_AddItemToArray(sts, st);
    cJSON_AddStringToObject(st, "id", wamid);
    cJSON_AddStringToObject(st, "status", status);
    cJSON_AddStringToObject(st, "timestamp", ts);
    cJSON_AddStringToObject(st, "recipient_id", to);
    if (ref != NULL)
        cJSON_AddStringToObject(st, "biz_opaque_callback_data", ref);
    body = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    u = strdup(sim->opt.meta_webhook_url);
    if (body == NULL || u == NULL ||
        HMAC(EVP_sha256(), sim->opt.meta_app_secret, (int)strlen(sim->opt.meta_app_secret),
             (const unsigned char *)body, strlen(body), mac, &maclen) == NULL) {
        free(body);
        free(u);
        return NULL;
    }
    job = job_new(cbs, CB_META, u, body, strlen(body));
    if (job != NULL) {
        struct cb_record *r = record_find(cbs, job->seq);

        memcpy(job->signature, "sha256=", 7);
        for (i = 0; i < maclen; i++)
            snprintf(job->signature + 7 + 2 * i, 3, "%02x", mac[i]);
        if (r != NULL)
            snprintf(r->signature, sizeof(r->signature), "%s", job->signature);
    }
    return job;
}

void sim_callbacks_after_meta(struct sim *sim, const char *wamid, const char *to,
                              const char *ref)
{
    struct sim_callbacks *cbs = sim->callbacks;
    struct cb_job *sent, *delivered, *read;

    if (cbs == NULL || sim->opt.meta_webhook_url == NULL || sim->opt.meta_app_secret == NULL)
        return;
    sent = meta_job(cbs, wamid, to, ref, "sent");
    if (sent == NULL)
        return;
    delivered = meta_job(cbs, wamid, to, ref, "delivered");
    read = delivered ? meta_job(cbs, wamid, to, ref, "read") : NULL;
    sent->then = delivered;
    if (delivered != NULL)
        delivered->then = read;
    job_start(sent, sim->opt.callback_delay_ms);
}

int sim_callbacks_after_push(struct sim *sim, enum sim_endpoint ep, const char *token,
                             const char *ref)
{
    struct sim_callbacks *cbs = sim->callbacks;
    cJSON *doc = NULL;
    char *body = NULL, *url = NULL;
    char event_id[48];
    struct cb_job *job;
    int rc = 0;

    if (cbs == NULL || sim->opt.generic_webhook_url == NULL || ref == NULL)
        return -1;
    if (!sim_provider_delivers(sim, ep, token))
        return 0;
    snprintf(event_id, sizeof(event_id), "sim-%s-%llu", sim_endpoint_name(ep),
             (unsigned long long)cbs->next_seq);
    doc = cJSON_CreateObject();
    if (doc == NULL || cJSON_AddStringToObject(doc, "ref", ref) == NULL ||
        cJSON_AddStringToObject(doc, "status", "delivered") == NULL ||
        cJSON_AddStringToObject(doc, "event_id", event_id) == NULL)
        goto out;
    body = cJSON_PrintUnformatted(doc);
    url = strdup(sim->opt.generic_webhook_url);
    if (body == NULL || url == NULL)
        goto out;
    job = job_new(cbs, CB_GENERIC, url, body, strlen(body));
    url = NULL; /* job_new owns them, even when it fails */
    body = NULL;
    if (job != NULL) {
        job_start(job, sim->opt.callback_delay_ms);
        rc = 1;
    }
out:
    /* a receipt that could not be queued (over the cap, logged; or out of
     * memory) never comes: the log says "none", as it is */
    free(url);
    cJSON_free(body);
    cJSON_Delete(doc);
    return rc;
}

/* POST /_sim/inbound {"from","body","to"}: an inbound SMS sent to crierd; the
 * answer waits for crierd's. */
static void inbound(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    static const char hex[] = "0123456789abcdef";
    struct sim_callbacks *cbs = sim->callbacks;
    cJSON *doc = cJSON_ParseWithLength(req->body, req->body_len);
    const char *from = json_str(doc, "from");
    const char *body = json_str(doc, "body");
    const char *to = json_str(doc, "to");
    struct param p[12];
    struct cb_job *job;
    char sid[35];
    size_t n = 0, i;

    if (req->method != HTTP_POST) {
        sim_res_literal(res, 405, "{\"error\":\"method not allowed\"}");
        sim_res_header(res, "Allow", "POST");
        goto out;
    }
    if (cbs == NULL || sim->opt.twilio_inbound_url == NULL) {
        sim_res_literal(res, 400, "{\"error\":\"--twilio-inbound-url is not set\"}");
        goto out;
    }
    if (!cJSON_IsObject(doc) || from == NULL || body == NULL || (to != NULL && to[0] == '\0')) {
        sim_res_literal(res, 400, "{\"error\":\"body must be {\\\"from\\\",\\\"body\\\","
                                  "\\\"to\\\"?} with string values\"}");
        goto out;
    }
    if (to == NULL)
        to = "+447700900000";
    sid[0] = 'S';
    sid[1] = 'M';
    for (i = 2; i < 34; i++)
        sid[i] = hex[sim_rng_next(&sim->rng) & 15];
    sid[34] = '\0';
    p[n++] = (struct param){"AccountSid", sim->opt.twilio_sid};
    p[n++] = (struct param){"ApiVersion", API_VERSION};
    p[n++] = (struct param){"Body", body};
    p[n++] = (struct param){"From", from};
    p[n++] = (struct param){"MessageSid", sid};
    p[n++] = (struct param){"NumMedia", "0"};
    p[n++] = (struct param){"NumSegments", "1"};
    p[n++] = (struct param){"SmsMessageSid", sid};
    p[n++] = (struct param){"SmsSid", sid};
    p[n++] = (struct param){"SmsStatus", "received"};
    p[n++] = (struct param){"To", to};
    job = twilio_job(cbs, CB_TWILIO_INBOUND, sim->opt.twilio_inbound_url, p, n);
    if (job == NULL) {
        sim_res_literal(res, 503, "{\"error\":\"callback could not be queued\"}");
        goto out;
    }
    snprintf(job->sid, sizeof(job->sid), "%s", sid);
    job->answer = sim_res_defer(res);
    if (job->answer == NULL)
        sim_res_literal(res, 202, "{\"queued\":true}");
    job_start(job, 0);
out:
    cJSON_Delete(doc);
}

/* ---- SendGrid ---- */

/* Turns up to MAX_BATCH_EVENTS events of *stage into one signed POST each. */
static void sendgrid_flush(struct sim_callbacks *cbs, cJSON **stage)
{
    const char *hook = cbs->sim->opt.sendgrid_webhook_url;

    while (cJSON_GetArraySize(*stage) > 0) {
        cJSON *batch = cJSON_CreateArray();
        struct cb_job *job;
        char *body, *url;
        int i;

        for (i = 0; batch != NULL && i < MAX_BATCH_EVENTS && (*stage)->child != NULL; i++)
            cJSON_AddItemToArray(batch, cJSON_DetachItemFromArray(*stage, 0));
        cbs->staged -= (size_t)i;
        body = batch ? cJSON_PrintUnformatted(batch) : NULL;
        cJSON_Delete(batch);
        url = strdup(hook);
        if (body == NULL || url == NULL) {
            cr_warn("sim callbacks: out of memory, %d SendGrid events dropped", i);
            free(body);
            free(url);
            if (batch == NULL)
                break;
            continue;
        }
        job = job_new(cbs, CB_SENDGRID, url, body, strlen(body));
        if (job != NULL)
            job_start(job, 0);
    }
}

static void on_timer_b(uv_timer_t *t)
{
    struct sim_callbacks *cbs = t->data;

    sendgrid_flush(cbs, &cbs->stage_b);
}

static void on_timer_a(uv_timer_t *t)
{
    struct sim_callbacks *cbs = t->data;
    cJSON *item;

    sendgrid_flush(cbs, &cbs->stage_a);
    /* the final events follow one delay after their batch of "processed" */
    for (item = cJSON_DetachItemFromArray(cbs->stage_a_final, 0); item != NULL;
         item = cJSON_DetachItemFromArray(cbs->stage_a_final, 0))
        cJSON_AddItemToArray(cbs->stage_b, item);
    if (cJSON_GetArraySize(cbs->stage_b) > 0 && !uv_is_active((uv_handle_t *)&cbs->timer_b))
        uv_timer_start(&cbs->timer_b, on_timer_b, cbs->sim->opt.callback_delay_ms, 0);
}

static void random_id(struct sim *sim, char *out, size_t n)
{
    static const char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i;

    for (i = 0; i + 1 < n; i++)
        out[i] = chars[sim_rng_next(&sim->rng) % 64];
    out[n - 1] = '\0';
}

/* One event for address email of a personalization with custom_args args. */
static cJSON *make_event(struct sim *sim, const char *email, const char *event, uint64_t t_s,
                         const char *sg_message_id, const char *smtp_id, const cJSON *args)
{
    cJSON *e = cJSON_CreateObject();
    const cJSON *a;
    char id[23];

    random_id(sim, id, sizeof(id));
    cJSON_AddStringToObject(e, "email", email);
    cJSON_AddNumberToObject(e, "timestamp", (double)t_s);
    cJSON_AddStringToObject(e, "smtp-id", smtp_id);
    cJSON_AddStringToObject(e, "event", event);
    cJSON_AddStringToObject(e, "sg_event_id", id);
    cJSON_AddStringToObject(e, "sg_message_id", sg_message_id);
    if (strcmp(event, "delivered") == 0) {
        cJSON_AddStringToObject(e, "response", "250 OK");
    } else if (strcmp(event, "bounce") == 0) {
        cJSON_AddStringToObject(e, "type", "bounce");
        cJSON_AddStringToObject(e, "status", "5.1.1");
        cJSON_AddStringToObject(e, "bounce_classification", "Invalid Address");
        cJSON_AddStringToObject(e, "reason", "550 5.1.1 The email account that you tried to "
                                             "reach does not exist.");
    }
    /* custom_args arrive at the top level of every event */
    cJSON_ArrayForEach(a, args)
    {
        if (cJSON_IsString(a) && a->string != NULL && !cJSON_HasObjectItem(e, a->string))
            cJSON_AddStringToObject(e, a->string, a->valuestring);
    }
    return e;
}

/* The X-Message-Id header the SendGrid handler set, into out. */
static void message_id_of(const struct sim_response *res, char *out, size_t n)
{
    const char *h = res->headers.data ? strstr(res->headers.data, "X-Message-Id: ") : NULL;
    size_t len;

    out[0] = '\0';
    if (h == NULL)
        return;
    h += strlen("X-Message-Id: ");
    len = strcspn(h, "\r\n");
    if (len < n) {
        memcpy(out, h, len);
        out[len] = '\0';
    }
}

void sim_callbacks_after_sendgrid(struct sim *sim, const struct sim_request *req,
                                  const struct sim_response *res)
{
    struct sim_callbacks *cbs = sim->callbacks;
    uint64_t now_ms = sim_now_ms(sim);
    uint64_t later_ms = now_ms + 2 * (uint64_t)sim->opt.callback_delay_ms;
    char msgid[64], sgid[128], smtp_id[96];
    cJSON *doc;
    const cJSON *p, *t;
    int pi = 0;

    if (cbs == NULL || cbs->sg_key == NULL || sim->opt.sendgrid_webhook_url == NULL ||
        res->status != 202)
        return;
    message_id_of(res, msgid, sizeof(msgid));
    doc = cJSON_ParseWithLength(req->body, req->body_len);
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(doc, "personalizations"))
    {
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(p, "custom_args");
        int ti = 0;

        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(p, "to"))
        {
            const char *email = json_str(t, "email");
            const char *at = email ? strrchr(email, '@') : NULL;
            int bounce = at != NULL && strcasecmp(at + 1, BOUNCE_DOMAIN) == 0;

            if (email == NULL)
                continue;
            if (cbs->staged + 2 > MAX_STAGED_EVENTS) {
                if (!cbs->warned_full) {
                    cbs->warned_full = 1;
                    cr_warn("sim callbacks: %d SendGrid events waiting, further events dropped",
                            MAX_STAGED_EVENTS);
                }
                goto out;
            }
            snprintf(sgid, sizeof(sgid), "%s.filter0001.%d.%d.0", msgid, pi, ti);
            snprintf(smtp_id, sizeof(smtp_id), "<%s@ismtpd0001p1lon1.sendgrid.net>", msgid);
            cJSON_AddItemToArray(cbs->stage_a, make_event(sim, email, "processed", now_ms / 1000,
                                                          sgid, smtp_id, args));
            if (bounce || sim_provider_delivers(sim, SIM_EP_SENDGRID, email)) {
                cJSON_AddItemToArray(cbs->stage_a_final,
                                     make_event(sim, email, bounce ? "bounce" : "delivered",
                                                later_ms / 1000, sgid, smtp_id, args));
                cbs->staged++;
            }
            cbs->staged++;
            ti++;
        }
        pi++;
    }
out:
    cJSON_Delete(doc);
    if (cJSON_GetArraySize(cbs->stage_a) > 0 && !uv_is_active((uv_handle_t *)&cbs->timer_a))
        uv_timer_start(&cbs->timer_a, on_timer_a, sim->opt.callback_delay_ms, 0);
}

/* ---- control ---- */

struct list_stream {
    struct sim_callbacks *cbs;
    uint64_t next; /* next seq to show */
    int started;
    int first;
};

static int list_fill(void *state, struct cr_buf *out)
{
    struct list_stream *s = state;
    struct sim_callbacks *cbs = s->cbs;
    int rc = 0;

    if (!s->started) {
        s->started = 1;
        rc = cr_buf_append(out, "[", 1);
    }
    while (rc == 0 && out->len < STREAM_CHUNK && cbs->ring_count > 0) {
        uint64_t first = cbs->ring[cbs->ring_head].seq;
        struct cb_record *r;
        cJSON *o;
        char *text;

        if (s->next < first)
            s->next = first;
        r = record_find(cbs, s->next);
        if (r == NULL)
            break;
        s->next++;
        o = record_json(r);
        text = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON_Delete(o);
        if (text == NULL)
            return CR_ENOMEM;
        if (!s->first)
            rc = cr_buf_append(out, ",", 1);
        s->first = 0;
        if (rc == 0)
            rc = cr_buf_appends(out, text);
        cJSON_free(text);
    }
    if (rc < 0)
        return rc;
    if (out->len >= STREAM_CHUNK)
        return 0;
    rc = cr_buf_append(out, "]", 1);
    return rc < 0 ? rc : 1;
}

static void list_free(void *state)
{
    free(state);
}

static void list(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    struct list_stream *s;
    struct cr_buf v;
    uint64_t since = 0;
    char *end;

    if (req->method != HTTP_GET) {
        sim_res_literal(res, 405, "{\"error\":\"method not allowed\"}");
        sim_res_header(res, "Allow", "GET");
        return;
    }
    if (sim->callbacks == NULL) {
        sim_res_literal(res, 200, "[]");
        return;
    }
    cr_buf_init(&v, 64);
    if (sim_form_get(req->query, strlen(req->query), "since", &v) == 1) {
        since = strtoull(cr_buf_cstr(&v), &end, 10);
        if (v.len == 0 || *end != '\0' || cr_buf_cstr(&v)[0] == '-') {
            cr_buf_release(&v);
            sim_res_literal(res, 400, "{\"error\":\"since must be a sequence number\"}");
            return;
        }
    }
    cr_buf_release(&v);
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        sim_res_literal(res, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    s->cbs = sim->callbacks;
    s->next = since + 1;
    s->first = 1;
    res->status = 200;
    res->ctype = SIM_JSON;
    res->fill = list_fill;
    res->fill_free = list_free;
    res->fill_state = s;
}

int sim_callbacks_control(struct sim *sim, const struct sim_request *req,
                          struct sim_response *res)
{
    if (strcmp(req->path, "/_sim/callbacks") == 0) {
        list(sim, req, res);
        return 1;
    }
    if (strcmp(req->path, "/_sim/inbound") == 0) {
        inbound(sim, req, res);
        return 1;
    }
    return 0;
}

/* ---- lifetime ---- */

static EVP_PKEY *load_ec_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *key;

    if (f == NULL)
        return NULL;
    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (key != NULL && EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
        EVP_PKEY_free(key);
        key = NULL;
    }
    return key;
}

static void on_stage_timer_closed(uv_handle_t *h)
{
    struct sim_callbacks *cbs = h->data;

    cbs->handles_open--;
    if (cbs->handles_open == 0) {
        EVP_PKEY_free(cbs->sg_key);
        free(cbs);
    }
}

int sim_callbacks_init(struct sim *sim)
{
    struct sim_callbacks *cbs = calloc(1, sizeof(*cbs));
    struct cr_http_opts opts;
    int rc = CR_ENOMEM;

    if (cbs == NULL)
        return CR_ENOMEM;
    cbs->sim = sim;
    cbs->next_seq = 1;
    if (sim->opt.sendgrid_webhook_key != NULL) {
        cbs->sg_key = load_ec_key(sim->opt.sendgrid_webhook_key);
        if (cbs->sg_key == NULL) {
            cr_error("sim --sendgrid-webhook-key %s: not a readable EC private key PEM",
                     sim->opt.sendgrid_webhook_key);
            rc = CR_ECONFIG;
            goto fail;
        }
    }
    cbs->stage_a = cJSON_CreateArray();
    cbs->stage_a_final = cJSON_CreateArray();
    cbs->stage_b = cJSON_CreateArray();
    if (cbs->stage_a == NULL || cbs->stage_a_final == NULL || cbs->stage_b == NULL)
        goto fail;
    memset(&opts, 0, sizeof(opts));
    opts.max_host_connections = 16;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cr_http_init(sim->loop, &opts, &cbs->http);
    if (rc < 0)
        goto fail;
    uv_timer_init(sim->loop, &cbs->timer_a);
    uv_timer_init(sim->loop, &cbs->timer_b);
    cbs->timer_a.data = cbs;
    cbs->timer_b.data = cbs;
    cbs->handles_open = 2;
    sim->callbacks = cbs;
    return 0;
fail:
    cJSON_Delete(cbs->stage_a);
    cJSON_Delete(cbs->stage_a_final);
    cJSON_Delete(cbs->stage_b);
    EVP_PKEY_free(cbs->sg_key);
    free(cbs);
    return rc;
}

void sim_callbacks_close(struct sim *sim)
{
    struct sim_callbacks *cbs = sim->callbacks;
    size_t i;

    if (cbs == NULL)
        return;
    sim->callbacks = NULL;
    cbs->closing = 1;
    cr_http_close(cbs->http, NULL, NULL); /* in-flight attempts end in on_sent, which returns */
    cbs->http = NULL;
    while (cbs->jobs != NULL) {
        struct cb_job *job = cbs->jobs;
        struct cb_record *r = record_find(cbs, job->seq);

        if (r != NULL)
            r->state = "abandoned";
        if (job->answer != NULL) {
            struct sim_response *res = sim_pending_response(job->answer);

            if (res != NULL)
                sim_res_literal(res, 503, "{\"error\":\"crier-sim is shutting down\"}");
            sim_pending_finish(job->answer);
            job->answer = NULL;
        }
        uv_timer_stop(&job->timer);
        job_free(job);
    }
    for (i = 0; i < cbs->ring_count; i++)
        record_free(&cbs->ring[(cbs->ring_head + i) % MAX_RECORDS]);
    free(cbs->ring);
    cbs->ring = NULL;
    cbs->ring_count = 0;
    cJSON_Delete(cbs->stage_a);
    cJSON_Delete(cbs->stage_a_final);
    cJSON_Delete(cbs->stage_b);
    cbs->stage_a = cbs->stage_a_final = cbs->stage_b = NULL;
    uv_close((uv_handle_t *)&cbs->timer_a, on_stage_timer_closed);
    uv_close((uv_handle_t *)&cbs->timer_b, on_stage_timer_closed);
    curl_global_cleanup();
}
