/* Twilio Messages API adapter: a form-encoded POST with basic auth per SMS;
 * the answer's sid/status or its numeric error code decides the outcome. */
#include "adapter.h"
#include "cr_error.h"
#include "twilio_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct twilio {
    struct cr_twilio_account acct;
    char *from;            /* E.164 sender, or NULL when mg_sid is set */
    char *mg_sid;          /* messaging service sid, or NULL when from is set */
    char *sender;          /* "From=<escaped>" or "MessagingServiceSid=<escaped>" */
    char *status_callback; /* NULL = none */
};

static const char *const twilio_keys[] = {"account_sid", "auth_token", "from",
                                          "messaging_service_sid", "status_callback", NULL};

static void twilio_free(void *state)
{
    struct twilio *tw = state;

    if (tw == NULL)
        return;
    cr_twilio_account_release(&tw->acct);
    free(tw->from);
    free(tw->mg_sid);
    free(tw->sender);
    free(tw->status_callback);
    free(tw);
}

static int callback_ok(const char *s)
{
    const char *p;

    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return 0;
    for (p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
            return 0;
    }
    return 1;
}

static int twilio_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                       char *err, size_t errlen)
{
    struct twilio *tw;
    struct cr_buf b;
    int rc;

    *state = NULL;
    cr_buf_init(&b, CR_TWILIO_URL_MAX);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    tw = calloc(1, sizeof(*tw));
    if (tw == NULL)
        return CR_ENOMEM;
    rc = cr_twilio_account_init(&tw->acct, cfg, base_url, path, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "from", 0, &tw->from, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "messaging_service_sid", 0, &tw->mg_sid, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "status_callback", 0, &tw->status_callback, err, errlen);
    if (rc < 0)
        goto out;
    if (tw->from != NULL && tw->mg_sid != NULL) {
        rc = cr_cfg_fail(err, errlen, path, "from",
                         "give either from or messaging_service_sid, not both");
        goto out;
    }
    if (tw->from == NULL && tw->mg_sid == NULL) {
        rc = cr_cfg_fail(err, errlen, path, "from",
                         "is required (or messaging_service_sid instead)");
        goto out;
    }
    if (tw->from != NULL && !cr_e164_ok(tw->from)) {
        rc = cr_cfg_fail(err, errlen, path, "from",
                         "must be an E.164 number like +447700900123");
        goto out;
    }
    if (tw->mg_sid != NULL && !cr_twilio_sid_ok(tw->mg_sid, "MG")) {
        rc = cr_cfg_fail(err, errlen, path, "messaging_service_sid",
                         "must be \"MG\" followed by 32 hex digits");
        goto out;
    }
    if (tw->status_callback != NULL && !callback_ok(tw->status_callback)) {
        rc = cr_cfg_fail(err, errlen, path, "status_callback",
                         "must be an http:// or https:// URL without spaces or fragment");
        goto out;
    }

    /* The sender is the same in every request: escaped once here. */
    rc = cr_twilio_form_add(&b, tw->from ? "From" : "MessagingServiceSid",
                            tw->from ? tw->from : tw->mg_sid);
    if (rc < 0)
        goto out;
    tw->sender = cr_buf_steal(&b);
    *state = tw;
    tw = NULL;
    rc = 0;
out:
    cr_buf_release(&b);
    twilio_free(tw);
    return rc;
}

/* One SMS per request (n must be 1). CR_EINVAL without an address or body. */
static int twilio_build(void *state, const struct cr_message *const *msgs, size_t n,
                        struct cr_request *req)
{
    const struct twilio *tw = state;
    const struct cr_message *m;
    struct cr_buf cb;
    int rc = CR_EINVAL;

    cr_buf_init(&cb, CR_TWILIO_URL_MAX);
    if (n != 1)
        goto out;
    m = msgs[0];
    if (m->address == NULL || m->address[0] == '\0' || m->sms == NULL)
        goto out;

    cr_buf_reset(&req->body);
    /* room for the form at once: the body escaped at worst, and the rest */
    (void)cr_buf_reserve(&req->body, 3 * strlen(m->sms) + strlen(tw->sender) + 512);
    rc = cr_twilio_form_add(&req->body, "To", m->address);
    if (rc == 0)
        rc = cr_buf_append(&req->body, "&", 1);
    if (rc == 0)
        rc = cr_buf_appends(&req->body, tw->sender);
    if (rc < 0)
        goto out;
    rc = cr_twilio_form_add(&req->body, "Body", m->sms);
    if (rc < 0)
        goto out;
    if (tw->status_callback != NULL) {
        rc = cr_twilio_callback_with_ref(tw->status_callback, m->ref, &cb);
        if (rc < 0)
            goto out;
        rc = cr_twilio_form_add(&req->body, "StatusCallback", cr_buf_cstr(&cb));
        if (rc < 0)
            goto out;
    }
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, tw->acct.url);
    if (rc < 0)
        goto out;
    rc = cr_req_add_header(req, "Content-Type", "application/x-www-form-urlencoded");
    if (rc == 0)
        rc = cr_req_add_header(req, "Authorization", tw->acct.auth);
    if (rc < 0)
        goto out;
    snprintf(req->method, sizeof(req->method), "POST");
    rc = 0;
out:
    cr_buf_release(&cb);
    return rc;
}

static int code_in(long code, const long *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (list[i] == code)
            return 1;
    }
    return 0;
}

/* Recipients Twilio will never reach: invalid, unreachable or not SMS-capable
 * numbers, blocked regions, empty or oversized bodies. */
static const long permanent_codes[] = {21211, 21614, 21612, 21408, 21601,
                                       21602, 21604, 21606, 21617};

static void classify_error(const struct cr_response *resp, const cJSON *doc,
                           struct cr_result *res)
{
    long st = resp->status;
    long tc;
    const char *msg;
    char code[24];

    cr_twilio_error_head(resp, doc, 1, &tc, &msg, code, sizeof(code));
    if (tc == 21610)
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "recipient unsubscribed (STOP): %s", msg);
    else if (code_in(tc, permanent_codes, sizeof(permanent_codes) / sizeof(permanent_codes[0])))
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
    else if (tc == 20429 || st == 429)
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP %ld): %s", st, msg);
    else if (tc == 20003 || st == 401)
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "auth rejected (HTTP %ld): check account_sid and auth_token; %s", st,
                       msg);
    else if (tc == 20500 || tc == 20503 || (st >= 500 && st <= 599))
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, msg);
    else
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
}

/* The outcome of a 2xx answer whose message resource holds sid and status
 * (either NULL when absent). */
static void accepted(struct cr_result *res, long st, const char *sid, const char *status,
                     const struct cr_response *resp)
{
    if (sid == NULL) {
        cr_result_by_status(res, resp, "accepted, body unreadable");
    } else {
        char code[24];

        snprintf(code, sizeof(code), "%ld", st);
        cr_result_setf(res, CR_OUT_SENT, status ? status : code, "accepted (%s)",
                       status ? status : "no status");
        cr_result_set_id(res, sid);
    }
}

#define ACCEPTED_FIELD_MAX 128 /* sid and status are short; longer ones go to cJSON */

/* One JSON string at p[*i] (the opening quote) of n bytes: moves *i past the
 * closing quote and sets *esc when it holds escapes. Returns 0 or -1. */
/* The bytes that end a run of plain bytes inside a JSON string: control
 * characters, the quote and the backslash. */
static const unsigned char string_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

static int scan_string(const char *p, size_t n, size_t *i, int *esc)
{
    size_t j = *i + 1;

    *esc = 0;
    for (;;) {
        unsigned char ch;

        while (j < n && !string_stop[(unsigned char)p[j]])
            j++;
        if (j >= n)
            return -1;
        ch = (unsigned char)p[j];
        if (ch == '"')
            break;
        if (ch < 0x20)
            return -1;
        *esc = 1; /* a backslash: skip what it escapes */
        j += 2;
    }
    *i = j + 1;
    return 0;
}

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Whether the n bytes at p are true, false, null or a number's characters. */
static int plain_scalar(const char *p, size_t n)
{
    size_t k;

    if ((n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) ||
        (n == 5 && memcmp(p, "false", 5) == 0))
        return 1;
    if (n == 0)
        return 0;
    for (k = 0; k < n; k++) {
        if (strchr("0123456789+-.eE", p[k]) == NULL)
            return 0;
    }
    return 1;
}

/* When the member whose key is p[ks..ks+kn) is key (the first such member
 * counts, as with cJSON), copies its value p[vs..vs+vn) into out if it is a
 * string (is_str); other values leave out "". Returns 0, or -1 for a string
 * value with escapes or of ACCEPTED_FIELD_MAX bytes or more. */
static int take_field(const char *p, size_t ks, size_t kn, size_t vs, size_t vn, int is_str,
                      int esc, const char *key, char *out, int *seen)
{
    if (*seen || kn != strlen(key) || memcmp(p + ks, key, kn) != 0)
        return 0;
    *seen = 1;
    if (!is_str)
        return 0;
    if (esc || vn >= ACCEPTED_FIELD_MAX)
        return -1;
    memcpy(out, p + vs, vn);
    out[vn] = '\0';
    return 0;
}

/* Reads "sid" and "status" of a Twilio message resource without building a
 * cJSON tree (most of the per-SMS work of an answer was that tree): one pass
 * over the top-level object, nested values skipped by depth, the structure
 * checked to the closing brace and nothing but whitespace after it. sid and
 * status are left "" when absent or not a plain string. Returns 0, or -1 when
 * the body is not such an object or a field would need unescaping (the caller
 * then parses it with cJSON). */
static int scan_accepted(const char *p, size_t n, char *sid, char *status)
{
    size_t i = skip_ws(p, n, 0);
    int seen_sid = 0, seen_status = 0;

    sid[0] = status[0] = '\0';
    if (i >= n || p[i] != '{')
        return -1;
    i = skip_ws(p, n, i + 1);
    if (i < n && p[i] == '}')
        return skip_ws(p, n, i + 1) == n ? 0 : -1;
    for (;;) {
        size_t ks, kn, vs;
        int esc;

        if (i >= n || p[i] != '"')
            return -1;
        ks = i + 1;
        if (scan_string(p, n, &i, &esc) < 0)
            return -1;
        kn = i - 1 - ks;
        if (esc)
            return -1; /* an escaped key might spell sid or status */
        i = skip_ws(p, n, i);
        if (i >= n || p[i] != ':')
            return -1;
        i = skip_ws(p, n, i + 1);
        if (i >= n)
            return -1;
        vs = i;
        if (p[i] == '"') {
            if (scan_string(p, n, &i, &esc) < 0)
                return -1;
            if (take_field(p, ks, kn, vs + 1, i - 2 - vs, 1, esc, "sid", sid, &seen_sid) < 0 ||
                take_field(p, ks, kn, vs + 1, i - 2 - vs, 1, esc, "status", status,
                           &seen_status) < 0)
                return -1;
        } else if (p[i] == '{' || p[i] == '[') {
            int depth = 0;

            do {
                if (p[i] == '"') {
                    if (scan_string(p, n, &i, &esc) < 0)
                        return -1;
                    continue;
                }
                if (p[i] == '{' || p[i] == '[')
                    depth++;
                else if (p[i] == '}' || p[i] == ']')
                    depth--;
                i++;
            } while (depth > 0 && i < n);
            if (depth != 0)
                return -1;
            take_field(p, ks, kn, vs, 0, 0, 0, "sid", sid, &seen_sid);
            take_field(p, ks, kn, vs, 0, 0, 0, "status", status, &seen_status);
        } else {
            while (i < n && p[i] != ',' && p[i] != '}' && p[i] != ' ' && p[i] != '\n' &&
                   p[i] != '\r' && p[i] != '\t')
                i++;
            if (!plain_scalar(p + vs, i - vs))
                return -1;
            take_field(p, ks, kn, vs, 0, 0, 0, "sid", sid, &seen_sid);
            take_field(p, ks, kn, vs, 0, 0, 0, "status", status, &seen_status);
        }
        i = skip_ws(p, n, i);
        if (i < n && p[i] == ',') {
            i = skip_ws(p, n, i + 1);
            continue;
        }
        if (i < n && p[i] == '}')
            return skip_ws(p, n, i + 1) == n ? 0 : -1;
        return -1;
    }
}

static void twilio_classify(void *state, const struct cr_message *const *msgs, size_t n,
                            const struct cr_response *resp, struct cr_result *res)
{
    long st = resp->status;
    cJSON *doc = NULL;
    char sid_buf[ACCEPTED_FIELD_MAX], status_buf[ACCEPTED_FIELD_MAX];

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    if (st >= 200 && st <= 299 && resp->body != NULL &&
        scan_accepted(resp->body, resp->body_len, sid_buf, status_buf) == 0) {
        accepted(res, st, sid_buf[0] ? sid_buf : NULL, status_buf[0] ? status_buf : NULL,
                 resp);
    } else if (st >= 200 && st <= 299) {
        doc = cr_json_parse_body(resp);
        accepted(res, st, cr_json_string(doc, "sid"), cr_json_string(doc, "status"), resp);
    } else {
        doc = cr_json_parse_body(resp);
        classify_error(resp, doc, res);
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_twilio_ops = {
    .type = "twilio",
    .channel = CR_CH_SMS,
    .platform = NULL,
    .max_batch = 1,
    .keys = twilio_keys,
    .init = twilio_init,
    .free_state = twilio_free,
    .build = twilio_build,
    .classify = twilio_classify,
};
