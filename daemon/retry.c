/* Claiming due retries (see retry.h). */
#include "retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "due.h"
#include "fanout.h"
#include "scripts.h"

#define POLL_MS 1000
#define CLAIM_MAX 256

struct cr_retry {
    struct cr_daemon *d;
    struct cr_due *due;
};

static void on_claimed(struct cr_redis *rc, redisReply *reply, void *ud)
{
    struct cr_retry *r = ud;
    const redisReply *members;
    const char **list;
    int64_t next = -1;
    size_t i;

    (void)rc;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            cr_error("retry set: claiming failed: %s", reply->str);
        cr_due_done(r->due, -1);
        return;
    }
    members = reply->element[0];
    if (reply->element[1]->type == REDIS_REPLY_STRING && reply->element[1]->len > 0)
        next = (int64_t)strtod(reply->element[1]->str, NULL);
    r->d->retry_waiting = (size_t)cr_reply_int(reply->element[2]);
    list = malloc((members->elements + 1) * sizeof(*list));
    if (list && members->elements > 0) {
        for (i = 0; i < members->elements; i++)
            list[i] = members->element[i]->str ? members->element[i]->str : "";
        cr_fanout_take_retries(r->d->fanout, list, members->elements);
        next = 0; /* there may be more due: look again at once */
    }
    free(list);
    cr_due_done(r->due, next);
}

static int claim(struct cr_due *p, void *ud)
{
    struct cr_retry *r = ud;
    struct cr_daemon *d = r->d;
    char now[24];
    char lease[24];
    char count[16];
    const char *argv[4];
    int64_t t = cr_now_ms();

    (void)p;
    if (!cr_redis_ready(d->rc) || !cr_fanout_has_room(d->fanout, CR_PRIO_BULK))
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)t);
    snprintf(lease, sizeof(lease), "%lld", (long long)(t + d->cfg->reclaim_idle_ms));
    snprintf(count, sizeof(count), "%d",
             d->cfg->batch_size < CLAIM_MAX ? d->cfg->batch_size : CLAIM_MAX);
    argv[0] = d->keys.retry;
    argv[1] = now;
    argv[2] = lease;
    argv[3] = count;
    return cr_script_call(d->rc, CR_SCRIPT_CLAIM, 1, 4, argv, NULL, on_claimed, r) < 0;
}

int cr_retry_init(struct cr_daemon *d, struct cr_retry **out)
{
    struct cr_retry *r = calloc(1, sizeof(*r));
    int rc;

    if (r == NULL)
        return CR_ENOMEM;
    r->d = d;
    rc = cr_due_init(d, POLL_MS, claim, r, &r->due);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void cr_retry_kick(struct cr_retry *r)
{
    cr_due_kick(r->due);
}

void cr_retry_free(struct cr_retry *r)
{
    cr_due_free(r->due);
    free(r);
}
