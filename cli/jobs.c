/* crierctl jobs: the most recent jobs, newest first, from the creation-time
 * index <prefix>jobs:recent, with each job's state and main counters. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#define JOBS_MAX 10000 /* the index keeps the newest 10,000 */

static const char help[] =
    "Usage: crierctl jobs [options]\n"
    "Lists recent jobs, newest first, from <prefix>jobs:recent: id, state,\n"
    "priority, residents targeted, sent, delivered, failed, created time.\n"
    "A job whose hash has expired (after its retention) shows state `gone`.\n"
    "\n"
    "Options:\n"
    "  -n, --count N    how many jobs (default 20, at most 10000)\n";

static const char *const fields[] = {"state", "priority", "targeted", "sent", "delivered",
                                     "failed"};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const char *str_or(const redisReply *r, const char *def)
{
    return r && r->type == REDIS_REPLY_STRING ? r->str : def;
}

int cr_ctl_jobs(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"count", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    const char *zargv[6];
    const char *hargv[2 + NFIELDS];
    char stop[24];
    char key[CR_KEY_MAX];
    char created[32];
    redisReply *z = NULL;
    redisReply *h;
    long long n = 20;
    size_t i;
    size_t k;
    int code;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "n:", opts, NULL);
        if (c == -1)
            break;
        if (c == 'n') {
            if (cr_ctl_parse_ll(optarg, 1, JOBS_MAX, &n) < 0) {
                fprintf(stderr, "crierctl jobs: -n: '%s' is not a number from 1 to %d\n",
                        optarg, JOBS_MAX);
                return CTL_EXIT_USAGE;
            }
            continue;
        }
        code = cr_ctl_opt_other(ctl, c, optarg, help);
        if (code >= 0)
            return code;
    }
    code = cr_ctl_begin(ctl, optind == argc, help);
    if (code != 0)
        return code;
    snprintf(stop, sizeof(stop), "%lld", n - 1);
    zargv[0] = "ZREVRANGE";
    zargv[1] = ctl->keys.recent;
    zargv[2] = "0";
    zargv[3] = stop;
    zargv[4] = "WITHSCORES";
    z = cr_ctl_cmdv(ctl, 5, zargv, NULL, &code);
    if (z == NULL)
        return code;
    if (z->type != REDIS_REPLY_ARRAY) {
        code = CTL_EXIT_FAIL;
        goto out;
    }
    hargv[0] = "HMGET";
    for (k = 0; k < NFIELDS; k++)
        hargv[2 + k] = fields[k];
    for (i = 0; i + 1 < z->elements; i += 2) {
        if (cr_key_for(&ctl->keys, "job", z->element[i]->str, key, sizeof(key)) < 0)
            snprintf(key, sizeof(key), "%s", ctl->keys.recent); /* never a job hash */
        hargv[1] = key;
        code = cr_ctl_pipe_append(ctl, (int)(2 + NFIELDS), hargv, NULL);
        if (code != 0)
            goto out;
    }
    printf("%-32s %-10s %-8s %9s %9s %9s %7s  %s\n", "JOB", "STATE", "PRIORITY", "TARGETED",
           "SENT", "DELIVERED", "FAILED", "CREATED");
    for (i = 0; i + 1 < z->elements; i += 2) {
        long long score = 0;

        h = cr_ctl_pipe_read(ctl, &code);
        if (h == NULL)
            goto out;
        cr_ctl_parse_ll(z->element[i + 1]->str, 0, INT64_MAX, &score);
        cr_ctl_fmt_time(score, 1, created, sizeof(created));
        if (h->type == REDIS_REPLY_ARRAY && h->elements == NFIELDS &&
            h->element[0]->type == REDIS_REPLY_STRING)
            printf("%-32s %-10s %-8s %9s %9s %9s %7s  %s\n", z->element[i]->str,
                   str_or(h->element[0], "-"), str_or(h->element[1], "-"),
                   str_or(h->element[2], "0"), str_or(h->element[3], "0"),
                   str_or(h->element[4], "0"), str_or(h->element[5], "0"), created);
        else
            printf("%-32s %-10s %-8s %9s %9s %9s %7s  %s\n", z->element[i]->str, "gone", "-",
                   "-", "-", "-", "-", created);
        freeReplyObject(h);
    }
    code = CTL_EXIT_OK;
out:
    freeReplyObject(z);
    return code;
}
