/*
 * doc_render.c — one revision of a document as CouchDB's JSON
 * (couch_doc:to_json_obj): _id, _rev, the body's members, _deleted,
 * _revisions, then the meta members (_revs_info, _conflicts,
 * _deleted_conflicts, _local_seq), then _attachments.
 *
 * The stored body is minified JSON without '_' members, so rendering splices
 * it in whole (json_write_members_raw): O(body bytes), no parse.  Inline
 * attachment data costs one read of the stream per attachment and a base64
 * encoding; gzip-encoded data is inflated first, as CouchDB does.
 */
#include "db/db_int.h"

#include "base/base64.h"
#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void write_rev(json_writer *w, const store_rev *r)
{
    char s[STORE_REV_ID_MAX + 24];
    int n = snprintf(s, sizeof s, "%llu-", (unsigned long long)r->pos);
    memcpy(s + n, r->id, r->len);
    json_write_string(w, s, (size_t)n + r->len);
}

int db_gunzip(const uint8_t *p, size_t n, buf_t *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return DV_ERR_NOMEM;
    z.next_in = (Bytef *)p;
    z.avail_in = (uInt)n;
    int rc = DV_OK, zr = Z_OK;
    while (zr != Z_STREAM_END) {
        if ((rc = buf_reserve(out, 64 * 1024)) != DV_OK)
            break;
        z.next_out = out->data + out->len;
        z.avail_out = (uInt)(out->cap - out->len);
        zr = inflate(&z, Z_NO_FLUSH);
        out->len = out->cap - z.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END) {
            rc = DV_ERR_CORRUPT;
            break;
        }
        if (zr == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
            rc = DV_ERR_CORRUPT; /* truncated stream */
            break;
        }
    }
    inflateEnd(&z);
    return rc;
}

int db_att_read_all(const store_snap *s, const store_att *a, int decode, buf_t *out)
{
    if (!decode || !a->encoding)
        return store_snap_read_att(s, a, 0, a->length, out);
    buf_t raw = BUF_INIT;
    int rc = store_snap_read_att(s, a, 0, a->length, &raw);
    if (rc == DV_OK && !strcmp(a->encoding, "gzip"))
        rc = db_gunzip(raw.data, raw.len, out);
    else if (rc == DV_OK)
        rc = buf_append(out, raw.data, raw.len); /* an encoding we cannot undo: as stored */
    buf_free(&raw);
    return rc;
}

/* Highest pos among the atts_since revs that are on idx's path (0: none):
 * attachments newer than that are sent with data. */
uint64_t db_atts_since_pos(const revtree *t, uint32_t idx, const db_render_opts *o)
{
    if (!o->natts_since)
        return 0;
    uint64_t best = 0;
    uint32_t *path = malloc(sizeof *path * (t->n ? t->n : 1));
    if (!path)
        return 0;
    uint32_t n = revtree_path(t, idx, path);
    for (size_t i = 0; i < o->natts_since; i++)
        for (uint32_t k = 0; k < n; k++)
            if (store_rev_equal(&t->nodes[path[k]].rev, &o->atts_since[i]) && o->atts_since[i].pos > best)
                best = o->atts_since[i].pos;
    free(path);
    return best;
}

static int write_atts(const store_snap *s, const store_docbody *b, uint64_t since, const db_render_opts *o,
                      json_writer *w)
{
    json_write_key_cstr(w, "_attachments");
    json_write_begin_object(w);
    buf_t data = BUF_INIT, enc = BUF_INIT;
    int rc = DV_OK;
    for (size_t i = 0; i < b->natts && rc == DV_OK; i++) {
        const store_att *a = &b->atts[i];
        int with_data = db_att_sends_data(o, since, a);
        json_write_key_cstr(w, a->name);
        json_write_begin_object(w);
        json_write_key_cstr(w, "content_type");
        json_write_cstr(w, a->type);
        json_write_key_cstr(w, "revpos");
        json_write_u64(w, a->revpos);
        json_write_key_cstr(w, "digest");
        json_write_cstr(w, a->digest);
        if (!with_data) {
            json_write_key_cstr(w, "length");
            json_write_u64(w, a->decoded_length);
            json_write_key_cstr(w, "stub");
            json_write_bool(w, true);
        } else if (o->follows) {
            /* The identity length, as CouchDB: with encoded parts the
             * part's size is encoded_length (written below). */
            json_write_key_cstr(w, "length");
            json_write_u64(w, a->decoded_length);
            json_write_key_cstr(w, "follows");
            json_write_bool(w, true);
        } else {
            buf_reset(&data);
            buf_reset(&enc);
            rc = db_att_read_all(s, a, 1, &data);
            if (rc == DV_OK)
                rc = base64_encode(data.data ? data.data : (const uint8_t *)"", data.len, &enc);
            if (rc != DV_OK)
                break;
            json_write_key_cstr(w, "data");
            json_write_string(w, enc.data ? (const char *)enc.data : "", enc.len);
        }
        if ((o->att_encoding_info || (o->follows && o->follows_encoded && with_data)) && a->encoding) {
            json_write_key_cstr(w, "encoding");
            json_write_cstr(w, a->encoding);
            json_write_key_cstr(w, "encoded_length");
            json_write_u64(w, a->length);
        }
        json_write_end_object(w);
    }
    buf_free(&data);
    buf_free(&enc);
    if (rc == DV_OK)
        json_write_end_object(w);
    return rc ? rc : w->err;
}

int db_render_doc(const store_snap *s, const store_docinfo *di, uint32_t idx, const db_render_opts *o,
                  json_writer *w, store_docbody *body_out)
{
    const revtree *t = &di->tree;
    const revtree_node *nd = &t->nodes[idx];
    store_docbody body;
    store_docbody_init(&body);
    uint32_t *buf = NULL;
    int rc = DV_OK;
    if (nd->has_body && (rc = store_snap_read_body(s, nd->body, &body)) != DV_OK)
        goto done;
    json_write_begin_object(w);
    json_write_key_cstr(w, "_id");
    json_write_string(w, (const char *)di->id.data, di->id.len);
    json_write_key_cstr(w, "_rev");
    write_rev(w, &nd->rev);
    if (body.body.len >= 2)
        json_write_members_raw(w, (const char *)body.body.data, body.body.len);
    if (nd->deleted) {
        json_write_key_cstr(w, "_deleted");
        json_write_bool(w, true);
    }
    buf = malloc(sizeof *buf * (t->n ? t->n : 1));
    if (!buf) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    if (o->revs) {
        uint32_t n = revtree_path(t, idx, buf);
        if (o->revs_limit && n > o->revs_limit)
            n = o->revs_limit; /* the path runs from idx to the root */
        json_write_key_cstr(w, "_revisions");
        json_write_begin_object(w);
        json_write_key_cstr(w, "start");
        json_write_u64(w, nd->rev.pos);
        json_write_key_cstr(w, "ids");
        json_write_begin_array(w);
        for (uint32_t k = 0; k < n; k++)
            json_write_string(w, t->nodes[buf[k]].rev.id, t->nodes[buf[k]].rev.len);
        json_write_end_array(w);
        json_write_end_object(w);
    }
    if (o->revs_info) {
        uint32_t n = revtree_path(t, idx, buf);
        json_write_key_cstr(w, "_revs_info");
        json_write_begin_array(w);
        for (uint32_t k = 0; k < n; k++) {
            const revtree_node *x = &t->nodes[buf[k]];
            json_write_begin_object(w);
            json_write_key_cstr(w, "rev");
            write_rev(w, &x->rev);
            json_write_key_cstr(w, "status");
            json_write_cstr(w, !x->has_body ? "missing" : x->deleted ? "deleted" : "available");
            json_write_end_object(w);
        }
        json_write_end_array(w);
    }
    if (o->conflicts || o->deleted_conflicts) {
        uint32_t nl;
        revtree_leaves(t, buf, &nl);
        for (int pass = 0; pass < 2; pass++) {
            int want_deleted = pass == 1;
            if (!(want_deleted ? o->deleted_conflicts : o->conflicts))
                continue;
            int any = 0;
            for (uint32_t k = 0; k < nl; k++) {
                const revtree_node *x = &t->nodes[buf[k]];
                if (buf[k] == idx || x->deleted != want_deleted)
                    continue;
                if (!any) {
                    json_write_key_cstr(w, want_deleted ? "_deleted_conflicts" : "_conflicts");
                    json_write_begin_array(w);
                    any = 1;
                }
                write_rev(w, &x->rev);
            }
            if (any)
                json_write_end_array(w);
        }
    }
    if (o->local_seq) {
        json_write_key_cstr(w, "_local_seq");
        json_write_u64(w, di->seq);
    }
    if (body.natts && (rc = write_atts(s, &body, db_atts_since_pos(t, idx, o), o, w)) != DV_OK)
        goto done;
    json_write_end_object(w);
    rc = w->err;
done:
    free(buf);
    if (rc == DV_OK && body_out) {
        store_docbody_free(body_out);
        *body_out = body;
    } else {
        store_docbody_free(&body);
    }
    return rc;
}
