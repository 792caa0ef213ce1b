/* crierctl audit: what the audit database (crier-audit's SQLite file or
 * PostgreSQL) says about one resident or one job, long after Redis has let
 * the job's keys expire. Reads SQL only; never connects to Redis. */
#include <cjson/cJSON.h>
#include <csv.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "cr_str.h"
#include "ctl.h"
#include "store.h"

static const char help[] =
    "Usage: crierctl audit (--sub ID [--since DATE] [--until DATE] | --job ID) [--csv]\n"
    "                      (--config FILE | --sqlite PATH | --postgresql CONNINFO)\n"
    "Reads the audit database crier-audit writes.\n"
    "  --sub ID       every message sent to subscriber ID, oldest first: time, job,\n"
    "                 channel, status, language, and the job's text in that language\n"
    "                 (as written in the job, before {{fields}} were filled in)\n"
    "  --since DATE   from DATE on (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)\n"
    "  --until DATE   before DATE\n"
    "  --job ID       one row per message of job ID, by audience position\n"
    "  --csv          CSV with a header line instead of aligned text\n"
    CTL_DB_HELP
    "Exit codes: 0 rows printed, 1 database error, 2 usage, 4 no rows.\n";

enum {
    OPT_SUB = CTL_OPT__FIRST_FREE,
    OPT_JOB,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_CSV
};

struct out {
    int csv;
    long rows;
    int sub_mode;
};

static void cell(const char *s)
{
    if (s == NULL)
        s = "";
    if (strpbrk(s, ",\"\r\n") != NULL)
        csv_fwrite(stdout, s, strlen(s));
    else
        fputs(s, stdout);
}

/* ms since the epoch as "2026-11-22T09:00:00Z"; "" for NULL. */
static const char *iso(const char *ms, char *buf, size_t n)
{
    struct tm tm;
    time_t t;

    if (ms == NULL || *ms == '\0') {
        buf[0] = '\0';
        return buf;
    }
    t = (time_t)(strtoll(ms, NULL, 10) / 1000);
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        cr_strlcpy(buf, ms, n);
    return buf;
}

/* "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ" (UTC) into ms. Returns 0 or -1. */
static int parse_date(const char *s, long long *out)
{
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, se = 0;
    int used = 0;
    size_t len = strlen(s);

    memset(&tm, 0, sizeof(tm));
    if (len == 10) {
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10)
            return -1;
    } else if (len == 20) {
        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &se, &used) != 6 ||
            used != 20)
            return -1;
    } else {
        return -1;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    *out = (long long)timegm(&tm) * 1000;
    return 0;
}

/* The job's text for channel in lang: the translation when the job has one,
 * else its default text; sets *used to the language the text is in. */
static const char *text_for(const cJSON *msg, const char *channel, const char *lang,
                            const char **used)
{
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(msg, "translations"), lang ? lang : "");
    const cJSON *def_lang = cJSON_GetObjectItemCaseSensitive(msg, "lang");
    const cJSON *src = msg;
    const cJSON *v = NULL;

    *used = cJSON_IsString(def_lang) ? def_lang->valuestring : "";
    if (cJSON_IsObject(tr) && lang) {
        src = tr;
        *used = lang;
    }
    if (strcmp(channel, "sms") == 0)
        v = cJSON_GetObjectItemCaseSensitive(src, "sms");
    else if (strcmp(channel, "push") == 0)
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(src, "push"), "body");
    else if (strcmp(channel, "whatsapp") == 0) { /* the free text, else the template's name */
        const cJSON *wa = cJSON_GetObjectItemCaseSensitive(src, "whatsapp");

        v = cJSON_GetObjectItemCaseSensitive(wa, "text");
        if (!cJSON_IsString(v))
            v = cJSON_GetObjectItemCaseSensitive(wa, "template");
    } else if (strcmp(channel, "email") == 0) {
        v = cJSON_GetObjectItemCaseSensitive(src, "subject");
        if (!cJSON_IsString(v))
            v = cJSON_GetObjectItemCaseSensitive(src, "text");
    }
    if (!cJSON_IsString(v) && src != msg) /* the translation lacks it: the default */
        return text_for(msg, channel, NULL, used);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* --sub rows: sent_ms, job, channel, status, lang, provider, delivered_ms, doc */
static int sub_row(void *ud, int ncols, const char *const *v)
{
    struct out *o = ud;
    cJSON *doc = ncols > 7 && v[7] ? cJSON_Parse(v[7]) : NULL;
    const char *used = "";
    const char *text = "";
    char t1[32];
    char t2[32];

    if (doc)
        text = text_for(cJSON_GetObjectItemCaseSensitive(doc, "message"), v[2] ? v[2] : "", v[4],
                        &used);
    if (used[0] == '\0' && v[4])
        used = v[4];
    if (o->csv) {
        const char *cells[] = {iso(v[0], t1, sizeof(t1)), v[1], v[2], v[3], used, v[5],
                               iso(v[6], t2, sizeof(t2)), text};
        size_t i;

        for (i = 0; i < 8; i++) {
            if (i)
                fputc(',', stdout);
            cell(cells[i]);
        }
        fputc('\n', stdout);
    } else {
        printf("%s  %-24s %-6s %-10s %-3s %s\n", iso(v[0], t1, sizeof(t1)), v[1] ? v[1] : "",
               v[2] && v[2][0] ? v[2] : "-", v[3] ? v[3] : "", used[0] ? used : "-", text);
    }
    cJSON_Delete(doc);
    o->rows++;
    return 0;
}

/* --job rows: pos, sub, channel, provider, status, attempts, code, provider_id,
 * sent_ms, delivered_ms, lang */
static int job_row(void *ud, int ncols, const char *const *v)
{
    struct out *o = ud;
    char t1[32];
    char t2[32];
    int i;

    if (o->csv) {
        for (i = 0; i < ncols; i++) {
            if (i)
                fputc(',', stdout);
            cell(i == 8 ? iso(v[i], t1, sizeof(t1)) : i == 9 ? iso(v[i], t2, sizeof(t2)) : v[i]);
        }
        fputc('\n', stdout);
    } else {
        printf("%-7s %-12s %-6s %-10s %-10s %s  %s\n", v[0] ? v[0] : "", v[1] ? v[1] : "",
               v[2] && v[2][0] ? v[2] : "-", v[3] && v[3][0] ? v[3] : "-", v[4] ? v[4] : "",
               iso(v[8], t1, sizeof(t1)), v[10] ? v[10] : "");
    }
    o->rows++;
    return 0;
}

int cr_ctl_audit(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"sub", required_argument, NULL, OPT_SUB},
                                         {"job", required_argument, NULL, OPT_JOB},
                                         {"since", required_argument, NULL, OPT_SINCE},
                                         {"until", required_argument, NULL, OPT_UNTIL},
                                         {"csv", no_argument, NULL, OPT_CSV},
                                         CTL_DB_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    struct ctl_db db;
    struct cr_store *s = NULL;
    struct out o = {0, 0, 0};
    const char *sub = NULL;
    const char *job = NULL;
    long long since = 0;
    long long until = 253402300800000LL; /* year 10000 */
    char a[CR_NUM_MAX];
    char b[CR_NUM_MAX];
    int code = CTL_EXIT_USAGE;
    int c;

    memset(&db, 0, sizeof(db));
    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, opts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case OPT_SUB:
            sub = optarg;
            continue;
        case OPT_JOB:
            job = optarg;
            continue;
        case OPT_SINCE:
        case OPT_UNTIL:
            if (parse_date(optarg, c == OPT_SINCE ? &since : &until) < 0) {
                fprintf(stderr,
                        "crierctl audit: %s: '%s' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ\n",
                        c == OPT_SINCE ? "--since" : "--until", optarg);
                return CTL_EXIT_USAGE;
            }
            continue;
        case OPT_CSV:
            o.csv = 1;
            continue;
        default:
            if (cr_ctl_db_opt(&db, c, optarg))
                continue;
            code = cr_ctl_opt_other(ctl, c, optarg, help);
            if (code >= 0)
                return code;
        }
    }
    if ((sub == NULL) == (job == NULL) || (db.config == NULL) == (db.target == NULL) ||
        optind != argc) {
        fputs(help, stderr);
        return CTL_EXIT_USAGE;
    }
    code = cr_ctl_db_open(ctl, &db, &s);
    if (code != CTL_EXIT_OK)
        goto out;
    if (sub) {
        const char *p[3] = {sub, cr_fmt_i64(a, since), cr_fmt_i64(b, until)};

        if (o.csv)
            puts("sent_at,job,channel,status,lang,provider,delivered_at,text");
        if (cr_store_query(s,
                           "SELECT m.sent_ms, m.job, m.channel, m.status, m.lang, m.provider, "
                           "m.delivered_ms, j.doc FROM messages m LEFT JOIN jobs j "
                           "ON j.id = m.job WHERE m.sub = $1 AND m.sent_ms >= $2 "
                           "AND m.sent_ms < $3 ORDER BY m.sent_ms, m.job, m.channel",
                           3, p, sub_row, &o) != 0)
            goto dberr;
    } else {
        const char *p[1] = {job};

        if (o.csv)
            puts("pos,sub,channel,provider,status,attempts,code,provider_id,sent_at,"
                 "delivered_at,lang");
        if (cr_store_query(s,
                           "SELECT pos, sub, channel, provider, status, attempts, code, "
                           "provider_id, sent_ms, delivered_ms, lang FROM messages "
                           "WHERE job = $1 ORDER BY pos, channel",
                           1, p, job_row, &o) != 0)
            goto dberr;
    }
    code = o.rows > 0 ? CTL_EXIT_OK : CTL_EXIT_NOTFOUND;
    if (o.rows == 0)
        fprintf(stderr, "crierctl audit: no messages %s '%s' in the audit database\n",
                sub ? "to subscriber" : "of job", sub ? sub : job);
    goto out;
dberr:
    fprintf(stderr, "crierctl audit: query failed: %s\n", cr_store_errmsg(s));
    code = CTL_EXIT_FAIL;
out:
    cr_store_close(s);
    return code;
}
