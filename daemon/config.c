/* crierd's configuration: reads one JSON file (comments allowed), resolves the
 * secret references in it and checks every key, so that a bad config stops
 * startup with the key path and what is wrong. */
#include "config.h"
#include "auth.h"

#include "cr_buf.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_secret.h"
#include "cr_str.h"
#include "redis.h"
#include "tokens.h"
#include "sentinel.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#define CONFIG_MAX_BYTES (1024 * 1024) /* the config file */
#define MAX_DEPTH 32                   /* nesting; the real shape needs 4 */
#define PATH_LEN 256                   /* key paths in messages */
#define NAME_MAX_LEN 32                /* provider names */
#define HINT_MAX_LEN 64                /* longer keys get no "did you mean" */
#define PREFIX_MAX_LEN 63              /* what cr_keys_init accepts */

struct ctx {
    char *err;
    size_t errlen;
    const struct cr_provider_ops *const *adapters; /* NULL = cr_provider_find() */
};

/* Writes "<path>: <problem>" (or just the problem when path is NULL) and
 * returns CR_ECONFIG. */
__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, const char *path,
                                                       const char *fmt, ...)
{
    va_list ap;
    int n = 0;

    if (c->errlen == 0)
        return CR_ECONFIG;
    if (path != NULL && path[0] != '\0')
        n = snprintf(c->err, c->errlen, "%s: ", path);
    if (n < 0)
        n = 0;
    if ((size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return CR_ECONFIG;
}

static int oom(struct ctx *c)
{
    if (c->errlen > 0)
        snprintf(c->err, c->errlen, "out of memory while reading the config");
    return CR_ENOMEM;
}

/* snprintf for key paths, which may be cut short: a long path in a message
 * is still clear from its start. */
__attribute__((format(printf, 3, 4))) static void path_printf(char *out, size_t n,
                                                               const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static void join(char *out, size_t n, const char *parent, const char *key)
{
    if (parent == NULL || parent[0] == '\0')
        path_printf(out, n, "%s", key);
    else
        path_printf(out, n, "%s.%s", parent, key);
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "an unknown value";
}

/* What a value was, for "got ...": numbers by value, everything else by type
 * (strings may be resolved secrets and are never echoed). */
static void describe(const cJSON *v, char *out, size_t n)
{
    double d;

    if (!cJSON_IsNumber(v)) {
        snprintf(out, n, "%s", type_name(v));
        return;
    }
    d = v->valuedouble;
    if (isfinite(d) && d == floor(d) && fabs(d) < 1e15)
        snprintf(out, n, "%.0f", d);
    else
        snprintf(out, n, "%g", d);
}

static void line_col(const char *s, size_t off, int *line, int *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* ---- comments ---------------------------------------------------------- */

/* Overwrites every // and block comment in s with spaces, keeping newlines,
 * so that offsets in s are offsets in the original text and a parse error
 * names the right line and column. (cJSON_Minify is not used: it also drops
 * the whitespace between tokens, which turns "63 79" into 6379.) */
static int blank_comments(struct ctx *c, char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        if (s[i] == '"') {
            i++;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\' && i + 1 < len)
                    i++;
                i++;
            }
            i++; /* the closing quote; an unterminated string is cJSON's to report */
        } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '/') {
            while (i < len && s[i] != '\n')
                s[i++] = ' ';
        } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
            size_t start = i;

            s[i] = ' ';
            s[i + 1] = ' ';
            i += 2;
            while (i < len && !(s[i] == '*' && i + 1 < len && s[i + 1] == '/')) {
                if (s[i] != '\n')
                    s[i] = ' ';
                i++;
            }
            if (i >= len) {
                int line, col;

                line_col(s, start, &line, &col);
                return fail(c, NULL, "line %d, column %d: comment is never closed with */", line,
                            col);
            }
            s[i] = ' ';
            s[i + 1] = ' ';
            i += 2;
        } else {
            i++;
        }
    }
    return 0;
}

static int parse_error(struct ctx *c, const char *text, size_t len, size_t off)
{
    char near[24];
    size_t i, n = 0;
    int line, col;

    if (off > len)
        off = len;
    while (off < len && (text[off] == ' ' || text[off] == '\t')) /* point at the token */
        off++;
    line_col(text, off, &line, &col);
    if (off == len)
        return fail(c, NULL, "line %d, column %d: invalid JSON: unexpected end of file", line, col);
    if (text[off] == '\n' || text[off] == '\r')
        return fail(c, NULL, "line %d, column %d: invalid JSON at the end of the line", line, col);
    for (i = off; i < len && n + 1 < sizeof near && text[i] != '\n' && text[i] != '\r'; i++)
        near[n++] = isprint((unsigned char)text[i]) ? text[i] : '?';
    near[n] = '\0';
    return fail(c, NULL, "line %d, column %d: invalid JSON near '%s'", line, col, near);
}

/* ---- secrets ----------------------------------------------------------- */

/* Replaces one "$env:", "$file:" or "$$" string value in place. */
static int resolve_string(struct ctx *c, cJSON *v, const char *path)
{
    char *secret = NULL;
    char why[320];
    int rc;

    if (v->valuestring == NULL)
        return 0;
    rc = cr_secret_resolve(v->valuestring, &secret, why, sizeof why);
    if (rc == CR_ENOMEM)
        return oom(c);
    if (rc != 0)
        return fail(c, path, "%s", why);
    if (secret == NULL)
        return 0;
    if (cJSON_SetValuestring(v, secret) == NULL)
        rc = oom(c);
    cr_free_secret(secret);
    return rc;
}

/* Walks the whole tree; path holds the key path of node, plen its length. */
static int resolve_secrets(struct ctx *c, cJSON *node, char *path, size_t plen, int depth)
{
    cJSON *it;
    int i = 0;

    if (depth > MAX_DEPTH)
        return fail(c, path, "nested more than %d levels deep", MAX_DEPTH);
    if (cJSON_IsString(node))
        return resolve_string(c, node, path);
    if (!cJSON_IsArray(node) && !cJSON_IsObject(node))
        return 0;
    cJSON_ArrayForEach(it, node)
    {
        int rc;

        /* every name and text ends up in Redis, logs or messages: JSON is UTF-8 */
        if (cJSON_IsObject(node) && cr_utf8_invalid_at(it->string) >= 0)
            return fail(c, path[0] ? path : NULL, "a key name is not valid UTF-8 (byte %ld)",
                        cr_utf8_invalid_at(it->string));
        if (plen < PATH_LEN - 1) {
            if (cJSON_IsObject(node))
                path_printf(path + plen, PATH_LEN - plen, plen ? ".%s" : "%s", it->string);
            else
                path_printf(path + plen, PATH_LEN - plen, "[%d]", i);
        }
        rc = resolve_secrets(c, it, path, strlen(path), depth + 1);
        if (rc == 0 && cJSON_IsString(it) && cr_utf8_invalid_at(it->valuestring) >= 0)
            rc = fail(c, path, "is not valid UTF-8 (byte %ld of the value)",
                      cr_utf8_invalid_at(it->valuestring));
        path[plen] = '\0';
        if (rc != 0)
            return rc;
        i++;
    }
    return 0;
}

/* Overwrites every string in the tree (resolved secrets) before it is freed. */
static void wipe_strings(cJSON *node)
{
    cJSON *it;

    if (node == NULL)
        return;
    if (cJSON_IsString(node) && node->valuestring != NULL)
        explicit_bzero(node->valuestring, strlen(node->valuestring));
    cJSON_ArrayForEach(it, node)
    {
        wipe_strings(it);
    }
}

/* ---- keys -------------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t row[HINT_MAX_LEN + 1];
    size_t la = strlen(a), lb = strlen(b), i, j;

    if (la > HINT_MAX_LEN || lb > HINT_MAX_LEN)
        return (size_t)-1;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The candidate within edit distance 2 of word (closest first), or NULL. */
static const char *closest(const char *word, const char *const *a, const char *const *b)
{
    const char *const *lists[2] = {a, b};
    const char *best = NULL;
    size_t best_d = 3;
    size_t l, i;

    for (l = 0; l < 2; l++) {
        for (i = 0; lists[l] != NULL && lists[l][i] != NULL; i++) {
            size_t d = edit_distance(word, lists[l][i]);

            if (d < best_d) {
                best_d = d;
                best = lists[l][i];
            }
        }
    }
    return best;
}

static int in_list(const char *key, const char *const *list)
{
    size_t i;

    for (i = 0; list != NULL && list[i] != NULL; i++) {
        if (strcmp(key, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* Every key of obj must be in known or more, and appear once. */
static int check_keys(struct ctx *c, const cJSON *obj, const char *path, const char *const *known,
                      const char *const *more)
{
    const cJSON *it, *prev;

    cJSON_ArrayForEach(it, obj)
    {
        char p[PATH_LEN];

        join(p, sizeof p, path, it->string);
        if (!in_list(it->string, known) && !in_list(it->string, more)) {
            const char *hint = closest(it->string, known, more);

            if (hint != NULL)
                return fail(c, p, "unknown key (did you mean '%s'?)", hint);
            return fail(c, p, "unknown key");
        }
        for (prev = obj->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0)
                return fail(c, p, "key appears twice");
        }
    }
    return 0;
}

/* ---- values ------------------------------------------------------------ */

enum num_kind { NUM_INT, NUM_LONG, NUM_SIZE };

struct num_field {
    const char *key;
    enum num_kind kind;
    size_t off; /* into the struct the table describes */
    long min;
    long max;
};

static int get_num(struct ctx *c, const cJSON *obj, const char *parent, const char *key, long min,
                   long max, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATH_LEN], got[48];

    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min && v->valuedouble <= (double)max) ||
        v->valuedouble != floor(v->valuedouble)) {
        join(path, sizeof path, parent, key);
        describe(v, got, sizeof got);
        return fail(c, path, "must be an integer from %ld to %ld, got %s", min, max, got);
    }
    *out = (long)v->valuedouble;
    return 0;
}

static long load_num(const void *base, const struct num_field *f)
{
    const char *p = (const char *)base + f->off;

    switch (f->kind) {
    case NUM_INT:
        return *(const int *)(const void *)p;
    case NUM_LONG:
        return *(const long *)(const void *)p;
    case NUM_SIZE:
        break;
    }
    return (long)*(const size_t *)(const void *)p;
}

static void store_num(void *base, const struct num_field *f, long v)
{
    char *p = (char *)base + f->off;

    switch (f->kind) {
    case NUM_INT:
        *(int *)(void *)p = (int)v;
        break;
    case NUM_LONG:
        *(long *)(void *)p = v;
        break;
    case NUM_SIZE:
        *(size_t *)(void *)p = (size_t)v;
        break;
    }
}

/* Reads the numbers of a table from obj into base; absent keys keep what
 * base already holds (the defaults). */
static int read_nums(struct ctx *c, const cJSON *obj, const char *path, const struct num_field *f,
                     size_t n, void *base)
{
    size_t i;

    for (i = 0; i < n; i++) {
        long v = load_num(base, &f[i]);
        int rc = get_num(c, obj, path, f[i].key, f[i].min, f[i].max, &v);

        if (rc != 0)
            return rc;
        store_num(base, &f[i], v);
    }
    return 0;
}

enum {
    S_NULL_OK = 1 << 0,  /* null is allowed and means "none" */
    S_NONEMPTY = 1 << 1, /* "" is an error */
    S_NOSPACE = 1 << 2,  /* no spaces or control characters */
    S_URL = 1 << 3       /* http:// or https:// and a host */
};

/* Checks obj[key] as a string; *out is borrowed from obj, unchanged when the
 * key is absent, NULL for an allowed null. */
static int get_str(struct ctx *c, const cJSON *obj, const char *parent, const char *key,
                   unsigned flags, size_t maxlen, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATH_LEN];
    const char *s;
    size_t len, i;

    if (v == NULL)
        return 0;
    join(path, sizeof path, parent, key);
    if (cJSON_IsNull(v) && (flags & S_NULL_OK)) {
        *out = NULL;
        return 0;
    }
    if (!cJSON_IsString(v))
        return fail(c, path, "must be a string%s, got %s", (flags & S_NULL_OK) ? " or null" : "",
                    type_name(v));
    s = v->valuestring;
    len = strlen(s);
    if ((flags & S_NONEMPTY) && len == 0)
        return fail(c, path, "must not be empty");
    if (len > maxlen)
        return fail(c, path, "must be at most %zu bytes, got %zu", maxlen, len);
    if (flags & S_NOSPACE) {
        for (i = 0; i < len; i++) {
            if (isspace((unsigned char)s[i]) || iscntrl((unsigned char)s[i]))
                return fail(c, path, "must not contain spaces or control characters");
        }
    }
    if (flags & S_URL) {
        size_t skip;

        if (strncasecmp(s, "http://", 7) == 0)
            skip = 7;
        else if (strncasecmp(s, "https://", 8) == 0)
            skip = 8;
        else
            return fail(c, path, "must start with http:// or https://");
        if (s[skip] == '\0' || s[skip] == '/')
            return fail(c, path, "must name a host after %.*s", (int)skip, s);
    }
    *out = s;
    return 0;
}

/* Replaces the owned string *dst with a copy of s (NULL allowed); URLs lose
 * their trailing slashes. */
static int set_str(struct ctx *c, char **dst, const char *s, int is_url)
{
    char *copy = NULL;

    if (s != NULL) {
        copy = strdup(s);
        if (copy == NULL)
            return oom(c);
        if (is_url) {
            size_t len = strlen(copy);

            while (len > 0 && copy[len - 1] == '/')
                copy[--len] = '\0';
        }
    }
    free(*dst);
    *dst = copy;
    return 0;
}

/* obj[key] as an object; *out NULL when absent. */
static int get_obj(struct ctx *c, const cJSON *obj, const char *key, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsObject(v))
        return fail(c, key, "must be an object, got %s", type_name(v));
    *out = v;
    return 0;
}

/* ---- sections ---------------------------------------------------------- */

#define CFG(m) offsetof(struct cr_config, m)
#define LIM(m) offsetof(struct cr_job_limits, m)
#define PRV(m) offsetof(struct cr_provider_conf, m)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const top_keys[] = {"redis",    "consumer",   "group",       "intake",
                                       "fanout",   "retry",      "receipts",    "retention_s",
                                       "log_level", "public_url", "limits",     "channels",
                                       "providers", "http",       "webhooks",   "links",
                                       "workers",  "log_format", "log_repeat_s", "integrators",
                                       "dashboard", NULL};
static const char *const redis_keys[] = {"host",   "port",     "path",   "username",
                                         "password", "tls",  "prefix",
                                         "connect_timeout_ms", "command_timeout_ms",
                                         "reconnect_max_ms", "wait_replicas",
                                         "wait_timeout_ms", "sentinel", NULL};
static const char *const channel_keys[] = {"email", "sms", "push", "whatsapp", NULL};
static const char *const provider_keys[] = {"type",       "url",
                                            "max_inflight", "max_unrecorded", "timeout_ms",
                                            "connect_timeout_ms", "ca_file",
                                            "rate", "burst", "tier_limit", "breaker_failures",
                                            "breaker_open_ms", NULL};

static const struct num_field redis_nums[] = {
    {"port", NUM_INT, CFG(redis_port), 1, 65535},
    {"connect_timeout_ms", NUM_LONG, CFG(redis_connect_timeout_ms), 1, 300000},
    {"command_timeout_ms", NUM_LONG, CFG(redis_command_timeout_ms), 1, 300000},
    {"reconnect_max_ms", NUM_LONG, CFG(redis_reconnect_max_ms), 1, 3600000},
    {"wait_timeout_ms", NUM_LONG, CFG(redis_wait_timeout_ms), 1, 60000},
};
static const struct num_field intake_nums[] = {
    {"block_ms", NUM_LONG, CFG(intake_block_ms), 1, 60000},
    {"max_jobs", NUM_INT, CFG(intake_max_jobs), 1, 1000},
    {"sig_window_s", NUM_LONG, CFG(intake_sig_window_s), 1, 86400},
};
static const struct num_field fanout_nums[] = {
    {"batch_size", NUM_INT, CFG(batch_size), 1, 10000},
    {"max_batches", NUM_INT, CFG(max_batches), 1, 1024},
    {"reclaim_idle_ms", NUM_LONG, CFG(reclaim_idle_ms), 1000, 86400000},
};
static const struct num_field retry_nums[] = {
    {"max_attempts", NUM_INT, CFG(retry_max_attempts), 1, 100},
    {"base_ms", NUM_LONG, CFG(retry_base_ms), 1, 3600000},
    {"max_ms", NUM_LONG, CFG(retry_max_ms), 1, 86400000},
};
static const struct num_field receipts_nums[] = {
    {"maxlen", NUM_LONG, CFG(receipts_maxlen), 1, 1000000000},
};
static const struct num_field top_nums[] = {
    {"retention_s", NUM_LONG, CFG(retention_s), 60, 315360000},
    {"log_repeat_s", NUM_LONG, CFG(log_repeat_s), 0, 3600},
};
static const struct num_field limit_nums[] = {
    {"doc_bytes", NUM_SIZE, LIM(doc_bytes), 1024, 16777216},
    {"depth", NUM_INT, LIM(depth), 1, 64},
    {"id_length", NUM_SIZE, LIM(id_length), 1, 200},
    {"segments", NUM_SIZE, LIM(segments), 1, 10000},
    {"subscribers", NUM_SIZE, LIM(subscribers), 0, 1000000},
    {"subject", NUM_SIZE, LIM(subject), 1, 10000},
    {"text", NUM_SIZE, LIM(text), 1, 16777216},
    {"html", NUM_SIZE, LIM(html), 1, 16777216},
    {"sms_segments", NUM_INT, LIM(sms_segments), 1, 255},
    {"push_title", NUM_SIZE, LIM(push_title), 1, 4096},
    {"push_body", NUM_SIZE, LIM(push_body), 1, 4096},
    {"translations", NUM_SIZE, LIM(translations), 0, 256},
    {"tags", NUM_SIZE, LIM(tags), 0, 1024},
};
static const struct num_field http_nums[] = {
    {"max_connections", NUM_INT, CFG(http_max_connections), 1, 100000},
    {"max_header_bytes", NUM_SIZE, CFG(http_max_header_bytes), 1024, 1048576},
    {"max_headers", NUM_INT, CFG(http_max_headers), 4, 1000},
    {"max_body_bytes", NUM_SIZE, CFG(http_max_body_bytes), 1024, 67108864},
    {"idle_timeout_ms", NUM_LONG, CFG(http_idle_timeout_ms), 10, 3600000},
    {"read_timeout_ms", NUM_LONG, CFG(http_read_timeout_ms), 10, 600000},
};
static const struct num_field webhooks_nums[] = {
    {"window_s", NUM_LONG, CFG(webhooks_window_s), 10, 86400},
};
static const struct num_field links_nums[] = {
    {"ttl_days", NUM_LONG, CFG(links_ttl_days), 1, 3650},
};
static const struct num_field provider_nums[] = {
    {"max_inflight", NUM_INT, PRV(max_inflight), 1, 10000},
    {"max_unrecorded", NUM_INT, PRV(max_unrecorded), 1, 1000000},
    {"timeout_ms", NUM_LONG, PRV(timeout_ms), 1, 600000},
    {"connect_timeout_ms", NUM_LONG, PRV(connect_timeout_ms), 1, 120000},
    {"rate", NUM_LONG, PRV(rate), 0, 1000000},
    {"burst", NUM_LONG, PRV(burst), 0, 1000000},
    {"tier_limit", NUM_LONG, PRV(tier_limit), 0, 100000000},
    {"breaker_failures", NUM_INT, PRV(breaker_failures), 0, 100000},
    {"breaker_open_ms", NUM_LONG, PRV(breaker_open_ms), 100, 3600000},
};

/* Keys of a table, for check_keys. */
static void table_keys(const struct num_field *f, size_t n, const char **out)
{
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = f[i].key;
    out[n] = NULL;
}

/* A section made only of numbers. */
static int num_section(struct ctx *c, const cJSON *root, const char *name,
                       const struct num_field *f, size_t n, void *base)
{
    const char *keys[COUNT(limit_nums) + 1];
    const cJSON *obj;
    int rc;

    rc = get_obj(c, root, name, &obj);
    if (rc != 0 || obj == NULL)
        return rc;
    table_keys(f, n, keys);
    rc = check_keys(c, obj, name, keys, NULL);
    if (rc != 0)
        return rc;
    return read_nums(c, obj, name, f, n, base);
}

static int set_defaults(struct ctx *c, struct cr_config *cfg)
{
    char host[256];

    cfg->redis_port = 6379;
    cfg->redis_connect_timeout_ms = 2000;
    cfg->redis_command_timeout_ms = 5000;
    cfg->redis_reconnect_max_ms = 5000;
    cfg->redis_wait_replicas = -1; /* "auto" */
    cfg->redis_wait_timeout_ms = 1000;
    cfg->redis_sentinel_timeout_ms = 500;
    cfg->intake_block_ms = 1000;
    cfg->intake_max_jobs = 16;
    cfg->intake_sig_window_s = 300;
    cfg->batch_size = 500;
    cfg->max_batches = 8;
    cfg->reclaim_idle_ms = 60000;
    cfg->retry_max_attempts = 5;
    cfg->retry_base_ms = 500;
    cfg->retry_max_ms = 30000;
    cfg->receipts_maxlen = 1000000;
    cfg->retention_s = 604800;
    cfg->log_repeat_s = 10;
    cfg->workers = 1;
    cr_job_limits_default(&cfg->limits);
    cfg->http_max_connections = 1024;
    cfg->http_max_header_bytes = 16384;
    cfg->http_max_headers = 64;
    cfg->http_max_body_bytes = 1048576;
    cfg->http_idle_timeout_ms = 30000;
    cfg->http_read_timeout_ms = 10000;
    cfg->webhooks_window_s = 300;
    cfg->links_ttl_days = 90;

    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "crierd");
    host[sizeof host - 1] = '\0';

    if (set_str(c, &cfg->redis_host, "127.0.0.1", 0) != 0 ||
        set_str(c, &cfg->prefix, "crier:", 0) != 0 || set_str(c, &cfg->consumer, host, 0) != 0 ||
        set_str(c, &cfg->group, "crierd", 0) != 0 || set_str(c, &cfg->log_level, "info", 0) != 0 ||
        set_str(c, &cfg->log_format, "auto", 0) != 0 ||
        set_str(c, &cfg->public_url, "http://127.0.0.1", 0) != 0)
        return CR_ENOMEM;
    return 0;
}

/* A file option of "tls" must name a readable file. */
static int tls_file(struct ctx *c, const cJSON *obj, const char *path, const char *key,
                    char **dst)
{
    const char *s = NULL;
    char sub[PATH_LEN];
    int rc;

    rc = get_str(c, obj, path, key, S_NULL_OK | S_NONEMPTY, 4096, &s);
    if (rc != 0 || s == NULL)
        return rc;
    if (access(s, R_OK) != 0) {
        join(sub, sizeof sub, path, key);
        return fail(c, sub, "cannot read %s: %s", s, strerror(errno));
    }
    return set_str(c, dst, s, 0);
}

/* parent.tls: true (system CAs), false/null (none), or an object of
 * ca_file, cert_file, key_file, server_name. The files are loaded now, as the
 * connection will load them, so that crierd -t finds a bad one. */
static int parse_tls(struct ctx *c, const cJSON *parent, const char *ppath,
                     struct cr_tls_conf *out)
{
    static const char *const tls_keys[] = {"ca_file", "cert_file", "key_file", "server_name",
                                           NULL};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, "tls");
    const char *name = NULL;
    struct cr_redis_tls t;
    char path[PATH_LEN];
    char sub[PATH_LEN];
    char err[256];
    const char *key;
    int rc;

    if (v == NULL || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return 0;
    join(path, sizeof path, ppath, "tls");
    if (!cJSON_IsTrue(v) && !cJSON_IsObject(v))
        return fail(c, path, "must be an object (ca_file, cert_file, key_file, server_name), "
                             "true or false, got %s", type_name(v));
    out->enabled = 1;
    if (cJSON_IsObject(v)) {
        rc = check_keys(c, v, path, tls_keys, NULL);
        if (rc == 0)
            rc = tls_file(c, v, path, "ca_file", &out->ca_file);
        if (rc == 0)
            rc = tls_file(c, v, path, "cert_file", &out->cert_file);
        if (rc == 0)
            rc = tls_file(c, v, path, "key_file", &out->key_file);
        if (rc == 0)
            rc = get_str(c, v, path, "server_name", S_NULL_OK | S_NONEMPTY | S_NOSPACE, 255,
                         &name);
        if (rc == 0)
            rc = set_str(c, &out->server_name, name, 0);
        if (rc != 0)
            return rc;
        if ((out->cert_file == NULL) != (out->key_file == NULL)) {
            join(sub, sizeof sub, path, out->cert_file ? "key_file" : "cert_file");
            return fail(c, sub, "missing: cert_file and key_file go together");
        }
    }
    memset(&t, 0, sizeof(t));
    t.enabled = 1;
    t.ca_file = out->ca_file;
    t.cert_file = out->cert_file;
    t.key_file = out->key_file;
    t.server_name = out->server_name;
    if (cr_redis_tls_check(&t, &key, err, sizeof(err)) != 0) {
        join(sub, sizeof sub, path, key);
        return fail(c, sub, "does not load: %s", err);
    }
    return 0;
}

static void free_tls(struct cr_tls_conf *t)
{
    free(t->ca_file);
    free(t->cert_file);
    free(t->key_file);
    free(t->server_name);
    memset(t, 0, sizeof(*t));
}

int cr_config_wait_replicas_auto(int sentinel)
{
    return sentinel ? 1 : 0;
}

/* redis.wait_replicas: a whole number from 0 to WAIT_REPLICAS_MAX, or "auto"
 * (kept as -1 until the whole redis section is known). */
#define WAIT_REPLICAS_MAX 16
static int parse_wait_replicas(struct ctx *c, struct cr_config *cfg, const cJSON *obj)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "wait_replicas");
    char got[64];
    double d;

    if (v == NULL)
        return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0) {
        cfg->redis_wait_replicas = -1;
        return 0;
    }
    d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (cJSON_IsNumber(v) && d == floor(d) && d >= 0 && d <= WAIT_REPLICAS_MAX) {
        cfg->redis_wait_replicas = (int)d;
        return 0;
    }
    describe(v, got, sizeof got);
    return fail(c, "redis.wait_replicas", "must be a whole number from 0 to %d or \"auto\", got %s",
                WAIT_REPLICAS_MAX, got);
}

/* redis.sentinel.nodes: 1..CR_SENTINEL_NODES_MAX distinct "host:port". */
static int parse_sentinel_nodes(struct ctx *c, struct cr_config *cfg, const cJSON *v)
{
    const char *path = "redis.sentinel.nodes";
    const cJSON *it;
    size_t n = 0, i;
    char p[PATH_LEN];

    if (v == NULL)
        return fail(c, path, "is required: the Sentinels to ask, e.g. [\"10.0.0.1:26379\", "
                             "\"10.0.0.2:26379\", \"10.0.0.3:26379\"]");
    if (!cJSON_IsArray(v))
        return fail(c, path, "must be an array of \"host:port\" strings, got %s", type_name(v));
    if (cJSON_GetArraySize(v) < 1)
        return fail(c, path, "must name at least one Sentinel");
    if (cJSON_GetArraySize(v) > CR_SENTINEL_NODES_MAX)
        return fail(c, path, "at most %d Sentinels, got %d", CR_SENTINEL_NODES_MAX,
                    cJSON_GetArraySize(v));
    cfg->redis_sentinel_nodes = calloc(CR_SENTINEL_NODES_MAX, sizeof(char *));
    if (cfg->redis_sentinel_nodes == NULL)
        return oom(c);
    cJSON_ArrayForEach(it, v)
    {
        struct cr_redis_addr a;

        path_printf(p, sizeof p, "%s[%zu]", path, n);
        if (!cJSON_IsString(it))
            return fail(c, p, "must be a \"host:port\" string, got %s", type_name(it));
        if (cr_sentinel_parse_node(it->valuestring, &a) < 0)
            return fail(c, p, "must be \"host:port\" with a port from 1 to 65535 "
                              "(\"[addr]:port\" for IPv6)");
        for (i = 0; i < n; i++) {
            if (strcmp(cfg->redis_sentinel_nodes[i], it->valuestring) == 0)
                return fail(c, p, "names the same Sentinel as %s[%zu]", path, i);
        }
        cfg->redis_sentinel_nodes[n] = strdup(it->valuestring);
        if (cfg->redis_sentinel_nodes[n] == NULL)
            return oom(c);
        cfg->redis_sentinel_nnodes = ++n;
    }
    return 0;
}

/* redis.sentinel: where to find the primary instead of redis.host/port. */
static int parse_sentinel(struct ctx *c, struct cr_config *cfg, const cJSON *redis)
{
    static const char *const keys[] = {"master", "nodes", "username", "password", "timeout_ms",
                                       NULL};
    static const struct num_field nums[] = {
        {"timeout_ms", NUM_LONG, CFG(redis_sentinel_timeout_ms), 10, 60000},
    };
    const char *master = NULL, *user = NULL, *password = NULL;
    const cJSON *obj, *v;
    int rc;

    v = cJSON_GetObjectItemCaseSensitive(redis, "sentinel");
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v))
        return fail(c, "redis.sentinel", "must be an object, got %s", type_name(v));
    obj = v;
    if (cJSON_GetObjectItemCaseSensitive(redis, "host") != NULL ||
        cJSON_GetObjectItemCaseSensitive(redis, "port") != NULL ||
        cJSON_GetObjectItemCaseSensitive(redis, "path") != NULL)
        return fail(c, "redis.sentinel",
                    "cannot be used together with redis.host, redis.port or redis.path: "
                    "Sentinel names the primary (remove one or the other)");
    rc = check_keys(c, obj, "redis.sentinel", keys, NULL);
    if (rc == 0 && cJSON_GetObjectItemCaseSensitive(obj, "master") == NULL)
        rc = fail(c, "redis.sentinel.master",
                  "is required: the name the Sentinels monitor the primary by "
                  "(\"sentinel monitor <name> ...\")");
    if (rc == 0)
        rc = get_str(c, obj, "redis.sentinel", "master", S_NONEMPTY | S_NOSPACE, 255, &master);
    if (rc == 0)
        rc = get_str(c, obj, "redis.sentinel", "username", S_NULL_OK | S_NONEMPTY | S_NOSPACE,
                     255, &user);
    if (rc == 0)
        rc = get_str(c, obj, "redis.sentinel", "password", S_NULL_OK, 512, &password);
    if (rc == 0)
        rc = read_nums(c, obj, "redis.sentinel", nums, COUNT(nums), cfg);
    if (rc == 0)
        rc = parse_sentinel_nodes(c, cfg, cJSON_GetObjectItemCaseSensitive(obj, "nodes"));
    if (rc == 0 && user != NULL && password == NULL)
        rc = fail(c, "redis.sentinel.username", "needs redis.sentinel.password as well");
    if (rc == 0)
        rc = set_str(c, &cfg->redis_sentinel_username, user, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_sentinel_password, password, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_sentinel_master, master, 0);
    return rc;
}

static int parse_redis(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const char *host = cfg->redis_host, *password = NULL, *prefix = cfg->prefix;
    const char *path = NULL, *username = NULL;
    const cJSON *obj;
    int rc;

    rc = get_obj(c, root, "redis", &obj);
    if (rc != 0 || obj == NULL)
        return rc;
    rc = check_keys(c, obj, "redis", redis_keys, NULL);
    if (rc == 0)
        rc = get_str(c, obj, "redis", "host", S_NONEMPTY | S_NOSPACE, 255, &host);
    if (rc == 0)
        rc = get_str(c, obj, "redis", "path", S_NULL_OK | S_NONEMPTY, 107, &path);
    if (rc == 0 && path != NULL &&
        (cJSON_GetObjectItemCaseSensitive(obj, "host") != NULL ||
         cJSON_GetObjectItemCaseSensitive(obj, "port") != NULL))
        rc = fail(c, "redis.path", "a unix socket replaces host and port: give one or the other");
    if (rc == 0)
        rc = get_str(c, obj, "redis", "username", S_NULL_OK | S_NONEMPTY | S_NOSPACE, 256,
                     &username);
    if (rc == 0)
        rc = get_str(c, obj, "redis", "password", S_NULL_OK, 512, &password);
    if (rc == 0 && username != NULL && password == NULL)
        rc = fail(c, "redis.username", "needs redis.password (AUTH takes both)");
    if (rc == 0)
        rc = parse_tls(c, obj, "redis", &cfg->redis_tls);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_path, path, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_username, username, 0);
    if (rc == 0)
        rc = get_str(c, obj, "redis", "prefix", S_NONEMPTY | S_NOSPACE, PREFIX_MAX_LEN, &prefix);
    if (rc == 0)
        rc = read_nums(c, obj, "redis", redis_nums, COUNT(redis_nums), cfg);
    if (rc == 0)
        rc = parse_wait_replicas(c, cfg, obj);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_host, host, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->redis_password, password, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->prefix, prefix, 0);
    if (rc == 0)
        rc = parse_sentinel(c, cfg, obj);
    return rc;
}

/* "log_format": how crierd writes its lines (cr_log.h); "auto" is decided
 * when the daemon starts, from where its stderr goes. */
static int parse_log_format(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const char *format = cfg->log_format;
    enum cr_log_format parsed;
    int rc;

    rc = get_str(c, root, "", "log_format", S_NONEMPTY, 16, &format);
    if (rc == 0 && cr_log_parse_format(format, &parsed) != 0)
        rc = fail(c, "log_format", "must be one of auto, text, journal, json, got '%s'", format);
    if (rc == 0)
        rc = set_str(c, &cfg->log_format, format, 0);
    return rc;
}

/* "workers": a whole number from 1 to CR_WORKERS_MAX, or "auto" for one per
 * core the process may run on. */
static int parse_workers(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "workers");
    char got[64];
    double d;

    if (v == NULL)
        return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0) {
        unsigned cores = uv_available_parallelism();

        cfg->workers = cores < 1 ? 1 : cores > CR_WORKERS_MAX ? CR_WORKERS_MAX : (int)cores;
        return 0;
    }
    d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (cJSON_IsNumber(v) && d == floor(d) && d >= 1 && d <= CR_WORKERS_MAX) {
        cfg->workers = (int)d;
        return 0;
    }
    describe(v, got, sizeof got); /* a string is not echoed: it may be a resolved secret */
    return fail(c, "workers", "must be a whole number from 1 to %d or \"auto\", got %s",
                CR_WORKERS_MAX, got);
}

static int parse_top_strings(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const char *consumer = cfg->consumer, *group = cfg->group, *level = cfg->log_level;
    const char *url = cfg->public_url;
    enum cr_log_level parsed;
    int rc;

    rc = get_str(c, root, "", "consumer", S_NONEMPTY | S_NOSPACE, 128, &consumer);
    if (rc == 0)
        rc = get_str(c, root, "", "group", S_NONEMPTY | S_NOSPACE, 128, &group);
    if (rc == 0)
        rc = get_str(c, root, "", "log_level", S_NONEMPTY, 16, &level);
    if (rc == 0 && cr_log_parse_level(level, &parsed) != 0)
        rc = fail(c, "log_level", "must be one of error, warn, info, debug, got '%s'", level);
    if (rc == 0)
        rc = get_str(c, root, "", "public_url", S_NOSPACE | S_URL, 1024, &url);
    if (rc == 0)
        rc = set_str(c, &cfg->consumer, consumer, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->group, group, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->log_level, level, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->public_url, url, 1);
    return rc;
}

/* Reads obj[key] as true or false into *out (unchanged when absent). */
static int get_flag(struct ctx *c, const cJSON *obj, const char *parent, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATH_LEN];

    if (v == NULL)
        return 0;
    if (!cJSON_IsBool(v)) {
        join(path, sizeof path, parent, key);
        return fail(c, path, "must be true or false, got %s", type_name(v));
    }
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* "intake": its numbers, require_signed, and the integrator keys it checks. */
static int parse_intake(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    static const char *const more[] = {"require_signed", NULL};
    const char *keys[COUNT(intake_nums) + 1];
    const cJSON *obj;
    int rc;

    rc = get_obj(c, root, "intake", &obj);
    if (rc == 0 && obj != NULL) {
        table_keys(intake_nums, COUNT(intake_nums), keys);
        rc = check_keys(c, obj, "intake", keys, more);
        if (rc == 0)
            rc = read_nums(c, obj, "intake", intake_nums, COUNT(intake_nums), cfg);
        if (rc == 0)
            rc = get_flag(c, obj, "intake", "require_signed", &cfg->intake_require_signed);
    }
    if (rc == 0) {
        rc = cr_integrators_parse(cJSON_GetObjectItemCaseSensitive(root, "integrators"),
                                  &cfg->integrators, c->err, c->errlen);
        if (rc == CR_ENOMEM)
            rc = oom(c);
    }
    return rc;
}

/* "host:port" with a numeric port; the host may be a name, an IPv4 address
 * or a bracketed IPv6 address. */
static int listen_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    long port;

    if (colon == NULL || colon == s || colon[1] == '\0')
        return 0;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port >= 0 && port <= 65535;
}

/* The sections of the HTTP side: "http", "webhooks", "links". */
static int parse_http_side(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    static const char *const http_keys[] = {"listen", "max_connections", "max_header_bytes",
                                            "max_headers", "max_body_bytes", "idle_timeout_ms",
                                            "read_timeout_ms", NULL};
    static const char *const hook_keys[] = {"public_url", "sendgrid_public_key", "generic_secret",
                                            "window_s", "confirm_keywords", NULL};
    static const char *const link_keys[] = {"secret", "ttl_days", "allow_insecure_http", NULL};
    const char *listen = NULL, *url = cfg->public_url, *sgkey = NULL, *generic = NULL;
    const char *secret = NULL;
    const char *keywords = NULL;
    const char *url_key = "public_url"; /* the key the link base came from */
    int insecure = 0;
    const cJSON *obj;
    int rc;

    rc = get_obj(c, root, "http", &obj);
    if (rc == 0 && obj != NULL) {
        rc = check_keys(c, obj, "http", http_keys, NULL);
        if (rc == 0)
            rc = get_str(c, obj, "http", "listen", S_NULL_OK | S_NONEMPTY | S_NOSPACE, 300,
                         &listen);
        if (rc == 0 && listen != NULL && !listen_ok(listen))
            rc = fail(c, "http.listen", "must be host:port (e.g. 127.0.0.1:8080), got '%s'",
                      listen);
        if (rc == 0)
            rc = read_nums(c, obj, "http", http_nums, COUNT(http_nums), cfg);
    }
    if (rc == 0)
        rc = get_obj(c, root, "webhooks", &obj);
    if (rc == 0 && obj != NULL) {
        rc = check_keys(c, obj, "webhooks", hook_keys, NULL);
        if (rc == 0 && cJSON_GetObjectItemCaseSensitive(obj, "public_url") != NULL)
            url_key = "webhooks.public_url";
        if (rc == 0)
            rc = get_str(c, obj, "webhooks", "public_url", S_NOSPACE | S_URL, 1024, &url);
        if (rc == 0)
            rc = get_str(c, obj, "webhooks", "sendgrid_public_key", S_NULL_OK | S_NONEMPTY, 8192,
                         &sgkey);
        if (rc == 0)
            rc = get_str(c, obj, "webhooks", "generic_secret", S_NULL_OK | S_NONEMPTY, 1024,
                         &generic);
        if (rc == 0)
            rc = get_str(c, obj, "webhooks", "confirm_keywords", S_NULL_OK | S_NONEMPTY, 256,
                         &keywords);
        if (rc == 0)
            rc = read_nums(c, obj, "webhooks", webhooks_nums, COUNT(webhooks_nums), cfg);
    }
    if (rc == 0)
        rc = get_obj(c, root, "links", &obj);
    if (rc == 0 && obj != NULL) {
        rc = check_keys(c, obj, "links", link_keys, NULL);
        if (rc == 0)
            rc = get_str(c, obj, "links", "secret", S_NULL_OK | S_NONEMPTY, 1024, &secret);
        if (rc == 0 && secret != NULL && strlen(secret) < 16)
            rc = fail(c, "links.secret", "must be at least 16 bytes, got %zu", strlen(secret));
        if (rc == 0)
            rc = read_nums(c, obj, "links", links_nums, COUNT(links_nums), cfg);
        if (rc == 0)
            rc = get_flag(c, obj, "links", "allow_insecure_http", &insecure);
    }
    /* The one-click unsubscribe URL goes into List-Unsubscribe with
     * List-Unsubscribe-Post, which RFC 8058 section 3.1 allows only over
     * HTTPS: a plain http:// base is a test or demo setup, said so explicitly. */
    if (rc == 0 && secret != NULL && strncasecmp(url, "https://", 8) != 0 && !insecure)
        rc = fail(c, url_key,
                  "must be https:// when links.secret is set: one-click unsubscribe links "
                  "(List-Unsubscribe-Post) must be HTTPS (RFC 8058 section 3.1); for tests and "
                  "demos only, set links.allow_insecure_http to true");
    if (rc == 0)
        rc = set_str(c, &cfg->http_listen, listen, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->webhooks_public_url, url, 1);
    if (rc == 0)
        rc = set_str(c, &cfg->webhooks_sendgrid_public_key, sgkey, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->webhooks_generic_secret, generic, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->links_secret, secret, 0);
    if (rc == 0)
        rc = set_str(c, &cfg->confirm_keywords, keywords, 0);
    return rc;
}

static const struct cr_provider_ops *find_adapter(const struct ctx *c, const char *type)
{
    size_t i;

    if (c->adapters == NULL)
        return cr_provider_find(type);
    for (i = 0; c->adapters[i] != NULL; i++) {
        if (strcmp(c->adapters[i]->type, type) == 0)
            return c->adapters[i];
    }
    return NULL;
}

static int unknown_type(struct ctx *c, const char *path, const char *type)
{
    const struct cr_provider_ops *const *table = c->adapters ? c->adapters : cr_provider_table;
    const char *types[33];
    char known[256];
    const char *hint;
    size_t i, n = 0, used = 0;

    known[0] = '\0';
    for (i = 0; table[i] != NULL && i + 1 < COUNT(types); i++) {
        int w = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", table[i]->type);

        if (w > 0 && (size_t)w < sizeof known - used)
            used += (size_t)w;
        types[n++] = table[i]->type;
    }
    types[n] = NULL;
    hint = closest(type, types, NULL);
    if (hint != NULL)
        return fail(c, path, "unknown provider type '%s' (did you mean '%s'?)", type, hint);
    return fail(c, path, "unknown provider type '%s'; known types: %s", type, known);
}

static int name_ok(const char *name)
{
    size_t len = strlen(name);

    return len > 0 && len <= NAME_MAX_LEN &&
           cr_chars_ok(name, len, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "-_");
}

/* Unrecorded messages allowed when the config names no figure: four per
 * request slot, so answers wait for their ledger write without holding up the
 * next requests. (For an adapter that batches this also caps a request's
 * size: smaller requests keep a provider's pipeline, and urgent work behind
 * it, moving.) */
static int default_unrecorded(int max_inflight)
{
    return 4 * max_inflight;
}

static int parse_provider(struct ctx *c, struct cr_config *cfg, const cJSON *p)
{
    struct cr_provider_conf *pc = &cfg->providers[cfg->nproviders];
    const struct cr_provider_ops *ops;
    const char *type = NULL, *url = NULL, *ca_file = NULL;
    char path[PATH_LEN], sub[PATH_LEN];
    int rc;

    join(path, sizeof path, "providers", p->string);
    if (!name_ok(p->string))
        return fail(c, path, "a provider name must be 1 to %d letters, digits, '-' or '_'",
                    NAME_MAX_LEN);
    if (!cJSON_IsObject(p))
        return fail(c, path, "must be an object, got %s", type_name(p));

    join(sub, sizeof sub, path, "type");
    if (cJSON_GetObjectItemCaseSensitive(p, "type") == NULL)
        return fail(c, sub, "missing; it names the provider adapter (e.g. \"twilio\")");
    rc = get_str(c, p, path, "type", S_NONEMPTY, 64, &type);
    if (rc != 0)
        return rc;
    ops = find_adapter(c, type);
    if (ops == NULL)
        return unknown_type(c, sub, type);
    rc = check_keys(c, p, path, provider_keys, ops->keys);
    if (rc != 0)
        return rc;

    join(sub, sizeof sub, path, "url");
    if (cJSON_GetObjectItemCaseSensitive(p, "url") == NULL)
        return fail(c, sub, "missing; it is the provider's base URL, e.g. https://api.example.com");
    rc = get_str(c, p, path, "url",
                 S_NOSPACE | ((ops->flags & CR_PROVIDER_SMTP) ? 0 : S_URL), 1024, &url);
    if (rc == 0)
        rc = get_str(c, p, path, "ca_file", S_NULL_OK | S_NONEMPTY, 4096, &ca_file);
    if (rc != 0)
        return rc;
    if (ca_file != NULL && access(ca_file, R_OK) != 0) {
        join(sub, sizeof sub, path, "ca_file");
        return fail(c, sub, "cannot read %s: %s", ca_file, strerror(errno));
    }
    pc->max_inflight = 64;
    pc->timeout_ms = 10000;
    pc->connect_timeout_ms = 2000;
    pc->breaker_failures = 5;
    pc->breaker_open_ms = 5000;
    rc = read_nums(c, p, path, provider_nums, COUNT(provider_nums), pc);
    if (rc != 0)
        return rc;
    if (pc->max_unrecorded == 0)
        pc->max_unrecorded = default_unrecorded(pc->max_inflight);
    if (pc->max_unrecorded < pc->max_inflight) {
        join(sub, sizeof sub, path, "max_unrecorded");
        return fail(c, sub, "must be at least max_inflight (%d), got %d", pc->max_inflight,
                    pc->max_unrecorded);
    }
    if (pc->tier_limit > 0 && strcmp(type, "twilio_whatsapp") != 0 &&
        strcmp(type, "meta_whatsapp") != 0) {
        join(sub, sizeof sub, path, "tier_limit");
        return fail(c, sub, "only a WhatsApp provider (twilio_whatsapp, meta_whatsapp) has a "
                            "messaging tier; remove it from this \"%s\" provider", type);
    }
    if (pc->connect_timeout_ms > pc->timeout_ms) {
        join(sub, sizeof sub, path, "connect_timeout_ms");
        return fail(c, sub, "must not exceed timeout_ms (%ld), got %ld", pc->timeout_ms,
                    pc->connect_timeout_ms);
    }

    /* Counted from here so that cr_config_release frees what follows. */
    cfg->nproviders++;
    pc->ops = ops;
    rc = set_str(c, &pc->name, p->string, 0);
    if (rc == 0)
        rc = set_str(c, &pc->url, url, 1);
    if (rc == 0)
        rc = set_str(c, &pc->ca_file, ca_file, 0);
    if (rc != 0)
        return rc;

    if (c->errlen > 0)
        c->err[0] = '\0';
    rc = ops->init(p, pc->url, path, &pc->state, c->err, c->errlen);
    if (rc == CR_ENOMEM)
        return oom(c);
    if (rc != 0) {
        if (c->errlen > 0 && c->err[0] == '\0')
            fail(c, path, "the %s adapter rejected this provider (%s)", ops->type, cr_strerror(rc));
        return CR_ECONFIG;
    }
    return 0;
}

static int parse_providers(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const cJSON *provs = cJSON_GetObjectItemCaseSensitive(root, "providers");
    const cJSON *p, *prev;
    int n, rc;

    if (provs == NULL)
        return fail(c, "providers", "missing; configure at least one provider");
    if (!cJSON_IsObject(provs))
        return fail(c, "providers", "must be an object, got %s", type_name(provs));
    n = cJSON_GetArraySize(provs);
    if (n == 0)
        return fail(c, "providers", "must configure at least one provider");
    if (n > CR_MAX_PROVIDERS)
        return fail(c, "providers", "at most %d providers, got %d", CR_MAX_PROVIDERS, n);
    cJSON_ArrayForEach(p, provs)
    {
        for (prev = provs->child; prev != p; prev = prev->next) {
            if (strcmp(prev->string, p->string) == 0) {
                char path[PATH_LEN];

                join(path, sizeof path, "providers", p->string);
                return fail(c, path, "key appears twice");
            }
        }
        rc = parse_provider(c, cfg, p);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int provider_index(const struct cr_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->nproviders; i++) {
        if (strcmp(cfg->providers[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

static int parse_channel_list(struct ctx *c, struct cr_config *cfg, const cJSON *list,
                              enum cr_channel ch)
{
    const char *chname = cr_channel_name(ch);
    const char *names[CR_MAX_PROVIDERS + 1];
    const cJSON *it;
    char path[PATH_LEN], item[PATH_LEN];
    size_t i, k = 0;
    int n;

    join(path, sizeof path, "channels", chname);
    if (!cJSON_IsArray(list))
        return fail(c, path, "must be an array of provider names, got %s", type_name(list));
    n = cJSON_GetArraySize(list);
    if (n < 1 || n > CR_MAX_CHANNEL_PROVIDERS)
        return fail(c, path, "must list 1 to %d provider names, got %d", CR_MAX_CHANNEL_PROVIDERS,
                    n);
    for (i = 0; i < cfg->nproviders; i++)
        names[i] = cfg->providers[i].name;
    names[cfg->nproviders] = NULL;

    cJSON_ArrayForEach(it, list)
    {
        const struct cr_provider_ops *ops;
        int idx;

        path_printf(item, sizeof item, "%s[%zu]", path, k);
        if (!cJSON_IsString(it))
            return fail(c, item, "must be a provider name, got %s", type_name(it));
        idx = provider_index(cfg, it->valuestring);
        if (idx < 0) {
            const char *hint = closest(it->valuestring, names, NULL);

            if (hint != NULL)
                return fail(c, item, "no provider called '%s' (did you mean '%s'?)",
                            it->valuestring, hint);
            return fail(c, item, "no provider called '%s' under providers", it->valuestring);
        }
        ops = cfg->providers[idx].ops;
        if (ops->channel != ch)
            return fail(c, item, "provider '%s' sends %s, not %s", it->valuestring,
                        cr_channel_name(ops->channel), chname);
        for (i = 0; i < k; i++) {
            if (cfg->channel_providers[ch][i] == idx)
                return fail(c, item, "provider '%s' is listed twice", it->valuestring);
        }
        cfg->channel_providers[ch][k++] = idx;
    }
    cfg->nchannel_providers[ch] = k;
    return 0;
}

static int parse_channels(struct ctx *c, struct cr_config *cfg, const cJSON *root)
{
    const cJSON *chans = cJSON_GetObjectItemCaseSensitive(root, "channels");
    int rc, ch, any = 0;

    if (chans == NULL)
        return fail(c, "channels", "missing; list the providers of at least one of email, sms, push, whatsapp");
    if (!cJSON_IsObject(chans))
        return fail(c, "channels", "must be an object, got %s", type_name(chans));
    rc = check_keys(c, chans, "channels", channel_keys, NULL);
    if (rc != 0)
        return rc;
    for (ch = 0; ch < CR_CH__COUNT; ch++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(chans, cr_channel_name((enum cr_channel)ch));

        if (list == NULL)
            continue;
        rc = parse_channel_list(c, cfg, list, (enum cr_channel)ch);
        if (rc != 0)
            return rc;
        any = 1;
    }
    if (!any)
        return fail(c, "channels", "must list the providers of at least one of email, sms, push, whatsapp");
    return 0;
}

/* Checks that only make sense between sections. */
static int cross_checks(struct ctx *c, const struct cr_config *cfg)
{
    if (cfg->retry_base_ms > cfg->retry_max_ms)
        return fail(c, "retry.base_ms", "must not exceed retry.max_ms (%ld), got %ld",
                    cfg->retry_max_ms, cfg->retry_base_ms);
    if (cfg->retry_max_ms >= cfg->reclaim_idle_ms)
        return fail(c, "retry.max_ms",
                    "must be less than fanout.reclaim_idle_ms (%ld), got %ld: a retry delay "
                    "longer than the reclaim idle time lets another crierd reclaim the batch "
                    "and send it again",
                    cfg->reclaim_idle_ms, cfg->retry_max_ms);
    if (cfg->redis_wait_replicas > 0 && cfg->redis_wait_timeout_ms >= cfg->redis_command_timeout_ms)
        return fail(c, "redis.wait_timeout_ms",
                    "must be less than redis.command_timeout_ms (%ld), got %ld: a WAIT blocks "
                    "the commands connection, and the commands queued behind it would be cut "
                    "off as a Redis failure",
                    cfg->redis_command_timeout_ms, cfg->redis_wait_timeout_ms);
    if (cfg->intake_block_ms >= cfg->redis_command_timeout_ms)
        return fail(c, "intake.block_ms",
                    "must be less than redis.command_timeout_ms (%ld), got %ld: a blocking read "
                    "longer than the command timeout would be cut off as a Redis failure",
                    cfg->redis_command_timeout_ms, cfg->intake_block_ms);
    return 0;
}

/* ---- public ------------------------------------------------------------ */

void cr_job_limits_default(struct cr_job_limits *lim)
{
    lim->doc_bytes = 262144;
    lim->depth = 8;
    lim->id_length = 64;
    lim->segments = 64;
    lim->subscribers = 10000;
    lim->subject = 200;
    lim->text = 20000;
    lim->html = 100000;
    lim->sms_segments = 6;
    lim->push_title = 120;
    lim->push_body = 2000;
    lim->translations = 16;
    lim->tags = 32;
}

void cr_job_limits_widest(struct cr_job_limits *lim)
{
    size_t i;

    for (i = 0; i < sizeof(limit_nums) / sizeof(limit_nums[0]); i++) {
        char *at = (char *)lim + limit_nums[i].off;

        if (limit_nums[i].kind == NUM_INT)
            *(int *)at = (int)limit_nums[i].max;
        else
            *(size_t *)at = (size_t)limit_nums[i].max;
    }
}

int cr_config_parse_with(const char *text, size_t len,
                         const struct cr_provider_ops *const *adapters, struct cr_config *cfg,
                         char *err, size_t errlen)
{
    struct ctx c = {err, errlen, adapters};
    const char *end = NULL;
    char path[PATH_LEN] = "";
    char *copy = NULL;
    const char *nul;
    cJSON *root;
    int rc = CR_ECONFIG;

    memset(cfg, 0, sizeof *cfg);
    if (errlen > 0)
        err[0] = '\0';
    if (text == NULL) {
        rc = fail(&c, NULL, "no config text");
        goto out;
    }
    if (len > CONFIG_MAX_BYTES) {
        rc = fail(&c, NULL, "the config is larger than %d bytes", CONFIG_MAX_BYTES);
        goto out;
    }
    nul = memchr(text, '\0', len);
    if (nul != NULL) {
        int line, col;

        line_col(text, (size_t)(nul - text), &line, &col);
        rc = fail(&c, NULL, "line %d, column %d: NUL byte in the config", line, col);
        goto out;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        rc = oom(&c);
        goto out;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    rc = blank_comments(&c, copy, len);
    if (rc != 0)
        goto out;

    root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (root == NULL) {
        rc = parse_error(&c, copy, len, end != NULL ? (size_t)(end - copy) : len);
        goto out;
    }
    cfg->root = root; /* from here cr_config_release frees it */
    if (!cJSON_IsObject(root)) {
        rc = fail(&c, NULL, "the config must be a JSON object, got %s", type_name(root));
        goto out;
    }

    rc = resolve_secrets(&c, root, path, 0, 0);
    if (rc == 0)
        rc = set_defaults(&c, cfg);
    if (rc == 0)
        rc = check_keys(&c, root, "", top_keys, NULL);
    if (rc == 0)
        rc = parse_redis(&c, cfg, root);
    if (rc == 0 && cfg->redis_wait_replicas < 0) /* "auto": 1 with Sentinel, else 0 */
        cfg->redis_wait_replicas = cr_config_wait_replicas_auto(cfg->redis_sentinel_master != NULL);
    if (rc == 0)
        rc = parse_top_strings(&c, cfg, root);
    if (rc == 0)
        rc = parse_workers(&c, cfg, root);
    if (rc == 0)
        rc = parse_log_format(&c, cfg, root);
    if (rc == 0)
        rc = parse_intake(&c, cfg, root);
    if (rc == 0)
        rc = num_section(&c, root, "fanout", fanout_nums, COUNT(fanout_nums), cfg);
    if (rc == 0)
        rc = num_section(&c, root, "retry", retry_nums, COUNT(retry_nums), cfg);
    if (rc == 0)
        rc = num_section(&c, root, "receipts", receipts_nums, COUNT(receipts_nums), cfg);
    if (rc == 0)
        rc = read_nums(&c, root, "", top_nums, COUNT(top_nums), cfg);
    if (rc == 0)
        rc = num_section(&c, root, "limits", limit_nums, COUNT(limit_nums), &cfg->limits);
    if (rc == 0)
        rc = cross_checks(&c, cfg);
    if (rc == 0)
        rc = parse_http_side(&c, cfg, root);
    if (rc == 0)
        rc = cr_dashboard_conf_parse(cJSON_GetObjectItemCaseSensitive(root, "dashboard"),
                                     &cfg->dashboard, c.err, c.errlen);
    if (rc == 0)
        rc = parse_providers(&c, cfg, root);
    if (rc == 0)
        rc = parse_channels(&c, cfg, root);
out:
    free(copy);
    if (rc != 0) {
        if (rc != CR_ENOMEM)
            rc = CR_ECONFIG;
        cr_config_release(cfg);
    }
    return rc;
}

int cr_config_parse(const char *text, size_t len, struct cr_config *cfg, char *err, size_t errlen)
{
    return cr_config_parse_with(text, len, NULL, cfg, err, errlen);
}

int cr_config_load(const char *path, struct cr_config *cfg, char *err, size_t errlen)
{
    struct cr_buf buf;
    char chunk[8192];
    FILE *f;
    int rc = CR_ECONFIG;

    memset(cfg, 0, sizeof *cfg);
    cr_buf_init(&buf, CONFIG_MAX_BYTES);
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);

        if (n == 0)
            break;
        rc = cr_buf_append(&buf, chunk, n);
        if (rc == CR_ETOOBIG) {
            snprintf(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_BYTES);
            rc = CR_ECONFIG;
            goto out;
        }
        if (rc != 0) {
            snprintf(err, errlen, "%s: out of memory", path);
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = CR_ECONFIG;
        goto out;
    }
    rc = cr_config_parse(cr_buf_cstr(&buf), buf.len, cfg, err, errlen);
out:
    if (f != NULL)
        fclose(f);
    cr_buf_release(&buf);
    return rc;
}

void cr_config_release(struct cr_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    cr_dashboard_conf_free(cfg->dashboard);
    cfg->dashboard = NULL;
    cr_integrators_free(cfg->integrators);
    cfg->integrators = NULL;
    for (i = 0; i < cfg->nproviders && i < CR_MAX_PROVIDERS; i++) {
        struct cr_provider_conf *p = &cfg->providers[i];

        if (p->state != NULL && p->ops != NULL && p->ops->free_state != NULL)
            p->ops->free_state(p->state);
        free(p->name);
        free(p->url);
        free(p->ca_file);
    }
    free(cfg->redis_host);
    cr_free_secret(cfg->redis_password);
    free(cfg->redis_path);
    free(cfg->redis_username);
    free_tls(&cfg->redis_tls);
    for (i = 0; i < cfg->redis_sentinel_nnodes; i++)
        free(cfg->redis_sentinel_nodes[i]);
    free(cfg->redis_sentinel_nodes);
    free(cfg->redis_sentinel_master);
    free(cfg->redis_sentinel_username);
    cr_free_secret(cfg->redis_sentinel_password);
    free(cfg->prefix);
    free(cfg->consumer);
    free(cfg->group);
    free(cfg->log_level);
    free(cfg->log_format);
    free(cfg->public_url);
    free(cfg->http_listen);
    free(cfg->webhooks_public_url);
    free(cfg->webhooks_sendgrid_public_key);
    cr_free_secret(cfg->webhooks_generic_secret);
    cr_free_secret(cfg->links_secret);
    free(cfg->confirm_keywords);
    wipe_strings(cfg->root);
    cJSON_Delete(cfg->root);
    memset(cfg, 0, sizeof *cfg);
}

const struct cr_provider_conf *cr_config_provider(const struct cr_config *cfg, const char *name)
{
    int i = provider_index(cfg, name);

    return i < 0 ? NULL : &cfg->providers[i];
}

/* total divided between n workers: the first (total % n) take one more, and
 * each takes at least one. */
static int share(int total, int index, int n)
{
    int part = total / n + (index < total % n ? 1 : 0);

    return part < 1 ? 1 : part;
}

/* listen ("host:port") with index added to its port (0 stays 0), in *out
 * (malloc'd). */
static int worker_listen(const char *listen, int index, char **out, char *err, size_t errlen)
{
    const char *colon = strrchr(listen, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : -1;
    size_t hlen = colon ? (size_t)(colon - listen) : 0;
    char *s;

    if (colon == NULL || port < 0 || port + index > 65535) {
        snprintf(err, errlen, "http.listen: port %ld + worker %d is over 65535", port, index);
        return CR_EINVAL;
    }
    s = malloc(hlen + 24);
    if (s == NULL)
        return CR_ENOMEM;
    memcpy(s, listen, hlen);
    snprintf(s + hlen, 24, ":%ld", port == 0 ? 0 : port + index);
    *out = s;
    return 0;
}

int cr_config_for_worker(struct cr_config *cfg, int index, int n, char *err, size_t errlen)
{
    char name[160];
    char *listen = NULL;
    char *consumer = NULL;
    int rc = CR_EINVAL;
    size_t i;

    if (n < 1 || index < 0 || index >= n) {
        snprintf(err, errlen, "worker %d of %d does not exist", index, n);
        goto out;
    }
    if (cfg->http_listen != NULL) {
        rc = worker_listen(cfg->http_listen, index, &listen, err, errlen);
        if (rc != 0)
            goto out;
    }
    rc = CR_ENOMEM;
    snprintf(name, sizeof name, "%s-%d", cfg->consumer, index);
    consumer = strdup(name);
    if (consumer == NULL)
        goto out;
    free(cfg->consumer);
    cfg->consumer = consumer;
    consumer = NULL;
    if (listen != NULL) {
        free(cfg->http_listen);
        cfg->http_listen = listen;
        listen = NULL;
    }
    for (i = 0; i < cfg->nproviders; i++) {
        struct cr_provider_conf *pc = &cfg->providers[i];

        pc->max_inflight = share(pc->max_inflight, index, n);
        pc->max_unrecorded = share(pc->max_unrecorded, index, n);
        if (pc->max_unrecorded < pc->max_inflight)
            pc->max_unrecorded = pc->max_inflight;
    }
    cfg->workers = 1;
    cfg->worker_index = index;
    rc = 0;
out:
    free(listen);
    free(consumer);
    return rc;
}
