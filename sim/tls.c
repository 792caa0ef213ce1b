/* TLS on libuv streams for crier-sim (see tls.h): OpenSSL never touches a
 * socket; received bytes are pushed into one memory BIO and whatever OpenSSL
 * wants to send is pulled out of the other, so the handshake is non-blocking
 * by construction. */
#include "tls.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"

#define IO_CHUNK 16384

static void log_ssl_errors(const char *what, const char *tag)
{
    unsigned long e;
    char text[256];

    e = ERR_get_error();
    if (e == 0) {
        cr_debug("sim tls %s %s: failed, connection closed", tag, what);
        return;
    }
    ERR_error_string_n(e, text, sizeof(text));
    cr_debug("sim tls %s %s: %s, connection closed", tag, what, text);
    ERR_clear_error();
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    unsigned i = 0;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned len = in[i];

        if (i + 1 + len > inlen)
            break;
        if (len == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK; /* SMTP clients offer nothing; that is fine */
}

static int on_alpn_http1(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                         const unsigned char *in, unsigned inlen, void *arg)
{
    unsigned i = 0;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned len = in[i];

        if (i + 1 + len > inlen)
            break;
        if (len == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

void sim_tls_ctx_http1(SSL_CTX *ctx)
{
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_http1, NULL);
}

int sim_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char text[256];
    int rc = CR_EIO;

    if (ctx == NULL) {
        cr_error("sim tls: cannot create a context, TLS listeners not started");
        return CR_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ERR_error_string_n(ERR_get_error(), text, sizeof(text));
        cr_error("sim tls certificate %s: %s, TLS listeners not started", cert_file, text);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_error_string_n(ERR_get_error(), text, sizeof(text));
        cr_error("sim tls key %s: %s, TLS listeners not started", key_file, text);
        goto out;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return rc;
}

int sim_tls_init(struct sim_tls *t, SSL_CTX *ctx)
{
    memset(t, 0, sizeof(*t));
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        memset(t, 0, sizeof(*t));
        return CR_ENOMEM;
    }
    /* an empty memory BIO reports "retry" instead of EOF */
    BIO_set_mem_eof_return(t->in, -1);
    BIO_set_mem_eof_return(t->out, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_accept_state(t->ssl);
    return 0;
}

void sim_tls_release(struct sim_tls *t)
{
    SSL_free(t->ssl); /* frees both BIOs */
    memset(t, 0, sizeof(*t));
}

/* Moves everything OpenSSL queued for the peer into wire. */
static int drain_out(struct sim_tls *t, struct cr_buf *wire)
{
    char chunk[IO_CHUNK];
    int n;
    int rc;

    while (BIO_ctrl_pending(t->out) > 0) {
        n = BIO_read(t->out, chunk, sizeof(chunk));
        if (n <= 0)
            break;
        rc = cr_buf_append(wire, chunk, (size_t)n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int sim_tls_input(struct sim_tls *t, const char *tag, const char *p, size_t n,
                  struct cr_buf *plain, struct cr_buf *wire)
{
    char chunk[IO_CHUNK];
    int rc = 0;
    int r;

    while (n > 0) {
        r = BIO_write(t->in, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r <= 0)
            return CR_ENOMEM;
        p += r;
        n -= (size_t)r;
    }
    if (!t->established) {
        r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int err = SSL_get_error(t->ssl, r);

            rc = drain_out(t, wire);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return rc;
            log_ssl_errors("handshake", tag);
            return CR_EIO;
        }
        t->established = 1;
    }
    for (;;) {
        r = SSL_read(t->ssl, chunk, sizeof(chunk));
        if (r > 0) {
            rc = cr_buf_append(plain, chunk, (size_t)r);
            if (rc < 0)
                break;
            continue;
        }
        switch (SSL_get_error(t->ssl, r)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE: break;
        case SSL_ERROR_ZERO_RETURN: rc = CR_ECLOSED; break;
        default:
            log_ssl_errors("read", tag);
            rc = CR_EIO;
            break;
        }
        break;
    }
    if (drain_out(t, wire) < 0 && rc == 0)
        rc = CR_ENOMEM;
    return rc;
}

int sim_tls_output(struct sim_tls *t, const char *p, size_t n, struct cr_buf *wire)
{
    int r;

    if (!t->established)
        return CR_EIO;
    while (n > 0) {
        r = SSL_write(t->ssl, p, n > IO_CHUNK ? IO_CHUNK : (int)n);
        if (r <= 0) {
            log_ssl_errors("write", "output");
            return CR_EIO;
        }
        p += r;
        n -= (size_t)r;
    }
    return drain_out(t, wire);
}

void sim_tls_close_notify(struct sim_tls *t, struct cr_buf *wire)
{
    if (t->ssl == NULL || !t->established)
        return;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    drain_out(t, wire);
}

int sim_tls_alpn_h2(const struct sim_tls *t)
{
    const unsigned char *proto = NULL;
    unsigned len = 0;

    SSL_get0_alpn_selected(t->ssl, &proto, &len);
    return len == 2 && memcmp(proto, "h2", 2) == 0;
}

struct swrite {
    uv_write_t req;
    char data[];
};

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error or EOF */
    free(req);
}

int sim_stream_write(uv_stream_t *s, const char *p, size_t n)
{
    struct swrite *w;
    uv_buf_t b;

    if (n == 0)
        return 0;
    w = malloc(sizeof(*w) + n);
    if (w == NULL)
        return CR_ENOMEM;
    memcpy(w->data, p, n);
    b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, s, &b, 1, on_written) < 0) {
        free(w);
        return CR_EIO;
    }
    return 0;
}

int sim_stream_flush(uv_stream_t *s, struct cr_buf *wire)
{
    int rc = 0;

    if (wire->len > 0) {
        rc = sim_stream_write(s, wire->data, wire->len);
        cr_buf_reset(wire);
    }
    return rc;
}

static void listener_maybe_release(struct sim_listener *l)
{
    if (l->closing && !l->open && l->nalloc == 0)
        l->release(l->owner);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct sim_listener *l = (struct sim_listener *)h; /* tcp is the first member */

    l->open = 0;
    listener_maybe_release(l);
}

int sim_listener_start(struct sim_listener *l, uv_loop_t *loop, void *owner,
                       void (*release)(void *owner), const char *tag,
                       const struct sockaddr_storage *addr, const char *host, int port,
                       uv_connection_cb on_connection)
{
    l->owner = owner;
    l->release = release;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = owner;
    l->open = 1;
    if (sim_listen(&l->tcp, addr, on_connection, tag, host, port, &l->port) < 0) {
        l->closing = 1;
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        return CR_EIO;
    }
    return 0;
}

void sim_listener_add(struct sim_listener *l, struct sim_link *k, void *conn)
{
    sim_link_add(&l->conns, k, conn);
    l->nconns++;
    l->nalloc++;
}

void sim_listener_remove(struct sim_listener *l, struct sim_link *k)
{
    sim_link_remove(&l->conns, k);
    l->nconns--;
}

void sim_listener_freed(struct sim_listener *l)
{
    l->nalloc--;
    listener_maybe_release(l);
}

void sim_listener_buf(struct sim_listener *l, uv_buf_t *buf)
{
    buf->base = l->rbuf;
    buf->len = sizeof(l->rbuf);
}

void sim_listener_close(struct sim_listener *l, void (*close_conn)(void *conn))
{
    l->closing = 1;
    while (l->conns != NULL)
        close_conn(l->conns->conn);
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
