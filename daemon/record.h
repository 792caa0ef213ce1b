/* Writing a batch's outcomes to Redis with the record script: counters,
 * ledger bits and receipts in one atomic step per chunk, and the batch's
 * acknowledgement with the last chunk, which Redis refuses while the ledger
 * lacks a bit of the batch's plan. */
#ifndef CR_RECORD_H
#define CR_RECORD_H

#include "fanout.h"

/* Writes the batch's unwritten outcomes (at most one flush at a time per
 * batch; a call while one is under way does nothing). With ack nonzero and
 * every outcome of the batch known, the last chunk acknowledges the batch.
 * cr_fanout_flushed() is called when the write is answered. */
void cr_record_flush(struct cr_batch *b, int ack);

/* The flush started by cr_record_flush finished: ok nonzero when outcomes
 * [from, to) are written. (An acknowledgement refused for missing ledger
 * bits ends in cr_fanout_gap instead.) */
void cr_fanout_flushed(struct cr_batch *b, int ok, int acked, size_t from, size_t to);

#endif
