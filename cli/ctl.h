/* Private to crierctl: the connection and options every command shares, the
 * exit codes, and small helpers for Redis replies, time and terminal output. */
#ifndef CR_CTL_H
#define CR_CTL_H

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cr_types.h"
#include "keys.h"
#include "store.h"

/* Exit codes of every command (docs/crierctl.md). */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,     /* the operation failed, or the job failed / was rejected */
    CTL_EXIT_USAGE = 2,
    CTL_EXIT_UNREACH = 3,  /* cannot reach Redis (connect, timeout, lost connection) */
    CTL_EXIT_NOTFOUND = 4,
    CTL_EXIT_EXISTS = 5,   /* send: a job with this id exists already; not posted */
};

/* Options shared by all commands, as getopt_long codes and table entries; each
 * command's option table starts with CTL_COMMON_LONGOPTS and its short option
 * string with CTL_COMMON_SHORTOPTS, and hands unknown codes to cr_ctl_common_opt. */
enum {
    CTL_OPT_PREFIX = 0x100,
    CTL_OPT_TIMEOUT,
    CTL_OPT_HELP,
    CTL_OPT_USER,
    CTL_OPT_SOCKET,
    CTL_OPT_SENTINEL,
    CTL_OPT_MASTER,
    CTL_OPT_DB_CONFIG,       /* the audit database options: CTL_DB_LONGOPTS */
    CTL_OPT_DB_SQLITE,
    CTL_OPT_DB_PG,
    CTL_OPT__FIRST_FREE
};
#define CTL_COMMON_SHORTOPTS "H:p:a:h"
#define CTL_COMMON_LONGOPTS                                                  \
    {"host", required_argument, NULL, 'H'},                                  \
    {"port", required_argument, NULL, 'p'},                                  \
    {"password", required_argument, NULL, 'a'},                              \
    {"user", required_argument, NULL, CTL_OPT_USER},                         \
    {"socket", required_argument, NULL, CTL_OPT_SOCKET},                     \
    {"prefix", required_argument, NULL, CTL_OPT_PREFIX},                     \
    {"timeout", required_argument, NULL, CTL_OPT_TIMEOUT},                   \
    {"sentinel", required_argument, NULL, CTL_OPT_SENTINEL},                 \
    {"master", required_argument, NULL, CTL_OPT_MASTER},                     \
    {"help", no_argument, NULL, 'h'}

#define CTL_COMMON_HELP                                                      \
    "Common options:\n"                                                      \
    "  -H, --host HOST      Redis host (default 127.0.0.1)\n"                \
    "  -p, --port PORT      Redis port (default 6379)\n"                     \
    "  -a, --password PW    Redis password (AUTH)\n"                         \
    "      --user USER      Redis ACL user (AUTH USER PW)\n"                 \
    "      --socket PATH    Redis unix socket instead of host and port\n"    \
    "      --prefix P       key prefix (default crier:)\n"                   \
    "      --timeout MS     connect and command timeout (default 5000)\n"    \
    "      --sentinel LIST  find the primary through Sentinel: host:port,...\n" \
    "                       (instead of -H/-p; CRIER_REDIS_SENTINEL sets it)\n" \
    "      --master NAME    the name Sentinel monitors it by (default crier)\n" \
    "  CRIER_REDIS_URL=redis://[user:pw@]host:port sets host, port, user and\n" \
    "  password (unix:///path/redis.sock names a socket);\n"                \
    "  the options above override it. CRIER_SENTINEL_PASSWORD is sent with\n" \
    "  AUTH to the Sentinels.\n"

struct ctl {
    char host[256];
    int port;
    char password[256];      /* "" = no AUTH */
    char user[256];          /* "" = AUTH with the password alone */
    char socket[108];        /* unix socket; "" = TCP host:port */
    char where[300];         /* "host:port" or the socket, for messages */
    char prefix[64];
    long timeout_ms;
    char sentinels[1024];    /* "host:port,..." ; "" = connect to host:port */
    char master[256];        /* name of the primary at the Sentinels */
    redisContext *rc;        /* NULL until cr_ctl_connect */
    struct cr_keys keys;     /* filled by cr_ctl_connect from prefix */
    int tty;                 /* stdout is a terminal */
    const char *cmd;         /* the command name, for messages */
};

/* ---- the audit database (crier-audit's), for audit and report ---- */

#define CTL_DB_LONGOPTS                                                      \
    {"config", required_argument, NULL, CTL_OPT_DB_CONFIG},                  \
    {"sqlite", required_argument, NULL, CTL_OPT_DB_SQLITE},                  \
    {"postgresql", required_argument, NULL, CTL_OPT_DB_PG}

#define CTL_DB_HELP                                                          \
    "  --config FILE  the database named in crier-audit's config file\n"     \
    "  --sqlite PATH  an SQLite audit file\n"                                \
    "  --postgresql CONNINFO  a libpq connection string or URI\n"

/* Which audit database the options named; zeroed = none. */
struct ctl_db {
    const char *config;      /* crier-audit's config file, or NULL */
    const char *target;      /* SQLite path or libpq conninfo, or NULL */
    enum cr_store_kind kind; /* of target */
};

/* Takes one of the CTL_DB_LONGOPTS codes into db (arg is borrowed from argv).
 * Returns 1 when code was one of them, else 0. */
int cr_ctl_db_opt(struct ctl_db *db, int code, const char *arg);

/* Nonzero when an audit database option was given. */
int cr_ctl_db_given(const struct ctl_db *db);

/* Opens the audit database db names (exactly one of config and target) and
 * checks that crier-audit created its schema there. Returns CTL_EXIT_OK and
 * *out (the caller closes it with cr_store_close), or prints why (prefixed
 * with ctl->cmd) and returns CTL_EXIT_USAGE (none or two named, a bad config
 * file) or CTL_EXIT_FAIL (cannot open, no schema). */
int cr_ctl_db_open(struct ctl *ctl, const struct ctl_db *db, struct cr_store **out);

/* The small-cell threshold of survey results: survey.min_cell of the
 * crier-audit config db names (--config), else 10. */
long cr_ctl_db_min_cell(const struct ctl_db *db);

/* Set by SIGINT/SIGTERM once cr_ctl_catch_signals ran; loops check it and stop. */
extern volatile sig_atomic_t cr_ctl_stop;

/* Installs the SIGINT/SIGTERM handler that sets cr_ctl_stop (no SA_RESTART, so
 * sleeps end early). */
void cr_ctl_catch_signals(void);

/* Handles one common option (code from getopt_long, arg its argument).
 * Returns 1 when it was a common option, 0 when not, -1 for a bad value
 * (message printed). 'h' is not handled here. */
int cr_ctl_common_opt(struct ctl *ctl, int code, const char *arg);

/* For the default branch of a command's option loop: handles a common option
 * (returns -1: carry on), 'h' (prints help to stdout, returns CTL_EXIT_OK) and
 * anything else (prints help to stderr, returns CTL_EXIT_USAGE). */
int cr_ctl_opt_other(struct ctl *ctl, int code, const char *arg, const char *help);

/* Ends a command's option loop: when usage_ok is 0 (wrong number of
 * arguments, or options that exclude each other) prints help to stderr and
 * returns CTL_EXIT_USAGE; otherwise connects and returns cr_ctl_connect's
 * result (0 when connected). */
int cr_ctl_begin(struct ctl *ctl, int usage_ok, const char *help);

/* The whole option handling of a command that takes only the common options
 * and one argument: parses argv, checks that exactly one argument is left and
 * connects. Returns -1 with *arg (pointing into argv) when the command goes
 * on, or the exit code to return (CTL_EXIT_OK after printing help on request,
 * CTL_EXIT_USAGE, CTL_EXIT_UNREACH). */
int cr_ctl_one_arg(struct ctl *ctl, int argc, char **argv, const char *help, const char **arg);

/* Connects to Redis with the connect timeout, sets the command timeout, sends
 * AUTH when a password is set and fills ctl->keys. Returns 0, or prints why
 * and returns CTL_EXIT_UNREACH (cannot connect / AUTH refused / bad prefix). */
int cr_ctl_connect(struct ctl *ctl);

/* Frees the connection (if any). */
void cr_ctl_close(struct ctl *ctl);

/* Runs one command given as argv with lengths (lens NULL = strlen). Returns
 * the reply (caller frees with freeReplyObject) or NULL after printing why;
 * *exit_code is set to CTL_EXIT_UNREACH for a connection problem, or
 * CTL_EXIT_FAIL for an error reply (the reply is then freed and NULL). */
redisReply *cr_ctl_cmdv(struct ctl *ctl, int argc, const char **argv, const size_t *lens,
                        int *exit_code);

/* Called by cr_ctl_scan with each key found; nonzero (a CTL_EXIT_ code)
 * stops the scan, and cr_ctl_scan returns it. */
typedef int (*cr_ctl_key_fn)(void *ud, const char *key);

/* SCANs the keys of Redis type type ("set", "hash") matching pattern and
 * calls fn(ud, key) for each (a key may come twice, as SCAN gives it; the
 * key is only valid during the call). Returns 0, fn's nonzero code, the
 * code of cr_ctl_cmdv, or CTL_EXIT_FAIL for a malformed SCAN reply. */
int cr_ctl_scan(struct ctl *ctl, const char *pattern, const char *type, cr_ctl_key_fn fn,
                void *ud);

/* Appends a command to the pipeline (see cr_ctl_pipe_read). Returns 0, or
 * CTL_EXIT_UNREACH / CTL_EXIT_FAIL after printing why. */
int cr_ctl_pipe_append(struct ctl *ctl, int argc, const char **argv, const size_t *lens);

/* Reads the next pipelined reply; as cr_ctl_cmdv, except that an error reply
 * is returned (type REDIS_REPLY_ERROR) so that the caller can say which item failed. */
redisReply *cr_ctl_pipe_read(struct ctl *ctl, int *exit_code);

/* Looks up field in a flat field/value array reply (HGETALL, stream entry
 * fields, XINFO); returns the value as a C string or NULL when absent. */
const char *cr_ctl_field(const redisReply *arr, const char *field);

/* As cr_ctl_field, parsed as a decimal integer; def when absent or not a number. */
long long cr_ctl_field_ll(const redisReply *arr, const char *field, long long def);

/* Parses s as a decimal integer in [min, max] into *out. Returns 0 or CR_EINVAL. */
int cr_ctl_parse_ll(const char *s, long long min, long long max, long long *out);

/* Unix time in milliseconds (wall clock), and a monotonic clock in ms. */
int64_t cr_ctl_now_ms(void);
int64_t cr_ctl_mono_ms(void);

/* Sleeps ms milliseconds or until a signal sets cr_ctl_stop. */
void cr_ctl_sleep_ms(long ms);

/* Formats unix ms as local "YYYY-MM-DD HH:MM:SS" (with_date) or "HH:MM:SS.mmm". */
void cr_ctl_fmt_time(int64_t ms, int with_date, char *out, size_t outlen);

/* Formats unix ms as UTC "YYYY-MM-DDTHH:MM:SSZ" ("-" when ms <= 0). */
void cr_ctl_fmt_utc(int64_t ms, char *out, size_t outlen);

/* Formats a duration in ms as "850ms", "12.3s", "4m05s", "2h03m". */
void cr_ctl_fmt_duration(int64_t ms, char *out, size_t outlen);

/* Writes "[####....]" with width cells (fewer if out is short) for fraction f
 * (clamped to 0..1) into out as a C string. */
void cr_ctl_bar(char *out, size_t outlen, double f, int width);

/* FNV-1a 64-bit hash of the C string s, for the in-memory hash tables of
 * import (distinct segments) and report (subscriber index). */
uint64_t cr_ctl_hash_str(const char *s);

/* Millisecond part of a stream entry id ("1700000000000-3"); 0 when malformed. */
int64_t cr_ctl_entry_ms(const char *id);

/* ---- the state of one job, read from crier:job:<id> ---- */

struct ctl_job {
    char state[24];
    char priority[16];
    long long targeted;
    long long messages;      /* -1 until the job completed */
    long long batches, batches_done;
    int expanded;
    long long created_ms, started_ms, completed_ms;
    long long send_at_ms;    /* when a scheduled job is due; 0 = not scheduled */
    long long st[CR_ST__COUNT];                /* per status */
    long long ch[CR_CH__COUNT][CR_ST__COUNT];  /* per channel and status */
    char error[256];                           /* why a failed job failed ("" none) */
    int confirm;                               /* the job asks for confirmations */
    long long confirmed;                       /* residents who confirmed */
    long long confirmed_ch[CR_CH__COUNT];      /* ... by the channel of the message */
    char esc[64];                              /* escalation steps as kept ("" none) */
    long long esc_step;                        /* the last step run */
    long long step_ms[4];                      /* when step n (1..3) ran, 0 not yet */
    /* time to delivery per step (0 = the job's own channels): count, sum of
     * ms, and a histogram over CTL_TTD_BOUNDS (the last bucket: beyond) */
    long long ttd_n[4];
    long long ttd_ms[4];
    long long ttd_le[4][12];
};

/* The histogram bounds of time to delivery, in seconds, as crierd keeps them
 * (escalate.h CR_TTD_LUA). */
#define CTL_TTD_NBOUNDS 11
extern const int cr_ctl_ttd_bounds[CTL_TTD_NBOUNDS];

/* Step k's time to delivery: the mean in seconds (-1 when nothing was
 * delivered) and the 50th and 95th percentiles as the upper bound of the
 * histogram bucket that holds them (seconds; -1 none, 0 beyond the last bound). */
void cr_ctl_ttd(const struct ctl_job *job, int k, double *mean_s, long *p50, long *p95);

struct cr_buf;

/* One escalation step of a job, read from its hash (cli/steps.c). */
struct ctl_step {
    long after_s;
    unsigned channels;  /* CR_CH_BIT set */
    int confirmed;      /* unless: confirmed (else delivered) */
};

#define CTL_STEPS_MAX 3

/* Parses job->esc ("300:2:d,900:1:c") into steps; returns how many. */
int cr_ctl_steps(const struct ctl_job *job, struct ctl_step *steps, int max);

/* What step n (1-based) of job did: its messages per status, summed over its
 * channels, and its confirmations. */
void cr_ctl_step_counts(const struct ctl_job *job, const struct ctl_step *s,
                        long long st[CR_ST__COUNT], long long *confirmed);

/* Appends the job's confirmation and escalation lines (none for a job
 * without either) to o. */
void cr_ctl_steps_render(struct cr_buf *o, const struct ctl_job *job);

/* The report's columns for confirmations and steps: the header cells, and a
 * row's cells from its per-channel counts ch and its confirmations (< 0:
 * unknown, an empty cell); the time-to-delivery cells (per job) are filled in
 * the total row only (total nonzero). Nothing for a job without either. */
void cr_ctl_steps_header(const struct ctl_job *job);
void cr_ctl_steps_cells(const struct ctl_job *job, const long long ch[][CR_ST__COUNT],
                        long long confirmed, int total);

/* Residents of segment seg who confirmed job key's message (its
 * :confirmed:segments hash), or -1 when it cannot be read. */
long long cr_ctl_confirmed_in(struct ctl *ctl, const char *jobkey, const char *seg);

/* Writes the key crier:job:<id> (with the configured prefix) into key.
 * Returns 0, or CTL_EXIT_USAGE after printing that id is too long. */
int cr_ctl_job_key(struct ctl *ctl, const char *id, char *key, size_t keylen);

/* Reads the job hash at key (from cr_ctl_job_key) with HGETALL. Returns 0 and
 * *out (an array reply with at least one field; the caller frees it with
 * freeReplyObject), CTL_EXIT_NOTFOUND (no such hash; nothing printed), or
 * CTL_EXIT_UNREACH / CTL_EXIT_FAIL after printing why. */
int cr_ctl_job_hash(struct ctl *ctl, const char *key, redisReply **out);

/* Fills job from an HGETALL reply of crier:job:<id>. */
void cr_ctl_job_from_hash(const redisReply *h, struct ctl_job *job);

/* As cr_ctl_job_from_hash, from n strings field, value, field, value...
 * (a NULL value counts as absent), e.g. a job's row in the audit database. */
void cr_ctl_job_from_fields(size_t n, const char *const *kv, struct ctl_job *job);

/* Reads crier:job:<id>. Returns 0, CTL_EXIT_NOTFOUND (no such hash; nothing
 * printed), or CTL_EXIT_UNREACH / CTL_EXIT_FAIL after printing why. */
int cr_ctl_job_load(struct ctl *ctl, const char *id, struct ctl_job *job);

/* Sum of every status counter: the messages with an outcome so far. */
long long cr_ctl_job_done(const struct ctl_job *job);

/* How far the job is, as the share (0..1) of its residents whose batches are
 * recorded: batches_done / batches once the audience is fully expanded (the
 * number of residents is then fixed, so the share only grows; at most 0.99
 * while messages still wait for a retry), 1 once the job completed. -1 while
 * the audience is still being expanded (or the job is scheduled or not
 * started): the number of residents is not known yet, and a share of the
 * batches cut so far would go backwards as more are cut. */
double cr_ctl_job_progress(const struct ctl_job *job);

/* Nonzero when the job can no longer change: completed, cancelled or expired. */
int cr_ctl_job_finished(const struct ctl_job *job);

/* ---- commands: each takes the arguments after the command name (argv[0] is
 * the command) and returns an exit code from enum ctl_exit ---- */

int cr_ctl_send(struct ctl *ctl, int argc, char **argv);
int cr_ctl_status(struct ctl *ctl, int argc, char **argv);
int cr_ctl_top(struct ctl *ctl, int argc, char **argv);
int cr_ctl_jobs(struct ctl *ctl, int argc, char **argv);
int cr_ctl_cancel(struct ctl *ctl, int argc, char **argv);
int cr_ctl_tail(struct ctl *ctl, int argc, char **argv);
int cr_ctl_import(struct ctl *ctl, int argc, char **argv);
int cr_ctl_report(struct ctl *ctl, int argc, char **argv);
int cr_ctl_audit(struct ctl *ctl, int argc, char **argv);
int cr_ctl_survey(struct ctl *ctl, int argc, char **argv);

/* Follows job id like `status --follow` until it is finished (or a signal);
 * used by `send --wait`. Returns CTL_EXIT_OK when it completed, CTL_EXIT_FAIL
 * when it was cancelled, expired or rejected, or another exit code. entry is
 * the intake stream entry id (for finding a rejection), or NULL. */
int cr_ctl_follow(struct ctl *ctl, const char *id, const char *entry);

#endif
