/* The benchmark's baseline: a bare libcurl multi loop with keep-alive, no crier
 * code, sending N POSTs with C in flight; crier's throughput is measured
 * against this upper bound. Build by hand:
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -o build/http_bare bench/http_bare.c $(pkg-config --cflags --libs libcurl)
 * Run: http_bare URL REQUESTS CONCURRENCY [BODY [HEADER...]]
 * Prints {"requests":N,"seconds":S,"rps":R}; exits 1 when any request failed. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CONCURRENCY 10000
#define MAX_REQUESTS 100000000L

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

int main(int argc, char **argv)
{
    const char *url;
    const char *body = "";
    long total, conc;
    long started = 0, done = 0, failed = 0;
    struct curl_slist *headers = NULL;
    CURLM *multi = NULL;
    CURL **easy = NULL;
    double t0, secs;
    int i;
    int rc = 2;

    if (argc < 4 || parse_count(argv[2], MAX_REQUESTS, &total) < 0 ||
        parse_count(argv[3], MAX_CONCURRENCY, &conc) < 0) {
        fprintf(stderr, "usage: %s URL REQUESTS CONCURRENCY [BODY [HEADER...]]\n", argv[0]);
        return 2;
    }
    url = argv[1];
    if (argc > 4)
        body = argv[4];
    if (conc > total)
        conc = total;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    for (i = 5; i < argc; i++) {
        struct curl_slist *n = curl_slist_append(headers, argv[i]);

        if (n == NULL)
            goto out;
        headers = n;
    }
    {
        /* No 100-continue round trip, as crier does. */
        struct curl_slist *n = curl_slist_append(headers, "Expect:");

        if (n == NULL)
            goto out;
        headers = n;
    }
    multi = curl_multi_init();
    easy = calloc((size_t)conc, sizeof(*easy));
    if (multi == NULL || easy == NULL)
        goto out;
    for (i = 0; i < conc; i++) {
        CURL *e = curl_easy_init();

        if (e == NULL)
            goto out;
        easy[i] = e;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    }

    t0 = now_s();
    for (i = 0; i < conc; i++) {
        curl_multi_add_handle(multi, easy[i]);
        started++;
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
                long status = 0;

                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                if (m->data.result != CURLE_OK || status < 200 || status > 299) {
                    if (failed < 5)
                        fprintf(stderr, "request failed: %s, HTTP %ld\n",
                                curl_easy_strerror(m->data.result), status);
                    failed++;
                }
                done++;
                /* Removing and re-adding keeps the connection in the multi's cache. */
                curl_multi_remove_handle(multi, e);
                if (started < total) {
                    curl_multi_add_handle(multi, e);
                    started++;
                }
            }
        }
        if (done < total)
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    secs = now_s() - t0;
    printf("{\"requests\":%ld,\"seconds\":%.3f,\"rps\":%.1f}\n", total, secs,
           secs > 0 ? (double)total / secs : 0.0);
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
    curl_slist_free_all(headers);
    curl_global_cleanup();
    return rc;
}
