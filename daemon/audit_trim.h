/* Keeping crier:receipts for the audit sink: while a consumer group reads the
 * receipts stream (crier-audit's), crierd learns once a second the oldest
 * entry the groups have not acknowledged and publishes it as the trim floor
 * (<receipts>:audit-floor) that the record script trims below (XTRIM MINID),
 * receipts.maxlen staying the hard ceiling. It also reports the groups'
 * backlog and the receipts trimmed at the ceiling before they were stored. */
#ifndef CR_AUDIT_TRIM_H
#define CR_AUDIT_TRIM_H

#include "cr_buf.h"
#include "daemon.h"

struct cr_audit_trim;

/* Starts the once-a-second look on d->rc. Returns 0 and *out, or CR_ENOMEM. */
int cr_audit_trim_init(struct cr_daemon *d, struct cr_audit_trim **out);

/* Stops the timer; replies still in flight are ignored. */
void cr_audit_trim_stop(struct cr_audit_trim *t);

/* Frees t once its timer is closed (NULL is fine). */
void cr_audit_trim_free(struct cr_audit_trim *t);

/* Appends the crier_audit_* metrics (Prometheus text) to out. Returns 0 or a
 * cr_buf error. */
int cr_audit_trim_render(const struct cr_audit_trim *t, struct cr_buf *out);

/* Compares two stream ids ("ms-seq"): <0, 0 or >0 as in strcmp. Pure. */
int cr_stream_id_cmp(const char *a, const char *b);

#endif
