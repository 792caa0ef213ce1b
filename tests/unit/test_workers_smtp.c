/* The SMTP adapter: config checks with key paths, the exact envelope, headers
 * and parts it asks for, header-injection refusals and the reply-code table. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "config.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"
#include "workers_fixture.h"

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
    return cr_test_provider_init(smtp_ops(), cJSON_Parse(conf), base, SMTP_PATH, state, err,
                                 errlen);
}

static struct cr_message sample(void)
{
    struct cr_message m = cr_test_message(CR_CH_EMAIL, "resident@example.org");

    m.sub_id = "10442";
    m.subject = "Missing person: can you help?";
    m.text = "Hello Sam, we are looking for ...";
    m.html = "<p>Hello Sam, we are looking for ...</p>";
    m.sender_name = "PC Jane Smith";
    m.unsubscribe_url = "https://alerts.example/u/abc?sig=1";
    return m;
}

static int build(void *state, const struct cr_message *m, struct cr_request *req)
{
    return cr_test_build_one(smtp_ops(), state, m, NOW_MS, req);
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

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ASSERT_CONFIG_REFUSED(smtp_ops(), cJSON_Parse(cases[i].conf), cases[i].url, SMTP_PATH,
                              cases[i].err);
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

    ASSERT_INT_EQ(cr_test_nheaders(&req), 8);
    ASSERT_STR_EQ(cr_test_header(&req, "Date"), "Sun, 22 Nov 2026 09:00:00 +0000");
    ASSERT_STR_EQ(cr_test_header(&req, "Message-ID"), "<appeal-17.4.email@police.example>");
    ASSERT_STR_EQ(cr_test_header(&req, "From"), "\"PC Jane Smith\" <alerts@police.example>");
    ASSERT_STR_EQ(cr_test_header(&req, "To"), "resident@example.org");
    ASSERT_STR_EQ(cr_test_header(&req, "Subject"), "Missing person: can you help?");
    ASSERT_STR_EQ(cr_test_header(&req, "MIME-Version"), "1.0");
    ASSERT_STR_EQ(cr_test_header(&req, "List-Unsubscribe"), "<https://alerts.example/u/abc?sig=1>");
    ASSERT_STR_EQ(cr_test_header(&req, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");

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
    ASSERT(cr_test_header(&req, "List-Unsubscribe") == NULL);
    ASSERT(cr_test_header(&req, "List-Unsubscribe-Post") == NULL);
    ASSERT_STR_EQ(cr_test_header(&req, "From"), "\"Police Alerts\" <alerts@police.example>");
    ASSERT_INT_EQ(req.nparts, 1);
    cr_request_release(&req);

    /* A name with quotes is escaped inside the quoted-string. */
    m.sender_name = "PC \"Jay\" Smith\\2";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(cr_test_header(&req, "From"), "\"PC \\\"Jay\\\" Smith\\\\2\" <alerts@police.example>");
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
    ASSERT_STR_EQ(cr_test_header(&req, "From"), "\"PC \\\"Jay\\\" Smith\\\\2\" <a@b.example>");
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
    ASSERT_STR_EQ(cr_test_header(&req, "Subject"), "=?UTF-8?B?WmFnaW5pb25hIG9zb2JhOiDFgXVjamE=?=");
    ASSERT_STR_EQ(cr_test_header(&req, "From"), "Komisariat =?UTF-8?B?xYHDs2TFug==?= <alerts@police.example>");
    cr_request_release(&req);

    /* Something that looks like an encoded-word is encoded rather than passed. */
    m.subject = "=?UTF-8?B?SGk=?=";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_CONTAINS(cr_test_header(&req, "Subject"), "=?UTF-8?B?PT9VVEYtOD9CP1NHaz0/PQ==?=");
    cr_request_release(&req);

    /* A long subject becomes several words of at most 75 characters, never
     * splitting a character, on folded lines of at most 76: 30 two-byte
     * characters = 60 bytes -> 19 characters on the "Subject:" line (a word
     * of 64), 11 on the next. */
    m.subject = "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81"
                "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81"
                "\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81\xc5\x81";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    subj = cr_test_header(&req, "Subject");
    ASSERT(subj != NULL);
    ASSERT_STR_EQ(subj, "=?UTF-8?B?xYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYHFgcWBxYE=?=\r\n"
                        " =?UTF-8?B?xYHFgcWBxYHFgcWBxYHFgcWBxYHFgQ==?=");
    cr_request_release(&req);
    smtp_ops()->free_state(state);
}

/* ---- checking a folded header as a reader would ---- */

/* Nonzero when s[0..n) is whole UTF-8 sequences (lead byte, continuations). */
static int utf8_whole(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k = s[i] < 0x80 ? 1 : (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3
                 : (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        size_t j;

        if (k == 0 || i + k > n)
            return 0;
        for (j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        }
        i += k;
    }
    return 1;
}

/* Reads the header line "Name: ..." (one slist entry, folds included) as
 * RFC 5322 and RFC 2047 readers do: each line at most 76 characters,
 * continuation lines start with a space, each encoded-word at most 75
 * characters holding whole UTF-8 characters; the space between two adjacent
 * encoded-words is dropped. Writes the decoded value into out; returns 0 or
 * a description of the first rule broken. */
static const char *read_folded(const char *line, char *out, size_t outlen)
{
    size_t o = 0;
    int last_ew = 0;
    const char *p = strchr(line, ':');
    const char *ls = line; /* start of the current physical line */

    if (p == NULL)
        return "no colon";
    p++;
    out[0] = '\0';
    while (*p != '\0') {
        const char *tok;
        size_t tlen;
        int pending_space = 0;

        if (p[0] == '\r') {
            if (p[1] != '\n' || p[2] != ' ')
                return "a line break that is not a fold (CRLF SP)";
            if (p - ls > 76)
                return "a line over 76 characters";
            ls = p + 2;
            p += 2;
        }
        if (*p == ' ') {
            pending_space = 1;
            p++;
        } else if (o > 0) {
            return "tokens not separated by a space";
        }
        tok = p;
        while (*p != '\0' && *p != ' ' && *p != '\r')
            p++;
        tlen = (size_t)(p - tok);
        if (tlen > 10 && strncmp(tok, "=?UTF-8?B?", 10) == 0 && strncmp(p - 2, "?=", 2) == 0) {
            unsigned char dec[80];
            int n;
            size_t b64 = tlen - 12;

            if (tlen > 75)
                return "an encoded-word over 75 characters";
            n = EVP_DecodeBlock(dec, (const unsigned char *)tok + 10, (int)b64);
            if (n < 0)
                return "bad base64";
            while (b64 > 0 && tok[10 + b64 - 1] == '=') {
                b64--;
                n--;
            }
            if (!utf8_whole(dec, (size_t)n))
                return "a character split across encoded-words";
            if (pending_space && !last_ew && o > 0 && o + 1 < outlen)
                out[o++] = ' ';
            if (o + (size_t)n >= outlen)
                return "too long";
            memcpy(out + o, dec, (size_t)n);
            o += (size_t)n;
            last_ew = 1;
        } else {
            if (pending_space && o > 0 && o + 1 < outlen)
                out[o++] = ' ';
            if (o + tlen >= outlen)
                return "too long";
            memcpy(out + o, tok, tlen);
            o += tlen;
            last_ew = 0;
        }
        out[o] = '\0';
    }
    if (p - ls > 76)
        return "a line over 76 characters";
    return NULL;
}

static const char *full_header(const struct cr_request *req, const char *name)
{
    const struct curl_slist *h;
    size_t n = strlen(name);

    for (h = req->headers; h != NULL; h = h->next) {
        if (strncmp(h->data, name, n) == 0 && h->data[n] == ':')
            return h->data;
    }
    return NULL;
}

#define ASSERT_FOLDED(req, name, want)                                                         \
    do {                                                                                       \
        char got_[4096];                                                                       \
        const char *line_ = full_header(req, name);                                            \
        const char *why_;                                                                      \
                                                                                               \
        ASSERT(line_ != NULL);                                                                 \
        why_ = read_folded(line_, got_, sizeof(got_));                                         \
        if (why_ != NULL)                                                                      \
            fprintf(stderr, "  %s: %s in\n%s\n", name, why_, line_);                            \
        ASSERT(why_ == NULL);                                                                  \
        ASSERT_STR_EQ(got_, want);                                                             \
    } while (0)

TEST(workers_smtp_headers_fold_within_rfc2047_limits)
{
    /* A 190-byte Welsh and Polish subject and a long non-ASCII name: before,
     * these went out as words on one line of about 190 characters. */
    static const char subject[] =
        "Rhybudd brys: ffordd ar gau ger Pont-y-p\xc5\xb5l \xe2\x80\x93 "
        "Pilne ostrze\xc5\xbc" "enie: zamkni\xc4\x99ta droga w \xc5\x81odzi "
        "\xe2\x80\x93 \xf0\x9f\x9a\xa8 please avoid the area until further notice";
    static const char name[] = "Heddlu Dyfed-Powys \xe2\x80\x93 T\xc3\xaem Plismona "
                               "Cymdogaeth Aberystwyth \xc5\x81\xc3\xb3" "d\xc5\xba";
    static const char plain[] = "Road closed: the A487 between Aberystwyth and Machynlleth is "
                                "closed in both directions after a collision; please use the "
                                "A44 and allow extra time";
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example", &state, err, sizeof(err)), 0);
    m.subject = subject;
    m.sender_name = name;
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_FOLDED(&req, "Subject", subject);
    ASSERT_FOLDED(&req, "From", "Heddlu Dyfed-Powys \xe2\x80\x93 T\xc3\xaem Plismona "
                                "Cymdogaeth Aberystwyth \xc5\x81\xc3\xb3" "d\xc5\xba "
                                "<alerts@police.example>");
    ASSERT(strstr(full_header(&req, "Subject"), "\r\n ") != NULL);
    cr_request_release(&req);

    /* Plain ASCII too long for a line is folded at its spaces, not encoded. */
    m.subject = plain;
    m.sender_name = "Dyfed-Powys Police Neighbourhood Policing Team, Aberystwyth Station";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_FOLDED(&req, "Subject", plain);
    ASSERT(strstr(full_header(&req, "Subject"), "=?") == NULL);
    ASSERT_FOLDED(&req, "From", "\"Dyfed-Powys Police Neighbourhood Policing Team, Aberystwyth "
                                "Station\" <alerts@police.example>");
    cr_request_release(&req);

    /* A name whose quoted-string would not fit its line is encoded instead. */
    m.sender_name = "Dyfed-Powys Police Neighbourhood Policing Team for Aberystwyth and Borth";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_FOLDED(&req, "From", "Dyfed-Powys Police Neighbourhood Policing Team for Aberystwyth "
                                "and Borth <alerts@police.example>");
    cr_request_release(&req);

    /* Plain ASCII with double spaces cannot be folded without changing it. */
    m.subject = "Two  spaces here and a subject long enough that it needs more than one "
                "line to be written";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_FOLDED(&req, "Subject", m.subject);
    cr_request_release(&req);

    /* Four-byte characters only: never split across words. */
    m.subject = "\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8"
                "\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8"
                "\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8\xf0\x9f\x9a\xa8";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_FOLDED(&req, "Subject", m.subject);
    cr_request_release(&req);

    /* Bytes that are not UTF-8 (a from_name nobody checked) are still cut
     * into words of at most 75 characters, and never into an empty line. */
    {
        char bad[101];

        memset(bad, 0x80, 100);
        bad[100] = '\0';
        m.sender_name = bad;
        ASSERT_INT_EQ(build(state, &m, &req), 0);
        ASSERT(strstr(full_header(&req, "From"), "\r\n\r\n") == NULL);
        ASSERT(strstr(full_header(&req, "From"), "\r\n =?UTF-8?B?") != NULL);
        cr_request_release(&req);
    }
    smtp_ops()->free_state(state);
}

TEST(workers_smtp_text_line_breaks_are_crlf)
{
    struct cr_message m = sample();
    struct cr_request req;
    char err[256];
    void *state;

    ASSERT_INT_EQ(smtp_init(smtp_conf, "smtp://mail.example", &state, err, sizeof(err)), 0);
    m.text = "Hello Sam,\n\nwe are looking for\r\nsomeone.\rCall 101.\n";
    m.html = "<p>Hello</p>\n<p>Call 101.</p>";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_INT_EQ(req.nparts, 2);
    ASSERT_STR_EQ(req.parts[0].data,
                  "Hello Sam,\r\n\r\nwe are looking for\r\nsomeone.\r\nCall 101.\r\n");
    ASSERT_INT_EQ(req.parts[0].len, strlen(req.parts[0].data));
    ASSERT_STR_EQ(req.parts[1].data, "<p>Hello</p>\r\n<p>Call 101.</p>");
    ASSERT_INT_EQ(req.parts[1].len, strlen(req.parts[1].data));
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
    ASSERT_STR_EQ(cr_test_header(&req, "Message-ID"), "<job=20=3Cx=3E=40y.1.email@police.example>");
    cr_request_release(&req);
    m.ref = "/a//b/";
    ASSERT_INT_EQ(build(state, &m, &req), 0);
    ASSERT_STR_EQ(cr_test_header(&req, "Message-ID"), "<=2Fa.=2Fb=2F@police.example>");
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
    /* The reply code is the result's code; the reply text does not matter. */
    static const struct cr_test_row rows[] = {
        {250, "", NULL, "", CR_OUT_SENT, "250", -1, "", NULL},
        {251, "", NULL, "", CR_OUT_SENT, "251", -1, "", NULL},
        {421, "", NULL, "", CR_OUT_RETRY, "421", -1, "", NULL},
        {450, "", NULL, "", CR_OUT_RETRY, "450", -1, "", NULL},
        {451, "", NULL, "", CR_OUT_RETRY, "451", -1, "", NULL},
        {452, "", NULL, "", CR_OUT_RETRY, "452", -1, "", NULL},
        {455, "", NULL, "", CR_OUT_RETRY, "455", -1, "", NULL},
        {530, "", NULL, "", CR_OUT_RETRY, "530", -1, "", NULL},
        {535, "", NULL, "", CR_OUT_RETRY, "535", -1, "", NULL},
        {550, "", NULL, "", CR_OUT_SUPPRESS, "550", -1, "", NULL},
        {551, "", NULL, "", CR_OUT_SUPPRESS, "551", -1, "", NULL},
        {553, "", NULL, "", CR_OUT_SUPPRESS, "553", -1, "", NULL},
        {552, "", NULL, "", CR_OUT_FAILED, "552", -1, "", NULL},
        {554, "", NULL, "", CR_OUT_FAILED, "554", -1, "", NULL},
        {500, "", NULL, "", CR_OUT_FAILED, "500", -1, "", NULL},
        {0, "", NULL, "", CR_OUT_FAILED, "0", -1, "", NULL},
    };
    struct cr_message m = sample();

    ASSERT_INT_EQ(
        cr_test_rows_differing(smtp_ops(), NULL, &m, rows, sizeof(rows) / sizeof(rows[0])), 0);
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
