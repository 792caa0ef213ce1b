/* crier-audit's configuration: one JSON file (comments allowed) whose secrets
 * are written "$env:NAME" or "$file:/path", as in crierd's. */
#ifndef CR_AUDIT_CONF_H
#define CR_AUDIT_CONF_H

#include "store.h"

struct cr_audit_config {
    char *redis_host;           /* default "127.0.0.1" */
    long redis_port;            /* default 6379 */
    char *redis_password;       /* NULL = no AUTH */
    char *prefix;               /* default "crier:" */
    char *group;                /* consumer group on the three streams, default "audit" */
    char *consumer;             /* this process's name in it, default "audit-1" */
    enum cr_store_kind db_kind; /* database.type, default sqlite */
    char *db_target;            /* database.path (sqlite) or database.conninfo */
    long batch;                 /* entries per stream per transaction, default 2000 */
    long block_ms;              /* XREADGROUP BLOCK, default 1000 */
    long retention_days;        /* 0 = keep forever (the default) */
    long retention_chunk;       /* rows deleted per table per transaction, default 5000 */
    long retention_interval_s;  /* between retention passes, default 3600 */
    long retry_max_ms;          /* longest wait between attempts at a failed write, 5000 */
    int lookup_lang;            /* read each resident's lang: messages.lang, default 1 */
    char *log_level;            /* default "info" */
    long survey_min_cell;       /* survey.min_cell: the small-cell threshold of
                                 * crierctl survey reading this database, 10 */
};

/* Reads and checks the file at path into cfg (zeroed by the caller). Returns 0,
 * or CR_ECONFIG with the key path and what is wrong in err. */
int cr_audit_config_load(const char *path, struct cr_audit_config *cfg, char *err, size_t errlen);

/* Frees the strings cfg owns, wiping secrets first. */
void cr_audit_config_release(struct cr_audit_config *cfg);

#endif
