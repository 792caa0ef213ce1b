/* Apple Push Notification service provider API as crier-sim answers it:
 * HTTP/2 (libnghttp2) over TLS on its own port, POST /3/device/<token> with an
 * ES256 provider token checked against the configured key, Apple's headers,
 * reasons and status codes, recorded as endpoint "apns". */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "callbacks.h"
#include "cr_log.h"
#include "record.h"
#include "server.h"
#include "tls.h"

#define MAX_CONNS 1024
#define MAX_STREAMS 1000           /* SETTINGS_MAX_CONCURRENT_STREAMS */
#define MAX_HEADER_BYTES (16 * 1024) /* per request; more resets the stream */
#define MAX_PAYLOAD 4096           /* APNs' limit for alert notifications */
#define MAX_PLAIN (1024 * 1024)    /* decrypted bytes handed to nghttp2 at once */
#define MAX_WIRE (8 * 1024 * 1024) /* encrypted bytes queued per flush */
#define TOKEN_MAX_AGE_S 3600
#define DEVICE_PREFIX "/3/device/"

struct sim_apns {
    struct sim *sim;
    SSL_CTX *ctx;
    EVP_PKEY *key; /* the provider key's public half */
    /* the last provider token that verified, so repeated tokens skip ECDSA */
    char good_token[2048];
    long long good_iat;
    struct sim_listener l; /* the listening socket and open connections */
};

struct astream;

struct aconn {
    uv_tcp_t tcp;
    struct sim_apns *srv;
    struct sim_link link; /* in srv->l.conns while open */
    struct astream *streams; /* open streams, freed with the connection at the latest */
    struct sim_tls tls;
    nghttp2_session *h2;
    struct cr_buf plain, wire;
    int closing;
};

/* One request; the fields are the headers APNs looks at. */
struct astream {
    struct aconn *c;
    struct astream *prev, *next;
    int32_t id;
    size_t header_bytes;
    int too_large;
    struct cr_buf method, path, auth, topic, push_type, priority, expiration, collapse,
        apns_id, ctype, body;
    struct cr_buf answer; /* response body */
    size_t answer_off;
};

/* ---- base64url and the provider token ---- */

/* Decodes unpadded base64url of n bytes into out. Returns 0 or CR_EPARSE. */
static int b64url_decode(const char *s, size_t n, struct cr_buf *out)
{
    unsigned char in[4096];
    unsigned char dec[3072];
    size_t i, len = 0, pad;
    int got;

    if (n + 3 > sizeof(in) || n % 4 == 1)
        return CR_EPARSE;
    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (ch == '-')
            ch = '+';
        else if (ch == '_')
            ch = '/';
        else if (!isalnum((unsigned char)ch))
            return CR_EPARSE;
        in[len++] = (unsigned char)ch;
    }
    pad = (4 - n % 4) % 4;
    for (i = 0; i < pad; i++)
        in[len++] = '=';
    got = EVP_DecodeBlock(dec, in, (int)len);
    if (got < 0 || (size_t)got < pad)
        return CR_EPARSE;
    cr_buf_reset(out);
    return cr_buf_append(out, dec, (size_t)got - pad) < 0 ? CR_EPARSE : 0;
}

/* Verifies the raw r||s ES256 signature sig (64 bytes) over data with key. */
static int es256_verify(EVP_PKEY *key, const char *data, size_t n, const unsigned char *sig)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *s = BN_bin2bn(sig + 32, 32, NULL);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int derlen;
    int ok = 0;

    if (es == NULL || r == NULL || s == NULL || md == NULL)
        goto out;
    if (ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL; /* owned by es now */
    derlen = i2d_ECDSA_SIG(es, &der);
    if (derlen <= 0)
        goto out;
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    ok = EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)data, n) == 1;
out:
    ERR_clear_error();
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return ok;
}

/* Checks "bearer <JWT>" against the key, key id, team and clock. Returns NULL
 * when valid (and sets *iat and kid), else the APNs reason to answer with 403;
 * *iat is set (or -1) either way for the log. */
static const char *check_token(struct sim_apns *a, const char *auth, long long now_s,
                               long long *iat, struct cr_buf *kid)
{
    const struct sim_options *o = &a->sim->opt;
    const char *jwt, *dot1, *dot2;
    struct cr_buf part;
    cJSON *head = NULL, *claims = NULL;
    const cJSON *alg, *kidv, *iss, *iatv;
    const char *reason = "InvalidProviderToken";
    int cached;

    *iat = -1;
    cr_buf_init(&part, 3072);
    if (*auth == '\0') {
        reason = "MissingProviderToken";
        goto out;
    }
    if (strncasecmp(auth, "bearer ", 7) != 0)
        goto out;
    jwt = auth + 7;
    dot1 = strchr(jwt, '.');
    dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
        goto out;
    if (b64url_decode(jwt, (size_t)(dot1 - jwt), &part) < 0)
        goto out;
    head = cJSON_ParseWithLength(part.data ? part.data : "", part.len);
    if (b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &part) < 0)
        goto out;
    claims = cJSON_ParseWithLength(part.data ? part.data : "", part.len);
    alg = cJSON_GetObjectItemCaseSensitive(head, "alg");
    kidv = cJSON_GetObjectItemCaseSensitive(head, "kid");
    iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
    iatv = cJSON_GetObjectItemCaseSensitive(claims, "iat");
    if (cJSON_IsNumber(iatv))
        *iat = (long long)iatv->valuedouble;
    if (cJSON_IsString(kidv))
        cr_buf_appends(kid, kidv->valuestring);
    cached = strlen(jwt) < sizeof(a->good_token) && strcmp(jwt, a->good_token) == 0;
    if (!cached) {
        if (b64url_decode(dot2 + 1, strlen(dot2 + 1), &part) < 0 || part.len != 64)
            goto out;
        if (!es256_verify(a->key, jwt, (size_t)(dot2 - jwt), (const unsigned char *)part.data))
            goto out;
    }
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "ES256") != 0)
        goto out;
    if (!cJSON_IsString(kidv) || strcmp(kidv->valuestring, o->apns_key_id) != 0)
        goto out;
    if (!cJSON_IsString(iss) || strcmp(iss->valuestring, o->apns_team) != 0)
        goto out;
    if (!cJSON_IsNumber(iatv) || *iat > now_s + 300)
        goto out;
    if (now_s - *iat > TOKEN_MAX_AGE_S) {
        reason = "ExpiredProviderToken";
        goto out;
    }
    if (!cached && strlen(jwt) < sizeof(a->good_token)) {
        memcpy(a->good_token, jwt, strlen(jwt) + 1);
        a->good_iat = *iat;
    }
    reason = NULL;
out:
    cJSON_Delete(head);
    cJSON_Delete(claims);
    cr_buf_release(&part);
    return reason;
}

/* Loads the provider key: a PEM public key, or the .p8 private key itself. */
static int load_key(const char *path, EVP_PKEY **out)
{
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key = NULL;

    if (bio != NULL) {
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (key == NULL && BIO_reset(bio) == 0)
            key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
        cr_error("sim apns key %s: not a PEM EC public or private key, APNs not started", path);
        EVP_PKEY_free(key);
        return CR_EINVAL;
    }
    *out = key;
    return 0;
}

/* ---- answering ---- */

static int is_device_token(const char *t)
{
    size_t i, n = strlen(t);

    if (strncmp(t, "apns-", 5) == 0 || strncmp(t, "unregistered", 12) == 0)
        return n < 200 && strchr(t, '/') == NULL;
    if (n != 64)
        return 0;
    for (i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)t[i]))
            return 0;
    }
    return 1;
}

static int is_uuid(const char *s)
{
    size_t i;

    if (strlen(s) != 36)
        return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

static const char *known_push_type(const char *t)
{
    static const char *const types[] = {"alert", "background", "location", "voip",
                                        "complication", "fileprovider", "mdm", "liveactivity",
                                        "pushtotalk"};
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(t, types[i]) == 0)
            return types[i];
    }
    return NULL;
}

static ssize_t read_answer(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                           size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                           void *user_data)
{
    struct astream *st = source->ptr;
    size_t left = st->answer.len - st->answer_off;
    size_t n = left < length ? left : length;

    (void)session;
    (void)stream_id;
    (void)user_data;
    memcpy(buf, st->answer.data + st->answer_off, n);
    st->answer_off += n;
    if (st->answer_off == st->answer.len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void add_field(cJSON *f, const char *name, const struct cr_buf *v)
{
    if (v->len > 0)
        cJSON_AddStringToObject(f, name, cr_buf_cstr(v));
    else
        cJSON_AddNullToObject(f, name);
}

/* A header for nghttp2, which copies name and value when the answer is submitted. */
static nghttp2_nv make_nv(const char *name, const char *value)
{
    nghttp2_nv nv;

    nv.name = (uint8_t *)(uintptr_t)name;
    nv.value = (uint8_t *)(uintptr_t)value;
    nv.namelen = strlen(name);
    nv.valuelen = strlen(value);
    nv.flags = NGHTTP2_NV_FLAG_NONE;
    return nv;
}

/* Answers one complete request on st and records it. */
static void handle(struct astream *st)
{
    struct aconn *c = st->c;
    struct sim_apns *a = c->srv;
    struct sim *sim = a->sim;
    uint64_t now_ms = sim_now_ms(sim);
    const char *path = cr_buf_cstr(&st->path);
    const char *token = "";
    const char *reason = NULL;
    const char *ref = NULL;
    int status = 200;
    int receipt = -1;
    long long iat = -1;
    struct cr_buf kid;
    cJSON *payload = NULL, *fields = NULL;
    const cJSON *aps, *refv;
    char id[40], status_s[8], ra[16];
    nghttp2_nv nva[4];
    size_t nnv = 0;
    char *fields_text = NULL;
    struct sim_log_input in;
    nghttp2_data_provider prd;

    cr_buf_init(&kid, 256);
    if (is_uuid(cr_buf_cstr(&st->apns_id))) {
        snprintf(id, sizeof(id), "%s", cr_buf_cstr(&st->apns_id));
    } else {
        uint64_t r1 = sim_rng_next(&sim->rng), r2 = sim_rng_next(&sim->rng);

        snprintf(id, sizeof(id), "%08llX-%04llX-4%03llX-%04llX-%012llX",
                 (unsigned long long)(r1 >> 32), (unsigned long long)((r1 >> 16) & 0xffff),
                 (unsigned long long)(r1 & 0xfff),
                 (unsigned long long)(0x8000 | ((r2 >> 48) & 0x3fff)),
                 (unsigned long long)(r2 & 0xffffffffffffull));
    }
    if (strncmp(path, DEVICE_PREFIX, strlen(DEVICE_PREFIX)) == 0)
        token = path + strlen(DEVICE_PREFIX);
    if (strcmp(cr_buf_cstr(&st->method), "POST") != 0) {
        status = 405, reason = "MethodNotAllowed";
        goto answer;
    }
    if (*token == '\0') {
        status = 404, reason = "BadPath";
        goto answer;
    }
    reason = check_token(a, cr_buf_cstr(&st->auth), (long long)(now_ms / 1000), &iat, &kid);
    if (reason != NULL) {
        status = 403;
        goto answer;
    }
    if (st->apns_id.len > 0 && !is_uuid(cr_buf_cstr(&st->apns_id))) {
        status = 400, reason = "BadMessageId";
        goto answer;
    }
    if (st->topic.len == 0) {
        status = 400, reason = "MissingTopic";
        goto answer;
    }
    if (strcmp(cr_buf_cstr(&st->topic), sim->opt.apns_topic) != 0) {
        status = 400, reason = "BadTopic";
        goto answer;
    }
    if (known_push_type(cr_buf_cstr(&st->push_type)) == NULL) {
        status = 400, reason = "InvalidPushType";
        goto answer;
    }
    if (st->priority.len > 0 && strcmp(cr_buf_cstr(&st->priority), "10") != 0 &&
        strcmp(cr_buf_cstr(&st->priority), "5") != 0 &&
        strcmp(cr_buf_cstr(&st->priority), "1") != 0) {
        status = 400, reason = "BadPriority";
        goto answer;
    }
    if (st->collapse.len > 64) {
        status = 400, reason = "BadCollapseId";
        goto answer;
    }
    if (st->too_large) {
        status = 413, reason = "PayloadTooLarge";
        goto answer;
    }
    if (st->body.len == 0) {
        status = 400, reason = "PayloadEmpty";
        goto answer;
    }
    payload = cJSON_ParseWithLength(st->body.data, st->body.len);
    aps = cJSON_GetObjectItemCaseSensitive(payload, "aps");
    refv = cJSON_GetObjectItemCaseSensitive(payload, "crier_ref");
    if (cJSON_IsString(refv))
        ref = refv->valuestring;
    if (!cJSON_IsObject(aps)) {
        status = 400, reason = "BadPayload";
        goto answer;
    }
    if (!is_device_token(token)) {
        status = 400, reason = "BadDeviceToken";
        goto answer;
    }
    switch (sim_provider_inject(sim, SIM_EP_APNS)) {
    case SIM_INJECT_429: status = 429, reason = "TooManyRequests"; goto answer;
    case SIM_INJECT_5XX: status = 503, reason = "ServiceUnavailable"; goto answer;
    default: break;
    }
    if (strncmp(token, "unregistered", 12) == 0) {
        status = 410, reason = "Unregistered";
        goto answer;
    }
    /* accepted: the app on the phone acknowledges the delivered share (callbacks.c) */
    receipt = sim_callbacks_after_push(sim, SIM_EP_APNS, token, ref);
answer:
    cr_buf_reset(&st->answer);
    if (status == 410)
        cr_buf_appendf(&st->answer, "{\"reason\":\"%s\",\"timestamp\":%llu}", reason,
                       (unsigned long long)now_ms);
    else if (reason != NULL)
        cr_buf_appendf(&st->answer, "{\"reason\":\"%s\"}", reason);
    snprintf(status_s, sizeof(status_s), "%d", status);
    snprintf(ra, sizeof(ra), "%u", (unsigned)sim->behaviour[SIM_EP_APNS].retry_after);
    nva[nnv++] = make_nv(":status", status_s);
    nva[nnv++] = make_nv("apns-id", id);
    if (reason != NULL)
        nva[nnv++] = make_nv("content-type", "application/json; charset=utf-8");
    if (status == 429 || status == 503)
        nva[nnv++] = make_nv("retry-after", ra);
    prd.source.ptr = st;
    prd.read_callback = read_answer;
    if (nghttp2_submit_response(c->h2, st->id, nva, nnv, st->answer.len ? &prd : NULL) != 0)
        cr_warn("sim apns stream %d: cannot submit the answer, stream left open", (int)st->id);

    fields = cJSON_CreateObject();
    if (fields != NULL) {
        add_field(fields, "apns-id", &st->apns_id);
        add_field(fields, "apns-priority", &st->priority);
        add_field(fields, "apns-expiration", &st->expiration);
        add_field(fields, "apns-collapse-id", &st->collapse);
        add_field(fields, "apns-push-type", &st->push_type);
        add_field(fields, "apns-topic", &st->topic);
        cJSON_AddStringToObject(fields, "response_apns_id", id);
        add_field(fields, "jwt_kid", &kid);
        if (iat >= 0)
            cJSON_AddNumberToObject(fields, "jwt_iat", (double)iat);
        else
            cJSON_AddNullToObject(fields, "jwt_iat");
        if (reason != NULL)
            cJSON_AddStringToObject(fields, "reason", reason);
        else
            cJSON_AddNullToObject(fields, "reason");
        cJSON_AddStringToObject(fields, "alpn", sim_tls_alpn_h2(&c->tls) ? "h2" : "none");
        if (receipt >= 0)
            cJSON_AddStringToObject(fields, "receipt", receipt ? "delivered" : "none");
        fields_text = cJSON_PrintUnformatted(fields);
    }
    memset(&in, 0, sizeof(in));
    in.ep = SIM_EP_APNS;
    in.t_ms = now_ms;
    in.method = cr_buf_cstr(&st->method);
    in.path = path;
    in.status = status;
    in.recipients = *token ? &token : NULL;
    in.nrecipients = *token ? 1 : 0;
    in.auth = cr_buf_cstr(&st->auth);
    in.ctype = cr_buf_cstr(&st->ctype);
    in.refs = ref ? &ref : NULL;
    in.nrefs = ref ? 1 : 0;
    in.body = cr_buf_cstr(&st->body);
    in.body_len = st->body.len;
    in.fields = fields_text;
    sim_record_add(sim->rec, &in);
    cJSON_free(fields_text);
    cJSON_Delete(fields);
    cJSON_Delete(payload);
    cr_buf_release(&kid);
}

/* ---- nghttp2 callbacks ---- */

static void stream_free(struct astream *st)
{
    struct aconn *c = st->c;

    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    cr_buf_release(&st->method);
    cr_buf_release(&st->path);
    cr_buf_release(&st->auth);
    cr_buf_release(&st->topic);
    cr_buf_release(&st->push_type);
    cr_buf_release(&st->priority);
    cr_buf_release(&st->expiration);
    cr_buf_release(&st->collapse);
    cr_buf_release(&st->apns_id);
    cr_buf_release(&st->ctype);
    cr_buf_release(&st->body);
    cr_buf_release(&st->answer);
    free(st);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct aconn *c = user;
    struct astream *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->c = c;
    st->id = frame->hd.stream_id;
    cr_buf_init(&st->method, 16);
    cr_buf_init(&st->path, 1024);
    cr_buf_init(&st->auth, 4096);
    cr_buf_init(&st->topic, 256);
    cr_buf_init(&st->push_type, 64);
    cr_buf_init(&st->priority, 16);
    cr_buf_init(&st->expiration, 32);
    cr_buf_init(&st->collapse, 256);
    cr_buf_init(&st->apns_id, 64);
    cr_buf_init(&st->ctype, 256);
    cr_buf_init(&st->body, MAX_PAYLOAD);
    cr_buf_init(&st->answer, 256);
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(session, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    static const struct {
        const char *name;
        size_t off;
    } wanted[] = {
        {":method", offsetof(struct astream, method)},
        {":path", offsetof(struct astream, path)},
        {"authorization", offsetof(struct astream, auth)},
        {"apns-topic", offsetof(struct astream, topic)},
        {"apns-push-type", offsetof(struct astream, push_type)},
        {"apns-priority", offsetof(struct astream, priority)},
        {"apns-expiration", offsetof(struct astream, expiration)},
        {"apns-collapse-id", offsetof(struct astream, collapse)},
        {"apns-id", offsetof(struct astream, apns_id)},
        {"content-type", offsetof(struct astream, ctype)},
    };
    struct astream *st;
    size_t i;

    (void)flags;
    (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > MAX_HEADER_BYTES)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    for (i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (strlen(wanted[i].name) == namelen && memcmp(wanted[i].name, name, namelen) == 0) {
            struct cr_buf *b = (struct cr_buf *)((char *)st + wanted[i].off);

            cr_buf_reset(b);
            if (cr_buf_append(b, value, valuelen) < 0)
                cr_buf_reset(b); /* over its cap: reads as absent, which APNs refuses */
            break;
        }
    }
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                   const uint8_t *data, size_t len, void *user)
{
    struct astream *st = nghttp2_session_get_stream_user_data(session, stream_id);

    (void)flags;
    (void)user;
    if (st == NULL || st->too_large)
        return 0;
    if (cr_buf_append(&st->body, data, len) < 0)
        st->too_large = 1;
    return 0;
}

static int on_frame(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct astream *st;

    (void)user;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st != NULL)
        handle(st);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user)
{
    struct astream *st = nghttp2_session_get_stream_user_data(session, stream_id);

    (void)error_code;
    (void)user;
    if (st != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_free(st);
    }
    return 0;
}

/* ---- connections ---- */

static void apns_free(void *owner)
{
    struct sim_apns *a = owner;

    EVP_PKEY_free(a->key);
    free(a);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct aconn *c = h->data;
    struct sim_apns *a = c->srv;

    while (c->streams != NULL)
        stream_free(c->streams);
    nghttp2_session_del(c->h2);
    sim_tls_release(&c->tls);
    cr_buf_release(&c->plain);
    cr_buf_release(&c->wire);
    free(c);
    sim_listener_freed(&a->l);
}

static void conn_close(struct aconn *c)
{
    struct sim_apns *a = c->srv;

    if (c->closing)
        return;
    c->closing = 1;
    sim_listener_remove(&a->l, &c->link);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void close_conn(void *conn)
{
    conn_close(conn);
}

/* Encrypts what nghttp2 has to send and queues it with the TLS records in
 * c->wire. Returns 0 or a negative code. */
static int conn_flush(struct aconn *c)
{
    const uint8_t *data;
    ssize_t n;
    int rc = 0, wrc;

    while (c->tls.established && rc == 0) {
        n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0)
            return CR_EIO;
        if (n == 0)
            break;
        rc = sim_tls_output(&c->tls, (const char *)data, (size_t)n, &c->wire);
    }
    wrc = sim_stream_flush((uv_stream_t *)&c->tcp, &c->wire);
    return rc == 0 ? wrc : rc;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct aconn *c = h->data;

    (void)suggested;
    sim_listener_buf(&c->srv->l, buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct aconn *c = s->data;
    int rc;

    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    rc = sim_tls_input(&c->tls, "apns", buf->base, (size_t)nread, &c->plain, &c->wire);
    if (rc == 0 && c->plain.len > 0) {
        ssize_t used = nghttp2_session_mem_recv(c->h2, (const uint8_t *)c->plain.data,
                                                c->plain.len);

        if (used < 0) {
            cr_debug("sim apns connection: %s, closed", nghttp2_strerror((int)used));
            rc = CR_EPARSE;
        }
        cr_buf_reset(&c->plain);
    }
    if (conn_flush(c) < 0 || rc < 0 ||
        (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)))
        conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sim_apns *a = server->data;
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS}};
    struct aconn *c;

    if (status < 0)
        return;
    if (a->l.nconns >= MAX_CONNS) {
        sim_reject_connection(server, NULL, 0);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = a;
    cr_buf_init(&c->plain, MAX_PLAIN);
    cr_buf_init(&c->wire, MAX_WIRE);
    if (sim_tls_init(&c->tls, a->ctx) < 0 || nghttp2_session_callbacks_new(&cbs) != 0) {
        sim_tls_release(&c->tls);
        free(c);
        return;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    if (nghttp2_session_server_new(&c->h2, cbs, c) != 0) {
        nghttp2_session_callbacks_del(cbs);
        sim_tls_release(&c->tls);
        free(c);
        return;
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1); /* sent after the handshake */
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    sim_listener_add(&a->l, &c->link, c);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

int sim_apns_start(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                   struct sim_apns **out)
{
    struct sim_apns *a;
    struct sockaddr_storage addr;
    int rc;

    if (sim_addr_parse(host, port, &addr) < 0)
        return CR_EINVAL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CR_ENOMEM;
    a->sim = sim;
    a->ctx = ctx;
    rc = load_key(sim->opt.apns_key, &a->key);
    if (rc < 0) {
        free(a);
        return rc;
    }
    rc = sim_listener_start(&a->l, sim->loop, a, apns_free, "sim apns", &addr, host, port,
                            on_connection);
    if (rc < 0)
        return rc;
    *out = a;
    return 0;
}

int sim_apns_port(const struct sim_apns *a)
{
    return a->l.port;
}

void sim_apns_close(struct sim_apns *a)
{
    sim_listener_close(&a->l, close_conn);
}
