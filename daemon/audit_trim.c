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

enum { ST_RECEIPTS, ST_REPLIES, ST_EVENTS, ST__COUNT };

static const char *const stream_label[ST__COUNT] = {"receipts", "replies", "events"};

/* One stream's look: its groups, the floor published, the entries missed. */
struct look {
    struct cr_audit_trim *t;
    int which;
    int busy;      /* a look is in flight */
    int had_floor; /* we published a floor: delete it when the groups go */
    long maxlen;   /* for the log line */
    char key[CR_KEY_MAX];
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
    long long missed; /* entries trimmed at the ceiling before the audit stored them */
    int missed_known;
};

struct cr_audit_trim {
    struct cr_daemon *d;
    uv_timer_t timer;
    int stopped;
    struct look s[ST__COUNT];
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
    struct look *l = ud;
    char logkey[CR_KEY_MAX + 32];
    long long now;

    (void)r;
    l->busy = 0;
    if (l->t->stopped || reply == NULL || cr_reply_is_error(reply))
        return;
    now = reply->type == REDIS_REPLY_NIL ? 0 : cr_reply_int(reply);
    if (l->missed_known && now > l->missed) {
        /* while the sink stays behind this comes every second: folded */
        snprintf(logkey, sizeof(logkey), "audit-missed %s", l->key);
        cr_log_repeat(CR_LOG_WARN, logkey,
                      "%s: %s reached its maxlen (%ld) while an audit group was behind; %lld "
                      "entries were trimmed before the audit stored them (%lld in all) and "
                      "will be missing from the audit database",
                      stream_label[l->which], l->key, l->maxlen, now - l->missed, now);
    }
    l->missed = now;
    l->missed_known = 1;
}

/* Every reply is in: publish the floor (the oldest entry any group still
 * needs) and read the missed counter. */
static void finish(struct look *l)
{
    struct cr_redis *redis = l->t->d->rc;
    char floor[ID_MAX] = "";
    char ttl[CR_NUM_MAX];
    size_t i;
    int rc;

    for (i = 0; i < l->ng; i++) {
        char next[ID_MAX];
        const char *need = l->g[i].oldest;

        if (need[0] == '\0') {
            /* nothing pending: everything after the last entry read is needed */
            uint64_t ms, seq;

            parse_id(l->g[i].last, &ms, &seq);
            snprintf(next, sizeof(next), "%" PRIu64 "-%" PRIu64, ms, seq + 1);
            need = next;
        }

        if (floor[0] == '\0' || cr_stream_id_cmp(need, floor) < 0)
            cr_strlcpy(floor, need, sizeof(floor));
    }
    memcpy(l->shown, l->g, sizeof(l->g));
    l->nshown = l->ng;
    for (i = 0; i < l->nshown; i++)
        if (l->shown[i].lag < 0)
            l->shown[i].lag = l->xlen;
    if (l->ng > 0) {
        cr_fmt_i64(ttl, FLOOR_TTL_MS);
        rc = cr_redis_cmd(redis, NULL, NULL, 0, "SET %s %s PX %s", l->floor_key, floor, ttl);
        l->had_floor = rc == 0;
    } else if (l->had_floor) {
        if (cr_redis_cmd(redis, NULL, NULL, 0, "DEL %s", l->floor_key) == 0)
            l->had_floor = 0;
    }
    if (cr_redis_cmd(redis, on_missed, l, 0, "GET %s", l->missed_key) != 0)
        l->busy = 0;
}

static void on_pending(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct look *l = ud;
    size_t i;

    (void)r;
    if (l->t->stopped)
        return;
    /* XPENDING summary: count, smallest id, greatest id, consumers; the
     * group is found by the order of the commands */
    for (i = 0; i < l->ng && !(l->g[i].pending > 0 && l->g[i].oldest[0] == '\0'); i++)
        ;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 && i < l->ng)
        copy_str(l->g[i].oldest, sizeof(l->g[i].oldest), reply->element[1]);
    if (i < l->ng && l->g[i].oldest[0] == '\0')
        cr_strlcpy(l->g[i].oldest, "0-0", sizeof(l->g[i].oldest)); /* unknown: keep all */
    if (--l->waiting == 0)
        finish(l);
}

static long long field_int(const redisReply *v)
{
    if (v == NULL || v->type == REDIS_REPLY_NIL)
        return -1;
    return cr_reply_int(v);
}

static void on_groups(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct look *l = ud;
    size_t i;
    size_t k;

    (void)r;
    if (l->t->stopped)
        return;
    l->ng = 0;
    if (reply == NULL || (cr_reply_is_error(reply) && reply->str &&
                          strncmp(reply->str, "ERR no such key", 15) != 0)) {
        l->busy = 0;
        return;
    }
    for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements && l->ng < GROUPS_MAX;
         i++) {
        const redisReply *e = reply->element[i];
        struct group *g = &l->g[l->ng];

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
            l->ng++;
    }
    l->waiting = 1; /* held while the commands go out */
    for (i = 0; i < l->ng; i++) {
        if (l->g[i].pending <= 0)
            continue;
        if (cr_redis_cmd(l->t->d->rc, on_pending, l, 0, "XPENDING %s %s", l->key,
                         l->g[i].name) == 0)
            l->waiting++;
        else
            cr_strlcpy(l->g[i].oldest, "0-0", sizeof(l->g[i].oldest)); /* keep all */
    }
    if (--l->waiting == 0)
        finish(l);
}

static void on_xlen(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct look *l = ud;

    (void)r;
    if (!l->t->stopped && reply && reply->type == REDIS_REPLY_INTEGER)
        l->xlen = reply->integer;
}

static void on_tick(uv_timer_t *timer)
{
    struct cr_audit_trim *t = timer->data;
    int i;

    if (t->stopped || !cr_redis_ready(t->d->rc))
        return;
    for (i = 0; i < ST__COUNT; i++) {
        struct look *l = &t->s[i];

        if (l->busy)
            continue;
        /* XLEN first: its reply is in before the groups' */
        if (cr_redis_cmd(t->d->rc, on_xlen, l, 0, "XLEN %s", l->key) != 0)
            return;
        if (cr_redis_cmd(t->d->rc, on_groups, l, 0, "XINFO GROUPS %s", l->key) == 0)
            l->busy = 1;
    }
}

int cr_audit_trim_init(struct cr_daemon *d, struct cr_audit_trim **out)
{
    struct cr_audit_trim *t = calloc(1, sizeof(*t));
    char replies[CR_KEY_MAX];
    const char *key[ST__COUNT];
    int i;

    *out = NULL;
    if (t == NULL)
        return CR_ENOMEM;
    t->d = d;
    snprintf(replies, sizeof(replies), "%sreplies", d->keys.prefix);
    key[ST_RECEIPTS] = d->keys.receipts;
    key[ST_REPLIES] = replies;
    key[ST_EVENTS] = d->keys.events;
    t->s[ST_RECEIPTS].maxlen = d->cfg->receipts_maxlen;
    t->s[ST_REPLIES].maxlen = d->cfg->receipts_maxlen;
    t->s[ST_EVENTS].maxlen = strtol(CR_EVENTS_MAXLEN, NULL, 10);
    for (i = 0; i < ST__COUNT; i++) {
        struct look *l = &t->s[i];

        l->t = t;
        l->which = i;
        cr_strlcpy(l->key, key[i], sizeof(l->key));
        snprintf(l->floor_key, sizeof(l->floor_key), "%s:audit-floor", key[i]);
        snprintf(l->missed_key, sizeof(l->missed_key), "%s:audit-missed", key[i]);
    }
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
    int k;
    int rc;

    rc = cr_buf_appends(out, "# HELP crier_audit_backlog Entries of the receipts, replies or "
                             "events stream a consumer group (the audit sink) has not "
                             "acknowledged yet.\n"
                             "# TYPE crier_audit_backlog gauge\n");
    for (k = 0; rc == 0 && t && k < ST__COUNT; k++)
        for (i = 0; rc == 0 && i < t->s[k].nshown; i++)
            rc = cr_buf_appendf(out, "crier_audit_backlog{stream=\"%s\",group=\"%s\"} %lld\n",
                                stream_label[k], t->s[k].shown[i].name,
                                t->s[k].shown[i].pending + t->s[k].shown[i].lag);
    if (rc == 0)
        rc = cr_buf_appends(out, "# HELP crier_audit_missed Entries trimmed at the stream's "
                                 "maxlen before the audit group stored them (all crierds).\n"
                                 "# TYPE crier_audit_missed gauge\n");
    for (k = 0; rc == 0 && k < ST__COUNT; k++)
        rc = cr_buf_appendf(out, "crier_audit_missed{stream=\"%s\"} %lld\n", stream_label[k],
                            t ? t->s[k].missed : 0);
    if (rc == 0)
        rc = cr_buf_appendf(out,
                            "# HELP crier_audit_receipts_missed Receipts trimmed at "
                            "receipts.maxlen before the audit group stored them (all crierds; "
                            "crier_audit_missed{stream=\"receipts\"}).\n"
                            "# TYPE crier_audit_receipts_missed gauge\n"
                            "crier_audit_receipts_missed %lld\n",
                            t ? t->s[ST_RECEIPTS].missed : 0);
    return rc;
}
