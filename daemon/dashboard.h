/* The dashboard: the page at /dashboard/ (HTML, CSS and JS built into crierd)
 * and the /api/v1 answers it works from: recent jobs, one job with its
 * counters, reasons, timeline and per-area CSV, the fleet's heartbeats, the
 * cancel, and one Server-Sent Events stream. Read from Redis, so any crierd
 * answers for the fleet; aggregates and job content only, never a resident's
 * address or name. Who may call what is the router's business (api.c). */
#ifndef CR_DASHBOARD_H
#define CR_DASHBOARD_H

#include "daemon.h"
#include "httpd.h"

struct cr_dash;

/* Makes the dashboard's state for d (d->cfg->dashboard may be NULL: the page
 * then answers 404). Returns 0 or CR_ENOMEM. */
int cr_dash_init(struct cr_daemon *d, struct cr_dash **out);

/* Nonzero when the config has a "dashboard" section. */
int cr_dash_enabled(const struct cr_dash *dash);

/* Nonzero for "/dashboard" and "/dashboard/...": the page and its files,
 * which anyone may fetch (they hold no data). */
int cr_dash_page_owns(const char *path);

/* Answers a request for the page or one of its files (301, 200, 404, 405). */
void cr_dash_page(struct cr_dash *dash, struct cr_httpd_req *req);

/* The API answers, each owning req and answering it now or after Redis
 * replies (503 when Redis is unavailable). The caller has checked the role. */
void cr_dash_whoami(struct cr_httpd_req *req, const char *name, int operator);
void cr_dash_jobs(struct cr_dash *dash, struct cr_httpd_req *req);
void cr_dash_job(struct cr_dash *dash, struct cr_httpd_req *req, const char *id);
void cr_dash_report(struct cr_dash *dash, struct cr_httpd_req *req, const char *id);
void cr_dash_fleet(struct cr_dash *dash, struct cr_httpd_req *req);
void cr_dash_events(struct cr_dash *dash, struct cr_httpd_req *req);

/* As `crierctl cancel`, when the request comes from the page's own origin
 * (else 403); who names the token in the log. */
void cr_dash_cancel(struct cr_dash *dash, struct cr_httpd_req *req, const char *id,
                    const char *who);

/* Shutdown: ends every event stream, stops the poll timer and any report
 * process. dash is freed once its handles are closed. NULL is fine. */
void cr_dash_free(struct cr_dash *dash);

#endif
