/* The fuzz targets of the HTTP side, one function each, shared by the
 * libFuzzer/replay drivers in fuzz/ and by the unit test that replays the
 * checked-in corpus on every `make test`. Each must never crash, leak or read
 * out of bounds, whatever the input. */
#ifndef CR_FUZZ_TARGETS_H
#define CR_FUZZ_TARGETS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "httpd.h"
#include "links.h"
#include "replies.h"
#include "webhooks.h"
#include "whatsapp_hook.h"

/* Raw bytes of one connection. The first byte picks how the rest is split
 * into reads, so that every callback boundary of the parser gets exercised;
 * pipelined requests are taken one after another as the listener does. */
static inline int cr_fuzz_http_request(const uint8_t *data, size_t size)
{
    static const struct cr_httpd_limits lim = {2048, 16, 4096};
    struct cr_httpd_parser p;
    size_t step, off = 1, used;
    int rc = 0;

    if (size == 0)
        return 0;
    step = (size_t)(data[0] % 17) + 1;
    cr_httpd_parser_init(&p, &lim);
    while (off < size && rc < 400) {
        size_t n = size - off < step ? size - off : step;

        rc = cr_httpd_parser_feed(&p, (const char *)data + off, n, &used);
        off += used;
        if (rc == 1) {
            struct cr_httpd_req *r = cr_httpd_parser_take(&p);

            (void)cr_httpd_header(r, "content-type");
            if (r->path == NULL || r->query == NULL || r->body.len > lim.max_body_bytes)
                abort();
            cr_httpd_req_free(r);
            rc = 0;
        } else if (rc == 0 && used < n) {
            abort(); /* needing more bytes means all were taken */
        }
    }
    cr_httpd_parser_release(&p);
    return 0;
}

/* A Twilio form body; a '\n' splits off a query string carrying the ref. */
static inline int cr_fuzz_hook_twilio(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t blen = nl ? (size_t)(nl - s) : size;
    char *query = strndup(nl ? nl + 1 : "", nl ? size - blen - 1 : 0);
    struct cr_form f;
    struct cr_hook_event ev;
    char sig[64];

    if (query != NULL && cr_form_parse(s, blen, &f) == 0) {
        if (cr_hook_twilio_parse(&f, query, &ev) == 0)
            cr_hook_event_release(&ev);
        cr_hook_twilio_signature("token", "https://alerts.example.org/hooks/twilio", &f, sig,
                                 sizeof(sig));
        cr_form_release(&f);
    }
    free(query);
    return 0;
}

static inline int cr_fuzz_hook_sendgrid(const uint8_t *data, size_t size)
{
    struct cr_hook_event evs[32];
    size_t n = 0, i;

    if (cr_hook_sendgrid_parse((const char *)data, size, evs, 32, &n) == 0) {
        for (i = 0; i < n; i++)
            cr_hook_event_release(&evs[i]);
    }
    return 0;
}

/* A Meta WhatsApp webhook body: its events, its signature check, and the
 * same bytes as a handshake query. */
static inline int cr_fuzz_hook_meta(const uint8_t *data, size_t size)
{
    struct cr_hook_event evs[32];
    char challenge[CR_META_CHALLENGE_MAX + 1];
    char *q;
    size_t n = 0, i;

    if (data == NULL)
        return 0;
    (void)cr_hook_meta_parse((const char *)data, size, evs, 32, &n);
    for (i = 0; i < n; i++)
        cr_hook_event_release(&evs[i]);
    (void)cr_hook_meta_verify("app-secret", (const char *)data, size, "sha256=00");
    q = strndup((const char *)data, size);
    if (q != NULL)
        (void)cr_hook_meta_handshake("verify-me", q, challenge, sizeof(challenge));
    free(q);
    return 0;
}

static inline int cr_fuzz_hook_generic(const uint8_t *data, size_t size)
{
    struct cr_hook_event ev;
    struct cr_survey sv;

    if (cr_hook_generic_parse((const char *)data, size, &ev) == 0)
        cr_hook_event_release(&ev);
    (void)cr_hook_generic_verify("secret", "1700000000", (const char *)data, size,
                                 "sha256=00");
    if (cr_survey_from_doc((const char *)data, size, &sv) == 0)
        cr_survey_release(&sv);
    return 0;
}

/* A link token as it comes in a URL path (with the real secret check). */
static inline int cr_fuzz_link_token(const uint8_t *data, size_t size)
{
    struct cr_link l;
    char *tok = strndup((const char *)data, size);

    if (tok != NULL)
        (void)cr_link_verify("fuzz-secret-0123456789", tok, strlen(tok), 0, &l);
    free(tok);
    return 0;
}

/* The job signature as it comes in a stream entry or in headers: the whole
 * input is parsed as a signature value; then, split at '\n' into key, ts,
 * sig and the job bytes, it goes through the full check (key lookup,
 * timestamp window, constant-time compare) and, as an Authorization value,
 * through the bearer token check. */
static inline int cr_fuzz_sig_header(const uint8_t *data, size_t size)
{
    static struct cr_integrators *keys;
    const struct cr_integrator *who;
    struct cr_job_error err;
    struct cr_signed s;
    struct cr_sig sig;
    char *copy = strndup((const char *)data, size);
    char *part[4] = {NULL, NULL, NULL, NULL};
    char why[128];
    int64_t ts;
    size_t i, n = 0;

    if (keys == NULL) {
        cJSON *o = cJSON_Parse("{\"web\": {\"secret\": \"web-secret-0123456789\"}}");
        char e[128];

        if (o == NULL || cr_integrators_parse(o, &keys, e, sizeof(e)) != 0)
            abort();
        cJSON_Delete(o);
    }
    if (cr_sig_parse((const char *)data, size, &sig) == 0 && (sig.n == 0 || sig.n > CR_SIG_MAX))
        abort();
    if (copy == NULL)
        return 0;
    (void)cr_auth_bearer(keys, copy, &who, why, sizeof(why));
    part[0] = copy;
    for (i = 0; copy[i] && n < 3; i++) {
        if (copy[i] == '\n') {
            copy[i] = '\0';
            part[++n] = copy + i + 1;
        }
    }
    (void)cr_sig_ts_parse(copy, &ts);
    s.key = part[0];
    s.ts = part[1];
    s.sig = part[2];
    memset(&err, 0, sizeof(err));
    (void)cr_auth_verify(keys, &s, part[3] ? part[3] : "", part[3] ? strlen(part[3]) : 0,
                         1700000000000LL, 300, &who, NULL, &err);
    free(copy);
    return 0;
}

#endif
