/* Config values that name a secret instead of holding it: "$env:NAME" and
 * "$file:/path", resolved once when a config is loaded, so that crierd's and
 * crier-audit's files follow one rule. */
#ifndef CR_SECRET_H
#define CR_SECRET_H

#include <stddef.h>

/* The largest "$file:" secret, in bytes. */
#define CR_SECRET_FILE_MAX (64 * 1024)

/* Resolves the config string s. "$env:NAME" (NAME of letters, digits and '_',
 * not starting with a digit) gives the variable's value; "$file:/path" the
 * file's content (at most CR_SECRET_FILE_MAX bytes, no NUL byte, one final
 * "\n" or "\r\n" dropped); "$$..." gives "$..." (a literal '$'). Any other
 * string starting with '$' is an error; one that does not start with '$' is
 * no reference: *out is then NULL and s stands as it is. *out (caller frees,
 * best with explicit_bzero first) is a new string otherwise. Returns 0,
 * CR_ENOMEM, or CR_ECONFIG with why (whylen bytes) saying what is wrong,
 * without naming the config key: the caller puts its path in front. */
int cr_secret_resolve(const char *s, char **out, char *why, size_t whylen);

/* Wipes a secret (key, token, password) and frees it; NULL does nothing. */
void cr_free_secret(char *s);

#endif
