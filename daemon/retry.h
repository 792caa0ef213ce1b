/* Bringing parked messages back: any crierd claims members of crier:retry
 * that are due (with a lease of reclaim_idle_ms, so a crash hands them on)
 * and gives them to the fan-out as retry batches. */
#ifndef CR_RETRY_H
#define CR_RETRY_H

#include "daemon.h"

int cr_retry_init(struct cr_daemon *d, struct cr_retry **out);
/* Something was parked that may be due soon: look again now. */
void cr_retry_kick(struct cr_retry *r);
void cr_retry_free(struct cr_retry *r);

#endif
