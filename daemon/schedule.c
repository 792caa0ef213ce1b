/* Starting scheduled jobs when due (see schedule.h). */
#include "schedule.h"

#include <stdio.h>
#include <stdlib.h>

#include "cr_error.h"
#include "cr_log.h"
#include "due.h"
#include "scripts.h"

#define POLL_MS 1000

struct cr_schedule {
    struct cr_daemon *d;
    struct cr_due *due;
};

static void on_started(struct cr_redis *rc, redisReply *reply, void *ud)
{
    struct cr_schedule *s = ud;
    int64_t next = -1;

    (void)rc;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        long long n = cr_reply_int(reply->element[0]);

        if (n > 0)
            cr_info("scheduler: %lld scheduled jobs are due; starting them", n);
        if (reply->element[1]->type == REDIS_REPLY_STRING && reply->element[1]->len > 0)
            next = (int64_t)strtod(reply->element[1]->str, NULL);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        cr_error("scheduler: starting due jobs failed: %s", reply->str);
    }
    cr_due_done(s->due, next);
}

static int start_due(struct cr_due *p, void *ud)
{
    struct cr_schedule *s = ud;
    struct cr_daemon *d = s->d;
    char now[24];
    const char *argv[6];

    (void)p;
    if (!cr_redis_ready(d->rc))
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    argv[0] = d->keys.scheduled;
    argv[1] = d->keys.jobs;
    argv[2] = d->keys.events;
    argv[3] = now;
    argv[4] = "16";
    argv[5] = d->keys.prefix;
    return cr_script_call(d->rc, CR_SCRIPT_DUE, 3, 6, argv, NULL, on_started, s) < 0;
}

int cr_schedule_init(struct cr_daemon *d, struct cr_schedule **out)
{
    struct cr_schedule *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return CR_ENOMEM;
    s->d = d;
    rc = cr_due_init(d, POLL_MS, start_due, s, &s->due);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void cr_schedule_free(struct cr_schedule *s)
{
    cr_due_free(s->due);
    free(s);
}
