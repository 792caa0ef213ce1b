/* Writing a batch's outcomes to Redis with the record script: counters,
 * ledger bits and receipts in one atomic step per chunk, and the batch's
 * acknowledgement with the last chunk. */
#ifndef CR_RECORD_H
#define CR_RECORD_H

#include "fanout.h"

/* Writes the batch's unwritten outcomes (at most one flush at a time per
 * batch; a call while one is under way does nothing). With ack nonzero and
 * every outcome of the batch known, the last chunk acknowledges the batch.
 * cr_fanout_flushed() is called when the write is answered. */
void cr_record_flush(struct cr_batch *b, int ack);

/* The flush started by cr_record_flush finished: ok nonzero when outcomes
 * [from, to) are written. */
void cr_fanout_flushed(struct cr_batch *b, int ok, int acked, size_t from, size_t to);

#endif
