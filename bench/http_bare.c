/* The benchmark's reference: a bare libcurl multi loop with keep-alive, no crier
 * code. In replay mode it sends exactly the requests crier sent in a run (as the
 * simulator recorded them), each provider's with that provider's max_inflight
 * handles, so crier's time and this loop's are for the same work. Built by
 * `make bench` as $(BUILD)/http_bare.
 * Run: http_bare -r REPLAYSPEC [CAFILE]
 *  or: http_bare URL REQUESTS CONCURRENCY [BODY [HEADER...]]
 *  or: http_bare -f SPECFILE REQUESTS CONCURRENCY
 * A REPLAYSPEC holds one provider per line, tab-separated: REQFILE (one request
 * per line, URL<TAB>BODY, sent in that order), CONCURRENCY, HTTP version ("1.1"
 * or "2": HTTP/2 over TLS, multiplexed), then header lines. CAFILE verifies an
 * https:// simulator. Prints {"requests":N,"seconds":S,"rps":R,"kinds":[n,...]}
 * (replay adds "retried", requests sent again after a transport failure, and
 * "non_2xx", answers other than 2xx, which count as done like crier's).
 * A SPECFILE holds one request kind per line, tab-separated: URL, BODY, then
 * header lines; the handles are shared out round robin between the kinds and
 * each kind sends its share of REQUESTS (as crier's providers each have their
 * own in-flight cap). Prints {"requests":N,"seconds":S,"rps":R,"kinds":[n,...]};
 * exits 1 when any request failed. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CONCURRENCY 10000
#define MAX_REQUESTS 100000000L
#define MAX_KINDS 16
#define MAX_SPEC_LINE (1024 * 1024)

/* One kind of request: where, what, and the headers (owned). */
struct kind {
    char *url;
    char *body;
    struct curl_slist *headers;
    char *bodies;   /* replay: the request file's text, URL<TAB>BODY lines (owned) */
    char **next;    /* replay: URL, body, URL, body ... NUL-terminated in bodies */
    long nbodies;
    long conc;      /* replay: handles of this kind */
    int http2;
    long quota;   /* requests of this kind to send */
    long started;
    long done;
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static int parse_count(const char *s, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max)
        return -1;
    *out = v;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Adds header line h to k. Returns 0 or -1. */
static int add_header(struct kind *k, const char *h)
{
    struct curl_slist *n = curl_slist_append(k->headers, h);

    if (n == NULL)
        return -1;
    k->headers = n;
    return 0;
}

static void kind_release(struct kind *k)
{
    free(k->url);
    free(k->body);
    free(k->bodies);
    free(k->next);
    curl_slist_free_all(k->headers);
    memset(k, 0, sizeof(*k));
}

/* Splits one spec line (no newline) into k. Returns 0, or -1 when malformed. */
static int parse_spec_line(char *line, struct kind *k)
{
    char *field[MAX_KINDS * 4];
    int nf = 0;
    char *p = line;
    int i;

    for (;;) {
        char *tab = strchr(p, '\t');

        if (nf == (int)(sizeof(field) / sizeof(field[0])))
            return -1;
        field[nf++] = p;
        if (tab == NULL)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    if (nf < 2 || field[0][0] == '\0')
        return -1;
    k->url = dup_n(field[0], strlen(field[0]));
    k->body = dup_n(field[1], strlen(field[1]));
    if (k->url == NULL || k->body == NULL)
        return -1;
    for (i = 2; i < nf; i++) {
        if (field[i][0] != '\0' && add_header(k, field[i]) < 0)
            return -1;
    }
    return 0;
}

/* Reads SPECFILE into kinds[]; returns the number of kinds, or -1. */
static int read_spec(const char *path, struct kind *kinds)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    int n = 0;
    int rc = -1;

    if (f == NULL) {
        fprintf(stderr, "http_bare: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    line = malloc(MAX_SPEC_LINE);
    if (line == NULL)
        goto out;
    while (fgets(line, MAX_SPEC_LINE, f) != NULL) {
        size_t len = strlen(line);

        if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "http_bare: %s: line over %d bytes\n", path, MAX_SPEC_LINE);
            goto out;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (n == MAX_KINDS) {
            fprintf(stderr, "http_bare: %s: more than %d request kinds\n", path, MAX_KINDS);
            goto out;
        }
        if (parse_spec_line(line, &kinds[n]) < 0) {
            fprintf(stderr, "http_bare: %s: bad line %d (URL<TAB>BODY[<TAB>HEADER...])\n",
                    path, n + 1);
            kind_release(&kinds[n]);
            goto out;
        }
        n++;
    }
    rc = n > 0 ? n : -1;
    if (n == 0)
        fprintf(stderr, "http_bare: %s: no requests\n", path);
out:
    free(line);
    fclose(f);
    return rc;
}

static void setup_handle(CURL *e, struct kind *k)
{
    if (k->url != NULL) { /* replay gives each request its own */
        curl_easy_setopt(e, CURLOPT_URL, k->url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, k->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(k->body));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->headers);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)k);
}

/* Reads the whole of path into *out (NUL-terminated). Returns its length or -1. */
static long read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    long rc = -1;

    if (f == NULL) {
        fprintf(stderr, "http_bare: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t n;

        if (cap - len < 65536) {
            char *nb;

            if (cap > (size_t)1 << 34)
                goto out;
            cap = cap ? cap * 2 : 1 << 20;
            nb = realloc(buf, cap + 1);
            if (nb == NULL)
                goto out;
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f))
        goto out;
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    rc = (long)len;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* Splits k->bodies into its URL<TAB>BODY lines (k->next, k->nbodies).
 * Returns 0 or -1. */
static int split_bodies(struct kind *k, long len)
{
    long n = 0, i;
    char *p = k->bodies;

    for (i = 0; i < len; i++)
        n += k->bodies[i] == '\n';
    if (len > 0 && k->bodies[len - 1] != '\n')
        n++;
    k->next = calloc(2 * (size_t)n + 2, sizeof(*k->next));
    if (k->next == NULL)
        return -1;
    while (k->nbodies < n) {
        char *nl = strchr(p, '\n');
        char *tab;

        if (nl != NULL)
            *nl = '\0';
        tab = strchr(p, '\t');
        if (tab == NULL)
            return -1;
        *tab = '\0';
        k->next[2 * k->nbodies] = p;
        k->next[2 * k->nbodies + 1] = tab + 1;
        k->nbodies++;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    k->quota = k->nbodies;
    return 0;
}

/* Parses one replay spec line (REQFILE, CONCURRENCY, VERSION, HEADER...)
 * into k and loads its bodies. Returns 0 or -1 (reason printed). */
static int parse_replay_line(char *line, struct kind *k)
{
    char *field[64];
    int nf = 0;
    char *p = line;
    long len;
    int i;

    for (;;) {
        char *tab = strchr(p, '\t');

        if (nf == (int)(sizeof(field) / sizeof(field[0])))
            return -1;
        field[nf++] = p;
        if (tab == NULL)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    if (nf < 3 || parse_count(field[1], MAX_CONCURRENCY, &k->conc) < 0)
        return -1;
    if (strcmp(field[2], "2") == 0)
        k->http2 = 1;
    else if (strcmp(field[2], "1.1") != 0)
        return -1;
    len = read_file(field[0], &k->bodies);
    if (len < 0 || split_bodies(k, len) < 0)
        return -1;
    for (i = 3; i < nf; i++) {
        if (field[i][0] != '\0' && add_header(k, field[i]) < 0)
            return -1;
    }
    return add_header(k, "Expect:");
}

/* Gives e the next request of k. */
static void replay_next(CURL *e, struct kind *k)
{
    const char *body = k->next[2 * k->started + 1];

    curl_easy_setopt(e, CURLOPT_URL, k->next[2 * k->started]);
    k->started++;
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
}

/* http_bare -r REPLAYSPEC [CAFILE]: every recorded request once, each kind
 * with its own handles. Returns the exit status. */
static int replay_main(const char *specpath, const char *cafile)
{
    struct kind kinds[MAX_KINDS];
    int nkinds = 0;
    FILE *f = NULL;
    char *line = NULL;
    CURLM *multi = NULL;
    CURL **easy = NULL;
    long total = 0, conc = 0, done = 0, failed = 0, ne = 0, retried = 0, non2xx = 0;
    double t0, secs;
    int i, rc = 2;

    memset(kinds, 0, sizeof(kinds));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    f = fopen(specpath, "r");
    line = malloc(MAX_SPEC_LINE);
    if (f == NULL || line == NULL) {
        fprintf(stderr, "http_bare: cannot open %s\n", specpath);
        goto out;
    }
    while (fgets(line, MAX_SPEC_LINE, f) != NULL) {
        size_t len = strlen(line);

        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (nkinds == MAX_KINDS || parse_replay_line(line, &kinds[nkinds]) < 0) {
            fprintf(stderr, "http_bare: %s: bad line %d "
                    "(REQFILE<TAB>CONCURRENCY<TAB>1.1|2[<TAB>HEADER...])\n",
                    specpath, nkinds + 1);
            kind_release(&kinds[nkinds]);
            goto out;
        }
        total += kinds[nkinds].nbodies;
        conc += kinds[nkinds].conc;
        nkinds++;
    }
    if (total == 0) {
        fprintf(stderr, "http_bare: %s: no requests\n", specpath);
        goto out;
    }
    multi = curl_multi_init();
    easy = calloc((size_t)conc, sizeof(*easy));
    if (multi == NULL || easy == NULL)
        goto out;
    for (i = 0; i < nkinds; i++) {
        long j;

        for (j = 0; j < kinds[i].conc; j++) {
            CURL *e = curl_easy_init();

            if (e == NULL)
                goto out;
            easy[ne++] = e;
            setup_handle(e, &kinds[i]);
            if (kinds[i].http2) {
                curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
                curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
            }
            if (cafile != NULL)
                curl_easy_setopt(e, CURLOPT_CAINFO, cafile);
        }
    }
    /* crier's connection cache holds every handle's connection */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conc);

    t0 = now_s();
    for (i = 0; i < ne; i++) {
        struct kind *k = NULL;

        curl_easy_getinfo(easy[i], CURLINFO_PRIVATE, (char **)&k);
        if (k->started < k->quota) {
            replay_next(easy[i], k);
            curl_multi_add_handle(multi, easy[i]);
        }
    }
    while (done < total) {
        CURLMsg *m;
        int running = 0;
        int left;

        curl_multi_perform(multi, &running);
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            CURL *e = m->easy_handle;
            struct kind *k = NULL;
            long status = 0;

            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&k);
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_multi_remove_handle(multi, e);
            if (m->data.result != CURLE_OK && retried < total / 10 + 10) {
                /* a connection the server closed under the request (an HTTP/2
                 * GOAWAY, say): sent again on the same handle, as crier retries */
                retried++;
                curl_multi_add_handle(multi, e);
                continue;
            }
            if (m->data.result != CURLE_OK) {
                if (failed < 5)
                    fprintf(stderr, "request failed: %s\n", curl_easy_strerror(m->data.result));
                failed++;
            } else if (status < 200 || status > 299) {
                non2xx++; /* the simulator's answer to what crier sent: part of the work */
            }
            done++;
            k->done++;
            if (k->started < k->quota) {
                replay_next(e, k);
                curl_multi_add_handle(multi, e);
            }
        }
        if (done < total)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    secs = now_s() - t0;
    printf("{\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.1f,\"retried\":%ld,"
           "\"non_2xx\":%ld,\"kinds\":[",
           total, secs, secs > 0 ? (double)total / secs : 0.0, retried, non2xx);
    for (i = 0; i < nkinds; i++)
        printf("%s%ld", i ? "," : "", kinds[i].done);
    printf("]}\n");
    if (failed)
        fprintf(stderr, "%ld of %ld requests failed\n", failed, total);
    rc = failed ? 1 : 0;
out:
    for (i = 0; i < ne; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    if (multi)
        curl_multi_cleanup(multi);
    for (i = 0; i < nkinds; i++)
        kind_release(&kinds[i]);
    free(line);
    if (f)
        fclose(f);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    struct kind kinds[MAX_KINDS];
    int nkinds = 0;
    long total, conc;
    long done = 0, failed = 0;
    CURLM *multi = NULL;
    CURL **easy = NULL;
    double t0, secs;
    int spec = argc >= 2 && strcmp(argv[1], "-f") == 0;
    int a = spec ? 3 : 2; /* index of REQUESTS */
    int i;
    int rc = 2;

    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "-r") == 0)
        return replay_main(argv[2], argc == 4 ? argv[3] : NULL);
    memset(kinds, 0, sizeof(kinds));
    if (argc < a + 2 || (spec && argc != 5) || parse_count(argv[a], MAX_REQUESTS, &total) < 0 ||
        parse_count(argv[a + 1], MAX_CONCURRENCY, &conc) < 0) {
        fprintf(stderr,
                "usage: %s URL REQUESTS CONCURRENCY [BODY [HEADER...]]\n"
                "       %s -f SPECFILE REQUESTS CONCURRENCY\n",
                argv[0], argv[0]);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    if (spec) {
        nkinds = read_spec(argv[2], kinds);
        if (nkinds < 0) {
            nkinds = 0;
            goto out;
        }
    } else {
        nkinds = 1;
        kinds[0].url = dup_n(argv[1], strlen(argv[1]));
        kinds[0].body = dup_n(argc > 4 ? argv[4] : "", strlen(argc > 4 ? argv[4] : ""));
        if (kinds[0].url == NULL || kinds[0].body == NULL)
            goto out;
        for (i = 5; i < argc; i++) {
            if (add_header(&kinds[0], argv[i]) < 0)
                goto out;
        }
    }
    for (i = 0; i < nkinds; i++) {
        /* No 100-continue round trip, as crier does. */
        if (add_header(&kinds[i], "Expect:") < 0)
            goto out;
        kinds[i].quota = total / nkinds + (i < total % nkinds ? 1 : 0);
    }
    if (conc > total)
        conc = total;
    if (conc < nkinds)
        conc = nkinds;
    multi = curl_multi_init();
    easy = calloc((size_t)conc, sizeof(*easy));
    if (multi == NULL || easy == NULL)
        goto out;
    for (i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();

        if (e == NULL)
            goto out;
        easy[i] = e;
        setup_handle(e, &kinds[i % nkinds]);
    }

    t0 = now_s();
    for (i = 0; i < conc; i++) {
        struct kind *k = &kinds[i % nkinds];

        if (k->started < k->quota) {
            curl_multi_add_handle(multi, easy[i]);
            k->started++;
        }
    }
    while (done < total) {
        CURLMsg *m;
        int running = 0;
        int left;

        curl_multi_perform(multi, &running);
        for (;;) {
            m = curl_multi_info_read(multi, &left);
            if (m == NULL)
                break;
            if (m->msg == CURLMSG_DONE) {
                CURL *e = m->easy_handle;
                struct kind *k = NULL;
                long status = 0;

                curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&k);
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                if (m->data.result != CURLE_OK || status < 200 || status > 299) {
                    if (failed < 5)
                        fprintf(stderr, "request failed: %s, HTTP %ld\n",
                                curl_easy_strerror(m->data.result), status);
                    failed++;
                }
                done++;
                k->done++;
                /* Removing and re-adding keeps the connection in the multi's cache. */
                curl_multi_remove_handle(multi, e);
                if (k->started < k->quota) {
                    curl_multi_add_handle(multi, e);
                    k->started++;
                }
            }
        }
        if (done < total)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    secs = now_s() - t0;
    printf("{\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.1f,\"kinds\":[", total, secs,
           secs > 0 ? (double)total / secs : 0.0);
    for (i = 0; i < nkinds; i++)
        printf("%s%ld", i ? "," : "", kinds[i].done);
    printf("]}\n");
    if (failed)
        fprintf(stderr, "%ld of %ld requests failed\n", failed, total);
    rc = failed ? 1 : 0;
out:
    if (easy) {
        for (i = 0; i < conc; i++) {
            if (easy[i]) {
                curl_multi_remove_handle(multi, easy[i]);
                curl_easy_cleanup(easy[i]);
            }
        }
        free(easy);
    }
    if (multi)
        curl_multi_cleanup(multi);
    for (i = 0; i < nkinds; i++)
        kind_release(&kinds[i]);
    curl_global_cleanup();
    return rc;
}
