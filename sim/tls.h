/* TLS for crier-sim's own listeners: OpenSSL driven through two memory BIOs so
 * that libuv keeps doing the socket I/O, plus the APNs (HTTP/2 over TLS) and
 * SMTP (with STARTTLS) servers that use it. */
#ifndef SIM_TLS_H
#define SIM_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "cr_buf.h"
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
