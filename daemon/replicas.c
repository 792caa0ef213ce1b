/* Outcomes confirmed on replicas (see replicas.h): slot counts per provider,
 * one WAIT in flight, and a degraded mode with a cheap probe for when the
 * replicas stop answering. */
#include "replicas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cr_error.h"
#include "cr_log.h"
#include "daemon.h"

#define SHORT_KEY "redis WAIT short" /* the shortfall lines, folded by cr_log_repeat */
#define PROBE_MS 1000      /* INFO replication while degraded */
#define MAX_LAG_S 1        /* a replica with a larger lag is not in step */

struct cr_replicas {
    struct cr_daemon *d;
    int want;
    long timeout_ms;
    size_t nprov;
    uint32_t *pending; /* [nprov] written, waiting for a WAIT to be sent */
    uint32_t *covered; /* [nprov] covered by the WAIT under way */
    uint64_t npending;
    uint64_t ncovered;
    int outstanding;
    int degraded;
    long last_acked;
    uint64_t shorts;
    int probing;
    int refused_logged;
    cr_replicas_release_cb release;
    void *ud;
    uv_timer_t probe;
};

int cr_replicas_init(struct cr_daemon *d, size_t nprov, int want, long timeout_ms,
                     cr_replicas_release_cb release, void *ud, struct cr_replicas **out)
{
    struct cr_replicas *w = calloc(1, sizeof(*w));
    size_t n = nprov ? nprov : 1;

    if (w == NULL)
        return CR_ENOMEM;
    w->pending = calloc(n, sizeof(*w->pending));
    w->covered = calloc(n, sizeof(*w->covered));
    if (w->pending == NULL || w->covered == NULL) {
        free(w->pending);
        free(w->covered);
        free(w);
        return CR_ENOMEM;
    }
    w->d = d;
    w->nprov = nprov;
    w->want = want;
    w->timeout_ms = timeout_ms;
    w->release = release;
    w->ud = ud;
    w->last_acked = want;
    if (d != NULL) {
        uv_timer_init(d->loop, &w->probe);
        w->probe.data = w;
    }
    *out = w;
    return 0;
}

static void free_now(struct cr_replicas *w)
{
    free(w->pending);
    free(w->covered);
    free(w);
}

static void on_probe_closed(uv_handle_t *h)
{
    free_now(h->data);
}

void cr_replicas_free(struct cr_replicas *w)
{
    if (w == NULL)
        return;
    if (w->d == NULL) {
        free_now(w);
        return;
    }
    uv_timer_stop(&w->probe);
    uv_close((uv_handle_t *)&w->probe, on_probe_closed);
}

/* Frees every slot counted in v (npending or ncovered in *count). */
static void release_all(struct cr_replicas *w, uint32_t *v, uint64_t *count)
{
    size_t i;

    for (i = 0; i < w->nprov && *count > 0; i++) {
        if (v[i] == 0)
            continue;
        *count -= v[i];
        w->release(w->ud, i, v[i]);
        v[i] = 0;
    }
    *count = 0;
}

void cr_replicas_hold(struct cr_replicas *w, size_t prov)
{
    if (prov >= w->nprov)
        return;
    if (w->degraded) {
        w->release(w->ud, prov, 1);
        return;
    }
    w->pending[prov]++;
    w->npending++;
}

int cr_replicas_take(struct cr_replicas *w)
{
    size_t i;

    if (w->outstanding || w->npending == 0)
        return 0;
    for (i = 0; i < w->nprov; i++) {
        w->covered[i] += w->pending[i];
        w->pending[i] = 0;
    }
    w->ncovered += w->npending;
    w->npending = 0;
    w->outstanding = 1;
    return 1;
}

static void on_wait(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_replicas *w = ud;
    long acked = -1;

    (void)r;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        acked = (long)reply->integer;
    } else if (reply != NULL) {
        /* refused (sent to a replica, an ACL): as short as no replica at all */
        if (!w->refused_logged)
            cr_error("redis WAIT refused: %s; outcomes are not confirmed on replicas",
                     reply->str ? reply->str : "?");
        w->refused_logged = 1;
        acked = 0;
    }
    cr_replicas_answered(w, acked, uv_now(w->d->loop));
    if (!w->d->stopping)
        cr_replicas_kick(w);
}

void cr_replicas_kick(struct cr_replicas *w)
{
    if (w->d == NULL || !cr_replicas_take(w))
        return;
    /* the watchdog's allowance covers the WAIT's own timeout */
    if (cr_redis_cmd(w->d->rc, on_wait, w, w->timeout_ms, "WAIT %d %ld", w->want,
                     w->timeout_ms) < 0)
        cr_replicas_answered(w, -1, uv_now(w->d->loop)); /* not connected: nothing to wait for */
}

static void on_info(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_replicas *w = ud;
    const char *p;
    int good = 0;

    (void)r;
    w->probing = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || !w->degraded)
        return;
    /* slave0:ip=127.0.0.1,port=6380,state=online,offset=123,lag=0 */
    for (p = reply->str; (p = strstr(p, "\nslave")) != NULL; p++) {
        const char *end = strchr(p + 1, '\n');
        const char *lag = strstr(p, ",lag=");
        const char *online = strstr(p, "state=online");

        if (lag == NULL || online == NULL || (end != NULL && (lag > end || online > end)))
            continue;
        if (strtol(lag + 5, NULL, 10) <= MAX_LAG_S)
            good++;
    }
    if (good >= w->want)
        cr_replicas_recovered(w, uv_now(w->d->loop));
}

static void on_probe(uv_timer_t *t)
{
    struct cr_replicas *w = t->data;

    if (!w->degraded || w->probing || w->d->stopping)
        return;
    if (cr_redis_probe(w->d->rc, on_info, w, "INFO replication") == 0)
        w->probing = 1;
}

void cr_replicas_answered(struct cr_replicas *w, long acked, uint64_t now_ms)
{
    w->outstanding = 0;
    release_all(w, w->covered, &w->ncovered);
    if (acked < 0)
        return; /* the connection was lost: nothing is known about the replicas */
    w->last_acked = acked;
    if (acked >= w->want) {
        if (w->degraded)
            cr_replicas_recovered(w, now_ms);
        return;
    }
    w->shorts++;
    cr_log_repeat(CR_LOG_WARN, SHORT_KEY,
                  "redis WAIT: %ld of %d replicas acknowledged within %ld ms; messages' slots "
                  "freed anyway, and not waited for until the replicas catch up: a failover now "
                  "could lose their outcomes",
                  acked, w->want, w->timeout_ms);
    if (!w->degraded) {
        w->degraded = 1;
        if (w->d != NULL)
            uv_timer_start(&w->probe, on_probe, PROBE_MS, PROBE_MS);
    }
    release_all(w, w->pending, &w->npending);
}

void cr_replicas_recovered(struct cr_replicas *w, uint64_t now_ms)
{
    (void)now_ms;
    if (!w->degraded)
        return;
    w->degraded = 0;
    if (w->d != NULL)
        uv_timer_stop(&w->probe);
    cr_log_repeat_end(SHORT_KEY); /* the shortfalls counted, before the recovery */
    cr_info("redis WAIT: %d replica%s in step again; outcomes are confirmed on replicas before "
            "their slots are freed",
            w->want, w->want == 1 ? "" : "s");
}

int cr_replicas_degraded(const struct cr_replicas *w, char *why, size_t cap)
{
    if (w == NULL || !w->degraded)
        return 0;
    if (why != NULL && cap > 0)
        snprintf(why, cap,
                 "redis WAIT: %ld of %d replicas acknowledged within %ld ms; outcomes are not "
                 "confirmed on replicas",
                 w->last_acked, w->want, w->timeout_ms);
    return 1;
}

uint64_t cr_replicas_short_total(const struct cr_replicas *w)
{
    return w ? w->shorts : 0;
}

uint64_t cr_replicas_waiting(const struct cr_replicas *w)
{
    return w->npending;
}

uint64_t cr_replicas_covered(const struct cr_replicas *w)
{
    return w->ncovered;
}
