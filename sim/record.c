/* The simulator's memory of what it answered (see record.h): counters, one
 * recipient hash table per endpoint, and a ring of request log entries that
 * is indexed by seq in O(1) because seqs in the ring are contiguous. */
#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"

/* Bytes a stream produces per fill call (one chunk on the wire). */
#define STREAM_CHUNK (64 * 1024)

struct sim_rent {
    uint64_t hash;
    char *key;
    uint32_t len;
    uint32_t count;
};

struct sim_log_entry {
    uint64_t seq;
    uint64_t t_ms;
    size_t size; /* bytes allocated, counted against max_log_bytes */
    int status;
    enum sim_endpoint ep;
    uint32_t nrecipients, nrefs;
    /* offsets into data of NUL-terminated, UTF-8-clean strings; the recipient
     * and ref lists are that many strings back to back */
    uint32_t off_method, off_path, off_auth, off_ctype, off_refs, off_recipients, off_body;
    uint32_t off_fields; /* meaningful when has_fields */
    int has_fields;
    char data[];
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void rtable_release(struct sim_rtable *t)
{
    size_t i;

    for (i = 0; i < t->n; i++)
        free(t->ents[i].key);
    free(t->ents);
    free(t->index);
    memset(t, 0, sizeof(*t));
}

/* Rebuilds the index with size slots (a power of two). */
static int rtable_reindex(struct sim_rtable *t, size_t size)
{
    uint32_t *index = calloc(size, sizeof(*index));
    size_t i;

    if (index == NULL)
        return CR_ENOMEM;
    for (i = 0; i < t->n; i++) {
        size_t slot = (size_t)t->ents[i].hash & (size - 1);

        while (index[slot] != 0)
            slot = (slot + 1) & (size - 1);
        index[slot] = (uint32_t)(i + 1);
    }
    free(t->index);
    t->index = index;
    t->mask = size - 1;
    return 0;
}

/* Adds one acceptance of key. Returns 1 for a first acceptance, 0 for a
 * repeat, CR_ETOOBIG when the table is full, CR_ENOMEM. */
static int rtable_accept(struct sim_rtable *t, const char *key, size_t len)
{
    uint64_t h = hash_bytes(key, len);
    size_t slot;
    struct sim_rent *e;
    int rc;

    if (t->mask != 0) {
        slot = (size_t)h & t->mask;
        while (t->index[slot] != 0) {
            e = &t->ents[t->index[slot] - 1];
            if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
                if (e->count < UINT32_MAX)
                    e->count++;
                return 0;
            }
            slot = (slot + 1) & t->mask;
        }
    }
    if (t->n >= SIM_MAX_RECIPIENTS || len > UINT32_MAX)
        return CR_ETOOBIG;
    if ((t->n + 1) * 4 > (t->mask + 1) * 3 || t->mask == 0) {
        rc = rtable_reindex(t, t->mask ? (t->mask + 1) * 2 : 1024);
        if (rc < 0)
            return rc;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        struct sim_rent *ents = realloc(t->ents, cap * sizeof(*ents));

        if (ents == NULL)
            return CR_ENOMEM;
        t->ents = ents;
        t->cap = cap;
    }
    e = &t->ents[t->n];
    e->key = malloc(len + 1);
    if (e->key == NULL)
        return CR_ENOMEM;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    e->hash = h;
    e->len = (uint32_t)len;
    e->count = 1;
    t->n++;
    slot = (size_t)h & t->mask;
    while (t->index[slot] != 0)
        slot = (slot + 1) & t->mask;
    t->index[slot] = (uint32_t)t->n;
    return 1;
}

void sim_record_init(struct sim_record *rec, size_t max_log, size_t max_log_bytes,
                     size_t log_body_bytes)
{
    memset(rec, 0, sizeof(*rec));
    rec->next_seq = 1;
    rec->max_log = max_log;
    rec->max_log_bytes = max_log_bytes;
    rec->log_body_bytes = log_body_bytes;
    /* one entry's strings: headers (<= 16 KiB), body cut, recipients */
    cr_buf_init(&rec->scratch, 64u * 1024 * 1024);
}

static void log_clear(struct sim_record *rec)
{
    size_t i;

    for (i = 0; i < rec->ring_count; i++)
        free(rec->ring[(rec->ring_head + i) % rec->ring_cap]);
    free(rec->ring);
    rec->ring = NULL;
    rec->ring_cap = rec->ring_head = rec->ring_count = 0;
    rec->log_bytes = 0;
}

void sim_record_release(struct sim_record *rec)
{
    int i;

    for (i = 0; i < SIM_EP_COUNT; i++)
        rtable_release(&rec->tables[i]);
    log_clear(rec);
    cr_buf_release(&rec->scratch);
}

void sim_record_reset(struct sim_record *rec)
{
    int i;

    for (i = 0; i < SIM_EP_COUNT; i++)
        rtable_release(&rec->tables[i]);
    log_clear(rec);
    memset(rec->counts, 0, sizeof(rec->counts));
    rec->generation++;
    rec->log_warned = 0;
}

const struct sim_counts *sim_record_counts(const struct sim_record *rec, enum sim_endpoint ep)
{
    return &rec->counts[ep];
}

static void count_status(struct sim_counts *c, int status)
{
    c->requests++;
    if (status >= 200 && status < 300)
        c->accepted++;
    else if (status == 429)
        c->throttled++;
    else if (status >= 500)
        c->failed++;
    else
        c->rejected++;
}

static void count_recipients(struct sim_record *rec, const struct sim_log_input *in)
{
    struct sim_counts *c = &rec->counts[in->ep];
    struct sim_rtable *t = &rec->tables[in->ep];
    size_t i;

    for (i = 0; i < in->nrecipients; i++) {
        const char *r = in->recipients[i];
        int rc = rtable_accept(t, r, strlen(r));

        c->recipients++;
        if (rc == 1) {
            c->unique_recipients++;
        } else if (rc == 0) {
            c->duplicates++;
        } else if (!t->warned) {
            t->warned = 1;
            cr_warn("sim recipients '%s': %s, further recipients are counted but not tracked",
                    sim_endpoint_name(in->ep), cr_strerror(rc));
        }
    }
}

/* Appends s cleaned to UTF-8 plus a NUL to the scratch buffer; *off gets its offset. */
static int put_str(struct cr_buf *b, const char *s, size_t n, int cut, uint32_t *off)
{
    int rc;

    *off = (uint32_t)b->len;
    rc = sim_utf8_clean(b, s ? s : "", s ? n : 0, cut);
    if (rc == 0)
        rc = cr_buf_append(b, "", 1);
    return rc;
}

static int put_list(struct cr_buf *b, const char *const *v, size_t n, uint32_t *off)
{
    size_t i;
    uint32_t ignored;
    int rc = 0;

    *off = (uint32_t)b->len;
    for (i = 0; rc == 0 && i < n; i++)
        rc = put_str(b, v[i], strlen(v[i]), 0, &ignored);
    return rc;
}

static struct sim_log_entry *log_at(const struct sim_record *rec, size_t i)
{
    return rec->ring[(rec->ring_head + i) % rec->ring_cap];
}

static void log_drop_oldest(struct sim_record *rec)
{
    struct sim_log_entry *e = log_at(rec, 0);

    rec->log_bytes -= e->size;
    free(e);
    rec->ring_head = (rec->ring_head + 1) % rec->ring_cap;
    rec->ring_count--;
}

static int log_push(struct sim_record *rec, struct sim_log_entry *e)
{
    while (rec->ring_count > 0 &&
           (rec->ring_count >= rec->max_log || rec->log_bytes + e->size > rec->max_log_bytes))
        log_drop_oldest(rec);
    if (rec->ring_count >= rec->max_log || e->size > rec->max_log_bytes)
        return CR_ETOOBIG;
    if (rec->ring_count == rec->ring_cap) {
        size_t cap = rec->ring_cap ? rec->ring_cap * 2 : 1024;
        struct sim_log_entry **ring;
        size_t i;

        if (cap > rec->max_log)
            cap = rec->max_log;
        ring = malloc(cap * sizeof(*ring));
        if (ring == NULL)
            return CR_ENOMEM;
        for (i = 0; i < rec->ring_count; i++)
            ring[i] = log_at(rec, i);
        free(rec->ring);
        rec->ring = ring;
        rec->ring_cap = cap;
        rec->ring_head = 0;
    }
    rec->ring[(rec->ring_head + rec->ring_count) % rec->ring_cap] = e;
    rec->ring_count++;
    rec->log_bytes += e->size;
    return 0;
}

static int log_add(struct sim_record *rec, const struct sim_log_input *in)
{
    struct cr_buf *b = &rec->scratch;
    struct sim_log_entry hdr;
    struct sim_log_entry *e;
    size_t body_len = in->body_len;
    int cut = 0;
    int rc;

    if (rec->max_log == 0 || rec->max_log_bytes == 0)
        return 0;
    memset(&hdr, 0, sizeof(hdr));
    if (body_len > rec->log_body_bytes) {
        body_len = rec->log_body_bytes;
        cut = 1;
    }
    cr_buf_reset(b);
    rc = put_str(b, in->method, strlen(in->method), 0, &hdr.off_method);
    if (rc == 0)
        rc = put_str(b, in->path, strlen(in->path), 0, &hdr.off_path);
    if (rc == 0)
        rc = put_str(b, in->auth, in->auth ? strlen(in->auth) : 0, 0, &hdr.off_auth);
    if (rc == 0)
        rc = put_str(b, in->ctype, in->ctype ? strlen(in->ctype) : 0, 0, &hdr.off_ctype);
    if (rc == 0)
        rc = put_list(b, in->refs, in->nrefs, &hdr.off_refs);
    if (rc == 0)
        rc = put_list(b, in->recipients, in->nrecipients, &hdr.off_recipients);
    if (rc == 0)
        rc = put_str(b, in->body, body_len, cut, &hdr.off_body);
    if (rc == 0 && in->fields != NULL) {
        hdr.has_fields = 1;
        rc = put_str(b, in->fields, strlen(in->fields), 0, &hdr.off_fields);
    }
    if (rc < 0)
        return rc;
    e = malloc(sizeof(*e) + b->len);
    if (e == NULL)
        return CR_ENOMEM;
    *e = hdr;
    memcpy(e->data, b->data, b->len);
    e->size = sizeof(*e) + b->len;
    e->seq = rec->next_seq;
    e->t_ms = in->t_ms;
    e->status = in->status;
    e->ep = in->ep;
    e->nrecipients = (uint32_t)in->nrecipients;
    e->nrefs = (uint32_t)in->nrefs;
    rc = log_push(rec, e);
    if (rc < 0) {
        free(e);
        return rc;
    }
    rec->next_seq++;
    return 0;
}

void sim_record_add(struct sim_record *rec, const struct sim_log_input *in)
{
    int counted = in->count_status ? in->count_status : in->status;
    int rc;

    count_status(&rec->counts[in->ep], counted);
    if (counted >= 200 && counted < 300)
        count_recipients(rec, in);
    rc = log_add(rec, in);
    if (rc < 0 && !rec->log_warned) {
        rec->log_warned = 1; /* once per reset: a persistent cause would flood stderr */
        cr_warn("sim log %s %s: %s, entry not logged", in->method, in->path, cr_strerror(rc));
    }
}

enum stream_kind { STREAM_RECIPIENTS, STREAM_LOG };

struct stream {
    struct sim_record *rec;
    enum stream_kind kind;
    enum sim_endpoint ep;
    uint64_t generation;
    int started;
    int first;
    size_t pos;      /* recipients: next entry */
    uint64_t cursor; /* log: next seq to look at */
    size_t left;     /* log: entries still allowed */
};

static int stream_new(struct sim_record *rec, enum stream_kind kind, enum sim_endpoint ep,
                      void **state)
{
    struct stream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return CR_ENOMEM;
    s->rec = rec;
    s->kind = kind;
    s->ep = ep;
    s->generation = rec->generation;
    s->first = 1;
    *state = s;
    return 0;
}

int sim_record_recipients_stream(struct sim_record *rec, enum sim_endpoint ep, void **state)
{
    return stream_new(rec, STREAM_RECIPIENTS, ep, state);
}

int sim_record_log_stream(struct sim_record *rec, enum sim_endpoint ep, uint64_t since,
                          size_t limit, void **state)
{
    int rc = stream_new(rec, STREAM_LOG, ep, state);
    struct stream *s;

    if (rc < 0)
        return rc;
    s = *state;
    s->cursor = since == UINT64_MAX ? since : since + 1;
    s->left = limit;
    return 0;
}

static int fill_recipients(struct stream *s, struct cr_buf *out)
{
    const struct sim_rtable *t = &s->rec->tables[s->ep];
    int rc = 0;

    if (s->generation != s->rec->generation)
        return CR_ECANCELED; /* reset while streaming: the table is gone */
    if (!s->started) {
        s->started = 1;
        rc = cr_buf_append(out, "{", 1);
    }
    while (rc == 0 && s->pos < t->n && out->len < STREAM_CHUNK) {
        const struct sim_rent *e = &t->ents[s->pos++];

        if (!s->first)
            rc = cr_buf_append(out, ",", 1);
        s->first = 0;
        if (rc == 0)
            rc = sim_json_str(out, e->key, e->len);
        if (rc == 0)
            rc = cr_buf_appendf(out, ":%u", (unsigned)e->count);
    }
    if (rc < 0)
        return rc;
    if (s->pos < t->n)
        return 0;
    rc = cr_buf_append(out, "}", 1);
    return rc < 0 ? rc : 1;
}

static int put_json_or_null(struct cr_buf *out, const char *s)
{
    if (*s == '\0')
        return cr_buf_append(out, "null", 4);
    return sim_json_str(out, s, strlen(s));
}

static int put_json_list(struct cr_buf *out, const char *s, uint32_t n)
{
    uint32_t i;
    int rc = cr_buf_append(out, "[", 1);

    for (i = 0; rc == 0 && i < n; i++) {
        size_t len = strlen(s);

        if (i > 0)
            rc = cr_buf_append(out, ",", 1);
        if (rc == 0)
            rc = sim_json_str(out, s, len);
        s += len + 1;
    }
    if (rc == 0)
        rc = cr_buf_append(out, "]", 1);
    return rc;
}

static int put_entry(struct cr_buf *out, const struct sim_log_entry *e)
{
    const char *d = e->data;
    int rc;

    rc = cr_buf_appendf(out, "{\"seq\":%llu,\"t_ms\":%llu,\"endpoint\":\"%s\",\"method\":",
                        (unsigned long long)e->seq, (unsigned long long)e->t_ms,
                        sim_endpoint_name(e->ep));
    if (rc == 0)
        rc = sim_json_str(out, d + e->off_method, strlen(d + e->off_method));
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"path\":");
    if (rc == 0)
        rc = sim_json_str(out, d + e->off_path, strlen(d + e->off_path));
    if (rc == 0)
        rc = cr_buf_appendf(out, ",\"status\":%d,\"recipients\":", e->status);
    if (rc == 0)
        rc = put_json_list(out, d + e->off_recipients, e->nrecipients);
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"auth\":");
    if (rc == 0)
        rc = put_json_or_null(out, d + e->off_auth);
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"content_type\":");
    if (rc == 0)
        rc = put_json_or_null(out, d + e->off_ctype);
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"ref\":");
    if (rc == 0)
        rc = e->nrefs ? put_json_or_null(out, d + e->off_refs) : cr_buf_appends(out, "null");
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"refs\":");
    if (rc == 0)
        rc = put_json_list(out, d + e->off_refs, e->nrefs);
    if (rc == 0)
        rc = cr_buf_appends(out, ",\"body\":");
    if (rc == 0)
        rc = sim_json_str(out, d + e->off_body, strlen(d + e->off_body));
    if (rc == 0 && e->has_fields) /* a JSON object made by the handler */
        rc = cr_buf_appendf(out, ",\"fields\":%s", d + e->off_fields);
    if (rc == 0)
        rc = cr_buf_append(out, "}", 1);
    return rc;
}

static int fill_log(struct stream *s, struct cr_buf *out)
{
    struct sim_record *rec = s->rec;
    int rc = 0;

    if (!s->started) {
        s->started = 1;
        rc = cr_buf_appends(out, "{\"entries\":[");
    }
    while (rc == 0 && s->left > 0 && out->len < STREAM_CHUNK && rec->ring_count > 0) {
        uint64_t first = log_at(rec, 0)->seq;
        const struct sim_log_entry *e;

        if (s->cursor < first)
            s->cursor = first; /* evicted or reset since: carry on from the oldest */
        if (s->cursor - first >= rec->ring_count)
            break;
        e = log_at(rec, (size_t)(s->cursor - first));
        s->cursor++;
        if (s->ep != SIM_EP_COUNT && e->ep != s->ep)
            continue;
        if (!s->first)
            rc = cr_buf_append(out, ",", 1);
        s->first = 0;
        if (rc == 0)
            rc = put_entry(out, e);
        s->left--;
    }
    if (rc < 0)
        return rc;
    if (out->len >= STREAM_CHUNK && s->left > 0)
        return 0;
    rc = cr_buf_appendf(out, "],\"next\":%llu}", (unsigned long long)(s->cursor - 1));
    return rc < 0 ? rc : 1;
}

int sim_record_fill(void *state, struct cr_buf *out)
{
    struct stream *s = state;

    return s->kind == STREAM_RECIPIENTS ? fill_recipients(s, out) : fill_log(s, out);
}

void sim_record_fill_free(void *state)
{
    free(state);
}
