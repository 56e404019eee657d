/*
 * att_codec.c — gzip for attachments and the last step of an edit's
 * attachment list (see att_codec.h).
 */
#include "db/att_codec.h"

#include "base/status.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define ZCHUNK (64 * 1024)

int db_gzip(const uint8_t *p, size_t n, int level, buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* 16 + MAX_WBITS: a gzip wrapper with mtime 0, so equal input gives
     * equal bytes and equal digests. */
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return DV_ERR_NOMEM;
    int rc = DV_OK, zr = Z_OK;
    size_t left = n;
    z.next_in = (Bytef *)(p ? p : (const uint8_t *)"");
    while (zr != Z_STREAM_END) {
        /* zlib counts in uInt: feed at most 1 GiB at a time. */
        if (z.avail_in == 0 && left) {
            z.avail_in = (uInt)(left > (1u << 30) ? (1u << 30) : left);
            left -= z.avail_in;
        }
        if ((rc = buf_reserve(out, ZCHUNK)) != DV_OK)
            break;
        z.next_out = out->data + out->len;
        z.avail_out = (uInt)(out->cap - out->len > (1u << 30) ? (1u << 30) : out->cap - out->len);
        uInt before = z.avail_out;
        zr = deflate(&z, left || z.avail_in ? Z_NO_FLUSH : Z_FINISH);
        out->len += before - z.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            rc = DV_ERR_NOMEM;
            break;
        }
    }
    deflateEnd(&z);
    return rc;
}

int db_gunzip_size(const uint8_t *p, size_t n, uint64_t *out)
{
    uint8_t *win = malloc(ZCHUNK);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (!win)
        return DV_ERR_NOMEM;
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        free(win);
        return DV_ERR_NOMEM;
    }
    int rc = DV_ERR_CORRUPT, zr = Z_OK;
    size_t left = n;
    uint64_t total = 0;
    z.next_in = (Bytef *)(p ? p : (const uint8_t *)"");
    while (zr != Z_STREAM_END) {
        if (z.avail_in == 0 && left) {
            z.avail_in = (uInt)(left > (1u << 30) ? (1u << 30) : left);
            left -= z.avail_in;
        }
        z.next_out = win;
        z.avail_out = ZCHUNK;
        zr = inflate(&z, Z_NO_FLUSH);
        total += ZCHUNK - z.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END)
            break; /* bad data, or Z_BUF_ERROR: truncated */
    }
    /* Exactly one stream, nothing after it. */
    if (zr == Z_STREAM_END && z.avail_in == 0 && left == 0) {
        *out = total;
        rc = DV_OK;
    }
    inflateEnd(&z);
    free(win);
    return rc;
}

/* Case-insensitive glob: '*' matches any run.  Iterative with one
 * backtrack point, O(len(pat) * len(s)) at worst. */
static int glob_match(const char *pat, size_t pn, const char *s, size_t sn)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sn) {
        if (pi < pn && pat[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && tolower((unsigned char)pat[pi]) == tolower((unsigned char)s[si])) {
            pi++;
            si++;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return 0;
        }
    }
    while (pi < pn && pat[pi] == '*')
        pi++;
    return pi == pn;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

int db_att_type_compressible(const char *types, const char *type)
{
    if (!types || !type)
        return 0;
    const char *semi = strchr(type, ';');
    size_t tn = semi ? (size_t)(semi - type) : strlen(type);
    trim(&type, &tn);
    for (const char *p = types; *p;) {
        const char *comma = strchr(p, ',');
        size_t pn = comma ? (size_t)(comma - p) : strlen(p);
        const char *pat = p;
        p += pn + (comma ? 1 : 0);
        trim(&pat, &pn);
        if (pn && glob_match(pat, pn, type, tn))
            return 1;
    }
    return 0;
}

/* 1 when a's data lies inside d's own buffer. */
static int owned(const db_doc *d, const store_att_in *a)
{
    const uint8_t *b = d->attdata.data;
    return a->len == 0 || (b && a->data >= b && a->data + a->len <= b + d->attdata.len);
}

int db_doc_finish_atts(db_doc *d, const db_att_gzip_opts *o, db_err *e)
{
    buf_t nb = BUF_INIT;
    int *gz = NULL, need = 0, rc = DV_OK;
    if (!d->natts)
        return DV_OK;
    if (!d->att_off && !(d->att_off = calloc(d->natts, sizeof *d->att_off)))
        return DV_ERR_NOMEM;
    if (!(gz = calloc(d->natts, sizeof *gz)))
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < d->natts; i++) {
        store_att_in *a = &d->atts[i];
        if (a->stub)
            continue;
        if (d->att_follows && d->att_follows[i]) {
            db_err_set(e, 400, "bad_request", "Attachment %.100s is marked follows but no MIME part holds its data",
                       a->name);
            rc = DV_ERR_INVALID;
            goto done;
        }
        gz[i] = o && o->level > 0 && !a->encoding &&
                db_att_type_compressible(o->types, a->type ? a->type : "application/octet-stream");
        need |= gz[i] || !owned(d, a);
    }
    if (!need)
        goto done;
    /* Rebuild the buffer: compressed data and copies of everything else,
     * then point every new attachment into it. */
    for (size_t i = 0; i < d->natts; i++) {
        store_att_in *a = &d->atts[i];
        if (a->stub)
            continue;
        d->att_off[i] = nb.len;
        rc = gz[i] ? db_gzip(a->data, a->len, o->level, &nb) : buf_append(&nb, a->data, a->len);
        if (rc != DV_OK)
            goto done;
        if (gz[i]) {
            if (!(a->encoding = strdup("gzip"))) {
                rc = DV_ERR_NOMEM;
                goto done;
            }
            a->decoded_length = a->len;
        }
        a->len = nb.len - d->att_off[i];
    }
    buf_free(&d->attdata);
    d->attdata = nb;
    nb = (buf_t)BUF_INIT;
    for (size_t i = 0; i < d->natts; i++)
        if (!d->atts[i].stub)
            d->atts[i].data = d->attdata.data ? d->attdata.data + d->att_off[i] : (const uint8_t *)"";
done:
    buf_free(&nb);
    free(gz);
    return rc;
}
