/* Pieces every provider adapter needs: Retry-After and response header
 * parsing, result filling, config checks that name the key path, and request
 * assembly (headers, JSON bodies). */
#include "adapter.h"
#include "cr_error.h"
#include "cr_str.h"

#include <ctype.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HEADER_LINE_MAX 8192 /* one request header line, name included */
#define RETRY_AFTER_MAX 64   /* longest Retry-After value worth reading */

/* The wall clock in unix ms: Retry-After dates are absolute, so this is the
 * one place the adapters read the clock. */
static int64_t wall_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_ows(int c)
{
    return c == ' ' || c == '\t';
}

/* Parses [-]digits as delta-seconds into *ms (negative clamped to 0, huge
 * values saturated). Returns 0, or CR_EPARSE when s is not that. */
static int parse_delta_seconds(const char *s, int64_t *ms)
{
    const char *p = s;
    int negative = 0;
    long long secs;
    char *end;

    if (*p == '-') {
        negative = 1;
        p++;
    }
    if (!isdigit((unsigned char)*p))
        return CR_EPARSE;
    errno = 0;
    secs = strtoll(p, &end, 10);
    if (*end != '\0')
        return CR_EPARSE;
    if (negative) {
        *ms = 0;
        return 0;
    }
    if (errno == ERANGE || secs > INT64_MAX / 1000)
        secs = INT64_MAX / 1000;
    *ms = (int64_t)secs * 1000;
    return 0;
}

int64_t cr_retry_after_parse(const char *value, int64_t now_ms)
{
    char buf[RETRY_AFTER_MAX];
    size_t start = 0;
    size_t len;
    int64_t ms;
    time_t t;

    if (value == NULL)
        return -1;
    len = strlen(value);
    while (start < len && is_ows((unsigned char)value[start]))
        start++;
    while (len > start && is_ows((unsigned char)value[len - 1]))
        len--;
    if (len == start || len - start >= sizeof(buf))
        return -1;
    memcpy(buf, value + start, len - start);
    buf[len - start] = '\0';

    if (parse_delta_seconds(buf, &ms) == 0)
        return ms;
    /* Every HTTP-date form (IMF-fixdate, RFC 850, asctime) names a month. */
    if (!isalpha((unsigned char)buf[0]))
        return -1;
    t = curl_getdate(buf, NULL);
    if (t == (time_t)-1)
        return -1;
    if ((int64_t)t > INT64_MAX / 1000)
        return INT64_MAX / 1000 * 1000;
    ms = (int64_t)t * 1000 - now_ms;
    return ms < 0 ? 0 : ms;
}

int cr_response_header(const struct cr_response *resp, const char *name, char *out,
                       size_t outlen)
{
    const char *p;
    const char *found = NULL;
    size_t found_len = 0;
    size_t name_len = strlen(name);

    if (outlen > 0)
        out[0] = '\0';
    if (resp == NULL || resp->headers == NULL)
        return CR_ENOTFOUND;
    /* The last occurrence wins: after a 100-continue or a redirect the
     * collected lines of the final answer come last. */
    for (p = resp->headers; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        const char *end = eol ? eol : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));

        if (colon != NULL) {
            const char *n_end = colon;
            const char *v = colon + 1;
            const char *v_end = end;

            while (n_end > p && is_ows((unsigned char)n_end[-1]))
                n_end--;
            while (v < v_end && is_ows((unsigned char)*v))
                v++;
            while (v_end > v && (is_ows((unsigned char)v_end[-1]) || v_end[-1] == '\r'))
                v_end--;
            if ((size_t)(n_end - p) == name_len && strncasecmp(p, name, name_len) == 0) {
                found = v;
                found_len = (size_t)(v_end - v);
            }
        }
        p = eol ? eol + 1 : end;
    }
    if (found == NULL)
        return CR_ENOTFOUND;
    if (outlen == 0)
        return CR_ETOOBIG;
    if (found_len >= outlen) {
        memcpy(out, found, outlen - 1);
        out[outlen - 1] = '\0';
        return CR_ETOOBIG;
    }
    memcpy(out, found, found_len);
    out[found_len] = '\0';
    return 0;
}

void cr_result_set(struct cr_result *res, enum cr_outcome outcome, const char *code,
                   const char *detail)
{
    res->outcome = outcome;
    res->retry_after_ms = -1;
    cr_strlcpy(res->code, code, sizeof(res->code));
    res->provider_id[0] = '\0';
    cr_strlcpy(res->detail, detail, sizeof(res->detail));
}

void cr_result_setf(struct cr_result *res, enum cr_outcome outcome, const char *code,
                    const char *fmt, ...)
{
    va_list ap;

    cr_result_set(res, outcome, code, NULL);
    va_start(ap, fmt);
    vsnprintf(res->detail, sizeof(res->detail), fmt, ap);
    va_end(ap);
}

void cr_result_set_id(struct cr_result *res, const char *id)
{
    cr_strlcpy(res->provider_id, id, sizeof(res->provider_id));
}

void cr_result_by_status(struct cr_result *res, const struct cr_response *resp, const char *why)
{
    char code[24];
    long st = resp->status;
    enum cr_outcome outcome;

    snprintf(code, sizeof(code), "%ld", st);
    if (st >= 200 && st <= 299)
        outcome = CR_OUT_SENT;
    else if (st == 429 || (st >= 500 && st <= 599))
        outcome = CR_OUT_RETRY;
    else
        outcome = CR_OUT_FAILED;
    cr_result_setf(res, outcome, code, "HTTP %ld: %s", st, why);
}

void cr_result_finish(struct cr_result *res, size_t n, const struct cr_response *resp)
{
    size_t i;

    if (n == 0)
        return;
    res[0].retry_after_ms = -1;
    if (res[0].outcome == CR_OUT_RETRY) {
        char value[RETRY_AFTER_MAX];
        const char *ra = resp->retry_after;

        if (ra == NULL && cr_response_header(resp, "Retry-After", value, sizeof(value)) == 0)
            ra = value;
        if (ra != NULL)
            res[0].retry_after_ms = cr_retry_after_parse(ra, wall_now_ms());
    }
    for (i = 1; i < n; i++)
        res[i] = res[0];
}

int cr_cfg_fail(char *err, size_t errlen, const char *path, const char *key, const char *fmt,
                ...)
{
    va_list ap;
    int n;

    if (errlen == 0)
        return CR_ECONFIG;
    if (key != NULL)
        n = snprintf(err, errlen, "%s.%s: ", path, key);
    else
        n = snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return CR_ECONFIG;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return CR_ECONFIG;
}

int cr_cfg_string(const cJSON *cfg, const char *path, const char *key, int required, char **out,
                  char *err, size_t errlen)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(cfg, key);

    *out = NULL;
    if (item == NULL || cJSON_IsNull(item)) {
        if (required)
            return cr_cfg_fail(err, errlen, path, key, "is required");
        return 0;
    }
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return cr_cfg_fail(err, errlen, path, key, "must be a string");
    if (item->valuestring[0] == '\0')
        return cr_cfg_fail(err, errlen, path, key, "must not be empty");
    *out = strdup(item->valuestring);
    if (*out == NULL)
        return CR_ENOMEM;
    return 0;
}

int cr_cfg_base_url(const char *base_url, const char *path, char **out, char *err,
                    size_t errlen)
{
    size_t len;

    *out = NULL;
    if (base_url == NULL || base_url[0] == '\0')
        return cr_cfg_fail(err, errlen, path, "url", "is required");
    len = strlen(base_url);
    while (len > 0 && base_url[len - 1] == '/')
        len--;
    if (len == 0)
        return cr_cfg_fail(err, errlen, path, "url", "is not a URL");
    *out = strndup(base_url, len);
    if (*out == NULL)
        return CR_ENOMEM;
    return 0;
}

int cr_json_add_string(cJSON *obj, const char *key, const char *value)
{
    if (value == NULL)
        return 0;
    return cJSON_AddStringToObject(obj, key, value) ? 0 : CR_ENOMEM;
}

int cr_e164_ok(const char *s)
{
    size_t i;
    size_t len = s ? strlen(s) : 0;

    if (len < 3 || len > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (i = 2; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int cr_header_safe(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") == NULL;
}

int cr_unsubscribe_url_ok(const char *u)
{
    const char *p;

    if (strncasecmp(u, "https://", 8) != 0 && strncasecmp(u, "http://", 7) != 0)
        return 0;
    for (p = u; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            return 0;
    }
    return 1;
}

int cr_form_add(struct cr_buf *body, const char *name, const char *value)
{
    size_t len = body->len;
    int rc = 0;

    if (body->len > 0)
        rc = cr_buf_append(body, "&", 1);
    if (rc == 0)
        rc = cr_buf_appends(body, name);
    if (rc == 0)
        rc = cr_buf_append(body, "=", 1);
    if (rc == 0)
        rc = cr_buf_append_pct(body, value);
    if (rc < 0 && body->data) {
        body->len = len;
        body->data[len] = '\0';
    }
    return rc;
}

int cr_req_add_header(struct cr_request *req, const char *name, const char *value)
{
    char line[HEADER_LINE_MAX];
    struct curl_slist *list;
    size_t nl;
    size_t vl;

    if (!cr_header_safe(name) || !cr_header_safe(value))
        return CR_EINVAL;
    nl = strlen(name);
    vl = strlen(value);
    if (nl + 2 + vl >= sizeof(line))
        return CR_ETOOBIG;
    memcpy(line, name, nl);
    memcpy(line + nl, ": ", 2);
    memcpy(line + nl + 2, value, vl + 1);
    list = curl_slist_append(req->headers, line);
    if (list == NULL)
        return CR_ENOMEM;
    req->headers = list;
    return 0;
}

int cr_req_add_bearer(struct cr_request *req, const char *token)
{
    char value[HEADER_LINE_MAX];
    int n;

    n = snprintf(value, sizeof(value), "Bearer %s", token ? token : "");
    if (n < 0 || (size_t)n >= sizeof(value))
        return CR_ETOOBIG;
    return cr_req_add_header(req, "Authorization", value);
}

int cr_req_set_json(struct cr_request *req, const cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    int rc;

    if (text == NULL)
        return CR_ENOMEM;
    cr_buf_reset(&req->body);
    rc = cr_buf_appends(&req->body, text);
    cJSON_free(text);
    return rc;
}

cJSON *cr_json_parse_body(const struct cr_response *resp)
{
    if (resp->body == NULL || resp->body_len == 0)
        return NULL;
    return cJSON_ParseWithLength(resp->body, resp->body_len);
}

const char *cr_json_string(const cJSON *obj, const char *key)
{
    const cJSON *item;

    if (obj == NULL)
        return NULL;
    item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(item))
        return NULL;
    return item->valuestring;
}

int cr_json_copy_string(const cJSON *obj, const char *key, char *out, size_t outlen)
{
    const char *s = cr_json_string(obj, key);
    size_t len;

    if (outlen == 0)
        return CR_ETOOBIG;
    out[0] = '\0';
    if (s == NULL)
        return CR_ENOTFOUND;
    len = strlen(s);
    if (len >= outlen) {
        memcpy(out, s, outlen - 1);
        out[outlen - 1] = '\0';
        return CR_ETOOBIG;
    }
    memcpy(out, s, len + 1);
    return 0;
}

int cr_pem_key_check(const char *pem, const char *kind, char *why, size_t whylen)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    char group[64];
    int rc = CR_EPARSE;

    if (whylen > 0)
        why[0] = '\0';
    if (pem == NULL || strstr(pem, "-----BEGIN") == NULL) {
        snprintf(why, whylen, "is not a PEM private key");
        goto out;
    }
    bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (key == NULL) {
        snprintf(why, whylen, "is not a readable PEM private key");
        goto out;
    }
    rc = CR_EINVAL;
    if (strcmp(kind, "EC") == 0) {
        if (!EVP_PKEY_is_a(key, "EC") ||
            EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(why, whylen, "must be an EC P-256 private key (ES256)");
            goto out;
        }
    } else if (strcmp(kind, "RSA") == 0) {
        if (!EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_get_bits(key) < 2048) {
            snprintf(why, whylen, "must be an RSA private key of 2048 bits or more (RS256)");
            goto out;
        }
    } else {
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}
