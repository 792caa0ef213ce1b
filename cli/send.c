/* crierctl send: validates a job document exactly as the daemon's intake does
 * (cr_job_parse with the default limits) and posts it to the intake stream,
 * signed with an integrator key when one is given. */
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "config.h"
#include "cr_buf.h"
#include "cr_error.h"
#include "ctl.h"
#include "job.h"

/* The most we read of a job file; the document limit itself (doc_bytes) is
 * checked by cr_job_parse, this only keeps a wrong file from filling memory. */
#define SEND_READ_MAX (16u * 1024 * 1024)

static const char help[] =
    "Usage: crierctl send [options] FILE\n"
    "Validates the job document in FILE ('-' = standard input) as crierd does,\n"
    "with the default limits (a daemon configured with other limits may still\n"
    "reject it), and posts it: XADD <prefix>jobs * job <document>.\n"
    "Prints the job id: the document's \"id\", or job-<entry id> as crierd names it.\n"
    "A bad document is not posted: its problem is printed (code and message, and\n"
    "FILE:LINE:COLUMN with the line for broken JSON), exit 1. A document whose id is\n"
    "taken by an earlier job is not posted either (crierd would ignore it): exit 5.\n"
    "\n"
    "Options:\n"
    "  -w, --wait       follow the job like `status` until it is finished; exit 0\n"
    "                   when it completed, 1 when it was rejected, cancelled, expired or failed\n"
    "  -k, --key ID     sign the job with integrator key ID: the entry gets key, ts\n"
    "                   (now) and sig = v1=HMAC-SHA256(secret, ts \".\" job); a job\n"
    "                   without an id is then named s-<first 32 hex digits of sig>\n"
    "      --secret-file FILE  the key's secret (one line; a trailing newline is dropped)\n"
    "      --secret-env NAME   the environment variable holding it (default\n"
    "                   CRIER_KEY_SECRET, used when --secret-file is not given)\n";

enum { OPT_SECRET_FILE = CTL_OPT__FIRST_FREE, OPT_SECRET_ENV };

static int read_all(FILE *f, struct cr_buf *b);

#define SECRET_READ_MAX 4096

/* Reads the key's secret from file (or the variable env) into b. Returns 0,
 * or CTL_EXIT_USAGE/CTL_EXIT_FAIL after printing what is wrong. */
static int load_secret(const char *file, const char *env, struct cr_buf *b)
{
    FILE *f;
    int rc;

    if (file != NULL) {
        f = fopen(file, "rb");
        if (f == NULL) {
            fprintf(stderr, "crierctl send: --secret-file %s: %s\n", file, strerror(errno));
            return CTL_EXIT_FAIL;
        }
        rc = read_all(f, b);
        fclose(f);
        if (rc < 0) {
            fprintf(stderr, "crierctl send: --secret-file %s: %s\n", file, cr_strerror(rc));
            return CTL_EXIT_FAIL;
        }
        while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
            b->data[--b->len] = '\0';
    } else {
        const char *v = getenv(env);

        if (v == NULL || v[0] == '\0') {
            fprintf(stderr, "crierctl send: --key needs the secret: --secret-file FILE, or "
                            "the environment variable %s\n", env);
            return CTL_EXIT_USAGE;
        }
        if (cr_buf_appends(b, v) < 0)
            return CTL_EXIT_FAIL;
    }
    if (b->len < CR_SECRET_MIN) {
        fprintf(stderr, "crierctl send: the key's secret is shorter than %d bytes\n",
                CR_SECRET_MIN);
        return CTL_EXIT_USAGE;
    }
    return 0;
}

static int read_all(FILE *f, struct cr_buf *b)
{
    char chunk[65536];
    size_t n;
    int rc;

    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0) {
            rc = cr_buf_append(b, chunk, n);
            if (rc < 0)
                return rc;
        }
        if (n < sizeof(chunk))
            break;
    }
    return ferror(f) ? CR_EIO : 0;
}

/* Refuses an explicit id that is already taken: crierd would ignore the post
 * as a duplicate, so it is not made (CTL_EXIT_EXISTS). */
static int check_new_id(struct ctl *ctl, const char *id)
{
    struct ctl_job job;
    int rc = cr_ctl_job_load(ctl, id, &job);

    if (rc == 0) {
        fprintf(stderr,
                "crierctl send: job %s already exists (state %s); not posted (crierd ignores "
                "a second job with the same id: give the document a new \"id\")\n",
                id, job.state);
        return CTL_EXIT_EXISTS;
    }
    return rc == CTL_EXIT_NOTFOUND ? 0 : rc;
}

#define SHOW_LINE_MAX 120 /* bytes of the offending line shown */

/* Prints where byte offset at of doc is, as FILE:LINE:COLUMN (both from 1,
 * the column in characters), then that line (cut around the column to
 * SHOW_LINE_MAX bytes, control characters as spaces) and a caret under it. */
static void show_position(const char *path, const char *doc, size_t len, size_t at,
                          const struct cr_job_error *err)
{
    char text[SHOW_LINE_MAX + 1];
    char caret[SHOW_LINE_MAX + 2];
    size_t line = 1;
    size_t col = 1;
    size_t start = 0;
    size_t end;
    size_t from;
    size_t i;
    size_t n = 0;
    size_t k = 0;

    if (at > len)
        at = len;
    /* cJSON may stop at the blank before the token it could not take */
    while (at < len && (doc[at] == ' ' || doc[at] == '\t' || doc[at] == '\n' || doc[at] == '\r'))
        at++;
    for (i = 0; i < at; i++) {
        if (doc[i] == '\n') {
            line++;
            col = 1;
            start = i + 1;
        } else if (((unsigned char)doc[i] & 0xC0) != 0x80) {
            col++; /* a character starts here (not a UTF-8 continuation byte) */
        }
    }
    fprintf(stderr, "%s:%zu:%zu: %s: %s\n", path, line, col, err->code, err->message);
    if (at == len) {
        fputs("  (the document ends there: a value, ']' or '}' is missing)\n", stderr);
        return;
    }
    for (end = start; end < len && doc[end] != '\n' && doc[end] != '\r';)
        end++;
    from = start;
    if (at - start > SHOW_LINE_MAX - 20)
        from = at - (SHOW_LINE_MAX - 20); /* keep the position in view */
    while (from > start && ((unsigned char)doc[from] & 0xC0) == 0x80)
        from--;
    for (i = from; i < end && n < SHOW_LINE_MAX; i++) {
        unsigned char ch = (unsigned char)doc[i];

        text[n++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
        if (i < at && (ch & 0xC0) != 0x80)
            caret[k++] = ' ';
    }
    text[n] = '\0';
    caret[k++] = '^';
    caret[k] = '\0';
    fprintf(stderr, "  %s\n  %s\n", text, caret);
}

int cr_ctl_send(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"wait", no_argument, NULL, 'w'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"secret-file", required_argument, NULL, OPT_SECRET_FILE},
                                         {"secret-env", required_argument, NULL, OPT_SECRET_ENV},
                                         {NULL, 0, NULL, 0}};
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    struct cr_buf doc;
    const char *path;
    const char *xargv[11];
    size_t xlens[11];
    const char *key = NULL;
    const char *secret_file = NULL;
    const char *secret_env = "CRIER_KEY_SECRET";
    struct cr_buf secret;
    char ts[24];
    char sig[CR_SIG_TEXT_LEN];
    int nx = 5;
    redisReply *r = NULL;
    FILE *f = NULL;
    char id[CR_JOB_ID_MAX + 96];
    char entry[64];
    int have_job = 0;
    int wait = 0;
    int code = CTL_EXIT_FAIL;
    int rc;
    int c;

    cr_buf_init(&doc, SEND_READ_MAX);
    cr_buf_init(&secret, SECRET_READ_MAX);
    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "wk:", opts, NULL);
        if (c == -1)
            break;
        if (c == 'w') {
            wait = 1;
            continue;
        }
        if (c == 'k' || c == OPT_SECRET_FILE || c == OPT_SECRET_ENV) {
            if (c == 'k')
                key = optarg;
            else if (c == OPT_SECRET_FILE)
                secret_file = optarg;
            else
                secret_env = optarg;
            continue;
        }
        rc = cr_ctl_opt_other(ctl, c, optarg, help);
        if (rc >= 0) {
            code = rc;
            goto out;
        }
    }
    if (optind != argc - 1) {
        fputs(help, stderr);
        code = CTL_EXIT_USAGE;
        goto out;
    }
    path = argv[optind];
    if (strcmp(path, "-") == 0) {
        f = stdin;
    } else {
        f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "crierctl send: %s: %s\n", path, strerror(errno));
            goto out;
        }
    }
    rc = read_all(f, &doc);
    if (rc < 0) {
        fprintf(stderr, "crierctl send: %s: %s\n", path,
                rc == CR_ETOOBIG ? "larger than 16 MiB, not a job document" : cr_strerror(rc));
        goto out;
    }

    cr_job_limits_default(&lim);
    memset(&err, 0, sizeof(err));
    rc = cr_job_parse(cr_buf_cstr(&doc), doc.len, &lim, &job, &err);
    if (rc < 0 && err.at >= 0) {
        show_position(path, cr_buf_cstr(&doc), doc.len, (size_t)err.at, &err);
        fprintf(stderr, "crierctl send: %s: job not posted\n", path);
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s: %s\n", path, err.code[0] ? err.code : cr_errname(rc),
                err.message[0] ? err.message : cr_strerror(rc));
        fprintf(stderr, "crierctl send: %s: job not posted\n", path);
        goto out;
    }
    have_job = 1;
    if (key != NULL) {
        code = load_secret(secret_file, secret_env, &secret);
        if (code != 0)
            goto out;
        code = CTL_EXIT_FAIL;
        snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
        if (cr_sig_make(secret.data, secret.len, ts, doc.data, doc.len, sig) != 0)
            goto out;
    }

    code = cr_ctl_connect(ctl);
    if (code != 0)
        goto out;
    if (job.id[0]) {
        code = check_new_id(ctl, job.id);
        if (code != 0)
            goto out;
    }
    xargv[0] = "XADD";
    xargv[1] = ctl->keys.jobs;
    xargv[2] = "*";
    xargv[3] = "job";
    xargv[4] = cr_buf_cstr(&doc);
    if (key != NULL) {
        xargv[5] = "key";
        xargv[6] = key;
        xargv[7] = "ts";
        xargv[8] = ts;
        xargv[9] = "sig";
        xargv[10] = sig;
        nx = 11;
    }
    for (c = 0; c < nx; c++)
        xlens[c] = strlen(xargv[c]);
    xlens[4] = doc.len;
    r = cr_ctl_cmdv(ctl, nx, xargv, xlens, &code);
    if (r == NULL)
        goto out;
    if (r->type != REDIS_REPLY_STRING || r->len >= sizeof(entry)) {
        fprintf(stderr, "crierctl send: XADD gave an unexpected reply\n");
        code = CTL_EXIT_FAIL;
        goto out;
    }
    memcpy(entry, r->str, r->len + 1);
    if (job.id[0])
        snprintf(id, sizeof(id), "%s", job.id);
    else if (key != NULL)
        snprintf(id, sizeof(id), "s-%.32s", sig + 3); /* as crierd names a signed job */
    else
        snprintf(id, sizeof(id), "job-%s", entry);
    printf("%s\n", id);
    fflush(stdout);
    code = CTL_EXIT_OK;
    if (wait)
        code = cr_ctl_follow(ctl, id, entry);
out:
    if (r)
        freeReplyObject(r);
    if (f && f != stdin)
        fclose(f);
    if (have_job)
        cr_job_release(&job);
    cr_buf_release(&doc);
    if (secret.data != NULL)
        OPENSSL_cleanse(secret.data, secret.len);
    cr_buf_release(&secret);
    return code;
}
