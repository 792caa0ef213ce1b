/* Poisoned data (see poison.h). */
#include "poison.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "scripts.h"

struct fail_ctx {
    cr_poison_cb cb;
    void *ud;
    char id[CR_KEY_MAX];
};

int cr_poison_reply(const redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || reply->str == NULL)
        return 0;
    /* BADKEY may come after a prefix Redis adds to script errors */
    return strncmp(reply->str, "WRONGTYPE", 9) == 0 || strstr(reply->str, "BADKEY ") != NULL;
}

static void on_failed(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct fail_ctx *fc = ud;
    enum cr_poison_outcome out = CR_POISON_UNKNOWN;
    const char *reason = "";

    (void)r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
        long long v = cr_reply_int(reply->element[0]);

        reason = reply->element[1]->str;
        if (v == 1)
            out = CR_POISON_FAILED;
        else if (v == 2)
            out = CR_POISON_FINISHED;
        else if (v == 0)
            out = CR_POISON_FINE;
        else
            out = CR_POISON_NOJOB;
    }
    if (out == CR_POISON_FAILED)
        cr_error("job %s: failed: %s; its remaining work is dropped", fc->id, reason);
    else if (out == CR_POISON_NOJOB)
        cr_error("job %s: %s, and the job has no record to mark failed; its work is dropped",
                 fc->id, reason);
    else if (out == CR_POISON_UNKNOWN)
        cr_error("job %s: marking it failed did not finish (%s); the step is tried again later",
                 fc->id, reply && reply->str ? reply->str : "connection lost");
    fc->cb(fc->ud, out, reason);
    free(fc);
}

int cr_poison_fail_job(struct cr_daemon *d, struct cr_redis *conn, const char *id,
                       const char *ack_stream, const char *entry, const char *suspect_key,
                       const char *want, const char *what, cr_poison_cb cb, void *ud)
{
    char job[CR_KEY_MAX];
    char now[24];
    char ret[24];
    const char *argv[12];
    struct fail_ctx *fc;
    int rc;

    rc = cr_key_for(&d->keys, "job", id, job, sizeof(job));
    if (rc < 0)
        return rc;
    fc = calloc(1, sizeof(*fc));
    if (fc == NULL)
        return CR_ENOMEM;
    fc->cb = cb;
    fc->ud = ud;
    snprintf(fc->id, sizeof(fc->id), "%s", id);
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    snprintf(ret, sizeof(ret), "%ld", d->cfg->retention_s);
    argv[0] = job;
    argv[1] = d->keys.events;
    argv[2] = ack_stream ? ack_stream : d->keys.jobs;
    argv[3] = d->keys.scheduled;
    argv[4] = want ? suspect_key : job;
    argv[5] = id;
    argv[6] = now;
    argv[7] = ack_stream && entry ? entry : "";
    argv[8] = d->cfg->group;
    argv[9] = want ? want : "";
    argv[10] = what;
    argv[11] = ret;
    rc = cr_script_call(conn, CR_SCRIPT_FAIL, 5, 12, argv, NULL, on_failed, fc);
    if (rc < 0)
        free(fc);
    return rc;
}
