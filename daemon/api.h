/* crierd's HTTP API under /api/v1 and the dashboard page under /dashboard/:
 * one route table, one bearer-token check (tokens.h), answers read from Redis
 * so that any crierd answers for the whole fleet, and one Server-Sent Events
 * stream for live updates. Aggregates and job content only: never a
 * resident's address or name. */
#ifndef CR_API_H
#define CR_API_H

#include "daemon.h"
#include "httpd.h"

struct cr_api;

/* Makes the API state for d (d->cfg->dashboard may be NULL: every route then
 * answers 404). Returns 0 or CR_ENOMEM. */
int cr_api_init(struct cr_daemon *d, struct cr_api **out);

/* Nonzero when path belongs to the API or the page ("/api/v1/...",
 * "/dashboard", "/dashboard/..."). */
int cr_api_owns(const char *path);

/* Answers req (which cr_api_owns) now or after Redis replies; owns req. */
void cr_api_handle(struct cr_api *a, struct cr_httpd_req *req);

/* Shutdown: ends every event stream, stops the poll timer and any report
 * process. a is freed once its handles are closed (or at once when none). */
void cr_api_free(struct cr_api *a);

#endif
