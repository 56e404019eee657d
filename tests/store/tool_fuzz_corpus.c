/*
 * tool_fuzz_corpus.c — writes the seed corpus of fuzz_dbfile_open: a few
 * small valid database files covering every structure a reader decodes
 * (docs with conflicts, deleted docs, attachments spanning chunks, stubs,
 * local docs, a purge, a security object, a compacted file).
 *
 *   build/tool_fuzz_corpus fuzz/corpus/fuzz_dbfile_open
 *
 * Each file stays well under 64 KiB so that libFuzzer mutates it quickly.
 */
#include "base/status.h"
#include "store/dbfile.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int put(store_dbfile *db, const char *id, const char *parent, int deleted, const char *body,
               const store_att_in *atts, size_t natts, store_rev *out)
{
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)id;
    u.idlen = strlen(id);
    u.mode = STORE_EDIT;
    if (parent) {
        u.has_parent = 1;
        if (store_rev_parse(parent, strlen(parent), &u.parent) != DV_OK)
            return DV_ERR_INVALID;
    }
    u.deleted = deleted;
    u.body = (const uint8_t *)body;
    u.body_len = strlen(body);
    u.atts = atts;
    u.natts = natts;
    store_write w;
    memset(&w, 0, sizeof w);
    w.docs = &u;
    w.ndocs = 1;
    int rc = store_dbfile_write(db, &w);
    if (rc == DV_OK)
        rc = u.status;
    if (rc == DV_OK && out)
        *out = u.rev;
    return rc;
}

static int replicate(store_dbfile *db, const char *id, const char *leaf, const char *parent, const char *body)
{
    store_rev path[2];
    if (store_rev_parse(leaf, strlen(leaf), &path[0]) != DV_OK ||
        store_rev_parse(parent, strlen(parent), &path[1]) != DV_OK)
        return DV_ERR_INVALID;
    store_doc_update u;
    memset(&u, 0, sizeof u);
    u.id = (const uint8_t *)id;
    u.idlen = strlen(id);
    u.mode = STORE_REPLICATE;
    u.path = path;
    u.path_len = 2;
    u.body = (const uint8_t *)body;
    u.body_len = strlen(body);
    store_write w;
    memset(&w, 0, sizeof w);
    w.docs = &u;
    w.ndocs = 1;
    int rc = store_dbfile_write(db, &w);
    return rc == DV_OK ? u.status : rc;
}

static int make_db(const char *dir, const char *name, int compression, int rich, int compact)
{
    char path[4096], rs[96];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    store_dbfile_options o;
    memset(&o, 0, sizeof o);
    o.create = 1;
    o.compression = compression;
    store_dbfile *db = NULL;
    int rc = store_dbfile_open(path, &o, &db);
    if (rc != DV_OK)
        return rc;
    store_rev r;
    buf_t b = BUF_INIT;
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + i / 300);
    if ((rc = put(db, "a", NULL, 0, "{\"x\":1}", NULL, 0, &r)) != DV_OK)
        goto done;
    if (rich) {
        store_att_in att[2];
        memset(att, 0, sizeof att);
        att[0].name = "small.txt";
        att[0].type = "text/plain";
        att[0].data = (const uint8_t *)"hello";
        att[0].len = 5;
        att[1].name = "big.bin";
        att[1].type = "application/octet-stream";
        att[1].data = big;
        att[1].len = sizeof big;
        buf_reset(&b);
        if ((rc = store_rev_format(&r, &b)) != DV_OK || (rc = buf_append_byte(&b, 0)) != DV_OK)
            goto done;
        snprintf(rs, sizeof rs, "%s", (const char *)b.data);
        if ((rc = put(db, "a", rs, 0, "{\"x\":2,\"atts\":true}", att, 2, &r)) != DV_OK)
            goto done;
        att[0].stub = 1;
        att[0].data = NULL;
        att[0].len = 0;
        buf_reset(&b);
        if ((rc = store_rev_format(&r, &b)) != DV_OK || (rc = buf_append_byte(&b, 0)) != DV_OK)
            goto done;
        snprintf(rs, sizeof rs, "%s", (const char *)b.data);
        if ((rc = put(db, "a", rs, 0, "{\"x\":3}", att, 1, NULL)) != DV_OK)
            goto done;
        if ((rc = put(db, "gone", NULL, 0, "{}", NULL, 0, &r)) != DV_OK)
            goto done;
        buf_reset(&b);
        if ((rc = store_rev_format(&r, &b)) != DV_OK || (rc = buf_append_byte(&b, 0)) != DV_OK)
            goto done;
        snprintf(rs, sizeof rs, "%s", (const char *)b.data);
        if ((rc = put(db, "gone", rs, 1, "{}", NULL, 0, NULL)) != DV_OK)
            goto done;
        /* A conflict: two replicated branches from one ancestor. */
        if ((rc = replicate(db, "c", "2-bbbb", "1-aaaa", "{\"side\":\"b\"}")) != DV_OK ||
            (rc = replicate(db, "c", "2-cccc", "1-aaaa", "{\"side\":\"c\"}")) != DV_OK)
            goto done;
        store_local_update lu;
        memset(&lu, 0, sizeof lu);
        lu.id = (const uint8_t *)"_local/chk";
        lu.idlen = 10;
        lu.body = (const uint8_t *)"{\"last_seq\":\"7\"}";
        lu.body_len = strlen((const char *)lu.body);
        store_rev pr;
        uint8_t purged[1];
        store_purge pu;
        memset(&pu, 0, sizeof pu);
        if ((rc = store_rev_parse("2-cccc", 6, &pr)) != DV_OK)
            goto done;
        pu.id = (const uint8_t *)"c";
        pu.idlen = 1;
        pu.revs = &pr;
        pu.nrevs = 1;
        pu.purged = purged;
        store_write w;
        memset(&w, 0, sizeof w);
        w.locals = &lu;
        w.nlocals = 1;
        w.purges = &pu;
        w.npurges = 1;
        w.set_security = 1;
        w.security = (const uint8_t *)"{\"admins\":{\"names\":[\"x\"]}}";
        w.security_len = strlen((const char *)w.security);
        w.set_revs_limit = 1;
        w.revs_limit = 20;
        if ((rc = store_dbfile_write(db, &w)) != DV_OK)
            goto done;
    }
    if (compact && (rc = store_dbfile_compact(db, NULL, NULL)) != DV_OK)
        goto done;
done:
    buf_free(&b);
    int rc2 = store_dbfile_close(db);
    if (rc == DV_OK)
        rc = rc2;
    if (rc != DV_OK)
        fprintf(stderr, "tool_fuzz_corpus: %s: %s\n", path, dv_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    if (make_db(argv[1], "tiny.couch", STORE_COMPRESS_NONE, 0, 0) != DV_OK ||
        make_db(argv[1], "rich.couch", STORE_COMPRESS_LZ4, 1, 0) != DV_OK ||
        make_db(argv[1], "compacted.couch", STORE_COMPRESS_ZSTD, 1, 1) != DV_OK)
        return 1;
    return 0;
}
