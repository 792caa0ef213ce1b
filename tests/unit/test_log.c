/* The log: repeated events folded per key and window (first written, the rest
 * counted into one summary line per window), the journald and JSON formats. */
#include "cr_log.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

/* Sends the log to a fresh temporary file with a hand-stepped clock. */
static FILE *capture(enum cr_log_format format, int64_t window_ms)
{
    FILE *f = tmpfile();

    if (f == NULL)
        return NULL;
    cr_log_repeat_flush(1); /* forget keys of an earlier test */
    cr_log_set_fd(fileno(f));
    cr_log_set_format(format);
    cr_log_set_level(CR_LOG_INFO);
    cr_log_set_repeat_window(window_ms);
    cr_log_set_clock(fake_clock);
    fake_now = 1000000;
    return f;
}

/* Everything written since capture(), as one string (static), and restores
 * the defaults. */
static const char *captured(FILE *f)
{
    static char buf[16384];
    size_t n;

    fflush(f);
    rewind(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

static void restore(FILE *f)
{
    cr_log_repeat_flush(1);
    cr_log_set_fd(STDERR_FILENO);
    cr_log_set_format(CR_LOG_TEXT);
    cr_log_set_repeat_window(10000);
    cr_log_set_clock(NULL);
    fclose(f);
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TEST(log_repeat_first_written_rest_counted_into_one_summary)
{
    FILE *f = capture(CR_LOG_TEXT, 10000);
    const char *out;
    int i;

    ASSERT(f != NULL);
    for (i = 0; i < 300; i++) {
        cr_log_repeat(CR_LOG_INFO, "failover a job-1 http_503", "failover of message %d", i);
        fake_now += 10; /* 300 events in 3 s: one window */
    }
    cr_log_repeat(CR_LOG_INFO, "other key", "something else");
    ASSERT_INT_EQ(cr_log_repeat_flush(0), 0); /* the window is not over */
    fake_now += 7000;
    ASSERT_INT_EQ(cr_log_repeat_flush(0), 1);
    out = captured(f);
    ASSERT_INT_EQ(count_lines(out), 3);
    ASSERT_STR_CONTAINS(out, "info  failover of message 0\n");
    ASSERT_STR_CONTAINS(out, "info  something else\n");
    ASSERT_STR_CONTAINS(out, "failover of message 299 (and 299 more like this in the last 10 s)\n");
    restore(f);
}

TEST(log_repeat_sustained_key_gives_one_line_per_window_then_ends)
{
    FILE *f = capture(CR_LOG_TEXT, 1000);
    const char *out;
    int i;

    ASSERT(f != NULL);
    /* 5 s of one event every 100 ms: the first line, then one per window */
    for (i = 0; i < 50; i++) {
        cr_log_repeat(CR_LOG_WARN, "k", "event %d", i);
        fake_now += 100;
        cr_log_repeat_flush(0);
    }
    out = captured(f);
    ASSERT(count_lines(out) >= 5);
    ASSERT(count_lines(out) <= 7);
    /* a quiet window ends it: the next event is written at once */
    fake_now += 5000;
    cr_log_repeat_flush(0);
    cr_log_repeat_flush(0);
    cr_log_repeat(CR_LOG_WARN, "k", "after the quiet");
    out = captured(f);
    ASSERT_STR_CONTAINS(out, "warn  after the quiet\n");
    restore(f);
}

TEST(log_repeat_end_sums_up_and_forgets_the_key)
{
    FILE *f = capture(CR_LOG_TEXT, 30000);
    const char *out;

    ASSERT(f != NULL);
    cr_log_repeat(CR_LOG_WARN, "redis 'a' lost", "lost");
    cr_log_repeat(CR_LOG_WARN, "redis 'a' lost", "lost");
    cr_log_repeat(CR_LOG_WARN, "redis 'b' lost", "other");
    fake_now += 500;
    /* the run is over: summed up at once, not at the window's end */
    ASSERT_INT_EQ(cr_log_repeat_end("redis 'a' lost"), 1);
    out = captured(f);
    ASSERT_STR_CONTAINS(out, "warn  lost (and 1 more like this in the last 1 s)\n");
    ASSERT_INT_EQ(count_lines(out), 3);
    /* forgotten: the next event of the key is written whatever came before */
    cr_log_repeat(CR_LOG_WARN, "redis 'a' lost", "lost again");
    ASSERT_STR_CONTAINS(captured(f), "warn  lost again\n");
    ASSERT_INT_EQ(cr_log_repeat_end("redis 'a' lost"), 0); /* nothing counted */
    ASSERT_INT_EQ(cr_log_repeat_end("never seen"), 0);
    /* another key is left as it was */
    cr_log_repeat(CR_LOG_WARN, "redis 'b' lost", "other");
    ASSERT_INT_EQ(count_lines(captured(f)), 4);
    restore(f);
}

TEST(log_repeat_long_keys_compare_by_their_kept_part)
{
    FILE *f = capture(CR_LOG_TEXT, 10000);
    char key[2000];

    ASSERT(f != NULL);
    memset(key, 'z', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    cr_log_repeat(CR_LOG_INFO, key, "long");
    key[1000] = 'y'; /* past the kept part: the same key */
    cr_log_repeat(CR_LOG_INFO, key, "long");
    ASSERT_INT_EQ(count_lines(captured(f)), 1);
    ASSERT_INT_EQ(cr_log_repeat_end(key), 1);
    restore(f);
}

TEST(log_repeat_window_zero_writes_every_event)
{
    FILE *f = capture(CR_LOG_TEXT, 0);
    int i;

    ASSERT(f != NULL);
    for (i = 0; i < 20; i++)
        cr_log_repeat(CR_LOG_INFO, "k", "event %d", i);
    ASSERT_INT_EQ(count_lines(captured(f)), 20);
    restore(f);
}

TEST(log_repeat_full_table_writes_new_keys_as_they_are)
{
    FILE *f = capture(CR_LOG_TEXT, 10000);
    char key[32];
    int i;

    ASSERT(f != NULL);
    for (i = 0; i < CR_LOG_REPEAT_KEYS + 10; i++) {
        snprintf(key, sizeof key, "key %d", i);
        cr_log_repeat(CR_LOG_INFO, key, "event of %s", key);
        cr_log_repeat(CR_LOG_INFO, key, "event of %s", key);
    }
    /* followed keys: 1 line each now; the 10 beyond the table: 2 each */
    ASSERT_INT_EQ(count_lines(captured(f)), CR_LOG_REPEAT_KEYS + 20);
    ASSERT_INT_EQ(cr_log_repeat_flush(1), CR_LOG_REPEAT_KEYS);
    restore(f);
}

TEST(log_repeat_below_level_is_not_counted)
{
    FILE *f = capture(CR_LOG_TEXT, 10000);

    ASSERT(f != NULL);
    cr_log_set_level(CR_LOG_WARN);
    cr_log_repeat(CR_LOG_INFO, "k", "quiet");
    cr_log_repeat(CR_LOG_INFO, "k", "quiet");
    ASSERT_INT_EQ(cr_log_repeat_flush(1), 0);
    ASSERT_STR_EQ(captured(f), "");
    restore(f);
}

TEST(log_journal_format_has_priority_and_no_time)
{
    FILE *f = capture(CR_LOG_JOURNAL, 10000);
    const char *out;

    ASSERT(f != NULL);
    cr_log_set_tag("w1");
    cr_log(CR_LOG_ERROR, "e");
    cr_log(CR_LOG_WARN, "w");
    cr_log(CR_LOG_INFO, "i");
    cr_log_set_level(CR_LOG_DEBUG);
    cr_log(CR_LOG_DEBUG, "d");
    cr_log_set_tag(NULL);
    out = captured(f);
    ASSERT_STR_EQ(out, "<3>error [w1] e\n<4>warn  [w1] w\n<6>info  [w1] i\n<7>debug [w1] d\n");
    restore(f);
}

TEST(log_json_escapes_and_carries_the_count)
{
    FILE *f = capture(CR_LOG_JSON, 10000);
    const char *out;

    ASSERT(f != NULL);
    cr_log_set_tag("w2");
    cr_log(CR_LOG_WARN, "quote \" backslash \\ newline \n tab \t bell \a");
    cr_log_repeat(CR_LOG_INFO, "k \"1\"", "first");
    cr_log_repeat(CR_LOG_INFO, "k \"1\"", "second");
    cr_log_repeat(CR_LOG_INFO, "k \"1\"", "third");
    fake_now += 10000;
    cr_log_repeat_flush(0);
    cr_log_set_tag(NULL);
    out = captured(f);
    ASSERT_STR_CONTAINS(out, "\"level\":\"warn\",");
    ASSERT_STR_CONTAINS(out, "\"worker\":\"w2\",");
    ASSERT_STR_CONTAINS(
        out, "\"msg\":\"quote \\\" backslash \\\\ newline \\n tab \\u0009 bell \\u0007\"}\n");
    ASSERT_STR_CONTAINS(out, "\"msg\":\"first\"}\n");
    ASSERT_STR_CONTAINS(
        out, "\"msg\":\"third\",\"repeated\":2,\"window_s\":10,\"key\":\"k \\\"1\\\"\"}\n");
    ASSERT_INT_EQ(count_lines(out), 3);
    restore(f);
}

TEST(log_json_keeps_utf8_and_replaces_other_bytes)
{
    FILE *f = capture(CR_LOG_JSON, 10000);

    ASSERT(f != NULL);
    cr_log(CR_LOG_INFO, "Zażółć \xff\xfe cut \xc5");
    ASSERT_STR_CONTAINS(captured(f), "\"msg\":\"Zażółć \\ufffd\\ufffd cut \\ufffd\"}\n");
    restore(f);
}

TEST(log_parse_format)
{
    enum cr_log_format f;

    ASSERT_INT_EQ(cr_log_parse_format("json", &f), 0);
    ASSERT_INT_EQ(f, CR_LOG_JSON);
    ASSERT_INT_EQ(cr_log_parse_format("journal", &f), 0);
    ASSERT_INT_EQ(f, CR_LOG_JOURNAL);
    ASSERT_INT_EQ(cr_log_parse_format("text", &f), 0);
    ASSERT_INT_EQ(f, CR_LOG_TEXT);
    ASSERT_INT_EQ(cr_log_parse_format("auto", &f), 0);
    ASSERT(cr_log_parse_format("syslog", &f) < 0);
}
