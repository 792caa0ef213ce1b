/* The simulator's HTTP/1.1 server on the libuv loop: keep-alive and pipelined
 * requests parsed with http-parser, hard limits on headers, bodies and
 * connections, delayed and streamed (chunked) answers. */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <openssl/ssl.h>

#include "sim.h"

#define SIM_MAX_CONNECTIONS 4096
#define SIM_MAX_HEADER_BYTES (16 * 1024)  /* request line + headers; more is 431 */
#define SIM_MAX_BODY_BYTES (1024 * 1024)  /* more is 413 */
#define SIM_IDLE_TIMEOUT_MS 120000        /* an idle keep-alive connection is closed */

/* Binds host:port (port 0 = any free port) and starts accepting on sim->loop;
 * each complete request goes to sim_route_handle(). Returns 0 and *out (owned
 * by the caller, freed by sim_server_close), or CR_EINVAL (bad host), CR_IO
 * (bind/listen failed; the reason is logged) or CR_ENOMEM. */
int sim_server_start(struct sim *sim, const char *host, int port, struct sim_server **out);

/* As sim_server_start, the same APIs over TLS with ctx (borrowed; must outlive
 * the server); ctx NULL is plain HTTP. */
int sim_server_start_tls(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                         struct sim_server **out);

/* A connection's place in its server's list of open connections; embedded in
 * the connection, whose lifetime it shares. */
struct sim_link {
    struct sim_link *prev, *next;
    void *conn; /* the connection that embeds this link */
};

/* Puts k (embedded in conn) at the head of the list *head. */
void sim_link_add(struct sim_link **head, struct sim_link *k, void *conn);

/* Takes k out of the list *head it is on; k's neighbours are cleared. */
void sim_link_remove(struct sim_link **head, struct sim_link *k);

/* Parses host (an IPv4 or IPv6 literal) and port into addr. Returns 0 or
 * CR_EINVAL. */
int sim_addr_parse(const char *host, int port, struct sockaddr_storage *addr);

/* Binds listener (already initialised on its loop by the caller) to addr,
 * listens with on_connection and stores the port actually bound in *bound (addr
 * with port 0 gets a free one). Returns 0, or CR_EIO after logging "<tag>
 * listen on host:port: <reason>, not started" (host and port serve only that
 * line). The caller owns listener either way and closes it on failure. */
int sim_listen(uv_tcp_t *listener, const struct sockaddr_storage *addr,
               uv_connection_cb on_connection, const char *tag, const char *host, int port,
               int *bound);

/* How a listener at its connection cap sheds one connection: accepts it from
 * server, tries once without blocking to write the n bytes of msg (when msg is
 * not NULL; borrowed) and closes it; the handle frees itself once closed.
 * Returns 0 when a connection was accepted, or CR_ENOMEM / CR_EIO when none
 * was. */
int sim_reject_connection(uv_stream_t *server, const char *msg, size_t n);

/* The port actually bound. */
int sim_server_port(const struct sim_server *srv);

/* Defers the answer to the request being handled: called by a handler that
 * answers after something asynchronous (an outbound callback) completes. The
 * handler leaves res alone and returns; later the owner of the returned token
 * fills sim_pending_response() (when not NULL) and calls sim_pending_finish()
 * exactly once. Returns NULL (out of memory, or already deferred): answer now. */
struct sim_pending *sim_res_defer(struct sim_response *res);

/* The response to fill, or NULL when the client has gone meanwhile. */
struct sim_response *sim_pending_response(struct sim_pending *p);

/* Sends the filled answer (or nothing when the client has gone) and frees p. */
void sim_pending_finish(struct sim_pending *p);

/* Connections currently open. */
unsigned sim_server_connections(const struct sim_server *srv);

/* Stops listening and closes every connection (answers still waiting are
 * dropped). The server is freed from the loop once all handles have closed, so
 * the caller runs the loop afterwards; srv must not be used again. */
void sim_server_close(struct sim_server *srv);

#endif
