/* The /api/v1 router and the HTTP job intake (see api.h). A posted job takes
 * the same checks as one read from crier:jobs (cr_job_parse, the key's scopes)
 * so that its errors come back in the answer, and is then written to
 * crier:jobs signed, where the intake checks it again: one path through
 * intake, whichever door a job came in by. */
#include "api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cr_error.h"
#include "cr_log.h"
#include "dashboard.h"
#include "job.h"
#include "limiter.h"
#include "sigs.h"
#include "tokens.h"

#define PREFIX "/api/v1"
#define ANSWER_MAX (64 * 1024)

struct cr_api {
    struct cr_daemon *d;
    struct cr_bucket *buckets; /* one per integrator key, same order */
    size_t nbuckets;
    size_t inflight;           /* calls waiting on Redis */
    int freeing;
    struct cr_dash *dash;      /* the dashboard's answers; not owned */
};

/* One request in the router, from its credential check to its answer. */
struct call {
    struct cr_api *api;
    struct cr_httpd_req *req;
    const struct cr_integrator *who; /* NULL for a dashboard token */
    const char *token_name;          /* the dashboard token's name, for the log */
    unsigned roles;
    char id[CR_JOB_ID_MAX + 1];
    char ts[24];
    char sig[CR_SIG_HEADER_MAX + 1];
};

typedef void (*route_fn)(struct call *c);

struct route {
    const char *method;
    const char *path;  /* exact; a prefix when it ends in '/' (one more path segment);
                          '*' stands for one segment (a job id) */
    unsigned roles;    /* any of them may call it */
    route_fn fn;
};

static void post_job(struct call *c);
static void get_job(struct call *c);
static void dash_whoami(struct call *c);
static void dash_jobs(struct call *c);
static void dash_report(struct call *c);
static void dash_cancel(struct call *c);
static void dash_fleet(struct call *c);
static void dash_events(struct call *c);

#define DASH (CR_API_VIEWER | CR_API_OPERATOR)

static const struct route routes[] = {
    {"POST", PREFIX "/jobs", CR_API_INTEGRATOR, post_job},
    {"GET", PREFIX "/jobs/", CR_API_INTEGRATOR | DASH, get_job},
    {"GET", PREFIX "/whoami", DASH, dash_whoami},
    {"GET", PREFIX "/jobs", DASH, dash_jobs},
    {"GET", PREFIX "/jobs/*/report.csv", DASH, dash_report},
    {"POST", PREFIX "/jobs/*/cancel", CR_API_OPERATOR, dash_cancel},
    {"GET", PREFIX "/fleet", DASH, dash_fleet},
    {"GET", PREFIX "/events", DASH, dash_events},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

int cr_api_init(struct cr_daemon *d, struct cr_api **out)
{
    const struct cr_integrators *k = d->cfg->integrators;
    struct cr_api *api = calloc(1, sizeof(*api));
    int64_t now = cr_now_ms();
    size_t i;

    if (api == NULL)
        return CR_ENOMEM;
    api->d = d;
    if (k != NULL && k->n > 0) {
        api->buckets = calloc(k->n, sizeof(*api->buckets));
        if (api->buckets == NULL) {
            free(api);
            return CR_ENOMEM;
        }
        api->nbuckets = k->n;
        for (i = 0; i < k->n; i++)
            cr_bucket_init(&api->buckets[i], k->v[i].rate, k->v[i].burst, now);
    }
    *out = api;
    return 0;
}

void cr_api_set_dashboard(struct cr_api *api, struct cr_dash *dash)
{
    api->dash = dash;
}

int cr_api_owns(const char *path)
{
    return strcmp(path, PREFIX) == 0 || strncmp(path, PREFIX "/", strlen(PREFIX) + 1) == 0;
}

static void maybe_free(struct cr_api *api)
{
    if (api->freeing && api->inflight == 0) {
        free(api->buckets);
        free(api);
    }
}

void cr_api_free(struct cr_api *api)
{
    if (api == NULL)
        return;
    api->freeing = 1;
    maybe_free(api);
}

/* ---- answers ------------------------------------------------------------- */

static void answer_json(struct cr_httpd_req *req, int status, const char *extra, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;

    if (s == NULL)
        cr_httpd_respond(req, 503, "application/json", NULL, "{\"code\":\"no_memory\"}", 20);
    else
        cr_httpd_respond(req, status, "application/json", extra, s, strlen(s));
    free(s);
    cJSON_Delete(o);
}

static void refuse(struct cr_httpd_req *req, int status, const char *extra, const char *code,
                   const char *error)
{
    cJSON *o = cJSON_CreateObject();

    if (o != NULL) {
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "error", error);
    }
    answer_json(req, status, extra, o);
}

static void call_end(struct call *c)
{
    struct cr_api *api = c->api;

    free(c);
    maybe_free(api);
}

/* ---- credentials --------------------------------------------------------- */

/* Fills c->who and c->roles from the request's bearer token or signature
 * headers (over the body). Returns 0, or answers 401 and returns CR_EINVAL. */
static int authenticate(struct call *c)
{
    const struct cr_config *cfg = c->api->d->cfg;
    struct cr_httpd_req *req = c->req;
    const struct cr_integrator *who = NULL;
    struct cr_job_error err;
    struct cr_signed s;
    unsigned char mac[CR_SIG_MAC_LEN];
    char why[160];
    enum cr_role role;
    int rc;

    /* a dashboard token (every one compared, each in constant time) */
    role = cr_tokens_check(cfg->dashboard, cr_httpd_header(req, "authorization"),
                           &c->token_name);
    if (role != CR_ROLE_NONE) {
        c->who = NULL;
        c->roles = role == CR_ROLE_OPERATOR ? (CR_API_VIEWER | CR_API_OPERATOR) : CR_API_VIEWER;
        return 0;
    }
    rc = cr_auth_bearer(cfg->integrators, cr_httpd_header(req, "authorization"), &who, why,
                        sizeof(why));
    if (rc == CR_ENOTFOUND) {
        s.key = cr_httpd_header(req, "x-crier-key");
        s.ts = cr_httpd_header(req, "x-crier-timestamp");
        s.sig = cr_httpd_header(req, "x-crier-signature");
        if (s.key == NULL && s.sig == NULL) {
            refuse(req, 401, "WWW-Authenticate: Bearer realm=\"crier\"\r\n", "unauthorized",
                   "no credentials: send Authorization: Bearer <key id>.<secret>, or "
                   "X-Crier-Key, X-Crier-Timestamp and X-Crier-Signature");
            return CR_EINVAL;
        }
        memset(&err, 0, sizeof(err));
        rc = cr_auth_verify(cfg->integrators, &s, req->body.data ? req->body.data : "",
                            req->body.len, cr_now_ms(), cfg->intake_sig_window_s, &who, mac,
                            &err);
        if (rc != 0) {
            refuse(req, 401, "WWW-Authenticate: Bearer realm=\"crier\"\r\n", "unauthorized",
                   err.message);
            return CR_EINVAL;
        }
        snprintf(c->ts, sizeof(c->ts), "%s", s.ts);
        snprintf(c->sig, sizeof(c->sig), "%s", s.sig);
    } else if (rc != 0) {
        refuse(req, 401, "WWW-Authenticate: Bearer realm=\"crier\"\r\n", "unauthorized", why);
        return CR_EINVAL;
    }
    c->who = who;
    c->roles = CR_API_INTEGRATOR;
    return 0;
}

/* Takes one token of the caller's bucket, or answers 429. */
static int rate_limit(struct call *c)
{
    const struct cr_integrators *k = c->api->d->cfg->integrators;
    size_t i;
    int64_t wait_ms = 0;
    char extra[64];
    char why[128];

    if (c->who == NULL)
        return 0; /* a dashboard token: the event stream's caps bound it */
    i = (size_t)(c->who - k->v);
    if (i >= c->api->nbuckets || cr_bucket_take(&c->api->buckets[i], cr_now_ms(), &wait_ms))
        return 0;
    snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", (long long)(wait_ms + 999) / 1000);
    snprintf(why, sizeof(why), "key '%s': over its rate of %ld requests a second (burst %ld)",
             c->who->id, c->who->rate, c->who->burst);
    refuse(c->req, 429, extra, "rate_limited", why);
    return CR_EBUSY;
}

/* ---- POST /api/v1/jobs --------------------------------------------------- */

static void on_posted(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct call *c = ud;
    struct cr_httpd_req *req = c->req;
    char url[CR_JOB_ID_MAX + 32];
    char loc[CR_JOB_ID_MAX + 64];
    cJSON *o;

    (void)r;
    c->api->inflight--;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        cr_error("api: posting job %s for key '%s' failed (%s); answered 503", c->id,
                 c->who->id, reply && reply->str ? reply->str : "connection lost");
        refuse(req, 503, "Retry-After: 1\r\n", "unavailable", "could not write the job; retry");
        call_end(c);
        return;
    }
    cr_info("api: job %s posted by key '%s' as entry %s", c->id, c->who->id, reply->str);
    snprintf(url, sizeof(url), PREFIX "/jobs/%s", c->id);
    snprintf(loc, sizeof(loc), "Location: %s\r\n", url);
    o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "id", c->id);
        cJSON_AddStringToObject(o, "status_url", url);
        cJSON_AddStringToObject(o, "entry", reply->str);
    }
    answer_json(req, 202, loc, o);
    call_end(c);
}

static void on_existing(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct call *c = ud;
    struct cr_daemon *d = c->api->d;
    struct cr_httpd_req *req = c->req;
    const redisReply *doc;
    const redisReply *key;
    const char *argv[11];
    int rc;

    (void)r;
    c->api->inflight--;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        refuse(req, 503, "Retry-After: 1\r\n", "unavailable", "could not read the job; retry");
        call_end(c);
        return;
    }
    doc = reply->element[0];
    key = reply->element[1];
    if (doc->type == REDIS_REPLY_STRING) {
        int same = doc->len == req->body.len && memcmp(doc->str, req->body.data, doc->len) == 0 &&
                   key->type == REDIS_REPLY_STRING && strcmp(key->str, c->who->id) == 0;
        char why[CR_JOB_ID_MAX + 96];
        cJSON *o;

        if (!same) {
            snprintf(why, sizeof(why), "id: job '%s' exists with other content", c->id);
            refuse(req, 409, NULL, "conflict", why);
        } else {
            /* the same job again (a retried post): already taken, nothing to write */
            o = cJSON_CreateObject();
            if (o != NULL) {
                cJSON_AddStringToObject(o, "id", c->id);
                snprintf(why, sizeof(why), PREFIX "/jobs/%s", c->id);
                cJSON_AddStringToObject(o, "status_url", why);
            }
            answer_json(req, 202, NULL, o);
        }
        call_end(c);
        return;
    }
    if (req->conn == NULL) { /* the client gave up: it will post again */
        cr_httpd_respond(req, 503, NULL, NULL, NULL, 0);
        call_end(c);
        return;
    }
    argv[0] = "XADD";
    argv[1] = d->keys.jobs;
    argv[2] = "*";
    argv[3] = "job";
    argv[4] = req->body.data;
    argv[5] = "key";
    argv[6] = c->who->id;
    argv[7] = "ts";
    argv[8] = c->ts;
    argv[9] = "sig";
    argv[10] = c->sig;
    {
        size_t lens[11];
        int i;

        for (i = 0; i < 11; i++)
            lens[i] = i == 4 ? req->body.len : strlen(argv[i]);
        rc = cr_redis_argv(d->rc, on_posted, c, 0, 11, argv, lens);
    }
    if (rc < 0) {
        refuse(req, 503, "Retry-After: 1\r\n", "unavailable", "redis is not connected; retry");
        call_end(c);
        return;
    }
    c->api->inflight++;
}

static void post_job(struct call *c)
{
    struct cr_daemon *d = c->api->d;
    struct cr_httpd_req *req = c->req;
    const char *body = req->body.data ? req->body.data : "";
    struct cr_job_error err;
    struct cr_job job;
    char key[CR_KEY_MAX];
    int rc;

    memset(&err, 0, sizeof(err));
    rc = cr_job_parse(body, req->body.len, &d->cfg->limits, &job, &err);
    if (rc == CR_ENOMEM) {
        refuse(req, 503, "Retry-After: 1\r\n", "no_memory", err.message);
        call_end(c);
        return;
    }
    if (rc != 0) {
        refuse(req, strcmp(err.code, "too_large") == 0 ? 413 : 400, NULL, err.code, err.message);
        call_end(c);
        return;
    }
    rc = cr_auth_scopes(c->who, &job, &err);
    snprintf(c->id, sizeof(c->id), "%s", job.id);
    cr_job_release(&job);
    if (rc != 0) {
        refuse(req, 403, NULL, err.code, err.message);
        call_end(c);
        return;
    }
    if (c->sig[0] == '\0') {
        /* a bearer token: the job is signed here, as the integrator would have */
        snprintf(c->ts, sizeof(c->ts), "%lld", (long long)(cr_now_ms() / 1000));
        if (cr_sig_make(c->who->secret, c->who->secret_len, c->ts, body, req->body.len,
                        c->sig) != 0) {
            refuse(req, 503, "Retry-After: 1\r\n", "no_memory", "out of memory");
            call_end(c);
            return;
        }
    }
    if (c->id[0] == '\0') {
        /* named as the intake names a signed job: by its signature */
        char mine[CR_SIG_TEXT_LEN];

        if (cr_sig_make(c->who->secret, c->who->secret_len, c->ts, body, req->body.len,
                        mine) != 0) {
            refuse(req, 503, "Retry-After: 1\r\n", "no_memory", "out of memory");
            call_end(c);
            return;
        }
        snprintf(c->id, sizeof(c->id), "s-%.32s", mine + 3);
    }
    cr_key_for(&d->keys, "job", c->id, key, sizeof(key));
    if (cr_redis_cmd(d->rc, on_existing, c, 0, "HMGET %s doc key", key) < 0) {
        refuse(req, 503, "Retry-After: 1\r\n", "unavailable", "redis is not connected; retry");
        call_end(c);
        return;
    }
    c->api->inflight++;
}

/* ---- GET /api/v1/jobs/<id> ----------------------------------------------- */

static int hidden_field(const char *name)
{
    return strcmp(name, "doc") == 0 || strncmp(name, "exp_", 4) == 0 ||
           strcmp(name, "max_audience") == 0;
}

static int all_digits(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return i > 0 && i < 16;
}

static void on_job(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct call *c = ud;
    struct cr_httpd_req *req = c->req;
    const char *owner = NULL;
    cJSON *o;
    size_t i;

    (void)r;
    c->api->inflight--;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        refuse(req, 503, "Retry-After: 1\r\n", "unavailable", "could not read the job; retry");
        call_end(c);
        return;
    }
    for (i = 0; i + 1 < reply->elements; i += 2) {
        if (strcmp(reply->element[i]->str, "key") == 0)
            owner = reply->element[i + 1]->str;
    }
    if (owner == NULL || strcmp(owner, c->who->id) != 0) {
        /* another key's job reads as no job: ids are not for probing */
        refuse(req, 404, NULL, "not_found", "no job with this id for this key (a job just "
                                            "posted is found once the intake has taken it)");
        call_end(c);
        return;
    }
    o = cJSON_CreateObject();
    if (o != NULL)
        cJSON_AddStringToObject(o, "id", c->id);
    for (i = 0; o != NULL && i + 1 < reply->elements; i += 2) {
        const char *name = reply->element[i]->str;
        const char *v = reply->element[i + 1]->str;

        if (name == NULL || v == NULL || hidden_field(name))
            continue;
        if (all_digits(v))
            cJSON_AddNumberToObject(o, name, strtod(v, NULL));
        else
            cJSON_AddStringToObject(o, name, v);
    }
    answer_json(req, 200, NULL, o);
    call_end(c);
}

static int id_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return 0;
    }
    return i > 0 && i <= CR_JOB_ID_MAX;
}

static void get_job(struct call *c)
{
    struct cr_daemon *d = c->api->d;
    const char *id = c->req->path + strlen(PREFIX "/jobs/");
    char key[CR_KEY_MAX];

    if (!id_ok(id)) {
        refuse(c->req, 404, NULL, "not_found", "no such job id");
        call_end(c);
        return;
    }
    if (c->who == NULL) {
        /* a dashboard token: any job, as counters and reasons */
        struct cr_httpd_req *req = c->req;
        struct cr_dash *dash = c->api->dash;

        call_end(c);
        cr_dash_job(dash, req, id);
        return;
    }
    snprintf(c->id, sizeof(c->id), "%s", id);
    cr_key_for(&d->keys, "job", c->id, key, sizeof(key));
    if (cr_redis_cmd(d->rc, on_job, c, 0, "HGETALL %s", key) < 0) {
        refuse(c->req, 503, "Retry-After: 1\r\n", "unavailable", "redis is not connected; retry");
        call_end(c);
        return;
    }
    c->api->inflight++;
}

/* ---- the router ---------------------------------------------------------- */

static int path_matches(const struct route *rt, const char *path)
{
    const char *star = strchr(rt->path, '*');
    size_t n = strlen(rt->path);
    size_t seg;

    if (star != NULL) {
        n = (size_t)(star - rt->path);
        if (strncmp(path, rt->path, n) != 0)
            return 0;
        seg = strcspn(path + n, "/");
        return seg > 0 && strcmp(path + n + seg, star + 1) == 0;
    }
    if (rt->path[n - 1] == '/')
        return strncmp(path, rt->path, n) == 0 && path[n] != '\0' &&
               strchr(path + n, '/') == NULL;
    return strcmp(path, rt->path) == 0;
}

/* ---- the dashboard's routes (dashboard.h) --------------------------------- */

/* The job id a "*" route names: the segment after /jobs/. Returns NULL (and
 * answers 404) when it is not a job id. */
static const char *star_id(struct call *c)
{
    const char *p = c->req->path + strlen(PREFIX "/jobs/");
    size_t n = strcspn(p, "/");

    if (n == 0 || n > CR_JOB_ID_MAX) {
        refuse(c->req, 404, NULL, "not_found", "no such job id");
        return NULL;
    }
    memcpy(c->id, p, n);
    c->id[n] = '\0';
    if (!id_ok(c->id)) {
        refuse(c->req, 404, NULL, "not_found", "no such job id");
        return NULL;
    }
    return c->id;
}

static void dash_whoami(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    const char *name = c->token_name;
    int op = (c->roles & CR_API_OPERATOR) != 0;

    call_end(c);
    cr_dash_whoami(req, name, op);
}

static void dash_jobs(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    struct cr_dash *dash = c->api->dash;

    call_end(c);
    cr_dash_jobs(dash, req);
}

static void dash_report(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    struct cr_dash *dash = c->api->dash;
    char id[CR_JOB_ID_MAX + 1];

    if (star_id(c) == NULL) {
        call_end(c);
        return;
    }
    memcpy(id, c->id, sizeof(id));
    call_end(c);
    cr_dash_report(dash, req, id);
}

static void dash_cancel(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    struct cr_dash *dash = c->api->dash;
    const char *who = c->token_name;
    char id[CR_JOB_ID_MAX + 1];

    if (star_id(c) == NULL) {
        call_end(c);
        return;
    }
    memcpy(id, c->id, sizeof(id));
    call_end(c);
    cr_dash_cancel(dash, req, id, who);
}

static void dash_fleet(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    struct cr_dash *dash = c->api->dash;

    call_end(c);
    cr_dash_fleet(dash, req);
}

static void dash_events(struct call *c)
{
    struct cr_httpd_req *req = c->req;
    struct cr_dash *dash = c->api->dash;

    call_end(c);
    cr_dash_events(dash, req);
}

void cr_api_handle(struct cr_api *api, struct cr_httpd_req *req)
{
    const struct route *match = NULL;
    char allow[64] = "Allow: ";
    struct call *c;
    size_t i;
    int found = 0;

    for (i = 0; i < NROUTES; i++) {
        if (!path_matches(&routes[i], req->path))
            continue;
        found = 1;
        if (strcmp(routes[i].method, req->method) == 0)
            match = &routes[i];
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                 strlen(allow) > 7 ? ", " : "", routes[i].method);
    }
    if (!found || (api->d->cfg->integrators == NULL && !cr_dash_enabled(api->dash))) {
        refuse(req, 404, NULL, "not_found", "no such API route");
        return;
    }
    if (match == NULL) {
        snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "\r\n");
        refuse(req, 405, allow, "method_not_allowed", "method not allowed on this route");
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        refuse(req, 503, "Retry-After: 1\r\n", "no_memory", "out of memory");
        return;
    }
    c->api = api;
    c->req = req;
    if (authenticate(c) != 0 || rate_limit(c) != 0) {
        free(c);
        return;
    }
    if (!(match->roles & c->roles)) {
        refuse(req, 403, NULL, "forbidden", "this credential may not call this route");
        free(c);
        return;
    }
    match->fn(c);
}
