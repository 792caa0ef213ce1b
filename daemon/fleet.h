/* The fleet in Redis: every crierd publishes a heartbeat about once a second
 * (<prefix>fleet:<consumer>, a JSON document with a TTL of a few seconds,
 * indexed in the sorted set <prefix>fleet by time), so that any crierd, the
 * dashboard and `crierctl top` see every node's providers, and reads the
 * stream backlog for /metrics on the same tick. */
#ifndef CR_FLEET_H
#define CR_FLEET_H

#include <stdint.h>

#include "cr_buf.h"
#include "daemon.h"

#define CR_FLEET_PERIOD_MS 1000
#define CR_FLEET_TTL_MS 5000   /* a node that stops beating is gone after this */
#define CR_FLEET_DOC_MAX 65536 /* one heartbeat document */

struct cr_fleet;

/* Starts the heartbeat timer on d's loop (first beat once rc is ready).
 * Returns 0 or CR_ENOMEM. Freed with cr_fleet_free. */
int cr_fleet_init(struct cr_daemon *d, struct cr_fleet **out);

/* Builds this node's heartbeat document at now_ms into out (JSON object).
 * Returns 0 or CR_ETOOBIG/CR_ENOMEM. Pure but for reading d's modules. */
int cr_fleet_doc(const struct cr_daemon *d, int64_t started_ms, int64_t now_ms, long loop_lag_ms,
                 struct cr_buf *out);

/* Something readers watch changed (a provider's breaker opened or closed):
 * beats now, or as soon as the round under way is done, instead of waiting
 * for the next second. f may be NULL. */
void cr_fleet_kick(struct cr_fleet *f);

/* Shutdown: stops beating and deletes this node's key (a clean stop leaves
 * the fleet at once; a killed node leaves when its TTL runs out). */
void cr_fleet_stop(struct cr_fleet *f);

/* Nonzero while the UNLINK sent by cr_fleet_stop is unanswered: shutdown waits
 * for it (cr_daemon_maybe_done is called when it is answered). */
int cr_fleet_leaving(const struct cr_fleet *f);

/* Closes the timer; f is freed in its close callback. NULL is fine. */
void cr_fleet_free(struct cr_fleet *f);

#endif
