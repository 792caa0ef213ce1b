/* Firebase Cloud Messaging HTTP v1 adapter: one JSON message per push token,
 * classified by the FcmError errorCode (or the google.rpc status) of the
 * answer. The bearer token is either configured (access_token) or fetched
 * with a service account's RS256-signed JWT (RFC 7523) and cached until five
 * minutes before it expires. */
#include "adapter.h"
#include "cr_error.h"
#include "cr_str.h"

#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define JWT_BEARER_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define ASSERTION_LIFETIME_S 3600   /* Google accepts at most one hour */
#define REFRESH_BEFORE_MS (5 * 60 * 1000) /* fetch anew this long before expiry */
#define FETCH_RETRY_MS 2000         /* after a failed fetch, wait this long */
#define ACCESS_TOKEN_MAX 4096
#define SERVICE_ACCOUNT_MAX (64 * 1024)
#define APNS_COLLAPSE_MAX 64        /* apns-collapse-id limit in bytes */

/* The bearer token for the v1 API, read by build only through fcm_bearer(). */
struct fcm_token {
    char *access_token; /* NULL = none yet (service account) */
    int64_t expires_ms; /* unix ms; unused for a configured token */
    int64_t failed_ms;  /* when the last fetch failed, 0 = it did not */
    int fetching;       /* a token request is out */
};

/* The service account's credentials (NULL when access_token is configured). */
struct fcm_account {
    char *client_email;
    char *private_key; /* RSA PEM */
    char *token_url;   /* token_url from config, else the key's token_uri */
};

struct fcm {
    char *url; /* base + /v1/projects/<project_id>/messages:send */
    struct fcm_token token;
    int is_static;     /* access_token configured: never fetched, never dropped */
    struct fcm_account sa;
    long default_ttl_s; /* how long FCM keeps a push when the job has no expiry */
};

static const char *const fcm_keys[] = {"project_id", "access_token",  "service_account",
                                       "token_url",  "default_ttl_s", NULL};

static const char *fcm_bearer(const struct fcm *f)
{
    return f->token.access_token;
}

static void fcm_free(void *state)
{
    struct fcm *f = state;

    if (f == NULL)
        return;
    free(f->url);
    cr_free_secret(f->token.access_token);
    free(f->sa.client_email);
    cr_free_secret(f->sa.private_key);
    free(f->sa.token_url);
    free(f);
}

static int http_url_ok(const char *s)
{
    const char *p;

    if (strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0)
        return 0;
    for (p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    }
    return 1;
}

/* Copies the string member key of the key file into *out; "<path>.service_account.<key>"
 * names it in errors. */
static int sa_string(const cJSON *doc, const char *path, const char *key, int required,
                     char **out, char *err, size_t errlen)
{
    char sub[256];

    snprintf(sub, sizeof(sub), "%s.service_account", path);
    return cr_cfg_string(doc, sub, key, required, out, err, errlen);
}

/* Reads the service account key (a JSON text, or an object) and token_url. */
static int init_account(struct fcm *f, const cJSON *cfg, const char *path, char *err,
                        size_t errlen)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(cfg, "service_account");
    cJSON *parsed = NULL;
    const cJSON *doc = item;
    char *token_url = NULL;
    char sub[256];
    char why[128];
    int rc;

    snprintf(sub, sizeof(sub), "%s.service_account", path);
    if (cJSON_IsString(item)) {
        size_t len = strlen(item->valuestring);

        if (len > SERVICE_ACCOUNT_MAX)
            return cr_cfg_fail(err, errlen, path, "service_account", "is over %d bytes",
                               SERVICE_ACCOUNT_MAX);
        parsed = cJSON_ParseWithLength(item->valuestring, len);
        doc = parsed;
    }
    if (!cJSON_IsObject(doc)) {
        rc = cr_cfg_fail(err, errlen, path, "service_account",
                         "must be the service account key file (JSON), e.g. "
                         "\"$file:/run/credentials/crierd.service/fcm.json\"");
        goto out;
    }
    rc = sa_string(doc, path, "client_email", 1, &f->sa.client_email, err, errlen);
    if (rc < 0)
        goto out;
    if (!cr_header_safe(f->sa.client_email) || strchr(f->sa.client_email, '@') == NULL) {
        rc = cr_cfg_fail(err, errlen, sub, "client_email", "must be an email address");
        goto out;
    }
    rc = sa_string(doc, path, "private_key", 1, &f->sa.private_key, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_pem_key_check(f->sa.private_key, "RSA", why, sizeof(why));
    if (rc == CR_ENOMEM)
        goto out;
    if (rc < 0) {
        rc = cr_cfg_fail(err, errlen, sub, "private_key", "%s", why);
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "token_url", 0, &token_url, err, errlen);
    if (rc < 0)
        goto out;
    if (token_url != NULL) {
        if (!http_url_ok(token_url)) {
            rc = cr_cfg_fail(err, errlen, path, "token_url",
                             "must start with http:// or https:// and hold no spaces");
            goto out;
        }
        f->sa.token_url = token_url;
        token_url = NULL;
    } else {
        rc = sa_string(doc, path, "token_uri", 0, &f->sa.token_url, err, errlen);
        if (rc < 0)
            goto out;
        if (f->sa.token_url == NULL) {
            rc = cr_cfg_fail(err, errlen, sub, "token_uri", "is required (or set %s.token_url)",
                             path);
            goto out;
        }
        if (!http_url_ok(f->sa.token_url)) {
            rc = cr_cfg_fail(err, errlen, sub, "token_uri",
                             "must start with http:// or https:// and hold no spaces");
            goto out;
        }
    }
    rc = 0;
out:
    free(token_url);
    cJSON_Delete(parsed);
    return rc;
}

/* Project ids are letters, digits and '-' (with "domain.tld:" in front for
 * the old domain-scoped ones): nothing that could change the URL path. */
static int project_id_ok(const char *s)
{
    return cr_chars_ok(s, strlen(s), CR_CHARS_LETTERS | CR_CHARS_DIGITS, "-._:");
}

static int fcm_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                    char *err, size_t errlen)
{
    struct fcm *f;
    char *base = NULL;
    char *project = NULL;
    struct cr_buf b;
    int has_sa;
    int rc;

    *state = NULL;
    cr_buf_init(&b, 2048);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "project_id", 1, &project, err, errlen);
    if (rc < 0)
        goto out;
    if (!project_id_ok(project)) {
        rc = cr_cfg_fail(err, errlen, path, "project_id",
                         "may hold only letters, digits and - . _ :");
        goto out;
    }
    has_sa = cJSON_GetObjectItemCaseSensitive(cfg, "service_account") != NULL;
    if (has_sa && cJSON_GetObjectItemCaseSensitive(cfg, "access_token") != NULL) {
        rc = cr_cfg_fail(err, errlen, path, "access_token",
                         "give either access_token or service_account, not both");
        goto out;
    }
    if (has_sa) {
        rc = init_account(f, cfg, path, err, errlen);
        if (rc < 0)
            goto out;
    } else {
        rc = cr_cfg_string(cfg, path, "access_token", 1, &f->token.access_token, err, errlen);
        if (rc < 0) {
            if (cJSON_GetObjectItemCaseSensitive(cfg, "access_token") == NULL)
                cr_cfg_fail(err, errlen, path, "access_token",
                            "is required (or service_account, the key file)");
            goto out;
        }
        if (!cr_header_safe(f->token.access_token)) {
            rc = cr_cfg_fail(err, errlen, path, "access_token", "must not contain CR or LF");
            goto out;
        }
        if (cJSON_GetObjectItemCaseSensitive(cfg, "token_url") != NULL) {
            rc = cr_cfg_fail(err, errlen, path, "token_url", "needs service_account");
            goto out;
        }
        f->is_static = 1;
    }
    rc = cr_cfg_push_ttl(cfg, path, &f->default_ttl_s, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_buf_appendf(&b, "%s/v1/projects/%s/messages:send", base, project);
    if (rc < 0) {
        rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "project_id", "is too long") : rc;
        goto out;
    }
    f->url = cr_buf_steal(&b);
    *state = f;
    f = NULL;
    rc = 0;
out:
    cr_buf_release(&b);
    free(base);
    free(project);
    fcm_free(f);
    return rc;
}

/* The v1 message for m. No android.collapse_key: FCM keeps at most four
 * collapse keys per device and then drops messages without saying which, and
 * every crier alert is one a resident should see, so each is sent
 * non-collapsible (FCM stores up to 100 of those for an offline device).
 * Expiry and priorities as for APNs (cr_push_delivery), for Android in
 * android.ttl and android.priority, for iPhones in the APNs headers FCM
 * passes on. */
static int build_message(const struct cr_message *m, int64_t now_ms, long default_ttl_s,
                         cJSON *msg)
{
    struct cr_push_delivery dl;
    char ttl[32];
    char exp[32];
    cJSON *o;

    cr_push_delivery(m, now_ms, default_ttl_s, &dl);
    snprintf(ttl, sizeof(ttl), "%llds", (long long)dl.ttl_s);
    snprintf(exp, sizeof(exp), "%lld", (long long)dl.apns_expiration);

    if (cr_json_add_string(msg, "token", m->address) < 0)
        return CR_ENOMEM;
    if (m->push_title != NULL || m->push_body != NULL) {
        o = cJSON_AddObjectToObject(msg, "notification");
        if (o == NULL || cr_json_add_string(o, "title", m->push_title) < 0 ||
            cr_json_add_string(o, "body", m->push_body) < 0)
            return CR_ENOMEM;
    }
    o = cJSON_AddObjectToObject(msg, "data");
    if (o == NULL || cr_json_add_string(o, "crier_ref", m->ref) < 0 ||
        cr_json_add_string(o, "crier_job", m->job_id) < 0)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(msg, "android");
    if (o == NULL || cr_json_add_string(o, "priority", dl.android_priority) < 0 ||
        cr_json_add_string(o, "ttl", ttl) < 0)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(msg, "apns");
    if (o == NULL)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(o, "headers");
    if (o == NULL || cr_json_add_string(o, "apns-priority", dl.apns_priority) < 0 ||
        cr_json_add_string(o, "apns-expiration", exp) < 0)
        return CR_ENOMEM;
    /* As the APNs adapter: a second copy of the same job's alert replaces
     * the first on the screen (Apple allows 64 bytes). */
    if (m->job_id != NULL && m->job_id[0] != '\0' && strlen(m->job_id) <= APNS_COLLAPSE_MAX &&
        cr_json_add_string(o, "apns-collapse-id", m->job_id) < 0)
        return CR_ENOMEM;
    return 0;
}

/* One push per request (n must be 1; FCM v1 has no multicast). CR_EINVAL
 * without a token or for a message addressed to another push platform. */
static int fcm_build(void *state, const struct cr_message *const *msgs, size_t n,
                     struct cr_request *req)
{
    const struct fcm *f = state;
    const struct cr_message *m;
    cJSON *root = NULL;
    cJSON *msg;
    int rc = CR_EINVAL;

    if (n != 1)
        goto out;
    m = msgs[0];
    if (m->address == NULL || m->address[0] == '\0')
        goto out;
    if (m->platform != NULL && strcmp(m->platform, "fcm") != 0)
        goto out;
    rc = CR_EAGAIN;
    if (fcm_bearer(f) == NULL)
        goto out; /* auth_request said no credential: not reached by the dispatcher */
    rc = CR_ENOMEM;
    root = cJSON_CreateObject();
    if (root == NULL)
        goto out;
    msg = cJSON_AddObjectToObject(root, "message");
    if (msg == NULL)
        goto out;
    rc = build_message(m, req->now_ms, f->default_ttl_s, msg);
    if (rc < 0)
        goto out;
    rc = cr_req_set_json(req, root);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, f->url);
    if (rc < 0)
        goto out;
    rc = cr_req_add_bearer(req, fcm_bearer(f));
    if (rc < 0)
        goto out;
    rc = cr_req_add_header(req, "Content-Type", "application/json");
    if (rc < 0)
        goto out;
    snprintf(req->method, sizeof(req->method), "POST");
    req->userpwd = NULL;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* The errorCode of the FcmError entry in error.details[], or NULL. */
static const char *fcm_error_code(const cJSON *error)
{
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(error, "details");
    const cJSON *d;

    if (!cJSON_IsArray(details))
        return NULL;
    cJSON_ArrayForEach(d, details)
    {
        const char *type = cr_json_string(d, "@type");
        const char *code = cr_json_string(d, "errorCode");

        if (type != NULL && code != NULL && strstr(type, "FcmError") != NULL)
            return code;
    }
    return NULL;
}

enum fcm_class { FCM_UNKNOWN, FCM_SUPPRESS, FCM_FAILED, FCM_RATE, FCM_SERVER, FCM_AUTH };

static const struct {
    const char *name;
    enum fcm_class cls;
} fcm_codes[] = {
    {"UNREGISTERED", FCM_SUPPRESS},
    {"INVALID_ARGUMENT", FCM_FAILED},
    {"SENDER_ID_MISMATCH", FCM_FAILED},
    {"NOT_FOUND", FCM_FAILED},
    {"QUOTA_EXCEEDED", FCM_RATE},
    {"RESOURCE_EXHAUSTED", FCM_RATE},
    {"UNAVAILABLE", FCM_SERVER},
    {"INTERNAL", FCM_SERVER},
    {"UNAUTHENTICATED", FCM_AUTH},
    {"THIRD_PARTY_AUTH_ERROR", FCM_AUTH},
    /* The credentials lack the permission to send for this project: an
     * operator can fix that, so it is retried like an auth failure. */
    {"PERMISSION_DENIED", FCM_AUTH},
};

static enum fcm_class fcm_lookup(const char *name)
{
    size_t i;

    if (name == NULL)
        return FCM_UNKNOWN;
    for (i = 0; i < sizeof(fcm_codes) / sizeof(fcm_codes[0]); i++) {
        if (strcmp(fcm_codes[i].name, name) == 0)
            return fcm_codes[i].cls;
    }
    return FCM_UNKNOWN;
}

static void classify_error(const struct cr_response *resp, const cJSON *doc,
                           struct cr_result *res)
{
    long st = resp->status;
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const char *ec = fcm_error_code(error);
    const char *status = cr_json_string(error, "status");
    const char *msg = cr_json_string(error, "message");
    enum fcm_class cls = fcm_lookup(ec);
    char code[48];

    if (cls == FCM_UNKNOWN)
        cls = fcm_lookup(status);
    if (cls == FCM_UNKNOWN) {
        if (st == 401)
            cls = FCM_AUTH;
        else if (st == 429)
            cls = FCM_RATE;
        else if (st >= 500 && st <= 599)
            cls = FCM_SERVER;
        else
            cls = FCM_FAILED;
    }
    if (ec != NULL || status != NULL)
        snprintf(code, sizeof(code), "%s", ec ? ec : status);
    else
        snprintf(code, sizeof(code), "%ld", st);
    if (doc == NULL)
        msg = "body unreadable";
    else if (msg == NULL)
        msg = "no error message in the body";

    switch (cls) {
    case FCM_SUPPRESS:
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "token no longer registered (HTTP %ld): %s",
                       st, msg);
        break;
    case FCM_RATE:
        cr_result_setf(res, CR_OUT_RETRY, code, "quota exceeded (HTTP %ld): %s", st, msg);
        break;
    case FCM_SERVER:
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, msg);
        break;
    case FCM_AUTH:
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "auth rejected (HTTP %ld): check the access token; %s", st, msg);
        break;
    case FCM_FAILED:
    case FCM_UNKNOWN:
    default:
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
        break;
    }
}

/* Forgets the fetched token so that the next message fetches another. */
static void drop_token(struct fcm *f)
{
    cr_free_secret(f->token.access_token);
    f->token.access_token = NULL;
    f->token.expires_ms = 0;
}

static void fcm_classify(void *state, const struct cr_message *const *msgs, size_t n,
                         const struct cr_response *resp, struct cr_result *res)
{
    struct fcm *f = state;
    long st = resp->status;
    cJSON *doc;

    (void)msgs;
    if (n == 0)
        return;
    doc = cr_json_parse_body(resp);
    if (st >= 200 && st <= 299) {
        const char *name = cr_json_string(doc, "name");

        if (name == NULL) {
            cr_result_by_status(res, resp, "accepted, body unreadable");
        } else {
            char code[24];

            snprintf(code, sizeof(code), "%ld", st);
            cr_result_set(res, CR_OUT_SENT, code, "accepted");
            cr_result_set_id(res, name);
        }
    } else {
        classify_error(resp, doc, res);
        /* UNAUTHENTICATED: the token was revoked or expired early. Every
         * request still in flight with it may drop a newer one too; that
         * costs at most one extra fetch each. */
        if (st == 401 && f != NULL && !f->is_static && f->token.access_token != NULL) {
            drop_token(f);
            snprintf(res->detail, sizeof(res->detail),
                     "access token refused (HTTP 401): a new one will be fetched");
        }
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

/* ---- the service account's OAuth 2.0 token (RFC 7523 JWT bearer grant) ---- */

/* The signed assertion: RS256, iss client_email, scope, aud token_url, iat,
 * exp one hour later. A malloc'd string, or NULL. */
static char *make_assertion(const struct fcm *f, int64_t now_ms)
{
    long now_s = (long)(now_ms / 1000);
    jwt_t *jwt = NULL;
    char *out = NULL;

    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *)f->sa.private_key,
                    (int)strlen(f->sa.private_key)) != 0 ||
        jwt_add_header(jwt, "typ", "JWT") != 0 ||
        jwt_add_grant(jwt, "iss", f->sa.client_email) != 0 ||
        jwt_add_grant(jwt, "scope", FCM_SCOPE) != 0 ||
        jwt_add_grant(jwt, "aud", f->sa.token_url) != 0 ||
        jwt_add_grant_int(jwt, "iat", now_s) != 0 ||
        jwt_add_grant_int(jwt, "exp", now_s + ASSERTION_LIFETIME_S) != 0)
        goto out;
    out = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    return out;
}

/* 0 while the token is good for more than REFRESH_BEFORE_MS; CR_EAGAIN with
 * the token request in req otherwise; CR_EBUSY while one is out; CR_EHTTP
 * within FETCH_RETRY_MS of a failed fetch when the old token (if any) has
 * expired (a token still valid is used meanwhile). */
static int fcm_auth_request(void *state, int64_t now_ms, struct cr_request *req)
{
    struct fcm *f = state;
    const struct fcm_token *t = &f->token;
    int valid = t->access_token != NULL && now_ms < t->expires_ms;
    char *assertion = NULL;
    int rc;

    if (f->is_static)
        return 0;
    if (t->fetching)
        return CR_EBUSY;
    if (valid && t->expires_ms - now_ms > REFRESH_BEFORE_MS)
        return 0;
    if (t->failed_ms != 0 && now_ms - t->failed_ms < FETCH_RETRY_MS && now_ms >= t->failed_ms)
        return valid ? 0 : CR_EHTTP;
    assertion = make_assertion(f, now_ms);
    rc = CR_ENOMEM;
    if (assertion == NULL)
        goto out;
    cr_buf_reset(&req->body);
    rc = cr_form_add(&req->body, "grant_type", JWT_BEARER_GRANT);
    if (rc == 0)
        rc = cr_form_add(&req->body, "assertion", assertion);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, f->sa.token_url);
    if (rc == 0)
        rc = cr_req_add_header(req, "Content-Type", "application/x-www-form-urlencoded");
    if (rc == 0)
        rc = cr_req_add_header(req, "Accept", "application/json");
    if (rc < 0)
        goto out;
    snprintf(req->method, sizeof(req->method), "POST");
    req->transport = CR_TRANSPORT_HTTP;
    req->userpwd = NULL;
    f->token.fetching = 1;
    rc = CR_EAGAIN;
out:
    cr_free_secret(assertion);
    return rc;
}

/* Takes {"access_token":..,"expires_in":N,"token_type":"Bearer"}; anything
 * else is a failed fetch (the next auth_request tries again after
 * FETCH_RETRY_MS; a token still valid stays in use until it expires). */
static void fcm_auth_done(void *state, int64_t now_ms, const struct cr_response *resp)
{
    struct fcm *f = state;
    cJSON *doc = NULL;
    const char *token;
    const char *type;
    const cJSON *expires;
    char *copy;

    f->token.fetching = 0;
    if (resp == NULL || resp->status != 200)
        goto failed;
    doc = cr_json_parse_body(resp);
    token = cr_json_string(doc, "access_token");
    type = cr_json_string(doc, "token_type");
    expires = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
    if (token == NULL || token[0] == '\0' || strlen(token) > ACCESS_TOKEN_MAX ||
        !cr_header_safe(token) || strchr(token, ' ') != NULL)
        goto failed;
    if (type != NULL && strcasecmp(type, "Bearer") != 0)
        goto failed;
    if (!cJSON_IsNumber(expires) || expires->valuedouble < 1 ||
        expires->valuedouble > 365.0 * 86400)
        goto failed;
    copy = strdup(token);
    if (copy == NULL)
        goto failed;
    cr_free_secret(f->token.access_token);
    f->token.access_token = copy;
    f->token.expires_ms = now_ms + (int64_t)expires->valuedouble * 1000;
    f->token.failed_ms = 0;
    cJSON_Delete(doc);
    return;
failed:
    f->token.failed_ms = now_ms != 0 ? now_ms : 1;
    cJSON_Delete(doc);
}

const struct cr_provider_ops cr_fcm_ops = {
    .type = "fcm",
    .channel = CR_CH_PUSH,
    .platform = "fcm",
    .max_batch = 1,
    .keys = fcm_keys,
    .init = fcm_init,
    .free_state = fcm_free,
    .build = fcm_build,
    .classify = fcm_classify,
    .auth_request = fcm_auth_request,
    .auth_done = fcm_auth_done,
};
