/* What every crierctl command shares: the synchronous Redis connection with
 * its timeouts, reply helpers, clocks, and the job hash read into a struct. */
#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cr_error.h"
#include "sentinel.h"

volatile sig_atomic_t cr_ctl_stop;

static void on_signal(int sig)
{
    (void)sig;
    cr_ctl_stop = 1;
}

void cr_ctl_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cr_ctl_parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || *s == '\0')
        return CR_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return CR_EINVAL;
    *out = v;
    return 0;
}

static int copy_opt(char *dst, size_t n, const char *src, const char *what)
{
    size_t len = strlen(src);

    if (len >= n) {
        fprintf(stderr, "crierctl: %s is too long (at most %zu bytes)\n", what, n - 1);
        return -1;
    }
    memcpy(dst, src, len + 1);
    return 1;
}

int cr_ctl_common_opt(struct ctl *ctl, int code, const char *arg)
{
    long long v;

    switch (code) {
    case 'H':
        return copy_opt(ctl->host, sizeof(ctl->host), arg, "host");
    case 'a':
        return copy_opt(ctl->password, sizeof(ctl->password), arg, "password");
    case CTL_OPT_PREFIX:
        return copy_opt(ctl->prefix, sizeof(ctl->prefix), arg, "prefix");
    case CTL_OPT_SENTINEL:
        return copy_opt(ctl->sentinels, sizeof(ctl->sentinels), arg, "--sentinel");
    case CTL_OPT_MASTER:
        return copy_opt(ctl->master, sizeof(ctl->master), arg, "--master");
    case CTL_OPT_USER:
        return copy_opt(ctl->user, sizeof(ctl->user), arg, "user");
    case CTL_OPT_SOCKET:
        return copy_opt(ctl->socket, sizeof(ctl->socket), arg, "socket");
    case 'p':
        if (cr_ctl_parse_ll(arg, 1, 65535, &v) < 0) {
            fprintf(stderr, "crierctl: -p: '%s' is not a port number (1-65535)\n", arg);
            return -1;
        }
        ctl->port = (int)v;
        return 1;
    case CTL_OPT_TIMEOUT:
        if (cr_ctl_parse_ll(arg, 10, 3600000, &v) < 0) {
            fprintf(stderr, "crierctl: --timeout: '%s' is not a number of ms (10-3600000)\n",
                    arg);
            return -1;
        }
        ctl->timeout_ms = (long)v;
        return 1;
    default:
        return 0;
    }
}

int cr_ctl_opt_other(struct ctl *ctl, int code, const char *arg, const char *help)
{
    int rc;

    if (code == 'h') {
        fputs(help, stdout);
        fputs("\n" CTL_COMMON_HELP, stdout);
        return CTL_EXIT_OK;
    }
    rc = cr_ctl_common_opt(ctl, code, arg);
    if (rc == 1)
        return -1;
    if (rc == 0)
        fputs(help, stderr);
    return CTL_EXIT_USAGE;
}

int cr_ctl_begin(struct ctl *ctl, int usage_ok, const char *help)
{
    if (!usage_ok) {
        fputs(help, stderr);
        return CTL_EXIT_USAGE;
    }
    return cr_ctl_connect(ctl);
}

int cr_ctl_one_arg(struct ctl *ctl, int argc, char **argv, const char *help, const char **arg)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    int code;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, opts, NULL);
        if (c == -1)
            break;
        code = cr_ctl_opt_other(ctl, c, optarg, help);
        if (code >= 0)
            return code;
    }
    code = cr_ctl_begin(ctl, optind == argc - 1, help);
    if (code != 0)
        return code;
    *arg = argv[optind];
    return -1;
}

static struct timeval tv_of(long ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* Asks one Sentinel for the primary's address; 0 and *out, or -1 with why. */
static int ask_sentinel(struct ctl *ctl, const struct cr_redis_addr *node, const char *password,
                        struct cr_redis_addr *out, char *why, size_t whylen)
{
    long t = ctl->timeout_ms < 1000 ? ctl->timeout_ms : 1000; /* the spec's short timeout */
    redisContext *c = redisConnectWithTimeout(node->host, node->port, tv_of(t));
    redisReply *r = NULL;
    int rc = -1;

    if (c == NULL || c->err) {
        snprintf(why, whylen, "%s", c ? c->errstr : "out of memory");
        goto out;
    }
    if (redisSetTimeout(c, tv_of(t)) != REDIS_OK) {
        snprintf(why, whylen, "%s", c->errstr);
        goto out;
    }
    if (password != NULL && password[0]) {
        const char *argv[2] = {"AUTH", password};

        r = redisCommandArgv(c, 2, argv, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "AUTH failed: %s", r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
    }
    {
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", ctl->master};

        r = redisCommandArgv(c, 3, argv, NULL);
    }
    if (r == NULL) {
        snprintf(why, whylen, "%s", c->errstr);
        goto out;
    }
    switch (cr_sentinel_parse_addr_reply(r, out)) {
    case 0:
        rc = 0;
        break;
    case CR_ENOTFOUND:
        snprintf(why, whylen, "does not monitor a master called '%s'", ctl->master);
        break;
    case CR_EREDIS:
        snprintf(why, whylen, "%s", r->str);
        break;
    default:
        snprintf(why, whylen, "unexpected answer to SENTINEL get-master-addr-by-name");
        break;
    }
out:
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return rc;
}

/* With --sentinel: asks the Sentinels in turn for the primary (as crierd
 * does) and puts its address in ctl->host and ctl->port. Returns 0, or
 * prints why and returns CTL_EXIT_USAGE / CTL_EXIT_UNREACH. */
static int find_primary(struct ctl *ctl)
{
    const char *password = getenv("CRIER_SENTINEL_PASSWORD");
    const char *p = ctl->sentinels;
    char why[300], item[300];
    int asked = 0;

    while (*p) {
        size_t n = strcspn(p, ",");
        struct cr_redis_addr node, prim;

        if (n == 0 || n >= sizeof(item)) {
            fprintf(stderr, "crierctl: --sentinel: expected host:port,host:port,...\n");
            return CTL_EXIT_USAGE;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        p += n + (p[n] == ',');
        if (cr_sentinel_parse_node(item, &node) < 0) {
            fprintf(stderr, "crierctl: --sentinel: '%s' is not host:port\n", item);
            return CTL_EXIT_USAGE;
        }
        asked++;
        if (ask_sentinel(ctl, &node, password, &prim, why, sizeof why) == 0) {
            snprintf(ctl->host, sizeof(ctl->host), "%s", prim.host);
            ctl->port = prim.port;
            return 0;
        }
        fprintf(stderr, "crierctl: Sentinel %s: %s; asking the next one\n", item, why);
    }
    fprintf(stderr, "crierctl: no Sentinel named the primary '%s' (%d asked)\n", ctl->master,
            asked);
    return asked ? CTL_EXIT_UNREACH : CTL_EXIT_USAGE;
}

/* With --sentinel: the server Sentinel named must say ROLE master. */
static int check_primary(struct ctl *ctl)
{
    redisReply *r = redisCommand(ctl->rc, "ROLE");
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;

    if (!ok)
        fprintf(stderr, "crierctl: Redis at %s, named primary by Sentinel, is not one (%s); "
                        "a failover may be under way: try again\n",
                ctl->where,
                r == NULL ? ctl->rc->errstr
                : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                        r->element[0]->type == REDIS_REPLY_STRING
                    ? r->element[0]->str
                    : "no ROLE answer");
    if (r)
        freeReplyObject(r);
    return ok ? 0 : CTL_EXIT_UNREACH;
}

int cr_ctl_connect(struct ctl *ctl)
{
    redisReply *r;
    int rc;

    if (cr_keys_init(&ctl->keys, ctl->prefix) < 0) {
        fprintf(stderr, "crierctl: --prefix '%s' is too long\n", ctl->prefix);
        return CTL_EXIT_USAGE;
    }
    if (ctl->sentinels[0] && ctl->socket[0]) {
        fprintf(stderr, "crierctl: --sentinel and --socket exclude each other\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl->sentinels[0]) {
        if (ctl->master[0] == '\0')
            snprintf(ctl->master, sizeof(ctl->master), "crier");
        rc = find_primary(ctl);
        if (rc != 0)
            return rc;
    }
    if (ctl->socket[0]) {
        snprintf(ctl->where, sizeof(ctl->where), "%s", ctl->socket);
        ctl->rc = redisConnectUnixWithTimeout(ctl->socket, tv_of(ctl->timeout_ms));
    } else {
        snprintf(ctl->where, sizeof(ctl->where), "%s:%d", ctl->host, ctl->port);
        ctl->rc = redisConnectWithTimeout(ctl->host, ctl->port, tv_of(ctl->timeout_ms));
    }
    if (ctl->rc == NULL || ctl->rc->err) {
        fprintf(stderr, "crierctl: cannot reach Redis at %s: %s\n", ctl->where,
                ctl->rc ? ctl->rc->errstr : "out of memory");
        cr_ctl_close(ctl);
        return CTL_EXIT_UNREACH;
    }
    if (redisSetTimeout(ctl->rc, tv_of(ctl->timeout_ms)) != REDIS_OK) {
        fprintf(stderr, "crierctl: Redis at %s: cannot set the command timeout: %s\n",
                ctl->where, ctl->rc->errstr);
        cr_ctl_close(ctl);
        return CTL_EXIT_UNREACH;
    }
    if (ctl->password[0]) {
        const char *argv[3] = {"AUTH", ctl->user, ctl->password};
        int argc = 3;

        if (ctl->user[0] == '\0') {
            argv[1] = ctl->password;
            argc = 2;
        }
        r = redisCommandArgv(ctl->rc, argc, argv, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "crierctl: Redis at %s: AUTH failed: %s\n", ctl->where,
                    r ? r->str : ctl->rc->errstr);
            if (r)
                freeReplyObject(r);
            cr_ctl_close(ctl);
            return CTL_EXIT_UNREACH;
        }
        freeReplyObject(r);
    }
    if (ctl->sentinels[0]) {
        rc = check_primary(ctl);
        if (rc != 0) {
            cr_ctl_close(ctl);
            return rc;
        }
    }
    return 0;
}

void cr_ctl_close(struct ctl *ctl)
{
    if (ctl->rc)
        redisFree(ctl->rc);
    ctl->rc = NULL;
}

static void conn_lost(struct ctl *ctl, const char *what, int *exit_code)
{
    const char *why = ctl->rc && ctl->rc->errstr[0] ? ctl->rc->errstr : "connection lost";

    if (ctl->rc && ctl->rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
        why = "timed out";
    fprintf(stderr, "crierctl %s: Redis at %s: %s: %s\n", ctl->cmd, ctl->where,
            what, why);
    *exit_code = CTL_EXIT_UNREACH;
}

redisReply *cr_ctl_cmdv(struct ctl *ctl, int argc, const char **argv, const size_t *lens,
                        int *exit_code)
{
    redisReply *r = redisCommandArgv(ctl->rc, argc, argv, lens);

    *exit_code = CTL_EXIT_OK;
    if (r == NULL) {
        conn_lost(ctl, argv[0], exit_code);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "crierctl %s: Redis %s failed: %s\n", ctl->cmd, argv[0], r->str);
        freeReplyObject(r);
        *exit_code = CTL_EXIT_FAIL;
        return NULL;
    }
    return r;
}

int cr_ctl_pipe_append(struct ctl *ctl, int argc, const char **argv, const size_t *lens)
{
    int code = CTL_EXIT_OK;

    if (redisAppendCommandArgv(ctl->rc, argc, argv, lens) != REDIS_OK) {
        conn_lost(ctl, argv[0], &code);
        return code;
    }
    return 0;
}

redisReply *cr_ctl_pipe_read(struct ctl *ctl, int *exit_code)
{
    void *r = NULL;

    *exit_code = CTL_EXIT_OK;
    if (redisGetReply(ctl->rc, &r) != REDIS_OK || r == NULL) {
        conn_lost(ctl, "pipelined command", exit_code);
        return NULL;
    }
    return r;
}

const char *cr_ctl_field(const redisReply *arr, const char *field)
{
    size_t i;

    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (i = 0; i + 1 < arr->elements; i += 2) {
        const redisReply *k = arr->element[i];
        const redisReply *v = arr->element[i + 1];

        if (k->type == REDIS_REPLY_STRING && k->str && strcmp(k->str, field) == 0) {
            if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)
                return v->str;
            return NULL;
        }
    }
    return NULL;
}

long long cr_ctl_field_ll(const redisReply *arr, const char *field, long long def)
{
    size_t i;
    long long v;

    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return def;
    for (i = 0; i + 1 < arr->elements; i += 2) {
        const redisReply *k = arr->element[i];
        const redisReply *val = arr->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || k->str == NULL || strcmp(k->str, field) != 0)
            continue;
        if (val->type == REDIS_REPLY_INTEGER)
            return val->integer;
        if (val->type == REDIS_REPLY_STRING &&
            cr_ctl_parse_ll(val->str, INT64_MIN, INT64_MAX, &v) == 0)
            return v;
        return def;
    }
    return def;
}

int64_t cr_ctl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cr_ctl_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cr_ctl_sleep_ms(long ms)
{
    struct timespec ts;

    if (ms <= 0 || cr_ctl_stop)
        return;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL); /* a signal ends it early: the caller checks cr_ctl_stop */
}

void cr_ctl_fmt_time(int64_t ms, int with_date, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];

    if (ms <= 0 || localtime_r(&t, &tm) == NULL) {
        snprintf(out, outlen, "-");
        return;
    }
    if (with_date) {
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(out, outlen, "%s", buf);
    } else {
        strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
        snprintf(out, outlen, "%s.%03d", buf, (int)(ms % 1000));
    }
}

void cr_ctl_fmt_utc(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "-");
}

void cr_ctl_fmt_duration(int64_t ms, char *out, size_t outlen)
{
    if (ms < 0)
        snprintf(out, outlen, "-");
    else if (ms < 1000)
        snprintf(out, outlen, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(out, outlen, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, outlen, "%lldm%02llds", (long long)(ms / 60000),
                 (long long)(ms / 1000 % 60));
    else
        snprintf(out, outlen, "%lldh%02lldm", (long long)(ms / 3600000),
                 (long long)(ms / 60000 % 60));
}

void cr_ctl_bar(char *out, size_t outlen, double f, int width)
{
    size_t i;
    size_t n;
    size_t fill;

    if (outlen < 3)
        return;
    if (!(f >= 0.0))
        f = 0.0;
    if (f > 1.0)
        f = 1.0;
    n = (size_t)(width > 0 ? width : 0);
    if (n > outlen - 3)
        n = outlen - 3;
    fill = (size_t)(f * (double)n + 0.5);
    out[0] = '[';
    for (i = 0; i < n; i++)
        out[1 + i] = i < fill ? '#' : '.';
    out[1 + n] = ']';
    out[2 + n] = '\0';
}

uint64_t cr_ctl_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ULL;
    }
    return h;
}

int64_t cr_ctl_entry_ms(const char *id)
{
    char *end = NULL;
    long long v;

    if (id == NULL)
        return 0;
    errno = 0;
    v = strtoll(id, &end, 10);
    if (errno != 0 || end == id || (*end != '-' && *end != '\0') || v < 0)
        return 0;
    return (int64_t)v;
}

/* One field of a job's state by name, as a C string or NULL. */
typedef const char *(*job_field_fn)(const void *src, const char *field);

static long long job_ll(job_field_fn get, const void *src, const char *field, long long def)
{
    const char *s = get(src, field);
    long long v;

    if (s == NULL || cr_ctl_parse_ll(s, INT64_MIN, INT64_MAX, &v) != 0)
        return def;
    return v;
}

static void job_fill(job_field_fn get, const void *src, struct ctl_job *job)
{
    const char *s;
    int st;
    int ch;
    char name[48];

    memset(job, 0, sizeof(*job));
    s = get(src, "state");
    snprintf(job->state, sizeof(job->state), "%s", s ? s : "?");
    s = get(src, "priority");
    snprintf(job->priority, sizeof(job->priority), "%s", s ? s : "-");
    job->targeted = job_ll(get, src, "targeted", 0);
    job->messages = job_ll(get, src, "messages", -1);
    job->batches = job_ll(get, src, "batches", 0);
    job->batches_done = job_ll(get, src, "batches_done", 0);
    job->expanded = job_ll(get, src, "expanded", 0) == 1;
    job->created_ms = job_ll(get, src, "created_ms", 0);
    job->started_ms = job_ll(get, src, "started_ms", 0);
    job->completed_ms = job_ll(get, src, "completed_ms", 0);
    job->send_at_ms = job_ll(get, src, "send_at_ms", 0);
    s = get(src, "error");
    snprintf(job->error, sizeof(job->error), "%s", s ? s : "");
    job->confirm = job_ll(get, src, "confirm", 0) == 1;
    job->confirmed = job_ll(get, src, "confirmed", 0);
    s = get(src, "esc");
    snprintf(job->esc, sizeof(job->esc), "%s", s ? s : "");
    job->esc_step = job_ll(get, src, "esc_step", 0);
    for (ch = 1; ch < 4; ch++) {
        snprintf(name, sizeof(name), "step:%d:ms", ch);
        job->step_ms[ch] = job_ll(get, src, name, 0);
    }
    for (ch = 0; ch < 4; ch++) {
        int b;

        snprintf(name, sizeof(name), "step:%d:ttd_n", ch);
        job->ttd_n[ch] = job_ll(get, src, name, 0);
        snprintf(name, sizeof(name), "step:%d:ttd_ms", ch);
        job->ttd_ms[ch] = job_ll(get, src, name, 0);
        for (b = 0; b <= CTL_TTD_NBOUNDS; b++) {
            if (b < CTL_TTD_NBOUNDS)
                snprintf(name, sizeof(name), "step:%d:ttd_le:%d", ch, cr_ctl_ttd_bounds[b]);
            else
                snprintf(name, sizeof(name), "step:%d:ttd_le:inf", ch);
            job->ttd_le[ch][b] = job_ll(get, src, name, 0);
        }
    }
    for (ch = 0; ch < CR_CH__COUNT; ch++) {
        snprintf(name, sizeof(name), "confirmed:%s", cr_channel_name((enum cr_channel)ch));
        job->confirmed_ch[ch] = job_ll(get, src, name, 0);
    }
    for (st = 0; st < CR_ST__COUNT; st++) {
        const char *sn = cr_status_name((enum cr_status)st);

        job->st[st] = job_ll(get, src, sn, 0);
        for (ch = 0; ch < CR_CH__COUNT; ch++) {
            snprintf(name, sizeof(name), "%s:%s", sn, cr_channel_name((enum cr_channel)ch));
            job->ch[ch][st] = job_ll(get, src, name, 0);
        }
    }
}

static const char *hash_field(const void *src, const char *field)
{
    return cr_ctl_field(src, field);
}

struct kv_src {
    size_t n;
    const char *const *kv;
};

static const char *kv_field(const void *src, const char *field)
{
    const struct kv_src *k = src;
    size_t i;

    for (i = 0; i + 1 < k->n; i += 2)
        if (k->kv[i] && strcmp(k->kv[i], field) == 0)
            return k->kv[i + 1];
    return NULL;
}

void cr_ctl_job_from_hash(const redisReply *h, struct ctl_job *job)
{
    job_fill(hash_field, h, job);
}

void cr_ctl_job_from_fields(size_t n, const char *const *kv, struct ctl_job *job)
{
    struct kv_src k = {n, kv};

    job_fill(kv_field, &k, job);
}

int cr_ctl_job_key(struct ctl *ctl, const char *id, char *key, size_t keylen)
{
    if (cr_key_for(&ctl->keys, "job", id, key, keylen) < 0) {
        fprintf(stderr, "crierctl %s: job id '%s' is too long\n", ctl->cmd, id);
        return CTL_EXIT_USAGE;
    }
    return 0;
}

int cr_ctl_job_hash(struct ctl *ctl, const char *key, redisReply **out)
{
    const char *argv[2];
    redisReply *r;
    int code;

    argv[0] = "HGETALL";
    argv[1] = key;
    r = cr_ctl_cmdv(ctl, 2, argv, NULL, &code);
    if (r == NULL)
        return code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return CTL_EXIT_NOTFOUND;
    }
    *out = r;
    return 0;
}

int cr_ctl_job_load(struct ctl *ctl, const char *id, struct ctl_job *job)
{
    char key[CR_KEY_MAX];
    redisReply *r = NULL;
    int code;

    code = cr_ctl_job_key(ctl, id, key, sizeof(key));
    if (code == 0)
        code = cr_ctl_job_hash(ctl, key, &r);
    if (code != 0)
        return code;
    cr_ctl_job_from_hash(r, job);
    freeReplyObject(r);
    return 0;
}

long long cr_ctl_job_done(const struct ctl_job *job)
{
    long long n = 0;
    int st;

    for (st = 0; st < CR_ST__COUNT; st++)
        n += job->st[st];
    return n;
}

double cr_ctl_job_progress(const struct ctl_job *job)
{
    if (strcmp(job->state, "completed") == 0)
        return 1.0;
    if (!job->expanded)
        return -1.0;
    /* every batch recorded but not completed: messages wait for a retry or
     * quiet hours to end, so not 100% yet */
    if (job->batches <= 0 || job->batches_done >= job->batches)
        return 0.99;
    return (double)job->batches_done / (double)job->batches;
}

int cr_ctl_job_finished(const struct ctl_job *job)
{
    return strcmp(job->state, "completed") == 0 || strcmp(job->state, "cancelled") == 0 ||
           strcmp(job->state, "expired") == 0 || strcmp(job->state, "failed") == 0;
}
