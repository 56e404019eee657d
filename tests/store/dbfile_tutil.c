/*
 * dbfile_tutil.c — see dbfile_tutil.h.
 */
#include "store/dbfile_tutil.h"

#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

store_rev dt_rev(const char *s)
{
    store_rev r;
    if (store_rev_parse(s, strlen(s), &r) != DV_OK) {
        fprintf(stderr, "bad test rev %s\n", s);
        abort();
    }
    return r;
}

const char *dt_rev_str(const store_rev *r, char *buf)
{
    snprintf(buf, 96, "%llu-%.*s", (unsigned long long)r->pos, (int)r->len, r->id);
    return buf;
}

int dt_edit(store_dbfile *db, const char *id, const char *parent, const char *body, int deleted, store_rev *rev)
{
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)id;
    u.idlen = strlen(id);
    u.mode = STORE_EDIT;
    if (parent) {
        u.has_parent = 1;
        u.parent = dt_rev(parent);
    }
    u.deleted = deleted;
    u.body = (const uint8_t *)body;
    u.body_len = strlen(body);
    store_write w = {.docs = &u, .ndocs = 1};
    int rc = store_dbfile_write(db, &w);
    if (rc)
        return rc;
    if (rev)
        *rev = u.rev;
    return u.status;
}

int dt_replicate(store_dbfile *db, const char *id, const char *path, const char *body, int deleted)
{
    store_rev revs[64];
    size_t n = 0;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(tmp, " ", &save); tok && n < 64; tok = strtok_r(NULL, " ", &save))
        revs[n++] = dt_rev(tok);
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)id;
    u.idlen = strlen(id);
    u.mode = STORE_REPLICATE;
    u.path = revs;
    u.path_len = n;
    u.deleted = deleted;
    u.body = (const uint8_t *)body;
    u.body_len = strlen(body);
    store_write w = {.docs = &u, .ndocs = 1};
    int rc = store_dbfile_write(db, &w);
    return rc ? rc : u.status;
}

int dt_winner(store_dbfile *db, const char *id, char rev[96], buf_t *body, int *deleted)
{
    store_snap *s;
    store_docinfo d;
    store_docbody b;
    int rc = store_dbfile_snapshot(db, &s);
    if (rc)
        return rc;
    store_docinfo_init(&d);
    store_docbody_init(&b);
    rc = store_snap_get_doc(s, (const uint8_t *)id, strlen(id), &d);
    if (rc)
        goto done;
    uint32_t w = revtree_winner(&d.tree);
    if (rev)
        dt_rev_str(&d.tree.nodes[w].rev, rev);
    if (deleted)
        *deleted = d.deleted;
    if (body) {
        rc = store_snap_read_body(s, d.tree.nodes[w].body, &b);
        buf_reset(body);
        if (!rc)
            rc = buf_append(body, b.body.data, b.body.len);
    }
done:
    store_docbody_free(&b);
    store_docinfo_free(&d);
    store_snap_release(s);
    return rc;
}

store_dbinfo dt_info(store_dbfile *db)
{
    store_snap *s;
    store_dbinfo i;
    memset(&i, 0, sizeof i);
    if (store_dbfile_snapshot(db, &s) == DV_OK) {
        store_snap_info(s, &i);
        store_snap_release(s);
    }
    return i;
}
