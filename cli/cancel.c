/* crierctl cancel: marks a job `cancelling` (every crierd stops sending it and
 * marks it `cancelled`) and records the request in the events stream, both in
 * one Lua script so that a job finishing at the same moment is left alone. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const char help[] =
    "Usage: crierctl cancel [options] ID\n"
    "Asks every crierd to stop sending job ID: sets <prefix>job:<ID> state to\n"
    "`cancelling` and appends `event cancel_requested` to <prefix>events, only when\n"
    "the job exists and is not already completed, cancelled or expired.\n"
    "Messages already handed to a provider are not recalled.\n"
    "Exit 0 when requested (or already requested), 1 when the job is already\n"
    "finished, 4 when there is no such job.\n";

/* KEYS[1] job hash, KEYS[2] events; ARGV[1] id, ARGV[2] now (ms).
 * Returns {verdict, state before}: 0 no job, 1 finished, 2 requested now,
 * 3 already cancelling. */
static const char cancel_lua[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return {0, ''} end\n"
    "if st == 'completed' or st == 'cancelled' or st == 'expired' then return {1, st} end\n"
    "if st == 'cancelling' then return {3, st} end\n"
    "redis.call('HSET', KEYS[1], 'state', 'cancelling')\n"
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'job', ARGV[1],\n"
    "  'event', 'cancel_requested', 't_ms', ARGV[2])\n"
    "return {2, st}\n";

int cr_ctl_cancel(struct ctl *ctl, int argc, char **argv)
{
    const char *xargv[7];
    char key[CR_KEY_MAX];
    char now[24];
    redisReply *r;
    const char *id;
    const char *before;
    long long verdict;
    int code;

    code = cr_ctl_one_arg(ctl, argc, argv, help, &id);
    if (code >= 0)
        return code;
    code = cr_ctl_job_key(ctl, id, key, sizeof(key));
    if (code != 0)
        return code;
    snprintf(now, sizeof(now), "%lld", (long long)cr_ctl_now_ms());
    xargv[0] = "EVAL";
    xargv[1] = cancel_lua;
    xargv[2] = "2";
    xargv[3] = key;
    xargv[4] = ctl->keys.events;
    xargv[5] = id;
    xargv[6] = now;
    r = cr_ctl_cmdv(ctl, 7, xargv, NULL, &code);
    if (r == NULL)
        return code;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "crierctl cancel: the cancel script gave an unexpected reply\n");
        freeReplyObject(r);
        return CTL_EXIT_FAIL;
    }
    verdict = r->element[0]->integer;
    before = r->element[1]->str;
    switch (verdict) {
    case 0:
        fprintf(stderr, "crierctl cancel: no job '%s'\n", id);
        code = CTL_EXIT_NOTFOUND;
        break;
    case 1:
        fprintf(stderr, "crierctl cancel: job %s is already %s; nothing to cancel\n", id, before);
        code = CTL_EXIT_FAIL;
        break;
    case 3:
        printf("job %s: cancel already requested (state cancelling)\n", id);
        code = CTL_EXIT_OK;
        break;
    default:
        printf("job %s: cancel requested (state was %s, now cancelling); crierd stops sending "
               "it and marks it cancelled\n",
               id, before);
        code = CTL_EXIT_OK;
        break;
    }
    freeReplyObject(r);
    return code;
}
