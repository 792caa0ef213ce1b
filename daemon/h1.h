/* crier's own HTTP/1.1 client for provider requests (http:// and https://):
 * keep-alive connections per origin on libuv TCP handles, TLS through OpenSSL
 * over memory BIOs, answers parsed by http-parser. http.c sends everything else
 * (SMTP, HTTP/2) through libcurl. */
#ifndef CR_H1_H
#define CR_H1_H

#include <stddef.h>
#include <uv.h>

#include "cr_provider.h"
#include "http.h"

struct cr_h1;

/* Creates the client on loop. max_idle caps the idle connections kept for
 * reuse over all origins (0 = no cap). Returns 0 and *out, or CR_ENOMEM. */
int cr_h1_init(uv_loop_t *loop, size_t max_idle, struct cr_h1 **out);

/* Nonzero when this client carries req to t: an HTTP request (not SMTP) to an
 * http:// or https:// URL, without HTTP/2 and without curl-style userpwd. */
int cr_h1_accepts(const struct cr_request *req, const struct cr_http_target *t);

/* Starts req (see cr_http_submit: same ownership, callback and error rules,
 * cb fires exactly once later and never from inside this call, or a negative
 * code is returned and cb never fires). */
int cr_h1_submit(struct cr_h1 *c, struct cr_request *req, const struct cr_http_target *t,
                 cr_http_done_cb cb, void *ud);

/* Requests submitted and not yet completed. */
size_t cr_h1_inflight(const struct cr_h1 *c);

/* Fails everything in flight with CR_ECANCELED, closes every connection and
 * frees the client after the last handle closed, then calls closed(ud). */
void cr_h1_close(struct cr_h1 *c, void (*closed)(void *ud), void *ud);

#endif
