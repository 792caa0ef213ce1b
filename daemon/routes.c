/* HTTP routes (see routes.h): health and metrics answered here, webhooks,
 * links and /api/v1 handed to their modules, everything else 404/405. */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "confirm.h"
#include "cr_buf.h"
#include "cr_error.h"
#include "cr_log.h"
#include "dashboard.h"
#include "httpd.h"
#include "metrics.h"
#include "replicas.h"
#include "replies.h"
#include "sentinel.h"
#include "webhooks.h"

#define METRICS_MAX (4 * 1024 * 1024)

struct routes {
    struct cr_daemon *d;
    struct cr_webhooks *hooks;
    struct cr_api *api;
    struct cr_dash *dash;
};

static void text(struct cr_httpd_req *req, int status, const char *extra, const char *s)
{
    cr_httpd_respond(req, status, "text/plain; charset=utf-8", extra, s, strlen(s));
}

static int is_get(const struct cr_httpd_req *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

/* One line per Redis connection that is not ready: its name, why, and where. */
static void redis_down(struct cr_buf *b, const char *name, const struct cr_redis *r)
{
    const char *why;

    if (r == NULL) {
        cr_buf_appendf(b, "redis %s: not started\n", name);
        return;
    }
    why = cr_redis_down_reason(r);
    if (why != NULL)
        cr_buf_appendf(b, "redis %s: %s at %s\n", name, why, cr_redis_peer(r));
}

static void readyz(struct cr_daemon *d, struct cr_httpd_req *req)
{
    struct cr_buf b;
    char note[256];

    cr_buf_init(&b, 4096);
    if (d->stopping) {
        cr_buf_appendf(&b, "shutting down\n");
    } else {
        if (d->sentinel != NULL && cr_sentinel_down_reason(d->sentinel) != NULL)
            cr_buf_appendf(&b, "redis sentinel '%s': no primary known: %s\n",
                           cr_sentinel_master(d->sentinel), cr_sentinel_down_reason(d->sentinel));
        redis_down(&b, "commands", d->rc);
        redis_down(&b, "reader", d->rb);
        redis_down(&b, "urgent", d->ru);
        if (b.len == 0 && d->cfg->nproviders == 0)
            cr_buf_appendf(&b, "no providers configured\n");
    }
    if (b.len == 0 && cr_replicas_degraded(d->replicas, note, sizeof(note))) {
        /* still ready: crierd sends on, but a failover now could lose outcomes */
        cr_buf_appendf(&b, "ready (degraded: %s)\n", note);
        cr_httpd_respond(req, 200, "text/plain; charset=utf-8", NULL, b.data, b.len);
    } else if (b.len == 0) {
        text(req, 200, NULL, "ready\n");
    } else {
        cr_httpd_respond(req, 503, "text/plain; charset=utf-8", NULL, b.data, b.len);
    }
    cr_buf_release(&b);
}

static void metrics(struct cr_daemon *d, struct cr_httpd_req *req)
{
    struct cr_buf b;
    int rc;

    cr_buf_init(&b, METRICS_MAX);
    rc = cr_metrics_render(d->metrics, d, &b);
    if (rc != 0) {
        cr_error("http /metrics: could not render: %s", cr_strerror(rc));
        text(req, 500, NULL, "metrics unavailable\n");
    } else {
        cr_httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
    }
    cr_buf_release(&b);
}

static void handle(struct cr_httpd_req *req, void *ud)
{
    struct routes *rt = ud;
    struct cr_daemon *d = rt->d;
    const char *p = req->path;

    if (strcmp(p, "/healthz") == 0 || strcmp(p, "/readyz") == 0 || strcmp(p, "/metrics") == 0) {
        if (!is_get(req))
            text(req, 405, "Allow: GET, HEAD\r\n", "method not allowed\n");
        else if (p[1] == 'h')
            text(req, 200, NULL, "ok\n");
        else if (p[1] == 'r')
            readyz(d, req);
        else
            metrics(d, req);
    } else if (strcmp(p, "/hooks/twilio") == 0) {
        cr_webhooks_handle(rt->hooks, req, "twilio");
    } else if (strcmp(p, "/hooks/sendgrid") == 0) {
        cr_webhooks_handle(rt->hooks, req, "sendgrid");
    } else if (strcmp(p, "/hooks/generic") == 0) {
        cr_webhooks_handle(rt->hooks, req, "generic");
    } else if (strcmp(p, "/hooks/meta") == 0) {
        cr_webhooks_handle(rt->hooks, req, "meta");
    } else if (cr_api_owns(p)) {
        cr_api_handle(rt->api, req);
    } else if ((strncmp(p, "/u/", 3) == 0 || strncmp(p, "/s/", 3) == 0) && p[3] != '\0') {
        cr_replies_link(d, req);
    } else if (strncmp(p, "/c/", 3) == 0 && p[3] != '\0') {
        cr_confirm_link(d, req);
    } else if (cr_dash_page_owns(p)) {
        cr_dash_page(rt->dash, req);
    } else {
        text(req, 404, NULL, "not found\n");
    }
}

/* The listener answered on its own: count what was meant for a hook. */
static void rejected(const char *path, int status, void *ud)
{
    struct routes *rt = ud;
    const char *hook = NULL;

    if (path == NULL)
        return;
    if (strncmp(path, "/hooks/", 7) == 0)
        hook = path + 7;
    else if (strncmp(path, "/u/", 3) == 0)
        hook = "unsubscribe";
    else if (strncmp(path, "/s/", 3) == 0)
        hook = "survey";
    else if (strncmp(path, "/c/", 3) == 0)
        hook = "confirm";
    if (hook == NULL || (strncmp(path, "/hooks/", 7) == 0 && strcmp(hook, "twilio") != 0 &&
                         strcmp(hook, "sendgrid") != 0 && strcmp(hook, "generic") != 0 &&
                         strcmp(hook, "meta") != 0))
        return;
    cr_metrics_webhook(rt->d->metrics, hook,
                       status == 413 ? "too_large" : status == 408 ? "timeout" : "malformed");
}

int cr_routes_start(struct cr_daemon *d)
{
    const struct cr_config *cfg = d->cfg;
    struct cr_httpd_opts o;
    struct routes *rt;
    int rc;

    if (cfg->http_listen == NULL)
        return 0;
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return CR_ENOMEM;
    rt->d = d;
    rc = cr_webhooks_init(d, &rt->hooks);
    if (rc != 0) {
        free(rt);
        return rc;
    }
    rc = cr_dash_init(d, &rt->dash);
    if (rc == 0)
        rc = cr_api_init(d, &rt->api);
    if (rc != 0) {
        cr_dash_free(rt->dash);
        cr_webhooks_free(rt->hooks);
        free(rt);
        return rc;
    }
    cr_api_set_dashboard(rt->api, rt->dash);
    memset(&o, 0, sizeof(o));
    o.listen = cfg->http_listen;
    o.max_connections = cfg->http_max_connections;
    o.lim.max_header_bytes = cfg->http_max_header_bytes;
    o.lim.max_headers = (size_t)cfg->http_max_headers;
    o.lim.max_body_bytes = cfg->http_max_body_bytes;
    o.idle_timeout_ms = cfg->http_idle_timeout_ms;
    o.read_timeout_ms = cfg->http_read_timeout_ms;
    o.handler = handle;
    o.rejected = rejected;
    o.ud = rt;
    rc = cr_httpd_init(d->loop, &o, &d->httpd);
    if (rc != 0) {
        cr_api_free(rt->api);
        cr_dash_free(rt->dash);
        cr_webhooks_free(rt->hooks);
        free(rt);
        return rc;
    }
    cr_info("http: listening on %s (port %d)", cfg->http_listen, cr_httpd_port(d->httpd));
    return 0;
}

static void on_closed(void *ud)
{
    struct routes *rt = ud;

    cr_api_free(rt->api);
    cr_dash_free(rt->dash);
    cr_webhooks_free(rt->hooks);
    free(rt);
}

void cr_routes_stop(struct cr_daemon *d)
{
    struct cr_httpd *s = d->httpd;

    if (s == NULL)
        return;
    d->httpd = NULL;
    /* the routes state is the listener's ud: freed when its connections are gone */
    cr_httpd_close(s, on_closed, cr_httpd_ud(s));
}
