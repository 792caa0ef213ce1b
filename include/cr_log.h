/* One line per event to stderr: time, level, then what happened, to what, and
 * what follows from it (see STYLE.md). */
#ifndef CR_LOG_H
#define CR_LOG_H

enum cr_log_level { CR_LOG_ERROR, CR_LOG_WARN, CR_LOG_INFO, CR_LOG_DEBUG };

/* Sets the most verbose level written; the default is CR_LOG_INFO. */
void cr_log_set_level(enum cr_log_level level);

/* Parses "error", "warn", "info" or "debug"; returns 0 or CR_EINVAL. */
int cr_log_parse_level(const char *name, enum cr_log_level *out);

/* Names this process in every line ("w1" gives "[w1] " after the level), for
 * a supervisor's workers sharing one stderr; NULL or "" for none. Copied. */
void cr_log_set_tag(const char *tag);

/* Returns nonzero when lines at level would be written. */
int cr_log_enabled(enum cr_log_level level);

/* Writes one line at level; fmt must be a literal. */
void cr_log(enum cr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define cr_error(...) cr_log(CR_LOG_ERROR, __VA_ARGS__)
#define cr_warn(...) cr_log(CR_LOG_WARN, __VA_ARGS__)
#define cr_info(...) cr_log(CR_LOG_INFO, __VA_ARGS__)
#define cr_debug(...)                                                        \
    do {                                                                     \
        if (cr_log_enabled(CR_LOG_DEBUG))                                    \
            cr_log(CR_LOG_DEBUG, __VA_ARGS__);                               \
    } while (0)

#endif
