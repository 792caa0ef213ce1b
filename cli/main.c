/* crierctl: the operator's command line. Reads the options every command
 * shares (CRIER_REDIS_URL, then -H/-p/-a/--prefix), connects, and hands the
 * rest of the arguments to one command. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"

struct command {
    const char *name;
    int (*run)(struct ctl *ctl, int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"send", cr_ctl_send, "validate a job document and post it (--wait to follow it)"},
    {"status", cr_ctl_status, "state, counters, rate, ETA and progress of a job"},
    {"top", cr_ctl_top, "live throughput per channel and provider, queues, active jobs"},
    {"jobs", cr_ctl_jobs, "recent jobs, newest first"},
    {"cancel", cr_ctl_cancel, "ask every crierd to stop sending a job"},
    {"tail", cr_ctl_tail, "delivery receipts, one line each (-f to follow)"},
    {"import", cr_ctl_import, "subscribers and segments from a CSV file"},
    {"report", cr_ctl_report, "per-segment reach of a job as CSV"},
    {"audit", cr_ctl_audit, "a resident's or a job's messages from the audit database"},
    {"survey", cr_ctl_survey, "scores, trend and free-text answers of a multi-question survey"},
};

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "Usage: crierctl [common options] COMMAND [options] [args]\n\nCommands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n" CTL_COMMON_HELP
                 "\n`crierctl COMMAND --help` describes a command.\n"
                 "Exit codes: 0 ok, 1 the operation failed or the job failed/was rejected,\n"
                 "2 usage error, 3 cannot reach Redis, 4 not found,\n"
                 "5 send: a job with this id exists already (not posted).\n");
}

/* redis://[[user]:password@]host[:port][/db] or unix:///path into ctl. */
static int parse_url(struct ctl *ctl, const char *url)
{
    const char *p;
    const char *at;
    const char *end;
    const char *colon;
    long long port;
    char num[8];
    size_t n;

    if (strncmp(url, "unix://", 7) == 0) {
        n = strlen(url + 7);
        if (n == 0 || url[7] != '/' || n >= sizeof(ctl->socket))
            goto bad;
        memcpy(ctl->socket, url + 7, n + 1);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        goto bad;
    p = url + 8;
    end = p + strcspn(p, "/?");
    at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            goto bad;
        n = (size_t)(colon - p);
        if (n >= sizeof(ctl->user))
            goto bad;
        memcpy(ctl->user, p, n);
        ctl->user[n] = '\0';
        n = (size_t)(at - colon - 1);
        if (n >= sizeof(ctl->password))
            goto bad;
        memcpy(ctl->password, colon + 1, n);
        ctl->password[n] = '\0';
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(end - p));
    n = (size_t)((colon ? colon : end) - p);
    if (n == 0 || n >= sizeof(ctl->host))
        goto bad;
    memcpy(ctl->host, p, n);
    ctl->host[n] = '\0';
    if (colon) {
        n = (size_t)(end - colon - 1);
        if (n == 0 || n >= sizeof(num))
            goto bad;
        memcpy(num, colon + 1, n);
        num[n] = '\0';
        if (cr_ctl_parse_ll(num, 1, 65535, &port) < 0)
            goto bad;
        ctl->port = (int)port;
    }
    return 0;
bad:
    fprintf(stderr, "crierctl: CRIER_REDIS_URL: expected redis://[[user]:password@]host[:port] "
                    "or unix:///path\n");
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {CTL_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    struct ctl ctl;
    const char *url = getenv("CRIER_REDIS_URL");
    const struct command *cmd = NULL;
    size_t i;
    int c;
    int rc;

    memset(&ctl, 0, sizeof(ctl));
    snprintf(ctl.host, sizeof(ctl.host), "127.0.0.1");
    ctl.port = 6379;
    snprintf(ctl.prefix, sizeof(ctl.prefix), "crier:");
    ctl.timeout_ms = 5000;
    ctl.tty = isatty(STDOUT_FILENO);
    ctl.cmd = "";
    if (url && *url && parse_url(&ctl, url) < 0)
        return CTL_EXIT_USAGE;
    if (getenv("CRIER_REDIS_SENTINEL") != NULL &&
        cr_ctl_common_opt(&ctl, CTL_OPT_SENTINEL, getenv("CRIER_REDIS_SENTINEL")) < 0)
        return CTL_EXIT_USAGE;

    opterr = 1;
    for (;;) {
        c = getopt_long(argc, argv, "+" CTL_COMMON_SHORTOPTS, longopts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            usage(stdout);
            return CTL_EXIT_OK;
        }
        rc = cr_ctl_common_opt(&ctl, c, optarg);
        if (rc != 1) {
            usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "crierctl: unknown command '%s'\n\n", argv[optind]);
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    ctl.cmd = cmd->name;
    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: start over on the command's own argument vector */
    rc = cmd->run(&ctl, argc, argv);
    cr_ctl_close(&ctl);
    fflush(stdout);
    return rc;
}
