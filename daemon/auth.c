/* Integrator keys, job signatures and scopes (see auth.h). Every refusal says
 * what failed in words an integrator can act on, never the secret or the
 * signature that was expected. */
#include "auth.h"

#include <math.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_str.h"
#include "sigs.h"

_Static_assert(CR_SIG_MAC_LEN == CR_HMAC_SHA256_LEN, "a job signature is an HMAC-SHA256");

#define MAX_KEYS 256
#define MAX_PATTERNS 64
#define PATTERN_MAX 128
#define SECRET_MAX 1024
#define TS_DIGITS_MAX 12

static const char *const key_fields[] = {"secret",       "segments",     "subscribers",
                                         "channels",     "max_priority", "max_audience",
                                         "may_schedule", "rate",         "burst",
                                         NULL};

static int cfail(char *err, size_t errlen, const char *id, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int cfail(char *err, size_t errlen, const char *id, const char *field, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errlen == 0)
        return CR_ECONFIG;
    if (field != NULL)
        n = snprintf(err, errlen, "integrators.%s.%s: ", id, field);
    else if (id != NULL)
        n = snprintf(err, errlen, "integrators.%s: ", id);
    else
        n = snprintf(err, errlen, "integrators: ");
    if (n < 0 || (size_t)n >= errlen)
        return CR_ECONFIG;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return CR_ECONFIG;
}

static int id_ok(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return i > 0 && i <= CR_KEY_ID_MAX;
}

static int get_bool(const cJSON *o, const char *name, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL)
        return 0;
    if (!cJSON_IsBool(v))
        return -1;
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

static int get_long(const cJSON *o, const char *name, long min, long max, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min && v->valuedouble <= (double)max) ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    *out = (long)v->valuedouble;
    return 0;
}

static int parse_key(const cJSON *o, struct cr_integrator *k, char *err, size_t errlen)
{
    const char *id = o->string;
    const cJSON *v;
    const cJSON *it;
    size_t i;

    snprintf(k->id, sizeof(k->id), "%s", id);
    k->channels = CR_CH_BIT(CR_CH_EMAIL) | CR_CH_BIT(CR_CH_SMS) | CR_CH_BIT(CR_CH_PUSH) |
                  CR_CH_BIT(CR_CH_WHATSAPP);
    k->max_priority = CR_PRIO_HIGH;
    k->max_audience = 10000;
    k->rate = 10;
    k->burst = 100;
    if (!cJSON_IsObject(o))
        return cfail(err, errlen, id, NULL, "must be an object");
    cJSON_ArrayForEach(it, o)
    {
        for (i = 0; key_fields[i] && strcmp(key_fields[i], it->string) != 0; i++)
            ;
        if (key_fields[i] == NULL)
            return cfail(err, errlen, id, it->string, "unknown key");
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "secret");
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return cfail(err, errlen, id, "secret", "required, a string (use \"$file:...\" or \"$env:...\")");
    k->secret_len = strlen(v->valuestring);
    if (k->secret_len < CR_SECRET_MIN || k->secret_len > SECRET_MAX)
        return cfail(err, errlen, id, "secret", "must be %d to %d bytes long, got %zu",
                     CR_SECRET_MIN, SECRET_MAX, k->secret_len);
    k->secret = malloc(k->secret_len + 1);
    if (k->secret == NULL)
        return CR_ENOMEM;
    memcpy(k->secret, v->valuestring, k->secret_len + 1);

    v = cJSON_GetObjectItemCaseSensitive(o, "segments");
    if (v != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(v);

        if (!cJSON_IsArray(v) || n > MAX_PATTERNS)
            return cfail(err, errlen, id, "segments", "must be a list of at most %d patterns",
                         MAX_PATTERNS);
        k->segments = calloc(n ? n : 1, sizeof(char *));
        if (k->segments == NULL)
            return CR_ENOMEM;
        cJSON_ArrayForEach(it, v)
        {
            if (!cJSON_IsString(it) || it->valuestring[0] == '\0' ||
                strlen(it->valuestring) > PATTERN_MAX)
                return cfail(err, errlen, id, "segments",
                             "entry %zu must be a pattern of 1 to %d characters", k->nsegments,
                             PATTERN_MAX);
            k->segments[k->nsegments] = strdup(it->valuestring);
            if (k->segments[k->nsegments] == NULL)
                return CR_ENOMEM;
            k->nsegments++;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "channels");
    if (v != NULL) {
        if (!cJSON_IsArray(v))
            return cfail(err, errlen, id, "channels", "must be a list of channel names");
        k->channels = 0;
        cJSON_ArrayForEach(it, v)
        {
            enum cr_channel ch;

            if (!cJSON_IsString(it) || cr_channel_parse(it->valuestring, &ch) != 0)
                return cfail(err, errlen, id, "channels", "entries are \"email\", \"sms\" or \"push\"");
            k->channels |= CR_CH_BIT(ch);
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "max_priority");
    if (v != NULL && (!cJSON_IsString(v) || cr_priority_parse(v->valuestring, &k->max_priority) != 0))
        return cfail(err, errlen, id, "max_priority",
                     "must be \"urgent\", \"high\", \"normal\" or \"bulk\"");
    if (get_bool(o, "subscribers", &k->subscribers) < 0)
        return cfail(err, errlen, id, "subscribers", "must be true or false");
    if (get_bool(o, "may_schedule", &k->may_schedule) < 0)
        return cfail(err, errlen, id, "may_schedule", "must be true or false");
    if (get_long(o, "max_audience", 0, 100000000, &k->max_audience) < 0)
        return cfail(err, errlen, id, "max_audience", "must be an integer from 0 (no limit) to 100000000");
    if (get_long(o, "rate", 0, 1000000, &k->rate) < 0)
        return cfail(err, errlen, id, "rate", "must be an integer from 0 (no limit) to 1000000");
    if (get_long(o, "burst", 0, 10000000, &k->burst) < 0)
        return cfail(err, errlen, id, "burst", "must be an integer from 0 to 10000000");
    return 0;
}

int cr_integrators_parse(const cJSON *obj, struct cr_integrators **out, char *err, size_t errlen)
{
    struct cr_integrators *k = NULL;
    const cJSON *it;
    size_t n;
    int rc = CR_ECONFIG;

    *out = NULL;
    if (obj == NULL)
        return 0;
    if (!cJSON_IsObject(obj))
        return cfail(err, errlen, NULL, NULL, "must be an object of keys by id");
    n = (size_t)cJSON_GetArraySize(obj);
    if (n > MAX_KEYS)
        return cfail(err, errlen, NULL, NULL, "at most %d keys", MAX_KEYS);
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CR_ENOMEM;
    k->v = calloc(n ? n : 1, sizeof(*k->v));
    if (k->v == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    cJSON_ArrayForEach(it, obj)
    {
        if (!id_ok(it->string)) {
            rc = cfail(err, errlen, NULL, NULL,
                       "key id '%.64s' must be 1 to %d of A-Z a-z 0-9 _ -", it->string,
                       CR_KEY_ID_MAX);
            goto out;
        }
        if (cr_integrator_find(k, it->string) != NULL) {
            rc = cfail(err, errlen, it->string, NULL, "key appears twice");
            goto out;
        }
        rc = parse_key(it, &k->v[k->n], err, errlen);
        k->n++; /* freed with the rest even when half filled */
        if (rc != 0)
            goto out;
    }
    *out = k;
    k = NULL;
    rc = 0;
out:
    cr_integrators_free(k);
    return rc;
}

void cr_integrators_free(struct cr_integrators *k)
{
    size_t i, j;

    if (k == NULL)
        return;
    for (i = 0; i < k->n; i++) {
        if (k->v[i].secret != NULL)
            OPENSSL_cleanse(k->v[i].secret, k->v[i].secret_len);
        free(k->v[i].secret);
        for (j = 0; j < k->v[i].nsegments; j++)
            free(k->v[i].segments[j]);
        free(k->v[i].segments);
    }
    free(k->v);
    free(k);
}

const struct cr_integrator *cr_integrator_find(const struct cr_integrators *k, const char *id)
{
    size_t i;

    if (k == NULL || id == NULL)
        return NULL;
    for (i = 0; i < k->n; i++) {
        if (strcmp(k->v[i].id, id) == 0)
            return &k->v[i];
    }
    return NULL;
}

int cr_glob_match(const char *p, const char *s)
{
    const char *star = NULL;
    const char *resume = NULL;

    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == '?' || *p == *s) {
            p++;
            s++;
        } else if (star != NULL) {
            p = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

int cr_sig_parse(const char *s, size_t len, struct cr_sig *out)
{
    size_t i = 0;

    memset(out, 0, sizeof(*out));
    if (len > CR_SIG_HEADER_MAX)
        return CR_ETOOBIG;
    while (i < len) {
        size_t start, end, j;
        const char *eq;

        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        start = i;
        while (i < len && s[i] != ',')
            i++;
        end = i;
        if (i < len)
            i++; /* the comma */
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (end == start)
            return CR_EPARSE; /* an empty entry: ",," or a trailing comma */
        eq = memchr(s + start, '=', end - start);
        if (eq == NULL || eq == s + start)
            return CR_EPARSE;
        if ((size_t)(eq - (s + start)) != 2 || memcmp(s + start, "v1", 2) != 0)
            continue; /* another version: not ours to read */
        if (end - start != 3 + 2 * CR_SIG_MAC_LEN)
            return CR_EPARSE;
        if (out->n == CR_SIG_MAX)
            return CR_ETOOBIG;
        for (j = 0; j < CR_SIG_MAC_LEN; j++) {
            int hi = cr_hex_value(s[start + 3 + 2 * j]);
            int lo = cr_hex_value(s[start + 4 + 2 * j]);

            if (hi < 0 || lo < 0)
                return CR_EPARSE;
            out->mac[out->n][j] = (unsigned char)(hi * 16 + lo);
        }
        out->n++;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len > 0 && s[len - 1] == ',')
        return CR_EPARSE; /* a trailing empty entry */
    return out->n > 0 ? 0 : CR_EPARSE;
}

int cr_sig_ts_parse(const char *s, int64_t *out_s)
{
    int64_t v = 0;
    size_t i;

    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= TS_DIGITS_MAX)
            return CR_EPARSE;
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0)
        return CR_EPARSE;
    *out_s = v;
    return 0;
}

int cr_sig_make(const void *secret, size_t secret_len, const char *ts, const void *doc,
                size_t len, char out[CR_SIG_TEXT_LEN])
{
    unsigned char mac[CR_SIG_MAC_LEN];
    int rc = cr_hmac_ts_body(secret, secret_len, ts, doc, len, mac);

    if (rc != 0)
        return rc;
    memcpy(out, "v1=", 3);
    cr_hex(mac, CR_SIG_MAC_LEN, out + 3);
    return 0;
}

static int unauthorized(struct cr_job_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int unauthorized(struct cr_job_error *err, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->code, sizeof(err->code), "unauthorized");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

/* A value from outside, made safe to quote in a message. */
static const char *printable(char *dst, size_t n, const char *s)
{
    size_t i;

    for (i = 0; s[i] && i + 4 < n; i++)
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
    return dst;
}

int cr_auth_verify(const struct cr_integrators *k, const struct cr_signed *s, const void *doc,
                   size_t len, int64_t now_ms, long window_s, const struct cr_integrator **who,
                   unsigned char mac_out[CR_SIG_MAC_LEN], struct cr_job_error *err)
{
    const struct cr_integrator *key;
    unsigned char mac[CR_SIG_MAC_LEN];
    struct cr_sig sig;
    int64_t ts, now_s = now_ms / 1000;
    char q[72];
    size_t i;
    int found = 0;
    int rc;

    *who = NULL;
    if (s->key == NULL && s->sig == NULL)
        return unauthorized(err, "unsigned: the entry has no 'key' and 'sig' fields, and "
                                 "intake.require_signed is on");
    if (s->key == NULL)
        return unauthorized(err, "key: missing ('sig' given without the key id that made it)");
    key = cr_integrator_find(k, s->key);
    if (key == NULL)
        return unauthorized(err, "key: unknown key '%s'", printable(q, sizeof(q), s->key));
    if (s->sig == NULL)
        return unauthorized(err, "sig: missing (key '%s' given without a signature)", key->id);
    if (s->ts == NULL)
        return unauthorized(err, "ts: missing (the signature covers '<ts>.<job>', key '%s')",
                            key->id);
    if (cr_sig_ts_parse(s->ts, &ts) != 0)
        return unauthorized(err, "ts: '%s' is not unix seconds", printable(q, sizeof(q), s->ts));
    if (ts < now_s - window_s)
        return unauthorized(err, "ts: stale timestamp, %lld s old, outside the %ld s window",
                            (long long)(now_s - ts), window_s);
    if (ts > now_s + window_s)
        return unauthorized(err, "ts: future timestamp, %lld s ahead, outside the %ld s window",
                            (long long)(ts - now_s), window_s);
    rc = cr_sig_parse(s->sig, strlen(s->sig), &sig);
    if (rc != 0)
        return unauthorized(err, "sig: malformed signature (want v1=<64 hex digits>)");
    rc = cr_hmac_ts_body(key->secret, key->secret_len, s->ts, doc, len, mac);
    if (rc != 0) {
        snprintf(err->code, sizeof(err->code), "no_memory");
        snprintf(err->message, sizeof(err->message), "out of memory while checking the signature");
        return rc;
    }
    for (i = 0; i < sig.n; i++) {
        if (CRYPTO_memcmp(mac, sig.mac[i], CR_SIG_MAC_LEN) == 0)
            found = 1; /* no early exit: every entry takes the same time */
    }
    if (!found)
        return unauthorized(err, "sig: bad signature for key '%s' (the job bytes or ts differ "
                                 "from what was signed, or the secret is wrong)",
                            key->id);
    if (mac_out != NULL)
        memcpy(mac_out, mac, CR_SIG_MAC_LEN);
    *who = key;
    return 0;
}

static int forbidden(struct cr_job_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int forbidden(struct cr_job_error *err, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->code, sizeof(err->code), "forbidden");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

int cr_auth_scopes(const struct cr_integrator *key, const struct cr_job *job,
                   struct cr_job_error *err)
{
    char q[72];
    size_t i, j;
    int ch;

    for (i = 0; i < job->segments.n; i++) {
        for (j = 0; j < key->nsegments; j++) {
            if (cr_glob_match(key->segments[j], job->segments.v[i]))
                break;
        }
        if (j == key->nsegments)
            return forbidden(err, "audience.segments[%zu]: '%s' is outside the segments of key "
                                  "'%s' (scope segments)",
                             i, printable(q, sizeof(q), job->segments.v[i]), key->id);
    }
    if (job->subscribers.n > 0 && !key->subscribers)
        return forbidden(err, "audience.subscribers: key '%s' may not name subscribers by id "
                              "(scope subscribers)",
                         key->id);
    for (ch = 0; ch < CR_CH__COUNT; ch++) {
        if ((job->channels & CR_CH_BIT(ch)) && !(key->channels & CR_CH_BIT(ch)))
            return forbidden(err, "channels: '%s' is not granted to key '%s' (scope channels)",
                             cr_channel_name((enum cr_channel)ch), key->id);
    }
    if (job->priority < key->max_priority)
        return forbidden(err, "priority: '%s' is above key '%s''s max_priority '%s' (scope "
                              "max_priority)",
                         cr_priority_name(job->priority), key->id,
                         cr_priority_name(key->max_priority));
    if (job->send_at_ms != 0 && !key->may_schedule)
        return forbidden(err, "send_at: key '%s' may not schedule jobs (scope may_schedule)",
                         key->id);
    return 0;
}

int cr_auth_bearer(const struct cr_integrators *k, const char *value,
                   const struct cr_integrator **who, char *why, size_t whylen)
{
    const struct cr_integrator *key;
    char id[CR_KEY_ID_MAX + 1];
    const char *tok;
    const char *dot;
    size_t idlen;

    *who = NULL;
    if (value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
        return CR_ENOTFOUND;
    tok = value + 7;
    while (*tok == ' ')
        tok++;
    dot = strchr(tok, '.');
    idlen = dot ? (size_t)(dot - tok) : 0;
    if (dot == NULL || idlen == 0 || idlen > CR_KEY_ID_MAX) {
        snprintf(why, whylen, "bearer token: want <key id>.<secret>");
        return CR_EINVAL;
    }
    memcpy(id, tok, idlen);
    id[idlen] = '\0';
    key = cr_integrator_find(k, id);
    if (key == NULL) {
        char q[72];

        snprintf(why, whylen, "bearer token: unknown key '%s'", printable(q, sizeof(q), id));
        return CR_EINVAL;
    }
    if (!cr_same_bytes(dot + 1, strlen(dot + 1), key->secret, key->secret_len)) {
        snprintf(why, whylen, "bearer token: wrong secret for key '%s'", key->id);
        return CR_EINVAL;
    }
    *who = key;
    return 0;
}
