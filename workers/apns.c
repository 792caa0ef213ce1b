/* Apple Push Notification service adapter (token-based, HTTP/2): one POST per
 * device token, signed with an ES256 provider token that is made once and
 * reused until token_refresh_s has passed; the status and the answer's
 * "reason" decide the outcome. */
#include "adapter.h"
#include "cr_error.h"
#include "cr_str.h"

#include <ctype.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

/* Answers and outcomes (Apple, "Handling notification responses from APNs"):
 *
 *   200                                       SENT      provider_id = apns-id
 *   410 Unregistered / ExpiredToken           SUPPRESS  the app is gone from the device
 *   400 BadDeviceToken                        SUPPRESS  the token can never work
 *   400 IdleTimeout                           RETRY     the connection idled, not the message
 *   400 other (BadTopic, PayloadEmpty, ...)   FAILED
 *   403 ExpiredProviderToken / InvalidProviderToken
 *                                             RETRY     and the provider token is made anew
 *   403 other (BadCertificate, Forbidden...)  RETRY     configuration an operator can fix
 *   404 405 413 (BadPath, PayloadTooLarge)    FAILED
 *   429 TooManyRequests, TooManyProviderTokenUpdates
 *                                             RETRY
 *   5xx (InternalServerError, ServiceUnavailable, Shutdown)
 *                                             RETRY
 *
 * code is the reason when the body names one, else the status. */

#define APNS_TOKEN_HEX_MAX 200      /* device tokens are hex; 64 today, may grow */
#define APNS_PAYLOAD_MAX 4096       /* Apple's limit for alert notifications */
#define APNS_COLLAPSE_MAX 64        /* apns-collapse-id limit in bytes */
#define REFRESH_DEFAULT_S 2400
#define REFRESH_MIN_S 1200          /* Apple refuses updates more often than 20 minutes */
#define REFRESH_MAX_S 3600          /* and tokens older than an hour */
/* A forced new token (after ExpiredProviderToken) is not made again while the
 * current one is younger than this: requests that were in flight with the old
 * token answer 403 too, and must not churn the new one. */
#define FORCED_REFRESH_GAP_MS 60000

struct apns {
    char *base;        /* https://api.push.apple.com */
    char *key_id;
    char *team_id;
    char *topic;
    char *private_key; /* PEM */
    int64_t refresh_ms;
    long default_ttl_s; /* how long APNs keeps an alert when the job has no expiry */

    char *token;       /* the provider token in use, NULL = make one */
    int64_t token_ms;  /* when it was made (its iat), unix ms */
    int stale;         /* APNs refused a token: the next build makes a new one */
};

static const char *const apns_keys[] = {"key_id",          "team_id",       "private_key", "topic",
                                        "token_refresh_s", "default_ttl_s", NULL};

/* Fixed namespace for apns-id values derived from crier references. */
static const uuid_t apns_id_ns = {0x6b, 0x1d, 0x2f, 0x5e, 0x93, 0x4a, 0x4c, 0x1f,
                                  0x8e, 0x27, 0x0a, 0x61, 0xc3, 0x55, 0x9d, 0x40};

static void apns_free(void *state)
{
    struct apns *a = state;

    if (a == NULL)
        return;
    free(a->base);
    free(a->key_id);
    free(a->team_id);
    free(a->topic);
    cr_free_secret(a->private_key);
    cr_free_secret(a->token);
    free(a);
}

static int alnum_ok(const char *s)
{
    return cr_chars_ok(s, strlen(s), CR_CHARS_LETTERS | CR_CHARS_DIGITS, NULL);
}

/* A bundle id (with the .voip / .complication suffixes Apple uses). */
static int topic_ok(const char *s)
{
    return cr_chars_ok(s, strlen(s), CR_CHARS_LETTERS | CR_CHARS_DIGITS, "-._");
}

static int token_hex_ok(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0')
        return 0;
    for (i = 0; s[i] != '\0'; i++) {
        if (i >= APNS_TOKEN_HEX_MAX || !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

static int apns_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                     char *err, size_t errlen)
{
    struct apns *a;
    const cJSON *refresh;
    char why[128];
    int rc;

    *state = NULL;
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &a->base, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "key_id", 1, &a->key_id, err, errlen);
    if (rc < 0)
        goto out;
    if (!alnum_ok(a->key_id) || strlen(a->key_id) > 32) {
        rc = cr_cfg_fail(err, errlen, path, "key_id",
                         "must be the 10-character key id (letters and digits)");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "team_id", 1, &a->team_id, err, errlen);
    if (rc < 0)
        goto out;
    if (!alnum_ok(a->team_id) || strlen(a->team_id) > 32) {
        rc = cr_cfg_fail(err, errlen, path, "team_id",
                         "must be the 10-character team id (letters and digits)");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "topic", 1, &a->topic, err, errlen);
    if (rc < 0)
        goto out;
    if (!topic_ok(a->topic) || strlen(a->topic) > 255) {
        rc = cr_cfg_fail(err, errlen, path, "topic",
                         "must be the app's bundle id (letters, digits, '-', '.', '_')");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "private_key", 1, &a->private_key, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_pem_key_check(a->private_key, "EC", why, sizeof(why));
    if (rc == CR_ENOMEM)
        goto out;
    if (rc < 0) {
        rc = cr_cfg_fail(err, errlen, path, "private_key", "%s (the .p8 file from Apple)", why);
        goto out;
    }
    a->refresh_ms = (int64_t)REFRESH_DEFAULT_S * 1000;
    refresh = cJSON_GetObjectItemCaseSensitive(cfg, "token_refresh_s");
    if (refresh != NULL && !cJSON_IsNull(refresh)) {
        double v = cJSON_IsNumber(refresh) ? refresh->valuedouble : -1;

        if (v != (double)(long)v || v < REFRESH_MIN_S || v > REFRESH_MAX_S) {
            rc = cr_cfg_fail(err, errlen, path, "token_refresh_s",
                             "must be a whole number of seconds from %d to %d", REFRESH_MIN_S,
                             REFRESH_MAX_S);
            goto out;
        }
        a->refresh_ms = (int64_t)v * 1000;
    }
    rc = cr_cfg_push_ttl(cfg, path, &a->default_ttl_s, err, errlen);
    if (rc < 0)
        goto out;
    *state = a;
    a = NULL;
    rc = 0;
out:
    apns_free(a);
    return rc;
}

/* ES256 JWT {alg, kid} . {iss, iat}. Returns a malloc'd token or NULL. */
static char *make_token(const struct apns *a, int64_t now_ms)
{
    jwt_t *jwt = NULL;
    char *out = NULL;

    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)a->private_key,
                    (int)strlen(a->private_key)) != 0 ||
        jwt_add_header(jwt, "kid", a->key_id) != 0 || jwt_add_grant(jwt, "iss", a->team_id) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)(now_ms / 1000)) != 0)
        goto out;
    out = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    return out;
}

/* The provider token valid at now_ms, made when there is none, the one in
 * use is token_refresh_s old, or APNs refused it (then only when it is older
 * than FORCED_REFRESH_GAP_MS). Never per request. NULL when signing fails. */
static const char *provider_token(struct apns *a, int64_t now_ms)
{
    char *t;
    int64_t age = now_ms - a->token_ms;

    if (a->token != NULL && a->stale && age < FORCED_REFRESH_GAP_MS && age >= 0)
        a->stale = 0; /* already made anew for this wave of refusals */
    if (a->token != NULL && !a->stale && age < a->refresh_ms && age >= 0)
        return a->token;
    t = make_token(a, now_ms);
    if (t == NULL)
        return NULL;
    cr_free_secret(a->token);
    a->token = t;
    a->token_ms = now_ms;
    a->stale = 0;
    return a->token;
}

/* A version-5 UUID of ref: the same message always gets the same apns-id, so
 * a retry after a crash is recognisable. */
static void apns_id_of(const char *ref, char out[37])
{
    uuid_t u;

    uuid_generate_sha1(u, apns_id_ns, ref ? ref : "", ref ? strlen(ref) : 0);
    uuid_unparse_lower(u, out);
}

static int build_body(const struct cr_message *m, struct cr_request *req)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *aps;
    cJSON *alert;
    int rc = CR_ENOMEM;

    if (root == NULL)
        goto out;
    aps = cJSON_AddObjectToObject(root, "aps");
    if (aps == NULL)
        goto out;
    alert = cJSON_AddObjectToObject(aps, "alert");
    if (alert == NULL || cr_json_add_string(alert, "title", m->push_title) < 0 ||
        cr_json_add_string(alert, "body", m->push_body) < 0 || cr_json_add_string(aps, "sound", "default") < 0 ||
        cr_json_add_string(root, "crier_ref", m->ref) < 0)
        goto out;
    rc = cr_req_set_json(req, root);
    if (rc == 0 && req->body.len > APNS_PAYLOAD_MAX)
        rc = CR_ETOOBIG;
out:
    cJSON_Delete(root);
    return rc;
}

/* One push per request (n must be 1). CR_EINVAL for a token that is not hex,
 * a message for another platform or one without title and body; CR_ETOOBIG
 * over Apple's 4 KiB payload. */
static int apns_build(void *state, const struct cr_message *const *msgs, size_t n,
                      struct cr_request *req)
{
    struct apns *a = state;
    const struct cr_message *m;
    const char *jwt;
    char bearer[1024];
    char value[64];
    char id[37];
    struct cr_push_delivery dl;
    int rc = CR_EINVAL;

    if (n != 1)
        goto out;
    m = msgs[0];
    if (!token_hex_ok(m->address) || (m->push_title == NULL && m->push_body == NULL))
        goto out;
    if (m->platform != NULL && strcmp(m->platform, "apns") != 0)
        goto out;
    if (m->ref != NULL && !cr_header_safe(m->ref))
        goto out;
    rc = CR_ENOMEM;
    jwt = provider_token(a, req->now_ms);
    if (jwt == NULL)
        goto out;
    rc = build_body(m, req);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appendf(&req->url, "%s/3/device/%s", a->base, m->address);
    if (rc < 0)
        goto out;
    snprintf(bearer, sizeof(bearer), "bearer %s", jwt);
    rc = cr_req_add_header(req, "authorization", bearer);
    if (rc < 0)
        goto out;
    /* Without an expiry Apple would try once and never store the alert for
     * a device that is offline: the job's expiry, else default_ttl_s. */
    cr_push_delivery(m, req->now_ms, a->default_ttl_s, &dl);
    snprintf(value, sizeof(value), "%lld", (long long)dl.apns_expiration);
    apns_id_of(m->ref, id);
    rc = cr_req_add_header(req, "apns-topic", a->topic);
    if (rc == 0)
        rc = cr_req_add_header(req, "apns-push-type", "alert");
    if (rc == 0)
        rc = cr_req_add_header(req, "apns-priority", dl.apns_priority);
    if (rc == 0)
        rc = cr_req_add_header(req, "apns-expiration", value);
    if (rc == 0 && m->job_id != NULL && m->job_id[0] != '\0' &&
        strlen(m->job_id) <= APNS_COLLAPSE_MAX)
        rc = cr_req_add_header(req, "apns-collapse-id", m->job_id);
    if (rc == 0)
        rc = cr_req_add_header(req, "apns-id", id);
    if (rc == 0)
        rc = cr_req_add_header(req, "content-type", "application/json");
    if (rc < 0)
        goto out;
    snprintf(req->method, sizeof(req->method), "POST");
    req->userpwd = NULL;
    rc = 0;
out:
    return rc;
}

static void apns_classify(void *state, const struct cr_message *const *msgs, size_t n,
                          const struct cr_response *resp, struct cr_result *res)
{
    struct apns *a = state;
    long st = resp->status;
    cJSON *doc;
    const char *reason;
    char code[48];
    char id[sizeof(res->provider_id)];

    if (n == 0)
        return;
    doc = cr_json_parse_body(resp);
    reason = cr_json_string(doc, "reason");
    if (reason != NULL && reason[0] != '\0')
        snprintf(code, sizeof(code), "%s", reason);
    else
        snprintf(code, sizeof(code), "%ld", st);
    if (reason == NULL)
        reason = doc ? "no reason in the body" : "no body";

    if (st == 200) {
        cr_result_set(res, CR_OUT_SENT, code, "accepted (HTTP 200)");
        if (cr_response_header(resp, "apns-id", id, sizeof(id)) == CR_ENOTFOUND) {
            char derived[37];

            apns_id_of(msgs[0]->ref, derived);
            cr_result_set_id(res, derived);
        } else {
            cr_result_set_id(res, id);
        }
    } else if (st == 410 || (st == 400 && strcmp(code, "BadDeviceToken") == 0)) {
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "device token dead (HTTP %ld): %s", st,
                       reason);
    } else if (st == 400 && strcmp(code, "IdleTimeout") == 0) {
        cr_result_setf(res, CR_OUT_RETRY, code, "connection idle (HTTP 400): %s", reason);
    } else if (st == 403 && (strcmp(code, "ExpiredProviderToken") == 0 ||
                             strcmp(code, "InvalidProviderToken") == 0)) {
        if (a != NULL)
            a->stale = 1;
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "provider token refused (HTTP 403): %s; a new one will be made", reason);
    } else if (st == 403) {
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "auth rejected (HTTP 403): check key_id, team_id and topic; %s", reason);
    } else if (st == 429) {
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP 429): %s", reason);
    } else if (st >= 500 && st <= 599) {
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, reason);
    } else {
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, reason);
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_apns_ops = {
    .type = "apns",
    .channel = CR_CH_PUSH,
    .platform = "apns",
    .max_batch = 1,
    .keys = apns_keys,
    .init = apns_init,
    .free_state = apns_free,
    .build = apns_build,
    .classify = apns_classify,
    .flags = CR_PROVIDER_HTTP2,
};
