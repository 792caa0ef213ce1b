/* The Lua scripts that change job state in Redis. Each one is atomic and safe
 * to run again after a lost reply: that is what makes a crash or a Redis
 * failover lose nothing and count nothing twice. */
#ifndef CR_SCRIPTS_H
#define CR_SCRIPTS_H

#include <stddef.h>

#include "redis.h"

enum cr_script {
    /* KEYS job, events, jobs, recent jobs index, scheduled, ledger, seen set,
     * dead-letter stream, then the audience sets (segments, require,
     * exclude); ARGV id, entry, priority, now_ms, doc, send_at_ms,
     * expires_at_ms, group, number of segments, number of require sets, key
     * id of a signed job ("" none), its max_audience ("0" none), escalation
     * spec ("" none, escalate.c), the escalate set, the steps' start ms, the
     * first step's due ms, "1" when the job asks for confirmations, then
     * its audience segments (space separated, kept as confirm_segments).
     * Checks the type of every key before writing. Returns {2,"accepted"}
     * new, {3,"scheduled"} new and due later (entry acked), {1,state} the
     * same intake entry again (resume), {0,state} a duplicate id (entry
     * acked), {4,reason} the job failed (a key of the wrong type, now or
     * before; state "failed", entry acked), {5,reason} the job key itself is
     * not a hash (entry dead-lettered with code "bad_key" and acked). */
    CR_SCRIPT_ACCEPT,
    /* KEYS job, batches stream, events, jobs, ledger, seen set; ARGV id,
     * expected step, new_src, new_cursor, ids (comma separated), done, now_ms,
     * group, entry, retention_s. Appends the ids not yet in the audience as one
     * batch and moves the expansion on, only if no other step came first.
     * A job whose hash has max_audience gets no batch entry past it: the rest
     * are counted in beyond_audience, and code/reason say "forbidden".
     * Returns the new step (>= 1), -1 (already expanded), -2 (another
     * expander moved on) or -3 (the job failed: one of its keys holds the
     * wrong type, or it had failed before; entry acked). */
    CR_SCRIPT_EXPAND,
    /* KEYS job, ledger, receipts, events, batch stream, suppress email, sms,
     * push, retry set, early receipts hash, sms last-sender hash (WhatsApp
     * numbers as "whatsapp:+E164"), suppress whatsapp; ARGV id, group, entry
     * ("" = no ack), receipts maxlen, now_ms, retention_s, n, nk, the n
     * outcomes' bytes (CR_RECORD_BYTES each, binary: CR_RECORD_* flags,
     * position (4 bytes, most significant first), 1-based index of its kind),
     * the nk kinds (CR_RECORD_KIND_STRINGS each: provider, status (or
     * "park"), attempt, code, SMS segments, channel name ("" when skipped),
     * ledger slot (CR_LEDGER_SKIPPED = none)), then per outcome its sub, pos,
     * latency_us and provider_id, its address with CR_RECORD_ADDRESS, the
     * retry member it resolves with CR_RECORD_UNPARK, park due ms and park
     * member with CR_RECORD_PARK; with an entry, then the plan: the ledger's
     * first byte of the batch and, from it, the bits that must be set
     * (binary, the ledger's layout). Counts each (pos, channel) once (ledger
     * bit), writes its receipt, parks or unparks retry members (a park
     * already in the set or already recorded counts nothing), and with an
     * entry acks the batch only when every bit of the plan is set, then
     * finishes the job when nothing is left. Returns the number newly
     * recorded, or when the plan has bits missing (the batch is not acked)
     * {newly recorded, bits missing, the ledger's bytes over the plan}; or the
     * error "BADKEY <key> is a <type>, not a <type>" before writing anything
     * when one of the keys the call would write holds the wrong type (a
     * suppression set of the wrong type is only left unwritten). */
    CR_SCRIPT_RECORD,
    /* KEYS retry set; ARGV now_ms, lease_until_ms, count. Claims up to count
     * due members (their score moves to the lease end). Returns {members,
     * next due score or "", size of the set}. */
    CR_SCRIPT_CLAIM,
    /* KEYS scheduled, jobs, events; ARGV now_ms, count, prefix. Starts due
     * scheduled jobs by appending a "resume" entry to the jobs stream, and
     * ends "cancelled" (messages 0) those of the soonest 256 whose state was
     * set to cancelling. Returns {started, next due score or ""}. */
    CR_SCRIPT_DUE,
    /* KEYS the provider's bucket; ARGV rate per s, burst, now_ms, want.
     * Returns {tokens granted, ms to wait when none}. */
    CR_SCRIPT_TOKENS,
    /* KEYS job, events, stream to ack, scheduled, the suspect key; ARGV id,
     * now_ms, entry to ack ("" none), group, wanted type ("" = reason given
     * whole), what the key is (or the whole reason), retention_s. Ends the
     * job "failed" with the reason in its hash field "error" and an event
     * "failed". Returns {1,reason} failed now, {2,error} already finished,
     * {0,type} the suspect key holds the wanted type after all (nothing
     * written), {-1,reason} no job hash to write it in. */
    CR_SCRIPT_FAIL,
    /* KEYS escalate set, events; ARGV now_ms, prefix, count, retention_s,
     * sweep rank ("" none). Runs due escalation steps (escalate_run.c).
     * Returns {steps run, next due score or "", next sweep rank or ""}. */
    CR_SCRIPT_ESCALATE,
    /* KEYS the provider's tier set; ARGV now_ms, window_ms, limit, address.
     * Admits a business-initiated conversation with address: the set holds
     * the addresses contacted in the last window_ms (never more than limit).
     * Returns {1, 0} admitted (already in the set, or a place was free), or
     * {0, ms until the oldest place frees}. */
    CR_SCRIPT_TIER,
    /* No KEYS; ARGV prefix, job, pos, channel, sub, via, now_ms,
     * retention_s, receipts maxlen, segments... Counts a confirmation once
     * per (job, resident) (confirm.c). Returns 0 no such job or it asks for
     * none, 1 confirmed before, 2 counted now. */
    CR_SCRIPT_CONFIRM,
    CR_SCRIPT__COUNT
};

/* The record script's outcomes travel as bytes, the strings they share
 * (provider, status, code, ...) once per call as kinds: each argument costs
 * Redis more than the script's work on it. */
#define CR_RECORD_BYTES 6
#define CR_RECORD_KIND_STRINGS 7
#define CR_RECORD_SUPPRESS 1 /* add the address to the channel's suppression set */
#define CR_RECORD_ADDRESS 2  /* the address follows */
#define CR_RECORD_UNPARK 4   /* the retry member it resolves follows */
#define CR_RECORD_PARK 8     /* park: due ms and member follow */

/* The most arguments one cr_script_call sends, EVALSHA, sha and key count
 * included. */
#define CR_SCRIPT_MAX_ARGS 4096

/* Sends SCRIPT LOAD for every script. Call first thing after each (re)connect:
 * replies on a connection come in order, so later EVALSHAs find them. */
void cr_scripts_load(struct cr_redis *r);

/* EVALSHA of script s with nkeys keys and argc further values (keys first in
 * argv). As cr_redis_argv for ownership, return value and callback. A
 * NOSCRIPT answer (a server that lost or never took the scripts) also sends
 * cr_scripts_load on r, unless loads are under way, so the caller's retry
 * finds them. */
int cr_script_call(struct cr_redis *r, enum cr_script s, int nkeys, int argc, const char **argv,
                   const size_t *lens, cr_redis_cb cb, void *ud);

/* As cr_script_call (C-string arguments, cb required), for a write nobody
 * will retry (a resident's confirmation): on a NOSCRIPT answer the call is
 * sent once more at once with EVAL and the script's text, so it is not lost
 * while the scripts load again. The arguments are copied; cb fires once,
 * with the answer of the last attempt. */
int cr_script_call_once(struct cr_redis *r, enum cr_script s, int nkeys, int argc,
                        const char **argv, cr_redis_cb cb, void *ud);

#endif
