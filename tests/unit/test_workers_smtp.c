/* The SMTP adapter: config checks with key paths, the exact envelope, headers
 * and parts it asks for, header-injection refusals and the reply-code table. */
#include <stdlib.h>

#include "cr_error.h"
#include "config.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"

#define SMTP_PATH "providers.mail"
#define NOW_MS INT64_C(1795338000000) /* Sun, 22 Nov 2026 09:00:00 UTC */

static const char smtp_conf[] = "{\"from_email\":\"alerts@police.example\",\"from_name\":\"Police "
                                "Alerts\",\"username\":\"relay-user\",\"password\":\"pa:ss\"}";

static const struct cr_provider_ops *smtp_ops(void)
{
    return cr_provider_find("smtp");
}

static int smtp_init(const char *conf, const char *base, void **state, char *err, size_t errlen)
{
    cJSON *cfg = cJSON_Parse(conf);
    int rc;

    err[0] = '\0';
    rc = smtp_ops()->init(cfg, base, SMTP_PATH, state, err, errlen);
    cJSON_Delete(cfg);
    return rc;
}

/* The value of header name in req, or NULL. */
static const char *header(const struct cr_request *req, const char *name)
{
    const struct curl_slist *h;
    size_t n = strlen(name);

    for (h = req->headers; h != NULL; h = h->next) {
        if (strncmp(h->data, name, n) == 0 && h->data[n] == ':' && h->data[n + 1] == ' ')
            return h->data + n + 2;
    }
    return NULL;
}

static int nheaders(const struct cr_request *req)
{
    const struct curl_slist *h;
    int n = 0;

    for (h = req->headers; h != NULL; h = h->next)
        n++;
    return n;
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
    m.unsubscribe_url = "https://alerts.example/u/abc?sig=1";
    return m;
}

static int build(void *state, const struct cr_message *m, struct cr_request *req)
{
    const struct cr_message *one = m;

    cr_request_init(req, 1 << 20);
    req->now_ms = NOW_MS;
    return smtp_ops()->build(state, &one, 1, req);
}

TEST(workers_smtp_config_errors)
{
    static const struct {
        const char *conf;
        const char *url;
        const char *err;
    } cases[] = {
        {"{}", "smtp://mail.example:587", SMTP_PATH ".from_email: is required"},
        {"{\"from_email\":\"alerts.example\"}", "smtp://mail.example:587",
         SMTP_PATH ".from_email: must be a plain email address"},
        {"{\"from_email\":\"a@b.example\\r\\nBcc: x@y.example\"}", "smtp://mail.example",
         SMTP_PATH ".from_email: must be a plain email address"},
        {"{\"from_email\":\"a@b.example\",\"from_name\":\"A\\nB\"}", "smtp://mail.example",
         SMTP_PATH ".from_name: must not contain CR or LF"},
        {"{\"from_email\":\"a@b.example\",\"username\":\"u\"}", "smtp://mail.example",
         SMTP_PATH ".password: is required when username is set"},
        {"{\"from_email\":\"a@b.example\",\"password\":\"p\"}", "smtp://mail.example",
         SMTP_PATH ".username: is required when password is set"},
        {"{\"from_email\":\"a@b.example\",\"username\":\"u:x\",\"password\":\"p\"}",
         "smtp://mail.example", SMTP_PATH ".username: must not contain ':'"},
        {"{\"from_email\":\"a@b.example\",\"username\":\"u\",\"password\":\"p\\r\\n\"}",
         "smtp://mail.example", SMTP_PATH ".password: must not contain CR or LF"},
        {"{\"from_email\":\"a@b.example\",\"starttls\":\"yes\"}", "smtp://mail.example",
         SMTP_PATH ".starttls: must be true or false"},
        {"{\"from_email\":\"a@b.example\",\"helo\":\"bad host\"}", "smtp://mail.example",
         SMTP_PATH ".helo: must be a host name"},
        {"{\"from_email\":\"a@b.example\"}", "https://mail.example",
         SMTP_PATH ".url: must be smtp://host[:port] or smtps://host[:port]"},
        {"{\"from_email\":\"a@b.example\"}", "smtp://mail.example/path",
         SMTP_PATH ".url: must be smtp://host[:port] or smtps://host[:port]"},
        {"{\"from_email\":\"a@b.example\"}", "smtp://user@mail.example",
         SMTP_PATH ".url: must be smtp://host[:port]"},
        {"{\"from_email\":\"a@b.example\"}", NULL, SMTP_PATH ".url: is required"},
        {"[]", "smtp://mail.example", SMTP_PATH ": must be an object"},
    };
    size_t i;
    char err[256];
    void *state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        state = (void *)1;
        ASSERT_INT_EQ(smtp_init(cases[i].conf, cases[i].url, &state, err, sizeof(err)),
                      CR_ECONFIG);
        ASSERT(state == NULL);
        ASSERT_STR_CONTAINS(err, cases[i].err);
    }
    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtps://mail.example:465/", &state, err, sizeof(err)), 0);
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_table_entry)
{
    const struct cr_provider_ops *ops = smtp_ops();

    ASSERT(ops != NULL);
    ASSERT_STR_EQ(ops->type, "smtp");
    ASSERT_INT_EQ(ops->channel, CR_CH_EMAIL);
    ASSERT_INT_EQ(ops->max_batch, 1);
    ASSERT(ops->auth_request == NULL);
    ASSERT_INT_EQ(ops->flags, CR_PROVIDER_SMTP);
}

TEST(workers_smtp_build_request)
{
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example:587", &state, err, sizeof(err)), 0);
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_INT_EQ(req.transport, CR_TRANSPORT_SMTP);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "smtp://mail.example:587");
    ASSERT_INT_EQ(req.smtp_starttls, 1); /* the default on smtp:// */
    ASSERT_STR_EQ(req.userpwd, "relay-user:pa:ss");
    ASSERT_STR_EQ(req.mail_from, "alerts@police.example");
    ASSERT(req.rcpt != NULL && req.rcpt->next == NULL);
    ASSERT_STR_EQ(req.rcpt->data, "resident@example.org");

    ASSERT_INT_EQ(nheaders(&req), 8);
    ASSERT_STR_EQ(header(&req, "Date"), "Sun, 22 Nov 2026 09:00:00 +0000");
    ASSERT_STR_EQ(header(&req, "Message-ID"), "<appeal-17.4.email@police.example>");
    ASSERT_STR_EQ(header(&req, "From"), "\"PC Jane Smith\" <alerts@police.example>");
    ASSERT_STR_EQ(header(&req, "To"), "resident@example.org");
    ASSERT_STR_EQ(header(&req, "Subject"), "Missing person: can you help?");
    ASSERT_STR_EQ(header(&req, "MIME-Version"), "1.0");
    ASSERT_STR_EQ(header(&req, "List-Unsubscribe"), "<https://alerts.example/u/abc?sig=1>");
    ASSERT_STR_EQ(header(&req, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");

    ASSERT_INT_EQ(req.nparts, 2);
    ASSERT_STR_EQ(req.parts[0].type, "text/plain; charset=utf-8");
    ASSERT_STR_EQ(req.parts[0].data, m.text);
    ASSERT_INT_EQ(req.parts[0].len, strlen(m.text));
    ASSERT_STR_EQ(req.parts[1].type, "text/html; charset=utf-8");
    ASSERT_STR_EQ(req.parts[1].data, m.html);
    cr_request_release(&req);

    /* No unsubscribe URL, no sender name (from_name), only text. */
    m.unsubscribe_url = NULL;
    m.sender_name = NULL;
    m.html = NULL;
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT(header(&req, "List-Unsubscribe") == NULL);
    ASSERT(header(&req, "List-Unsubscribe-Post") == NULL);
    ASSERT_STR_EQ(header(&req, "From"), "\"Police Alerts\" <alerts@police.example>");
    ASSERT_INT_EQ(req.nparts, 1);
    cr_request_release(&req);

    /* A name with quotes is escaped inside the quoted-string. */
    m.sender_name = "PC \"Jay\" Smith\\2";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(header(&req, "From"), "\"PC \\\"Jay\\\" Smith\\\\2\" <alerts@police.example>");
    cr_request_release(&req);
    smtp_ops()->free_state(state);

    /* starttls false, a HELO name, no login. */
    ASSERT_INT_EQ(smtp_init("{\"from_email\":\"a@b.example\",\"starttls\":false,\"helo\":"
                            "\"crier.b.example\"}",
                            "smtp://127.0.0.1:2525", &state, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(cr_buf_cstr(&req.url), "smtp://127.0.0.1:2525/crier.b.example");
    ASSERT_INT_EQ(req.smtp_starttls, 0);
    ASSERT(req.userpwd == NULL);
    ASSERT_STR_EQ(header(&req, "From"), "\"PC \\\"Jay\\\" Smith\\\\2\" <a@b.example>");
    cr_request_release(&req);
    smtp_ops()->free_state(state);

    /* smtps:// always asks for TLS. */
    ASSERT_INT_EQ(smtp_init("{\"from_email\":\"a@b.example\",\"starttls\":false}",
                            "smtps://mail.example", &state, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_INT_EQ(req.smtp_starttls, 1);
    cr_request_release(&req);
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_encoded_words)
{
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;
    const char *subj;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example", &state, err, sizeof(err)), 0);
    m.subject = "Zaginiona osoba: \xc5\x81ucja";
    m.sender_name = "Komisariat \xc5\x81\xc3\xb3"
                    "d\xc5\xba";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(header(&req, "Subject"), "=?UTF-8?B?WmFnaW5pb25hIG9zb2JhOiDFgXVjamE=?=");
    ASSERT_STR_EQ(header(&req, "From"), "=?UTF-8?B?S29taXNhcmlhdCDFgcOzZMW6?= <alerts@police.example>");
    cr_request_release(&req);

    /* Something that looks like an encoded-word is encoded rather than passed. */
    m.subject = "=?UTF-8?B?SGk=?=";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_CONTAINS(header(&req, "Subject"), "=?UTF-8?B?PT9VVEYtOD9CP1NHaz0/PQ==?=");
    cr_request_release(&req);

    /* A long subject becomes several words of at most 75 characters, never
     * splitting a character: 30 two-byte characters = 60 bytes -> 2 words. */
    m.subject = "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81"
                "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81"
                "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    subj = header(&req, "Subject");
    ASSERT(subj != NULL);
    /* 22 characters (44 bytes) then 8 characters (16 bytes). */
    ASSERT_STR_EQ(subj, "=?UTF-8?B?xYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYE=?= "
                        "=?UTF-8?B?xYHFgcWBxYHFgcWBxYHFgQ==?=");
    cr_request_release(&req);
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_message_id_is_sanitised)
{
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example", &state, err, sizeof(err)), 0);
    m.ref = "job <x>@y/1/email";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(header(&req, "Message-ID"), "<job=20=3Cx=3E=40y.1.email@police.example>");
    cr_request_release(&req);
    m.ref = "/a//b/";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(header(&req, "Message-ID"), "<=2Fa.=2Fb=2F@police.example>");
    cr_request_release(&req);
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_refuses_header_injection)
{
    struct {
        const char *field;
        const char *value;
    } cases[] = {
        {"subject", "Hello\r\nBcc: everyone@example.org"},
        {"subject", "Hello\nX-Spam: 1"},
        {"sender_name", "PC Smith\r\nBcc: x@example.org"},
        {"address", "resident@example.org\r\nRCPT TO:<x@example.org>"},
        {"address", "resident@example.org>, <x@example.org"},
        {"address", "resident example.org"},
        {"address", "no-at-sign"},
        {"address", ""},
        {"unsubscribe_url", "https://alerts.example/u\r\nBcc: x@example.org"},
        {"unsubscribe_url", "https://alerts.example/u>, <mailto:x@example.org"},
        {"unsubscribe_url", "javascript:alert(1)"},
        {"ref", "appeal\r\n/1/email"},
    };
    size_t i;
    char err[256];
    void *state;
    struct cr_request req;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example", &state, err, sizeof(err)), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_message m = sample();

        if (strcmp(cases[i].field, "subject") == 0)
            m.subject = cases[i].value;
        else if (strcmp(cases[i].field, "sender_name") == 0)
            m.sender_name = cases[i].value;
        else if (strcmp(cases[i].field, "address") == 0)
            m.address = cases[i].value;
        else if (strcmp(cases[i].field, "ref") == 0)
            m.ref = cases[i].value;
        else
            m.unsubscribe_url = cases[i].value;
        if (build(state, &m, &req) != CR_EINVAL) {
            fprintf(stderr, "  case %zu (%s) not refused\n", i, cases[i].field);
            ASSERT(0);
        }
        cr_request_release(&req);
    }
    {
        struct cr_message m = sample();
        const struct cr_message *two[2] = {&m, &m};

        m.text = NULL;
        m.html = NULL;
        ASSERT_INT_EQ(build(state, &m, &req), CR_EINVAL);
        cr_request_release(&req);
        m = sample();
        cr_request_init(&req, 1 << 20);
        ASSERT_INT_EQ(smtp_ops()->build(state, two, 2, &req), CR_EINVAL);
        cr_request_release(&req);
    }
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_classify_table)
{
    static const struct {
        long status;
        enum cr_outcome outcome;
    } cases[] = {
        {250, CR_OUT_SENT},     {251, CR_OUT_SENT},     {421, CR_OUT_RETRY},
        {450, CR_OUT_RETRY},    {451, CR_OUT_RETRY},    {452, CR_OUT_RETRY},
        {455, CR_OUT_RETRY},    {530, CR_OUT_RETRY},    {535, CR_OUT_RETRY},
        {550, CR_OUT_SUPPRESS}, {551, CR_OUT_SUPPRESS}, {553, CR_OUT_SUPPRESS},
        {552, CR_OUT_FAILED},   {554, CR_OUT_FAILED},   {500, CR_OUT_FAILED},
        {0, CR_OUT_FAILED},
    };
    struct cr_message m = sample();
    const struct cr_message *one = &m;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_response resp;
        struct cr_result res;
        char code[16];

        memset(&resp, 0, sizeof(resp));
        resp.status = cases[i].status;
        resp.body = "";
        smtp_ops()->classify(NULL, &one, 1, &resp, &res);
        snprintf(code, sizeof(code), "%ld", cases[i].status);
        if (res.outcome != cases[i].outcome)
            fprintf(stderr, "  SMTP %ld\n", cases[i].status);
        ASSERT_INT_EQ(res.outcome, cases[i].outcome);
        ASSERT_STR_EQ(res.code, code);
        ASSERT_INT_EQ(res.retry_after_ms, -1);
        ASSERT(res.detail[0] != '\0');
    }
}

TEST(workers_smtp_url_through_config)
{
    static const char ok[] = "{\"providers\": {\"mail\": {\"type\": \"smtp\", \"url\": "
                             "\"smtp://127.0.0.1:2525\", \"from_email\": \"a@b.example\", "
                             "\"starttls\": false}}, \"channels\": {\"email\": [\"mail\"]}}";
    static const char bad[] = "{\"providers\": {\"mail\": {\"type\": \"smtp\", \"url\": "
                              "\"https://mail.example\", \"from_email\": \"a@b.example\"}}, "
                              "\"channels\": {\"email\": [\"mail\"]}}";
    static const char http[] = "{\"providers\": {\"sg\": {\"type\": \"sendgrid\", \"url\": "
                               "\"smtp://mail.example\", \"api_key\": \"k\", \"from_email\": "
                               "\"a@b.example\"}}, \"channels\": {\"email\": [\"sg\"]}}";
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(cr_config_parse(ok, strlen(ok), &cfg, err, sizeof(err)), 0);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(cr_config_parse(bad, strlen(bad), &cfg, err, sizeof(err)), CR_ECONFIG);
    ASSERT_STR_CONTAINS(err, "providers.mail.url: must be smtp://host[:port]");
    /* HTTP adapters still get the http(s):// check. */
    ASSERT_INT_EQ(cr_config_parse(http, strlen(http), &cfg, err, sizeof(err)), CR_ECONFIG);
    ASSERT_STR_CONTAINS(err, "providers.sg.url: must start with http:// or https://");
}
