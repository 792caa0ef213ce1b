/* The signatures the HTTP side checks and makes: base64 (standard and URL
 * alphabet), HMAC-SHA1/SHA256, ECDSA P-256 verification, and a comparison
 * that takes the same time whatever the bytes. OpenSSL EVP underneath. */
#ifndef CR_SIGS_H
#define CR_SIGS_H

#include <openssl/evp.h>
#include <stddef.h>

enum {
    CR_B64_URL = (1 << 0),   /* '-' and '_' instead of '+' and '/' */
    CR_B64_NOPAD = (1 << 1)  /* no '=' padding (decoding accepts both) */
};

/* Encodes n bytes into out (NUL-terminated). Returns the length written, or
 * CR_ETOOBIG when out (outlen bytes) is too small. */
int cr_b64_encode(const void *in, size_t n, unsigned flags, char *out, size_t outlen);

/* Decodes a base64 string of len characters (padding optional) into out.
 * Returns the number of bytes, CR_EPARSE for a character outside the
 * alphabet or a bad length, or CR_ETOOBIG when out is too small. */
int cr_b64_decode(const char *in, size_t len, unsigned flags, unsigned char *out, size_t outlen);

/* HMAC of the concatenation of parts[0..n) with key; md is EVP_sha1() or
 * EVP_sha256(). Writes the digest (at most EVP_MAX_MD_SIZE bytes) to out and
 * its length to *outlen. Returns 0 or CR_ENOMEM. */
int cr_hmac(const EVP_MD *md, const void *key, size_t keylen, const void *const *parts,
            const size_t *lens, size_t n, unsigned char *out, unsigned *outlen);

#define CR_HMAC_SHA256_LEN 32

/* HMAC-SHA256 with key of ts "." body: the scheme of signed jobs ("v1=")
 * and of the generic webhook ("sha256="). Writes CR_HMAC_SHA256_LEN bytes to
 * out. Returns 0 or CR_ENOMEM. */
int cr_hmac_ts_body(const void *key, size_t keylen, const char *ts, const void *body, size_t len,
                    unsigned char out[CR_HMAC_SHA256_LEN]);

/* Nonzero when a and b hold the same n bytes and alen == blen; the time taken
 * depends only on the lengths. */
int cr_same_bytes(const void *a, size_t alen, const void *b, size_t blen);

/* Loads an EC P-256 public key from PEM ("-----BEGIN PUBLIC KEY-----") or from
 * the base64 of its DER SubjectPublicKeyInfo (what SendGrid shows). Returns 0
 * and *out (free with EVP_PKEY_free), or CR_EPARSE. */
int cr_ec_public_key_load(const char *text, EVP_PKEY **out);

/* Verifies a DER ECDSA signature over SHA-256 of the concatenated parts.
 * Returns 1 valid, 0 invalid (including malformed signatures). */
int cr_ecdsa_sha256_verify(EVP_PKEY *key, const void *const *parts, const size_t *lens, size_t n,
                           const unsigned char *sig, size_t siglen);

/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void cr_hex(const unsigned char *in, size_t n, char *out);

#endif
