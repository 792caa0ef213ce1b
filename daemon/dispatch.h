/* The dispatcher: per-provider send queues (one per priority, urgent served
 * first), an in-flight cap per provider, rendering and request building just
 * before sending (so queued messages hold no rendered text), classification
 * of answers, and retries with backoff and full jitter (parked in Redis). */
#ifndef CR_DISPATCH_H
#define CR_DISPATCH_H

#include <stddef.h>

#include "daemon.h"
#include "fanout.h"

int cr_dispatch_init(struct cr_daemon *d, struct cr_dispatch **out);

/* Queues m (state CR_MSG_QUEUED) on its channel's provider. Never reports an
 * outcome from inside this call. */
void cr_dispatch_enqueue(struct cr_dispatch *dp, struct cr_msg *m);

/* A message's outcome is written: the in-flight slot it held on provider
 * provider_ix (index in cfg->providers) is free again. A message occupies its
 * slot from its request until its outcome is durable, so max_inflight bounds
 * what a crash at any moment can send twice. */
void cr_dispatch_release(struct cr_dispatch *dp, size_t provider_ix);

/* Nonzero when some provider in rotation has free in-flight slots and an
 * empty queue: more batches would give it work. */
int cr_dispatch_starving(const struct cr_dispatch *dp);

/* Messages handed to providers and not answered yet. */
size_t cr_dispatch_inflight(const struct cr_dispatch *dp);

/* Shutdown: forgets queued messages (their batches are not acknowledged, so
 * they are sent after a restart); in-flight ones finish. */
void cr_dispatch_stop(struct cr_dispatch *dp);

/* Gauges for metrics, per provider index (as in cfg->providers). */
size_t cr_dispatch_queued(const struct cr_dispatch *dp, size_t provider_ix);
int cr_dispatch_provider_inflight(const struct cr_dispatch *dp, size_t provider_ix);
size_t cr_dispatch_waiting_retries(const struct cr_dispatch *dp);
/* "closed", "open" or "half_open": the provider's circuit breaker. */
const char *cr_dispatch_circuit(const struct cr_dispatch *dp, size_t provider_ix);

/* What provider provider_ix is doing at now_ms, for the fleet heartbeat. */
struct cr_dispatch_pnow {
    const char *breaker;  /* "closed", "open", "half_open" */
    int breaker_open;     /* open or half-open: out of rotation or probing */
    int requests;         /* requests under way */
    size_t queued;
    int64_t paused_ms;    /* the provider asked for a pause (Retry-After): this long left */
    int64_t refill_ms;    /* until this process's rate limit has a token again */
    int64_t reopen_ms;    /* open breaker: until the next probe */
};
void cr_dispatch_provider_now(const struct cr_dispatch *dp, size_t provider_ix, int64_t now_ms,
                              struct cr_dispatch_pnow *out);

void cr_dispatch_free(struct cr_dispatch *dp);

#endif
