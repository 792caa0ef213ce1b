/* Key pairs for the signing adapters' tests (APNs ES256, FCM RS256), made fresh
 * for every run so that no private key lives in the repository. */
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>

#include "test_workers_keys.h"

static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *out;

    if (len <= 0)
        return NULL;
    out = malloc((size_t)len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    return out;
}

int cr_test_key_pair(const char *kind, char **priv_pem, char **pub_pem)
{
    EVP_PKEY *key = NULL;
    BIO *priv = BIO_new(BIO_s_mem());
    BIO *pub = BIO_new(BIO_s_mem());
    int rc = -1;

    *priv_pem = NULL;
    *pub_pem = NULL;
    if (priv == NULL || pub == NULL)
        goto out;
    if (strcmp(kind, "EC") == 0)
        key = EVP_EC_gen("P-256");
    else
        key = EVP_RSA_gen(2048);
    if (key == NULL)
        goto out;
    if (PEM_write_bio_PrivateKey(priv, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, key) != 1)
        goto out;
    *priv_pem = bio_string(priv);
    *pub_pem = bio_string(pub);
    if (*priv_pem == NULL || *pub_pem == NULL) {
        free(*priv_pem);
        free(*pub_pem);
        *priv_pem = NULL;
        *pub_pem = NULL;
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(priv);
    BIO_free(pub);
    return rc;
}
