/* The audit group's trim floor and backlog (see audit_trim.h). */
#include "audit_trim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"

#define POLL_MS 1000
#define FLOOR_TTL_MS 30000 /* a floor no crierd refreshes lapses: plain MAXLEN again */
#define GROUPS_MAX 16
#define ID_MAX 48

struct group {
    char name[64];
    long long pending;
    long long lag; /* -1: Redis cannot say (then the stream's length stands in) */
    char last[ID_MAX];
    char oldest[ID_MAX]; /* oldest pending id, "" when none */
};

struct cr_audit_trim {
    struct cr_daemon *d;
    uv_timer_t timer;
    int busy; /* a look is in flight */
    int stopped;
    int had_floor; /* we published a floor: delete it when the groups go */
    char floor_key[CR_KEY_MAX + 16];
    char missed_key[CR_KEY_MAX + 16];
    /* the look in flight */
    struct group g[GROUPS_MAX];
    size_t ng;
    size_t waiting;
    long long xlen;
    /* what /metrics shows */
    struct group shown[GROUPS_MAX];
    size_t nshown;
    long long missed; /* receipts trimmed at the ceiling before the audit stored them */
    int missed_known;
};

static void parse_id(const char *s, uint64_t *ms, uint64_t *seq)
{
    char *end;

    *ms = strtoull(s, &end, 10);
    *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

int cr_stream_id_cmp(const char *a, const char *b)
{
    uint64_t am, as, bm, bs;

    parse_id(a, &am, &as);
    parse_id(b, &bm, &bs);
    if (am != bm)
        return am < bm ? -1 : 1;
    if (as != bs)
        return as < bs ? -1 : 1;
    return 0;
}

static void copy_str(char *dst, size_t n, const redisReply *v)
{
    size_t len = 0;

    if (v && (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)) {
        len = v->len < n - 1 ? v->len : n - 1;
        memcpy(dst, v->str, len);
    }
    dst[len] = '\0';
}

/* A group's name as a metric label: anything but [A-Za-z0-9_.:-] becomes '_'. */
static void copy_name(char *dst, size_t n, const redisReply *v)
{
    char *p;

    copy_str(dst, n, v);
    for (p = dst; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == ':' || *p == '-'))
            *p = '_';
}

static void on_missed(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_audit_trim *t = ud;
    long long now;

    (void)r;
    t->busy = 0;
    if (t->stopped || reply == NULL || cr_reply_is_error(reply))
        return;
    now = reply->type == REDIS_REPLY_NIL ? 0 : cr_reply_int(reply);
    if (t->missed_known && now > t->missed)
        cr_warn("receipts: %s reached receipts.maxlen (%ld) while an audit group was behind; "
                "%lld receipts were trimmed before the audit stored them (%lld in all) and "
                "will be missing from the audit database",
                t->d->keys.receipts, t->d->cfg->receipts_maxlen, now - t->missed, now);
    t->missed = now;
    t->missed_known = 1;
}

/* Every reply is in: publish the floor (the oldest entry any group still
 * needs) and read the missed counter. */
static void finish(struct cr_audit_trim *t)
{
    char floor[ID_MAX] = "";
    char ttl[CR_NUM_MAX];
    size_t i;
    int rc;

    for (i = 0; i < t->ng; i++) {
        char next[ID_MAX];
        const char *need = t->g[i].oldest;

        if (need[0] == '\0') {
            /* nothing pending: everything after the last entry read is needed */
            uint64_t ms, seq;

            parse_id(t->g[i].last, &ms, &seq);
            snprintf(next, sizeof(next), "%" PRIu64 "-%" PRIu64, ms, seq + 1);
            need = next;
        }

        if (floor[0] == '\0' || cr_stream_id_cmp(need, floor) < 0)
            cr_strlcpy(floor, need, sizeof(floor));
    }
    memcpy(t->shown, t->g, sizeof(t->g));
    t->nshown = t->ng;
    for (i = 0; i < t->nshown; i++)
        if (t->shown[i].lag < 0)
            t->shown[i].lag = t->xlen;
    if (t->ng > 0) {
        cr_fmt_i64(ttl, FLOOR_TTL_MS);
        rc = cr_redis_cmd(t->d->rc, NULL, NULL, 0, "SET %s %s PX %s", t->floor_key, floor, ttl);
        t->had_floor = rc == 0;
    } else if (t->had_floor) {
        if (cr_redis_cmd(t->d->rc, NULL, NULL, 0, "DEL %s", t->floor_key) == 0)
            t->had_floor = 0;
    }
    if (cr_redis_cmd(t->d->rc, on_missed, t, 0, "GET %s", t->missed_key) != 0)
        t->busy = 0;
}

static void on_pending(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_audit_trim *t = ud;
    size_t i;

    (void)r;
    if (t->stopped)
        return;
    /* XPENDING summary: count, smallest id, greatest id, consumers; the
     * group is found by the order of the commands */
    for (i = 0; i < t->ng && !(t->g[i].pending > 0 && t->g[i].oldest[0] == '\0'); i++)
        ;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 && i < t->ng)
        copy_str(t->g[i].oldest, sizeof(t->g[i].oldest), reply->element[1]);
    if (i < t->ng && t->g[i].oldest[0] == '\0')
        cr_strlcpy(t->g[i].oldest, "0-0", sizeof(t->g[i].oldest)); /* unknown: keep all */
    if (--t->waiting == 0)
        finish(t);
}

static long long field_int(const redisReply *v)
{
    if (v == NULL || v->type == REDIS_REPLY_NIL)
        return -1;
    return cr_reply_int(v);
}

static void on_groups(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_audit_trim *t = ud;
    size_t i;
    size_t k;

    (void)r;
    if (t->stopped)
        return;
    t->ng = 0;
    if (reply == NULL || (cr_reply_is_error(reply) && reply->str &&
                          strncmp(reply->str, "ERR no such key", 15) != 0)) {
        t->busy = 0;
        return;
    }
    for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements && t->ng < GROUPS_MAX;
         i++) {
        const redisReply *e = reply->element[i];
        struct group *g = &t->g[t->ng];

        if (e->type != REDIS_REPLY_ARRAY)
            continue;
        memset(g, 0, sizeof(*g));
        g->lag = -1;
        for (k = 0; k + 1 < e->elements; k += 2) {
            const redisReply *key = e->element[k];
            const redisReply *val = e->element[k + 1];

            if (key->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(key->str, "name") == 0)
                copy_name(g->name, sizeof(g->name), val);
            else if (strcmp(key->str, "pending") == 0)
                g->pending = cr_reply_int(val);
            else if (strcmp(key->str, "last-delivered-id") == 0)
                copy_str(g->last, sizeof(g->last), val);
            else if (strcmp(key->str, "lag") == 0)
                g->lag = field_int(val);
        }
        if (g->last[0])
            t->ng++;
    }
    t->waiting = 1; /* held while the commands go out */
    for (i = 0; i < t->ng; i++) {
        if (t->g[i].pending <= 0)
            continue;
        if (cr_redis_cmd(t->d->rc, on_pending, t, 0, "XPENDING %s %s", t->d->keys.receipts,
                         t->g[i].name) == 0)
            t->waiting++;
        else
            cr_strlcpy(t->g[i].oldest, "0-0", sizeof(t->g[i].oldest)); /* keep all */
    }
    if (--t->waiting == 0)
        finish(t);
}

static void on_xlen(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_audit_trim *t = ud;

    (void)r;
    if (!t->stopped && reply && reply->type == REDIS_REPLY_INTEGER)
        t->xlen = reply->integer;
}

static void on_tick(uv_timer_t *timer)
{
    struct cr_audit_trim *t = timer->data;

    if (t->busy || t->stopped || !cr_redis_ready(t->d->rc))
        return;
    /* XLEN first: its reply is in before the groups' */
    if (cr_redis_cmd(t->d->rc, on_xlen, t, 0, "XLEN %s", t->d->keys.receipts) != 0)
        return;
    if (cr_redis_cmd(t->d->rc, on_groups, t, 0, "XINFO GROUPS %s", t->d->keys.receipts) == 0)
        t->busy = 1;
}

int cr_audit_trim_init(struct cr_daemon *d, struct cr_audit_trim **out)
{
    struct cr_audit_trim *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL)
        return CR_ENOMEM;
    t->d = d;
    snprintf(t->floor_key, sizeof(t->floor_key), "%s:audit-floor", d->keys.receipts);
    snprintf(t->missed_key, sizeof(t->missed_key), "%s:audit-missed", d->keys.receipts);
    uv_timer_init(d->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_tick, POLL_MS, POLL_MS);
    *out = t;
    return 0;
}

void cr_audit_trim_stop(struct cr_audit_trim *t)
{
    if (t == NULL)
        return;
    t->stopped = 1;
    uv_timer_stop(&t->timer);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cr_audit_trim_free(struct cr_audit_trim *t)
{
    if (t == NULL)
        return;
    cr_audit_trim_stop(t);
    uv_close((uv_handle_t *)&t->timer, on_closed);
}

int cr_audit_trim_render(const struct cr_audit_trim *t, struct cr_buf *out)
{
    size_t i;
    int rc;

    rc = cr_buf_appends(out, "# HELP crier_audit_backlog Receipts a consumer group of the "
                             "receipts stream (the audit sink) has not acknowledged yet.\n"
                             "# TYPE crier_audit_backlog gauge\n");
    for (i = 0; rc == 0 && t && i < t->nshown; i++)
        rc = cr_buf_appendf(out, "crier_audit_backlog{group=\"%s\"} %lld\n", t->shown[i].name,
                            t->shown[i].pending + t->shown[i].lag);
    if (rc == 0)
        rc = cr_buf_appendf(out,
                            "# HELP crier_audit_receipts_missed Receipts trimmed at "
                            "receipts.maxlen before the audit group stored them (all crierds).\n"
                            "# TYPE crier_audit_receipts_missed gauge\n"
                            "crier_audit_receipts_missed %lld\n",
                            t ? t->missed : 0);
    return rc;
}
