/* The expander streams a job's audience out of Redis into batches:
 * (explicit subscribers ∪ segments) ∩ every require − every exclude, one
 * SSCAN page at a time, filtered with SMISMEMBER, so no single Redis command
 * walks a large set and crierd's memory does not grow with the audience. A
 * seen set in Redis, kept only while the audience is expanded, adds each
 * resident once; the position reached lives in the job hash, so an
 * interrupted expansion resumes (rescanning the current source). */
#ifndef CR_EXPANDER_H
#define CR_EXPANDER_H

#include "daemon.h"
#include "job.h"

int cr_expander_init(struct cr_daemon *d, struct cr_expander **out);

/* The first page of a job's audience, read while the job is being accepted,
 * so that a new job's first batch is one round trip nearer. */
struct cr_first_page;

/* Sends the SSCAN of job's first page on the connection its accept script
 * will use, before that script, so that its answer is in first. Returns NULL
 * when the audience does not start with a segment (an explicit list comes
 * first) or the command could not be sent: the expansion then reads its first
 * page itself. */
struct cr_first_page *cr_expander_prefetch(struct cr_expander *x, const struct cr_job *job);

/* Gives pf up (NULL is ignored); safe while its answer is still out. */
void cr_first_page_drop(struct cr_first_page *pf);

/* Expands job id (accepted from intake entry); job's contents move to the
 * expander. fresh: the job was accepted just now, so nothing of it is expanded
 * yet and the position saved in its hash need not be read back; its
 * prefetched first page pf (may be NULL) is then used, and given up in any
 * case. When finished or abandoned it calls cr_intake_release(entry). */
void cr_expander_start(struct cr_expander *x, const char *entry, const char *id,
                       struct cr_job *job, int fresh, struct cr_first_page *pf);

/* Expansions under way. */
size_t cr_expander_active(const struct cr_expander *x);

void cr_expander_free(struct cr_expander *x);

#endif
