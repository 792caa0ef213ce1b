/* The SMTP transport of cr_http, end to end with the SMTP adapter's requests,
 * against a tiny plaintext SMTP server on loopback: what arrives (envelope,
 * headers, MIME structure), one connection for two messages, refusals as reply
 * codes, and no plaintext when STARTTLS is required but not offered. The server
 * runs on its own thread because libcurl waits for the answer to QUIT. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "http.h"
#include "test.h"

#define SMTP_MSGS_MAX 4
#define SMTP_DATA_MAX (256 * 1024)

struct smtp_srv {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    int stop;

    /* What the test sets before traffic starts. */
    const char *rcpt_reply;  /* "250 ok" */
    const char *data_reply;  /* "250 queued" */

    /* What arrived (under mu). */
    int accepted;
    int nmsgs;
    int quits;
    char envelope[SMTP_MSGS_MAX][1024]; /* "MAIL FROM:<..>|RCPT TO:<..>" */
    char *data[SMTP_MSGS_MAX];
    char log[4096]; /* every command, one per line */
};

static void srv_send(int fd, const char *s)
{
    size_t len = strlen(s);

    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void srv_reply(int fd, const char *line)
{
    srv_send(fd, line);
    srv_send(fd, "\r\n");
}

static void srv_log(struct smtp_srv *s, const char *line)
{
    size_t used = strlen(s->log);

    snprintf(s->log + used, sizeof(s->log) - used, "%s\n", line);
}

/* Serves one connection until QUIT or close. */
static void srv_conn(struct smtp_srv *s, int fd)
{
    static char buf[SMTP_DATA_MAX];
    static char data[SMTP_DATA_MAX];
    char envelope[1024] = "";
    size_t have = 0;
    size_t dlen = 0;
    int in_data = 0;

    srv_reply(fd, "220 test.local ESMTP ready");
    for (;;) {
        char *eol;
        ssize_t n;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};

        if (poll(&pfd, 1, 100) == 0) {
            int stop;

            pthread_mutex_lock(&s->mu);
            stop = s->stop;
            pthread_mutex_unlock(&s->mu);
            if (stop)
                return;
            continue;
        }
        n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (n <= 0)
            return;
        have += (size_t)n;
        buf[have] = '\0';
        while ((eol = strstr(buf, "\r\n")) != NULL) {
            size_t linelen = (size_t)(eol - buf);
            char line[300];

            if (in_data) {
                const char *p = buf;

                if (linelen == 1 && buf[0] == '.') {
                    pthread_mutex_lock(&s->mu);
                    if (s->nmsgs < SMTP_MSGS_MAX) {
                        s->data[s->nmsgs] = strndup(data, dlen);
                        memcpy(s->envelope[s->nmsgs], envelope, sizeof(envelope));
                        s->nmsgs++;
                    }
                    pthread_mutex_unlock(&s->mu);
                    envelope[0] = '\0';
                    in_data = 0;
                    dlen = 0;
                    srv_reply(fd, s->data_reply);
                } else {
                    if (linelen > 0 && buf[0] == '.') {
                        p++; /* dot-unstuffing */
                        linelen--;
                    }
                    if (dlen + linelen + 2 < sizeof(data)) {
                        memcpy(data + dlen, p, linelen);
                        memcpy(data + dlen + linelen, "\r\n", 2);
                        dlen += linelen + 2;
                    }
                }
            } else {
                snprintf(line, sizeof(line), "%.*s", (int)linelen, buf);
                pthread_mutex_lock(&s->mu);
                srv_log(s, line);
                pthread_mutex_unlock(&s->mu);
                if (strncmp(line, "EHLO", 4) == 0) {
                    srv_send(fd, "250-test.local\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n");
                } else if (strncmp(line, "MAIL FROM:", 10) == 0) {
                    snprintf(envelope, sizeof(envelope), "%s", line);
                    srv_reply(fd, "250 sender ok");
                } else if (strncmp(line, "RCPT TO:", 8) == 0) {
                    size_t used = strlen(envelope);

                    snprintf(envelope + used, sizeof(envelope) - used, "|%s", line);
                    srv_reply(fd, s->rcpt_reply);
                } else if (strcmp(line, "DATA") == 0) {
                    in_data = 1;
                    srv_reply(fd, "354 end with <CRLF>.<CRLF>");
                } else if (strcmp(line, "QUIT") == 0) {
                    pthread_mutex_lock(&s->mu);
                    s->quits++;
                    pthread_mutex_unlock(&s->mu);
                    srv_reply(fd, "221 bye");
                    return;
                } else if (strcmp(line, "RSET") == 0 || strcmp(line, "NOOP") == 0) {
                    srv_reply(fd, "250 ok");
                } else {
                    srv_reply(fd, "502 not implemented");
                }
            }
            have -= linelen + 2;
            memmove(buf, eol + 2, have + 1);
        }
    }
}

static void *srv_main(void *arg)
{
    struct smtp_srv *s = arg;

    for (;;) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        int stop;
        int c;

        pthread_mutex_lock(&s->mu);
        stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        s->accepted++;
        pthread_mutex_unlock(&s->mu);
        srv_conn(s, c);
        close(c);
    }
    return NULL;
}

static int srv_start(struct smtp_srv *s)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);

    memset(s, 0, sizeof(*s));
    s->rcpt_reply = "250 recipient ok";
    s->data_reply = "250 2.0.0 queued as 42";
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 8) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&sa, &salen) < 0)
        return -1;
    s->port = ntohs(sa.sin_port);
    return pthread_create(&s->thread, NULL, srv_main, s) == 0 ? 0 : -1;
}

/* Stops the thread; what arrived stays readable until srv_free. */
static void srv_stop(struct smtp_srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    close(s->fd);
    pthread_mutex_destroy(&s->mu);
}

static void srv_free(struct smtp_srv *s)
{
    int i;

    for (i = 0; i < s->nmsgs; i++)
        free(s->data[i]);
    s->nmsgs = 0;
}

/* ---- the client side ---- */

struct outcome {
    int done;
    int err;
    long status;
    char detail[256];
};

static void on_done(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct outcome *o = ud;

    (void)latency_us;
    o->done = 1;
    o->err = err;
    o->status = resp ? resp->status : 0;
    snprintf(o->detail, sizeof(o->detail), "%s", detail ? detail : "");
    if (resp != NULL && (resp->body == NULL || resp->body_len != 0))
        o->status = -1; /* SMTP answers carry no body */
}

static void on_guard(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs loop until *flag is set or 10 s pass; returns *flag. */
static int run_until(uv_loop_t *loop, const int *flag)
{
    uv_timer_t guard;
    int expired = 0;

    uv_timer_init(loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, 10000, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void on_closed(void *ud)
{
    *(int *)ud = 1;
}

struct smtp_env {
    uv_loop_t loop;
    struct cr_http *http;
    const struct cr_provider_ops *ops;
    void *state;
    struct cr_http_target target;
};

static int env_init(struct smtp_env *e, const struct smtp_srv *s, const char *conf)
{
    char url[64];
    char err[256];
    cJSON *cfg = cJSON_Parse(conf);
    int rc;

    memset(e, 0, sizeof(*e));
    uv_loop_init(&e->loop);
    e->ops = cr_provider_find("smtp");
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s->port);
    rc = e->ops->init(cfg, url, "providers.mail", &e->state, err, sizeof(err));
    cJSON_Delete(cfg);
    if (rc < 0) {
        fprintf(stderr, "  smtp init: %s\n", err);
        return rc;
    }
    e->target.connect_timeout_ms = 2000;
    e->target.timeout_ms = 5000;
    return cr_http_init(&e->loop, NULL, &e->http);
}

static void env_release(struct smtp_env *e)
{
    int closed = 0;

    if (e->http != NULL) {
        cr_http_close(e->http, on_closed, &closed);
        run_until(&e->loop, &closed);
    }
    if (e->state != NULL)
        e->ops->free_state(e->state);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
}

static struct cr_message mail(const char *address, const char *ref)
{
    struct cr_message m;

    memset(&m, 0, sizeof(m));
    m.job_id = "appeal-17";
    m.ref = ref;
    m.channel = CR_CH_EMAIL;
    m.priority = CR_PRIO_URGENT;
    m.address = address;
    m.subject = "Vermisste Person: können Sie helfen?";
    m.text = "Hello Sam, we are looking for \xc5\x81ucja. Call 101.";
    m.html = "<p>Hello Sam, we are looking for <b>\xc5\x81ucja</b>.</p>";
    m.sender_name = "PC Jane Smith";
    m.unsubscribe_url = "https://alerts.example/u/abc123?s=sig";
    return m;
}

/* Builds with the adapter and submits; 0 or the failing code. */
static int send_one(struct smtp_env *e, const struct cr_message *m, struct outcome *o)
{
    const struct cr_message *one = m;
    struct cr_request req;
    int rc;

    memset(o, 0, sizeof(*o));
    cr_request_init(&req, 1 << 20);
    req.now_ms = INT64_C(1795338000000); /* 2026-11-22 09:00:00 UTC */
    rc = e->ops->build(e->state, &one, 1, &req);
    if (rc < 0) {
        cr_request_release(&req);
        return rc;
    }
    return cr_http_submit(e->http, &req, &e->target, on_done, o);
}

static const char plain_conf[] = "{\"from_email\":\"alerts@police.example\",\"from_name\":\"Police\","
                                 "\"starttls\":false,\"helo\":\"crier.police.example\"}";

TEST(http_smtp_two_messages_one_connection)
{
    struct smtp_srv s;
    struct smtp_env e;
    struct cr_message m1 = mail("resident@example.org", "appeal-17/4/email");
    struct cr_message m2 = mail("other@example.org", "appeal-17/5/email");
    struct outcome o1, o2;
    const char *d;

    ASSERT_INT_EQ(srv_start(&s), 0);
    ASSERT_INT_EQ(env_init(&e, &s, plain_conf), 0);

    ASSERT_INT_EQ(send_one(&e, &m1, &o1), 0);
    ASSERT(run_until(&e.loop, &o1.done));
    ASSERT_INT_EQ(o1.err, 0);
    ASSERT_INT_EQ(o1.status, 250);
    ASSERT_INT_EQ(send_one(&e, &m2, &o2), 0);
    ASSERT(run_until(&e.loop, &o2.done));
    ASSERT_INT_EQ(o2.err, 0);
    ASSERT_INT_EQ(o2.status, 250);
    env_release(&e);
    srv_stop(&s);

    ASSERT_INT_EQ(s.accepted, 1); /* the second message reused the connection */
    ASSERT_INT_EQ(s.nmsgs, 2);
    ASSERT_INT_EQ(s.quits, 1);
    ASSERT_STR_CONTAINS(s.log, "EHLO crier.police.example\n");
    ASSERT_STR_EQ(s.envelope[0], "MAIL FROM:<alerts@police.example>|RCPT TO:<resident@example.org>");
    ASSERT_STR_CONTAINS(s.envelope[1], "RCPT TO:<other@example.org>");

    d = s.data[0];
    ASSERT_STR_CONTAINS(d, "Date: Sun, 22 Nov 2026 09:00:00 +0000\r\n");
    ASSERT_STR_CONTAINS(d, "Message-ID: <appeal-17.4.email@police.example>\r\n");
    ASSERT_STR_CONTAINS(d, "From: \"PC Jane Smith\" <alerts@police.example>\r\n");
    ASSERT_STR_CONTAINS(d, "To: resident@example.org\r\n");
    ASSERT_STR_CONTAINS(d, "Subject: =?UTF-8?B?VmVybWlzc3RlIFBlcnNvbjoga8O2bm5lbiBTaWUgaGVsZmVuPw==?=\r\n");
    ASSERT_STR_CONTAINS(d, "List-Unsubscribe: <https://alerts.example/u/abc123?s=sig>\r\n");
    ASSERT_STR_CONTAINS(d, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    ASSERT_STR_CONTAINS(d, "MIME-Version: 1.0\r\n");
    ASSERT(strstr(d, "Mime-Version") == NULL); /* curl did not add a second one */
    ASSERT_STR_CONTAINS(d, "Content-Type: multipart/alternative; boundary=");
    ASSERT_STR_CONTAINS(d, "Content-Type: text/plain; charset=utf-8\r\n");
    ASSERT_STR_CONTAINS(d, "Content-Type: text/html; charset=utf-8\r\n");
    ASSERT_STR_CONTAINS(d, "Content-Transfer-Encoding: quoted-printable\r\n");
    ASSERT_STR_CONTAINS(d, "looking for =C5=81ucja. Call 101.");
    ASSERT_STR_CONTAINS(d, "<b>=C5=81ucja</b>");
    /* text/plain comes before text/html inside the alternative */
    ASSERT(strstr(d, "text/plain; charset") < strstr(d, "text/html; charset"));
    ASSERT(strstr(d, "multipart/alternative") < strstr(d, "text/plain; charset"));
    ASSERT(strstr(d, "Expect:") == NULL);
    ASSERT_STR_CONTAINS(s.data[1], "Message-ID: <appeal-17.5.email@police.example>\r\n");
    ASSERT_STR_CONTAINS(s.data[1], "To: other@example.org\r\n");
    srv_free(&s);
}

TEST(http_smtp_refusals_are_answers)
{
    static const struct {
        const char *rcpt;
        const char *data;
        long status;
        enum cr_outcome outcome;
    } cases[] = {
        {"550 5.1.1 no such user", "250 ok", 550, CR_OUT_SUPPRESS},
        {"451 4.3.0 try later", "250 ok", 451, CR_OUT_RETRY},
        {"250 ok", "552 5.3.4 message too big", 552, CR_OUT_FAILED},
        {"250 ok", "421 4.7.0 closing", 421, CR_OUT_RETRY},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct smtp_srv s;
        struct smtp_env e;
        struct cr_message m = mail("resident@example.org", "appeal-17/4/email");
        const struct cr_message *one = &m;
        struct cr_response resp;
        struct cr_result res;
        struct outcome o;

        ASSERT_INT_EQ(srv_start(&s), 0);
        s.rcpt_reply = cases[i].rcpt;
        s.data_reply = cases[i].data;
        ASSERT_INT_EQ(env_init(&e, &s, plain_conf), 0);
        ASSERT_INT_EQ(send_one(&e, &m, &o), 0);
        ASSERT(run_until(&e.loop, &o.done));
        ASSERT_INT_EQ(o.err, 0);
        ASSERT_INT_EQ(o.status, cases[i].status);
        memset(&resp, 0, sizeof(resp));
        resp.status = o.status;
        resp.body = "";
        e.ops->classify(e.state, &one, 1, &resp, &res);
        ASSERT_INT_EQ(res.outcome, cases[i].outcome);
        env_release(&e);
        srv_stop(&s);
        srv_free(&s);
    }
}

TEST(http_smtp_no_plaintext_when_starttls_required)
{
    struct smtp_srv s;
    struct smtp_env e;
    struct cr_message m = mail("resident@example.org", "appeal-17/4/email");
    struct outcome o;

    ASSERT_INT_EQ(srv_start(&s), 0);
    ASSERT_INT_EQ(env_init(&e, &s, "{\"from_email\":\"alerts@police.example\"}"), 0);
    ASSERT_INT_EQ(send_one(&e, &m, &o), 0);
    ASSERT(run_until(&e.loop, &o.done));
    ASSERT(o.err < 0); /* a transport error: retried, never sent in clear */
    env_release(&e);
    srv_stop(&s);
    ASSERT_INT_EQ(s.nmsgs, 0);
    ASSERT(strstr(s.log, "MAIL FROM") == NULL);
}

TEST(http_smtp_text_lines_and_folded_headers_on_the_wire)
{
    struct smtp_srv s;
    struct smtp_env e;
    struct cr_message m = mail("resident@example.org", "appeal-17/4/email");
    struct outcome o;
    const char *d;
    const char *p;
    const char *line;

    m.subject = "Pilne ostrze\xc5\xbc" "enie: zamkni\xc4\x99" "ta droga w \xc5\x81odzi, prosimy "
                "omija\xc4\x87 okolic\xc4\x99 do odwo\xc5\x82" "ania \xe2\x80\x93 Heddlu";
    m.sender_name = "Komenda Miejska Policji w \xc5\x81odzi \xe2\x80\x93 Wydzia\xc5\x82 Prewencji";
    m.text = "Hello Sam,\n\nwe are looking for \xc5\x81ucja.\nCall 101.\n";
    m.html = "<p>Hello Sam,</p>\n<p>Call 101.</p>\n";
    ASSERT_INT_EQ(srv_start(&s), 0);
    ASSERT_INT_EQ(env_init(&e, &s, plain_conf), 0);
    ASSERT_INT_EQ(send_one(&e, &m, &o), 0);
    ASSERT(run_until(&e.loop, &o.done));
    ASSERT_INT_EQ(o.err, 0);
    ASSERT_INT_EQ(o.status, 250);
    env_release(&e);
    srv_stop(&s);
    ASSERT_INT_EQ(s.nmsgs, 1);
    d = s.data[0];

    /* Line breaks in the text are hard line breaks, never "=0A" (RFC 2045
     * section 6.7, RFC 2046 section 4.1.1). */
    ASSERT(strstr(d, "=0A") == NULL);
    ASSERT(strstr(d, "=0D") == NULL);
    ASSERT_STR_CONTAINS(d, "Hello Sam,\r\n\r\nwe are looking for =C5=81ucja.\r\nCall 101.\r\n");
    ASSERT_STR_CONTAINS(d, "<p>Hello Sam,</p>\r\n<p>Call 101.</p>\r\n");
    /* Every line is at most 78 characters (RFC 5322 section 2.1.1) but
     * curl's own Content-Type lines with its 40-character boundaries (at
     * most 86, well under the 998 that section requires). */
    for (line = d; *line != '\0'; line = p + 2) {
        p = strstr(line, "\r\n");
        if (p == NULL)
            break;
        if (strncmp(line, "Content-Type: multipart/", 24) == 0) {
            ASSERT(p - line <= 86);
            continue;
        }
        if (p - line > 78)
            fprintf(stderr, "  line of %d: %.*s\n", (int)(p - line), (int)(p - line), line);
        ASSERT(p - line <= 78);
    }
    /* The subject and sender name are folded into continuation lines. */
    p = strstr(d, "\r\nSubject: =?UTF-8?B?");
    ASSERT(p != NULL);
    ASSERT(strncmp(strstr(p + 2, "\r\n"), "\r\n =?UTF-8?B?", 13) == 0);
    /* The name: atoms as they are, the rest as encoded-words. */
    p = strstr(d, "\r\nFrom: Komenda Miejska Policji w =?UTF-8?B?xYFvZHppIOKAkyBXeWR6aWHFgg==?=\r\n"
                  " Prewencji <alerts@police.example>\r\nTo: ");
    ASSERT(p != NULL);
    srv_free(&s);
}
