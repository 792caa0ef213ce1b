/* The /api/v1 router: one table of routes (method, path, the roles that may
 * call it, handler) behind one credential check (auth.c) and one per-key rate
 * limit. The job intake lives here: POST /api/v1/jobs validates a job as the
 * intake does and writes it to crier:jobs as an integrator would; GET
 * /api/v1/jobs/<id> answers the key that posted it with the job's status.
 * The dashboard's routes (dashboard.h) are more lines in the same table,
 * called with a dashboard token from the config ("dashboard": {"tokens"}). */
#ifndef CR_API_H
#define CR_API_H

#include "daemon.h"
#include "httpd.h"

struct cr_api;

/* Who may call a route. A credential carries one or more roles. */
enum cr_api_role {
    CR_API_INTEGRATOR = (1 << 0), /* an integrator key (config "integrators") */
    CR_API_VIEWER = (1 << 1),     /* a dashboard token: reads jobs and the fleet */
    CR_API_OPERATOR = (1 << 2)    /* a dashboard token that may also cancel (has VIEWER too) */
};

struct cr_dash;

/* Prepares the router for d (its config's integrator keys, their rate
 * buckets). Returns 0 and *out, or CR_ENOMEM. */
int cr_api_init(struct cr_daemon *d, struct cr_api **out);

/* Hands the dashboard's routes to dash (not owned; outlives api). */
void cr_api_set_dashboard(struct cr_api *api, struct cr_dash *dash);

/* Nonzero when path belongs to the router ("/api/v1" or below). */
int cr_api_owns(const char *path);

/* Answers req (whose path cr_api_owns), now or after Redis replies; the
 * request is always answered or dropped with its connection. JSON bodies:
 * {"code", "error"} for every refusal (400, 401, 403, 404, 405, 409, 413,
 * 429, 503). */
void cr_api_handle(struct cr_api *api, struct cr_httpd_req *req);

/* Frees api once no Redis reply is outstanding (replies that come later are
 * dropped); NULL is fine. */
void cr_api_free(struct cr_api *api);

#endif
