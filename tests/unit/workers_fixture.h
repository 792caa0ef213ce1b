/* Fixtures shared by the provider adapter tests (test_workers_*.c): running an
 * adapter's init on a config, building one message, reading the request's
 * headers, the sample messages, and the classification-table runner. */
#ifndef CR_TEST_WORKERS_FIXTURE_H
#define CR_TEST_WORKERS_FIXTURE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_provider.h"

/* Runs ops->init on cfg (owned: freed here; NULL is passed on as NULL) with
 * base URL and config path. err is "" unless init wrote a reason. Returns
 * init's code. */
int cr_test_provider_init(const struct cr_provider_ops *ops, cJSON *cfg, const char *base,
                          const char *path, void **state, char *err, size_t errlen);

/* Asserts, on behalf of the calling test, that ops->init refuses cfg (owned)
 * with CR_ECONFIG, sets the state to NULL and gives a reason containing want.
 * Use through ASSERT_CONFIG_REFUSED, which ends the test on a failure. */
void cr_test_config_refused(int *cr_test_failed, const struct cr_provider_ops *ops, cJSON *cfg,
                            const char *base, const char *path, const char *want);

#define ASSERT_CONFIG_REFUSED(ops, cfg, base, path, want)                                          \
    do {                                                                                           \
        cr_test_config_refused(cr_test_failed, ops, cfg, base, path, want);                        \
        if (*cr_test_failed)                                                                       \
            return;                                                                                \
    } while (0)

/* Merges the members of the JSON object text extra (when not NULL) into obj,
 * replacing members of the same name, then removes member drop (when not NULL). */
void cr_test_json_patch(cJSON *obj, const char *extra, const char *drop);

/* Initialises req as the dispatcher would but with method "GET", so that a
 * test sees the method build sets: url cap 4096, body cap 1 MiB. Release it
 * with cr_test_req_release. */
void cr_test_req_init(struct cr_request *req);

/* Frees what cr_test_req_init and a build put in req. */
void cr_test_req_release(struct cr_request *req);

/* Initialises req (cr_request_init, 1 MiB body cap) with req->now_ms = now_ms
 * and runs ops->build for the one message m. Returns build's code; the caller
 * releases req with cr_request_release either way. */
int cr_test_build_one(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                      int64_t now_ms, struct cr_request *req);

/* Whether one of req's header lines is exactly line. */
int cr_test_has_header(const struct cr_request *req, const char *line);

/* The value of header name in req ("name: value", name matched exactly), or NULL. */
const char *cr_test_header(const struct cr_request *req, const char *name);

/* How many header lines req has. */
int cr_test_nheaders(const struct cr_request *req);

/* A message of job "appeal-17" with reference "appeal-17/4/<channel>",
 * priority urgent, to address on channel; every other field zero. */
struct cr_message cr_test_message(enum cr_channel ch, const char *address);

/* A push (cr_test_message) for platform, titled "Police appeal", with body. */
struct cr_message cr_test_push(const char *platform, const char *address, const char *body);

/* Classifies, with ops and state, a response to the one message m: status,
 * header lines (headers), the Retry-After value the transport found
 * (retry_after, or NULL) and body (all borrowed). Fills res. */
void cr_test_classify(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                      long status, const char *headers, const char *retry_after, const char *body,
                      struct cr_result *res);

/* One line of a classification table: a response and the result it must give. */
struct cr_test_row {
    long status;
    const char *headers;     /* header lines, "" for none */
    const char *retry_after; /* the transport's Retry-After value, or NULL */
    const char *body;
    enum cr_outcome outcome;
    const char *code;
    int64_t retry_after_ms;
    const char *provider_id;
    const char *detail; /* a part the detail must contain; NULL: any, but not empty */
};

/* Classifies row (number i, for the message) as cr_test_classify does and
 * compares every field. Returns 0 when the result matches, or 1 after printing
 * what was got and what was wanted. */
int cr_test_row_differs(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                        const struct cr_test_row *row, size_t i);

/* The number of the n rows that differ (each printed; see cr_test_row_differs). */
size_t cr_test_rows_differing(const struct cr_provider_ops *ops, void *state,
                              const struct cr_message *m, const struct cr_test_row *rows, size_t n);

#endif
