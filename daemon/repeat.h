/* Repeat suppression for log lines: the same line written again and again is
 * written once, then summed up with a count. Pure: the caller gives the time. */
#ifndef CR_REPEAT_H
#define CR_REPEAT_H

#include <stddef.h>
#include <stdint.h>

#define CR_REPEAT_LINE_MAX 512

struct cr_repeat {
    char last[CR_REPEAT_LINE_MAX]; /* the line last written ("" = none yet) */
    int last_level;                /* the caller's level of that line */
    unsigned long count;           /* times it came again since and was not written */
    uint64_t since_ms;             /* when it was last written or summed up */
    long window_ms;                /* how long repeats stay quiet */
};

/* Starts an empty state whose repeats are summed up every window_ms. */
void cr_repeat_init(struct cr_repeat *rp, long window_ms);

enum cr_repeat_action {
    CR_REPEAT_WRITE = 1 << 0,   /* write line now */
    CR_REPEAT_SUMMARY = 1 << 1, /* first write *summary, at *summary_level */
};

/* Decides about line (at level) seen at now. Returns a set of
 * cr_repeat_action flags: a new line is written (after the summary of the
 * previous one when it had repeats); the same line again within the window is
 * only counted; the same line after the window is written as the summary
 * "<line> (repeated N times in T s)" when repeats were counted, else plainly.
 * summary gets at most cap bytes. */
int cr_repeat_note(struct cr_repeat *rp, int level, const char *line, uint64_t now, char *summary,
                   size_t cap, int *summary_level);

/* From a timer: 1 and the summary of counted repeats older than the window
 * (the count restarts), else 0. */
int cr_repeat_flush(struct cr_repeat *rp, uint64_t now, char *summary, size_t cap,
                    int *summary_level);

/* Forgets the last line, so that the next one is written whatever it is
 * (after a success ends a run of failures). Returns as cr_repeat_flush. */
int cr_repeat_reset(struct cr_repeat *rp, uint64_t now, char *summary, size_t cap,
                    int *summary_level);

#endif
