/* A generic JSON SMS gateway (POST /gateway/send) as crier-sim answers it: the
 * kind of in-house or regional gateway crier's "gateway" adapter talks to. One
 * configurable auth header, {"to","from","text","reference"} in, an id out. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cr_buf.h"
#include "sim.h"

#define MAX_TEXT_CHARS 1600
#define MAX_AUTH_VALUE 1024
#define MAGIC_UNSUBSCRIBED "+15005550004"

/* ids "gw-1", "gw-2", ... for the life of the process (not reset with the log) */
static unsigned long long next_id = 1;

/* Copies the value of header name (case-insensitive) from the request's header
 * lines into out. Returns 1 when present, 0 when absent or too long. */
static int header_value(const struct sim_request *req, const char *name, char *out, size_t n)
{
    const char *line = req->headers ? req->headers : "";
    size_t nlen = strlen(name);

    while (*line != '\0') {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);

        if (len > nlen + 1 && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            size_t vlen = len - nlen - 1;

            while (vlen > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vlen--;
            }
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            if (vlen >= n)
                return 0;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 1;
        }
        line += len;
        if (end != NULL)
            line += 2;
    }
    return 0;
}

static void answer_error(struct sim_response *res, int status, const char *message)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "error", message);
    sim_res_cjson(res, status, doc);
    cJSON_Delete(doc);
}

/* A member that must be a string when present; returns it, or NULL when absent
 * (and sets *bad when present but not a string). */
static const char *string_member(const cJSON *doc, const char *key, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);

    if (v == NULL)
        return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

void sim_gateway_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    struct sim_request logged = *req;
    char auth[MAX_AUTH_VALUE];
    char text[64];
    cJSON *doc = NULL;
    const char *to = NULL, *from, *body, *ref = NULL;
    const char *recipient = NULL;
    int bad = 0;

    if (header_value(req, sim->opt.gateway_auth_header, auth, sizeof(auth)))
        logged.auth = auth; /* the log's "auth" is the configured header's value */
    else
        logged.auth = "";
    if (strcmp(logged.auth, sim->opt.gateway_auth_value) != 0) {
        answer_error(res, 401, "unauthorized");
        goto out;
    }
    doc = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(doc)) {
        answer_error(res, 400, "body must be a JSON object");
        goto out;
    }
    to = string_member(doc, "to", &bad);
    from = string_member(doc, "from", &bad);
    body = string_member(doc, "text", &bad);
    ref = string_member(doc, "reference", &bad);
    if (to != NULL && to[0] != '\0')
        recipient = to;
    if (bad) {
        answer_error(res, 400, "to, from, text and reference must be strings");
        goto out;
    }
    if (recipient == NULL) {
        answer_error(res, 400, "missing field: to");
        goto out;
    }
    if (body == NULL || body[0] == '\0') {
        answer_error(res, 400, "missing field: text");
        goto out;
    }
    if (from != NULL && from[0] == '\0') {
        answer_error(res, 400, "from must not be empty");
        goto out;
    }
    if (sim_utf8_count(body, strlen(body), NULL) > MAX_TEXT_CHARS) {
        answer_error(res, 400, "text longer than 1600 characters");
        goto out;
    }
    if (!sim_is_e164(to, strlen(to))) {
        answer_error(res, 422, "to is not an E.164 number");
        goto out;
    }
    switch (sim_provider_inject(sim, SIM_EP_GATEWAY)) {
    case SIM_INJECT_429:
        answer_error(res, 429, "rate limited");
        sim_provider_retry_after(sim, SIM_EP_GATEWAY, res);
        goto out;
    case SIM_INJECT_5XX:
        answer_error(res, 503, "temporarily unavailable");
        goto out;
    default:
        break;
    }
    if (strcmp(to, MAGIC_UNSUBSCRIBED) == 0) {
        answer_error(res, 410, "unsubscribed");
        goto out;
    }
    snprintf(text, sizeof(text), "{\"id\":\"gw-%llu\",\"status\":\"accepted\"}", next_id++);
    sim_res_literal(res, 202, text);
out:
    sim_provider_done(sim, SIM_EP_GATEWAY, &logged, res, recipient ? &recipient : NULL,
                      recipient ? 1 : 0, ref ? &ref : NULL, ref ? 1 : 0);
    cJSON_Delete(doc);
}
