/* One line per event to stderr: time, level, then what happened, to what, and
 * what follows from it (see STYLE.md); as plain text, journald's format or
 * JSON, with events that repeat by the hundred folded into one line a window. */
#ifndef CR_LOG_H
#define CR_LOG_H

#include <stdint.h>

enum cr_log_level { CR_LOG_ERROR, CR_LOG_WARN, CR_LOG_INFO, CR_LOG_DEBUG };

/* How lines are written:
 *   TEXT     "2026-11-22T09:00:00.123Z info  [w1] message"
 *   JOURNAL  "<6>info [w1] message": the syslog priority (<3> error, <4> warn,
 *            <6> info, <7> debug) journald reads from a service's stderr; no
 *            time (journald stamps each line)
 *   JSON     {"ts":"...","level":"info","pid":1234,"worker":"w1","msg":"..."},
 *            plus "repeated", "window_s" and "key" on a summary line */
enum cr_log_format { CR_LOG_TEXT, CR_LOG_JOURNAL, CR_LOG_JSON };

/* Sets the most verbose level written; the default is CR_LOG_INFO. */
void cr_log_set_level(enum cr_log_level level);

/* Parses "error", "warn", "info" or "debug"; returns 0 or CR_EINVAL. */
int cr_log_parse_level(const char *name, enum cr_log_level *out);

/* Parses "text", "journal", "json" or "auto" (cr_log_auto_format()); returns
 * 0 or CR_EINVAL. */
int cr_log_parse_format(const char *name, enum cr_log_format *out);

/* JOURNAL when stderr is the stream systemd connected to the journal
 * ($JOURNAL_STREAM names its device and inode), else TEXT. */
enum cr_log_format cr_log_auto_format(void);

/* Sets the line format; the default is CR_LOG_TEXT. */
void cr_log_set_format(enum cr_log_format format);

/* Where lines go: a file descriptor, default 2 (stderr). For tests. */
void cr_log_set_fd(int fd);

/* Names this process in every line ("w1" gives "[w1] " after the level, or
 * "worker":"w1" in JSON), for a supervisor's workers sharing one stderr; NULL
 * or "" for none. Copied. */
void cr_log_set_tag(const char *tag);

/* Returns nonzero when lines at level would be written. */
int cr_log_enabled(enum cr_log_level level);

/* Writes one line at level; fmt must be a literal. */
void cr_log(enum cr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- repeated events ----
 * An event that can happen once per message (a failover, a retry, a refused
 * address) is logged with a key naming its kind and subject, e.g.
 * "failover twilio>gateway job-17 http_503". The first event of a key is
 * written at once; further ones within the window are only counted, and when
 * the window ends one line is written: the last of them followed by
 * " (and N more like this in the last S s)". While a key keeps repeating it
 * gives one such line per window; a window without any ends its suppression.
 * At most CR_LOG_REPEAT_KEYS keys are followed at once: an event of a new key
 * when all are busy is written as it is (nothing is ever dropped unsaid).
 * Keys are compared on their first CR_LOG_REPEAT_KEY_MAX - 1 bytes. */
#define CR_LOG_REPEAT_KEYS 64
#define CR_LOG_REPEAT_KEY_MAX 128

/* Sets the window in milliseconds (default 10000); 0 writes every event. */
void cr_log_set_repeat_window(int64_t ms);

/* Sets the monotonic clock (milliseconds) windows are measured with; NULL
 * restores the default (CLOCK_MONOTONIC). For tests. */
void cr_log_set_clock(int64_t (*now_ms)(void));

/* Logs one event of key (see above); fmt must be a literal. */
void cr_log_repeat(enum cr_log_level level, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends key's suppression (its run of events is over, e.g. the connection it
 * names is closed): writes the summary of what its window counted, if
 * anything, and forgets the key, so that its next event is written at once.
 * Returns 1 when a summary line was written. */
int cr_log_repeat_end(const char *key);

/* Writes the summary line of every window that has ended (all: of every
 * window, ended or not, and forgets every key: at exit). Call it about once
 * a second so that a summary is not held back until the key's next event;
 * returns how many summary lines were written. */
int cr_log_repeat_flush(int all);

#define cr_error(...) cr_log(CR_LOG_ERROR, __VA_ARGS__)
#define cr_warn(...) cr_log(CR_LOG_WARN, __VA_ARGS__)
#define cr_info(...) cr_log(CR_LOG_INFO, __VA_ARGS__)
#define cr_debug(...)                                                                              \
    do {                                                                                           \
        if (cr_log_enabled(CR_LOG_DEBUG))                                                          \
            cr_log(CR_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
