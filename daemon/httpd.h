/* The daemon's HTTP/1.1 listener on the libuv loop: http-parser for the wire,
 * hard caps on header and body size, read and idle timeouts, a connection cap,
 * keep-alive, and handlers that may answer later (after a Redis reply). The
 * request parser is usable on its own (unit tests, fuzzing). */
#ifndef CR_HTTPD_H
#define CR_HTTPD_H

#include <http_parser.h>
#include <stddef.h>
#include <uv.h>

#include "cr_buf.h"

struct cr_httpd;
struct cr_httpd_conn;

struct cr_httpd_limits {
    size_t max_header_bytes; /* request line + header lines; over it: 414 (target) or 431 */
    size_t max_headers;      /* header lines; over it: 431 */
    size_t max_body_bytes;   /* Content-Length or chunked total; over it: 413 */
};

/* One request. Strings are NUL-terminated and owned by the request. */
struct cr_httpd_req {
    char method[16];          /* "GET", "POST", ... */
    struct cr_buf target;     /* the request target as sent: "/hooks/twilio?ref=a%2F1" */
    char *path;               /* target up to '?' (not decoded), owned */
    char *query;              /* after '?', "" when none, owned */
    struct cr_buf hdrs;       /* header names and values: "name\0value\0..." */
    size_t nhdrs;
    struct cr_buf body;
    int keep_alive;           /* the client may send another request */
    struct cr_httpd_conn *conn; /* NULL once the connection has gone */
};

/* ---- the parser ---------------------------------------------------------- */

struct cr_httpd_parser {
    http_parser hp;
    struct cr_httpd_limits lim;
    struct cr_httpd_req *req; /* being filled, NULL between requests */
    int status;               /* the error status to answer, 0 when none */
    const char *why;          /* what was wrong, for the log line */
    int in_value;             /* the last header callback was a value */
    int complete;             /* req is whole; the parser is paused */
    int expect_continue;      /* the client sent "Expect: 100-continue" */
};

/* Prepares p for a connection's first request with the limits given. */
void cr_httpd_parser_init(struct cr_httpd_parser *p, const struct cr_httpd_limits *lim);

/* Feeds n bytes of the connection. Returns 0 when more bytes are needed, 1 when
 * a request is complete (take it with cr_httpd_parser_take; bytes after it
 * are not consumed), or an HTTP error status (400, 413, 414, 431) with p->why
 * set, after which the connection must be answered and closed. *used is set
 * to the bytes consumed. Memory stays within the limits whatever the input. */
int cr_httpd_parser_feed(struct cr_httpd_parser *p, const char *data, size_t n, size_t *used);

/* Nonzero when a request has begun (some of it has been fed) and is not complete. */
int cr_httpd_parser_started(const struct cr_httpd_parser *p);

/* Hands the complete request to the caller (free with cr_httpd_req_free) and
 * readies the parser for the next request on the same connection. */
struct cr_httpd_req *cr_httpd_parser_take(struct cr_httpd_parser *p);

/* Frees what the parser holds (a partial request). */
void cr_httpd_parser_release(struct cr_httpd_parser *p);

/* The value of header name (case-insensitive; the first when repeated), or NULL. */
const char *cr_httpd_header(const struct cr_httpd_req *req, const char *name);

void cr_httpd_req_free(struct cr_httpd_req *req);

/* ---- application/x-www-form-urlencoded ----------------------------------- */

#define CR_FORM_MAX_FIELDS 256

/* Decoded name/value pairs in the order sent; strings owned (may hold any
 * byte but NUL, which is refused). */
struct cr_form {
    char **name;
    char **value;
    size_t n;
};

/* Parses a form body or query string of len bytes ("a=1&b=x+y%21"): '+' is a
 * space, %XX a byte. Returns 0 and fills f (release with cr_form_release),
 * CR_EPARSE (a bad escape, a NUL, a pair without '='), CR_ETOOBIG (more
 * than CR_FORM_MAX_FIELDS pairs) or CR_ENOMEM; f holds nothing on failure. */
int cr_form_parse(const char *s, size_t len, struct cr_form *f);

/* The first value of name, or NULL. */
const char *cr_form_get(const struct cr_form *f, const char *name);

void cr_form_release(struct cr_form *f);

/* ---- the server ---------------------------------------------------------- */

/* Called for each complete request. The handler owns req and must answer it
 * exactly once with cr_httpd_respond, now or later; if the connection closes
 * meanwhile, req->conn becomes NULL and the answer is dropped. */
typedef void (*cr_httpd_handler)(struct cr_httpd_req *req, void *ud);

/* Called for a request the listener answered itself with an error status
 * (400, 408, 413, 414, 431, 503), after logging it; path may be NULL when it
 * was not read yet. For counting. */
typedef void (*cr_httpd_reject_cb)(const char *path, int status, void *ud);

struct cr_httpd_opts {
    const char *listen;       /* "host:port"; port 0 picks a free one (see cr_httpd_port) */
    int max_connections;      /* beyond it a connection is answered 503 and closed */
    struct cr_httpd_limits lim;
    long idle_timeout_ms;     /* keep-alive wait for the next request's first byte */
    long read_timeout_ms;     /* from a request's first byte to its last (else 408); also
                                 the longest a response may take to be written */
    cr_httpd_handler handler;
    cr_httpd_reject_cb rejected; /* may be NULL */
    void *ud;
};

/* Parses a listen address "host:port" (host an IPv4 address, a bracketed or
 * bare IPv6 address, or "localhost"; port 0 to 65535) into *ss. Names are not
 * resolved: nothing may block the loop. Returns 0 or CR_EINVAL. */
int cr_httpd_listen_parse(const char *listen, struct sockaddr_storage *ss);

/* Binds and listens. Returns 0 and *out, CR_EINVAL (bad listen address),
 * CR_EIO (bind/listen failed, logged) or CR_ENOMEM. */
int cr_httpd_init(uv_loop_t *loop, const struct cr_httpd_opts *opts, struct cr_httpd **out);

/* The port actually bound. */
int cr_httpd_port(const struct cr_httpd *s);

/* The ud given in the options. */
void *cr_httpd_ud(const struct cr_httpd *s);

/* Open connections now. */
size_t cr_httpd_connections(const struct cr_httpd *s);

/* Answers req and frees it (always, also on failure). content_type may be NULL
 * (no body type); extra is more header lines, each ending "\r\n", or NULL.
 * A HEAD request gets the headers only. Returns 0, CR_ECLOSED when the
 * connection had gone (nothing sent), or CR_ENOMEM/CR_ETOOBIG (connection closed). */
int cr_httpd_respond(struct cr_httpd_req *req, int status, const char *content_type,
                     const char *extra, const void *body, size_t len);

/* ---- long-lived answers (Server-Sent Events) ---- */

/* Called once when a streaming connection closes for any reason (the client
 * went away, a write failed, the client fell too far behind or took longer
 * than read_timeout_ms to take a write, the server closed); the handle must
 * not be used after it. Not called after cr_httpd_stream_end. */
typedef void (*cr_httpd_gone_cb)(void *ud);

/* Answers req with "200 OK" and no length (Connection: close), content_type
 * and the extra header lines, then keeps the connection for writes; req is
 * freed. Returns the handle to write to, or NULL when the connection had
 * gone or the server is closing (gone is then never called). */
struct cr_httpd_conn *cr_httpd_stream_start(struct cr_httpd_req *req, const char *content_type,
                                            const char *extra, cr_httpd_gone_cb gone, void *ud);

/* Queues len bytes for the client. Returns 0, CR_ECLOSED (ended or closing),
 * or CR_ETOOBIG: the client is 256 KiB behind and the connection is closed
 * (gone has run). */
int cr_httpd_stream_write(struct cr_httpd_conn *c, const void *data, size_t len);

/* Closes the stream once what is queued is written; gone is not called. */
void cr_httpd_stream_end(struct cr_httpd_conn *c);

/* Stops listening and closes every connection (answers not yet given are
 * dropped when they come). s is freed once its handles are closed; then
 * done(ud) runs, if given. */
void cr_httpd_close(struct cr_httpd *s, void (*done)(void *ud), void *ud);

/* The reason phrase of an HTTP status ("Not Found"), "Unknown" otherwise. */
const char *cr_httpd_reason(int status);

#endif
