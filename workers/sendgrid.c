/* SendGrid v3 mail/send adapter: one JSON request carries one rendering to up
 * to 1,000 personalizations (each with its own substitutions when the rendering
 * holds tags), and the answer's status (plus X-Message-Id and the errors[]
 * array) decides every message's outcome. */
#include "adapter.h"
#include "cr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDGRID_PATH "/v3/mail/send"
#define SENDGRID_BATCH_MAX 1000     /* personalizations per request */

struct sendgrid {
    char *url;        /* base URL + SENDGRID_PATH */
    char *api_key;
    char *from_email;
    char *from_name;  /* NULL = none; a message's sender_name wins */
    char *reply_to;   /* NULL = none */
};

static const char *const sendgrid_keys[] = {"api_key", "from_email", "from_name", "reply_to",
                                            NULL};

static void sendgrid_free(void *state)
{
    struct sendgrid *sg = state;

    if (sg == NULL)
        return;
    free(sg->url);
    cr_free_secret(sg->api_key);
    free(sg->from_email);
    free(sg->from_name);
    free(sg->reply_to);
    free(sg);
}

/* A usable mail address for a header: has an '@' and no CR/LF. */
static int address_ok(const char *s)
{
    return s != NULL && strchr(s, '@') != NULL && cr_header_safe(s);
}

static int sendgrid_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                         char *err, size_t errlen)
{
    struct sendgrid *sg;
    char *base = NULL;
    int rc;

    *state = NULL;
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    sg = calloc(1, sizeof(*sg));
    if (sg == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "api_key", 1, &sg->api_key, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "from_email", 1, &sg->from_email, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "from_name", 0, &sg->from_name, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "reply_to", 0, &sg->reply_to, err, errlen);
    if (rc < 0)
        goto out;

    if (!cr_header_safe(sg->api_key)) {
        rc = cr_cfg_fail(err, errlen, path, "api_key", "must not contain CR or LF");
        goto out;
    }
    if (!cr_header_safe(sg->from_email)) {
        rc = cr_cfg_fail(err, errlen, path, "from_email", "must not contain CR or LF");
        goto out;
    }
    if (!address_ok(sg->from_email)) {
        rc = cr_cfg_fail(err, errlen, path, "from_email", "must be an email address (no '@')");
        goto out;
    }
    if (sg->from_name != NULL && !cr_header_safe(sg->from_name)) {
        rc = cr_cfg_fail(err, errlen, path, "from_name", "must not contain CR or LF");
        goto out;
    }
    if (sg->reply_to != NULL && !address_ok(sg->reply_to)) {
        rc = cr_cfg_fail(err, errlen, path, "reply_to",
                         "must be an email address without CR or LF");
        goto out;
    }

    sg->url = malloc(strlen(base) + sizeof(SENDGRID_PATH));
    if (sg->url == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    memcpy(sg->url, base, strlen(base));
    memcpy(sg->url + strlen(base), SENDGRID_PATH, sizeof(SENDGRID_PATH));
    *state = sg;
    sg = NULL;
    rc = 0;
out:
    free(base);
    sendgrid_free(sg);
    return rc;
}

/* Adds key: value to obj unless value is NULL. Returns 0 or CR_ENOMEM. */
/* {"email": address[, "name": name]} added to arr or under key of obj. */
static int add_address(cJSON *parent, const char *key, const char *email, const char *name)
{
    cJSON *a = cJSON_CreateObject();

    if (a == NULL)
        return CR_ENOMEM;
    if (key != NULL ? !cJSON_AddItemToObject(parent, key, a) : !cJSON_AddItemToArray(parent, a)) {
        cJSON_Delete(a);
        return CR_ENOMEM;
    }
    if (cr_json_add_string(a, "email", email) < 0 || cr_json_add_string(a, "name", name) < 0)
        return CR_ENOMEM;
    return 0;
}

/* RFC 2369 + RFC 8058 headers of this message's own unsubscribe link, set per
 * personalization (SendGrid merges them into the message headers). */
static int add_unsubscribe(cJSON *p, const char *url)
{
    cJSON *headers;
    char value[2048];
    int n;

    if (url == NULL)
        return 0;
    n = snprintf(value, sizeof(value), "<%s>", url);
    if (n < 0 || (size_t)n >= sizeof(value))
        return CR_ETOOBIG;
    headers = cJSON_AddObjectToObject(p, "headers");
    if (headers == NULL || cr_json_add_string(headers, "List-Unsubscribe", value) < 0 ||
        cr_json_add_string(headers, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click") < 0)
        return CR_ENOMEM;
    return 0;
}

/* The recipient's values for the tags of the shared subject and content. */
static int add_substitutions(cJSON *p, const struct cr_message *m)
{
    cJSON *subs = cJSON_AddObjectToObject(p, "substitutions");
    size_t i;

    if (subs == NULL)
        return CR_ENOMEM;
    for (i = 0; i < m->nsubst; i++) {
        if (cr_json_add_string(subs, m->subst[i].tag, m->subst[i].value) < 0)
            return CR_ENOMEM;
    }
    return 0;
}

/* Substitutions are only for personalizations of a tagged rendering: a tag
 * is non-empty, and a value that lands in the subject is header-safe. */
static int substitutions_ok(const struct cr_message *m, const char *subject)
{
    size_t i;

    if (m->nsubst > 0 && m->subst == NULL)
        return 0;
    for (i = 0; i < m->nsubst; i++) {
        const struct cr_subst *s = &m->subst[i];

        if (s->tag == NULL || s->tag[0] == '\0' || s->value == NULL)
            return 0;
        if (subject != NULL && strstr(subject, s->tag) != NULL && !cr_header_safe(s->value))
            return 0;
    }
    return 1;
}

static int add_personalization(cJSON *pers, const struct cr_message *m)
{
    cJSON *p = cJSON_CreateObject();
    cJSON *to;
    cJSON *args;
    int rc;

    if (p == NULL)
        return CR_ENOMEM;
    if (!cJSON_AddItemToArray(pers, p)) {
        cJSON_Delete(p);
        return CR_ENOMEM;
    }
    to = cJSON_AddArrayToObject(p, "to");
    if (to == NULL || add_address(to, NULL, m->address, NULL) < 0)
        return CR_ENOMEM;
    args = cJSON_AddObjectToObject(p, "custom_args");
    if (args == NULL || cr_json_add_string(args, "crier_ref", m->ref) < 0 ||
        cr_json_add_string(args, "crier_job", m->job_id) < 0)
        return CR_ENOMEM;
    rc = add_unsubscribe(p, m->unsubscribe_url);
    if (rc == 0 && m->nsubst > 0)
        rc = add_substitutions(p, m);
    return rc;
}

static int add_content(cJSON *content, const char *type, const char *value)
{
    cJSON *part;

    if (value == NULL)
        return 0;
    part = cJSON_CreateObject();
    if (part == NULL)
        return CR_ENOMEM;
    if (!cJSON_AddItemToArray(content, part)) {
        cJSON_Delete(part);
        return CR_ENOMEM;
    }
    if (cr_json_add_string(part, "type", type) < 0 || cr_json_add_string(part, "value", value) < 0)
        return CR_ENOMEM;
    return 0;
}

/* Both NULL or equal. */
static int same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* One request for n messages sharing msgs[0]'s rendering: a personalization
 * per message (its address, crier_ref and crier_job, List-Unsubscribe headers
 * and substitutions), from, reply_to, subject and content from msgs[0]; a
 * request for many says everything a request for one says. CR_EINVAL when an
 * address, the subject (or a value substituted into it), the sender name or
 * an unsubscribe URL could smuggle a header (CR/LF, brackets), when the
 * messages do not share one sender (from is the request's), when there is no
 * content at all, or for more than SENDGRID_BATCH_MAX messages. */
static int sendgrid_build(void *state, const struct cr_message *const *msgs, size_t n,
                          struct cr_request *req)
{
    const struct sendgrid *sg = state;
    const struct cr_message *m;
    const char *name;
    cJSON *root = NULL;
    cJSON *pers;
    cJSON *content;
    size_t i;
    int rc = CR_EINVAL;

    if (n == 0 || n > SENDGRID_BATCH_MAX)
        goto out;
    m = msgs[0];
    name = m->sender_name ? m->sender_name : sg->from_name;
    if (m->text == NULL && m->html == NULL)
        goto out;
    if ((m->subject != NULL && !cr_header_safe(m->subject)) ||
        (name != NULL && !cr_header_safe(name)))
        goto out;
    for (i = 0; i < n; i++) {
        if (!address_ok(msgs[i]->address))
            goto out;
        if (msgs[i]->unsubscribe_url != NULL && !cr_unsubscribe_url_ok(msgs[i]->unsubscribe_url))
            goto out;
        if (!substitutions_ok(msgs[i], m->subject))
            goto out;
        if (!same_str(msgs[i]->sender_name, m->sender_name))
            goto out;
    }

    rc = CR_ENOMEM;
    root = cJSON_CreateObject();
    if (root == NULL)
        goto out;
    pers = cJSON_AddArrayToObject(root, "personalizations");
    if (pers == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        rc = add_personalization(pers, msgs[i]);
        if (rc < 0)
            goto out;
    }
    rc = CR_ENOMEM;
    if (add_address(root, "from", sg->from_email, name) < 0)
        goto out;
    if (sg->reply_to != NULL && add_address(root, "reply_to", sg->reply_to, NULL) < 0)
        goto out;
    if (cr_json_add_string(root, "subject", m->subject) < 0)
        goto out;
    content = cJSON_AddArrayToObject(root, "content");
    if (content == NULL)
        goto out;
    /* SendGrid requires text/plain before text/html. */
    if (add_content(content, "text/plain", m->text) < 0 ||
        add_content(content, "text/html", m->html) < 0)
        goto out;

    rc = cr_req_set_json(req, root);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, sg->url);
    if (rc < 0)
        goto out;
    rc = cr_req_add_bearer(req, sg->api_key);
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

/* "<message> (field <field>)" from the first errors[] entry; 0, or
 * CR_ENOTFOUND when the body has none. */
static int first_error(const cJSON *doc, char *out, size_t outlen)
{
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(doc, "errors");
    const cJSON *e = cJSON_IsArray(errors) ? cJSON_GetArrayItem(errors, 0) : NULL;
    const char *msg = cr_json_string(e, "message");
    const char *field = cr_json_string(e, "field");

    out[0] = '\0';
    if (msg == NULL && field == NULL)
        return CR_ENOTFOUND;
    if (field != NULL)
        snprintf(out, outlen, "%s (field %s)", msg ? msg : "error", field);
    else
        snprintf(out, outlen, "%s", msg);
    return 0;
}

/* The personalization a 400's first error names ("personalizations.3.to.0.email"),
 * or -1. */
static long refused_index(const cJSON *doc)
{
    const cJSON *errors = cJSON_GetObjectItemCaseSensitive(doc, "errors");
    const cJSON *e = cJSON_IsArray(errors) ? cJSON_GetArrayItem(errors, 0) : NULL;
    const char *field = cr_json_string(e, "field");
    static const char prefix[] = "personalizations.";
    char *end = NULL;
    long ix;

    if (field == NULL || strncmp(field, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    field += sizeof(prefix) - 1;
    if (*field < '0' || *field > '9')
        return -1;
    ix = strtol(field, &end, 10);
    if (end == NULL || (*end != '.' && *end != '\0'))
        return -1;
    return ix;
}

/* A 400 for one personalization of a batch: only that message failed; the
 * others were not judged and go again (CR_OUT_RESEND). */
static void blame_one(const cJSON *doc, size_t n, struct cr_result *res)
{
    long ix = doc ? refused_index(doc) : -1;
    size_t i;

    if (n < 2 || ix < 0 || (size_t)ix >= n)
        return;
    for (i = 0; i < n; i++) {
        if (i == (size_t)ix)
            continue;
        cr_result_setf(&res[i], CR_OUT_RESEND, "400",
                       "not sent: personalization %ld of the request was refused", ix);
        res[i].retry_after_ms = -1;
    }
}

static void sendgrid_classify(void *state, const struct cr_message *const *msgs, size_t n,
                              const struct cr_response *resp, struct cr_result *res)
{
    long st = resp->status;
    cJSON *doc = NULL;
    char code[24];
    char why[160];
    char id[sizeof(res->provider_id)];

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    snprintf(code, sizeof(code), "%ld", st);
    if (st >= 200 && st <= 299) {
        cr_result_setf(res, CR_OUT_SENT, code, "accepted (HTTP %ld)", st);
        if (cr_response_header(resp, "X-Message-Id", id, sizeof(id)) != CR_ENOTFOUND)
            cr_result_set_id(res, id);
        goto out;
    }
    doc = cr_json_parse_body(resp);
    if (doc == NULL)
        snprintf(why, sizeof(why), "body unreadable");
    else if (first_error(doc, why, sizeof(why)) < 0)
        snprintf(why, sizeof(why), "no errors[] in the body");

    if (st == 401 || st == 403)
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "auth rejected (HTTP %ld): check the api_key; %s", st, why);
    else if (st == 400)
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP 400): %s", why);
    else if (st == 413)
        cr_result_setf(res, CR_OUT_FAILED, code, "message too large (HTTP 413): %s", why);
    else if (st == 429)
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP 429): %s", why);
    else if (st >= 500 && st <= 599)
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, why);
    else
        cr_result_setf(res, CR_OUT_FAILED, code, "unexpected answer (HTTP %ld): %s", st, why);
out:
    cr_result_finish(res, n, resp);
    if (st == 400)
        blame_one(doc, n, res);
    cJSON_Delete(doc);
}

const struct cr_provider_ops cr_sendgrid_ops = {
    .type = "sendgrid",
    .channel = CR_CH_EMAIL,
    .platform = NULL,
    .max_batch = SENDGRID_BATCH_MAX,
    .keys = sendgrid_keys,
    .init = sendgrid_init,
    .free_state = sendgrid_free,
    .build = sendgrid_build,
    .classify = sendgrid_classify,
    .flags = CR_PROVIDER_SUBST,
};
