/* Sentinel discovery (see sentinel.h): one short-lived query connection at a
 * time walks the Sentinel list, one persistent connection holds the
 * +switch-master subscription, and one timer drives deadlines, spaced-out
 * rounds and moving the subscription to another Sentinel. */
#include "sentinel.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_secret.h"
#include "cr_log.h"

#define TICK_MS 100
#define ROUND_GAP_MS 500        /* between the starts of two discovery rounds, at first */
#define GAP_RESET_MS 30000      /* a quiet spell this long brings the gap back to the first */
#define CONFIRM_MS 1000         /* an address older than this is re-asked on reconnect */
#define RETRY_FIRST_MS 250      /* after a round in which no Sentinel named a primary */
#define SUB_PING_MS 3000        /* liveness of the subscription connection */
#define REFRESH_MS 60000        /* SENTINEL sentinels at most this often */
#define ADDR_TEXT 300

struct cr_sentinel {
    uv_loop_t *loop;
    char *master;
    char *username;
    char *password;
    struct cr_redis_tls tls;
    char *tls_ca, *tls_cert, *tls_key, *tls_name;
    long timeout_ms;
    long retry_max_ms;
    int closing;

    struct cr_redis_addr nodes[CR_SENTINEL_NODES_CAP];
    size_t nnodes;

    struct cr_redis_addr primary;
    int have_primary;
    uint64_t confirmed_ms;      /* when a Sentinel last named primary */
    unsigned long failovers;
    char down[256];             /* why no primary is known */

    /* discovery: one round at a time */
    int discovering;
    int wanted;                 /* a round is due once the gap is over */
    uint64_t next_round_ms;
    uint64_t round_started_ms;
    long gap_ms;                /* doubles while rounds keep naming the same primary */
    long retry_ms;              /* grows while rounds find nothing */
    size_t attempt;             /* index into nodes of the Sentinel being asked */
    struct cr_redis *query;
    uint64_t query_deadline_ms;
    int query_refresh;          /* the query connection also asks SENTINEL sentinels */
    uint64_t refreshed_ms;

    /* the +switch-master subscription */
    struct cr_redis *sub;
    struct cr_redis_addr sub_node;
    uint64_t sub_since_ms;      /* when sub was opened or last confirmed */
    int subscribed;
    int ping_pending;
    uint64_t pinged_ms;
    size_t sub_next;            /* where to look for the next Sentinel to subscribe on */

    struct cr_redis *watch[CR_SENTINEL_WATCH_MAX];
    size_t nwatch;

    /* connections to close outside their own callbacks */
    struct cr_redis *dead[4];
    size_t ndead;

    uv_timer_t timer;
};

static void start_round(struct cr_sentinel *s);
static void ask_node(struct cr_sentinel *s);
static void open_sub(struct cr_sentinel *s);
static void on_tick(uv_timer_t *t);

static uint64_t now_ms(const struct cr_sentinel *s)
{
    return uv_now(s->loop);
}

/* ---- pure parts ---- */

int cr_sentinel_parse_node(const char *str, struct cr_redis_addr *out)
{
    const char *host = str, *colon, *end;
    size_t hlen;
    long port = 0;

    if (str == NULL || str[0] == '\0')
        return CR_EINVAL;
    if (str[0] == '[') {
        end = strchr(str, ']');
        if (end == NULL || end[1] != ':')
            return CR_EINVAL;
        host = str + 1;
        hlen = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(str, ':');
        if (colon == NULL || memchr(str, ':', (size_t)(colon - str)) != NULL)
            return CR_EINVAL;
        hlen = (size_t)(colon - str);
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return CR_EINVAL;
    for (size_t i = 0; i < hlen; i++) {
        if (isspace((unsigned char)host[i]) || iscntrl((unsigned char)host[i]))
            return CR_EINVAL;
    }
    if (colon[1] == '\0')
        return CR_EINVAL;
    for (const char *p = colon + 1; *p; p++) {
        if (!isdigit((unsigned char)*p) || port > 65535)
            return CR_EINVAL;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        return CR_EINVAL;
    memset(out, 0, sizeof(*out));
    memcpy(out->host, host, hlen);
    out->port = (int)port;
    return 0;
}

void cr_sentinel_format_addr(const struct cr_redis_addr *a, char *buf, size_t n)
{
    if (strchr(a->host, ':') != NULL)
        snprintf(buf, n, "[%s]:%d", a->host, a->port);
    else
        snprintf(buf, n, "%s:%d", a->host, a->port);
}

int cr_sentinel_same_addr(const struct cr_redis_addr *a, const struct cr_redis_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The next space-separated token of [*p, end) into out; 0 or CR_EPARSE. */
static int token(const char **p, const char *end, char *out, size_t cap)
{
    const char *t;
    size_t n;

    while (*p < end && **p == ' ')
        (*p)++;
    t = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    n = (size_t)(*p - t);
    if (n == 0 || n >= cap)
        return CR_EPARSE;
    memcpy(out, t, n);
    out[n] = '\0';
    return 0;
}

static int parse_port(const char *s, int *port)
{
    long v = 0;

    if (*s == '\0')
        return CR_EPARSE;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > 65535)
            return CR_EPARSE;
        v = v * 10 + (*s - '0');
    }
    if (v < 1 || v > 65535)
        return CR_EPARSE;
    *port = (int)v;
    return 0;
}

int cr_sentinel_parse_switch(const char *payload, size_t len, const char *master,
                             struct cr_redis_addr *from, struct cr_redis_addr *to)
{
    const char *p = payload, *end = payload + len;
    char name[256], ports[2][16];
    struct cr_redis_addr a, b;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    if (token(&p, end, name, sizeof name) < 0 || token(&p, end, a.host, sizeof a.host) < 0 ||
        token(&p, end, ports[0], sizeof ports[0]) < 0 ||
        token(&p, end, b.host, sizeof b.host) < 0 ||
        token(&p, end, ports[1], sizeof ports[1]) < 0)
        return CR_EPARSE;
    while (p < end && *p == ' ')
        p++;
    if (p != end || parse_port(ports[0], &a.port) < 0 || parse_port(ports[1], &b.port) < 0)
        return CR_EPARSE;
    if (strcmp(name, master) != 0)
        return CR_ENOTFOUND;
    *from = a;
    *to = b;
    return 0;
}

int cr_sentinel_parse_addr_reply(const redisReply *reply, struct cr_redis_addr *out)
{
    const redisReply *h, *p;
    char port[16];

    if (reply == NULL)
        return CR_EPARSE;
    if (reply->type == REDIS_REPLY_NIL)
        return CR_ENOTFOUND;
    if (reply->type == REDIS_REPLY_ERROR)
        return CR_EREDIS;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return CR_EPARSE;
    h = reply->element[0];
    p = reply->element[1];
    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_STRING || h->len == 0 ||
        h->len >= sizeof(out->host) || p->len == 0 || p->len >= sizeof port ||
        memchr(h->str, '\0', h->len) != NULL)
        return CR_EPARSE;
    memcpy(port, p->str, p->len);
    port[p->len] = '\0';
    memset(out, 0, sizeof(*out));
    if (parse_port(port, &out->port) < 0)
        return CR_EPARSE;
    memcpy(out->host, h->str, h->len);
    return 0;
}

void cr_sentinel_promote(struct cr_redis_addr *list, size_t n, size_t i)
{
    struct cr_redis_addr first;

    if (i == 0 || i >= n)
        return;
    first = list[i];
    memmove(&list[1], &list[0], i * sizeof(list[0]));
    list[0] = first;
}

/* The value of field name in a flat field/value array reply, or NULL. */
static const redisReply *field(const redisReply *a, const char *name)
{
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *k = a->element[i];

        if (k->type == REDIS_REPLY_STRING && strlen(name) == k->len &&
            memcmp(k->str, name, k->len) == 0)
            return a->element[i + 1];
    }
    return NULL;
}

size_t cr_sentinel_merge_peers(const redisReply *reply, struct cr_redis_addr *list, size_t *n,
                               size_t cap)
{
    size_t added = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return 0;
    for (size_t i = 0; i < reply->elements && *n < cap; i++) {
        const redisReply *e = reply->element[i], *ip, *port;
        struct cr_redis_addr a;
        char ps[16];
        size_t j;

        if (e->type != REDIS_REPLY_ARRAY)
            continue;
        ip = field(e, "ip");
        port = field(e, "port");
        if (ip == NULL || port == NULL || ip->type != REDIS_REPLY_STRING ||
            port->type != REDIS_REPLY_STRING || ip->len == 0 || ip->len >= sizeof(a.host) ||
            port->len == 0 || port->len >= sizeof ps || memchr(ip->str, '\0', ip->len) != NULL)
            continue;
        memset(&a, 0, sizeof(a));
        memcpy(a.host, ip->str, ip->len);
        memcpy(ps, port->str, port->len);
        ps[port->len] = '\0';
        if (parse_port(ps, &a.port) < 0)
            continue;
        for (j = 0; j < *n && !cr_sentinel_same_addr(&list[j], &a); j++)
            ;
        if (j < *n)
            continue;
        list[(*n)++] = a;
        added++;
    }
    return added;
}

/* ---- connections ---- */

/* Closes r from the timer, not from inside one of r's own callbacks. */
static void bury(struct cr_sentinel *s, struct cr_redis *r)
{
    if (r == NULL)
        return;
    if (s->ndead == sizeof(s->dead) / sizeof(s->dead[0])) {
        /* cannot happen with one query and one subscription; close now rather than leak */
        cr_redis_close(r);
        return;
    }
    s->dead[s->ndead++] = r;
    uv_timer_start(&s->timer, on_tick, 0, TICK_MS);
}

static void bury_all(struct cr_sentinel *s)
{
    while (s->ndead > 0)
        cr_redis_close(s->dead[--s->ndead]);
}

static int open_conn(struct cr_sentinel *s, const char *name, const struct cr_redis_addr *a,
                     cr_redis_state_cb state, cr_redis_push_cb push, long cmd_timeout_ms,
                     struct cr_redis **out)
{
    struct cr_redis_opts o;

    memset(&o, 0, sizeof(o));
    o.name = name;
    o.host = a->host;
    o.port = a->port;
    o.username = s->username;
    o.password = s->password;
    o.tls = s->tls;
    o.check_role = 0;
    o.push = push;
    o.connect_timeout_ms = s->timeout_ms;
    o.command_timeout_ms = cmd_timeout_ms;
    o.reconnect_max_ms = s->timeout_ms;
    return cr_redis_init(s->loop, &o, state, s, out);
}

/* ---- the primary ---- */

/* A Sentinel named a (how: which command, from which Sentinel). */
static void primary_named(struct cr_sentinel *s, const struct cr_redis_addr *a, const char *how)
{
    char now_s[ADDR_TEXT], was_s[ADDR_TEXT];

    cr_sentinel_format_addr(a, now_s, sizeof now_s);
    s->confirmed_ms = now_ms(s);
    s->down[0] = '\0';
    if (!s->have_primary) {
        s->primary = *a;
        s->have_primary = 1;
        cr_info("redis sentinel '%s': primary is %s (%s)", s->master, now_s, how);
        return;
    }
    if (cr_sentinel_same_addr(&s->primary, a)) {
        /* asked again and nothing changed (a replica still waiting for Sentinel to
         * notice it was promoted, a primary down before its failover): space the
         * next rounds out, the subscription reports the switch anyway */
        s->gap_ms = s->gap_ms * 2 > s->retry_max_ms ? s->retry_max_ms : s->gap_ms * 2;
        s->next_round_ms = s->round_started_ms + (uint64_t)s->gap_ms;
        return;
    }
    s->gap_ms = ROUND_GAP_MS;
    cr_sentinel_format_addr(&s->primary, was_s, sizeof was_s);
    s->primary = *a;
    s->failovers++;
    cr_warn("redis sentinel '%s': primary is now %s (was %s, %s); moving %zu connections",
            s->master, now_s, was_s, how, s->nwatch);
    for (size_t i = 0; i < s->nwatch; i++)
        cr_redis_reset(s->watch[i]);
}

/* ---- discovery rounds ---- */

static void want_round(struct cr_sentinel *s)
{
    if (s->closing || s->discovering)
        return;
    if (now_ms(s) < s->next_round_ms) {
        s->wanted = 1; /* the timer starts it when the gap is over */
        return;
    }
    start_round(s);
}

static void round_failed(struct cr_sentinel *s)
{
    s->discovering = 0;
    s->retry_ms = s->retry_ms ? s->retry_ms * 2 : RETRY_FIRST_MS;
    if (s->retry_ms > s->retry_max_ms)
        s->retry_ms = s->retry_max_ms;
    s->next_round_ms = now_ms(s) + (uint64_t)s->retry_ms;
    s->wanted = 1;
    if (!s->have_primary)
        snprintf(s->down, sizeof(s->down), "no Sentinel named the primary (%zu asked)",
                 s->nnodes);
    cr_error("redis sentinel '%s': no Sentinel named the primary (%zu asked); asking again in "
             "%ld ms",
             s->master, s->nnodes, s->retry_ms);
}

/* The Sentinel being asked gave no usable answer: on to the next one. */
static void next_node(struct cr_sentinel *s, const char *why)
{
    char node[ADDR_TEXT];

    cr_sentinel_format_addr(&s->nodes[s->attempt], node, sizeof node);
    cr_warn("redis sentinel '%s': Sentinel %s: %s; asking the next one", s->master, node, why);
    bury(s, s->query);
    s->query = NULL;
    s->attempt++;
    ask_node(s);
}

static void on_peers(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_sentinel *s = ud;
    size_t added;

    if (r != s->query || reply == NULL)
        return;
    added = cr_sentinel_merge_peers(reply, s->nodes, &s->nnodes, CR_SENTINEL_NODES_CAP);
    if (added > 0)
        cr_info("redis sentinel '%s': %zu more Sentinels learnt, %zu known", s->master, added,
                s->nnodes);
}

static void on_addr(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_sentinel *s = ud;
    struct cr_redis_addr a;
    char node[ADDR_TEXT], how[ADDR_TEXT + 64], why[200];
    int rc;

    if (r != s->query || !s->discovering)
        return;
    if (reply == NULL) {
        next_node(s, "connection lost before the answer");
        return;
    }
    rc = cr_sentinel_parse_addr_reply(reply, &a);
    if (rc == CR_ENOTFOUND) {
        snprintf(why, sizeof why, "does not monitor a master called '%s'", s->master);
        next_node(s, why);
        return;
    }
    if (rc < 0) {
        snprintf(why, sizeof why, "unusable answer to get-master-addr-by-name (%.120s)",
                 reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "not ip, port");
        next_node(s, why);
        return;
    }
    cr_sentinel_format_addr(&s->nodes[s->attempt], node, sizeof node);
    snprintf(how, sizeof how, "get-master-addr-by-name from %s", node);
    cr_sentinel_promote(s->nodes, s->nnodes, s->attempt);
    s->discovering = 0;
    s->retry_ms = 0;
    primary_named(s, &a, how);
    if (s->closing)
        return;
    /* the connection stays open to the Sentinel now first in the list: the
     * next round asks it without connecting again */
    if (s->refreshed_ms == 0 || now_ms(s) - s->refreshed_ms >= REFRESH_MS) {
        s->refreshed_ms = now_ms(s);
        (void)cr_redis_cmd(r, on_peers, s, 0, "SENTINEL sentinels %s", s->master);
    }
}

static void on_query_state(struct cr_redis *r, int connected, void *ud)
{
    struct cr_sentinel *s = ud;

    if (r != s->query)
        return;
    if (!s->discovering) { /* the connection kept between rounds */
        if (!connected) {
            s->query = NULL;
            bury(s, r);
        }
        return;
    }
    if (!connected) {
        next_node(s, "connection lost");
        return;
    }
    if (cr_redis_cmd(r, on_addr, s, 0, "SENTINEL get-master-addr-by-name %s", s->master) < 0)
        next_node(s, "could not send get-master-addr-by-name");
}

/* Asks nodes[attempt], or ends the round when every Sentinel was asked. */
static void ask_node(struct cr_sentinel *s)
{
    while (s->attempt < s->nnodes) {
        if (open_conn(s, "sentinel", &s->nodes[s->attempt], on_query_state, NULL, s->timeout_ms,
                      &s->query) == 0) {
            s->query_deadline_ms = now_ms(s) + (uint64_t)s->timeout_ms;
            return;
        }
        s->query = NULL;
        s->attempt++;
    }
    round_failed(s);
}

static void start_round(struct cr_sentinel *s)
{
    uint64_t now = now_ms(s);

    if (s->gap_ms < ROUND_GAP_MS || now - s->round_started_ms >= GAP_RESET_MS)
        s->gap_ms = ROUND_GAP_MS;
    s->round_started_ms = now;
    s->wanted = 0;
    s->discovering = 1;
    s->attempt = 0;
    s->next_round_ms = now + (uint64_t)s->gap_ms;
    if (s->query != NULL && cr_redis_ready(s->query) &&
        cr_redis_cmd(s->query, on_addr, s, 0, "SENTINEL get-master-addr-by-name %s",
                     s->master) == 0) {
        /* kept from the last round, to nodes[0] */
        s->query_deadline_ms = now + (uint64_t)s->timeout_ms;
        return;
    }
    bury(s, s->query);
    s->query = NULL;
    ask_node(s);
}

/* ---- the +switch-master subscription ---- */

static void sub_lost(struct cr_sentinel *s, const char *why)
{
    char node[ADDR_TEXT];

    cr_sentinel_format_addr(&s->sub_node, node, sizeof node);
    cr_warn("redis sentinel '%s': +switch-master subscription on %s: %s; subscribing on the next "
            "Sentinel",
            s->master, node, why);
    bury(s, s->sub);
    s->sub = NULL;
    s->subscribed = 0;
    s->ping_pending = 0;
    open_sub(s);
}

/* A message on the subscription: +switch-master for our master moves us. */
static void on_message(struct cr_sentinel *s, const redisReply *m)
{
    struct cr_redis_addr from, to;
    char node[ADDR_TEXT], how[ADDR_TEXT + 64];

    if (m == NULL || m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        m->element[0]->type != REDIS_REPLY_STRING || m->element[2]->type != REDIS_REPLY_STRING ||
        strcmp(m->element[0]->str, "message") != 0)
        return;
    if (cr_sentinel_parse_switch(m->element[2]->str, m->element[2]->len, s->master, &from, &to) < 0)
        return;
    cr_sentinel_format_addr(&s->sub_node, node, sizeof node);
    snprintf(how, sizeof how, "+switch-master from %s", node);
    primary_named(s, &to, how);
}

static void on_push(struct cr_redis *r, redisReply *msg, void *ud)
{
    struct cr_sentinel *s = ud;

    if (r == s->sub)
        on_message(s, msg);
}

/* A PING's reply; a message that arrived while the PING waited may be
 * handed here instead, in which case the pong comes later as a push. */
static void on_ping(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_sentinel *s = ud;

    if (r != s->sub)
        return;
    s->ping_pending = 0;
    if (reply != NULL)
        on_message(s, reply);
}

static void on_subscribed(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_sentinel *s = ud;
    char node[ADDR_TEXT];

    if (r != s->sub || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        sub_lost(s, reply->str ? reply->str : "SUBSCRIBE refused");
        return;
    }
    s->subscribed = 1;
    s->sub_since_ms = s->pinged_ms = now_ms(s);
    cr_sentinel_format_addr(&s->sub_node, node, sizeof node);
    cr_info("redis sentinel '%s': following +switch-master on %s", s->master, node);
    /* a switch announced while no subscription was up would be missed: ask */
    want_round(s);
}

static void on_sub_state(struct cr_redis *r, int connected, void *ud)
{
    struct cr_sentinel *s = ud;

    if (r != s->sub)
        return;
    if (!connected) {
        sub_lost(s, "connection lost");
        return;
    }
    if (cr_redis_cmd(r, on_subscribed, s, 0, "SUBSCRIBE +switch-master") < 0)
        sub_lost(s, "could not send SUBSCRIBE");
}

/* Opens the subscription on the next Sentinel in the list (the list's
 * front is the one that answered last). */
static void open_sub(struct cr_sentinel *s)
{
    long t = s->timeout_ms < 1000 ? 1000 : s->timeout_ms;

    if (s->closing || s->nnodes == 0)
        return;
    s->sub_node = s->nodes[s->sub_next % s->nnodes];
    s->sub_next++;
    s->sub_since_ms = now_ms(s);
    s->subscribed = 0;
    if (open_conn(s, "sentinel-events", &s->sub_node, on_sub_state, on_push, t, &s->sub) < 0)
        s->sub = NULL; /* the timer tries again */
}

/* ---- the timer ---- */

static void on_tick(uv_timer_t *t)
{
    struct cr_sentinel *s = t->data;
    uint64_t now = now_ms(s);
    long patience = s->timeout_ms * 4 < 2000 ? 2000 : s->timeout_ms * 4;

    bury_all(s);
    if (s->closing)
        return;
    if (s->discovering && s->query != NULL && now >= s->query_deadline_ms) {
        char why[64];

        snprintf(why, sizeof why, "no answer within %ld ms", s->timeout_ms);
        next_node(s, why);
    }
    if (!s->discovering && s->wanted && now >= s->next_round_ms)
        start_round(s);
    if (s->sub == NULL) {
        open_sub(s);
    } else if (!s->subscribed && now - s->sub_since_ms >= (uint64_t)patience) {
        sub_lost(s, "not subscribed in time");
    } else if (s->subscribed && !s->ping_pending && now - s->pinged_ms >= SUB_PING_MS) {
        s->pinged_ms = now;
        if (cr_redis_cmd(s->sub, on_ping, s, 0, "PING") == 0)
            s->ping_pending = 1;
    }
}

/* ---- the interface ---- */

static char *dup_or_null(const char *v, int *oom)
{
    char *c;

    if (v == NULL)
        return NULL;
    c = strdup(v);
    if (c == NULL)
        *oom = 1;
    return c;
}

static void free_strings(struct cr_sentinel *s)
{
    free(s->master);
    free(s->username);
    cr_free_secret(s->password);
    free(s->tls_ca);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->tls_name);
}

int cr_sentinel_init(uv_loop_t *loop, const struct cr_sentinel_opts *o, struct cr_sentinel **out)
{
    struct cr_sentinel *s;
    int oom = 0;
    int rc = CR_ENOMEM;

    if (o->master == NULL || o->nnodes == 0 || o->nnodes > CR_SENTINEL_NODES_CAP)
        return CR_EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CR_ENOMEM;
    for (size_t i = 0; i < o->nnodes; i++) {
        if (cr_sentinel_parse_node(o->nodes[i], &s->nodes[i]) < 0) {
            rc = CR_EINVAL;
            goto out;
        }
    }
    s->nnodes = o->nnodes;
    s->loop = loop;
    s->master = dup_or_null(o->master, &oom);
    s->username = dup_or_null(o->username, &oom);
    s->password = dup_or_null(o->password, &oom);
    s->tls = o->tls;
    s->tls.ca_file = s->tls_ca = dup_or_null(o->tls.ca_file, &oom);
    s->tls.cert_file = s->tls_cert = dup_or_null(o->tls.cert_file, &oom);
    s->tls.key_file = s->tls_key = dup_or_null(o->tls.key_file, &oom);
    s->tls.server_name = s->tls_name = dup_or_null(o->tls.server_name, &oom);
    if (oom)
        goto out;
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 500;
    s->retry_max_ms = o->retry_max_ms > RETRY_FIRST_MS ? o->retry_max_ms : RETRY_FIRST_MS;
    snprintf(s->down, sizeof(s->down), "no Sentinel has answered yet");
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, TICK_MS, TICK_MS);
    start_round(s);
    open_sub(s);
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s != NULL) {
        free_strings(s);
        free(s);
    }
    return rc;
}

void cr_sentinel_hooks(struct cr_sentinel *s, struct cr_redis_opts *o)
{
    o->resolve = cr_sentinel_resolve;
    o->misplaced = cr_sentinel_misplaced;
    o->hook_ud = s;
    o->check_role = 1;
}

int cr_sentinel_watch(struct cr_sentinel *s, struct cr_redis *r)
{
    if (s->nwatch == CR_SENTINEL_WATCH_MAX)
        return CR_ETOOBIG;
    s->watch[s->nwatch++] = r;
    return 0;
}

int cr_sentinel_resolve(void *ud, struct cr_redis_addr *addr)
{
    struct cr_sentinel *s = ud;

    if (s->closing)
        return CR_ECLOSED;
    if (!s->have_primary) {
        want_round(s);
        return CR_EAGAIN;
    }
    *addr = s->primary;
    /* the spec asks again on every reconnection; a fresh answer is reused */
    if (now_ms(s) - s->confirmed_ms >= CONFIRM_MS)
        want_round(s);
    return 0;
}

void cr_sentinel_misplaced(struct cr_redis *r, const char *why, void *ud)
{
    struct cr_sentinel *s = ud;

    (void)r;
    (void)why; /* the connection logs it */
    s->confirmed_ms = 0;
    want_round(s);
}

static void on_closed(uv_handle_t *h)
{
    struct cr_sentinel *s = h->data;

    free_strings(s);
    free(s);
}

void cr_sentinel_close(struct cr_sentinel *s)
{
    struct cr_redis *q, *sub;

    if (s == NULL || s->closing)
        return;
    s->closing = 1;
    s->nwatch = 0;
    bury_all(s);
    q = s->query;
    sub = s->sub;
    s->query = s->sub = NULL; /* their callbacks, fired by the close, find nothing to do */
    if (q != NULL)
        cr_redis_close(q);
    if (sub != NULL)
        cr_redis_close(sub);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_closed);
}

const char *cr_sentinel_master(const struct cr_sentinel *s)
{
    return s->master;
}

int cr_sentinel_primary(const struct cr_sentinel *s, char *buf, size_t n)
{
    if (!s->have_primary)
        return CR_ENOTFOUND;
    cr_sentinel_format_addr(&s->primary, buf, n);
    return 0;
}

const char *cr_sentinel_down_reason(const struct cr_sentinel *s)
{
    return s->have_primary ? NULL : s->down;
}

unsigned long cr_sentinel_failovers(const struct cr_sentinel *s)
{
    return s->failovers;
}

int cr_sentinel_subscribed(const struct cr_sentinel *s)
{
    return s->subscribed;
}
