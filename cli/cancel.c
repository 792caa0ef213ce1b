/* crierctl cancel: marks a job `cancelling` (every crierd stops sending it and
 * marks it `cancelled`) and records the request in the events stream, both in
 * one Lua script so that a job finishing at the same moment is left alone. */
#include <stdio.h>
#include <string.h>

#include "audit_trim.h"
#include "ctl.h"
#include "escalate.h"

static const char help[] =
    "Usage: crierctl cancel [options] ID\n"
    "Asks every crierd to stop sending job ID: sets <prefix>job:<ID> state to\n"
    "`cancelling` and appends `event cancel_requested` to <prefix>events, only when\n"
    "the job exists and is not already completed, cancelled, expired or failed.\n"
    "Its messages waiting in <prefix>retry (retries, quiet hours) and its next\n"
    "escalation step in <prefix>escalate are made due now, so that they end\n"
    "`cancelled` at once. A scheduled job (send_at in the future)\n"
    "has sent nothing: it is `cancelled` at once, with messages 0.\n"
    "Messages already handed to a provider are not recalled.\n"
    "Exit 0 when requested (or already requested), 1 when the job is already\n"
    "finished, 4 when there is no such job.\n";

/* KEYS[1] job hash, KEYS[2] events, KEYS[3] scheduled, KEYS[4] retry set,
 * KEYS[5] escalate set;
 * ARGV[1] id, ARGV[2] now (ms). Returns {verdict, state before}: 0 no job,
 * 1 finished, 2 requested now, 3 already cancelling, 4 cancelled at once (it
 * was scheduled). Job ids hold no glob characters, so "<id>|*" matches
 * exactly the job's retry members. */
static const char cancel_lua[] = CR_AUDIT_TRIM_LUA CR_ESC_DUE_NOW_LUA
    "if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {0, ''} end\n"
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return {0, ''} end\n"
    "if st == 'completed' or st == 'cancelled' or st == 'expired' or st == 'failed' then\n"
    "  return {1, st}\n"
    "end\n"
    "if st == 'scheduled' then\n"
    "  redis.call('ZREM', KEYS[3], ARGV[1])\n"
    "  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'completed_ms', ARGV[2], 'messages', 0)\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1],\n"
    "    'event', 'cancel_requested', 't_ms', ARGV[2])\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1],\n"
    "    'event', 'cancelled', 't_ms', ARGV[2], 'messages', 0)\n"
    "  esc_due_now(KEYS[5], KEYS[1], ARGV[1], ARGV[2])\n"
    "  return {4, st}\n"
    "end\n"
    "local verdict = 3\n"
    "if st ~= 'cancelling' then\n"
    "  redis.call('HSET', KEYS[1], 'state', 'cancelling')\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1],\n"
    "    'event', 'cancel_requested', 't_ms', ARGV[2])\n"
    "  verdict = 2\n"
    "end\n"
    "if tonumber(redis.call('HGET', KEYS[1], 'parked') or '0') > 0 and\n"
    "   redis.call('TYPE', KEYS[4])['ok'] == 'zset' then\n"
    "  local cur = '0'\n"
    "  repeat\n"
    "    local r = redis.call('ZSCAN', KEYS[4], cur, 'MATCH', ARGV[1] .. '|*', 'COUNT', 1000)\n"
    "    cur = r[1]\n"
    "    for i = 1, #r[2], 2 do redis.call('ZADD', KEYS[4], 'XX', ARGV[2], r[2][i]) end\n"
    "  until cur == '0'\n"
    "end\n"
    "esc_due_now(KEYS[5], KEYS[1], ARGV[1], ARGV[2])\n"
    "return {verdict, st}\n";

int cr_ctl_cancel(struct ctl *ctl, int argc, char **argv)
{
    const char *xargv[10];
    char key[CR_KEY_MAX];
    char esc[CR_KEY_MAX];
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
    if (cr_key_for(&ctl->keys, "escalate", NULL, esc, sizeof(esc)) < 0) {
        fprintf(stderr, "crierctl cancel: the key prefix is too long\n");
        return CTL_EXIT_FAIL;
    }
    snprintf(now, sizeof(now), "%lld", (long long)cr_ctl_now_ms());
    xargv[0] = "EVAL";
    xargv[1] = cancel_lua;
    xargv[2] = "5";
    xargv[3] = key;
    xargv[4] = ctl->keys.events;
    xargv[5] = ctl->keys.scheduled;
    xargv[6] = ctl->keys.retry;
    xargv[7] = esc;
    xargv[8] = id;
    xargv[9] = now;
    r = cr_ctl_cmdv(ctl, 10, xargv, NULL, &code);
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
    case 4:
        printf("job %s: cancelled before its send_at (state was scheduled, now cancelled); "
               "nothing was sent\n",
               id);
        code = CTL_EXIT_OK;
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
