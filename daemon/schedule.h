/* Scheduled jobs: a job with a future send_at waits in crier:scheduled; when
 * it falls due any crierd turns it into a "resume" entry on crier:jobs, so its
 * expansion has a pending stream entry (and survives a crash) like any job. */
#ifndef CR_SCHEDULE_H
#define CR_SCHEDULE_H

#include "daemon.h"

int cr_schedule_init(struct cr_daemon *d, struct cr_schedule **out);
void cr_schedule_free(struct cr_schedule *s);

#endif
