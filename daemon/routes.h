/* The daemon's HTTP routes: /healthz, /readyz, /metrics, /hooks/<provider>,
 * /u/<token>, /s/<token>, /api/v1/... (api.h), /dashboard/ (dashboard.h). Owns
 * the listener, the webhook state and the dashboard. */
#ifndef CR_ROUTES_H
#define CR_ROUTES_H

#include "daemon.h"

/* Starts the listener on d->cfg->http_listen (sets d->httpd). Needs
 * d->metrics. Returns 0 (also when http.listen is off: nothing started),
 * or CR_EIO/CR_EINVAL/CR_ECONFIG/CR_ENOMEM (logged). */
int cr_routes_start(struct cr_daemon *d);

/* Closes the listener and its connections; the state is freed once they are
 * closed. d->httpd becomes NULL. */
void cr_routes_stop(struct cr_daemon *d);

#endif
