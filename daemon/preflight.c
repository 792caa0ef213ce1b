/* What startup parses beyond the config file itself (keys, listen address,
 * certificates), checked once in one place for both `crierd -t` and startup. */
#include "preflight.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "cr_error.h"
#include "cr_log.h"
#include "httpd.h"
#include "keys.h"
#include "sigs.h"

static int listen_check(const struct cr_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int port;

    if (cfg->http_listen == NULL)
        return 0;
    memset(&ss, 0, sizeof(ss));
    if (cr_httpd_listen_parse(cfg->http_listen, &ss) < 0) {
        snprintf(err, errlen,
                 "http.listen: '%s' is not an IP address and port (names other than "
                 "localhost are not resolved; e.g. 127.0.0.1:8080 or [::1]:8080)",
                 cfg->http_listen);
        return CR_ECONFIG;
    }
    port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (cfg->workers > 1 && port != 0 && port + cfg->workers - 1 > 65535) {
        snprintf(err, errlen,
                 "http.listen: worker %d would listen on port %d + %d, over 65535 "
                 "(each worker takes the port + its index)",
                 cfg->workers - 1, port, cfg->workers - 1);
        return CR_ECONFIG;
    }
    return 0;
}

static int sendgrid_key_check(const struct cr_config *cfg, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;

    if (cfg->webhooks_sendgrid_public_key == NULL)
        return 0;
    if (cr_ec_public_key_load(cfg->webhooks_sendgrid_public_key, &key) != 0) {
        snprintf(err, errlen,
                 "webhooks.sendgrid_public_key: not an EC public key in PEM or "
                 "base64 DER (the verification key SendGrid shows)");
        return CR_ECONFIG;
    }
    EVP_PKEY_free(key);
    return 0;
}

/* The file must hold at least one certificate that OpenSSL (as libcurl uses
 * it) can read: otherwise every request to the provider fails at its handshake. */
static int ca_file_check(const struct cr_provider_conf *pc, char *err, size_t errlen)
{
    X509_STORE *st;
    int ok;

    if (pc->ca_file == NULL)
        return 0;
    st = X509_STORE_new();
    if (st == NULL) {
        snprintf(err, errlen, "out of memory while reading providers.%s.ca_file", pc->name);
        return CR_ENOMEM;
    }
    ok = X509_STORE_load_file(st, pc->ca_file) == 1;
    X509_STORE_free(st);
    ERR_clear_error();
    if (!ok) {
        snprintf(err, errlen, "providers.%s.ca_file: %s holds no PEM certificate", pc->name,
                 pc->ca_file);
        return CR_ECONFIG;
    }
    return 0;
}

int cr_preflight(const struct cr_config *cfg, char *err, size_t errlen)
{
    struct cr_keys keys;
    enum cr_log_level level;
    size_t i;
    int rc;

    if (cr_keys_init(&keys, cfg->prefix) < 0) {
        snprintf(err, errlen, "redis.prefix: too long");
        return CR_ECONFIG;
    }
    if (cr_log_parse_level(cfg->log_level, &level) != 0) {
        snprintf(err, errlen, "log_level: must be one of error, warn, info, debug");
        return CR_ECONFIG;
    }
    rc = listen_check(cfg, err, errlen);
    if (rc == 0)
        rc = sendgrid_key_check(cfg, err, errlen);
    for (i = 0; rc == 0 && i < cfg->nproviders; i++)
        rc = ca_file_check(&cfg->providers[i], err, errlen);
    return rc;
}
