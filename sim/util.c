/* Small pieces every part of crier-sim uses: endpoint names, the seeded PRNG,
 * UTF-8 cleaning and JSON string output for the recorder, form decoding, and
 * the helpers handlers use to fill a response. */
#include "sim.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cr_error.h"
#include "cr_str.h"

static const char *const endpoint_names[SIM_EP_COUNT] = {"sendgrid", "twilio", "fcm", "apns",
                                                           "smtp", "gateway", "oauth", "meta"};

const char *sim_endpoint_name(enum sim_endpoint ep)
{
    return (unsigned)ep < SIM_EP_COUNT ? endpoint_names[ep] : NULL;
}

int sim_endpoint_parse(const char *s, size_t n, enum sim_endpoint *out)
{
    int i;

    for (i = 0; i < SIM_EP_COUNT; i++) {
        if (strlen(endpoint_names[i]) == n && memcmp(endpoint_names[i], s, n) == 0) {
            *out = (enum sim_endpoint)i;
            return 0;
        }
    }
    return CR_EINVAL;
}

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    /* splitmix64 step so that small seeds still start from well-mixed state */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x9E3779B97F4A7C15ull;
}

uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t x = r->s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

double sim_rng_double(struct sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t sim_now_ms(const struct sim *sim)
{
    return sim->start_wall_ms + (uv_now(sim->loop) - sim->start_loop_ms);
}

uint64_t sim_uptime_ms(const struct sim *sim)
{
    return uv_now(sim->loop) - sim->start_loop_ms;
}

int sim_json_str(struct cr_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    size_t run = 0;
    int rc;

    rc = cr_buf_append(out, "\"", 1);
    for (i = 0; rc == 0 && i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[6];
        size_t elen = 2;

        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        rc = cr_buf_append(out, s + run, i - run);
        if (rc < 0)
            break;
        run = i + 1;
        esc[0] = '\\';
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            elen = 6;
            break;
        }
        rc = cr_buf_append(out, esc, elen);
    }
    if (rc == 0)
        rc = cr_buf_append(out, s + run, n - run);
    if (rc == 0)
        rc = cr_buf_append(out, "\"", 1);
    return rc;
}

int sim_utf8_clean(struct cr_buf *out, const char *s, size_t n, int cut)
{
    static const char repl[] = "\xEF\xBF\xBD";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    size_t run = 0;
    int rc = 0;

    while (i < n) {
        int len = p[i] == 0 ? 0 : cr_utf8_seq_len(p + i, n - i);

        if (len > 0) {
            i += (size_t)len;
            continue;
        }
        rc = cr_buf_append(out, s + run, i - run);
        if (rc < 0)
            return rc;
        if (len < 0 && cut)
            return 0;
        rc = cr_buf_append(out, repl, 3);
        if (rc < 0)
            return rc;
        i++;
        run = i;
    }
    return cr_buf_append(out, s + run, n - run);
}

/* Percent-decodes s[0..n) into out ('+' is a space; a bad escape stays as is). */
static int form_decode(struct cr_buf *out, const char *s, size_t n)
{
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < n; i++) {
        char c = s[i];

        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n && cr_hex_value(s[i + 1]) >= 0 && cr_hex_value(s[i + 2]) >= 0) {
            c = (char)(cr_hex_value(s[i + 1]) * 16 + cr_hex_value(s[i + 2]));
            i += 2;
        }
        rc = cr_buf_append(out, &c, 1);
    }
    return rc;
}

int sim_form_get(const char *s, size_t n, const char *key, struct cr_buf *out)
{
    size_t pos = 0;
    size_t klen = strlen(key);
    struct cr_buf k;
    int rc = 0;

    cr_buf_init(&k, 128);
    while (pos < n) {
        const char *pair = s + pos;
        const char *amp = memchr(pair, '&', n - pos);
        size_t plen = amp ? (size_t)(amp - pair) : n - pos;
        const char *eq = memchr(pair, '=', plen);
        size_t keylen = eq ? (size_t)(eq - pair) : plen;

        pos += plen + 1;
        cr_buf_reset(&k);
        if (keylen > 3 * klen || form_decode(&k, pair, keylen) < 0)
            continue;
        if (k.len != klen || memcmp(cr_buf_cstr(&k), key, klen) != 0)
            continue;
        rc = eq ? form_decode(out, eq + 1, plen - keylen - 1) : 0;
        rc = rc < 0 ? rc : 1;
        goto out;
    }
    rc = 0;
out:
    cr_buf_release(&k);
    return rc;
}

int sim_starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int sim_is_e164(const char *s, size_t n)
{
    size_t i;

    if (n < 8 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    for (i = 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

size_t sim_utf8_count(const char *s, size_t n, int *unicode)
{
    size_t i, chars = 0;
    int wide = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c & 0xC0) != 0x80)
            chars++;
        if (c >= 0x80)
            wide = 1;
    }
    if (unicode != NULL)
        *unicode = wide;
    return chars;
}

void sim_rfc2822(char *out, size_t n, uint64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    if (strftime(out, n, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0 && n > 0)
        out[0] = '\0';
}

void sim_res_json(struct sim_response *res, int status, const char *json, size_t n)
{
    res->status = status;
    res->ctype = SIM_JSON;
    cr_buf_reset(&res->body);
    if (cr_buf_append(&res->body, json, n) < 0) {
        res->status = 500;
        cr_buf_reset(&res->body);
    }
}

void sim_res_literal(struct sim_response *res, int status, const char *json)
{
    sim_res_json(res, status, json, strlen(json));
}

void sim_res_cjson(struct sim_response *res, int status, const struct cJSON *item)
{
    char *text = cJSON_PrintUnformatted(item);

    if (text == NULL) {
        sim_res_literal(res, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    sim_res_json(res, status, text, strlen(text));
    cJSON_free(text);
}

void sim_res_header(struct sim_response *res, const char *name, const char *value)
{
    size_t mark = res->headers.len;

    if (cr_buf_appendf(&res->headers, "%s: %s\r\n", name, value) < 0) {
        res->headers.len = mark;
        if (res->headers.data)
            res->headers.data[mark] = '\0';
    }
}
