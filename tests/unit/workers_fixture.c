/* Fixtures shared by the provider adapter tests (see workers_fixture.h); the
 * unit test runner links every C file beside it, so this file defines no TEST. */
#include "workers_fixture.h"

#include <stdio.h>
#include <string.h>

#include "cr_error.h"
#include "http.h"
#include "test.h"

int cr_test_provider_init(const struct cr_provider_ops *ops, cJSON *cfg, const char *base,
                          const char *path, void **state, char *err, size_t errlen)
{
    int rc;

    err[0] = '\0';
    rc = ops->init(cfg, base, path, state, err, errlen);
    cJSON_Delete(cfg);
    return rc;
}

void cr_test_config_refused(int *cr_test_failed, const struct cr_provider_ops *ops, cJSON *cfg,
                            const char *base, const char *path, const char *want)
{
    char err[320];
    void *state = (void *)1;

    ASSERT_INT_EQ(cr_test_provider_init(ops, cfg, base, path, &state, err, sizeof(err)),
                  CR_ECONFIG);
    ASSERT(state == NULL);
    ASSERT_STR_CONTAINS(err, want);
}

void cr_test_json_patch(cJSON *obj, const char *extra, const char *drop)
{
    cJSON *e = extra ? cJSON_Parse(extra) : NULL;
    cJSON *it;

    cJSON_ArrayForEach(it, e)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, it->string);
        cJSON_AddItemToObject(obj, it->string, cJSON_Duplicate(it, 1));
    }
    cJSON_Delete(e);
    if (drop != NULL)
        cJSON_DeleteItemFromObjectCaseSensitive(obj, drop);
}

void cr_test_req_init(struct cr_request *req)
{
    memset(req, 0, sizeof(*req));
    snprintf(req->method, sizeof(req->method), "GET");
    cr_buf_init(&req->url, 4096);
    cr_buf_init(&req->body, 1 << 20);
}

void cr_test_req_release(struct cr_request *req)
{
    cr_buf_release(&req->url);
    cr_buf_release(&req->body);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
}

int cr_test_build_one(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                      int64_t now_ms, struct cr_request *req)
{
    const struct cr_message *one = m;

    cr_request_init(req, 1 << 20);
    req->now_ms = now_ms;
    return ops->build(state, &one, 1, req);
}

int cr_test_has_header(const struct cr_request *req, const char *line)
{
    const struct curl_slist *h;

    for (h = req->headers; h != NULL; h = h->next) {
        if (strcmp(h->data, line) == 0)
            return 1;
    }
    return 0;
}

const char *cr_test_header(const struct cr_request *req, const char *name)
{
    const struct curl_slist *h;
    size_t n = strlen(name);

    for (h = req->headers; h != NULL; h = h->next) {
        if (strncmp(h->data, name, n) == 0 && h->data[n] == ':' && h->data[n + 1] == ' ')
            return h->data + n + 2;
    }
    return NULL;
}

int cr_test_nheaders(const struct cr_request *req)
{
    const struct curl_slist *h;
    int n = 0;

    for (h = req->headers; h != NULL; h = h->next)
        n++;
    return n;
}

struct cr_message cr_test_message(enum cr_channel ch, const char *address)
{
    struct cr_message m;

    memset(&m, 0, sizeof(m));
    m.job_id = "appeal-17";
    m.ref = ch == CR_CH_SMS    ? "appeal-17/4/sms"
            : ch == CR_CH_PUSH ? "appeal-17/4/push"
                               : "appeal-17/4/email";
    m.channel = ch;
    m.priority = CR_PRIO_URGENT;
    m.address = address;
    return m;
}

struct cr_message cr_test_push(const char *platform, const char *address, const char *body)
{
    struct cr_message m = cr_test_message(CR_CH_PUSH, address);

    m.platform = platform;
    m.push_title = "Police appeal";
    m.push_body = body;
    return m;
}

void cr_test_classify(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                      long status, const char *headers, const char *retry_after, const char *body,
                      struct cr_result *res)
{
    const struct cr_message *one = m;
    struct cr_response resp;

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.headers = headers;
    resp.retry_after = retry_after;
    resp.body = body;
    resp.body_len = strlen(body);
    ops->classify(state, &one, 1, &resp, res);
}

int cr_test_row_differs(const struct cr_provider_ops *ops, void *state, const struct cr_message *m,
                        const struct cr_test_row *row, size_t i)
{
    struct cr_result got;

    memset(&got, 0x55, sizeof(got));
    cr_test_classify(ops, state, m, row->status, row->headers, row->retry_after, row->body, &got);
    if (got.outcome == row->outcome && strcmp(got.code, row->code) == 0 &&
        got.retry_after_ms == row->retry_after_ms &&
        strcmp(got.provider_id, row->provider_id) == 0 &&
        (row->detail != NULL ? strstr(got.detail, row->detail) != NULL : got.detail[0] != '\0'))
        return 0;
    fprintf(
        stderr,
        "  row %zu (status %ld): got outcome %d code \"%s\" retry %lld id \"%s\" detail \"%s\"; "
        "want %d \"%s\" %lld \"%s\" \"...%s...\"\n",
        i, row->status, (int)got.outcome, got.code, (long long)got.retry_after_ms, got.provider_id,
        got.detail, (int)row->outcome, row->code, (long long)row->retry_after_ms, row->provider_id,
        row->detail != NULL ? row->detail : "(not empty)");
    return 1;
}

size_t cr_test_rows_differing(const struct cr_provider_ops *ops, void *state,
                              const struct cr_message *m, const struct cr_test_row *rows, size_t n)
{
    size_t i, bad = 0;

    for (i = 0; i < n; i++)
        bad += (size_t)cr_test_row_differs(ops, state, m, &rows[i], i);
    return bad;
}
