/* Google's OAuth2 token endpoint (POST /token) for FCM service accounts, as
 * crier-sim answers it: the RS256 JWT assertion is checked against the public
 * half of --fcm-service-account's key and its claims, and the access tokens
 * issued are remembered so that the FCM send endpoint accepts them until they
 * expire. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "sim.h"

#define GRANT_JWT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"
#define MAX_KEY_FILE (64 * 1024)
#define MAX_ASSERTION (16 * 1024)
#define MAX_TOKENS 4096 /* issued tokens remembered; the oldest go first */
#define MAX_LIFETIME_S 3600
#define TOKEN_CHARS 40

struct issued {
    char token[8 + TOKEN_CHARS];
    uint64_t expires_ms;
};

struct sim_oauth {
    EVP_PKEY *pub;      /* NULL: no --fcm-service-account, signatures are not checked */
    char *client_email; /* the only accepted iss */
    struct issued *tokens;
    size_t ntokens, next; /* ring of MAX_TOKENS */
};

/* Reads a whole file of at most max bytes into a NUL-terminated buffer. */
static char *read_file(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = malloc(max + 1);
    if (buf != NULL) {
        n = fread(buf, 1, max + 1, f);
        if (n > max || ferror(f)) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

/* The public half of a PEM private key, as a key object holding nothing else. */
static EVP_PKEY *public_half(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *priv = NULL, *pub = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    int len;

    if (bio == NULL)
        return NULL;
    priv = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    if (priv == NULL || EVP_PKEY_get_base_id(priv) != EVP_PKEY_RSA)
        goto out;
    len = i2d_PUBKEY(priv, &der);
    if (len <= 0)
        goto out;
    p = der;
    pub = d2i_PUBKEY(NULL, &p, len);
out:
    OPENSSL_free(der);
    EVP_PKEY_free(priv);
    BIO_free(bio);
    return pub;
}

int sim_oauth_init(struct sim *sim)
{
    const char *path = sim->opt.fcm_service_account;
    struct sim_oauth *o = calloc(1, sizeof(*o));
    char *text = NULL;
    cJSON *doc = NULL;
    const cJSON *email, *key;
    int rc = CR_ECONFIG;

    if (o == NULL)
        return CR_ENOMEM;
    sim->oauth = o;
    if (path == NULL)
        return 0;
    text = read_file(path, MAX_KEY_FILE);
    if (text == NULL) {
        cr_error("sim --fcm-service-account %s: cannot read (%s, or over 64 KiB)", path,
                 strerror(errno));
        goto out;
    }
    doc = cJSON_Parse(text);
    email = cJSON_GetObjectItemCaseSensitive(doc, "client_email");
    key = cJSON_GetObjectItemCaseSensitive(doc, "private_key");
    if (!cJSON_IsString(email) || email->valuestring[0] == '\0' || !cJSON_IsString(key)) {
        cr_error("sim --fcm-service-account %s: needs string client_email and private_key",
                 path);
        goto out;
    }
    o->pub = public_half(key->valuestring);
    if (o->pub == NULL) {
        cr_error("sim --fcm-service-account %s: private_key is not an RSA private key PEM",
                 path);
        goto out;
    }
    o->client_email = strdup(email->valuestring);
    if (o->client_email == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(doc);
    free(text);
    return rc;
}

void sim_oauth_release(struct sim *sim)
{
    struct sim_oauth *o = sim->oauth;

    if (o == NULL)
        return;
    EVP_PKEY_free(o->pub);
    free(o->client_email);
    free(o->tokens);
    free(o);
    sim->oauth = NULL;
}

int sim_oauth_token_ok(const struct sim *sim, const char *token)
{
    const struct sim_oauth *o = sim->oauth;
    uint64_t now = sim_now_ms(sim);
    size_t i;

    if (strcmp(token, sim->opt.fcm_token) == 0)
        return 1;
    if (o == NULL)
        return 0;
    for (i = 0; i < o->ntokens; i++) {
        if (strcmp(o->tokens[i].token, token) == 0)
            return o->tokens[i].expires_ms > now;
    }
    return 0;
}

/* Decodes base64url (no padding) of n bytes into out (cap bytes). Returns the
 * decoded length, or -1. */
static int b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    char *tmp;
    size_t i, padded = (n + 3) / 4 * 4;
    int len;

    if (n % 4 == 1 || padded / 4 * 3 > cap)
        return -1;
    tmp = malloc(padded + 1);
    if (tmp == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            c = '!'; /* not base64url: make EVP_DecodeBlock fail */
        tmp[i] = c;
    }
    for (; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    len = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)padded);
    if (len >= 0)
        len -= (int)(padded - n); /* EVP_DecodeBlock counts padding as zero bytes */
    free(tmp);
    return len;
}

/* Decodes a base64url JSON part into an object, or NULL. */
static cJSON *json_part(const char *s, size_t n)
{
    unsigned char buf[MAX_ASSERTION];
    int len = b64url_decode(s, n, buf, sizeof(buf));
    cJSON *doc;

    if (len < 0)
        return NULL;
    doc = cJSON_ParseWithLength((const char *)buf, (size_t)len);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

static int verify_rs256(EVP_PKEY *pub, const char *signed_part, size_t n,
                        const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;

    if (ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1)
        ok = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)signed_part, n) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Whether the space-separated scope list holds want. */
static int has_scope(const char *list, const char *want)
{
    size_t n = strlen(want);
    const char *p = strstr(list, want);

    while (p != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return 1;
        p = strstr(p + n, want);
    }
    return 0;
}

/* Copies the Host header's value into out; "" when absent. */
static void host_of(const struct sim_request *req, char *out, size_t n)
{
    const char *line = req->headers ? req->headers : "";

    out[0] = '\0';
    while (*line != '\0') {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);

        if (len > 5 && strncasecmp(line, "host:", 5) == 0) {
            const char *v = line + 5;
            size_t vlen = len - 5;

            while (vlen > 0 && *v == ' ') {
                v++;
                vlen--;
            }
            if (vlen < n) {
                memcpy(out, v, vlen);
                out[vlen] = '\0';
            }
            return;
        }
        line += len + (end ? 2 : 0);
    }
}

/* Checks the JWT; returns NULL when good, else the error_description. */
static const char *check_jwt(struct sim *sim, const struct sim_request *req, const char *jwt)
{
    const struct sim_oauth *o = sim->oauth;
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    unsigned char sig[MAX_ASSERTION];
    const char *why = NULL;
    cJSON *hdr = NULL, *claims = NULL;
    const cJSON *alg, *iss, *scope, *aud, *iat, *exp;
    char host[256], url[300], surl[300];
    double now = (double)(sim_now_ms(sim) / 1000);
    int sig_len;

    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL || dot2[1] == '\0')
        return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe";
    hdr = json_part(jwt, (size_t)(dot1 - jwt));
    claims = json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (hdr == NULL || claims == NULL) {
        why = "Invalid JWT: header or claim set is not base64url JSON";
        goto out;
    }
    alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "RS256") != 0) {
        why = "Invalid JWT: alg must be RS256";
        goto out;
    }
    if (o->pub != NULL) {
        sig_len = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
        if (sig_len <= 0 || !verify_rs256(o->pub, jwt, (size_t)(dot2 - jwt), sig,
                                          (size_t)sig_len)) {
            why = "Invalid JWT Signature.";
            goto out;
        }
    }
    iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
    if (!cJSON_IsString(iss) ||
        (o->client_email != NULL && strcmp(iss->valuestring, o->client_email) != 0)) {
        why = "Invalid email or User ID";
        goto out;
    }
    scope = cJSON_GetObjectItemCaseSensitive(claims, "scope");
    if (!cJSON_IsString(scope) || !has_scope(scope->valuestring, FCM_SCOPE)) {
        why = "Invalid OAuth scope or ID token audience provided: the scope must include "
              FCM_SCOPE;
        goto out;
    }
    host_of(req, host, sizeof(host));
    snprintf(url, sizeof(url), "http://%s%s", host, req->path);
    snprintf(surl, sizeof(surl), "https://%s%s", host, req->path);
    aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
    if (!cJSON_IsString(aud) ||
        (strcmp(aud->valuestring, url) != 0 && strcmp(aud->valuestring, surl) != 0)) {
        why = "Invalid JWT: aud must be the token URL";
        goto out;
    }
    iat = cJSON_GetObjectItemCaseSensitive(claims, "iat");
    exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
    if (!cJSON_IsNumber(iat) || !cJSON_IsNumber(exp)) {
        why = "Invalid JWT: iat and exp must be numbers";
        goto out;
    }
    if (exp->valuedouble <= now) {
        why = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
              "timeframe. Check your iat and exp values in the JWT claim.";
        goto out;
    }
    if (exp->valuedouble - iat->valuedouble > MAX_LIFETIME_S ||
        exp->valuedouble <= iat->valuedouble) {
        why = "Invalid JWT: exp must be after iat and at most 1 hour after it";
        goto out;
    }
out:
    cJSON_Delete(hdr);
    cJSON_Delete(claims);
    return why;
}

/* Remembers a new token valid for ttl seconds; an old entry makes room. */
static int issue(struct sim *sim, char *out, size_t n)
{
    static const char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct sim_oauth *o = sim->oauth;
    struct issued *t;
    uint64_t now = sim_now_ms(sim);
    size_t i, k;

    if (o->tokens == NULL) {
        o->tokens = calloc(MAX_TOKENS, sizeof(*o->tokens));
        if (o->tokens == NULL)
            return CR_ENOMEM;
    }
    /* reuse an expired slot first, else the oldest */
    for (i = 0; i < o->ntokens && o->tokens[i].expires_ms > now; i++)
        ;
    if (i == o->ntokens && o->ntokens < MAX_TOKENS) {
        o->ntokens++;
    } else if (i == o->ntokens) {
        i = o->next;
        o->next = (o->next + 1) % MAX_TOKENS;
    }
    t = &o->tokens[i];
    memcpy(t->token, "ya29.", 5);
    for (k = 0; k < TOKEN_CHARS; k++)
        t->token[5 + k] = chars[sim_rng_next(&sim->rng) % 64];
    t->token[5 + TOKEN_CHARS] = '\0';
    t->expires_ms = now + (uint64_t)sim->opt.fcm_token_ttl * 1000;
    snprintf(out, n, "%s", t->token);
    return 0;
}

static void answer(struct sim_response *res, int status, const char *error, const char *why)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "error", error);
    cJSON_AddStringToObject(doc, "error_description", why);
    sim_res_cjson(res, status, doc);
    cJSON_Delete(doc);
}

void sim_oauth_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    struct cr_buf grant, assertion;
    char token[8 + TOKEN_CHARS];
    const char *why;
    cJSON *doc = NULL;

    cr_buf_init(&grant, 256);
    cr_buf_init(&assertion, MAX_ASSERTION);
    if (strcmp(req->method_name, "POST") != 0) {
        sim_res_literal(res, 405, "{\"error\":\"method not allowed\"}");
        sim_res_header(res, "Allow", "POST");
        goto out;
    }
    if (sim_form_get(req->body, req->body_len, "grant_type", &grant) != 1 ||
        strcmp(cr_buf_cstr(&grant), GRANT_JWT) != 0) {
        answer(res, 400, "unsupported_grant_type", "Invalid grant_type");
        goto out;
    }
    if (sim_form_get(req->body, req->body_len, "assertion", &assertion) != 1 ||
        assertion.len == 0) {
        answer(res, 400, "invalid_request", "Missing required parameter: assertion");
        goto out;
    }
    why = check_jwt(sim, req, cr_buf_cstr(&assertion));
    if (why != NULL) {
        answer(res, 400, "invalid_grant", why);
        goto out;
    }
    switch (sim_provider_inject(sim, SIM_EP_OAUTH)) {
    case SIM_INJECT_429:
        answer(res, 429, "rate_limit_exceeded", "Rate limit exceeded");
        sim_provider_retry_after(sim, SIM_EP_OAUTH, res);
        goto out;
    case SIM_INJECT_5XX:
        answer(res, 503, "internal_failure", "Backend Error");
        goto out;
    default:
        break;
    }
    if (issue(sim, token, sizeof(token)) < 0) {
        answer(res, 503, "internal_failure", "out of memory");
        goto out;
    }
    doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "access_token", token);
    cJSON_AddNumberToObject(doc, "expires_in", sim->opt.fcm_token_ttl);
    cJSON_AddStringToObject(doc, "token_type", "Bearer");
    sim_res_cjson(res, 200, doc);
out:
    res->ctype = SIM_JSON_UTF8;
    sim_provider_done(sim, SIM_EP_OAUTH, req, res, NULL, 0, NULL, 0);
    cJSON_Delete(doc);
    cr_buf_release(&grant);
    cr_buf_release(&assertion);
}
