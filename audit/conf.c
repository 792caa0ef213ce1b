/* crier-audit's config file (see config.h): parsed with cJSON after blanking
 * comments, every key checked against its table, secrets resolved last. */
#include "conf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "cr_error.h"
#include "cr_secret.h"
#include "cr_str.h"

#define FILE_MAX (1024 * 1024)

struct ctx {
    char *err;
    size_t errlen;
};

static int fail(struct ctx *c, const char *path, const char *what)
{
    snprintf(c->err, c->errlen, "%s: %s", path, what);
    return CR_ECONFIG;
}

static int read_file(const char *path, size_t max, char **out)
{
    FILE *f = fopen(path, "rb");
    struct cr_buf b;
    char chunk[4096];
    size_t n;
    int rc = 0;

    *out = NULL;
    if (f == NULL)
        return CR_EIO;
    cr_buf_init(&b, max);
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = cr_buf_append(&b, chunk, n);
    if (rc == 0 && ferror(f))
        rc = CR_EIO;
    fclose(f);
    if (rc == 0 && b.data == NULL)
        rc = cr_buf_appends(&b, "");
    if (rc != 0) {
        cr_buf_release(&b);
        return rc;
    }
    *out = cr_buf_steal(&b);
    return 0;
}

/* Blanks // and block comments outside strings, keeping offsets. */
static void blank_comments(char *s)
{
    int in_str = 0;

    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '"')
                in_str = 0;
        } else if (*s == '"') {
            in_str = 1;
        } else if (s[0] == '/' && s[1] == '/') {
            while (*s && *s != '\n')
                *s++ = ' ';
            if (*s == '\0')
                return;
        } else if (s[0] == '/' && s[1] == '*') {
            *s++ = ' ';
            *s = ' ';
            while (s[1] && !(s[1] == '*' && s[2] == '/'))
                *++s = ' ';
            if (s[1]) {
                s[1] = ' ';
                s[2] = ' ';
                s += 2;
            } else {
                return;
            }
        }
    }
}

/* A string value, with "$env:NAME" and "$file:/path" resolved (and "$$" for a
 * literal '$'), by crierd's rule (cr_secret_resolve). */
static int get_str(struct ctx *c, const cJSON *obj, const char *parent, const char *key, char **dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[128];
    char why[320];
    char *val = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s%s%s", parent, *parent ? "." : "", key);
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v))
        return fail(c, path, "must be a string");
    rc = cr_secret_resolve(v->valuestring, &val, why, sizeof(why));
    if (rc == CR_ECONFIG)
        return fail(c, path, why);
    if (rc == 0 && val == NULL)
        val = strdup(v->valuestring);
    if (val == NULL)
        return fail(c, path, "out of memory");
    free(*dst);
    *dst = val;
    return 0;
}

static int get_num(struct ctx *c, const cJSON *obj, const char *parent, const char *key, long min,
                   long max, long *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[128];
    char what[96];

    snprintf(path, sizeof(path), "%s%s%s", parent, *parent ? "." : "", key);
    if (v == NULL)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble ||
        v->valuedouble < (double)min || v->valuedouble > (double)max) {
        snprintf(what, sizeof(what), "must be a whole number from %ld to %ld", min, max);
        return fail(c, path, what);
    }
    *dst = (long)v->valuedouble;
    return 0;
}

static int check_keys(struct ctx *c, const cJSON *obj, const char *path, const char *const *known)
{
    const cJSON *it;

    if (!cJSON_IsObject(obj))
        return fail(c, *path ? path : "(top level)", "must be an object");
    cJSON_ArrayForEach(it, obj)
    {
        const char *const *k;

        for (k = known; *k && strcmp(*k, it->string) != 0; k++)
            ;
        if (*k == NULL) {
            snprintf(c->err, c->errlen, "%s%s%s: unknown key", path, *path ? "." : "", it->string);
            return CR_ECONFIG;
        }
    }
    return 0;
}

static const char *const top_keys[] = {"redis",           "prefix",
                                       "group",           "consumer",
                                       "database",        "batch",
                                       "block_ms",        "retention_days",
                                       "retention_chunk", "retention_interval_s",
                                       "retry_max_ms",    "lookup_lang",
                                       "log_level",       "survey",
                                       NULL};
static const char *const redis_keys[] = {"host", "port", "password", NULL};
static const char *const db_keys[] = {"type", "path", "conninfo", NULL};
static const char *const survey_keys[] = {"min_cell", NULL};

static int set_default(char **dst, const char *v)
{
    if (*dst)
        return 0;
    *dst = strdup(v);
    return *dst ? 0 : CR_ENOMEM;
}

static int parse(struct ctx *c, const cJSON *root, struct cr_audit_config *cfg)
{
    const cJSON *redis = cJSON_GetObjectItemCaseSensitive(root, "redis");
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(root, "database");
    const cJSON *ll = cJSON_GetObjectItemCaseSensitive(root, "lookup_lang");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(root, "survey");
    char *type = NULL;
    int rc;

    cfg->redis_port = 6379;
    cfg->batch = 2000;
    cfg->block_ms = 1000;
    cfg->retention_chunk = 5000;
    cfg->retention_interval_s = 3600;
    cfg->retry_max_ms = 5000;
    cfg->lookup_lang = 1;
    cfg->survey_min_cell = 10;
    rc = check_keys(c, root, "", top_keys);
    if (rc == 0 && redis)
        rc = check_keys(c, redis, "redis", redis_keys);
    if (rc == 0 && db)
        rc = check_keys(c, db, "database", db_keys);
    if (rc == 0 && sv)
        rc = check_keys(c, sv, "survey", survey_keys);
    if (rc == 0)
        rc = get_num(c, sv, "survey", "min_cell", 1, 1000000, &cfg->survey_min_cell);
    if (rc == 0)
        rc = get_str(c, redis, "redis", "host", &cfg->redis_host);
    if (rc == 0)
        rc = get_num(c, redis, "redis", "port", 1, 65535, &cfg->redis_port);
    if (rc == 0)
        rc = get_str(c, redis, "redis", "password", &cfg->redis_password);
    if (rc == 0)
        rc = get_str(c, root, "", "prefix", &cfg->prefix);
    if (rc == 0)
        rc = get_str(c, root, "", "group", &cfg->group);
    if (rc == 0)
        rc = get_str(c, root, "", "consumer", &cfg->consumer);
    if (rc == 0)
        rc = get_str(c, root, "", "log_level", &cfg->log_level);
    if (rc == 0)
        rc = get_num(c, root, "", "batch", 1, 10000, &cfg->batch);
    if (rc == 0)
        rc = get_num(c, root, "", "block_ms", 10, 60000, &cfg->block_ms);
    if (rc == 0)
        rc = get_num(c, root, "", "retention_days", 0, 36500, &cfg->retention_days);
    if (rc == 0)
        rc = get_num(c, root, "", "retention_chunk", 1, 1000000, &cfg->retention_chunk);
    if (rc == 0)
        rc = get_num(c, root, "", "retention_interval_s", 1, 86400, &cfg->retention_interval_s);
    if (rc == 0)
        rc = get_num(c, root, "", "retry_max_ms", 10, 600000, &cfg->retry_max_ms);
    if (rc == 0 && ll) {
        if (!cJSON_IsBool(ll))
            rc = fail(c, "lookup_lang", "must be true or false");
        else
            cfg->lookup_lang = cJSON_IsTrue(ll);
    }
    if (rc == 0)
        rc = get_str(c, db, "database", "type", &type);
    if (rc == 0 && type && cr_store_parse_kind(type, &cfg->db_kind) != 0)
        rc = fail(c, "database.type", "must be \"sqlite\" or \"postgresql\"");
    if (rc == 0)
        rc = get_str(c, db, "database", cfg->db_kind == CR_STORE_SQLITE ? "path" : "conninfo",
                     &cfg->db_target);
    if (rc == 0 && cfg->db_kind == CR_STORE_SQLITE &&
        cJSON_GetObjectItemCaseSensitive(db, "conninfo"))
        rc = fail(c, "database.conninfo", "is for \"type\": \"postgresql\"; SQLite takes \"path\"");
    if (rc == 0 && cfg->db_kind == CR_STORE_POSTGRESQL && cfg->db_target == NULL)
        rc = fail(c, "database.conninfo",
                  "is required with \"type\": \"postgresql\" (e.g. \"$env:CRIER_AUDIT_PG\")");
    if (rc == 0 &&
        (set_default(&cfg->redis_host, "127.0.0.1") != 0 ||
         set_default(&cfg->prefix, "crier:") != 0 || set_default(&cfg->group, "audit") != 0 ||
         set_default(&cfg->consumer, "audit-1") != 0 || set_default(&cfg->log_level, "info") != 0 ||
         set_default(&cfg->db_target, "crier-audit.db") != 0))
        rc = fail(c, "(defaults)", "out of memory");
    if (rc == 0 &&
        (strlen(cfg->prefix) > 40 || strlen(cfg->group) > 64 || strlen(cfg->consumer) > 64))
        rc = fail(c, "prefix/group/consumer", "too long (40/64/64 bytes at most)");
    free(type);
    return rc;
}

int cr_audit_config_load(const char *path, struct cr_audit_config *cfg, char *err, size_t errlen)
{
    struct ctx c = {err, errlen};
    char *text = NULL;
    cJSON *root = NULL;
    int rc;

    errno = 0;
    if (read_file(path, FILE_MAX, &text) != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, errno ? strerror(errno) : "over 1 MiB");
        return CR_ECONFIG;
    }
    blank_comments(text);
    root = cJSON_Parse(text);
    if (root == NULL) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        const char *p;

        for (p = text; at && p < at && *p; p++)
            line += *p == '\n';
        snprintf(err, errlen, "%s: line %d: not valid JSON", path, line);
        rc = CR_ECONFIG;
        goto out;
    }
    rc = parse(&c, root, cfg);
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

void cr_audit_config_release(struct cr_audit_config *cfg)
{
    free(cfg->redis_host);
    cr_free_secret(cfg->redis_password);
    free(cfg->prefix);
    free(cfg->group);
    free(cfg->consumer);
    cr_free_secret(cfg->db_target);
    free(cfg->log_level);
    memset(cfg, 0, sizeof(*cfg));
}
