/* Log lines to stderr, written whole with one write() so that lines from
 * several processes sharing a terminal or journal do not interleave; in text,
 * journald or JSON form, and with repeated events folded per key and window. */
#include "cr_log.h"
#include "cr_error.h"
#include "cr_str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* one whole line, escaping included */
#define MSG_MAX_BYTES 1536  /* the message itself; longer ones are cut */
#define KEY_MAX_BYTES CR_LOG_REPEAT_KEY_MAX

static enum cr_log_level log_level = CR_LOG_INFO;
static enum cr_log_format log_format = CR_LOG_TEXT;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int level_priority[] = {3, 4, 6, 7}; /* syslog: err, warning, info, debug */

static char log_tag[24];     /* "[w1] " for text */
static char log_tag_raw[17]; /* "w1" for JSON */

/* What a summary line adds to the message it repeats. */
struct repeat_info {
    unsigned long count;
    long window_s;
    const char *key;
};

/* One key being followed: its window, and the events counted and not written. */
struct repeat_slot {
    int used;
    enum cr_log_level level; /* of the last event counted */
    int64_t start_ms;
    unsigned long count;
    char key[KEY_MAX_BYTES];
    char last[MSG_MAX_BYTES];
};

static struct repeat_slot slots[CR_LOG_REPEAT_KEYS];
static int64_t repeat_window_ms = 10000;
static int64_t (*clock_fn)(void);

void cr_log_set_tag(const char *tag)
{
    log_tag[0] = '\0';
    log_tag_raw[0] = '\0';
    if (tag != NULL && tag[0] != '\0') {
        snprintf(log_tag, sizeof log_tag, "[%.16s] ", tag);
        snprintf(log_tag_raw, sizeof log_tag_raw, "%.16s", tag);
    }
}

void cr_log_set_level(enum cr_log_level level)
{
    log_level = level;
}

void cr_log_set_format(enum cr_log_format format)
{
    log_format = format;
}

void cr_log_set_fd(int fd)
{
    log_fd = fd;
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

enum cr_log_format cr_log_auto_format(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char tail;

    if (js == NULL || sscanf(js, "%llu:%llu%c", &dev, &ino, &tail) != 2)
        return CR_LOG_TEXT;
    if (fstat(STDERR_FILENO, &st) != 0)
        return CR_LOG_TEXT;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino
               ? CR_LOG_JOURNAL
               : CR_LOG_TEXT;
}

int cr_log_parse_format(const char *name, enum cr_log_format *out)
{
    if (strcmp(name, "text") == 0)
        *out = CR_LOG_TEXT;
    else if (strcmp(name, "journal") == 0)
        *out = CR_LOG_JOURNAL;
    else if (strcmp(name, "json") == 0)
        *out = CR_LOG_JSON;
    else if (strcmp(name, "auto") == 0)
        *out = cr_log_auto_format();
    else
        return CR_EINVAL;
    return 0;
}

int cr_log_enabled(enum cr_log_level level)
{
    return level <= log_level;
}

/* Appends s to line[*n], as the inside of a JSON string, keeping room for
 * reserve bytes after it; a cut never splits an escape or a character.
 * Bytes that are not UTF-8 (a provider's answer quoted in a message) become
 * U+FFFD, so that every line stays valid JSON. */
static void put_json_str(char *line, size_t *n, const char *s, size_t reserve)
{
    static const char hex[] = "0123456789abcdef";
    size_t cap = LINE_MAX_BYTES - reserve;

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[6];
        size_t k = 0;

        if (ch >= 0x80) {
            int len = cr_utf8_seq_len((const unsigned char *)s, 4); /* s ends in a NUL */

            if (len <= 0) {
                memcpy(esc, "\\ufffd", 6);
                k = 6;
            } else {
                if (*n + (size_t)len > cap)
                    return;
                memcpy(line + *n, s, (size_t)len);
                *n += (size_t)len;
                s += len - 1;
                continue;
            }
        } else if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch == '\n') {
            esc[k++] = '\\';
            esc[k++] = 'n';
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            k = 6;
        } else {
            esc[k++] = (char)ch;
        }
        if (*n + k > cap)
            return;
        memcpy(line + *n, esc, k);
        *n += k;
    }
}

/* Appends printf-style text, cut to what fits before the last reserve bytes. */
static void put(char *line, size_t *n, size_t reserve, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *line, size_t *n, size_t reserve, const char *fmt, ...)
{
    size_t cap = LINE_MAX_BYTES - reserve;
    va_list ap;
    int k;

    if (*n >= cap)
        return;
    va_start(ap, fmt);
    k = vsnprintf(line + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (k > 0)
        *n += (size_t)k < cap - *n ? (size_t)k : cap - *n - 1;
}

/* Writes msg as one whole line in the current format; rep adds the count of
 * a summary line. */
static void emit(enum cr_log_level level, const char *msg, const struct repeat_info *rep)
{
    char line[LINE_MAX_BYTES];
    char ts[40];
    struct timespec now;
    struct tm tm;
    size_t n = 0;
    size_t k;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03ldZ", now.tv_nsec / 1000000L);

    if (log_format == CR_LOG_JSON) {
        put(line, &n, 2, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%ld,", ts, level_names[level],
            (long)getpid());
        if (log_tag_raw[0] != '\0') {
            put(line, &n, 2, "\"worker\":\"");
            put_json_str(line, &n, log_tag_raw, 2);
            put(line, &n, 2, "\",");
        }
        put(line, &n, 2, "\"msg\":\"");
        put_json_str(line, &n, msg, KEY_MAX_BYTES * 6 + 80);
        put(line, &n, 2, "\"");
        if (rep != NULL) {
            put(line, &n, 2, ",\"repeated\":%lu,\"window_s\":%ld,\"key\":\"", rep->count,
                rep->window_s);
            put_json_str(line, &n, rep->key, 4);
            put(line, &n, 2, "\"");
        }
        put(line, &n, 1, "}");
    } else {
        if (log_format == CR_LOG_JOURNAL)
            put(line, &n, 1, "<%d>%-5s %s", level_priority[level], level_names[level], log_tag);
        else
            put(line, &n, 1, "%s %-5s %s", ts, level_names[level], log_tag);
        put(line, &n, 64, "%s", msg);
        if (rep != NULL)
            put(line, &n, 1, " (and %lu more like this in the last %ld s)", rep->count,
                rep->window_s);
    }
    line[n++] = '\n';
    if (write(log_fd, line, n) < 0)
        return;
}

void cr_log(enum cr_log_level level, const char *fmt, ...)
{
    char msg[MSG_MAX_BYTES];
    va_list ap;

    if (!cr_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg, NULL);
}

/* ---- repeated events ---------------------------------------------------- */

static int64_t default_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(void)
{
    return clock_fn != NULL ? clock_fn() : default_clock();
}

void cr_log_set_repeat_window(int64_t ms)
{
    repeat_window_ms = ms < 0 ? 0 : ms;
}

void cr_log_set_clock(int64_t (*fn)(void))
{
    clock_fn = fn;
}

/* Writes the summary of slot s's window, if it counted anything, and frees
 * the slot when it did not (a quiet window ends the suppression); a slot
 * that did goes on with a new window from now. Returns 1 when a line was
 * written. */
static int close_window(struct repeat_slot *s, int64_t now, int forget)
{
    struct repeat_info rep;
    int64_t span = now - s->start_ms;

    if (s->count == 0) {
        s->used = 0;
        return 0;
    }
    rep.count = s->count;
    rep.window_s = span < 1000 ? 1 : (long)((span + 500) / 1000);
    rep.key = s->key;
    emit(s->level, s->last, &rep);
    s->count = 0;
    s->start_ms = now;
    if (forget)
        s->used = 0;
    return 1;
}

void cr_log_repeat(enum cr_log_level level, const char *key, const char *fmt, ...)
{
    struct repeat_slot *s = NULL;
    struct repeat_slot *free_slot = NULL;
    char msg[MSG_MAX_BYTES];
    char k[KEY_MAX_BYTES];
    int64_t now;
    va_list ap;
    size_t i;

    if (!cr_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (repeat_window_ms == 0) {
        emit(level, msg, NULL);
        return;
    }
    snprintf(k, sizeof k, "%s", key);
    now = now_ms();
    for (i = 0; i < CR_LOG_REPEAT_KEYS; i++) {
        struct repeat_slot *c = &slots[i];

        if (c->used && now - c->start_ms >= repeat_window_ms)
            close_window(c, now, 0);
        if (c->used && strcmp(c->key, k) == 0)
            s = c;
        else if (!c->used && free_slot == NULL)
            free_slot = c;
    }
    if (s != NULL) {
        /* within the key's window: counted, written with the summary */
        s->count++;
        s->level = level;
        memcpy(s->last, msg, sizeof msg);
        return;
    }
    emit(level, msg, NULL);
    if (free_slot == NULL)
        return; /* every slot busy: this key is not followed */
    free_slot->used = 1;
    free_slot->level = level;
    free_slot->start_ms = now;
    free_slot->count = 0;
    memcpy(free_slot->key, k, sizeof k);
}

int cr_log_repeat_end(const char *key)
{
    char k[KEY_MAX_BYTES];
    size_t i;

    snprintf(k, sizeof k, "%s", key);
    for (i = 0; i < CR_LOG_REPEAT_KEYS; i++) {
        if (slots[i].used && strcmp(slots[i].key, k) == 0)
            return close_window(&slots[i], now_ms(), 1);
    }
    return 0;
}

int cr_log_repeat_flush(int all)
{
    int64_t now = now_ms();
    int written = 0;
    size_t i;

    for (i = 0; i < CR_LOG_REPEAT_KEYS; i++) {
        struct repeat_slot *s = &slots[i];

        if (!s->used)
            continue;
        if (all)
            written += close_window(s, now, 1);
        else if (now - s->start_ms >= repeat_window_ms)
            written += close_window(s, now, 0);
    }
    return written;
}
