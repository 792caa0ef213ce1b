/* The SQL database crier-audit writes into and crierctl audit reads from:
 * SQLite (one file) or PostgreSQL, behind one small interface whose SQL uses
 * $1..$n placeholders and text parameters on both. A store is used by one
 * thread at a time; every call may block (crier-audit calls it from the libuv
 * thread pool, never from the loop). */
#ifndef CR_STORE_H
#define CR_STORE_H

#include <stddef.h>

enum cr_store_kind { CR_STORE_SQLITE, CR_STORE_POSTGRESQL };

struct cr_store;

/* One result row: ncols values (NULL for SQL NULL), valid during the call. */
typedef int (*cr_store_row_cb)(void *ud, int ncols, const char *const *vals);

/* Opens the database: target is a file path (SQLite, created when missing,
 * switched to WAL) or a libpq conninfo/URI. Returns 0 and *out, or CR_EIO with
 * the reason in err. */
int cr_store_open(enum cr_store_kind kind, const char *target, struct cr_store **out, char *err,
                  size_t errlen);

/* Closes and frees s (NULL is fine). */
void cr_store_close(struct cr_store *s);

/* Runs one statement with n text parameters (a NULL entry is SQL NULL).
 * Returns 0 or CR_EIO (cr_store_errmsg says why). */
int cr_store_exec(struct cr_store *s, const char *sql, int n, const char *const *params);

/* Runs a query and calls cb for each row; cb returning nonzero stops early.
 * Returns 0 or CR_EIO. */
int cr_store_query(struct cr_store *s, const char *sql, int n, const char *const *params,
                   cr_store_row_cb cb, void *ud);

/* Rows changed by the last cr_store_exec. */
long cr_store_changes(const struct cr_store *s);

/* The last error, in the database's words ("" when none). */
const char *cr_store_errmsg(const struct cr_store *s);

/* Re-opens a PostgreSQL connection that was lost (a restarted server);
 * nothing for SQLite. Returns 0 or CR_EIO. */
int cr_store_reconnect(struct cr_store *s);

/* The store's kind, and the name of its physical row id ("rowid", "ctid")
 * for deleting in bounded chunks. */
enum cr_store_kind cr_store_kind(const struct cr_store *s);
const char *cr_store_rowid(const struct cr_store *s);

/* Parses "sqlite" or "postgresql" into *out. Returns 0 or CR_EINVAL. */
int cr_store_parse_kind(const char *name, enum cr_store_kind *out);

#endif
