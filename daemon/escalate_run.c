/* Running escalation steps (see escalate.h): the script that runs due steps,
 * its poller, and what a step's batch needs from the fan-out (its channels
 * and who already has the step's outcome). A step is one script call: it
 * appends the job's audience again as batches marked with the step, so that
 * the fan-out sends the step's channels to those without the outcome the
 * step asks about; the ledger bit of each step's channel makes a resident
 * escalated at most once per step, crashes or not. */
#include "escalate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_trim.h"
#include "cr_error.h"
#include "cr_log.h"
#include "daemon.h"
#include "due.h"
#include "fanout.h"
#include "job.h"
#include "scripts.h"

#define POLL_MS 250
#define DUE_PER_CALL "16"
/* How often a run also sweeps pending steps for jobs set to cancelling by
 * hand (crierctl and the dashboard make the step due instead). */
#define SWEEP_MS 5000

/* KEYS escalate set, events; ARGV now_ms, prefix, count, retention_s,
 * sweep rank ("" none).
 * A due member "<job>|<step>" runs its step once the job's earlier messages
 * all have their outcome (else it is looked at again in half a second); a
 * job cancelled or expired runs no step and ends once nothing of it is under
 * way. Returns {steps run, next due score or "", the rank the next sweep
 * starts from (0: from the start again) or "" when none was made}. */
const char cr_escalate_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local function endjob(job, id, final)\n"
    "  local total = 0\n"
    "  for _, s in ipairs({'delivered','sent','failed','bounced','suppressed','expired','cancelled','skipped'}) do\n"
    "    total = total + tonumber(redis.call('HGET', job, s) or '0')\n"
    "  end\n"
    "  redis.call('HSET', job, 'state', final, 'completed_ms', ARGV[1], 'messages', total)\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', id, 'event', final, 't_ms', ARGV[1], 'messages', total)\n"
    "  redis.call('UNLINK', job .. ':aud')\n"
    "  if tonumber(ARGV[4]) > 0 then\n"
    "    for _, k in ipairs({'', ':ledger', ':early', ':receipts', ':reached', ':confirmed', ':confirmed:segments'}) do\n"
    "      redis.call('EXPIRE', job .. k, ARGV[4])\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* no further step runs: the job ends now when nothing of it is under way,
     * else when its last batch is recorded */
    "local function stop(job, id, member, final)\n"
    "  redis.call('ZREM', KEYS[1], member)\n"
    "  redis.call('HSET', job, 'esc_left', 0)\n"
    "  local h = redis.call('HMGET', job, 'expanded', 'batches', 'batches_done', 'parked', 'state')\n"
    "  if h[1] == '1' and h[2] == h[3] and tonumber(h[4] or '0') <= 0 and\n"
    "     (h[5] == 'sending' or h[5] == 'cancelling' or h[5] == 'accepted') then\n"
    "    endjob(job, id, final)\n"
    "  end\n"
    "  xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'escalation_stopped', 't_ms', ARGV[1], 'reason', final)\n"
    "end\n"
    "local ran = 0\n"
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do\n"
    "  local id, k = string.match(m, '^(.+)|(%d+)$')\n"
    "  local job = ARGV[2] .. 'job:' .. (id or '')\n"
    "  if not id or redis.call('TYPE', job)['ok'] ~= 'hash' then\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "  else\n"
    "    k = tonumber(k)\n"
    "    local h = redis.call('HMGET', job, 'state', 'expanded', 'batches', 'batches_done', 'parked',\n"
    "      'expires_at_ms', 'esc', 'esc_step', 'priority', 'esc_base')\n"
    "    local st = h[1]\n"
    "    if st == 'completed' or st == 'cancelled' or st == 'expired' or st == 'failed' then\n"
    "      redis.call('ZREM', KEYS[1], m)\n"
    "    elseif st == 'cancelling' then stop(job, id, m, 'cancelled')\n"
    "    elseif tonumber(h[6] or '0') > 0 and now >= tonumber(h[6]) then stop(job, id, m, 'expired')\n"
    "    elseif tonumber(h[8] or '0') >= k then redis.call('ZREM', KEYS[1], m)\n"
    "    elseif h[2] ~= '1' or h[3] ~= h[4] or tonumber(h[5] or '0') > 0 then\n"
    "      redis.call('ZADD', KEYS[1], now + 500, m)\n"
    "    else\n"
    "      local steps = {}\n"
    "      for a in string.gmatch(h[7] or '', '(%d+):%d+:%a') do steps[#steps + 1] = tonumber(a) end\n"
    "      if not steps[k] then\n"
    "        redis.call('ZREM', KEYS[1], m)\n"
    "      else\n"
    "        local stream = ARGV[2] .. 'batches:' .. (h[9] or 'normal')\n"
    "        local aud = redis.call('HGETALL', job .. ':aud')\n"
    "        local n = 0\n"
    "        for i = 1, #aud, 2 do\n"
    "          redis.call('XADD', stream, '*', 'job', id, 'pos', aud[i], 'ids', aud[i + 1], 'step', k)\n"
    "          n = n + 1\n"
    "        end\n"
    "        redis.call('HINCRBY', job, 'batches', n)\n"
    "        redis.call('HSET', job, 'esc_step', k, 'step:' .. k .. ':ms', ARGV[1], 'esc_left', #steps - k)\n"
    "        redis.call('ZREM', KEYS[1], m)\n"
    "        if steps[k + 1] then\n"
    "          local d = tonumber(h[10] or ARGV[1]) + steps[k + 1] * 1000\n"
    "          local e = tonumber(h[6] or '0')\n"
    "          if e > 0 and e < d then d = e end\n"
    "          redis.call('ZADD', KEYS[1], d, id .. '|' .. (k + 1))\n"
    "        end\n"
    "        xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', id, 'event', 'escalated', 't_ms', ARGV[1], 'step', k, 'batches', n)\n"
    "        ran = ran + 1\n"
    "        if n == 0 then complete(job, KEYS[2], job .. ':ledger', id, ARGV[1], ARGV[4]) end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* Cancelling a job makes its step due now (CR_ESC_DUE_NOW_LUA) and expiry
     * is in the step's score, so the loop above ends them. A job set to
     * cancelling by hand is found by a sweep of 256 pending steps from rank
     * ARGV[5] ("" = no sweep this run), which the caller makes every few
     * seconds, moving on through the set. */
    "local sweep = ''\n"
    "if ARGV[5] ~= '' then\n"
    "  local off = tonumber(ARGV[5])\n"
    "  local ms = redis.call('ZRANGE', KEYS[1], off, off + 255)\n"
    "  local gone = 0\n"
    "  for _, m in ipairs(ms) do\n"
    "    local id = string.match(m, '^(.+)|%d+$')\n"
    "    if id then\n"
    "      local job = ARGV[2] .. 'job:' .. id\n"
    "      if redis.call('TYPE', job)['ok'] == 'hash' and redis.call('HGET', job, 'state') == 'cancelling' then\n"
    "        stop(job, id, m, 'cancelled')\n"
    "        gone = gone + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  sweep = 0\n"
    "  if #ms == 256 then sweep = off + 256 - gone end\n"
    "end\n"
    "local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "return {ran, nxt[2] or '', sweep}\n";

unsigned cr_escalate_step_channels(const struct cr_batch *b)
{
    const struct cr_escalation *e = &b->jc->job.esc;

    return b->step >= 1 && b->step <= e->n ? e->steps[b->step - 1].channels : 0;
}

int cr_escalate_load_outcome(struct cr_batch *b, struct cr_redis *r, cr_redis_cb cb, void *ud)
{
    const struct cr_escalation *e = &b->jc->job.esc;
    int confirmed = b->step >= 1 && b->step <= e->n &&
                    e->steps[b->step - 1].unless == CR_ESC_UNLESS_CONFIRMED;
    uint64_t first = b->pos0 / 8;
    uint64_t last = ((uint64_t)b->pos0 + b->nsubs) / 8;

    return cr_redis_cmd(r, cb, ud, 0, "GETRANGE %s:%s %llu %llu", b->key,
                        confirmed ? "confirmed" : "reached", (unsigned long long)first,
                        (unsigned long long)last);
}

int cr_escalate_copy_outcome(struct cr_batch *b, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0)
        return 0;
    b->outcome = malloc(reply->len);
    if (b->outcome == NULL)
        return CR_ENOMEM;
    memcpy(b->outcome, reply->str, reply->len);
    b->outcome_len = reply->len;
    return 0;
}

int cr_escalate_has_outcome(const struct cr_batch *b, uint32_t pos)
{
    uint64_t byte = pos / 8 - b->pos0 / 8;

    if (b->outcome == NULL || byte >= b->outcome_len)
        return 0;
    return (b->outcome[byte] >> (7 - pos % 8)) & 1; /* Redis bit order: MSB first */
}

struct cr_escalate {
    struct cr_daemon *d;
    struct cr_due *due;
    char key[CR_KEY_MAX];
    int64_t sweep_at_ms; /* the next run at or after this sweeps */
    long long sweep_rank; /* where that sweep starts in the set */
};

static void on_ran(struct cr_redis *rc, redisReply *reply, void *ud)
{
    struct cr_escalate *e = ud;
    int64_t next = -1;

    (void)rc;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) {
        long long n = cr_reply_int(reply->element[0]);

        if (reply->element[2]->type == REDIS_REPLY_INTEGER)
            e->sweep_rank = reply->element[2]->integer;

        if (n > 0)
            cr_info("escalation: %lld steps were due; their batches are queued", n);
        if (reply->element[1]->type == REDIS_REPLY_STRING && reply->element[1]->len > 0)
            next = (int64_t)strtod(reply->element[1]->str, NULL);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        cr_error("escalation: running due steps failed: %s; trying again in %d ms", reply->str,
                 POLL_MS);
    }
    cr_due_done(e->due, next);
}

static int run_due(struct cr_due *p, void *ud)
{
    struct cr_escalate *e = ud;
    struct cr_daemon *d = e->d;
    int64_t t = cr_now_ms();
    char now[24];
    char ret[24];
    char sweep[24] = "";
    const char *argv[7];

    (void)p;
    if (!cr_redis_ready(d->rc))
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)t);
    if (t >= e->sweep_at_ms) {
        snprintf(sweep, sizeof(sweep), "%lld", e->sweep_rank);
        e->sweep_at_ms = t + SWEEP_MS;
    }
    snprintf(ret, sizeof(ret), "%ld", (long)d->cfg->retention_s);
    argv[0] = e->key;
    argv[1] = d->keys.events;
    argv[2] = now;
    argv[3] = d->keys.prefix;
    argv[4] = DUE_PER_CALL;
    argv[5] = ret;
    argv[6] = sweep;
    return cr_script_call(d->rc, CR_SCRIPT_ESCALATE, 2, 7, argv, NULL, on_ran, e) < 0;
}

int cr_escalate_init(struct cr_daemon *d, struct cr_escalate **out)
{
    struct cr_escalate *e = calloc(1, sizeof(*e));
    int rc;

    if (e == NULL)
        return CR_ENOMEM;
    e->d = d;
    cr_key_for(&d->keys, "escalate", NULL, e->key, sizeof(e->key));
    rc = cr_due_init(d, POLL_MS, run_due, e, &e->due);
    if (rc < 0) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void cr_escalate_free(struct cr_escalate *e)
{
    cr_due_free(e->due);
    free(e);
}
