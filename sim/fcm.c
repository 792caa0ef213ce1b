/* Firebase Cloud Messaging HTTP v1 (POST /v1/projects/{project}/messages:send)
 * as crier-sim answers it, with Google's error shapes and magic tokens (the
 * access tokens come from oauth.c). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbacks.h"
#include "sim.h"

#define PREFIX "/v1/projects/"
#define FCM_ERROR_TYPE "type.googleapis.com/google.firebase.fcm.v1.FcmError"

/* {"error":{"code":N,"message":m,"status":s[,"details":[{FcmError errorCode}]]}} */
static void answer_error(struct sim_response *res, int code, const char *message,
                         const char *status, const char *error_code)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(doc, "error");

    cJSON_AddNumberToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    cJSON_AddStringToObject(err, "status", status);
    if (error_code != NULL) {
        cJSON *details = cJSON_AddArrayToObject(err, "details");
        cJSON *d = cJSON_CreateObject();

        cJSON_AddItemToArray(details, d);
        cJSON_AddStringToObject(d, "@type", FCM_ERROR_TYPE);
        cJSON_AddStringToObject(d, "errorCode", error_code);
    }
    sim_res_cjson(res, code, doc);
    res->ctype = SIM_JSON_UTF8;
    cJSON_Delete(doc);
}

static int authorised(const struct sim *sim, const char *auth)
{
    /* --fcm-token, or an access token /token issued that has not expired */
    return sim_starts_with_ci(auth, "Bearer ") && sim_oauth_token_ok(sim, auth + 7);
}

/* FCM's data map takes string values only; returns the first bad key or NULL. */
static const char *bad_data_key(const cJSON *data)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, data)
    {
        if (!cJSON_IsString(item))
            return item->string ? item->string : "";
    }
    return NULL;
}

/* A google.protobuf.Duration in JSON: seconds with up to nine decimals and
 * an "s", here at most FCM's 28 days. */
static int duration_ok(const char *s)
{
    const char *p = s;
    const char *dot = NULL;
    double v;

    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s)
        return 0;
    if (*p == '.') {
        dot = p++;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p - dot - 1 < 1 || p - dot - 1 > 9)
            return 0;
    }
    if (p[0] != 's' || p[1] != '\0')
        return 0;
    v = strtod(s, NULL);
    return v >= 0 && v <= 2419200.0;
}

/* What FCM checks in android and apns: ttl a Duration, collapse_key and the
 * APNs headers strings. Returns the field that is wrong, or NULL. */
static const char *bad_options(const cJSON *msg)
{
    const cJSON *android = cJSON_GetObjectItemCaseSensitive(msg, "android");
    const cJSON *apns = cJSON_GetObjectItemCaseSensitive(msg, "apns");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(android, "ttl");
    const cJSON *ck = cJSON_GetObjectItemCaseSensitive(android, "collapse_key");
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(apns, "headers");
    const cJSON *h;

    if (ttl != NULL && (!cJSON_IsString(ttl) || !duration_ok(ttl->valuestring)))
        return "message.android.ttl";
    if (ck != NULL && !cJSON_IsString(ck))
        return "message.android.collapse_key";
    cJSON_ArrayForEach(h, headers)
    {
        if (!cJSON_IsString(h))
            return "message.apns.headers";
    }
    return NULL;
}

void sim_fcm_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    const char *project = req->path + strlen(PREFIX);
    size_t project_len = (size_t)(strchr(project, '/') - project);
    cJSON *doc = NULL;
    const cJSON *msg, *token, *data, *ref;
    const char *recipient = NULL;
    const char *refv = NULL;
    const char *bad;
    const char *fields = NULL;
    char text[200];

    if (!authorised(sim, req->auth)) {
        answer_error(res, 401, "Request had invalid authentication credentials.",
                     "UNAUTHENTICATED", NULL);
        goto out;
    }
    if (project_len != strlen(sim->opt.fcm_project) ||
        memcmp(project, sim->opt.fcm_project, project_len) != 0) {
        answer_error(res, 404, "Requested entity was not found.", "NOT_FOUND", NULL);
        goto out;
    }
    doc = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(doc)) {
        answer_error(res, 400, "Invalid JSON payload received.", "INVALID_ARGUMENT", NULL);
        goto out;
    }
    msg = cJSON_GetObjectItemCaseSensitive(doc, "message");
    token = cJSON_GetObjectItemCaseSensitive(msg, "token");
    data = cJSON_GetObjectItemCaseSensitive(msg, "data");
    ref = cJSON_GetObjectItemCaseSensitive(data, "crier_ref");
    if (cJSON_IsString(token) && token->valuestring[0] != '\0')
        recipient = token->valuestring;
    if (cJSON_IsString(ref))
        refv = ref->valuestring;
    if (!cJSON_IsObject(msg) || recipient == NULL) {
        answer_error(res, 400, "Request contains an invalid argument.", "INVALID_ARGUMENT",
                     "INVALID_ARGUMENT");
        goto out;
    }
    bad = cJSON_IsObject(data) ? bad_data_key(data) : NULL;
    if (data != NULL && (!cJSON_IsObject(data) || bad != NULL)) {
        snprintf(text, sizeof(text), "Invalid value at 'message.data' (%.60s): expected a "
                 "map of strings to strings", bad ? bad : "data");
        answer_error(res, 400, text, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        goto out;
    }
    bad = bad_options(msg);
    if (bad != NULL) {
        snprintf(text, sizeof(text), "Invalid value at '%s'", bad);
        answer_error(res, 400, text, "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        goto out;
    }
    switch (sim_provider_inject(sim, SIM_EP_FCM)) {
    case SIM_INJECT_429:
        answer_error(res, 429, "Quota exceeded for quota metric 'Send requests' of service "
                     "'fcm.googleapis.com'.", "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED");
        sim_provider_retry_after(sim, SIM_EP_FCM, res);
        goto out;
    case SIM_INJECT_5XX:
        answer_error(res, 503, "The service is currently unavailable.", "UNAVAILABLE",
                     "UNAVAILABLE");
        goto out;
    default:
        break;
    }
    if (strncmp(recipient, "unregistered", 12) == 0) {
        answer_error(res, 404, "Requested entity was not found.", "NOT_FOUND", "UNREGISTERED");
        goto out;
    }
    if (strncmp(recipient, "invalid", 7) == 0) {
        answer_error(res, 400, "The registration token is not a valid FCM registration token",
                     "INVALID_ARGUMENT", "INVALID_ARGUMENT");
        goto out;
    }
    snprintf(text, sizeof(text), "{\"name\":\"projects/%s/messages/0:%016llu\"}",
             sim->opt.fcm_project,
             (unsigned long long)(sim_rng_next(&sim->rng) % 10000000000000000ull));
    sim_res_literal(res, 200, text);
    res->ctype = SIM_JSON_UTF8;
    /* the app on the phone acknowledges the delivered share (callbacks.c) */
    switch (sim_callbacks_after_push(sim, SIM_EP_FCM, recipient, refv)) {
    case 1: fields = "{\"receipt\":\"delivered\"}"; break;
    case 0: fields = "{\"receipt\":\"none\"}"; break;
    default: break;
    }
out:
    sim_provider_done_fields(sim, SIM_EP_FCM, req, res, recipient ? &recipient : NULL,
                             recipient ? 1 : 0, refv ? &refv : NULL, refv ? 1 : 0, fields);
    cJSON_Delete(doc);
}
