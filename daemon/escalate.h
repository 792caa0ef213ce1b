/* Escalation: a job's later steps, each sending on channels the job has not
 * used yet to the residents the earlier channels did not reach (no delivery
 * receipt) or who did not confirm. The steps are parsed with the job, kept in
 * Redis (the job hash and one sorted set of due steps) and run by whichever
 * crierd finds one due, in one script call that re-streams the audience. */
#ifndef CR_ESCALATE_H
#define CR_ESCALATE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "cr_types.h"
#include "redis.h"

struct cr_daemon;
struct cr_job_error;

#define CR_ESC_STEPS_MAX 3
#define CR_ESC_AFTER_MIN_S 1
#define CR_ESC_AFTER_MAX_S 604800 /* a week */
/* The longest escalation spec kept in the job hash ("300:2:d,900:1:c,...") */
#define CR_ESC_SPEC_MAX 64

enum cr_esc_unless { CR_ESC_UNLESS_DELIVERED, CR_ESC_UNLESS_CONFIRMED };

struct cr_esc_step {
    uint32_t after_s;          /* from the job's start (send_at, or acceptance) */
    unsigned channels;         /* CR_CH_BIT set, never 0, none used before */
    enum cr_esc_unless unless;
};

struct cr_escalation {
    struct cr_esc_step steps[CR_ESC_STEPS_MAX];
    size_t n;                  /* 0: the job does not escalate */
};

/* Parses the job document's "escalate" (may be NULL: no steps) into out.
 * used: the job's own channels; confirm: whether the job asks for
 * confirmations ("unless": "confirmed" needs it). has_content(ch) must say
 * whether the default language has content for channel ch (bit set in
 * content_channels). Returns 0, or CR_EINVAL with err's code and message set
 * ("bad_type", "unknown_field", "duplicate_field", "unknown_channel",
 * "no_content", "too_long", "bad_escalate"), naming the field path. */
int cr_escalate_parse(const cJSON *v, unsigned used, int confirm, unsigned content_channels,
                      struct cr_escalation *out, struct cr_job_error *err);

/* Writes the steps as the job hash keeps them ("300:2:d,900:1:c": after_s,
 * channel bits, d(elivered)/c(onfirmed)) into out (CR_ESC_SPEC_MAX bytes);
 * "" for no steps. */
void cr_escalate_spec(const struct cr_escalation *e, char *out, size_t outlen);

/* When the first step is due, unix ms: start_ms + the first after_s, or the
 * job's expiry when that comes first (then the step only ends the job). */
int64_t cr_escalate_first_due(const struct cr_escalation *e, int64_t start_ms,
                              int64_t expires_at_ms);

/* The Lua body of CR_SCRIPT_ESCALATE (scripts.c joins it after the shared
 * guard and completion functions). */
extern const char cr_escalate_lua[];

struct cr_batch;

/* The channels of the escalation step b's batch belongs to (0 when the job
 * has no such step). */
unsigned cr_escalate_step_channels(const struct cr_batch *b);

/* Reads the bytes of the step's outcome bitmap (<job>:reached for "unless
 * delivered", <job>:confirmed for "unless confirmed", one bit per audience
 * position) that cover b, answering cb(ud). Returns 0 or a CR_ error (cb is
 * then not called). */
int cr_escalate_load_outcome(struct cr_batch *b, struct cr_redis *r, cr_redis_cb cb, void *ud);

/* Keeps the bitmap bytes of reply (a string, or nil: nobody yet) in b.
 * Returns 0 or CR_ENOMEM. */
int cr_escalate_copy_outcome(struct cr_batch *b, const redisReply *reply);

/* Whether the resident at pos has the step's outcome (reached / confirmed)
 * as loaded. */
int cr_escalate_has_outcome(const struct cr_batch *b, uint32_t pos);

/* Lua for the delivery-receipt scripts (webhooks.c, and scripts.c for a
 * receipt that came before its message was recorded): ttd(job key, channel
 * index, now ms) adds one delivery to the time-to-delivery figures of a job
 * with escalation steps, per step (0 = the job's own channels; no channel is
 * in two steps): step:<k>:ttd_n (count), step:<k>:ttd_ms (sum of the ms from
 * the step's start to the receipt) and step:<k>:ttd_le:<s> (a histogram, the
 * bucket of the first bound in s of 1 2 5 10 30 60 120 300 600 1800 3600 that
 * holds it, else "inf"). A job without steps is left alone. */
#define CR_TTD_LUA \
    "local function ttd(jk, ch, t)\n" \
    "  local h = redis.call('HMGET', jk, 'esc', 'started_ms', 'created_ms')\n" \
    "  if not h[1] or h[1] == '' then return end\n" \
    "  local k, n = 0, 0\n" \
    "  for m in string.gmatch(h[1], '%d+:(%d+):%a') do\n" \
    "    n = n + 1\n" \
    "    if math.floor(tonumber(m) / 2 ^ ch) % 2 == 1 then k = n end\n" \
    "  end\n" \
    "  local t0 = tonumber(h[2] or h[3] or t)\n" \
    "  if k > 0 then t0 = tonumber(redis.call('HGET', jk, 'step:' .. k .. ':ms') or t) end\n" \
    "  local d = t - t0\n" \
    "  if d < 0 then d = 0 end\n" \
    "  local le = 'inf'\n" \
    "  for _, b in ipairs({1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}) do\n" \
    "    if d <= b * 1000 then le = tostring(b); break end\n" \
    "  end\n" \
    "  local f = 'step:' .. k .. ':ttd'\n" \
    "  redis.call('HINCRBY', jk, f .. '_n', 1)\n" \
    "  redis.call('HINCRBY', jk, f .. '_ms', d)\n" \
    "  redis.call('HINCRBY', jk, f .. '_le:' .. le, 1)\n" \
    "end\n"

/* Lua for the scripts that set a job cancelling (crierctl cancel, the
 * dashboard's cancel): esc_due_now(set, job key, id, now ms) makes the job's
 * pending step in the escalate set due now, so that the step runner ends the
 * job at its next run instead of when the step was due. A job without steps
 * (no esc_step field) or a set of another type is left alone. */
#define CR_ESC_DUE_NOW_LUA \
    "local function esc_due_now(set, jk, id, now)\n" \
    "  local k = tonumber(redis.call('HGET', jk, 'esc_step') or '')\n" \
    "  if k and redis.call('TYPE', set)['ok'] == 'zset' then\n" \
    "    redis.call('ZADD', set, 'XX', now, id .. '|' .. (k + 1))\n" \
    "  end\n" \
    "end\n"

struct cr_escalate;

/* Starts the poller that runs due escalation steps (sorted set
 * <prefix>escalate). Returns 0 or CR_ENOMEM. Free with cr_escalate_free. */
int cr_escalate_init(struct cr_daemon *d, struct cr_escalate **out);

/* Stops the poller; its timer is freed when closed. */
void cr_escalate_free(struct cr_escalate *e);

#endif
