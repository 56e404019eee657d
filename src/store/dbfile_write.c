/*
 * dbfile_write.c — the writer thread: queue, group commit, application of
 * document / local / purge updates to the four trees.  The syncer and
 * completer threads of pipelined durable commits are in dbfile_sync.c.
 *
 * One writer thread per open database.  store_dbfile_write* append an item
 * to the queue; the writer takes the whole queue (group commit), applies the
 * items in queue order, appends bodies, attachments and tree nodes and
 * writes one commit.  Durability ALWAYS: the syncer makes it durable,
 * publishes it and completes its waiters while the writer goes on (see
 * dbfile_sync.c); otherwise the writer publishes and
 * completes at once.  A group's blocking waiters sleep on one futex word
 * and are woken together (dbf_item in dbfile_int.h).
 *
 * Within a group, documents touched are kept in an in-memory table
 * (pending docs), loaded from the committed by-id tree on first touch, so
 * two updates of one doc in the same group see each other and each tree
 * gets exactly one store_btree_modify with sorted actions at the end.  A
 * doc's previous by-seq entry is deleted in that same batch: by-seq always
 * holds exactly one entry per doc.
 *
 * Errors: an item's own failure (conflict, missing stub, an unreadable old
 * doc) is that item's status and does not fail the group.  A failure to
 * append or commit fails the whole group: every waiter of the group gets the
 * error and nothing of it is acknowledged.  The writer then REOPENS the file
 * from its last good header (what reached the disk is unknown; store_file
 * poisons itself) and carries on.  If the reopen fails too the database is
 * "broken": later groups first retry the reopen and fail with DV_ERR_IO
 * while it keeps failing.  Snapshots taken before keep the old handle.
 * Likewise, after a compaction swap whose directory sync failed, each group
 * first retries that sync and fails while it fails: no write is
 * acknowledged in a file whose name a power loss could still take back.
 *
 * Durability: ALWAYS commits with one sync (made by the syncer, or by the
 * writer itself when it has nothing else to do); PERIODIC commits without
 * and the writer syncs once sync_interval_ms after the first unsynced
 * commit (the loss window on power failure); NEVER never syncs (close does
 * not either).
 */
#include "store/dbfile_int.h"

#include "base/log.h"
#include "base/status.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- pending tables ---------------------------------------------------- */

typedef struct pdoc {
    buf_t id; /* first member: the id map reads keys through it */
    revtree tree;
    int committed;    /* present in the committed by-id tree */
    uint64_t old_seq; /* its committed by-seq key */
    int present;      /* has revisions (a full purge clears it) */
    int changed;
    uint64_t seq;
    uint64_t noatt_off; /* body record this group wrote without attachments (0: none) */
} pdoc;

typedef struct plocal {
    buf_t id;
    int present;
    uint64_t rev;
    buf_t body;
    int changed;
} plocal;

/* Open addressing over an array of structs whose first member is buf_t id;
 * slots hold index + 1 (0 = empty).  Grows at 1/2 load. */
typedef struct idmap {
    uint32_t *slot;
    size_t cap, n;
} idmap;

static const buf_t *idmap_key(const void *base, size_t stride, uint32_t i)
{
    return (const buf_t *)((const char *)base + (size_t)i * stride);
}

static size_t idmap_pos(const idmap *m, const void *base, size_t stride, const uint8_t *k, size_t kn, int *found)
{
    size_t mask = m->cap - 1, pos = XXH3_64bits(k, kn) & mask;
    for (;;) {
        uint32_t s = m->slot[pos];
        if (!s) {
            *found = 0;
            return pos;
        }
        const buf_t *key = idmap_key(base, stride, s - 1);
        if (key->len == kn && (kn == 0 || !memcmp(key->data, k, kn))) {
            *found = 1;
            return pos;
        }
        pos = (pos + 1) & mask;
    }
}

/* Makes room for one more entry; rehashes entries 0..m->n-1 of base. */
static int idmap_grow(idmap *m, const void *base, size_t stride)
{
    if (m->cap && (m->n + 1) * 2 <= m->cap)
        return DV_OK;
    size_t ncap = m->cap ? m->cap * 2 : 64;
    uint32_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return DV_ERR_NOMEM;
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
    for (uint32_t i = 0; i < m->n; i++) {
        const buf_t *k = idmap_key(base, stride, i);
        int found;
        size_t pos = idmap_pos(m, base, stride, k->data, k->len, &found);
        m->slot[pos] = i + 1;
    }
    return DV_OK;
}

typedef struct ppurge {
    uint8_t key[8];
    buf_t val;
} ppurge;

typedef struct group {
    store_dbfile *db;
    store_file *file;
    store_snap *st; /* working state: a clone of cur, updated in place */
    pdoc *docs;
    size_t ndocs, capdocs;
    idmap dmap;
    plocal *locals;
    size_t nlocals, caplocals;
    idmap lmap;
    ppurge *purges;
    size_t npurges, cappurges;
    int dirty; /* anything to commit */
    store_btree_retired rewritten; /* tree nodes this group replaced: retired once it is published */
} group;

static void group_free(group *g)
{
    for (size_t i = 0; i < g->ndocs; i++) {
        buf_free(&g->docs[i].id);
        revtree_free(&g->docs[i].tree);
    }
    free(g->docs);
    free(g->dmap.slot);
    for (size_t i = 0; i < g->nlocals; i++) {
        buf_free(&g->locals[i].id);
        buf_free(&g->locals[i].body);
    }
    free(g->locals);
    free(g->lmap.slot);
    for (size_t i = 0; i < g->npurges; i++)
        buf_free(&g->purges[i].val);
    free(g->purges);
    store_btree_retired_free(&g->rewritten);
    dbf_state_unref(g->st);
}

static int grow_array(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return DV_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return DV_ERR_NOMEM;
    *arr = p;
    *cap = nc;
    return DV_OK;
}

/* Pending tables: arrays of entries whose first member is buf_t id,
 * indexed by an idmap.  An entry is prepared at index n and inserted only
 * once it is fully loaded, so a failed load leaves the table unchanged. */
static void *pend_find(const idmap *m, void *base, size_t stride, const uint8_t *id, size_t idlen)
{
    int found;
    if (!m->cap)
        return NULL;
    size_t pos = idmap_pos(m, base, stride, id, idlen, &found);
    return found ? (char *)base + (size_t)(m->slot[pos] - 1) * stride : NULL;
}

static int pend_reserve(idmap *m, void **base, size_t n, size_t *cap, size_t stride)
{
    int rc = grow_array(base, cap, n, stride);
    if (!rc)
        rc = idmap_grow(m, *base, stride);
    if (!rc)
        memset((char *)*base + n * stride, 0, stride);
    return rc;
}

static void pend_insert(idmap *m, void *base, size_t stride, size_t *n)
{
    int found;
    const buf_t *k = idmap_key(base, stride, (uint32_t)*n);
    size_t pos = idmap_pos(m, base, stride, k->data, k->len, &found);
    assert(!found);
    m->slot[pos] = (uint32_t)++*n;
    m->n++;
}

/* The committed value of key in tree t (as of the group's start). */
static int committed_get(group *g, int t, const uint8_t *id, size_t idlen, buf_t *val)
{
    const buf_t *root = &g->st->root[t];
    return store_btree_get(&g->st->fr->tree[t], root->data, root->len, (store_slice){id, idlen}, val);
}

/* Finds or loads the pending entry of a doc.  Errors reading the committed
 * tree are the item's (returned), not the group's. */
static int load_doc(group *g, const uint8_t *id, size_t idlen, pdoc **out)
{
    pdoc *d = pend_find(&g->dmap, g->docs, sizeof *g->docs, id, idlen);
    buf_t val = BUF_INIT;
    if (d) {
        *out = d;
        return DV_OK;
    }
    int rc = pend_reserve(&g->dmap, (void **)&g->docs, g->ndocs, &g->capdocs, sizeof *g->docs);
    if (rc)
        return rc;
    d = &g->docs[g->ndocs];
    revtree_init(&d->tree);
    rc = buf_append(&d->id, id, idlen);
    if (!rc)
        rc = committed_get(g, DBF_T_BYID, id, idlen, &val);
    if (rc == DV_OK) {
        rc = dbf_byid_decode(val.data, val.len, &d->tree, &d->old_seq, NULL, NULL, NULL);
        d->committed = d->present = 1;
        d->seq = d->old_seq;
    } else if (rc == DV_ERR_NOTFOUND) {
        rc = DV_OK;
    }
    buf_free(&val);
    if (rc) {
        buf_free(&d->id);
        revtree_free(&d->tree);
        return rc;
    }
    pend_insert(&g->dmap, g->docs, sizeof *g->docs, &g->ndocs);
    *out = d;
    return DV_OK;
}

static int load_local(group *g, const uint8_t *id, size_t idlen, plocal **out)
{
    plocal *l = pend_find(&g->lmap, g->locals, sizeof *g->locals, id, idlen);
    buf_t val = BUF_INIT;
    if (l) {
        *out = l;
        return DV_OK;
    }
    int rc = pend_reserve(&g->lmap, (void **)&g->locals, g->nlocals, &g->caplocals, sizeof *g->locals);
    if (rc)
        return rc;
    l = &g->locals[g->nlocals];
    rc = buf_append(&l->id, id, idlen);
    if (!rc)
        rc = committed_get(g, DBF_T_LOCAL, id, idlen, &val);
    if (rc == DV_OK) {
        const uint8_t *b;
        size_t bn;
        rc = dbf_local_decode((store_slice){val.data, val.len}, &l->rev, &b, &bn);
        if (!rc)
            rc = buf_append(&l->body, b, bn);
        l->present = 1;
    } else if (rc == DV_ERR_NOTFOUND) {
        rc = DV_OK;
    }
    buf_free(&val);
    if (rc) {
        buf_free(&l->id);
        buf_free(&l->body);
        return rc;
    }
    pend_insert(&g->lmap, g->locals, sizeof *g->locals, &g->nlocals);
    *out = l;
    return DV_OK;
}

/* ---- document updates ------------------------------------------------- */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Fills atts[] from the update's list: stubs copied from the parent's body
 * record (stub_from, a node index, or REVTREE_NONE), new data named and
 * digested (not written yet).  Item-level errors: DV_ERR_MISSING_STUB. */
static int resolve_atts(group *g, const pdoc *d, uint32_t stub_from, const store_doc_update *u,
                        const dbf_prep *prep, uint64_t newpos, dbf_att *atts)
{
    dbf_att *patts = NULL;
    size_t np = 0, i;
    int rc = DV_OK, loaded = 0;
    for (i = 0; i < u->natts; i++) {
        const store_att_in *in = &u->atts[i];
        store_att *a = &atts[i].a;
        if (!in->name) {
            rc = DV_ERR_INVALID;
            break;
        }
        if (in->stub) {
            if (!loaded) {
                loaded = 1;
                if (stub_from != REVTREE_NONE && d->tree.nodes[stub_from].has_body)
                    rc = dbf_body_read(g->file, d->tree.nodes[stub_from].body, NULL, &patts, &np);
                if (rc)
                    break;
            }
            size_t k = 0;
            while (k < np && strcmp(patts[k].a.name, in->name))
                k++;
            if (k == np) {
                rc = DV_ERR_MISSING_STUB;
                break;
            }
            rc = dbf_att_dup(&patts[k].a, a);
            if (rc)
                break;
            atts[i].disk = patts[k].disk;
            continue;
        }
        a->name = strdup(in->name);
        a->type = strdup(in->type ? in->type : "application/octet-stream");
        a->encoding = dupstr(in->encoding);
        if (!a->name || !a->type || (in->encoding && !a->encoding)) {
            rc = DV_ERR_NOMEM;
            i++;
            break;
        }
        a->length = in->len;
        a->decoded_length = in->encoding ? in->decoded_length : in->len;
        a->revpos = u->mode == STORE_REPLICATE && in->revpos ? in->revpos : newpos;
        if (prep && prep->digests)
            memcpy(a->digest, prep->digests[i], sizeof a->digest);
        else
            dbf_md5_digest(in->data, in->len, a->digest);
    }
    dbf_atts_free(patts, np);
    if (rc) {
        for (size_t j = 0; j < i && j < u->natts; j++) {
            free(atts[j].a.name);
            free(atts[j].a.type);
            free(atts[j].a.encoding);
            memset(&atts[j], 0, sizeof atts[j]);
        }
    }
    return rc;
}

/* Writes the new attachment streams and the body record of a rev. */
static int write_rev_data(group *g, const store_doc_update *u, const dbf_prep *prep, dbf_att *atts,
                          store_ptr *body, uint64_t *ext)
{
    int compression = g->db->compression;
    uint64_t size = u->body_len;
    for (size_t i = 0; i < u->natts; i++) {
        if (!u->atts[i].stub) {
            int rc = dbf_att_write(g->file, compression, u->atts[i].encoding == NULL, u->atts[i].data,
                                   u->atts[i].len, &atts[i]);
            if (rc)
                return rc;
        }
        size += atts[i].a.length;
    }
    *ext = size;
    return dbf_body_write(g->file, compression, u->body, u->body_len, prep ? &prep->zbody : NULL, atts, u->natts,
                          body);
}

/* Returns an error only for group-fatal failures; item outcomes go to
 * u->status.  prep: the caller's precomputed work for u, or NULL. */
static int apply_doc(group *g, store_doc_update *u, const dbf_prep *prep)
{
    pdoc *d = NULL;
    dbf_att *atts = NULL;
    int rc = DV_OK, item = DV_OK;
    uint32_t idx = REVTREE_NONE;
    u->seq = 0;
    if (u->idlen == 0 || u->idlen > 65535 || (u->mode == STORE_REPLICATE && u->path_len == 0) ||
        (u->natts && !u->atts) || (u->body_len && !u->body)) {
        item = DV_ERR_INVALID;
        goto done;
    }
    item = load_doc(g, u->id, u->idlen, &d);
    if (item)
        goto done;
    atts = calloc(u->natts ? u->natts : 1, sizeof *atts);
    if (!atts) {
        rc = DV_ERR_NOMEM;
        goto done;
    }
    revtree_node proto;
    memset(&proto, 0, sizeof proto);
    proto.deleted = u->deleted ? 1 : 0;
    proto.parent = REVTREE_NONE;
    if (u->mode == STORE_EDIT) {
        uint32_t pidx;
        const store_rev *prev;
        if (u->has_parent) {
            pidx = revtree_find(&d->tree, &u->parent);
            prev = &u->parent;
            if (pidx == REVTREE_NONE || !revtree_is_leaf(&d->tree, pidx))
                item = DV_ERR_CONFLICT;
        } else {
            pidx = revtree_implicit_parent(&d->tree);
            prev = pidx == REVTREE_NONE ? NULL : &d->tree.nodes[pidx].rev;
            if (pidx == REVTREE_NONE && d->tree.n)
                item = DV_ERR_CONFLICT;
        }
        uint64_t newpos = prev ? prev->pos + 1 : 1;
        if (!item)
            item = resolve_atts(g, d, pidx, u, prep, newpos, atts);
        char rid[33];
        /* The caller computed the rev id for the parent it named (or for
         * none); it holds when the writer finds that same parent. */
        if (!item && prep && prep->has_rid && (u->has_parent || !prev)) {
            memcpy(rid, prep->rid, sizeof rid);
        } else {
            const char **digests = malloc(sizeof *digests * (u->natts ? u->natts : 1));
            if (!digests) {
                rc = DV_ERR_NOMEM;
                goto done;
            }
            for (size_t i = 0; i < u->natts; i++)
                digests[i] = atts[i].a.digest;
            revtree_compute_rev_id(u->deleted, prev, u->body, u->body_len, digests, u->natts, rid);
            free(digests);
        }
        memset(&u->rev, 0, sizeof u->rev);
        u->rev.pos = newpos;
        u->rev.len = 32;
        memcpy(u->rev.id, rid, 32);
        if (item)
            goto done;
        item = revtree_add_edit(&d->tree, u->has_parent ? &u->parent : NULL, rid, 32, &proto, &idx);
        if (item)
            goto done;
    } else {
        u->rev = u->path[0];
        if (revtree_find(&d->tree, &u->path[0]) != REVTREE_NONE)
            goto done; /* already known: nothing changes */
        uint32_t from = REVTREE_NONE;
        for (size_t i = 1; i < u->path_len && from == REVTREE_NONE; i++) {
            uint32_t k = revtree_find(&d->tree, &u->path[i]);
            if (k != REVTREE_NONE && d->tree.nodes[k].has_body)
                from = k;
        }
        item = resolve_atts(g, d, from, u, prep, u->path[0].pos, atts);
        if (item)
            goto done;
        int added = 0;
        item = revtree_merge_path(&d->tree, u->path, u->path_len, &proto, &added, &idx);
        if (item || !added)
            goto done;
    }
    /* The rev is in the tree: from here on failures are the group's. */
    store_ptr body;
    uint64_t ext;
    rc = write_rev_data(g, u, prep, atts, &body, &ext);
    if (rc)
        goto done;
    uint64_t seq = ++g->st->update_seq;
    revtree_node *nd = &d->tree.nodes[idx];
    nd->has_body = 1;
    nd->body = body;
    if (u->natts == 0)
        d->noatt_off = body.off;
    nd->seq = seq;
    nd->size = ext;
    rc = revtree_stem(&d->tree, g->st->revs_limit);
    if (rc)
        goto done;
    d->seq = seq;
    d->present = 1;
    d->changed = 1;
    g->dirty = 1;
    u->seq = seq;
done:
    if (atts)
        dbf_atts_free(atts, u->natts);
    u->status = rc ? rc : item;
    return rc;
}

static int apply_local(group *g, store_local_update *u)
{
    plocal *l;
    u->new_rev = 0;
    if (u->idlen == 0 || u->idlen > 65535 || (u->body_len && !u->body)) {
        u->status = DV_ERR_INVALID;
        return DV_OK;
    }
    u->status = load_local(g, u->id, u->idlen, &l);
    if (u->status)
        return DV_OK;
    uint64_t cur = l->present ? l->rev : 0;
    if (u->has_rev ? u->rev != cur : l->present) {
        u->status = DV_ERR_CONFLICT;
        return DV_OK;
    }
    if (u->deleted) {
        if (!l->present) {
            u->status = DV_ERR_NOTFOUND;
            return DV_OK;
        }
        l->present = 0;
        buf_reset(&l->body);
    } else {
        buf_reset(&l->body);
        int rc = buf_append(&l->body, u->body, u->body_len);
        if (rc)
            return rc;
        l->present = 1;
        l->rev = cur + 1;
        u->new_rev = l->rev;
    }
    l->changed = 1;
    g->st->local_seq++;
    g->dirty = 1;
    return DV_OK;
}

static int apply_purge(group *g, store_purge *p)
{
    pdoc *d;
    uint8_t *flags = NULL;
    p->npurged = 0;
    if (p->purged)
        memset(p->purged, 0, p->nrevs);
    p->status = (p->nrevs && !p->revs) || p->idlen == 0 ? DV_ERR_INVALID : load_doc(g, p->id, p->idlen, &d);
    if (p->status || !d->present)
        return DV_OK; /* purging an unknown doc purges nothing */
    flags = p->purged ? p->purged : calloc(p->nrevs + 1, 1);
    if (!flags)
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < p->nrevs; i++) {
        uint32_t k = revtree_find(&d->tree, &p->revs[i]);
        flags[i] = k != REVTREE_NONE && revtree_is_leaf(&d->tree, k);
    }
    size_t n = 0;
    int rc = revtree_purge(&d->tree, p->revs, p->nrevs, &n);
    p->npurged = n;
    if (!rc && n)
        rc = grow_array((void **)&g->purges, &g->cappurges, g->npurges, sizeof *g->purges);
    if (rc || !n)
        goto done;
    ppurge *e = &g->purges[g->npurges];
    buf_init(&e->val);
    rc = buf_put_bytes(&e->val, p->id, p->idlen);
    if (!rc)
        rc = buf_put_varint(&e->val, n);
    for (size_t i = 0; i < p->nrevs && !rc; i++) {
        if (!flags[i])
            continue;
        rc = buf_put_varint(&e->val, p->revs[i].pos);
        if (!rc)
            rc = buf_put_bytes(&e->val, p->revs[i].id, p->revs[i].len);
    }
    if (rc) {
        buf_free(&e->val);
        goto done;
    }
    dbf_seq_key(++g->st->purge_seq, e->key);
    g->npurges++;
    /* A doc keeping some leaves moves to a new seq (its leaf set changed,
     * replicas and views must see it); a fully purged doc leaves by-seq. */
    if (d->tree.n == 0)
        d->present = 0;
    else
        d->seq = ++g->st->update_seq;
    d->changed = 1;
    g->dirty = 1;
done:
    if (flags != p->purged)
        free(flags);
    return rc;
}

static const dbf_prep *prep_for_writer(store_dbfile *db, dbf_item *it, size_t i);

static int apply_write(group *g, dbf_item *it)
{
    store_write *w = it->w;
    int rc = DV_OK;
    for (size_t i = 0; i < w->ndocs && !rc; i++)
        rc = apply_doc(g, &w->docs[i], prep_for_writer(g->db, it, i));
    for (size_t i = 0; i < w->nlocals && !rc; i++)
        rc = apply_local(g, &w->locals[i]);
    for (size_t i = 0; i < w->npurges && !rc; i++)
        rc = apply_purge(g, &w->purges[i]);
    if (!rc && w->set_revs_limit && w->revs_limit > 0) {
        g->st->revs_limit = w->revs_limit;
        g->dirty = 1;
    }
    if (!rc && w->set_security) {
        buf_reset(&g->st->security);
        rc = buf_append(&g->st->security, w->security, w->security_len);
        g->dirty = 1;
    }
    return rc;
}

/* ---- finishing a group: tree batches and commit ----------------------- */

typedef struct actlist {
    store_btree_action *a;
    buf_t *vals; /* owned values, parallel to a */
    size_t n;
} actlist;

/* Changed docs in id order, sorted by (first 8 id bytes as an integer, full
 * id): most comparisons are one integer compare, where a memcmp call each
 * was 6% of a 1,000-doc batch. */
typedef struct doc_order {
    uint64_t prefix;
    uint32_t idx;
} doc_order;

static uint64_t id_prefix(const buf_t *id)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < id->len ? id->data[i] : 0);
    return v;
}

static int cmp_doc_order(const void *x, const void *y, void *ctx)
{
    const doc_order *a = x, *b = y;
    if (a->prefix != b->prefix)
        return a->prefix < b->prefix ? -1 : 1;
    const pdoc *docs = ctx;
    const pdoc *da = &docs[a->idx], *db = &docs[b->idx];
    return dbf_key_cmp(da->id.data, da->id.len, db->id.data, db->id.len);
}

static int cmp_act(const void *x, const void *y)
{
    const store_btree_action *a = x, *b = y;
    return dbf_key_cmp(a->key.p, a->key.n, b->key.p, b->key.n);
}

static int cmp_local(const void *x, const void *y)
{
    const plocal *a = x, *b = y;
    return dbf_key_cmp(a->id.data, a->id.len, b->id.data, b->id.len);
}

static void actlist_free(actlist *l, size_t cap)
{
    for (size_t i = 0; i < cap && l->vals; i++)
        buf_free(&l->vals[i]);
    free(l->vals);
    free(l->a);
}

static int modify_tree(group *g, int t, actlist *l)
{
    if (l->n == 0)
        return DV_OK;
    buf_t nr = BUF_INIT;
    buf_t *root = &g->st->root[t];
    int rc = store_btree_modify_keep(&g->st->fr->tree[t], root->data, root->len, l->a, l->n, &nr, &g->rewritten);
    if (!rc) {
        buf_free(root);
        *root = nr;
    } else {
        buf_free(&nr);
    }
    return rc;
}

static int finish_docs(group *g)
{
    size_t n = 0, cap = g->ndocs * 2 + 1;
    doc_order *order = malloc(sizeof *order * (g->ndocs + 1));
    actlist byid = {calloc(cap, sizeof(store_btree_action)), calloc(cap, sizeof(buf_t)), 0};
    actlist byseq = {calloc(cap, sizeof(store_btree_action)), calloc(cap, sizeof(buf_t)), 0};
    int rc = DV_ERR_NOMEM;
    if (!order || !byid.a || !byid.vals || !byseq.a || !byseq.vals)
        goto done;
    for (uint32_t i = 0; i < g->ndocs; i++)
        if (g->docs[i].changed)
            order[n++] = (doc_order){id_prefix(&g->docs[i].id), i};
    if (n)
        qsort_r(order, n, sizeof *order, cmp_doc_order, g->docs);
    rc = DV_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        pdoc *d = &g->docs[order[i].idx];
        store_btree_action *a = &byid.a[byid.n];
        a->key = (store_slice){d->id.data, d->id.len};
        if (d->committed) {
            store_btree_action *s = &byseq.a[byseq.n];
            s->op = STORE_BTREE_DEL;
            rc = buf_reserve(&byseq.vals[byseq.n], 8);
            if (rc)
                break;
            dbf_seq_key(d->old_seq, byseq.vals[byseq.n].data);
            byseq.vals[byseq.n].len = 8;
            s->key = (store_slice){byseq.vals[byseq.n].data, 8};
            byseq.n++;
        }
        if (!d->present) {
            a->op = STORE_BTREE_DEL;
            byid.n++;
            continue;
        }
        uint64_t act, ext;
        uint32_t w = revtree_winner(&d->tree);
        assert(w != REVTREE_NONE);
        rc = dbf_doc_sizes(g->file, d->id.data, d->id.len, &d->tree, d->noatt_off, &act, &ext);
        if (!rc)
            rc = dbf_byid_encode(&d->tree, d->seq, d->tree.nodes[w].deleted, act, ext, &byid.vals[byid.n]);
        if (rc)
            break;
        a->op = STORE_BTREE_PUT;
        a->val = (store_slice){byid.vals[byid.n].data, byid.vals[byid.n].len};
        byid.n++;
        /* by-seq: value first (key buffer lives in the same slot after it). */
        buf_t *v = &byseq.vals[byseq.n];
        rc = dbf_byseq_encode(d->id.data, d->id.len, &d->tree, v);
        if (!rc)
            rc = buf_reserve(v, 8);
        if (rc)
            break;
        dbf_seq_key(d->seq, v->data + v->len); /* key stored past the value's end */
        store_btree_action *s = &byseq.a[byseq.n++];
        s->op = STORE_BTREE_PUT;
        s->val = (store_slice){v->data, v->len};
        s->key = (store_slice){v->data + v->len, 8};
    }
    if (!rc) {
        /* New seqs ascend in apply order: a group of new docs is sorted
         * already (qsort would still compare n log n times). */
        size_t k = 1;
        while (k < byseq.n && cmp_act(&byseq.a[k - 1], &byseq.a[k]) < 0)
            k++;
        if (k < byseq.n)
            qsort(byseq.a, byseq.n, sizeof *byseq.a, cmp_act);
        rc = modify_tree(g, DBF_T_BYID, &byid);
    }
    if (!rc)
        rc = modify_tree(g, DBF_T_BYSEQ, &byseq);
done:
    free(order);
    actlist_free(&byid, cap);
    actlist_free(&byseq, cap);
    return rc;
}

static int finish_locals(group *g)
{
    size_t n = 0;
    int rc = DV_ERR_NOMEM;
    if (!g->nlocals)
        return DV_OK;
    actlist l = {calloc(g->nlocals + 1, sizeof(store_btree_action)), calloc(g->nlocals + 1, sizeof(buf_t)), 0};
    if (!l.a || !l.vals)
        goto done;
    /* The map is no longer needed: sort the entries themselves. */
    qsort(g->locals, g->nlocals, sizeof *g->locals, cmp_local);
    rc = DV_OK;
    for (size_t i = 0; i < g->nlocals && !rc; i++) {
        plocal *p = &g->locals[i];
        if (!p->changed)
            continue;
        store_btree_action *a = &l.a[n];
        a->key = (store_slice){p->id.data, p->id.len};
        a->op = p->present ? STORE_BTREE_PUT : STORE_BTREE_DEL;
        if (p->present) {
            rc = dbf_local_encode(p->rev, p->body.data, p->body.len, &l.vals[n]);
            a->val = (store_slice){l.vals[n].data, l.vals[n].len};
        }
        n++;
    }
    l.n = n;
    if (!rc)
        rc = modify_tree(g, DBF_T_LOCAL, &l);
done:
    actlist_free(&l, g->nlocals + 1);
    return rc;
}

static int finish_purges(group *g)
{
    if (!g->npurges)
        return DV_OK;
    store_btree_action *a = calloc(g->npurges, sizeof *a);
    if (!a)
        return DV_ERR_NOMEM;
    for (size_t i = 0; i < g->npurges; i++) {
        a[i].op = STORE_BTREE_PUT;
        a[i].key = (store_slice){g->purges[i].key, 8};
        a[i].val = (store_slice){g->purges[i].val.data, g->purges[i].val.len};
    }
    actlist l = {a, NULL, g->npurges};
    int rc = modify_tree(g, DBF_T_PURGE, &l);
    free(a);
    return rc;
}

/* ---- the writer thread ------------------------------------------------ */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- waiting for work: awake a moment, then asleep --------------------
 *
 * A writer asleep on cv_work costs the next write a futex wake-up, and on a
 * virtual machine whose idle vCPU halts that is 50-100 us: a fifth of a
 * lone synced PUT here (docs/benchmarks.md, "Why PUT with one connection
 * stays under 10x").  A client writing one document at a time comes back
 * 150-250 us after its commit, so a writer that stays awake that long
 * takes the next write at once (RocksDB's write threads spin-then-yield
 * for the same reason).  What it costs: up to DBF_SPIN_US of a core after a
 * commit, spent in sched_yield (a runnable thread on that core goes first),
 * and only while the recent gaps between going idle and the next write
 * averaged between DBF_SPIN_MIN_US and DBF_SPIN_US; one long gap stops it.
 * Under DBF_SPIN_MIN_US (a writer in-process queueing its next commit at
 * once, ~30 us in bench_ops) spinning measured no faster than sleeping and
 * only took CPU.  At most half the CPUs' worth of writers spin at once
 * (process-wide), none on one CPU.  Measured (wrk, one connection, PUTs
 * synced): +13-27% PUTs/s; unsynced +27-45%; 64 connections +6%. */

#define DBF_SPIN_US 300
#define DBF_SPIN_MIN_US 60 /* shorter gaps: see above */
#define DBF_GAP_CAP_US 1000000 /* one long gap counts as this much */

static atomic_int spinners;      /* writers spinning now, process-wide */
static atomic_int spinners_max = -1; /* half the CPUs online; -1: not read yet */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Folds one idle gap into the writer's running average (weight 1/4). */
static uint32_t gap_average(uint32_t avg, uint64_t gap_us)
{
    if (gap_us > DBF_GAP_CAP_US)
        gap_us = DBF_GAP_CAP_US;
    return (uint32_t)(((uint64_t)avg * 3 + gap_us) / 4);
}

/* Waits up to DBF_SPIN_US without the lock for something to be queued.
 * Returns with db->mu held again; the caller re-checks its state, as the
 * writer may have missed a signal meanwhile. */
static void writer_spin(store_dbfile *db)
{
    int max = atomic_load_explicit(&spinners_max, memory_order_relaxed);
    if (max < 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        max = n > 1 ? (int)(n / 2) : 0;
        atomic_store_explicit(&spinners_max, max, memory_order_relaxed);
    }
    if (atomic_fetch_add(&spinners, 1) >= max) {
        atomic_fetch_sub(&spinners, 1);
        return;
    }
    unsigned seen = atomic_load_explicit(&db->queued, memory_order_relaxed);
    int got = 0;
    pthread_mutex_unlock(&db->mu);
    uint64_t end = now_us() + DBF_SPIN_US;
    do {
        for (int i = 0; i < 16 && !got; i++) {
            got = atomic_load_explicit(&db->queued, memory_order_acquire) != seen;
            if (!got)
                sched_yield();
        }
    } while (!got && now_us() < end);
    pthread_mutex_lock(&db->mu);
    atomic_fetch_sub(&spinners, 1);
    if (got)
        atomic_fetch_add(&db->spin_catches, 1);
}

/* Reopens the current file from its last good header after a failed
 * commit.  Caller: the writer thread with no group handed to the syncer
 * (or compaction with the writer paused), without db->mu. */
static int reopen(store_dbfile *db)
{
    dbf_fileref *fr = NULL;
    store_snap *st = NULL;
    buf_t hdr = BUF_INIT;
    /* Only up to the last published commit: a failed one may be whole in
     * the page cache and yet not on disk (see store_file_open_limit), and
     * groups written after the last published one (pipelined) failed too:
     * their writers were told so and go on from the published state. */
    pthread_mutex_lock(&db->mu);
    uint64_t limit = db->cur->file_size;
    pthread_mutex_unlock(&db->mu);
    /* Snapshots may keep the old handle open long after this; when they let
     * go, it must not cut the file the new handle goes on writing. */
    store_file_supersede(db->fr->file);
    int rc = dbf_fileref_open(db, db->path, 0, limit, &fr, &hdr);
    if (!rc)
        rc = dbf_state_from_header(db, fr, hdr.data, hdr.len, &st);
    if (!rc && hdr.len == 0)
        rc = DV_ERR_CORRUPT; /* the header written at creation vanished */
    buf_free(&hdr);
    if (rc) {
        dbf_state_unref(st);
        dbf_fileref_unref(fr);
        log_error("dbfile: %s: reopen after a failed commit failed: %s", db->path, dv_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&db->mu);
    dbf_fileref *old = db->fr;
    db->fr = fr;
    dbf_publish_locked(db, st);
    db->broken = 0;
    db->unsynced = 0;
    db->sync_failed = 0;
    pthread_mutex_unlock(&db->mu);
    dbf_fileref_unref(old);
    return DV_OK;
}


static int pipelined(const store_dbfile *db) { return db->durability == STORE_DURABLE_ALWAYS; }

/* Applies items and writes them as one commit.  Pipelined: *out receives
 * the group for the syncer; otherwise the group is published here.
 * need_reopen: a failed commit or sync poisoned the file, and nothing is
 * handed over any more (the writer checked both under db->mu).  Returns
 * the group's status (an error fails every item). */
static int run_group(store_dbfile *db, dbf_item *items, int need_reopen, dbf_pending **out)
{
    group g;
    memset(&g, 0, sizeof g);
    g.db = db;
    int rc = DV_OK;
    *out = NULL;
    if (need_reopen) {
        rc = reopen(db);
        if (rc) {
            db->broken = 1;
            return DV_ERR_IO;
        }
    }
    pthread_mutex_lock(&db->mu);
    int dir_unsynced = db->dir_unsynced;
    pthread_mutex_unlock(&db->mu);
    if (dir_unsynced) {
        rc = dbf_sync_dir(db);
        if (rc)
            return rc;
        pthread_mutex_lock(&db->mu);
        db->dir_unsynced = 0;
        pthread_mutex_unlock(&db->mu);
    }
    g.file = db->fr->file;
    pthread_mutex_lock(&db->mu);
    rc = dbf_state_clone(db->tip ? db->tip : db->cur, &g.st);
    pthread_mutex_unlock(&db->mu);
    if (rc)
        return rc;
    for (dbf_item *it = items; it && !rc; it = it->next)
        rc = apply_write(&g, it);
    if (!rc && g.dirty) {
        rc = finish_docs(&g);
        if (!rc)
            rc = finish_locals(&g);
        if (!rc)
            rc = finish_purges(&g);
        buf_t hdr = BUF_INIT;
        if (!rc)
            rc = dbf_state_encode(g.st, &hdr);
        if (!rc)
            rc = store_file_commit(g.file, hdr.data, hdr.len,
                                   pipelined(db) ? STORE_COMMIT_SYNC_LATER : STORE_COMMIT_NOSYNC);
        buf_free(&hdr);
        if (!rc)
            g.st->file_size = store_file_committed_size(g.file);
        else if (pipelined(db) || reopen(db))
            db->broken = 1; /* pipelined: reopened once nothing is handed over */
    }
    if (!rc && pipelined(db)) {
        dbf_pending *p = calloc(1, sizeof *p);
        if (!p) {
            rc = DV_ERR_NOMEM;
            if (g.dirty)
                db->broken = 1; /* written, but never to be synced nor published */
        } else {
            p->items = items;
            if (g.dirty) {
                p->st = g.st;
                p->end = g.st->file_size;
                g.st = NULL;
                p->rewritten = g.rewritten; /* retired by complete_batch, after publishing */
                memset(&g.rewritten, 0, sizeof g.rewritten);
            }
            *out = p;
        }
    } else if (!rc && g.dirty) {
        atomic_fetch_add(&db->commits, 1);
        pthread_mutex_lock(&db->mu);
        dbf_publish_locked(db, g.st);
        if (db->durability == STORE_DURABLE_PERIODIC && !db->unsynced)
            db->unsynced = 1;
        pthread_mutex_unlock(&db->mu);
        g.st = NULL;
        /* Only now: the nodes these replaced served the state readers had
         * until the publish, and retiring them earlier made those readers
         * miss and load them back. */
        store_btree_retire(&g.rewritten);
    }
    group_free(&g);
    return rc;
}

static void *writer_main(void *arg)
{
    store_dbfile *db = arg;
    uint64_t unsynced_since = 0;
    uint64_t idle_since = 0;             /* us; 0: not idle */
    uint32_t gap_avg = 2 * DBF_SPIN_US;  /* no spinning until short gaps are seen */
    int spun = 0;                        /* spun since last idle: sleep next */
    pthread_mutex_lock(&db->mu);
    for (;;) {
        /* Compaction pauses a writer with nothing handed over, and a reopen
         * replaces the file only once the syncer is done with it. */
        if ((db->pause_req || ((db->broken || db->sync_failed) && db->qhead)) && db->npend) {
            pthread_cond_wait(&db->cv_sync, &db->mu);
            continue;
        }
        if (db->pause_req) {
            db->paused = 1;
            pthread_cond_broadcast(&db->cv_done);
            while (db->pause_req)
                pthread_cond_wait(&db->cv_work, &db->mu);
            db->paused = 0;
            continue;
        }
        if (db->qhead) {
            if (idle_since) {
                gap_avg = gap_average(gap_avg, now_us() - idle_since);
                idle_since = 0;
                spun = 0;
            }
            dbf_item *items = db->qhead;
            int need_reopen = db->broken || db->sync_failed; /* then npend == 0: see above */
            db->qhead = db->qtail = NULL;
            db->groups_taken++; /* every item taken here has group == groups_taken */
            db->writer_busy = 1;
            pthread_mutex_unlock(&db->mu);
            dbf_pending *p = NULL;
            int rc = run_group(db, items, need_reopen, &p);
            pthread_mutex_lock(&db->mu);
            db->writer_busy = 0;
            if (p && !db->npend && !db->qhead) {
                /* Nothing ahead or behind: sync here, as a lone commit would
                 * wait for the syncer anyway (two thread hops fewer). */
                db->npend++;
                p->next = NULL;
                dbf_sync_batch_locked(db, p, 1);
                dbf_finish_batch_locked(db, p);
            } else if (p) {
                dbf_hand_over_locked(db, p);
            } else {
                if (db->phead) /* a syncer holding groups waits for this one; an idle one need not wake */
                    pthread_cond_broadcast(&db->cv_sync);
                pthread_mutex_unlock(&db->mu);
                dbf_complete(db, items, rc);
                pthread_mutex_lock(&db->mu);
            }
            continue;
        }
        if (!idle_since)
            idle_since = now_us();
        if (!spun && !db->stop && gap_avg >= DBF_SPIN_MIN_US && gap_avg < DBF_SPIN_US) {
            spun = 1;
            writer_spin(db);
            continue;
        }
        if (db->unsynced) {
            uint64_t now = now_ms();
            if (!unsynced_since)
                unsynced_since = now;
            if (now >= unsynced_since + db->sync_interval_ms || db->stop) {
                store_file *f = db->fr->file;
                pthread_mutex_unlock(&db->mu);
                int rc = store_file_sync(f);
                if (rc)
                    log_error("dbfile: %s: periodic sync failed: %s", db->path, dv_strerror(rc));
                pthread_mutex_lock(&db->mu);
                db->unsynced = 0;
                unsynced_since = 0;
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t wait = unsynced_since + db->sync_interval_ms - now;
            ts.tv_sec += (time_t)(wait / 1000);
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&db->cv_work, &db->mu, &ts);
            continue;
        }
        if (db->stop)
            break;
        pthread_cond_wait(&db->cv_work, &db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

int dbf_writer_start(store_dbfile *db)
{
    if (pthread_create(&db->completer, NULL, dbf_completer_main, db))
        return DV_ERR_NOMEM;
    db->completer_started = 1;
    if (pthread_create(&db->syncer, NULL, dbf_syncer_main, db)) {
        dbf_writer_stop(db);
        return DV_ERR_NOMEM;
    }
    db->syncer_started = 1;
    if (pthread_create(&db->writer, NULL, writer_main, db)) {
        dbf_writer_stop(db);
        return DV_ERR_NOMEM;
    }
    db->writer_started = 1;
    return DV_OK;
}

/* Sets *flag under db->mu, wakes cv and joins the thread if it runs. */
static void stop_thread(store_dbfile *db, int *flag, pthread_cond_t *cv, pthread_t th, int *started)
{
    pthread_mutex_lock(&db->mu);
    *flag = 1;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(&db->mu);
    if (*started)
        pthread_join(th, NULL);
    *started = 0;
}

/* In order: the writer drains the queue and hands everything over, the
 * syncer syncs it, the completer completes it. */
void dbf_writer_stop(store_dbfile *db)
{
    stop_thread(db, &db->stop, &db->cv_work, db->writer, &db->writer_started);
    stop_thread(db, &db->syncer_stop, &db->cv_sync, db->syncer, &db->syncer_started);
    stop_thread(db, &db->completer_stop, &db->cv_comp, db->completer, &db->completer_started);
}

void dbf_writer_pause(store_dbfile *db)
{
    pthread_mutex_lock(&db->mu);
    db->pause_req = 1;
    pthread_cond_broadcast(&db->cv_work);
    pthread_cond_broadcast(&db->cv_sync);
    while (!db->paused)
        pthread_cond_wait(&db->cv_done, &db->mu);
    pthread_mutex_unlock(&db->mu);
}

void dbf_writer_resume(store_dbfile *db)
{
    pthread_mutex_lock(&db->mu);
    db->pause_req = 0;
    pthread_cond_broadcast(&db->cv_work);
    pthread_mutex_unlock(&db->mu);
}

/* ---- work shared with the caller ---------------------------------------- */

void dbf_prep_free(dbf_item *it)
{
    if (!it->prep)
        return;
    for (size_t i = 0; i < it->nprep; i++) {
        buf_free(&it->prep[i].zbody);
        free(it->prep[i].digests);
    }
    free(it->prep);
    it->prep = NULL;
}

void dbf_item_release(dbf_item *it)
{
    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1) {
        dbf_prep_free(it);
        free(it);
    }
}

/* Compression, attachment digests and the rev id of an edit depend only on
 * the update itself (and on the parent it names, or none), so any thread
 * can compute them (one dbf_prep per doc).  The writer thread is the serial
 * part of group commit, and LZ4 and MD5 were a third of its instructions
 * per 1 KiB document, more than half with the rest optimised.  So the
 * caller does them: it queues its write first, then prepares its docs from
 * the last one down, while the writer applies them from the first one up
 * and prepares itself any doc the caller has not claimed yet.  Each doc is
 * claimed once (compare-and-swap on its state); the writer waits only for a
 * doc the caller is preparing at that moment.  So a single caller's batch of
 * 1,000 is prepared by both threads at once; a write of a few docs is
 * prepared before it is queued (see store_dbfile_write).  The
 * writer checks that the parent it finds is the one assumed (apply_doc) and
 * falls back to computing when not, or when the edit has stubs (their
 * digests come from the parent revision). */
static void prep_one(store_dbfile *db, const store_doc_update *u, dbf_prep *p)
{
    int stubs = 0;
    if ((u->body_len && !u->body) || (u->natts && !u->atts))
        return; /* invalid: the writer says so */
    if (dbf_body_compress(db->compression, u->body, u->body_len, &p->zbody) != DV_OK) {
        buf_free(&p->zbody);
        return;
    }
    if (u->natts && !(p->digests = calloc(u->natts, sizeof *p->digests)))
        return;
    for (size_t k = 0; k < u->natts; k++) {
        if (!u->atts[k].name || u->atts[k].stub)
            stubs = 1;
        else
            dbf_md5_digest(u->atts[k].data, u->atts[k].len, p->digests[k]);
    }
    if (u->mode != STORE_EDIT || stubs)
        return;
    const char *dig[16];
    const char **digests = u->natts <= 16 ? dig : malloc(u->natts * sizeof *digests);
    if (!digests)
        return;
    for (size_t k = 0; k < u->natts; k++)
        digests[k] = p->digests[k];
    revtree_compute_rev_id(u->deleted, u->has_parent ? &u->parent : NULL, u->body, u->body_len, digests, u->natts,
                           p->rid);
    p->has_rid = 1;
    if (digests != dig)
        free(digests);
}

enum { PREP_SHARED_MIN = 16 }; /* docs in a write worth sharing its work */

/* Allocates it->prep, every doc to do; 0 when out of memory (no prep: the
 * writer does the work). */
static int prep_alloc(dbf_item *it)
{
    if (!it->w->ndocs || !(it->prep = calloc(it->w->ndocs, sizeof *it->prep)))
        return 0;
    it->nprep = it->w->ndocs;
    return 1;
}

/* The caller's share, from the last doc down to the first the writer has
 * claimed (all of them when not queued yet).  The item must outlive the
 * loop: a blocking caller owns it, an async caller holds a reference. */
static void prep_by_caller(store_dbfile *db, dbf_item *it)
{
    for (size_t i = it->nprep; i-- > 0;) {
        int todo = DBF_PREP_TODO;
        if (!atomic_compare_exchange_strong(&it->prep[i].state, &todo, DBF_PREP_CALLER))
            break; /* the writer got here: it does the rest */
        prep_one(db, &it->w->docs[i], &it->prep[i]);
        atomic_store_explicit(&it->prep[i].state, DBF_PREP_DONE, memory_order_release);
    }
}

/* The writer's claim on a doc's prep: 1 when it took the doc (it prepares
 * it, or leaves it), 0 when the caller did, after waiting out a caller
 * still on this very doc (microseconds). */
static int prep_claim(dbf_prep *p)
{
    int st = DBF_PREP_TODO;
    if (atomic_compare_exchange_strong(&p->state, &st, DBF_PREP_WRITER))
        return 1;
    while (st == DBF_PREP_CALLER) {
        sched_yield();
        st = atomic_load_explicit(&p->state, memory_order_acquire);
    }
    return 0;
}

/* The writer's view of doc i's prep: computed by the caller, or now. */
static const dbf_prep *prep_for_writer(store_dbfile *db, dbf_item *it, size_t i)
{
    if (!it->prep)
        return NULL;
    dbf_prep *p = &it->prep[i];
    if (prep_claim(p))
        prep_one(db, &it->w->docs[i], p);
    return p;
}

/* Before an async item's done runs: takes every doc the caller has not
 * claimed yet (a group that failed early never looked at them) and waits
 * out the one it is preparing, so that the caller's prep_by_caller stops at
 * its next compare-and-swap and never reads w, which done may free. */
void dbf_prep_settle(dbf_item *it)
{
    for (size_t i = 0; it->prep && i < it->nprep; i++)
        (void)prep_claim(&it->prep[i]);
}

static int enqueue(store_dbfile *db, dbf_item *it)
{
    int async = it->done != NULL; /* read now: once queued, an async item may be freed */
    pthread_mutex_lock(&db->mu);
    int stopped = db->stop;
    if (!stopped) {
        it->next = NULL;
        it->group = db->groups_taken + 1;
        if (db->qtail)
            db->qtail->next = it;
        else
            db->qhead = it;
        db->qtail = it;
        atomic_fetch_add_explicit(&db->queued, 1, memory_order_release);
    }
    /* A blocking caller waits for its item, so db outlives the signal sent
     * after unlocking (the writer need not wake into a held mutex).  An
     * async item may be completed at once and its done may let db go:
     * signalled under the lock. */
    if (!stopped && async)
        pthread_cond_signal(&db->cv_work);
    pthread_mutex_unlock(&db->mu);
    if (!stopped && !async)
        pthread_cond_signal(&db->cv_work);
    return stopped ? DV_ERR_CLOSED : DV_OK;
}

int store_dbfile_write(store_dbfile *db, store_write *w)
{
    dbf_item it;
    memset(&it, 0, sizeof it);
    it.w = w;
    atomic_init(&it.finished, 0);
    /* A small write is prepared before it is queued: the writer may take
     * it at once, and a doc it found unclaimed it would prepare itself, on
     * the serial path that many concurrent writers share (measured: 64
     * writers of one doc each lost a third of their rate that way).  A big
     * one is queued first and shared. */
    int prep = prep_alloc(&it), shared = prep && it.nprep >= PREP_SHARED_MIN;
    if (prep && !shared)
        prep_by_caller(db, &it);
    int rc = enqueue(db, &it);
    if (!rc && shared)
        prep_by_caller(db, &it);
    if (!rc) {
        _Atomic uint32_t *word = &db->wake[it.group % DBF_WAKE_WORDS];
        for (;;) {
            uint32_t v = atomic_load_explicit(word, memory_order_acquire);
            if (atomic_load_explicit(&it.finished, memory_order_acquire))
                break;
            dbf_futex_wait(word, v);
        }
    }
    dbf_prep_free(&it);
    return rc ? rc : it.status;
}

int store_dbfile_write_async(store_dbfile *db, store_write *w, store_write_done done, void *arg)
{
    if (!done)
        return DV_ERR_INVALID;
    dbf_item *it = calloc(1, sizeof *it);
    if (!it)
        return DV_ERR_NOMEM;
    it->w = w;
    it->done = done;
    it->arg = arg;
    /* As store_dbfile_write: a big write is queued first and its docs
     * prepared by both threads.  The writer may complete the item while
     * this thread is still in prep_by_caller (dbf_prep_settle first takes
     * the docs the caller has not claimed, so its last step only reads a
     * claimed state), so the caller holds a reference until it is done.
     * Prepared in full before queueing, the HTTP layer's 1,000-doc
     * _bulk_docs kept the writer idle for the 3-6 ms of LZ4 and MD5 before
     * it could start (measured with timestamps per batch). */
    int prep = prep_alloc(it), shared = prep && it->nprep >= PREP_SHARED_MIN;
    if (prep && !shared)
        prep_by_caller(db, it);
    atomic_init(&it->refs, shared ? 2 : 1);
    int rc = enqueue(db, it);
    if (rc) {
        dbf_prep_free(it);
        free(it);
        return rc;
    }
    if (shared) {
        prep_by_caller(db, it);
        dbf_item_release(it);
    }
    return DV_OK;
}
