/* crierctl tail: delivery receipts from <prefix>receipts, one line each,
 * optionally for one job only, and followed as they arrive with XREAD BLOCK. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "ctl.h"

#define PAGE "1000"
#define TAIL_MAX 100000        /* -n at most */
#define SCAN_MAX 2000000       /* receipts looked at to find -n of one job */
#define LINE_MAX_BYTES 1024

static const char help[] =
    "Usage: crierctl tail [options]\n"
    "Prints receipts from <prefix>receipts, oldest first, one line each:\n"
    "  time job subscriber channel provider status attempt code latency\n"
    "(a provider's receipt from a webhook shows pos:N, the message's audience\n"
    "position, for the subscriber)\n"
    "\n"
    "Options:\n"
    "  -n, --lines N    the last N receipts (default 10, at most 100000)\n"
    "  -j, --job ID     only receipts of job ID\n"
    "  -f, --follow     keep printing new receipts as they arrive (Ctrl-C stops)\n";

static const char *fld(const redisReply *f, const char *name)
{
    const char *v = cr_ctl_field(f, name);

    return v && *v ? v : "-";
}

/* Formats one stream entry into line; returns 0, or -1 when it is not for job. */
static int format_entry(const redisReply *e, const char *job, char *line, size_t n)
{
    const redisReply *f;
    char t[32];
    char lat[32];
    char who[80];
    long long us;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return -1;
    f = e->element[1];
    if (job && strcmp(fld(f, "job"), job) != 0)
        return -1;
    cr_ctl_fmt_time(cr_ctl_entry_ms(e->element[0]->str), 0, t, sizeof(t));
    us = cr_ctl_field_ll(f, "latency_us", -1);
    if (us < 0)
        snprintf(lat, sizeof(lat), "-");
    else
        snprintf(lat, sizeof(lat), "%.1fms", (double)us / 1000.0);
    /* a provider's receipt (webhook) names its message by audience position */
    if (cr_ctl_field(f, "sub") == NULL && cr_ctl_field(f, "pos") != NULL)
        snprintf(who, sizeof(who), "pos:%s", cr_ctl_field(f, "pos"));
    else
        snprintf(who, sizeof(who), "%s", fld(f, "sub"));
    snprintf(line, n, "%s %s %s %s %s %s %s %s %s", t, fld(f, "job"), who, fld(f, "channel"),
             fld(f, "provider"), fld(f, "status"), fld(f, "attempt"), fld(f, "code"), lat);
    return 0;
}

/* Collects the newest n lines (for job, or all) newest first into lines, and
 * the id of the newest entry in the stream into last. */
static int backlog(struct ctl *ctl, const char *job, long long n, char **lines, long long *got,
                   char *last, size_t lastlen)
{
    char start[64] = "+";
    const char *argv[6];
    redisReply *r;
    long long scanned = 0;
    size_t i;
    int code;

    *got = 0;
    argv[0] = "XREVRANGE";
    argv[1] = ctl->keys.receipts;
    argv[3] = "-";
    argv[4] = "COUNT";
    argv[5] = PAGE;
    while ((*got < n || last[0] == '\0') && scanned < SCAN_MAX) {
        argv[2] = start;
        argv[5] = *got < n ? PAGE : "1"; /* -n 0: only the newest id, to follow from */
        r = cr_ctl_cmdv(ctl, 6, argv, NULL, &code);
        if (r == NULL)
            return code;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        for (i = 0; i < r->elements && (*got < n || last[0] == '\0'); i++) {
            const redisReply *e = r->element[i];
            char line[LINE_MAX_BYTES];

            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
                continue;
            if (last[0] == '\0')
                snprintf(last, lastlen, "%s", e->element[0]->str);
            if (*got < n && format_entry(e, job, line, sizeof(line)) == 0) {
                lines[*got] = strdup(line);
                if (lines[*got] == NULL) {
                    freeReplyObject(r);
                    fprintf(stderr, "crierctl tail: out of memory\n");
                    return CTL_EXIT_FAIL;
                }
                (*got)++;
            }
        }
        scanned += (long long)r->elements;
        /* continue strictly before the oldest entry of this page */
        snprintf(start, sizeof(start), "(%s", r->element[r->elements - 1]->element[0]->str);
        i = r->elements;
        freeReplyObject(r);
        if (i < 1000 || n == 0)
            break;
    }
    return 0;
}

static int follow(struct ctl *ctl, const char *job, char *last, size_t lastlen)
{
    const char *argv[8];
    char block[24];
    char line[LINE_MAX_BYTES];
    redisReply *r;
    size_t i;
    int code = CTL_EXIT_OK;

    snprintf(block, sizeof(block), "%ld", ctl->timeout_ms > 2000 ? 1000L : ctl->timeout_ms / 2);
    if (last[0] == '\0')
        snprintf(last, lastlen, "0-0");
    argv[0] = "XREAD";
    argv[1] = "COUNT";
    argv[2] = PAGE;
    argv[3] = "BLOCK";
    argv[4] = block;
    argv[5] = "STREAMS";
    argv[6] = ctl->keys.receipts;
    cr_ctl_catch_signals();
    while (!cr_ctl_stop) {
        const redisReply *entries;

        argv[7] = last;
        r = cr_ctl_cmdv(ctl, 8, argv, NULL, &code);
        if (r == NULL)
            return cr_ctl_stop ? CTL_EXIT_OK : code;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
            entries = r->element[0]->element[1];
            for (i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
                const redisReply *e = entries->element[i];

                if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
                    continue;
                snprintf(last, lastlen, "%s", e->element[0]->str);
                if (format_entry(e, job, line, sizeof(line)) == 0)
                    printf("%s\n", line);
            }
            fflush(stdout);
        }
        freeReplyObject(r);
    }
    return CTL_EXIT_OK;
}

int cr_ctl_tail(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"lines", required_argument, NULL, 'n'},
                                         {"job", required_argument, NULL, 'j'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    const char *job = NULL;
    char **lines = NULL;
    char last[64] = "";
    long long n = 10;
    long long got = 0;
    long long i;
    int follow_flag = 0;
    int code;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "n:j:f", opts, NULL);
        if (c == -1)
            break;
        if (c == 'n') {
            if (cr_ctl_parse_ll(optarg, 0, TAIL_MAX, &n) < 0) {
                fprintf(stderr, "crierctl tail: -n: '%s' is not a number from 0 to %d\n", optarg,
                        TAIL_MAX);
                return CTL_EXIT_USAGE;
            }
        } else if (c == 'j') {
            job = optarg;
        } else if (c == 'f') {
            follow_flag = 1;
        } else {
            code = cr_ctl_opt_other(ctl, c, optarg, help);
            if (code >= 0)
                return code;
        }
    }
    code = cr_ctl_begin(ctl, optind == argc, help);
    if (code != 0)
        return code;
    lines = calloc((size_t)n + 1, sizeof(*lines));
    if (lines == NULL) {
        fprintf(stderr, "crierctl tail: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    code = backlog(ctl, job, n, lines, &got, last, sizeof(last));
    for (i = got - 1; i >= 0; i--)
        printf("%s\n", lines[i]);
    fflush(stdout);
    for (i = 0; i < got; i++)
        free(lines[i]);
    free(lines);
    if (code == 0 && follow_flag)
        code = follow(ctl, job, last, sizeof(last));
    return code;
}
