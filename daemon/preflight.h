/* The checks crierd makes of a loaded config before it starts, shared by
 * `crierd -t` and startup so that a config -t accepts is one startup accepts. */
#ifndef CR_PREFLIGHT_H
#define CR_PREFLIGHT_H

#include <stddef.h>

#include "config.h"

/* Checks what cr_config_load leaves to startup: the key prefix, the log level,
 * that http.listen is an address the listener can bind (and each worker's port
 * + index fits), that webhooks.sendgrid_public_key is a readable EC public key
 * and that every provider's ca_file holds certificates. Reads files; opens no
 * socket and touches no Redis. Returns 0, or CR_ECONFIG with err filled as
 * "<key path>: <problem>" (CR_ENOMEM when out of memory). */
int cr_preflight(const struct cr_config *cfg, char *err, size_t errlen);

#endif
