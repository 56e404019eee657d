/*
 * crashutil.c — deterministic crash-test workload, acknowledged-log model
 * and verifier (see crashutil.h).
 *
 * Everything stored is derived from (doc, version) through XXH3, so the
 * verifier regenerates the exact expected bytes instead of keeping a copy:
 * a long run costs memory proportional to the number of docs only.  Bodies
 * also embed a checksum of themselves so that a torn or spliced body is
 * named as such in the failure message, not just as "unexpected bytes".
 */
#include "store/crashutil.h"

#include "base/log.h"
#include "base/status.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define CU_SALT_DOC 0x6469766164ULL
#define CU_SALT_ATT 0x617474ULL
#define CU_SALT_LOCAL 0x6c6f63ULL

static uint64_t cu_hash(uint64_t salt, uint32_t k, uint64_t v)
{
    uint8_t in[12];
    dv_store_u32le(in, k);
    dv_store_u64le(in + 4, v);
    return XXH3_64bits_withSeed(in, sizeof in, salt);
}

int cu_quiet_logs(int quiet)
{
    int prev = (int)log_get_level();
    const char *v = getenv("DIVAN_VERBOSE");
    if (!v || !*v)
        log_set_level((enum log_level)quiet);
    return prev;
}

void cu_violation(const char *ctx, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%s] VIOLATION: ", ctx ? ctx : "crash");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- deterministic content ------------------------------------------- */

void cu_doc_id(uint32_t k, char out[16]) { snprintf(out, 16, "d%" PRIu32, k); }
void cu_local_id(uint32_t k, char out[24]) { snprintf(out, 24, "_local/l%" PRIu32, k); }

int cu_deleted(uint32_t k, uint64_t v) { return v > 1 && (cu_hash(CU_SALT_DOC, k, v) >> 8) % 11 == 0; }

/* Raw attachment choice of one version, before looking at its parent. */
enum { RAW_NONE, RAW_NEW, RAW_STUB };
static int cu_att_raw(uint32_t k, uint64_t v)
{
    if (v == 0 || cu_deleted(k, v))
        return RAW_NONE;
    unsigned r = (unsigned)((cu_hash(CU_SALT_DOC, k, v) >> 16) % 10);
    return r < 2 ? RAW_NEW : r < 6 ? RAW_STUB : RAW_NONE;
}

uint64_t cu_att_revpos(uint32_t k, uint64_t v)
{
    /* A stub keeps its parent's attachment: walk back through the run of
     * stubs to the version that wrote the data (runs are short: p = 0.4). */
    for (uint64_t u = v; u > 0; u--) {
        int raw = cu_att_raw(k, u);
        if (raw == RAW_NEW)
            return u;
        if (raw == RAW_NONE)
            return 0;
    }
    return 0;
}

int cu_att_mode(uint32_t k, uint64_t v)
{
    int raw = cu_att_raw(k, v);
    if (raw == RAW_NEW)
        return 1;
    if (raw == RAW_STUB && cu_att_revpos(k, v) != 0)
        return 2;
    return 0;
}

static void cu_fill(buf_t *out, size_t n, uint64_t seed)
{
    tu_rng r = {seed};
    for (size_t i = 0; i < n; i++)
        out->data[out->len + i] = (uint8_t)('a' + tu_rand_below(&r, 26));
    out->len += n;
}

static int cu_json(const char *id, uint64_t v, int del, uint64_t h, buf_t *out)
{
    /* Mostly small bodies, some spanning several 4 KiB pages, a few large
     * enough to cross the file layer's append buffer. */
    unsigned cls = (unsigned)(h % 100);
    size_t pad = cls < 80 ? h % 200 : cls < 97 ? 200 + h % 4000 : 4000 + h % 40000;
    buf_reset(out);
    int rc = buf_printf(out, "{\"id\":\"%s\",\"v\":%" PRIu64 ",\"del\":%d,\"pad\":\"", id, v, del);
    if (rc == DV_OK)
        rc = buf_reserve(out, pad + 64);
    if (rc != DV_OK)
        return rc;
    cu_fill(out, pad, h);
    rc = buf_append_str(out, "\"");
    if (rc == DV_OK)
        rc = buf_printf(out, ",\"ck\":\"%016" PRIx64 "\"}", XXH3_64bits(out->data, out->len));
    return rc;
}

int cu_body(uint32_t k, uint64_t v, buf_t *out)
{
    char id[16];
    cu_doc_id(k, id);
    return cu_json(id, v, cu_deleted(k, v), cu_hash(CU_SALT_DOC, k, v), out);
}

int cu_local_body(uint32_t k, uint64_t rev, buf_t *out)
{
    char id[24];
    cu_local_id(k, id);
    return cu_json(id, rev, 0, cu_hash(CU_SALT_LOCAL, k, rev), out);
}

int cu_att_data(uint32_t k, uint64_t revpos, buf_t *out)
{
    uint64_t h = cu_hash(CU_SALT_ATT, k, revpos);
    unsigned cls = (unsigned)(h % 100);
    /* Sizes straddle the 64 KiB chunk size; half the data compresses. */
    size_t n = cls < 70 ? 1 + h % 2000 : cls < 95 ? 2000 + h % 70000 : 70000 + h % 130000;
    buf_reset(out);
    int rc = buf_reserve(out, n);
    if (rc != DV_OK)
        return rc;
    tu_rng r = {h};
    if ((h >> 32) & 1) {
        for (size_t i = 0; i < n; i++)
            out->data[i] = (uint8_t)tu_rand(&r);
    } else {
        for (size_t i = 0; i < n; i++)
            out->data[i] = (uint8_t)("attachment-data "[i % 16] + (i / 4096 + k) % 3);
    }
    out->len = n;
    return DV_OK;
}

static int cu_parse_u64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    uint64_t x = 0;
    if (q >= end || *q < '0' || *q > '9')
        return DV_ERR_CORRUPT;
    while (q < end && *q >= '0' && *q <= '9' && x < UINT64_MAX / 10)
        x = x * 10 + (uint64_t)(*q++ - '0');
    *p = q;
    *v = x;
    return DV_OK;
}

static int cu_expect(const uint8_t **p, const uint8_t *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return DV_ERR_CORRUPT;
    *p += n;
    return DV_OK;
}

int cu_body_check(const uint8_t *p, size_t n, int *kind, uint32_t *k, uint64_t *v)
{
    static const char ck[] = ",\"ck\":\"";
    const uint8_t *end = p + n, *q = p;
    uint64_t kk, vv;
    if (cu_expect(&q, end, "{\"id\":\"") != DV_OK)
        return DV_ERR_CORRUPT;
    if (cu_expect(&q, end, "d") == DV_OK)
        *kind = CU_DOC;
    else if (cu_expect(&q, end, "_local/l") == DV_OK)
        *kind = CU_LOCAL;
    else
        return DV_ERR_CORRUPT;
    if (cu_parse_u64(&q, end, &kk) != DV_OK || kk > UINT32_MAX || cu_expect(&q, end, "\",\"v\":") != DV_OK ||
        cu_parse_u64(&q, end, &vv) != DV_OK)
        return DV_ERR_CORRUPT;
    /* The checksum field is the last member: 16 hex digits, then "}. */
    if (n < sizeof ck - 1 + 18)
        return DV_ERR_CORRUPT;
    const uint8_t *ckp = end - 18 - (sizeof ck - 1);
    if (ckp < q || memcmp(ckp, ck, sizeof ck - 1) != 0 || memcmp(end - 2, "\"}", 2) != 0)
        return DV_ERR_CORRUPT;
    char hex[17];
    memcpy(hex, end - 18, 16);
    hex[16] = 0;
    char *e;
    uint64_t want = strtoull(hex, &e, 16);
    if (e != hex + 16 || want != XXH3_64bits(p, (size_t)(ckp - p)))
        return DV_ERR_CORRUPT;
    *k = (uint32_t)kk;
    *v = vv;
    return DV_OK;
}

/* ---- the acknowledged log ------------------------------------------- */

int cu_model_init(cu_model *m, uint32_t ndocs, uint32_t nlocals)
{
    memset(m, 0, sizeof *m);
    m->ndocs = ndocs;
    m->nlocals = nlocals;
    m->acked_v = calloc(ndocs, sizeof *m->acked_v);
    m->acked_rev = calloc(ndocs, sizeof *m->acked_rev);
    m->attempted_v = calloc(ndocs, sizeof *m->attempted_v);
    m->acked_l = calloc(nlocals ? nlocals : 1, sizeof *m->acked_l);
    m->attempted_l = calloc(nlocals ? nlocals : 1, sizeof *m->attempted_l);
    if (!m->acked_v || !m->acked_rev || !m->attempted_v || !m->acked_l || !m->attempted_l) {
        cu_model_free(m);
        return DV_ERR_NOMEM;
    }
    return DV_OK;
}

void cu_model_free(cu_model *m)
{
    free(m->acked_v);
    free(m->acked_rev);
    free(m->attempted_v);
    free(m->acked_l);
    free(m->attempted_l);
    memset(m, 0, sizeof *m);
}

int cu_model_copy(cu_model *dst, const cu_model *src)
{
    int rc = cu_model_init(dst, src->ndocs, src->nlocals);
    if (rc != DV_OK)
        return rc;
    size_t nl = src->nlocals ? src->nlocals : 1;
    memcpy(dst->acked_v, src->acked_v, src->ndocs * sizeof *src->acked_v);
    memcpy(dst->acked_rev, src->acked_rev, src->ndocs * sizeof *src->acked_rev);
    memcpy(dst->attempted_v, src->attempted_v, src->ndocs * sizeof *src->attempted_v);
    memcpy(dst->acked_l, src->acked_l, nl * sizeof *src->acked_l);
    memcpy(dst->attempted_l, src->attempted_l, nl * sizeof *src->attempted_l);
    dst->max_acked_seq = src->max_acked_seq;
    dst->revs_limit_acked = src->revs_limit_acked;
    return DV_OK;
}

void cu_model_attempt(cu_model *m, int kind, uint32_t k, uint64_t v)
{
    if (kind == CU_DOC && k < m->ndocs && v > m->attempted_v[k])
        m->attempted_v[k] = v;
    else if (kind == CU_LOCAL && k < m->nlocals && v > m->attempted_l[k])
        m->attempted_l[k] = v;
}

void cu_model_ack(cu_model *m, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq)
{
    cu_model_attempt(m, kind, k, v);
    if (kind == CU_DOC && k < m->ndocs && v > m->acked_v[k]) {
        m->acked_v[k] = v;
        m->acked_rev[k] = *rev;
    } else if (kind == CU_LOCAL && k < m->nlocals && v > m->acked_l[k]) {
        m->acked_l[k] = v;
    }
    if (seq > m->max_acked_seq)
        m->max_acked_seq = seq;
}

/* ---- the verifier ---------------------------------------------------- */

/* "d<k>" / "_local/l<k>" with k < limit, canonical decimal; -1 otherwise. */
static int64_t cu_parse_id(const uint8_t *p, size_t n, const char *prefix, uint32_t limit)
{
    size_t pl = strlen(prefix);
    if (n <= pl || n > pl + 10 || memcmp(p, prefix, pl) != 0 || (p[pl] == '0' && n > pl + 1))
        return -1;
    uint64_t k = 0;
    for (size_t i = pl; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        k = k * 10 + (uint64_t)(p[i] - '0');
    }
    return k < limit ? (int64_t)k : -1;
}

static void cu_rev_str(const store_rev *r, char *out, size_t cap)
{
    snprintf(out, cap, "%" PRIu64 "-%.*s", r->pos, (int)r->len, r->id);
}

/* Describes why body bytes differ from the expected ones. */
static const char *cu_body_diag(const buf_t *got)
{
    int kind;
    uint32_t k;
    uint64_t v;
    if (cu_body_check(got->data, got->len, &kind, &k, &v) != DV_OK)
        return "partially written or corrupt (fails its own checksum)";
    return "a complete body of another doc/version";
}

typedef struct cu_found {
    uint64_t *v, *seq;
    store_rev *rev;
    uint8_t *seen;
} cu_found;

static int cu_check_atts(const store_snap *s, uint32_t k, uint64_t v, const store_docbody *b, buf_t *want,
                         buf_t *got, const char *ctx)
{
    int mode = cu_att_mode(k, v);
    if (b->natts != (mode ? 1u : 0u)) {
        cu_violation(ctx, "d%u v%" PRIu64 ": %zu attachments, expected %d", k, v, b->natts, mode ? 1 : 0);
        return 1;
    }
    if (!mode)
        return 0;
    const store_att *a = &b->atts[0];
    uint64_t revpos = cu_att_revpos(k, v);
    if (!a->name || strcmp(a->name, "a.bin") != 0 || a->revpos != revpos || a->encoding) {
        cu_violation(ctx, "d%u v%" PRIu64 ": attachment %s revpos %" PRIu64 ", expected a.bin revpos %" PRIu64, k,
                     v, a->name ? a->name : "(null)", a->revpos, revpos);
        return 1;
    }
    if (cu_att_data(k, revpos, want) != DV_OK)
        return 1;
    if (a->length != want->len) {
        cu_violation(ctx, "d%u v%" PRIu64 ": attachment length %" PRIu64 ", expected %zu", k, v, a->length,
                     want->len);
        return 1;
    }
    buf_reset(got);
    /* Ranged reads, as the HTTP layer streams: the last range is clamped. */
    for (uint64_t off = 0; off < a->length; off += 40000) {
        int rc = store_snap_read_att(s, a, off, 40000, got);
        if (rc != DV_OK) {
            cu_violation(ctx, "d%u v%" PRIu64 ": attachment read at %" PRIu64 ": %s", k, v, off, dv_strerror(rc));
            return 1;
        }
    }
    if (got->len != want->len || memcmp(got->data, want->data, want->len) != 0) {
        cu_violation(ctx, "d%u v%" PRIu64 ": attachment bytes differ (%zu read, %zu expected)", k, v, got->len,
                     want->len);
        return 1;
    }
    return 0;
}

/* Checks one doc found by the id scan; fills f for the by-seq pass. */
static int cu_check_doc(const store_snap *s, const cu_model *m, uint32_t k, const store_docinfo *d, cu_found *f,
                        buf_t *want, buf_t *got, const char *ctx)
{
    int bad = 1;
    char rs[96], rs2[96];
    store_docbody b;
    store_docbody_init(&b);
    uint32_t *leaves = malloc((d->tree.n ? d->tree.n : 1) * sizeof *leaves);
    uint32_t nl = 0;
    if (!leaves)
        goto done;
    revtree_leaves(&d->tree, leaves, &nl);
    if (nl != 1) {
        /* Every edit names the winner as parent: a second leaf means an
         * edit was applied twice or against a stale tree. */
        cu_violation(ctx, "d%u has %u leaves, expected 1", k, nl);
        goto done;
    }
    const revtree_node *w = &d->tree.nodes[leaves[0]];
    uint64_t v = w->rev.pos;
    if (v < m->acked_v[k]) {
        cu_rev_str(&m->acked_rev[k], rs, sizeof rs);
        cu_violation(ctx, "d%u at version %" PRIu64 " but version %" PRIu64 " (%s) was acknowledged: LOST", k, v,
                     m->acked_v[k], rs);
        goto done;
    }
    if (v > m->attempted_v[k]) {
        cu_violation(ctx, "d%u at version %" PRIu64 " but only %" PRIu64 " was ever written", k, v,
                     m->attempted_v[k]);
        goto done;
    }
    if (m->acked_v[k] && v == m->acked_v[k] && !store_rev_equal(&w->rev, &m->acked_rev[k])) {
        cu_rev_str(&w->rev, rs, sizeof rs);
        cu_rev_str(&m->acked_rev[k], rs2, sizeof rs2);
        cu_violation(ctx, "d%u winner %s, acknowledged %s", k, rs, rs2);
        goto done;
    }
    if (m->acked_v[k] && v > m->acked_v[k] && revtree_find(&d->tree, &m->acked_rev[k]) == REVTREE_NONE) {
        cu_rev_str(&m->acked_rev[k], rs, sizeof rs);
        cu_violation(ctx, "d%u: acknowledged rev %s is not an ancestor of the winner", k, rs);
        goto done;
    }
    if (!!w->deleted != cu_deleted(k, v) || !!d->deleted != cu_deleted(k, v)) {
        cu_violation(ctx, "d%u v%" PRIu64 ": deleted flag %d/%d, expected %d", k, v, w->deleted, d->deleted,
                     cu_deleted(k, v));
        goto done;
    }
    if (!w->has_body) {
        cu_violation(ctx, "d%u v%" PRIu64 ": winning leaf has no body", k, v);
        goto done;
    }
    int rc = store_snap_read_body(s, w->body, &b);
    if (rc != DV_OK) {
        cu_violation(ctx, "d%u v%" PRIu64 ": body read: %s", k, v, dv_strerror(rc));
        goto done;
    }
    if (cu_body(k, v, want) != DV_OK)
        goto done;
    if (b.body.len != want->len || memcmp(b.body.data, want->data, want->len) != 0) {
        cu_violation(ctx, "d%u v%" PRIu64 ": body (%zu bytes) is %s", k, v, b.body.len, cu_body_diag(&b.body));
        goto done;
    }
    if (cu_check_atts(s, k, v, &b, want, got, ctx))
        goto done;
    f->v[k] = v;
    f->rev[k] = w->rev;
    f->seq[k] = d->seq;
    bad = 0;
done:
    free(leaves);
    store_docbody_free(&b);
    return bad;
}

static int cu_check_changes(const store_snap *s, const cu_model *m, cu_found *f, uint64_t nfound,
                            const store_dbinfo *info, const char *ctx)
{
    int bad = 1;
    store_seq_cursor *c = NULL;
    store_change ch;
    store_change_init(&ch);
    uint64_t prev = 0, n = 0;
    int rc = store_snap_iter_changes(s, 0, 0, &c);
    if (rc != DV_OK) {
        cu_violation(ctx, "changes: %s", dv_strerror(rc));
        goto done;
    }
    while ((rc = store_seq_cursor_next(c, &ch)) == 1) {
        int64_t k = cu_parse_id(ch.id.data, ch.id.len, "d", m->ndocs);
        if (k < 0 || !f->v[k]) {
            cu_violation(ctx, "changes: seq %" PRIu64 " names a doc the id index lacks (%.*s)", ch.seq,
                         (int)ch.id.len, (const char *)ch.id.data);
            goto done;
        }
        if (ch.seq <= prev || ch.seq > info->update_seq) {
            cu_violation(ctx, "changes: seq %" PRIu64 " after %" PRIu64 " (update_seq %" PRIu64 ")", ch.seq, prev,
                         info->update_seq);
            goto done;
        }
        if (f->seen[k]++ || ch.seq != f->seq[k]) {
            cu_violation(ctx, "changes: d%" PRId64 " at seq %" PRIu64 ", id index says seq %" PRIu64 " (seen %d)", k,
                         ch.seq, f->seq[k], f->seen[k]);
            goto done;
        }
        if (ch.nleaves != 1 || !store_rev_equal(&ch.leaves[0].rev, &f->rev[k])) {
            cu_violation(ctx, "changes: d%" PRId64 " leaves disagree with its rev tree", k);
            goto done;
        }
        prev = ch.seq;
        n++;
    }
    if (rc < 0) {
        cu_violation(ctx, "changes cursor: %s", dv_strerror(rc));
        goto done;
    }
    if (n != nfound) {
        cu_violation(ctx, "changes: %" PRIu64 " rows for %" PRIu64 " docs", n, nfound);
        goto done;
    }
    if (nfound && prev != info->update_seq) {
        cu_violation(ctx, "update_seq %" PRIu64 " but the last change is seq %" PRIu64, info->update_seq, prev);
        goto done;
    }
    bad = 0;
done:
    store_seq_cursor_close(c);
    store_change_free(&ch);
    return bad;
}

static int cu_check_locals(const store_snap *s, const cu_model *m, uint64_t *found_l, buf_t *want, const char *ctx)
{
    int bad = 1;
    store_local_cursor *c = NULL;
    buf_t id = BUF_INIT, body = BUF_INIT;
    uint64_t rev;
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    int rc = store_snap_iter_local(s, &all, &c);
    if (rc != DV_OK) {
        cu_violation(ctx, "locals: %s", dv_strerror(rc));
        goto done;
    }
    while ((rc = store_local_cursor_next(c, &id, &rev, &body)) == 1) {
        int64_t k = cu_parse_id(id.data, id.len, "_local/l", m->nlocals);
        if (k < 0 || found_l[k]) {
            cu_violation(ctx, "locals: unexpected id %.*s", (int)id.len, (const char *)id.data);
            goto done;
        }
        if (rev < m->acked_l[k] || rev > m->attempted_l[k]) {
            cu_violation(ctx, "_local/l%" PRId64 " at rev %" PRIu64 ", acknowledged %" PRIu64 ", written %" PRIu64
                              "%s",
                         k, rev, m->acked_l[k], m->attempted_l[k], rev < m->acked_l[k] ? ": LOST" : "");
            goto done;
        }
        if (cu_local_body((uint32_t)k, rev, want) != DV_OK)
            goto done;
        if (body.len != want->len || memcmp(body.data, want->data, want->len) != 0) {
            cu_violation(ctx, "_local/l%" PRId64 " rev %" PRIu64 ": body is %s", k, rev, cu_body_diag(&body));
            goto done;
        }
        found_l[k] = rev;
    }
    if (rc < 0) {
        cu_violation(ctx, "locals cursor: %s", dv_strerror(rc));
        goto done;
    }
    for (uint32_t k = 0; k < m->nlocals; k++) {
        if (m->acked_l[k] && !found_l[k]) {
            cu_violation(ctx, "_local/l%u rev %" PRIu64 " was acknowledged and is missing: LOST", k, m->acked_l[k]);
            goto done;
        }
        if (found_l[k]) { /* the point lookup agrees with the scan */
            char lid[24];
            cu_local_id(k, lid);
            rc = store_snap_get_local(s, (const uint8_t *)lid, strlen(lid), &rev, &body);
            if (rc != DV_OK || rev != found_l[k]) {
                cu_violation(ctx, "%s: get_local %s rev %" PRIu64 ", scan found %" PRIu64, lid, dv_strerror(rc),
                             rev, found_l[k]);
                goto done;
            }
        }
    }
    bad = 0;
done:
    store_local_cursor_close(c);
    buf_free(&id);
    buf_free(&body);
    return bad;
}

int cu_verify_db(store_dbfile *db, cu_model *m, int reset_model, const char *ctx)
{
    int bad = 1, rc;
    store_snap *s = NULL;
    store_id_cursor *c = NULL;
    store_docinfo d;
    store_docinfo_init(&d);
    buf_t want = BUF_INIT, got = BUF_INIT, prev_id = BUF_INIT;
    cu_found f = {calloc(m->ndocs, sizeof(uint64_t)), calloc(m->ndocs, sizeof(uint64_t)),
                  calloc(m->ndocs, sizeof(store_rev)), calloc(m->ndocs, 1)};
    uint64_t *found_l = calloc(m->nlocals ? m->nlocals : 1, sizeof *found_l);
    uint64_t nfound = 0, ndel = 0;
    store_dbinfo info;
    if (!f.v || !f.seq || !f.rev || !f.seen || !found_l)
        goto done;
    rc = store_dbfile_snapshot(db, &s);
    if (rc != DV_OK) {
        cu_violation(ctx, "snapshot: %s", dv_strerror(rc));
        goto done;
    }
    store_snap_info(s, &info);
    if (m->revs_limit_acked && info.revs_limit != CU_REVS_LIMIT) {
        cu_violation(ctx, "revs_limit %" PRIu64 ", acknowledged %d", info.revs_limit, CU_REVS_LIMIT);
        goto done;
    }
    if (info.update_seq < m->max_acked_seq) {
        cu_violation(ctx, "update_seq %" PRIu64 " below acknowledged seq %" PRIu64, info.update_seq,
                     m->max_acked_seq);
        goto done;
    }
    store_btree_range all = STORE_BTREE_RANGE_ALL;
    rc = store_snap_iter_ids(s, &all, &c);
    if (rc != DV_OK) {
        cu_violation(ctx, "iter ids: %s", dv_strerror(rc));
        goto done;
    }
    while ((rc = store_id_cursor_next(c, &d)) == 1) {
        int64_t k = cu_parse_id(d.id.data, d.id.len, "d", m->ndocs);
        if (k < 0 || f.v[k]) {
            cu_violation(ctx, "id index: unexpected or repeated id %.*s", (int)d.id.len, (const char *)d.id.data);
            goto done;
        }
        size_t mn = prev_id.len < d.id.len ? prev_id.len : d.id.len;
        int cmp = mn ? memcmp(prev_id.data, d.id.data, mn) : 0;
        if (nfound && (cmp > 0 || (cmp == 0 && prev_id.len >= d.id.len))) {
            cu_violation(ctx, "id index out of order at %.*s", (int)d.id.len, (const char *)d.id.data);
            goto done;
        }
        buf_reset(&prev_id);
        if (buf_append(&prev_id, d.id.data, d.id.len) != DV_OK)
            goto done;
        if (cu_check_doc(s, m, (uint32_t)k, &d, &f, &want, &got, ctx))
            goto done;
        if (d.seq > info.update_seq) {
            cu_violation(ctx, "d%" PRId64 " seq %" PRIu64 " above update_seq %" PRIu64, k, d.seq, info.update_seq);
            goto done;
        }
        nfound++;
        ndel += d.deleted ? 1 : 0;
    }
    if (rc < 0) {
        cu_violation(ctx, "id cursor: %s", dv_strerror(rc));
        goto done;
    }
    for (uint32_t k = 0; k < m->ndocs; k++) {
        if (m->acked_v[k] && !f.v[k]) {
            cu_violation(ctx, "d%u version %" PRIu64 " was acknowledged and the doc is missing: LOST", k,
                         m->acked_v[k]);
            goto done;
        }
    }
    if (info.doc_count != nfound - ndel || info.del_count != ndel) {
        cu_violation(ctx, "info doc_count %" PRIu64 " del_count %" PRIu64 ", found %" PRIu64 " live %" PRIu64
                          " deleted",
                     info.doc_count, info.del_count, nfound - ndel, ndel);
        goto done;
    }
    if (cu_check_changes(s, m, &f, nfound, &info, ctx) || cu_check_locals(s, m, found_l, &want, ctx))
        goto done;
    if (reset_model) {
        for (uint32_t k = 0; k < m->ndocs; k++) {
            m->acked_v[k] = m->attempted_v[k] = f.v[k];
            m->acked_rev[k] = f.rev[k];
        }
        for (uint32_t k = 0; k < m->nlocals; k++)
            m->acked_l[k] = m->attempted_l[k] = found_l[k];
        m->max_acked_seq = info.update_seq;
        m->revs_limit_acked = info.revs_limit == CU_REVS_LIMIT;
    }
    bad = 0;
done:
    store_id_cursor_close(c);
    if (s)
        store_snap_release(s);
    store_docinfo_free(&d);
    buf_free(&want);
    buf_free(&got);
    buf_free(&prev_id);
    free(f.v);
    free(f.seq);
    free(f.rev);
    free(f.seen);
    free(found_l);
    return bad;
}

int cu_create(const char *path, store_vfs *vfs, cu_model *m)
{
    store_dbfile_options o = {0};
    o.vfs = vfs;
    o.create = 1;
    o.durability = STORE_DURABLE_ALWAYS;
    store_dbfile *db = NULL;
    int rc = store_dbfile_open(path, &o, &db);
    if (rc != DV_OK)
        return rc;
    store_write w = {0};
    w.set_revs_limit = 1;
    w.revs_limit = CU_REVS_LIMIT;
    rc = store_dbfile_write(db, &w);
    if (rc == DV_OK)
        m->revs_limit_acked = 1;
    int rc2 = store_dbfile_close(db);
    return rc != DV_OK ? rc : rc2;
}

int cu_verify(const char *path, store_vfs *vfs, cu_model *m, const char *ctx)
{
    store_dbfile_options o = {0};
    o.vfs = vfs;
    o.durability = STORE_DURABLE_ALWAYS;
    store_dbfile *db = NULL;
    int rc = store_dbfile_open(path, &o, &db);
    if (rc != DV_OK) {
        cu_violation(ctx, "reopen of %s failed: %s", path, dv_strerror(rc));
        return 1;
    }
    int bad = cu_verify_db(db, m, 1, ctx);
    rc = store_dbfile_close(db);
    if (rc != DV_OK && !bad) {
        cu_violation(ctx, "close after verify: %s", dv_strerror(rc));
        bad = 1;
    }
    return bad;
}

/* ---- the writer ------------------------------------------------------ */

int cu_state_init(cu_state *s, uint32_t ndocs, uint32_t nlocals)
{
    s->ndocs = ndocs;
    s->nlocals = nlocals;
    s->v = calloc(ndocs, sizeof *s->v);
    s->rev = calloc(ndocs, sizeof *s->rev);
    s->lrev = calloc(nlocals ? nlocals : 1, sizeof *s->lrev);
    if (!s->v || !s->rev || !s->lrev) {
        cu_state_free(s);
        return DV_ERR_NOMEM;
    }
    return DV_OK;
}

void cu_state_free(cu_state *s)
{
    free(s->v);
    free(s->rev);
    free(s->lrev);
    memset(s, 0, sizeof *s);
}

int cu_state_load(cu_state *s, store_dbfile *db) { return cu_state_load_share(s, db, 1, 0); }

int cu_state_load_share(cu_state *s, store_dbfile *db, uint32_t stride, uint32_t offset)
{
    store_snap *snap = NULL;
    store_docinfo d;
    store_docinfo_init(&d);
    buf_t body = BUF_INIT;
    int rc = store_dbfile_snapshot(db, &snap);
    if (rc != DV_OK)
        goto done;
    for (uint32_t k = offset; k < s->ndocs; k += stride) {
        char id[16];
        cu_doc_id(k, id);
        rc = store_snap_get_doc(snap, (const uint8_t *)id, strlen(id), &d);
        if (rc == DV_ERR_NOTFOUND) {
            s->v[k] = 0;
            continue;
        }
        if (rc != DV_OK)
            goto done;
        uint32_t w = revtree_winner(&d.tree);
        if (w == REVTREE_NONE) {
            rc = DV_ERR_CORRUPT;
            goto done;
        }
        s->v[k] = d.tree.nodes[w].rev.pos;
        s->rev[k] = d.tree.nodes[w].rev;
    }
    for (uint32_t k = offset; k < s->nlocals; k += stride) {
        char id[24];
        cu_local_id(k, id);
        uint64_t rev = 0;
        rc = store_snap_get_local(snap, (const uint8_t *)id, strlen(id), &rev, &body);
        if (rc == DV_ERR_NOTFOUND)
            rev = 0;
        else if (rc != DV_OK)
            goto done;
        s->lrev[k] = rev;
    }
    rc = DV_OK;
done:
    if (snap)
        store_snap_release(snap);
    store_docinfo_free(&d);
    buf_free(&body);
    return rc;
}

int cu_writer_resync(cu_writer *w) { return cu_state_load_share(w->st, w->db, w->stride, w->offset); }

static pthread_mutex_t cu_model_mu = PTHREAD_MUTEX_INITIALIZER;

static void cu_model_attempt_ev(void *arg, int kind, uint32_t k, uint64_t v)
{
    pthread_mutex_lock(&cu_model_mu);
    cu_model_attempt(arg, kind, k, v);
    pthread_mutex_unlock(&cu_model_mu);
}

static void cu_model_ack_ev(void *arg, int kind, uint32_t k, uint64_t v, const store_rev *rev, uint64_t seq)
{
    pthread_mutex_lock(&cu_model_mu);
    cu_model_ack(arg, kind, k, v, rev, seq);
    pthread_mutex_unlock(&cu_model_mu);
}

void cu_writer_init_model(cu_writer *w, store_dbfile *db, cu_state *st, uint64_t seed, cu_model *m,
                          const char *ctx)
{
    memset(w, 0, sizeof *w);
    w->db = db;
    w->st = st;
    w->stride = 1;
    w->rng.s = seed;
    w->ev.attempt = cu_model_attempt_ev;
    w->ev.ack = cu_model_ack_ev;
    w->ev.arg = m;
    w->ctx = ctx;
}

#define CU_BATCH_MAX 4

int cu_writer_step(cu_writer *w)
{
    cu_state *st = w->st;
    uint32_t owned = (st->ndocs - w->offset + w->stride - 1) / w->stride;
    uint32_t lowned = st->nlocals > w->offset ? (st->nlocals - w->offset + w->stride - 1) / w->stride : 0;
    store_doc_update up[CU_BATCH_MAX];
    store_att_in att[CU_BATCH_MAX];
    store_local_update lu;
    uint32_t ks[CU_BATCH_MAX], lk = 0;
    buf_t bodies[CU_BATCH_MAX], atts[CU_BATCH_MAX], lbody = BUF_INIT;
    char ids[CU_BATCH_MAX][16], lid[24];
    size_t n = 1 + tu_rand_below(&w->rng, CU_BATCH_MAX), i;
    int rc = DV_OK, nlocal = lowned && tu_rand_below(&w->rng, 10) < 3;
    store_write wr = {0};
    for (i = 0; i < CU_BATCH_MAX; i++) {
        buf_init(&bodies[i]);
        buf_init(&atts[i]);
    }
    if (n > owned)
        n = owned;
    memset(up, 0, sizeof up);
    memset(att, 0, sizeof att);
    for (i = 0; i < n; i++) {
        uint32_t k;
        size_t j;
        do { /* distinct docs: one edit per doc per batch keeps the model simple */
            k = w->offset + w->stride * (uint32_t)tu_rand_below(&w->rng, owned);
            for (j = 0; j < i && ks[j] != k; j++)
                ;
        } while (j < i);
        ks[i] = k;
        uint64_t v = st->v[k] + 1;
        cu_doc_id(k, ids[i]);
        if ((rc = cu_body(k, v, &bodies[i])) != DV_OK)
            goto done;
        up[i].id = (const uint8_t *)ids[i];
        up[i].idlen = strlen(ids[i]);
        up[i].mode = STORE_EDIT;
        up[i].has_parent = st->v[k] > 0;
        up[i].parent = st->rev[k];
        up[i].deleted = cu_deleted(k, v);
        up[i].body = bodies[i].data;
        up[i].body_len = bodies[i].len;
        int mode = cu_att_mode(k, v);
        if (mode) {
            att[i].name = "a.bin";
            att[i].type = "application/octet-stream";
            att[i].stub = mode == 2;
            if (mode == 1) {
                if ((rc = cu_att_data(k, v, &atts[i])) != DV_OK)
                    goto done;
                att[i].data = atts[i].data;
                att[i].len = atts[i].len;
            }
            up[i].atts = &att[i];
            up[i].natts = 1;
        }
    }
    if (nlocal) {
        memset(&lu, 0, sizeof lu);
        lk = w->offset + w->stride * (uint32_t)tu_rand_below(&w->rng, lowned);
        cu_local_id(lk, lid);
        if ((rc = cu_local_body(lk, st->lrev[lk] + 1, &lbody)) != DV_OK)
            goto done;
        lu.id = (const uint8_t *)lid;
        lu.idlen = strlen(lid);
        lu.has_rev = st->lrev[lk] > 0;
        lu.rev = st->lrev[lk];
        lu.body = lbody.data;
        lu.body_len = lbody.len;
        wr.locals = &lu;
        wr.nlocals = 1;
    }
    wr.docs = up;
    wr.ndocs = n;
    for (i = 0; i < n; i++)
        w->ev.attempt(w->ev.arg, CU_DOC, ks[i], st->v[ks[i]] + 1);
    if (nlocal)
        w->ev.attempt(w->ev.arg, CU_LOCAL, lk, st->lrev[lk] + 1);
    rc = store_dbfile_write(w->db, &wr);
    if (rc != DV_OK) {
        if (rc > 0) /* statuses are <= 0; anything else is a broken contract */
            rc = DV_ERR_INVALID;
        goto done;
    }
    /* An item that hit an I/O error (e.g. writing its attachment) is simply
     * not acknowledged; the others of the batch are, and must survive.
     * Any other refusal contradicts the model: every edit names the
     * current winner as its parent. */
    int io_failed = 0;
    for (i = 0; i < n; i++) {
        uint32_t k = ks[i];
        if (up[i].status == DV_ERR_IO) {
            io_failed = 1;
            continue;
        }
        if (up[i].status != DV_OK || up[i].rev.pos != st->v[k] + 1 || up[i].seq == 0) {
            cu_violation(w->ctx, "edit of d%u v%" PRIu64 " returned %s rev pos %" PRIu64 " seq %" PRIu64, k,
                         st->v[k] + 1, dv_strerror(up[i].status), up[i].rev.pos, up[i].seq);
            rc = CU_VIOLATION;
            goto done;
        }
        st->v[k]++;
        st->rev[k] = up[i].rev;
        w->ev.ack(w->ev.arg, CU_DOC, k, st->v[k], &up[i].rev, up[i].seq);
    }
    if (nlocal && lu.status == DV_ERR_IO) {
        io_failed = 1;
    } else if (nlocal) {
        if (lu.status != DV_OK || lu.new_rev != st->lrev[lk] + 1) {
            cu_violation(w->ctx, "_local/l%u update returned %s rev %" PRIu64 ", expected %" PRIu64, lk,
                         dv_strerror(lu.status), lu.new_rev, st->lrev[lk] + 1);
            rc = CU_VIOLATION;
            goto done;
        }
        st->lrev[lk]++;
        w->ev.ack(w->ev.arg, CU_LOCAL, lk, st->lrev[lk], NULL, 0);
    }
    if (io_failed) {
        rc = DV_ERR_IO;
        goto done;
    }
    rc = DV_OK;
done:
    for (i = 0; i < CU_BATCH_MAX; i++) {
        buf_free(&bodies[i]);
        buf_free(&atts[i]);
    }
    buf_free(&lbody);
    return rc;
}
