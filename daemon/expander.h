/* The expander streams a job's audience out of Redis into batches:
 * (explicit subscribers ∪ segments) ∩ every require − every exclude, one
 * SSCAN page at a time, deduplicated with SMISMEMBER against the sources
 * already walked, so neither crierd's memory nor any single Redis command
 * grows with the audience. Its cursor lives in the job hash, so a crashed
 * expansion resumes where it stopped. */
#ifndef CR_EXPANDER_H
#define CR_EXPANDER_H

#include "daemon.h"
#include "job.h"

int cr_expander_init(struct cr_daemon *d, struct cr_expander **out);

/* Expands job id (accepted from intake entry); job's contents move to the
 * expander. When finished or abandoned it calls cr_intake_release(entry). */
void cr_expander_start(struct cr_expander *x, const char *entry, const char *id,
                       struct cr_job *job);

/* Expansions under way. */
size_t cr_expander_active(const struct cr_expander *x);

void cr_expander_free(struct cr_expander *x);

#endif
