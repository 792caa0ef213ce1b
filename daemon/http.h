/* Outbound HTTP for the dispatcher: one libcurl multi handle driven by the
 * libuv loop through CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION, with
 * keep-alive connections and a pool of reusable easy handles. */
#ifndef CR_HTTP_H
#define CR_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "cr_provider.h"

struct cr_http;

/* Per-request transport settings (from the provider's config). */
struct cr_http_target {
    long connect_timeout_ms;
    long timeout_ms;
    const char *ca_file;      /* NULL = system CAs; TLS verification is always on */
    size_t max_response;      /* response body cap in bytes (0 = 1 MiB); more is an error */
    int http2;                /* nonzero: HTTP/2 over TLS where offered */
};

/* Called once per submitted request, on the loop. err is 0 when an HTTP answer
 * arrived (resp valid only during the call), or CR_ETIMEOUT, CR_ECLOSED
 * (refused/reset), CR_ETOOBIG (response over max_response), CR_EHTTP (other
 * transport error) or CR_ECANCELED (cr_http_close) with resp NULL and detail a
 * readable reason ("connect to 127.0.0.1:8080 refused"). latency_us is the time
 * from submit to completion. */
typedef void (*cr_http_done_cb)(void *ud, int err, const struct cr_response *resp,
                                const char *detail, long latency_us);

struct cr_http_opts {
    long max_host_connections; /* CURLMOPT_MAX_HOST_CONNECTIONS, 0 = unlimited */
    long max_total_connections;/* CURLMOPT_MAX_TOTAL_CONNECTIONS, 0 = unlimited */
    long max_idle_connections; /* CURLMOPT_MAXCONNECTS: open connections kept for
                                  reuse; 0 = curl's default (4 x transfers under way,
                                  so a lull closes connections the next burst reopens) */
};

/* Creates the client on loop. Returns 0 and *out, or CR_ENOMEM / CR_EHTTP. */
int cr_http_init(uv_loop_t *loop, const struct cr_http_opts *opts, struct cr_http **out);

/* Starts req: method "POST" (the default) or another verb sends the body,
 * "GET" sends none. A CR_TRANSPORT_SMTP request (smtp:// or smtps:// url) is
 * sent as mail instead: envelope from mail_from and rcpt, req->headers as the
 * message headers above a multipart/alternative of the parts, STARTTLS required
 * when smtp_starttls, login from userpwd; its answer has status = the last
 * SMTP reply code (250, or the 4xx/5xx that refused the sender, a recipient or
 * the data) and an empty body. Ownership of req's contents moves to the client
 * in every case (it releases everything req owns; req is left empty). Returns
 * 0 and cb fires exactly once later (never from inside this call), or a
 * negative code and cb never fires. */
int cr_http_submit(struct cr_http *h, struct cr_request *req, const struct cr_http_target *t,
                   cr_http_done_cb cb, void *ud);

/* Number of requests submitted and not yet completed. */
size_t cr_http_inflight(const struct cr_http *h);

/* Aborts everything in flight (each cb fires with CR_ECANCELED), closes the uv
 * handles and frees the client once the last handle is closed, then calls
 * closed(ud) if given. h must not be used after this call. */
void cr_http_close(struct cr_http *h, void (*closed)(void *ud), void *ud);

/* When line (one response header line, with or without its CRLF) is a
 * Retry-After header, copies its value without surrounding blanks into out
 * (cut to cap - 1 bytes, NUL-terminated) and returns 1; else returns 0. */
int cr_http_retry_after(const char *line, size_t len, char *out, size_t cap);

/* Initialises req for an adapter's build(): method "POST", empty capped url
 * and body buffers (body cap body_max), no headers. */
void cr_request_init(struct cr_request *req, size_t body_max);

/* Frees what req owns and leaves it initialised-empty. */
void cr_request_release(struct cr_request *req);

#endif
