/* Signature helpers (see sigs.h) on OpenSSL 3's EVP interfaces. */
#include "sigs.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"

#define KEY_TEXT_MAX 8192

int cr_b64_encode(const void *in, size_t n, unsigned flags, char *out, size_t outlen)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    int len;
    int i;

    if (outlen < need || n > (size_t)INT32_MAX / 2)
        return CR_ETOOBIG;
    len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    if (flags & CR_B64_URL) {
        for (i = 0; i < len; i++) {
            if (out[i] == '+')
                out[i] = '-';
            else if (out[i] == '/')
                out[i] = '_';
        }
    }
    if (flags & CR_B64_NOPAD) {
        while (len > 0 && out[len - 1] == '=')
            len--;
    }
    out[len] = '\0';
    return len;
}

int cr_b64_decode(const char *in, size_t len, unsigned flags, unsigned char *out, size_t outlen)
{
    unsigned char *tmp = NULL;
    unsigned char *dec = NULL;
    size_t padded, pad = 0, i;
    int n;
    int rc = CR_EPARSE;

    while (len > 0 && in[len - 1] == '=' && pad < 2) { /* padding is put back below */
        len--;
        pad++;
    }
    if (len % 4 == 1 || len > 1024 * 1024)
        goto out;
    padded = (len + 3) / 4 * 4;
    tmp = malloc(padded + 1);
    dec = malloc(padded / 4 * 3 + 1);
    if (tmp == NULL || dec == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    for (i = 0; i < len; i++) {
        char c = in[i];

        if (flags & CR_B64_URL) {
            if (c == '-')
                c = '+';
            else if (c == '_')
                c = '/';
            else if (c == '+' || c == '/')
                goto out;
        }
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            goto out;
        tmp[i] = (unsigned char)c;
    }
    if (len % 4 != 0) {
        /* the last character's unused bits must be zero: one encoding per value */
        char c = (char)tmp[len - 1];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : 63;

        if ((len % 4 == 2 && (v & 15) != 0) || (len % 4 == 3 && (v & 3) != 0))
            goto out;
    }
    pad = padded - len;
    for (i = len; i < padded; i++)
        tmp[i] = '=';
    if (padded == 0) {
        rc = 0;
        goto out;
    }
    n = EVP_DecodeBlock(dec, tmp, (int)padded);
    if (n < 0 || (size_t)n < pad)
        goto out;
    n -= (int)pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    if ((size_t)n > outlen) {
        rc = CR_ETOOBIG;
        goto out;
    }
    memcpy(out, dec, (size_t)n);
    rc = n;
out:
    free(tmp);
    free(dec);
    return rc;
}

int cr_hmac(const EVP_MD *md, const void *key, size_t keylen, const void *const *parts,
            const size_t *lens, size_t n, unsigned char *out, unsigned *outlen)
{
    static EVP_MAC *mac; /* fetched once: a fetch costs more than the MAC itself */
    EVP_MAC_CTX *mctx = NULL;
    OSSL_PARAM params[2];
    size_t got = 0;
    size_t i;
    int rc = CR_ENOMEM;

    if (mac == NULL)
        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL)
        goto out;
    mctx = EVP_MAC_CTX_new(mac);
    if (mctx == NULL)
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)(uintptr_t)EVP_MD_get0_name(md), 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(mctx, key, keylen, params) != 1)
        goto out;
    for (i = 0; i < n; i++) {
        if (lens[i] > 0 && EVP_MAC_update(mctx, parts[i], lens[i]) != 1)
            goto out;
    }
    if (EVP_MAC_final(mctx, out, &got, EVP_MAX_MD_SIZE) != 1)
        goto out;
    *outlen = (unsigned)got;
    rc = 0;
out:
    EVP_MAC_CTX_free(mctx);
    return rc;
}

int cr_hmac_ts_body(const void *key, size_t keylen, const char *ts, const void *body, size_t len,
                    unsigned char out[CR_HMAC_SHA256_LEN])
{
    const void *parts[3] = {ts, ".", body};
    size_t lens[3] = {strlen(ts), 1, len};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = cr_hmac(EVP_sha256(), key, keylen, parts, lens, 3, md, &mdlen);

    if (rc != 0 || mdlen != CR_HMAC_SHA256_LEN)
        return rc != 0 ? rc : CR_ENOMEM;
    memcpy(out, md, CR_HMAC_SHA256_LEN);
    return 0;
}

int cr_same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

int cr_ec_public_key_load(const char *text, EVP_PKEY **out)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *key = NULL;
    BIO *bio = NULL;
    size_t len = strlen(text);
    int n;
    int rc = CR_EPARSE;

    if (len == 0 || len > KEY_TEXT_MAX)
        goto out;
    if (strstr(text, "-----BEGIN") != NULL) {
        bio = BIO_new_mem_buf(text, (int)len);
        if (bio == NULL)
            goto out;
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    } else {
        der = malloc(len);
        if (der == NULL)
            goto out;
        n = cr_b64_decode(text, len, 0, der, len);
        if (n <= 0)
            goto out;
        p = der;
        key = d2i_PUBKEY(NULL, &p, n);
    }
    if (key == NULL || !EVP_PKEY_is_a(key, "EC"))
        goto out;
    *out = key;
    key = NULL;
    rc = 0;
out:
    if (rc != 0)
        ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(bio);
    free(der);
    return rc;
}

int cr_ecdsa_sha256_verify(EVP_PKEY *key, const void *const *parts, const size_t *lens, size_t n,
                           const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t i;
    int ok = 0;

    if (ctx == NULL || key == NULL || siglen == 0)
        goto out;
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    for (i = 0; i < n; i++) {
        if (lens[i] > 0 && EVP_DigestVerifyUpdate(ctx, parts[i], lens[i]) != 1)
            goto out;
    }
    ok = EVP_DigestVerifyFinal(ctx, sig, siglen) == 1;
out:
    if (!ok)
        ERR_clear_error(); /* a bad signature is an answer, not an error to keep */
    EVP_MD_CTX_free(ctx);
    return ok;
}

void cr_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
