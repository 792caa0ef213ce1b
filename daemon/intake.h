/* Intake: a job entry from crier:jobs is validated; a bad one goes to
 * crier:jobs:dead with its reason, a good one is stored as crier:job:<id>
 * (once per id) and handed to the expander. The entry is acknowledged only
 * once the outcome is written (for good jobs: once the audience is expanded). */
#ifndef CR_INTAKE_H
#define CR_INTAKE_H

#include <stddef.h>

#include "auth.h"
#include "daemon.h"

int cr_intake_init(struct cr_daemon *d, struct cr_intake **out);

/* Whether another job entry may be taken now. */
int cr_intake_has_room(const struct cr_intake *in);

/* Whether entry is being handled here already. */
int cr_intake_has(const struct cr_intake *in, const char *entry);

/* Takes entry; doc is the "job" field (NULL when missing), len its length;
 * sg the entry's "key", "sig" and "ts" fields (each NULL when missing). A
 * signed entry is verified and held to its key's scopes; an unsigned one is
 * refused when intake.require_signed is on. */
void cr_intake_take(struct cr_intake *in, const char *entry, const char *doc, size_t len,
                    const struct cr_signed *sg);

/* Takes a "resume" entry: scheduled job id fell due (schedule.c); its
 * document is read back from crier:job:<id>. */
void cr_intake_resume(struct cr_intake *in, const char *entry, const char *id);

/* The expander finished with entry (acknowledged or handed back). */
void cr_intake_release(struct cr_intake *in, const char *entry);

/* A step of entry's job (accept, expansion) failed with a Redis error for
 * reason (not a lost connection, which is simply retried). The entry is
 * released and read again after a doubling wait; after CR_STRIKES_MAX
 * failures with the same reason in a row (or at once when permanent), the
 * job is marked failed with the reason and the entry acknowledged, or, when
 * the job has no record yet, the entry goes to crier:jobs:dead with code
 * "step_failed". Strings are copied. */
void cr_intake_failed(struct cr_intake *in, const char *entry, const char *id, const char *reason,
                      int permanent);

/* Copies up to max entry ids held here into out (valid until the loop runs
 * again); returns how many. */
size_t cr_intake_entries(const struct cr_intake *in, const char **out, size_t max);

/* Entries held now. */
size_t cr_intake_active(const struct cr_intake *in);

void cr_intake_free(struct cr_intake *in);

#endif
