/* The listener's request parser and form decoding: whole requests, requests
 * split at every byte, pipelining, and each limit answered with its status
 * before memory can grow past it. */
#include "cr_error.h"
#include "httpd.h"
#include "test.h"

#include <stdlib.h>

static const struct cr_httpd_limits lim = {1024, 8, 2048};

/* Feeds all of s; returns the parser's last answer and the request if whole. */
static int feed_all(struct cr_httpd_parser *p, const char *s, size_t n, size_t *used)
{
    return cr_httpd_parser_feed(p, s, n, used);
}

TEST(httpd_parses_a_post_with_headers_and_body)
{
    static const char req[] = "POST /hooks/twilio?ref=a%2F1&x=2 HTTP/1.1\r\nHost: h\r\n"
                              "Content-Type: application/x-www-form-urlencoded\r\n"
                              "X-Twilio-Signature: abc=\r\nContent-Length: 7\r\n\r\nA=1&B=2";
    struct cr_httpd_parser p;
    struct cr_httpd_req *r;
    size_t used = 0;

    cr_httpd_parser_init(&p, &lim);
    ASSERT_INT_EQ(feed_all(&p, req, sizeof(req) - 1, &used), 1);
    ASSERT_INT_EQ(used, sizeof(req) - 1);
    r = cr_httpd_parser_take(&p);
    ASSERT(r != NULL);
    ASSERT_STR_EQ(r->method, "POST");
    ASSERT_STR_EQ(r->path, "/hooks/twilio");
    ASSERT_STR_EQ(r->query, "ref=a%2F1&x=2");
    ASSERT_STR_EQ(cr_buf_cstr(&r->target), "/hooks/twilio?ref=a%2F1&x=2");
    ASSERT_STR_EQ(cr_httpd_header(r, "x-twilio-signature"), "abc=");
    ASSERT_STR_EQ(cr_httpd_header(r, "HOST"), "h");
    ASSERT(cr_httpd_header(r, "missing") == NULL);
    ASSERT_STR_EQ(cr_buf_cstr(&r->body), "A=1&B=2");
    ASSERT(r->keep_alive);
    cr_httpd_req_free(r);
    cr_httpd_parser_release(&p);
}

TEST(httpd_parses_a_request_fed_one_byte_at_a_time)
{
    static const char req[] = "POST /x HTTP/1.1\r\nLong-Header: part-one-part-two\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    struct cr_httpd_parser p;
    struct cr_httpd_req *r;
    size_t i, used;
    int rc = 0;

    cr_httpd_parser_init(&p, &lim);
    for (i = 0; i < sizeof(req) - 1; i++) {
        rc = cr_httpd_parser_feed(&p, req + i, 1, &used);
        if (rc != 0)
            break;
    }
    ASSERT_INT_EQ(rc, 1);
    ASSERT_INT_EQ(i, sizeof(req) - 2);
    r = cr_httpd_parser_take(&p);
    ASSERT_STR_EQ(cr_httpd_header(r, "long-header"), "part-one-part-two");
    ASSERT_STR_EQ(cr_buf_cstr(&r->body), "abcde");
    cr_httpd_req_free(r);
    cr_httpd_parser_release(&p);
}

TEST(httpd_pipelined_requests_come_one_at_a_time)
{
    static const char two[] = "GET /healthz HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";
    struct cr_httpd_parser p;
    struct cr_httpd_req *r;
    size_t used = 0, used2 = 0;

    cr_httpd_parser_init(&p, &lim);
    ASSERT_INT_EQ(cr_httpd_parser_feed(&p, two, sizeof(two) - 1, &used), 1);
    ASSERT(used < sizeof(two) - 1);
    r = cr_httpd_parser_take(&p);
    ASSERT_STR_EQ(r->path, "/healthz");
    cr_httpd_req_free(r);
    ASSERT_INT_EQ(cr_httpd_parser_feed(&p, two + used, sizeof(two) - 1 - used, &used2), 1);
    ASSERT_INT_EQ(used + used2, sizeof(two) - 1);
    r = cr_httpd_parser_take(&p);
    ASSERT_STR_EQ(r->path, "/metrics");
    ASSERT(!r->keep_alive);
    cr_httpd_req_free(r);
    cr_httpd_parser_release(&p);
}

static int status_of(const char *req, size_t n)
{
    struct cr_httpd_parser p;
    size_t used;
    int rc;

    cr_httpd_parser_init(&p, &lim);
    rc = cr_httpd_parser_feed(&p, req, n, &used);
    cr_httpd_parser_release(&p);
    return rc;
}

TEST(httpd_limits_answer_with_their_status)
{
    char big[4096];
    size_t n = 0;
    int i;

    /* Content-Length over the cap: 413 before any of the body is read */
    ASSERT_INT_EQ(status_of("POST /x HTTP/1.1\r\nContent-Length: 2049\r\n\r\n", 42), 413);
    /* chunked body over the cap */
    n = (size_t)snprintf(big, sizeof(big), "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (i = 0; i < 3; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "400\r\n");
        memset(big + n, 'a', 1024);
        n += 1024;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    }
    ASSERT_INT_EQ(status_of(big, n), 413);
    /* too many header lines */
    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    for (i = 0; i < 9; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
    ASSERT_INT_EQ(status_of(big, n), 431);
    /* header bytes over the cap */
    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'v', 1100);
    n += 1100;
    n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n\r\n");
    ASSERT_INT_EQ(status_of(big, n), 431);
    /* a request target over the cap */
    n = (size_t)snprintf(big, sizeof(big), "GET /");
    memset(big + n, 'p', 1100);
    n += 1100;
    n += (size_t)snprintf(big + n, sizeof(big) - n, " HTTP/1.1\r\n\r\n");
    ASSERT_INT_EQ(status_of(big, n), 414);
    /* garbage, an absolute target, an unknown Expect, both length headers */
    ASSERT_INT_EQ(status_of("HELLO\r\n\r\n", 9), 400);
    ASSERT_INT_EQ(status_of("GET http://x/ HTTP/1.1\r\n\r\n", 26), 400);
    ASSERT_INT_EQ(status_of("POST /x HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\n", 54), 417);
    ASSERT_INT_EQ(status_of("POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                            68),
                  400);
    /* within every limit: needs more */
    ASSERT_INT_EQ(status_of("POST /x HTTP/1.1\r\nContent-Length: 2048\r\n\r\n", 42), 0);
}

TEST(httpd_expect_continue_is_noticed)
{
    static const char req[] = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    struct cr_httpd_parser p;
    size_t used;

    cr_httpd_parser_init(&p, &lim);
    ASSERT_INT_EQ(cr_httpd_parser_feed(&p, req, sizeof(req) - 1, &used), 0);
    ASSERT(p.expect_continue);
    ASSERT(cr_httpd_parser_started(&p));
    ASSERT_INT_EQ(cr_httpd_parser_feed(&p, "abc", 3, &used), 1);
    cr_httpd_req_free(cr_httpd_parser_take(&p));
    cr_httpd_parser_release(&p);
}

TEST(httpd_form_decoding)
{
    struct cr_form f;

    ASSERT_INT_EQ(cr_form_parse("a=1&b=x+y%21&&c=&d=%2B44", 24, &f), 0);
    ASSERT_INT_EQ(f.n, 4);
    ASSERT_STR_EQ(cr_form_get(&f, "a"), "1");
    ASSERT_STR_EQ(cr_form_get(&f, "b"), "x y!");
    ASSERT_STR_EQ(cr_form_get(&f, "c"), "");
    ASSERT_STR_EQ(cr_form_get(&f, "d"), "+44");
    ASSERT(cr_form_get(&f, "e") == NULL);
    cr_form_release(&f);
    ASSERT_INT_EQ(cr_form_parse("", 0, &f), 0);
    ASSERT_INT_EQ(f.n, 0);
    ASSERT_INT_EQ(cr_form_parse("a=%4", 4, &f), CR_EPARSE);
    ASSERT_INT_EQ(cr_form_parse("a=%zz", 5, &f), CR_EPARSE);
    ASSERT_INT_EQ(cr_form_parse("a=%00", 5, &f), CR_EPARSE);
    ASSERT_INT_EQ(cr_form_parse("novalue", 7, &f), CR_EPARSE);
    {
        char many[2000];
        size_t n = 0;
        int i;

        for (i = 0; i < 300; i++)
            n += (size_t)snprintf(many + n, sizeof(many) - n, "a=%d&", i % 10);
        ASSERT_INT_EQ(cr_form_parse(many, n, &f), CR_ETOOBIG);
    }
}
