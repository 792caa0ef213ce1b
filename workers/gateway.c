/* Generic JSON SMS gateway adapter: for in-house or regional gateways that take
 * {"to","from","text","reference"} by POST and answer with an id or an error;
 * the status and the "error" member decide the outcome. */
#include "adapter.h"
#include "cr_error.h"
#include "cr_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Answers and outcomes:
 *
 *   200 201 202 (other 2xx)   SENT      provider_id from "id" or "message_id"
 *   410, or "error":"unsubscribed" at any status
 *                             SUPPRESS  the number opted out at the gateway
 *   400 422                   FAILED    the message or number is invalid
 *   401 403                   RETRY     auth_value rejected: an operator fixes it
 *   429                       RETRY     after Retry-After when given
 *   5xx                       RETRY
 *   anything else             FAILED
 *
 * code is the "error" string when the body has one, else the status. */

#define GATEWAY_DEFAULT_PATH "/send"

struct gateway {
    char *url;         /* base + path */
    char *auth_header; /* NULL = no auth header */
    char *auth_value;
    char *from;        /* NULL = the gateway's default sender */
};

static const char *const gateway_keys[] = {"path", "auth_header", "auth_value", "from", NULL};

static void gateway_free(void *state)
{
    struct gateway *g = state;

    if (g == NULL)
        return;
    free(g->url);
    free(g->auth_header);
    cr_free_secret(g->auth_value);
    free(g->from);
    free(g);
}

/* An HTTP header name: RFC 9110 token characters. */
static int token_ok(const char *s)
{
    return s[0] != '\0' &&
           cr_chars_ok(s, strlen(s), CR_CHARS_LETTERS | CR_CHARS_DIGITS, "!#$%&'*+-.^_`|~");
}

/* A URL path: starts with '/', printable ASCII without spaces or a fragment. */
static int path_ok(const char *s)
{
    const char *p;

    if (s[0] != '/')
        return 0;
    for (p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
            return 0;
    }
    return 1;
}

static int gateway_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                        char *err, size_t errlen)
{
    struct gateway *g;
    char *base = NULL;
    char *upath = NULL;
    struct cr_buf b;
    int rc;

    *state = NULL;
    cr_buf_init(&b, 2048);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "path", 0, &upath, err, errlen);
    if (rc < 0)
        goto out;
    if (upath != NULL && !path_ok(upath)) {
        rc = cr_cfg_fail(err, errlen, path, "path",
                         "must start with '/' and hold no spaces, controls or '#'");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "auth_header", 0, &g->auth_header, err, errlen);
    if (rc < 0)
        goto out;
    if (g->auth_header != NULL && !token_ok(g->auth_header)) {
        rc = cr_cfg_fail(err, errlen, path, "auth_header",
                         "must be a header name (letters, digits, '-')");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "auth_value", g->auth_header != NULL, &g->auth_value, err,
                       errlen);
    if (rc < 0)
        goto out;
    if (g->auth_value != NULL && g->auth_header == NULL) {
        rc = cr_cfg_fail(err, errlen, path, "auth_header",
                         "is required when auth_value is set (e.g. \"Authorization\")");
        goto out;
    }
    if (g->auth_value != NULL && !cr_header_safe(g->auth_value)) {
        rc = cr_cfg_fail(err, errlen, path, "auth_value", "must not contain CR or LF");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "from", 0, &g->from, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_buf_appendf(&b, "%s%s", base, upath ? upath : GATEWAY_DEFAULT_PATH);
    if (rc < 0) {
        rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "path", "is too long") : rc;
        goto out;
    }
    g->url = cr_buf_steal(&b);
    *state = g;
    g = NULL;
    rc = 0;
out:
    cr_buf_release(&b);
    free(base);
    free(upath);
    gateway_free(g);
    return rc;
}

/* One SMS per request (n must be 1). CR_EINVAL without an E.164 number or
 * without text. */
static int gateway_build(void *state, const struct cr_message *const *msgs, size_t n,
                         struct cr_request *req)
{
    const struct gateway *g = state;
    const struct cr_message *m;
    cJSON *root = NULL;
    int rc = CR_EINVAL;

    if (n != 1)
        goto out;
    m = msgs[0];
    if (!cr_e164_ok(m->address) || m->sms == NULL || m->sms[0] == '\0')
        goto out;
    rc = CR_ENOMEM;
    root = cJSON_CreateObject();
    if (root == NULL)
        goto out;
    if (cr_json_add_string(root, "to", m->address) < 0 || cr_json_add_string(root, "from", g->from) < 0 ||
        cr_json_add_string(root, "text", m->sms) < 0 || cr_json_add_string(root, "reference", m->ref) < 0)
        goto out;
    rc = cr_req_set_json(req, root);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, g->url);
    if (rc == 0)
        rc = cr_req_add_header(req, "Content-Type", "application/json");
    if (rc == 0)
        rc = cr_req_add_header(req, "Accept", "application/json");
    if (rc == 0 && g->auth_header != NULL)
        rc = cr_req_add_header(req, g->auth_header, g->auth_value);
    if (rc < 0)
        goto out;
    snprintf(req->method, sizeof(req->method), "POST");
    req->userpwd = NULL;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

/* The gateway's id: "id" or "message_id", a string or an integer. */
static void copy_id(const cJSON *doc, struct cr_result *res)
{
    static const char *const keys[] = {"id", "message_id"};
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(doc, keys[i]);

        if (cJSON_IsString(it) && it->valuestring[0] != '\0') {
            cr_result_set_id(res, it->valuestring);
            return;
        }
        if (cJSON_IsNumber(it)) {
            snprintf(res->provider_id, sizeof(res->provider_id), "%.0f", it->valuedouble);
            return;
        }
    }
}

static void gateway_classify(void *state, const struct cr_message *const *msgs, size_t n,
                             const struct cr_response *resp, struct cr_result *res)
{
    long st = resp->status;
    cJSON *doc;
    const char *error;
    const char *msg;
    char code[48];

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    doc = cr_json_parse_body(resp);
    error = cr_json_string(doc, "error");
    msg = cr_json_string(doc, "message");
    if (msg == NULL)
        msg = error ? error : (doc ? "no error message in the body" : "body unreadable");
    if (error != NULL && error[0] != '\0')
        snprintf(code, sizeof(code), "%s", error);
    else
        snprintf(code, sizeof(code), "%ld", st);

    if (st == 410 || (error != NULL && strcmp(error, "unsubscribed") == 0)) {
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "number unsubscribed (HTTP %ld): %s", st,
                       msg);
    } else if (st >= 200 && st <= 299) {
        cr_result_setf(res, CR_OUT_SENT, code, "accepted (HTTP %ld)", st);
        copy_id(doc, res);
    } else if (st == 400 || st == 422) {
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
    } else if (st == 401 || st == 403) {
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "auth rejected (HTTP %ld): check auth_value; %s", st, msg);
    } else if (st == 429) {
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP 429): %s", msg);
    } else if (st >= 500 && st <= 599) {
        cr_result_setf(res, CR_OUT_RETRY, code, "gateway error (HTTP %ld): %s", st, msg);
    } else {
        cr_result_setf(res, CR_OUT_FAILED, code, "unexpected answer (HTTP %ld): %s", st, msg);
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_gateway_ops = {
    .type = "gateway",
    .channel = CR_CH_SMS,
    .platform = NULL,
    .max_batch = 1,
    .keys = gateway_keys,
    .init = gateway_init,
    .free_state = gateway_free,
    .build = gateway_build,
    .classify = gateway_classify,
};
