/* Test keys made at test time with OpenSSL (no private key is checked in). */
#ifndef CR_TEST_WORKERS_KEYS_H
#define CR_TEST_WORKERS_KEYS_H

/* Generates a key of kind "EC" (P-256) or "RSA" (2048 bits) and gives its
 * private half as PKCS#8 PEM and its public half as SubjectPublicKeyInfo PEM,
 * both malloc'd (the caller frees them). Returns 0 or -1. */
int cr_test_key_pair(const char *kind, char **priv_pem, char **pub_pem);

#endif
