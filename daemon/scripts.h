/* The Lua scripts that change job state in Redis. Each one is atomic and safe
 * to run again after a lost reply: that is what makes a crash or a Redis
 * failover lose nothing and count nothing twice. */
#ifndef CR_SCRIPTS_H
#define CR_SCRIPTS_H

#include <stddef.h>

#include "redis.h"

enum cr_script {
    /* KEYS job, events, jobs, recent jobs index, scheduled; ARGV id, entry,
     * priority, now_ms, doc, send_at_ms, expires_at_ms, group, key id of a
     * signed job ("" none), its max_audience ("0" none). Returns
     * {2,"accepted"} new, {3,"scheduled"} new and due later (entry acked),
     * {1,state} the same intake entry again (resume), {0,state} a duplicate id
     * (entry acked). */
    CR_SCRIPT_ACCEPT,
    /* KEYS job, batches stream, events, jobs, ledger, seen set; ARGV id,
     * expected step, new_src, new_cursor, ids (comma separated), done, now_ms,
     * group, entry, retention_s. Appends the ids not yet in the audience as one
     * batch and moves the expansion on, only if no other step came first.
     * A job whose hash has max_audience gets no batch entry past it: the rest
     * are counted in beyond_audience, and code/reason say "forbidden".
     * Returns the new step (>= 1), -1 (already expanded) or -2 (another
     * expander moved on). */
    CR_SCRIPT_EXPAND,
    /* KEYS job, ledger, receipts, events, batch stream, suppress email, sms,
     * push, retry set, early receipts hash, sms last-sender hash; ARGV id,
     * group, entry ("" = no ack), receipts maxlen, now_ms, retention_s, n, then
     * n x CR_RECORD_FIELDS: sub, pos, channel index (3 = none), channel,
     * provider, status (or "park"), attempt, code, latency_us, provider_id,
     * address, suppress (0/1), retry member this outcome resolves (""),
     * park due ms, park member, SMS segments, ledger bit (pos x 4 + channel
     * index). Counts each (pos, channel) once (ledger bit),
     * writes its receipt, parks or unparks retry members, acks the batch when
     * entry is given, and finishes the job when nothing is left. Returns the
     * number newly recorded. */
    CR_SCRIPT_RECORD,
    /* KEYS retry set; ARGV now_ms, lease_until_ms, count. Claims up to count
     * due members (their score moves to the lease end). Returns {members,
     * next due score or "", size of the set}. */
    CR_SCRIPT_CLAIM,
    /* KEYS scheduled, jobs, events; ARGV now_ms, count, prefix. Starts due
     * scheduled jobs by appending a "resume" entry to the jobs stream.
     * Returns {started, next due score or ""}. */
    CR_SCRIPT_DUE,
    /* KEYS the provider's bucket; ARGV rate per s, burst, now_ms, want.
     * Returns {tokens granted, ms to wait when none}. */
    CR_SCRIPT_TOKENS,
    CR_SCRIPT__COUNT
};

#define CR_RECORD_FIELDS 17

/* The most arguments one cr_script_call sends, EVALSHA, sha and key count
 * included. */
#define CR_SCRIPT_MAX_ARGS 4096

/* Sends SCRIPT LOAD for every script. Call first thing after each (re)connect:
 * replies on a connection come in order, so later EVALSHAs find them. */
void cr_scripts_load(struct cr_redis *r);

/* EVALSHA of script s with nkeys keys and argc further values (keys first in
 * argv). As cr_redis_argv for ownership, return value and callback. */
int cr_script_call(struct cr_redis *r, enum cr_script s, int nkeys, int argc, const char **argv,
                   const size_t *lens, cr_redis_cb cb, void *ud);

#endif
