/* "$env:" and "$file:" secret references in config values (see cr_secret.h). */
#include "cr_secret.h"
#include "cr_error.h"
#include "cr_str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int env_name_ok(const char *name)
{
    return name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9') &&
           cr_chars_ok(name, strlen(name), CR_CHARS_LETTERS | CR_CHARS_DIGITS, "_");
}

/* Reads the secret in file into a new string *out. */
static int read_secret(const char *file, char **out, char *why, size_t whylen)
{
    char *buf = NULL;
    size_t len = 0;
    int fd = -1;
    int rc = CR_ECONFIG;

    if (file[0] == '\0') {
        snprintf(why, whylen,
                 "'$file:' needs a file name, e.g. $file:/run/credentials/crierd.service/token");
        goto out;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot read %s: %s", file, strerror(errno));
        goto out;
    }
    buf = malloc(CR_SECRET_FILE_MAX + 1);
    if (buf == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, CR_SECRET_FILE_MAX + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, whylen, "cannot read %s: %s", file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CR_SECRET_FILE_MAX) {
            snprintf(why, whylen, "%s is larger than %d bytes", file, CR_SECRET_FILE_MAX);
            goto out;
        }
    }
    if (memchr(buf, '\0', len) != NULL) {
        snprintf(why, whylen, "%s contains a NUL byte", file);
        goto out;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (buf != NULL) {
        explicit_bzero(buf, CR_SECRET_FILE_MAX + 1);
        free(buf);
    }
    return rc;
}

int cr_secret_resolve(const char *s, char **out, char *why, size_t whylen)
{
    const char *value;

    *out = NULL;
    if (s[0] != '$')
        return 0;
    if (s[1] == '$')
        value = s + 1;
    else if (strncmp(s, "$file:", 6) == 0)
        return read_secret(s + 6, out, why, whylen);
    else if (strncmp(s, "$env:", 5) == 0) {
        if (!env_name_ok(s + 5)) {
            snprintf(why, whylen, "'$env:' needs a variable name of letters, digits and '_'");
            return CR_ECONFIG;
        }
        value = getenv(s + 5);
        if (value == NULL) {
            snprintf(why, whylen, "environment variable %s is not set", s + 5);
            return CR_ECONFIG;
        }
    } else {
        snprintf(why, whylen,
                 "starts with '$' but is not $env:NAME or $file:/path (write $$ for a literal $)");
        return CR_ECONFIG;
    }
    *out = strdup(value);
    return *out != NULL ? 0 : CR_ENOMEM;
}

void cr_free_secret(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s)); /* not dropped as a store before free */
    free(s);
}
