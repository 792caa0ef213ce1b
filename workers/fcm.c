/* Firebase Cloud Messaging HTTP v1 adapter: one JSON message per push token,
 * classified by the FcmError errorCode (or the google.rpc status) of the
 * answer. */
#include "adapter.h"
#include "cr_error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The bearer token for the v1 API. For now it is configured as access_token;
 * the service-account OAuth flow will refresh it here, and build reads it only
 * through fcm_bearer(). */
struct fcm_token {
    char *access_token;
};

struct fcm {
    char *url; /* base + /v1/projects/<project_id>/messages:send */
    struct fcm_token token;
};

static const char *const fcm_keys[] = {"project_id", "access_token", NULL};

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
    free(f->token.access_token);
    free(f);
}

/* Project ids are letters, digits and '-' (with "domain.tld:" in front for
 * the old domain-scoped ones): nothing that could change the URL path. */
static int project_id_ok(const char *s)
{
    const char *p;

    for (p = s; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("-._:", *p) == NULL)
            return 0;
    }
    return 1;
}

static int fcm_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                    char *err, size_t errlen)
{
    struct fcm *f;
    char *base = NULL;
    char *project = NULL;
    struct cr_buf b;
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
    rc = cr_cfg_string(cfg, path, "access_token", 1, &f->token.access_token, err, errlen);
    if (rc < 0)
        goto out;
    if (!cr_header_safe(f->token.access_token)) {
        rc = cr_cfg_fail(err, errlen, path, "access_token", "must not contain CR or LF");
        goto out;
    }
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

static int add_string(cJSON *obj, const char *key, const char *value)
{
    if (value == NULL)
        return 0;
    return cJSON_AddStringToObject(obj, key, value) ? 0 : CR_ENOMEM;
}

static int build_message(const struct cr_message *m, cJSON *msg)
{
    int urgent = m->priority == CR_PRIO_URGENT;
    int high = urgent || m->priority == CR_PRIO_HIGH;
    cJSON *o;

    if (add_string(msg, "token", m->address) < 0)
        return CR_ENOMEM;
    if (m->push_title != NULL || m->push_body != NULL) {
        o = cJSON_AddObjectToObject(msg, "notification");
        if (o == NULL || add_string(o, "title", m->push_title) < 0 ||
            add_string(o, "body", m->push_body) < 0)
            return CR_ENOMEM;
    }
    o = cJSON_AddObjectToObject(msg, "data");
    if (o == NULL || add_string(o, "crier_ref", m->ref) < 0 ||
        add_string(o, "crier_job", m->job_id) < 0)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(msg, "android");
    if (o == NULL || add_string(o, "priority", high ? "high" : "normal") < 0 ||
        add_string(o, "collapse_key", m->ref) < 0)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(msg, "apns");
    if (o == NULL)
        return CR_ENOMEM;
    o = cJSON_AddObjectToObject(o, "headers");
    if (o == NULL || add_string(o, "apns-priority", urgent ? "10" : "5") < 0)
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
    rc = CR_ENOMEM;
    root = cJSON_CreateObject();
    if (root == NULL)
        goto out;
    msg = cJSON_AddObjectToObject(root, "message");
    if (msg == NULL)
        goto out;
    rc = build_message(m, msg);
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

static void fcm_classify(void *state, const struct cr_message *const *msgs, size_t n,
                         const struct cr_response *resp, struct cr_result *res)
{
    long st = resp->status;
    cJSON *doc;

    (void)state;
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
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
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
};
