/* A job as the fan-out needs it: the parsed document and its templates
 * compiled once per language, shared by all of the job's batches in this
 * process (reference counted, a small cache). */
#ifndef CR_JOBCTX_H
#define CR_JOBCTX_H

#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "keys.h"
#include "template.h"

enum cr_part { CR_PART_SUBJECT, CR_PART_TEXT, CR_PART_HTML, CR_PART_SMS, CR_PART_PUSH_TITLE,
               CR_PART_PUSH_BODY, CR_PART_WA_VARS, CR_PART_WA_TEXT, CR_PART__COUNT };

struct cr_jobctx {
    char id[CR_JOB_ID_MAX + 1];
    char key[CR_KEY_MAX];     /* crier:job:<id> */
    char ledger[CR_KEY_MAX + 8]; /* crier:job:<id>:ledger */
    struct cr_job job;
    struct cr_tpl **tpl;      /* (1 + ntranslations) x CR_PART__COUNT, NULL where absent */
    int refs;
    int cancelled;
    struct cr_jobctx *next;
};

/* Parses doc into a new context with refs = 1. Returns 0, or CR_EINVAL with
 * err filled (a stored document that no longer validates), or CR_ENOMEM. */
int cr_jobctx_create(const struct cr_keys *keys, const char *id, const char *doc, size_t len,
                     const struct cr_job_limits *lim, struct cr_jobctx **out,
                     struct cr_job_error *err);

/* The row of templates a message of channel ch to a subscriber of language
 * lang is rendered from: cr_job_pick's rule (one language per message). */
size_t cr_jobctx_row(const struct cr_jobctx *jc, const char *lang, enum cr_channel ch);

/* The compiled template for part in row (0: the default language, 1 + t:
 * translation t), or NULL when that row has no such part: no part is ever
 * taken from another row. */
const struct cr_tpl *cr_jobctx_tpl(const struct cr_jobctx *jc, size_t row, enum cr_part part);

void cr_jobctx_ref(struct cr_jobctx *jc);
/* Drops a reference; frees at zero. */
void cr_jobctx_unref(struct cr_jobctx *jc);

#endif
