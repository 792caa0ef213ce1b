/* Log lines to stderr, written whole with one write() so that lines from
 * several processes sharing a terminal or journal do not interleave. */
#include "cr_log.h"
#include "cr_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum cr_log_level log_level = CR_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static char log_tag[24];

void cr_log_set_tag(const char *tag)
{
    log_tag[0] = '\0';
    if (tag != NULL && tag[0] != '\0')
        snprintf(log_tag, sizeof log_tag, "[%.16s] ", tag);
}

void cr_log_set_level(enum cr_log_level level)
{
    log_level = level;
}

int cr_log_parse_level(const char *name, enum cr_log_level *out)
{
    size_t i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum cr_log_level)i;
            return 0;
        }
    }
    return CR_EINVAL;
}

int cr_log_enabled(enum cr_log_level level)
{
    return level <= log_level;
}

void cr_log(enum cr_log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int k;
    va_list ap;

    if (!cr_log_enabled(level))
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s %s", ts.tv_nsec / 1000000L,
                 level_names[level], log_tag);
    if (k > 0)
        n += (size_t)k;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}
