/* Outbound HTTP (and SMTP) on the libuv loop: one libcurl multi handle driven
 * through its socket interface (one uv_poll_t per curl socket, one uv_timer_t
 * for curl's timeout), with pooled easy handles whose buffers are reused between
 * requests; the multi's connection cache keeps HTTP and SMTP connections open. */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cr_error.h"
#include "cr_log.h"
#include "h1.h"

#define POOL_MAX 1024            /* idle easy handles kept for reuse */
#define HEADERS_MAX (16 * 1024)  /* response header lines kept per transfer */
#define BODY_KEEP (64 * 1024)    /* body memory an idle transfer may keep */
#define URL_MAX 8192             /* cap of a request URL built by an adapter */
#define RETRY_AFTER_MAX 64
#define DEFAULT_MAX_RESPONSE (1024 * 1024) /* when the target sets no cap */
#define AGENT_LINE "User-Agent: crier/0.1"

/* One pooled easy handle and everything one request needs while in flight.
 * Owned by the client: on the active list while curl runs it, on the idle
 * stack between requests, freed by xfer_free. */
struct xfer {
    struct cr_http *h;
    CURL *easy;
    struct xfer *prev, *next; /* active list (doubly linked) or idle stack */
    int smtp;                 /* made for CR_TRANSPORT_SMTP: pooled apart from HTTP ones */

    cr_http_done_cb cb;
    void *ud;
    uint64_t start_ns;

    /* Moved from the request; released when the transfer ends. */
    struct cr_buf url;
    struct cr_buf reqbody;
    struct curl_slist *headers;
    struct curl_slist *tail;   /* last node of headers, linked to expect */
    /* Our own last two nodes (HTTP only), so they cost no allocation: an
     * empty Expect, and the User-Agent (which curl would format anew for
     * every request from CURLOPT_USERAGENT). */
    struct curl_slist expect;
    struct curl_slist agent;
    char expect_line[8];
    char agent_line[32];
    /* SMTP only: the recipients (moved from the request) and the MIME tree. */
    struct curl_slist *rcpt;
    curl_mime *mime;

    /* The answer, reused across requests. */
    struct cr_buf body;
    struct cr_buf hdrs;
    char retry_after[RETRY_AFTER_MAX];
    int has_retry_after;
    int toobig;
    char errbuf[CURL_ERROR_SIZE];

    /* Options last applied to easy, so unchanged ones are not set again
     * (string options are copied by curl on every set). */
    long set_connect_ms;
    long set_timeout_ms;
    curl_off_t set_maxfile;
    int set_http2;
    char *set_ca;       /* NULL = curl's default CA bundle */
    char *set_userpwd;
    char *set_method;   /* NULL = POST (or GET when method is GET) */
};

/* One curl socket being watched. It lives as long as the socket: when curl
 * stops watching a connection it keeps in its cache, the watcher stays armed
 * for reading (nothing arrives on an idle connection, and its next request
 * waits for reading too, so the kernel is not asked again) and stops at the
 * first event, which only a peer closing it can cause; curl closes sockets
 * through on_close_socket, which closes the watcher first (so a new socket
 * with the same fd number never meets a stale one). */
struct sock {
    uv_poll_t poll;
    struct cr_http *h;
    curl_socket_t fd;
    int events; /* UV_READABLE/UV_WRITABLE being polled; -1 before the first start */
    int idle;   /* curl stopped watching it (a cached connection) */
    struct sock *prev, *next;
};

struct cr_http {
    uv_loop_t *loop;
    struct cr_h1 *h1; /* plain HTTP/1.1 and HTTPS/1.1 requests */
    CURLM *multi;
    uv_timer_t timer;

    struct xfer *active;
    size_t inflight;
    struct xfer *idle[2]; /* idle stacks: [0] HTTP handles, [1] SMTP handles */
    size_t nidle[2];
    struct sock *socks;
    struct sock **byfd;  /* the watcher of each open socket, by fd number */
    size_t nbyfd;

    int closing;
    size_t open_handles; /* timer + every sock not yet through its close callback */
    void (*closed_cb)(void *ud);
    void *closed_ud;
};

static void http_free_if_done(struct cr_http *h)
{
    void (*closed)(void *ud);
    void *ud;

    if (!h->closing || h->open_handles > 0)
        return;
    closed = h->closed_cb;
    ud = h->closed_ud;
    free(h->byfd);
    free(h);
    if (closed)
        closed(ud);
}

/* ---- strings kept beside the easy handle ---- */

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Sets a string option only when it differs from what easy already has. */
static CURLcode set_sticky(CURL *easy, CURLoption opt, char **cache, const char *val)
{
    CURLcode c;
    char *copy = NULL;

    if (same_str(*cache, val))
        return CURLE_OK;
    if (val) {
        size_t n = strlen(val);

        copy = malloc(n + 1);
        if (copy == NULL)
            return CURLE_OUT_OF_MEMORY;
        memcpy(copy, val, n + 1);
    }
    c = curl_easy_setopt(easy, opt, val);
    if (c != CURLE_OK) {
        free(copy);
        return c;
    }
    free(*cache);
    *cache = copy;
    return CURLE_OK;
}

/* ---- curl callbacks on a transfer ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    int rc;

    rc = cr_buf_append(&x->body, p, len);
    if (rc < 0) {
        x->toobig = rc == CR_ETOOBIG;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

int cr_http_retry_after(const char *line, size_t len, char *out, size_t cap)
{
    static const char name[] = "Retry-After:";
    const size_t nlen = sizeof(name) - 1;
    const char *v;
    const char *end = line + len;

    if (cap == 0 || len < nlen || strncasecmp(line, name, nlen) != 0)
        return 0;
    v = line + nlen;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    len = (size_t)(end - v);
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): only the final one counts. */
        cr_buf_reset(&x->hdrs);
        x->has_retry_after = 0;
        x->retry_after[0] = '\0';
        return len;
    }
    if (len == 0 || (len <= 2 && (p[0] == '\r' || p[0] == '\n')))
        return len;
    if (cr_http_retry_after(p, len, x->retry_after, sizeof(x->retry_after)))
        x->has_retry_after = 1;
    /* Over the cap the remaining lines are dropped, not the answer. */
    (void)cr_buf_append(&x->hdrs, p, len);
    return len;
}

/* ---- transfer pool ---- */

static void xfer_free(struct xfer *x)
{
    curl_mime_free(x->mime);
    curl_slist_free_all(x->rcpt);
    if (x->easy)
        curl_easy_cleanup(x->easy);
    cr_buf_release(&x->body);
    cr_buf_release(&x->hdrs);
    free(x->set_ca);
    free(x->set_userpwd);
    free(x->set_method);
    free(x);
}

#define SETOPT(easy, opt, val)                                               \
    do {                                                                     \
        if (c == CURLE_OK)                                                   \
            c = curl_easy_setopt((easy), (opt), (val));                      \
    } while (0)

static int on_close_socket(void *clientp, curl_socket_t fd);

static struct xfer *xfer_new(struct cr_http *h, int smtp)
{
    struct xfer *x;
    CURLcode c = CURLE_OK;

    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->h = h;
    x->smtp = smtp;
    cr_buf_init(&x->body, 0);
    cr_buf_init(&x->hdrs, HEADERS_MAX);
    cr_buf_init(&x->url, URL_MAX);
    cr_buf_init(&x->reqbody, 0);
    memcpy(x->expect_line, "Expect:", sizeof("Expect:"));
    x->expect.data = x->expect_line;
    x->expect.next = &x->agent;
    memcpy(x->agent_line, AGENT_LINE, sizeof(AGENT_LINE));
    x->agent.data = x->agent_line;
    x->agent.next = NULL;
    x->set_connect_ms = -1;
    x->set_timeout_ms = -1;
    x->set_maxfile = -1;
    x->set_http2 = 0;
    x->easy = curl_easy_init();
    if (x->easy == NULL)
        goto out;
    SETOPT(x->easy, CURLOPT_PRIVATE, (void *)x);
    SETOPT(x->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SETOPT(x->easy, CURLOPT_CLOSESOCKETDATA, (void *)h);
    SETOPT(x->easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(x->easy, CURLOPT_TCP_NODELAY, 1L);
    SETOPT(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(x->easy, CURLOPT_TCP_KEEPIDLE, 30L);
    SETOPT(x->easy, CURLOPT_TCP_KEEPINTVL, 15L);
    SETOPT(x->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(x->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(x->easy, CURLOPT_PROTOCOLS_STR, smtp ? "smtp,smtps" : "http,https");
    SETOPT(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(x->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(x->easy, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(x->easy, CURLOPT_WRITEDATA, (void *)x);
    SETOPT(x->easy, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(x->easy, CURLOPT_HEADERDATA, (void *)x);
out:
    if (c != CURLE_OK || x->easy == NULL) {
        xfer_free(x);
        x = NULL;
    }
    return x;
}

/* One MIME part holding a text body, quoted-printable on the wire. */
static CURLcode add_text_part(curl_mime *mime, const struct cr_mime_part *mp)
{
    curl_mimepart *part = curl_mime_addpart(mime);
    CURLcode c;

    if (part == NULL)
        return CURLE_OUT_OF_MEMORY;
    c = curl_mime_data(part, mp->data ? mp->data : "", mp->data ? mp->len : 0);
    if (c == CURLE_OK)
        c = curl_mime_type(part, mp->type ? mp->type : "text/plain; charset=utf-8");
    if (c == CURLE_OK)
        c = curl_mime_encoder(part, "quoted-printable");
    return c;
}

/* The message body for CURLOPT_MIMEPOST: the parts as one multipart/alternative
 * (a single part goes in as it is). curl wraps the tree in its top-level
 * multipart and puts the request's headers (From, To, Subject, ...) above it. */
static CURLcode build_mime(struct xfer *x, const struct cr_request *req)
{
    curl_mime *alt = NULL;
    curl_mimepart *part;
    CURLcode c = CURLE_OUT_OF_MEMORY;
    size_t i;

    x->mime = curl_mime_init(x->easy);
    if (x->mime == NULL)
        goto out;
    if (req->nparts == 1) {
        c = add_text_part(x->mime, &req->parts[0]);
        goto out;
    }
    alt = curl_mime_init(x->easy);
    if (alt == NULL)
        goto out;
    for (i = 0; i < req->nparts; i++) {
        c = add_text_part(alt, &req->parts[i]);
        if (c != CURLE_OK)
            goto out;
    }
    c = CURLE_OUT_OF_MEMORY;
    part = curl_mime_addpart(x->mime);
    if (part == NULL)
        goto out;
    c = curl_mime_subparts(part, alt);
    if (c != CURLE_OK)
        goto out;
    alt = NULL; /* owned by part now */
    c = curl_mime_type(part, "multipart/alternative");
out:
    curl_mime_free(alt);
    return c;
}

/* The SMTP side of xfer_setup: envelope, MIME body, TLS policy, login. */
static CURLcode smtp_setup(struct xfer *x, struct cr_request *req)
{
    CURLcode c = CURLE_OK;
    char user[256];
    const char *colon = req->userpwd ? strchr(req->userpwd, ':') : NULL;

    if (req->mail_from == NULL || req->rcpt == NULL || req->nparts == 0)
        return CURLE_BAD_FUNCTION_ARGUMENT;
    x->rcpt = req->rcpt;
    req->rcpt = NULL;
    c = build_mime(x, req);
    SETOPT(x->easy, CURLOPT_MAIL_FROM, req->mail_from);
    SETOPT(x->easy, CURLOPT_MAIL_RCPT, x->rcpt);
    SETOPT(x->easy, CURLOPT_MIMEPOST, x->mime);
    /* A server that stops answering (also to QUIT when the connection cache
     * closes at shutdown) is given up on after 10 s, not curl's 120 s. */
    SETOPT(x->easy, CURLOPT_SERVER_RESPONSE_TIMEOUT, 10L);
    /* Required TLS fails the transfer when the server offers no STARTTLS:
     * never a silent fallback to plaintext. */
    SETOPT(x->easy, CURLOPT_USE_SSL,
           req->smtp_starttls ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_NONE);
    if (colon != NULL && (size_t)(colon - req->userpwd) < sizeof(user)) {
        memcpy(user, req->userpwd, (size_t)(colon - req->userpwd));
        user[colon - req->userpwd] = '\0';
        SETOPT(x->easy, CURLOPT_USERNAME, user);
        SETOPT(x->easy, CURLOPT_PASSWORD, colon + 1);
    } else if (colon != NULL) {
        c = CURLE_BAD_FUNCTION_ARGUMENT;
    } else {
        SETOPT(x->easy, CURLOPT_USERNAME, (char *)NULL);
        SETOPT(x->easy, CURLOPT_PASSWORD, (char *)NULL);
    }
    return c;
}

/* Applies what changes from one request to the next. */
static CURLcode xfer_setup(struct xfer *x, struct cr_request *req,
                           const struct cr_http_target *t)
{
    CURLcode c = CURLE_OK;
    int is_get = strcmp(req->method, "GET") == 0;
    const char *custom = NULL;
    size_t max_response = t->max_response ? t->max_response : DEFAULT_MAX_RESPONSE;
    curl_off_t maxfile = (curl_off_t)max_response;

    SETOPT(x->easy, CURLOPT_URL, cr_buf_cstr(&x->url));
    if (x->smtp) {
        if (c == CURLE_OK)
            c = smtp_setup(x, req);
    } else if (is_get) {
        SETOPT(x->easy, CURLOPT_HTTPGET, 1L);
    } else {
        /* POSTFIELDS points at the body we now own: no copy. */
        SETOPT(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->reqbody.len);
        SETOPT(x->easy, CURLOPT_POSTFIELDS, cr_buf_cstr(&x->reqbody));
        if (strcmp(req->method, "POST") != 0)
            custom = req->method;
    }
    if (c == CURLE_OK && !x->smtp)
        c = set_sticky(x->easy, CURLOPT_CUSTOMREQUEST, &x->set_method, custom);
    if (c == CURLE_OK && !x->smtp)
        c = set_sticky(x->easy, CURLOPT_USERPWD, &x->set_userpwd, req->userpwd);
    if (c == CURLE_OK && t->ca_file)
        c = set_sticky(x->easy, CURLOPT_CAINFO, &x->set_ca, t->ca_file);
    if (x->set_connect_ms != t->connect_timeout_ms) {
        SETOPT(x->easy, CURLOPT_CONNECTTIMEOUT_MS, t->connect_timeout_ms);
        x->set_connect_ms = t->connect_timeout_ms;
    }
    if (x->set_timeout_ms != t->timeout_ms) {
        SETOPT(x->easy, CURLOPT_TIMEOUT_MS, t->timeout_ms);
        x->set_timeout_ms = t->timeout_ms;
    }
    if (x->set_maxfile != maxfile) {
        /* Refuses an announced Content-Length over the cap before reading it. */
        SETOPT(x->easy, CURLOPT_MAXFILESIZE_LARGE, maxfile);
        x->set_maxfile = maxfile;
    }
    if (x->set_http2 != (t->http2 != 0)) {
        /* HTTP/2 only over TLS: plaintext h2 breaks on reused connections. */
        SETOPT(x->easy, CURLOPT_HTTP_VERSION,
               t->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
        SETOPT(x->easy, CURLOPT_PIPEWAIT, t->http2 ? 1L : 0L);
        x->set_http2 = t->http2 != 0;
    }

    /* An empty "Expect:" avoids 100-continue round trips. For SMTP the
     * headers are the message's own and go as they are. */
    x->tail = NULL;
    if (x->smtp) {
        SETOPT(x->easy, CURLOPT_HTTPHEADER, x->headers);
    } else if (x->headers) {
        x->tail = x->headers;
        while (x->tail->next)
            x->tail = x->tail->next;
        x->tail->next = &x->expect;
        SETOPT(x->easy, CURLOPT_HTTPHEADER, x->headers);
    } else {
        SETOPT(x->easy, CURLOPT_HTTPHEADER, &x->expect);
    }

    x->body.max = max_response;
    x->toobig = 0;
    x->has_retry_after = 0;
    x->retry_after[0] = '\0';
    x->errbuf[0] = '\0';
    return c;
}

#undef SETOPT

/* Releases what the request gave us and returns x to the pool (or frees it). */
static void xfer_recycle(struct cr_http *h, struct xfer *x)
{
    if (x->tail)
        x->tail->next = NULL;
    x->tail = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    if (x->mime) {
        /* Unbinds it from the easy handle's MIMEPOST as well. */
        curl_mime_free(x->mime);
        x->mime = NULL;
    }
    curl_slist_free_all(x->rcpt);
    x->rcpt = NULL;
    cr_buf_release(&x->url);
    cr_buf_release(&x->reqbody);
    x->cb = NULL;
    x->ud = NULL;
    if (x->body.cap > BODY_KEEP)
        cr_buf_release(&x->body);
    else
        cr_buf_reset(&x->body);
    cr_buf_reset(&x->hdrs);
    if (h->closing || h->nidle[x->smtp] >= POOL_MAX) {
        xfer_free(x);
        return;
    }
    x->prev = NULL;
    x->next = h->idle[x->smtp];
    h->idle[x->smtp] = x;
    h->nidle[x->smtp]++;
}

static void active_unlink(struct cr_http *h, struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        h->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    h->inflight--;
}

static int map_curl_code(const struct xfer *x, CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return CR_ETIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return CR_ECLOSED;
    case CURLE_FILESIZE_EXCEEDED:
        return CR_ETOOBIG;
    case CURLE_WRITE_ERROR:
        return x->toobig ? CR_ETOOBIG : CR_EHTTP;
    default:
        return CR_EHTTP;
    }
}

/* Hands a finished transfer's outcome to its callback. x is already out of
 * the multi handle and off the active list. */
static void xfer_finish(struct cr_http *h, struct xfer *x, CURLcode code)
{
    struct cr_response resp;
    const struct cr_response *rp = NULL;
    char detail[CURL_ERROR_SIZE + 64];
    long latency_us = (long)((uv_hrtime() - x->start_ns) / 1000);
    int err = map_curl_code(x, code);
    long status = 0;

    detail[0] = '\0';
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    /* An SMTP server that refused the sender, a recipient or the data has
     * answered: curl fails the transfer, but the reply code is the answer to
     * classify (550 is a hard bounce, not a connection problem). A failure
     * with a 2xx/3xx last reply (no STARTTLS, a cut connection) stays a
     * transport error. */
    if (x->smtp && err != 0 && status >= 400 && status <= 599) {
        cr_debug("http: SMTP transfer to %s ended with reply %ld: %s", cr_buf_cstr(&x->url),
                 status, x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
        err = 0;
    }
    if (err == 0) {
        resp.status = status;
        resp.body = x->smtp ? "" : cr_buf_cstr(&x->body);
        resp.body_len = x->smtp ? 0 : x->body.len;
        resp.retry_after = x->has_retry_after ? x->retry_after : NULL;
        resp.headers = cr_buf_cstr(&x->hdrs);
        rp = &resp;
    } else if (err == CR_ETOOBIG) {
        snprintf(detail, sizeof(detail), "response body over %zu bytes", x->body.max);
    } else {
        snprintf(detail, sizeof(detail), "%s",
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
    }
    x->cb(x->ud, err, rp, detail, latency_us);
    xfer_recycle(h, x);
}

/* Completes every transfer curl reports done. Stops when a callback closed
 * the client (the multi handle is gone then). */
static void drain_done(struct cr_http *h)
{
    CURLMsg *m;
    int left;

    while (!h->closing) {
        struct xfer *x;
        char *priv = NULL;
        CURL *easy;
        CURLcode code;

        m = curl_multi_info_read(h->multi, &left);
        if (m == NULL)
            break;
        if (m->msg != CURLMSG_DONE)
            continue;
        easy = m->easy_handle;
        code = m->data.result;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        x = (struct xfer *)(void *)priv;
        curl_multi_remove_handle(h->multi, easy);
        active_unlink(h, x);
        xfer_finish(h, x, code);
    }
}

/* ---- libuv side ---- */

static void on_timer(uv_timer_t *t)
{
    struct cr_http *h = t->data;
    int running;

    if (h->closing)
        return;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    struct cr_http *h = s->h;
    int flags = 0;
    int running;

    if (h->closing)
        return;
    if (s->idle) {
        /* not curl's now: it finds the connection closed when it next uses it */
        uv_poll_stop(&s->poll);
        s->events = 0;
        return;
    }
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    drain_done(h);
}

static void on_sock_closed(uv_handle_t *handle)
{
    struct sock *s = handle->data;
    struct cr_http *h = s->h;

    free(s);
    h->open_handles--;
    http_free_if_done(h);
}

static void sock_close(struct sock *s)
{
    struct cr_http *h = s->h;

    if ((size_t)s->fd < h->nbyfd && h->byfd[s->fd] == s)
        h->byfd[s->fd] = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct cr_http *h = handle->data;

    h->open_handles--;
    http_free_if_done(h);
}

/* The watcher of fd, or NULL. */
static struct sock *sock_find(const struct cr_http *h, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < h->nbyfd ? h->byfd[fd] : NULL;
}

/* A new watcher for fd, filed by its number. Returns NULL on failure. */
static struct sock *sock_new(struct cr_http *h, curl_socket_t fd)
{
    struct sock *s;
    int rc;

    if (fd < 0)
        return NULL;
    if ((size_t)fd >= h->nbyfd) {
        size_t n = h->nbyfd ? h->nbyfd : 64;
        struct sock **t;

        while (n <= (size_t)fd)
            n *= 2;
        t = realloc(h->byfd, n * sizeof(*t));
        if (t == NULL)
            return NULL;
        memset(t + h->nbyfd, 0, (n - h->nbyfd) * sizeof(*t));
        h->byfd = t;
        h->nbyfd = n;
    }
    s = malloc(sizeof(*s));
    if (s == NULL)
        return NULL;
    rc = uv_poll_init_socket(h->loop, &s->poll, fd);
    if (rc < 0) {
        cr_error("http: watching curl socket %d failed: %s; transfer aborted", (int)fd,
                 uv_strerror(rc));
        free(s);
        return NULL;
    }
    s->poll.data = s;
    s->h = h;
    s->fd = fd;
    s->events = -1;
    s->idle = 0;
    s->prev = NULL;
    s->next = h->socks;
    if (h->socks)
        h->socks->prev = s;
    h->socks = s;
    h->open_handles++;
    h->byfd[fd] = s;
    return s;
}

/* curl closes a socket: its watcher goes first, while the fd is still open. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    struct sock *s = sock_find(clientp, fd);

    if (s)
        sock_close(s);
    return close(fd);
}

/* ---- curl multi callbacks: they only (re)arm libuv, never call back into curl ---- */

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct cr_http *h = userp;
    struct sock *s = socketp;
    int events = 0;
    int rc;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        /* A connection back in curl's cache (or about to close): the
         * watcher stays, armed for reading only, for its next request. */
        if (s == NULL || uv_is_closing((uv_handle_t *)&s->poll))
            return 0;
        s->idle = 1;
        if (s->events > 0 && (s->events & UV_WRITABLE)) {
            if (uv_poll_start(&s->poll, UV_READABLE, on_poll) == 0) {
                s->events = UV_READABLE;
            } else {
                uv_poll_stop(&s->poll);
                s->events = 0;
            }
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (s == NULL) {
        s = sock_find(h, fd);
        if (s == NULL)
            s = sock_new(h, fd);
        if (s == NULL)
            return -1;
        curl_multi_assign(h->multi, fd, s);
    }
    s->idle = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    /* uv_poll_start re-registers the fd with the kernel: only when it changes. */
    if (events == s->events)
        return 0;
    rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc < 0) {
        cr_error("http: polling curl socket %d failed: %s; transfer aborted", (int)fd,
                 uv_strerror(rc));
        return -1;
    }
    s->events = events;
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct cr_http *h = userp;

    (void)multi;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- public ---- */

int cr_http_init(uv_loop_t *loop, const struct cr_http_opts *opts, struct cr_http **out)
{
    struct cr_http *h;
    CURLMcode mc = CURLM_OK;
    int rc = CR_ENOMEM;

    *out = NULL;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto out;
    h->loop = loop;
    if (cr_h1_init(loop, opts && opts->max_idle_connections > 0 ?
                             (size_t)opts->max_idle_connections : 0, &h->h1) < 0)
        goto out;
    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        rc = CR_EHTTP;
        goto out;
    }
    mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, (void *)h);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, (void *)h);
    if (mc == CURLM_OK && opts && opts->max_host_connections > 0)
        mc = curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                               opts->max_host_connections);
    if (mc == CURLM_OK && opts && opts->max_total_connections > 0)
        mc = curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                               opts->max_total_connections);
    if (mc == CURLM_OK && opts && opts->max_idle_connections > 0)
        mc = curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, opts->max_idle_connections);
    if (mc != CURLM_OK) {
        cr_error("http: configuring curl multi handle failed: %s; client not started",
                 curl_multi_strerror(mc));
        rc = CR_EHTTP;
        goto out;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 2; /* the timer and the HTTP/1.1 client */
    *out = h;
    h = NULL;
    rc = 0;
out:
    if (h) {
        if (h->multi)
            curl_multi_cleanup(h->multi);
        if (h->h1)
            cr_h1_close(h->h1, NULL, NULL);
        free(h);
    }
    return rc;
}

int cr_http_submit(struct cr_http *h, struct cr_request *req, const struct cr_http_target *t,
                   cr_http_done_cb cb, void *ud)
{
    struct xfer *x = NULL;
    CURLcode c;
    CURLMcode mc;
    int rc = CR_EINVAL;
    int smtp = req->transport == CR_TRANSPORT_SMTP;

    if (h->closing) {
        rc = CR_ECANCELED;
        goto out;
    }
    if (cb == NULL || req->url.len == 0)
        goto out;
    if (cr_h1_accepts(req, t))
        return cr_h1_submit(h->h1, req, t, cb, ud);
    if (h->idle[smtp]) {
        x = h->idle[smtp];
        h->idle[smtp] = x->next;
        h->nidle[smtp]--;
        x->next = NULL;
        if (t->ca_file == NULL && x->set_ca) {
            /* Back to the default CA bundle: a fresh handle is the one sure way. */
            xfer_free(x);
            x = NULL;
        }
    }
    if (x == NULL) {
        x = xfer_new(h, smtp);
        if (x == NULL) {
            rc = CR_ENOMEM;
            goto out;
        }
    }

    /* Take over the request's contents; req is left empty. */
    x->url = req->url;
    x->reqbody = req->body;
    x->headers = req->headers;
    cr_buf_init(&req->url, x->url.max);
    cr_buf_init(&req->body, x->reqbody.max);
    req->headers = NULL;

    c = xfer_setup(x, req, t);
    if (c != CURLE_OK) {
        cr_warn("http: preparing request to %s failed: %s; not sent", cr_buf_cstr(&x->url),
                curl_easy_strerror(c));
        rc = c == CURLE_OUT_OF_MEMORY ? CR_ENOMEM : CR_EHTTP;
        goto out;
    }
    x->cb = cb;
    x->ud = ud;
    x->start_ns = uv_hrtime();
    /* Adding only arms curl's timer (at 0 ms): the transfer starts, and any
     * callback fires, from the loop after this call has returned. */
    mc = curl_multi_add_handle(h->multi, x->easy);
    if (mc != CURLM_OK) {
        cr_warn("http: queueing request to %s failed: %s; not sent", cr_buf_cstr(&x->url),
                curl_multi_strerror(mc));
        rc = mc == CURLM_OUT_OF_MEMORY ? CR_ENOMEM : CR_EHTTP;
        goto out;
    }
    x->prev = NULL;
    x->next = h->active;
    if (h->active)
        h->active->prev = x;
    h->active = x;
    h->inflight++;
    x = NULL;
    rc = 0;
out:
    if (x)
        xfer_recycle(h, x);
    /* Whatever curl has not taken (SMTP sender and parts: curl copied them). */
    cr_request_release(req);
    return rc;
}

size_t cr_http_inflight(const struct cr_http *h)
{
    return h->inflight + cr_h1_inflight(h->h1);
}

static void on_h1_closed(void *ud)
{
    struct cr_http *h = ud;

    h->open_handles--;
    http_free_if_done(h);
}

void cr_http_close(struct cr_http *h, void (*closed)(void *ud), void *ud)
{
    struct xfer *x;
    size_t i;

    if (h->closing)
        return;
    h->closing = 1;
    h->closed_cb = closed;
    h->closed_ud = ud;
    cr_h1_close(h->h1, on_h1_closed, h);

    while (h->active) {
        long latency_us;

        x = h->active;
        curl_multi_remove_handle(h->multi, x->easy);
        active_unlink(h, x);
        latency_us = (long)((uv_hrtime() - x->start_ns) / 1000);
        x->cb(x->ud, CR_ECANCELED, NULL, "request cancelled: http client closed", latency_us);
        xfer_recycle(h, x);
    }
    for (i = 0; i < 2; i++) {
        while (h->idle[i]) {
            x = h->idle[i];
            h->idle[i] = x->next;
            xfer_free(x);
        }
        h->nidle[i] = 0;
    }
    /* Closes the cached connections; curl reports their sockets removed. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks)
        sock_close(h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

void cr_request_init(struct cr_request *req, size_t body_max)
{
    memset(req, 0, sizeof(*req));
    memcpy(req->method, "POST", sizeof("POST"));
    cr_buf_init(&req->url, URL_MAX);
    cr_buf_init(&req->body, body_max);
    req->headers = NULL;
    req->userpwd = NULL;
}

void cr_request_release(struct cr_request *req)
{
    cr_buf_release(&req->url);
    cr_buf_release(&req->body);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    free(req->mail_from);
    req->mail_from = NULL;
    curl_slist_free_all(req->rcpt);
    req->rcpt = NULL;
    while (req->nparts > 0) {
        struct cr_mime_part *mp = &req->parts[--req->nparts];

        free(mp->type);
        free(mp->data);
    }
}
