/* crierctl report --by (see report_by.c). */
#ifndef CR_REPORT_BY_H
#define CR_REPORT_BY_H

#include <stddef.h>

struct ctl;
struct cr_store;

/* Appends to segs[*nsegs..max) the names of the segment sets matching each
 * pattern (a glob of segment names: "demo:age:*"), sorted per pattern; the
 * names are the caller's to free. Returns 0 or a CTL_EXIT_ code (printed). */
int cr_ctl_report_by_segments(struct ctl *ctl, const char *const *patterns, size_t n, char **segs,
                              size_t max, size_t *nsegs);

/* The ids of the residents who responded to job (document doc): replied by
 * SMS, answered its single-question survey, or answered its wave of a
 * multi-question survey through it. A resident may appear more than once.
 * *ids (and each id) are the caller's to free. Returns 0 or a CTL_EXIT_ code. */
int cr_ctl_report_responders(struct ctl *ctl, const char *job, const char *doc, char ***ids,
                             size_t *n);

/* The same from the audit database (schema version 3): replies of type
 * reply and single-question answers stored for job, and the residents whose
 * first answer of a wave came through job. Returns 0 or a CTL_EXIT_ code
 * (printed). */
int cr_ctl_report_responders_db(struct cr_store *db, const char *job, char ***ids, size_t *n);

#endif
