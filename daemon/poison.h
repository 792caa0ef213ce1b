/* Data of the wrong type: a Redis key that holds a string where crier needs a
 * hash, a list where it needs a set. Retrying cannot cure it, so the step that
 * met it ends at once: the job is marked "failed" with a reason naming the key
 * and its type, and its work is acknowledged instead of being retried. */
#ifndef CR_POISON_H
#define CR_POISON_H

#include "daemon.h"
#include "redis.h"

/* Nonzero when reply is an error no retry can cure: Redis's WRONGTYPE, or a
 * script's "BADKEY <key> is a <type>, not a <type>". */
int cr_poison_reply(const redisReply *reply);

/* What cr_poison_fail_job found: the job failed now (CR_POISON_FAILED), had
 * ended before (CR_POISON_FINISHED), the suspect key holds the wanted type
 * after all (CR_POISON_FINE: nothing written, retry as usual), there is no job
 * hash to write the failure in (CR_POISON_NOJOB), or the script call itself
 * failed (CR_POISON_UNKNOWN: connection lost; the step is retried later). */
enum cr_poison_outcome {
    CR_POISON_UNKNOWN,
    CR_POISON_FAILED,
    CR_POISON_FINISHED,
    CR_POISON_FINE,
    CR_POISON_NOJOB
};

/* reason is valid during the call only. */
typedef void (*cr_poison_cb)(void *ud, enum cr_poison_outcome outcome, const char *reason);

/* Ends job id "failed" (fields state, error, completed_ms, messages; event
 * "failed" in crier:events; removed from crier:scheduled). With want given,
 * suspect_key is checked first and the reason is "<what> <key> is a <type>,
 * not a <want>"; with want NULL, what is the whole reason. ack_stream and
 * entry (both may be NULL) name a stream entry to acknowledge with it.
 * Strings are copied. Returns 0 and cb fires exactly once, or a negative
 * CR_ code and cb never fires. */
int cr_poison_fail_job(struct cr_daemon *d, struct cr_redis *conn, const char *id,
                       const char *ack_stream, const char *entry, const char *suspect_key,
                       const char *want, const char *what, cr_poison_cb cb, void *ud);

#endif
