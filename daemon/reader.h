/* Takes work out of Redis: job entries from crier:jobs and batches from
 * crier:batches:<priority>, through the consumer group, never more than the
 * intake and the fan-out have room for, urgent streams first. It also takes
 * back this consumer's own pending entries after a (re)connect and claims
 * entries whose consumer died (XAUTOCLAIM after reclaim_idle_ms). */
#ifndef CR_READER_H
#define CR_READER_H

#include "daemon.h"

int cr_reader_init(struct cr_daemon *d, struct cr_reader **out);

/* Something freed room or new batches exist: read what fits now (non-blocking). */
void cr_reader_kick(struct cr_reader *r);

/* A Redis connection became ready (rb: 1 for the blocking one) or was lost. */
void cr_reader_redis_state(struct cr_reader *r, int blocking_conn, int connected);

/* Stops reading; entries already taken are unaffected. */
void cr_reader_stop(struct cr_reader *r);

/* Reads this consumer's pending entries again in ms (or sooner, when already
 * due sooner): a step that failed is tried again without waiting for the
 * periodic sweep. */
void cr_reader_recover_in(struct cr_reader *r, long ms);

/* Commands under way (for shutdown). */
int cr_reader_busy(const struct cr_reader *r);

void cr_reader_free(struct cr_reader *r);

#endif
