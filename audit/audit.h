/* What crier-audit carries from Redis to SQL: stream entries copied out of
 * hiredis replies, grouped into one batch per transaction, and the schema and
 * writer that store a batch idempotently (see schema.c). */
#ifndef CR_AUDIT_H
#define CR_AUDIT_H

#include <stddef.h>

#include "store.h"

/* The three streams crier-audit reads, in the order of a batch. */
enum cr_audit_stream { CR_AS_RECEIPTS, CR_AS_REPLIES, CR_AS_EVENTS, CR_AS__COUNT };

/* One stream entry: its id and field/value pairs, all owned. */
struct cr_audit_entry {
    char *id;
    size_t nkv; /* strings in kv: twice the number of fields */
    char **kv;
    char *lang; /* receipts: the resident's language when looked up ("" when the
                 * resident has none), else NULL (not looked up) */
    char *segs; /* receipts: the job's audience segments the resident was a
                 * member of when stored, each ended by '\n' ("" none); NULL
                 * when not looked up (a webhook receipt, the job gone) */
};

/* One job's hash as read from Redis when one of its events is stored. */
struct cr_audit_job {
    char *id;
    size_t nkv;
    char **kv; /* NULL when the hash is gone (expired) */
};

/* What one transaction stores; entries of each stream in stream order. */
struct cr_audit_batch {
    struct cr_audit_entry *e[CR_AS__COUNT];
    size_t n[CR_AS__COUNT];
    size_t cap[CR_AS__COUNT];
    struct cr_audit_job *jobs;
    size_t njobs;
};

/* Returns the value of field name in e, or NULL. */
const char *cr_audit_field(const struct cr_audit_entry *e, const char *name);

/* Frees everything the batch holds and leaves it empty. */
void cr_audit_batch_clear(struct cr_audit_batch *b);

/* The schema version this build creates and reads. */
#define CR_AUDIT_SCHEMA_VERSION 4

/* Creates the tables or migrates them to CR_AUDIT_SCHEMA_VERSION, in one
 * transaction. Returns 0, CR_EIO (database error, in cr_store_errmsg) or
 * CR_EUNSUPPORTED (a database of a newer version than this build). */
int cr_audit_migrate(struct cr_store *s);

/* Inserts nrows rows of ncols values each (row-major, NULL = SQL NULL),
 * as many per statement as the parameter limits allow: head is "INSERT INTO
 * t (cols) VALUES ", tail the ON CONFLICT clause. A key may appear once in
 * all the rows when tail updates. Returns 0 or CR_EIO. */
int cr_audit_insert_rows(struct cr_store *s, const char *head, const char *tail, int ncols,
                         const char **vals, size_t nrows);

/* Version 4's statements (waves.c): the answers of multi-question survey
 * waves. */
extern const char *const cr_audit_schema_v4[];

/* Stores the batch's survey-wave answers (replies of type survey with a
 * wave) inside the caller's transaction: per resident and question the
 * newest entry's step, the newest free text (NULL once withdrawn) and the
 * job of the first answer of the wave. Returns 0 or CR_EIO/CR_ENOMEM. */
int cr_audit_store_waves(struct cr_store *s, const struct cr_audit_batch *b);

/* Reads the schema version into *out (0 when there is no schema). */
int cr_audit_schema_version(struct cr_store *s, int *out);

/* Stores the batch in one transaction, idempotently (each outcome, reply,
 * answer and event has a unique key: storing a batch twice changes nothing).
 * Returns 0 once committed, or CR_EIO (rolled back; nothing of it stored). */
int cr_audit_store(struct cr_store *s, const struct cr_audit_batch *b);

/* Deletes up to chunk rows older than cutoff_ms from each table, in one
 * transaction. Returns 0 and the rows deleted in *deleted, or CR_EIO. */
int cr_audit_retain(struct cr_store *s, long long cutoff_ms, long chunk, long *deleted);

#endif
