/* The two store back ends (see store.h): SQLite through its C API with the
 * $n placeholders bound by name, PostgreSQL through libpq's PQexecParams. */
#include "store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_str.h"

#define ERRMSG_MAX 512
#define BUSY_TIMEOUT_MS 10000

struct cr_store {
    enum cr_store_kind kind;
    sqlite3 *db;
    PGconn *pg;
    long changes;
    char err[ERRMSG_MAX];
};

static int lite_fail(struct cr_store *s)
{
    cr_strlcpy(s->err, sqlite3_errmsg(s->db), sizeof(s->err));
    return CR_EIO;
}

static int pg_fail(struct cr_store *s, const PGresult *res)
{
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    size_t n;

    if (m == NULL || *m == '\0')
        m = PQerrorMessage(s->pg);
    cr_strlcpy(s->err, m, sizeof(s->err));
    for (n = 0; s->err[n]; n++)
        if (s->err[n] == '\n' || s->err[n] == '\t')
            s->err[n] = ' '; /* one log line */
    n = strlen(s->err);
    while (n > 0 && (s->err[n - 1] == '\n' || s->err[n - 1] == ' '))
        s->err[--n] = '\0';
    return CR_EIO;
}

int cr_store_parse_kind(const char *name, enum cr_store_kind *out)
{
    if (strcmp(name, "sqlite") == 0) {
        *out = CR_STORE_SQLITE;
        return 0;
    }
    if (strcmp(name, "postgresql") == 0) {
        *out = CR_STORE_POSTGRESQL;
        return 0;
    }
    return CR_EINVAL;
}

static int open_sqlite(struct cr_store *s, const char *path)
{
    static const char pragmas[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                                  "PRAGMA foreign_keys=OFF;";
    char *msg = NULL;

    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        return lite_fail(s);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
        cr_strlcpy(s->err, msg ? msg : "PRAGMA failed", sizeof(s->err));
        sqlite3_free(msg);
        return CR_EIO;
    }
    return 0;
}

/* libpq's notices ("terminating connection due to ...") would go to stderr
 * unformatted; the failure they announce is logged where a call fails. */
static void no_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int open_pg(struct cr_store *s, const char *conninfo)
{
    PGresult *res;
    int rc;

    s->pg = PQconnectdb(conninfo);
    if (s->pg == NULL || PQstatus(s->pg) != CONNECTION_OK)
        return pg_fail(s, NULL);
    PQsetNoticeProcessor(s->pg, no_notice, NULL);
    /* notices (e.g. "relation already exists, skipping") are not errors */
    res = PQexec(s->pg, "SET client_min_messages = warning");
    rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_fail(s, res);
    PQclear(res);
    return rc;
}

int cr_store_open(enum cr_store_kind kind, const char *target, struct cr_store **out, char *err,
                  size_t errlen)
{
    struct cr_store *s = calloc(1, sizeof(*s));
    int rc = CR_ENOMEM;

    *out = NULL;
    if (s == NULL) {
        cr_strlcpy(err, "out of memory", errlen);
        goto out;
    }
    s->kind = kind;
    rc = kind == CR_STORE_SQLITE ? open_sqlite(s, target) : open_pg(s, target);
    if (rc != 0) {
        cr_strlcpy(err, s->err, errlen);
        goto out;
    }
    *out = s;
    s = NULL;
out:
    cr_store_close(s);
    return rc;
}

void cr_store_close(struct cr_store *s)
{
    if (s == NULL)
        return;
    if (s->db)
        sqlite3_close_v2(s->db);
    if (s->pg)
        PQfinish(s->pg);
    free(s);
}

/* SQLite keeps named and numbered parameters ("$1", "?1") in a list it
 * searches for each one, which makes a statement of thousands of values
 * quadratic to prepare; anonymous "?" parameters are not searched. So when
 * the placeholders run $1, $2, $3... in order (every multi-row insert does)
 * they become "?", else "?N". The SQL crier writes has no '$' in literals. */
static char *lite_numbered(const char *sql)
{
    char *out = strdup(sql);
    const char *p;
    char *w;
    long next = 1;
    int in_order = 1;

    if (out == NULL)
        return NULL;
    for (p = sql; *p; p++)
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            char *end;

            if (strtol(p + 1, &end, 10) != next++)
                in_order = 0;
            p = end - 1;
        }
    for (p = sql, w = out; *p; p++) {
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            *w++ = '?';
            if (in_order) {
                while (p[1] >= '0' && p[1] <= '9')
                    p++;
            }
            continue;
        }
        *w++ = *p;
    }
    *w = '\0';
    return out;
}

static int lite_prepare(struct cr_store *s, const char *sql, int n, const char *const *params,
                        sqlite3_stmt **out)
{
    sqlite3_stmt *st = NULL;
    char *text = lite_numbered(sql);
    int count;
    int ix;
    int rc;

    *out = NULL;
    if (text == NULL) {
        cr_strlcpy(s->err, "out of memory", sizeof(s->err));
        return CR_ENOMEM;
    }
    rc = sqlite3_prepare_v2(s->db, text, -1, &st, NULL);
    free(text);
    if (rc != SQLITE_OK)
        return lite_fail(s);
    count = sqlite3_bind_parameter_count(st);
    if (count > n) {
        snprintf(s->err, sizeof(s->err), "statement wants %d parameters, %d given", count, n);
        sqlite3_finalize(st);
        return CR_EIO;
    }
    for (ix = 1; ix <= count; ix++) {
        rc = params[ix - 1] == NULL ? sqlite3_bind_null(st, ix)
                                    : sqlite3_bind_text(st, ix, params[ix - 1], -1, SQLITE_STATIC);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(st);
            return lite_fail(s);
        }
    }
    *out = st;
    return 0;
}

static int lite_run(struct cr_store *s, const char *sql, int n, const char *const *params,
                    cr_store_row_cb cb, void *ud)
{
    sqlite3_stmt *st;
    const char *vals[64];
    int rc;

    rc = lite_prepare(s, sql, n, params, &st);
    if (rc != 0)
        return rc;
    for (;;) {
        int step = sqlite3_step(st);
        int nc;
        int i;

        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = lite_fail(s);
            break;
        }
        if (cb == NULL)
            continue;
        nc = sqlite3_column_count(st);
        if (nc > 64)
            nc = 64;
        for (i = 0; i < nc; i++)
            vals[i] = (const char *)sqlite3_column_text(st, i);
        if (cb(ud, nc, vals))
            break;
    }
    s->changes = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    return rc;
}

static int pg_run(struct cr_store *s, const char *sql, int n, const char *const *params,
                  cr_store_row_cb cb, void *ud)
{
    PGresult *res = PQexecParams(s->pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    const char *vals[64];
    int rc = 0;

    if (st == PGRES_COMMAND_OK) {
        s->changes = strtol(PQcmdTuples(res), NULL, 10);
    } else if (st == PGRES_TUPLES_OK) {
        int rows = PQntuples(res);
        int nc = PQnfields(res);
        int r;

        if (nc > 64)
            nc = 64;
        s->changes = 0;
        for (r = 0; r < rows && cb; r++) {
            int i;

            for (i = 0; i < nc; i++)
                vals[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
            if (cb(ud, nc, vals))
                break;
        }
    } else {
        rc = pg_fail(s, res);
    }
    PQclear(res);
    return rc;
}

int cr_store_exec(struct cr_store *s, const char *sql, int n, const char *const *params)
{
    return s->kind == CR_STORE_SQLITE ? lite_run(s, sql, n, params, NULL, NULL)
                                      : pg_run(s, sql, n, params, NULL, NULL);
}

int cr_store_query(struct cr_store *s, const char *sql, int n, const char *const *params,
                   cr_store_row_cb cb, void *ud)
{
    return s->kind == CR_STORE_SQLITE ? lite_run(s, sql, n, params, cb, ud)
                                      : pg_run(s, sql, n, params, cb, ud);
}

long cr_store_changes(const struct cr_store *s)
{
    return s->changes;
}

const char *cr_store_errmsg(const struct cr_store *s)
{
    return s->err;
}

int cr_store_reconnect(struct cr_store *s)
{
    if (s->kind != CR_STORE_POSTGRESQL || PQstatus(s->pg) == CONNECTION_OK)
        return 0;
    PQreset(s->pg);
    if (PQstatus(s->pg) != CONNECTION_OK)
        return pg_fail(s, NULL);
    PQclear(PQexec(s->pg, "SET client_min_messages = warning"));
    return 0;
}

enum cr_store_kind cr_store_kind(const struct cr_store *s)
{
    return s->kind;
}

const char *cr_store_rowid(const struct cr_store *s)
{
    return s->kind == CR_STORE_SQLITE ? "rowid" : "ctid";
}
