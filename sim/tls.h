/* TLS for crier-sim's own listeners: OpenSSL driven through two memory BIOs so
 * that libuv keeps doing the socket I/O, plus the APNs (HTTP/2 over TLS) and
 * SMTP (with STARTTLS) servers that use it. */
#ifndef SIM_TLS_H
#define SIM_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "cr_buf.h"
#include "server.h"
#include "sim.h"

/* Loads cert_file (PEM chain) and key_file (PEM private key) into a server
 * context that offers TLS 1.2+ and selects ALPN "h2" when the client offers
 * it. Returns 0 and *out (freed with SSL_CTX_free), or CR_EIO (logged). */
int sim_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out);

/* One server-side TLS connection. ssl owns both BIOs. */
struct sim_tls {
    SSL *ssl;
    BIO *in;  /* ciphertext received from the peer, read by OpenSSL */
    BIO *out; /* ciphertext written by OpenSSL, to be sent to the peer */
    int established;
};

/* Makes ctx select ALPN "http/1.1" when offered and never "h2" (the HTTPS
 * listener speaks HTTP/1.1 only). */
void sim_tls_ctx_http1(SSL_CTX *ctx);

/* Prepares t as the server end of a new handshake. Returns 0 or CR_ENOMEM. */
int sim_tls_init(struct sim_tls *t, SSL_CTX *ctx);

/* Frees what t holds; t may be initialised again. */
void sim_tls_release(struct sim_tls *t);

/* Feeds n bytes received from the socket, advances the handshake, appends the
 * decrypted bytes to plain and the bytes to send back (handshake, alerts) to
 * wire. Returns 0, CR_ECLOSED when the peer sent close_notify, CR_EIO on a TLS
 * failure (wire may still hold an alert worth sending; reason logged at debug
 * level with tag), or CR_ETOOBIG when plain is full. */
int sim_tls_input(struct sim_tls *t, const char *tag, const char *p, size_t n,
                  struct cr_buf *plain, struct cr_buf *wire);

/* Encrypts n plaintext bytes, appending the records to wire. Only valid once
 * established. Returns 0, CR_EIO or the cr_buf error. */
int sim_tls_output(struct sim_tls *t, const char *p, size_t n, struct cr_buf *wire);

/* Appends a close_notify alert to wire (best effort). */
void sim_tls_close_notify(struct sim_tls *t, struct cr_buf *wire);

/* Whether ALPN settled on "h2". */
int sim_tls_alpn_h2(const struct sim_tls *t);

/* Copies n bytes and queues them on s; the copy is freed when the write ends.
 * Returns 0, CR_ENOMEM or CR_EIO. */
int sim_stream_write(uv_stream_t *s, const char *p, size_t n);

/* Queues what wire holds on s (as sim_stream_write) and empties wire. Returns 0
 * (also when wire was empty), CR_ENOMEM or CR_EIO. */
int sim_stream_flush(uv_stream_t *s, struct cr_buf *wire);

#define SIM_LISTENER_READ_BUF (64 * 1024)

/* The listening side shared by the servers on their own ports (APNs, SMTP):
 * the listening socket, the open connections and one read buffer for all of
 * them (each read is consumed before the next). Embedded in its server (the
 * owner), which it frees through release once the server is closing, the
 * listening socket has closed and every connection has been freed. */
struct sim_listener {
    uv_tcp_t tcp;            /* data: the owner, for the connection callback */
    struct sim_link *conns;  /* open connections, newest first */
    unsigned nconns;         /* open connections */
    unsigned nalloc;         /* connections not yet freed (closing ones included) */
    int port;                /* the port actually bound */
    int open;                /* the listening socket is not closed yet */
    int closing;
    void *owner;
    void (*release)(void *owner);
    char rbuf[SIM_LISTENER_READ_BUF];
};

/* Listens on addr (parsed from host:port, which also name it in the log line
 * with tag) on loop and hands each new connection to on_connection. Returns 0,
 * or CR_EIO (logged): the listener is then closing and release(owner) runs
 * from the loop, so the caller neither frees the owner nor uses l again. */
int sim_listener_start(struct sim_listener *l, uv_loop_t *loop, void *owner,
                       void (*release)(void *owner), const char *tag,
                       const struct sockaddr_storage *addr, const char *host, int port,
                       uv_connection_cb on_connection);

/* Counts a new connection conn (embedding k) as open and allocated. */
void sim_listener_add(struct sim_listener *l, struct sim_link *k, void *conn);

/* Takes the connection embedding k off the open list (it is closing). */
void sim_listener_remove(struct sim_listener *l, struct sim_link *k);

/* Called once a connection has been freed; frees the owner when it was the
 * last thing the closing server waited for. */
void sim_listener_freed(struct sim_listener *l);

/* Points buf at the shared read buffer (for a uv_alloc_cb). */
void sim_listener_buf(struct sim_listener *l, uv_buf_t *buf);

/* Stops listening: marks the server closing, calls close_conn for every open
 * connection (which must take it off the list with sim_listener_remove) and
 * closes the listening socket; the owner is released from the loop later. */
void sim_listener_close(struct sim_listener *l, void (*close_conn)(void *conn));

struct sim_apns;
struct sim_smtp;

/* Starts the APNs provider API (HTTP/2 over TLS, see docs/crier-sim.md) on
 * host:port (0 = free port) using sim->opt's apns_* settings and ctx
 * (borrowed; must outlive the server). Returns 0 and *out, CR_EINVAL (bad
 * key file or host; logged), CR_EIO (listen failed) or CR_ENOMEM. */
int sim_apns_start(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                   struct sim_apns **out);
int sim_apns_port(const struct sim_apns *a);
/* Stops listening and closes every connection; freed once the handles have
 * closed (run the loop afterwards). */
void sim_apns_close(struct sim_apns *a);

/* Starts the SMTP server (see docs/crier-sim.md) on host:port with sim->opt's
 * smtp_* settings; ctx (borrowed, may be NULL) enables STARTTLS. Returns 0 and
 * *out, CR_EINVAL (bad host), CR_EIO or CR_ENOMEM. */
int sim_smtp_start(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                   struct sim_smtp **out);
int sim_smtp_port(const struct sim_smtp *s);
/* As sim_apns_close. */
void sim_smtp_close(struct sim_smtp *s);

#endif
