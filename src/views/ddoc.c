/*
 * ddoc.c — design documents' views, their shape rules (CouchDB's
 * couch_mrview:validate_ddoc_fields) and view signatures (see ddoc.h).
 */
#include "base/digest.h"
#include "views/ddoc.h"

#include "base/status.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

void view_group_free(view_group *g)
{
    for (size_t i = 0; i < g->nviews; i++) {
        free(g->views[i].name);
        free(g->views[i].map);
        free(g->views[i].reduce);
    }
    free(g->views);
    free(g->ddoc_id);
    free(g->language);
    free(g->lib);
    memset(g, 0, sizeof *g);
}

static char *dup_json_str(const json_val *v)
{
    size_t n;
    const char *s = json_str(v, &n);
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

static int type_error(db_err *e, const char *path, const char *type)
{
    db_err_set(e, 400, "invalid_design_doc", "`%s` field must have %s type", path, type);
    return DV_ERR_INVALID;
}

/* The top-level members CouchDB checks the type of. */
static int check_fields(const json_val *ddoc, db_err *e)
{
    static const struct {
        const char *name;
        int want; /* JSON type, or -1: object or string members */
    } top[] = {{"filters", JSON_OBJECT},  {"language", JSON_STRING},  {"lists", JSON_OBJECT},
               {"options", JSON_OBJECT},  {"shows", JSON_OBJECT},     {"updates", JSON_OBJECT},
               {"validate_doc_update", JSON_STRING}, {"views", JSON_OBJECT}};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        const json_val *v = json_object_get_cstr(ddoc, top[i].name);
        if (v && json_typeof(v) != (json_type)top[i].want)
            return type_error(e, top[i].name, top[i].want == JSON_OBJECT ? "object" : "string");
    }
    const json_val *rw = json_object_get_cstr(ddoc, "rewrites");
    if (rw && !json_is_string(rw) && !json_is_array(rw))
        return type_error(e, "rewrites", "string or array");
    static const char *const fn_maps[] = {"filters", "lists", "shows", "updates"};
    for (size_t i = 0; i < 4; i++) {
        const json_val *m = json_object_get_cstr(ddoc, fn_maps[i]);
        json_iter it = json_iter_begin(m ? m : ddoc);
        const json_val *k, *v;
        while (m && json_iter_member(&it, &k, &v)) {
            if (!json_is_object(v) && !json_is_string(v)) {
                size_t kl;
                const char *ks = json_str(k, &kl);
                db_err_set(e, 400, "invalid_design_doc", "`%s.%.*s` field must have object or string type",
                           fn_maps[i], (int)(kl > 80 ? 80 : kl), ks);
                return DV_ERR_INVALID;
            }
        }
    }
    return DV_OK;
}

/* MD5 hex over (language, map, reduce, options that matter, lib). */
static int view_sig(const view_group *g, const view_def *v, char out[33])
{
    unsigned char md[16];
    unsigned int mdlen = 0;
    static const char sep = 0;
    const char *parts[] = {g->language, v->map, v->reduce ? v->reduce : "", g->lib ? g->lib : ""};
    unsigned char opts[3] = {(unsigned char)g->include_design, (unsigned char)g->local_seq, (unsigned char)g->raw};
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_md5(), NULL) == 1;
    for (size_t i = 0; ok && i < 4; i++)
        ok = EVP_DigestUpdate(c, parts[i], strlen(parts[i])) == 1 && EVP_DigestUpdate(c, &sep, 1) == 1;
    ok = ok && EVP_DigestUpdate(c, opts, sizeof opts) == 1 && EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen == 16;
    EVP_MD_CTX_free(c);
    if (!ok) /* a signature shared by accident would share an index: fail */
        return DV_ERR_NOMEM;
    dv_hex_lower(md, 16, out);
    return DV_OK;
}

int view_group_from_ddoc(const json_val *ddoc, view_group *g, db_err *e)
{
    memset(g, 0, sizeof *g);
    int rc = DV_ERR_INVALID;
    if (!json_is_object(ddoc)) {
        db_err_set(e, 400, "bad_request", "Document must be a JSON object");
        return DV_ERR_INVALID;
    }
    if ((rc = check_fields(ddoc, e)) != DV_OK)
        return rc;
    const json_val *id = json_object_get_cstr(ddoc, "_id");
    const json_val *lang = json_object_get_cstr(ddoc, "language");
    const json_val *opts = json_object_get_cstr(ddoc, "options");
    const json_val *views = json_object_get_cstr(ddoc, "views");
    rc = DV_ERR_NOMEM;
    if (!(g->ddoc_id = id && json_is_string(id) ? dup_json_str(id) : strdup("")) ||
        !(g->language = lang ? dup_json_str(lang) : strdup("javascript")))
        goto fail;
    if (opts) {
        const json_val *x;
        g->include_design = (x = json_object_get_cstr(opts, "include_design")) && json_is_true(x);
        g->local_seq = (x = json_object_get_cstr(opts, "local_seq")) && json_is_true(x);
        g->raw = (x = json_object_get_cstr(opts, "collation")) && json_str_eq(x, "raw");
    }
    if (!views)
        return DV_OK;
    const json_val *lib = json_object_get_cstr(views, "lib");
    if (lib) {
        if (!json_is_object(lib)) {
            rc = type_error(e, "views.lib", "object");
            goto fail;
        }
        buf_t b = BUF_INIT;
        if (json_serialize(lib, &b) != DV_OK || buf_append_byte(&b, 0) != DV_OK) {
            buf_free(&b);
            goto fail;
        }
        g->lib = (char *)b.data;
    }
    if (!(g->views = calloc(json_len(views) + 1, sizeof *g->views)))
        goto fail;
    json_iter it = json_iter_begin(views);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v)) {
        size_t kl;
        const char *ks = json_str(k, &kl);
        if (kl == 3 && !memcmp(ks, "lib", 3))
            continue;
        if (!json_is_object(v)) {
            db_err_set(e, 400, "invalid_design_doc", "`views.%.*s` field must have object type",
                       (int)(kl > 80 ? 80 : kl), ks);
            rc = DV_ERR_INVALID;
            goto fail;
        }
        const json_val *map = json_object_get_cstr(v, "map"), *red = json_object_get_cstr(v, "reduce");
        if (map && !json_is_string(map)) {
            db_err_set(e, 400, "invalid_design_doc", "`views.%.*s.map` field must have string type",
                       (int)(kl > 80 ? 80 : kl), ks);
            rc = DV_ERR_INVALID;
            goto fail;
        }
        if (red && !json_is_string(red)) {
            db_err_set(e, 400, "invalid_design_doc", "`views.%.*s.reduce` field must have string type",
                       (int)(kl > 80 ? 80 : kl), ks);
            rc = DV_ERR_INVALID;
            goto fail;
        }
        if (!map) {
            db_err_set(e, 400, "invalid_design_doc", "View `%.*s` must contain map function", (int)(kl > 80 ? 80 : kl),
                       ks);
            rc = DV_ERR_INVALID;
            goto fail;
        }
        view_def *d = &g->views[g->nviews++];
        rc = DV_ERR_NOMEM;
        if (!(d->name = dup_json_str(k)) || !(d->map = dup_json_str(map)) || (red && !(d->reduce = dup_json_str(red))))
            goto fail;
        d->rkind = VIEW_REDUCE_NONE;
        if (red) {
            size_t rl;
            const char *rs = json_str(red, &rl);
            int kind = view_reduce_kind_of(rs, rl);
            if (kind < 0) {
                db_err_set(e, 400, "invalid_design_doc", "`%.*s` is not a supported reduce function.",
                           (int)(rl > 80 ? 80 : rl), rs);
                rc = DV_ERR_INVALID;
                goto fail;
            }
            d->rkind = (view_reduce_kind)kind;
        }
    }
    for (size_t i = 0; i < g->nviews; i++)
        if ((rc = view_sig(g, &g->views[i], g->views[i].sig)) != DV_OK)
            goto fail;
    return DV_OK;
fail:
    view_group_free(g);
    return rc;
}

const view_def *view_group_find(const view_group *g, const char *name, size_t n)
{
    for (size_t i = 0; i < g->nviews; i++)
        if (strlen(g->views[i].name) == n && !memcmp(g->views[i].name, name, n))
            return &g->views[i];
    return NULL;
}
