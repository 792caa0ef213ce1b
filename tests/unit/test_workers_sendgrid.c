/* The SendGrid adapter: config checks, the exact mail/send request, and the
 * classification table of its answers. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"

#define SG_PATH "providers.sendgrid"

static const char sg_conf[] = "{\"api_key\":\"SG.test-key\",\"from_email\":\"alerts@police.example\","
                              "\"from_name\":\"Police Alerts\",\"reply_to\":\"help@police.example\"}";

static const struct cr_provider_ops *sg_ops(void)
{
    return cr_provider_find("sendgrid");
}

/* Runs init on the config text; returns its code and fills err. */
static int sg_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    cJSON *cfg = cJSON_Parse(conf);
    int rc;

    err[0] = '\0';
    rc = sg_ops()->init(cfg, base, SG_PATH, state, err, errlen);
    cJSON_Delete(cfg);
    return rc;
}

static void req_init(struct cr_request *req)
{
    memset(req, 0, sizeof(*req));
    snprintf(req->method, sizeof(req->method), "GET");
    cr_buf_init(&req->url, 4096);
    cr_buf_init(&req->body, 1 << 20);
}

static void req_release(struct cr_request *req)
{
    cr_buf_release(&req->url);
    cr_buf_release(&req->body);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
}

static int has_header(const struct cr_request *req, const char *line)
{
    const struct curl_slist *h;

    for (h = req->headers; h != NULL; h = h->next) {
        if (strcmp(h->data, line) == 0)
            return 1;
    }
    return 0;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static struct cr_message sample(void)
{
    struct cr_message m;

    memset(&m, 0, sizeof(m));
    m.job_id = "appeal-17";
    m.sub_id = "10442";
    m.ref = "appeal-17/4/email";
    m.channel = CR_CH_EMAIL;
    m.priority = CR_PRIO_URGENT;
    m.address = "resident@example.org";
    m.subject = "Missing person: can you help?";
    m.text = "Hello Sam, we are looking for ...";
    m.html = "<p>Hello Sam, we are looking for ...</p>";
    m.sender_name = "PC Jane Smith";
    return m;
}

TEST(workers_sendgrid_config_errors)
{
    static const struct {
        const char *conf;
        const char *err;
    } cases[] = {
        {"{\"from_email\":\"a@b.example\"}", SG_PATH ".api_key: is required"},
        {"{\"api_key\":7,\"from_email\":\"a@b.example\"}", SG_PATH ".api_key: must be a string"},
        {"{\"api_key\":\"\",\"from_email\":\"a@b.example\"}", SG_PATH ".api_key: must not be empty"},
        {"{\"api_key\":\"k\"}", SG_PATH ".from_email: is required"},
        {"{\"api_key\":\"k\",\"from_email\":\"alerts.example\"}",
         SG_PATH ".from_email: must be an email address"},
        {"{\"api_key\":\"k\",\"from_email\":\"a@b.example\\r\\nBcc: x@y.example\"}",
         SG_PATH ".from_email: must not contain CR or LF"},
        {"{\"api_key\":\"k\",\"from_email\":\"a@b.example\",\"from_name\":\"A\\nB\"}",
         SG_PATH ".from_name: must not contain CR or LF"},
        {"{\"api_key\":\"k\",\"from_email\":\"a@b.example\",\"reply_to\":\"nobody\"}",
         SG_PATH ".reply_to: must be an email address"},
        {"{\"api_key\":\"k\\r\\nX: y\",\"from_email\":\"a@b.example\"}",
         SG_PATH ".api_key: must not contain CR or LF"},
        {"[]", SG_PATH ": must be an object"},
    };
    size_t i;
    char err[256];
    void *state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        state = (void *)1;
        ASSERT_INT_EQ(sg_init(cases[i].conf, "https://api.sendgrid.com", &state, err,
                              sizeof(err)),
                      CR_ECONFIG);
        ASSERT(state == NULL);
        ASSERT_STR_CONTAINS(err, cases[i].err);
    }
    ASSERT_INT_EQ(sg_init(sg_conf, NULL, &state, err, sizeof(err)), CR_ECONFIG);
    ASSERT_STR_EQ(err, SG_PATH ".url: is required");
    ASSERT_INT_EQ(sg_init(sg_conf, "https://api.sendgrid.com", &state, err, sizeof(err)), 0);
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_table_entry)
{
    const struct cr_provider_ops *ops = sg_ops();
    size_t n = 0;

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "sendgrid");
    ASSERT_INT_EQ(ops->channel, CR_CH_EMAIL);
    ASSERT_INT_EQ(ops->max_batch, 1000);
    ASSERT(ops->flags & CR_PROVIDER_SUBST);
    while (ops->keys[n] != NULL)
        n++;
    ASSERT_INT_EQ(n, 4);
    ASSERT_STR_EQ(ops->keys[0], "api_key");
    ASSERT_STR_EQ(ops->keys[3], "reply_to");
}

TEST(workers_sendgrid_build_request)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc = NULL;
    const cJSON *p, *to, *args, *from, *content, *part;

    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000/", &state, err, sizeof(err)), 0);
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    ASSERT_STR_EQ(req.method, "POST");
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "http://127.0.0.1:9000/v3/mail/send");
    ASSERT(has_header(&req, "Authorization: Bearer SG.test-key"));
    ASSERT(has_header(&req, "Content-Type: application/json"));
    ASSERT(req.userpwd == NULL);

    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "personalizations")), 1);
    p = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "personalizations"), 0);
    to = cJSON_GetObjectItem(p, "to");
    ASSERT_INT_EQ(cJSON_GetArraySize(to), 1);
    ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(to, 0), "email"), "resident@example.org");
    args = cJSON_GetObjectItem(p, "custom_args");
    ASSERT_STR_EQ(jstr(args, "crier_ref"), "appeal-17/4/email");
    ASSERT_STR_EQ(jstr(args, "crier_job"), "appeal-17");
    from = cJSON_GetObjectItem(doc, "from");
    ASSERT_STR_EQ(jstr(from, "email"), "alerts@police.example");
    ASSERT_STR_EQ(jstr(from, "name"), "PC Jane Smith");
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(doc, "reply_to"), "email"), "help@police.example");
    ASSERT_STR_EQ(jstr(doc, "subject"), "Missing person: can you help?");
    content = cJSON_GetObjectItem(doc, "content");
    ASSERT_INT_EQ(cJSON_GetArraySize(content), 2);
    part = cJSON_GetArrayItem(content, 0);
    ASSERT_STR_EQ(jstr(part, "type"), "text/plain");
    ASSERT_STR_EQ(jstr(part, "value"), "Hello Sam, we are looking for ...");
    part = cJSON_GetArrayItem(content, 1);
    ASSERT_STR_EQ(jstr(part, "type"), "text/html");
    ASSERT_STR_EQ(jstr(part, "value"), "<p>Hello Sam, we are looking for ...</p>");
    cJSON_Delete(doc);
    doc = NULL;
    req_release(&req);

    /* No sender name: the configured from_name; no HTML: one text part. */
    m.sender_name = NULL;
    m.html = NULL;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(doc, "from"), "name"), "Police Alerts");
    content = cJSON_GetObjectItem(doc, "content");
    ASSERT_INT_EQ(cJSON_GetArraySize(content), 1);
    ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(content, 0), "type"), "text/plain");
    cJSON_Delete(doc);
    req_release(&req);

    /* Only HTML. */
    m.text = NULL;
    m.html = "<p>x</p>";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    content = cJSON_GetObjectItem(doc, "content");
    ASSERT_INT_EQ(cJSON_GetArraySize(content), 1);
    ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(content, 0), "type"), "text/html");
    cJSON_Delete(doc);
    req_release(&req);
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_build_batch)
{
    struct cr_message a = sample();
    struct cr_message b = sample();
    const struct cr_message *msgs[2] = {&a, &b};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;
    const cJSON *pers;

    b.address = "neighbour@example.org";
    b.ref = "appeal-17/5/email";
    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    pers = cJSON_GetObjectItem(doc, "personalizations");
    ASSERT_INT_EQ(cJSON_GetArraySize(pers), 2);
    ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "to"), 0),
                       "email"),
                  "neighbour@example.org");
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "custom_args"), "crier_ref"),
                  "appeal-17/5/email");
    ASSERT_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "content")), 2);
    /* what a request for one carries, a request for many carries too */
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(doc, "from"), "name"), "PC Jane Smith");
    ASSERT_STR_EQ(
        jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "custom_args"), "crier_job"),
        "appeal-17");
    ASSERT_STR_EQ(
        jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "custom_args"), "crier_job"),
        "appeal-17");
    cJSON_Delete(doc);
    req_release(&req);

    /* from is the request's: messages with different senders cannot share it */
    b.sender_name = "PC John Doe";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    req_release(&req);
    b.sender_name = NULL;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    req_release(&req);
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_refuses_header_injection)
{
    struct cr_message m;
    const struct cr_message *msgs[1] = {&m};
    struct cr_request req;
    char err[256];
    void *state = NULL;

    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);

    m = sample();
    m.subject = "Appeal\r\nBcc: everyone@example.org";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);

    m = sample();
    m.sender_name = "PC Smith\nX-Evil: 1";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);

    m = sample();
    m.address = "resident@example.org\r";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);

    m = sample();
    m.address = NULL;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);

    m = sample();
    m.text = NULL;
    m.html = NULL;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);

    /* An unsubscribe URL that could end the header or the <...> list. */
    m = sample();
    m.unsubscribe_url = "https://alerts.example/u/1\r\nBcc: x@example.org";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);
    m.unsubscribe_url = "https://alerts.example/u/1>, <mailto:x@example.org";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);
    m.unsubscribe_url = "javascript:alert(1)";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_EINVAL);
    req_release(&req);
    /* The scheme in capitals is the same URL, as the SMTP adapter takes it. */
    m.unsubscribe_url = "HTTPS://alerts.example/u/1";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    req_release(&req);

    /* A body over the request's cap is a defined error. */
    m = sample();
    req_init(&req);
    req.body.max = 64;
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), CR_ETOOBIG);
    req_release(&req);
    sg_ops()->free_state(state);
}

struct row {
    long status;
    const char *headers;
    const char *body;
    enum cr_outcome outcome;
    const char *code;
    int64_t retry_after_ms;
    const char *provider_id;
    const char *detail; /* a part the detail must contain */
};

static const struct row sg_rows[] = {
    {202, "HTTP/1.1 202 Accepted\r\nX-Message-Id: 14c5d75ce93.dfd.64b469.filter0001\r\n", "",
     CR_OUT_SENT, "202", -1, "14c5d75ce93.dfd.64b469.filter0001", "accepted"},
    {200, "x-message-id: abc\r\n", "{}", CR_OUT_SENT, "200", -1, "abc", "accepted"},
    {202, "", "\x01garbage", CR_OUT_SENT, "202", -1, "", "accepted"},
    {400, "",
     "{\"errors\":[{\"message\":\"Does not contain a valid address.\","
     "\"field\":\"personalizations.0.to.0.email\",\"help\":null},{\"message\":\"second\"}]}",
     CR_OUT_FAILED, "400", -1, "",
     "Does not contain a valid address. (field personalizations.0.to.0.email)"},
    {400, "", "{\"errors\":[{\"message\":\"The subject is required.\"}]}", CR_OUT_FAILED, "400",
     -1, "", "The subject is required."},
    {400, "", "<html>Bad Request</html>", CR_OUT_FAILED, "400", -1, "", "body unreadable"},
    {401, "", "{\"errors\":[{\"message\":\"The provided authorization grant is invalid\"}]}",
     CR_OUT_RETRY, "401", -1, "", "auth rejected"},
    {403, "", "{\"errors\":[{\"message\":\"access forbidden\"}]}", CR_OUT_RETRY, "403", -1, "",
     "check the api_key"},
    {413, "", "{\"errors\":[{\"message\":\"too big\"}]}", CR_OUT_FAILED, "413", -1, "",
     "too large"},
    {429, "Retry-After: 30\r\n", "{\"errors\":[{\"message\":\"too many requests\"}]}",
     CR_OUT_RETRY, "429", 30000, "", "rate limited"},
    {429, "", "", CR_OUT_RETRY, "429", -1, "", "body unreadable"},
    {429, "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", "", CR_OUT_RETRY, "429", 0, "",
     "rate limited"},
    {500, "", "{\"errors\":[{\"message\":\"internal\"}]}", CR_OUT_RETRY, "500", -1, "",
     "internal"},
    {503, "Retry-After: 2\r\n", "<html>down</html>", CR_OUT_RETRY, "503", 2000, "",
     "body unreadable"},
    {404, "", "{\"errors\":[]}", CR_OUT_FAILED, "404", -1, "", "HTTP 404"},
    {302, "Location: /x\r\n", "", CR_OUT_FAILED, "302", -1, "", "unexpected answer"},
    {400, "", "{\"errors\":\"nope\"}", CR_OUT_FAILED, "400", -1, "", "no errors[]"},
    {400, "", "[1,2,3]", CR_OUT_FAILED, "400", -1, "", "no errors[]"},
};

/* Describes the first difference between r and the expected row, or returns 0. */
static int row_differs(size_t i, const struct row *want, const struct cr_result *got)
{
    if (got->outcome == want->outcome && strcmp(got->code, want->code) == 0 &&
        got->retry_after_ms == want->retry_after_ms &&
        strcmp(got->provider_id, want->provider_id) == 0 &&
        strstr(got->detail, want->detail) != NULL)
        return 0;
    fprintf(stderr,
            "  row %zu (HTTP %ld): got outcome %d code \"%s\" retry %lld id \"%s\" detail \"%s\"; "
            "want %d \"%s\" %lld \"%s\" \"...%s...\"\n",
            i, want->status, (int)got->outcome, got->code, (long long)got->retry_after_ms,
            got->provider_id, got->detail, (int)want->outcome, want->code,
            (long long)want->retry_after_ms, want->provider_id, want->detail);
    return 1;
}

TEST(workers_sendgrid_classify_table)
{
    struct cr_message m = sample();
    const struct cr_message *msgs[1] = {&m};
    char err[256];
    void *state = NULL;
    size_t i;
    int bad = 0;

    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    for (i = 0; i < sizeof(sg_rows) / sizeof(sg_rows[0]); i++) {
        struct cr_response resp;
        struct cr_result res;

        memset(&resp, 0, sizeof(resp));
        memset(&res, 0x55, sizeof(res));
        resp.status = sg_rows[i].status;
        resp.headers = sg_rows[i].headers;
        resp.body = sg_rows[i].body;
        resp.body_len = strlen(sg_rows[i].body);
        sg_ops()->classify(state, msgs, 1, &resp, &res);
        bad += row_differs(i, &sg_rows[i], &res);
    }
    sg_ops()->free_state(state);
    ASSERT_INT_EQ(bad, 0);
}

TEST(workers_sendgrid_classify_batch_and_retry_after_field)
{
    struct cr_message a = sample();
    struct cr_message b = sample();
    const struct cr_message *msgs[2] = {&a, &b};
    struct cr_response resp;
    struct cr_result res[2];
    char err[256];
    void *state = NULL;

    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    memset(&resp, 0, sizeof(resp));
    resp.status = 429;
    resp.body = "";
    resp.retry_after = "4";
    resp.headers = "Retry-After: 99\r\n";
    sg_ops()->classify(state, msgs, 2, &resp, res);
    ASSERT_INT_EQ(res[0].outcome, CR_OUT_RETRY);
    ASSERT_INT_EQ(res[0].retry_after_ms, 4000);
    ASSERT_INT_EQ(res[1].outcome, CR_OUT_RETRY);
    ASSERT_INT_EQ(res[1].retry_after_ms, 4000);
    ASSERT_STR_EQ(res[1].code, "429");
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_list_unsubscribe_per_personalization)
{
    struct cr_message a = sample();
    struct cr_message b = sample();
    const struct cr_message *msgs[2] = {&a, &b};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;
    const cJSON *pers, *h;

    a.unsubscribe_url = "https://alerts.example/u/aaa?sig=1";
    b.address = "neighbour@example.org";
    b.ref = "appeal-17/5/email";
    b.unsubscribe_url = "https://alerts.example/u/bbb?sig=2";
    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);

    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    pers = cJSON_GetObjectItem(doc, "personalizations");
    h = cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "headers");
    ASSERT_INT_EQ(cJSON_GetArraySize(h), 2);
    ASSERT_STR_EQ(jstr(h, "List-Unsubscribe"), "<https://alerts.example/u/aaa?sig=1>");
    ASSERT_STR_EQ(jstr(h, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    ASSERT(cJSON_GetObjectItem(doc, "headers") == NULL); /* not message-wide */
    cJSON_Delete(doc);
    req_release(&req);

    /* In a batch each personalization carries its own link. */
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    pers = cJSON_GetObjectItem(doc, "personalizations");
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "headers"),
                       "List-Unsubscribe"),
                  "<https://alerts.example/u/aaa?sig=1>");
    ASSERT_STR_EQ(jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "headers"),
                       "List-Unsubscribe"),
                  "<https://alerts.example/u/bbb?sig=2>");
    cJSON_Delete(doc);
    req_release(&req);

    /* Without a link there are no headers; a bad link anywhere in a batch
     * refuses the batch. */
    a.unsubscribe_url = NULL;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 1, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    pers = cJSON_GetObjectItem(doc, "personalizations");
    ASSERT(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "headers") == NULL);
    cJSON_Delete(doc);
    req_release(&req);
    b.unsubscribe_url = "https://alerts.example/u/b\nX: 1";
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    req_release(&req);
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_substitutions_per_personalization)
{
    static const struct cr_subst sa[] = {{"-crier-t-0-", "Tom & Jerry"},
                                         {"-crier-h-0-", "Tom &amp; Jerry"}};
    static const struct cr_subst sb[] = {{"-crier-t-0-", "Ann"}, {"-crier-h-0-", "Ann"}};
    static const struct cr_subst bad[] = {{"-crier-t-0-", "Ann\r\nBcc: x@example.org"},
                                          {"-crier-h-0-", "Ann"}};
    static const struct cr_message *many[1001];
    struct cr_message a = sample();
    struct cr_message b = sample();
    const struct cr_message *msgs[2] = {&a, &b};
    struct cr_request req;
    char err[256];
    void *state = NULL;
    cJSON *doc;
    const cJSON *pers;
    const cJSON *subs;
    size_t i;

    a.subject = b.subject = "Flood warning, -crier-t-0-";
    a.text = b.text = "Hello -crier-t-0-";
    a.html = b.html = "<p>Hello -crier-h-0-</p>";
    a.subst = sa;
    a.nsubst = 2;
    b.subst = sb;
    b.nsubst = 2;
    b.address = "neighbour@example.org";
    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_STR_EQ(jstr(doc, "subject"), "Flood warning, -crier-t-0-");
    pers = cJSON_GetObjectItem(doc, "personalizations");
    subs = cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "substitutions");
    ASSERT_INT_EQ(cJSON_GetArraySize(subs), 2);
    ASSERT_STR_EQ(jstr(subs, "-crier-t-0-"), "Tom & Jerry");
    ASSERT_STR_EQ(jstr(subs, "-crier-h-0-"), "Tom &amp; Jerry");
    subs = cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "substitutions");
    ASSERT_STR_EQ(jstr(subs, "-crier-t-0-"), "Ann");
    cJSON_Delete(doc);
    req_release(&req);

    /* without substitutions a personalization has none */
    b.subst = NULL;
    b.nsubst = 0;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    pers = cJSON_GetObjectItem(doc, "personalizations");
    ASSERT(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "substitutions") == NULL);
    cJSON_Delete(doc);
    req_release(&req);

    /* a value substituted into the subject must not carry a header */
    b.subst = bad;
    b.nsubst = 2;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, msgs, 2, &req), CR_EINVAL);
    req_release(&req);

    /* at most 1,000 personalizations per request */
    a = sample();
    for (i = 0; i < 1001; i++)
        many[i] = &a;
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, many, 1000, &req), 0);
    req_release(&req);
    req_init(&req);
    ASSERT_INT_EQ(sg_ops()->build(state, many, 1001, &req), CR_EINVAL);
    req_release(&req);
    sg_ops()->free_state(state);
}

TEST(workers_sendgrid_classify_batch_blames_the_named_personalization)
{
    struct cr_message a = sample();
    const struct cr_message *msgs[3] = {&a, &a, &a};
    struct cr_response resp;
    struct cr_result res[3];
    char err[256];
    void *state = NULL;

    ASSERT_INT_EQ(sg_init(sg_conf, "http://127.0.0.1:9000", &state, err, sizeof(err)), 0);
    memset(&resp, 0, sizeof(resp));
    resp.status = 400;
    resp.body = "{\"errors\":[{\"message\":\"Does not contain a valid address.\","
                "\"field\":\"personalizations.1.to.0.email\"}]}";
    resp.body_len = strlen(resp.body);
    resp.headers = "";
    sg_ops()->classify(state, msgs, 3, &resp, res);
    ASSERT_INT_EQ(res[1].outcome, CR_OUT_FAILED);
    ASSERT_STR_CONTAINS(res[1].detail, "valid address");
    ASSERT_INT_EQ(res[0].outcome, CR_OUT_RESEND);
    ASSERT_INT_EQ(res[2].outcome, CR_OUT_RESEND);
    ASSERT_STR_CONTAINS(res[2].detail, "personalization 1");

    /* no personalization named, or one out of range: the same for all */
    resp.body = "{\"errors\":[{\"message\":\"The subject is required.\",\"field\":\"subject\"}]}";
    resp.body_len = strlen(resp.body);
    sg_ops()->classify(state, msgs, 3, &resp, res);
    ASSERT_INT_EQ(res[0].outcome, CR_OUT_FAILED);
    ASSERT_INT_EQ(res[2].outcome, CR_OUT_FAILED);
    resp.body = "{\"errors\":[{\"message\":\"x\",\"field\":\"personalizations.7.to.0.email\"}]}";
    resp.body_len = strlen(resp.body);
    sg_ops()->classify(state, msgs, 3, &resp, res);
    ASSERT_INT_EQ(res[0].outcome, CR_OUT_FAILED);
    /* alone: failed */
    sg_ops()->classify(state, msgs, 1, &resp, res);
    ASSERT_INT_EQ(res[0].outcome, CR_OUT_FAILED);
    sg_ops()->free_state(state);
}
