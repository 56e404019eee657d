/*
 * query_args.c — CouchDB's view query parameters (see query_args.h).
 *
 * Error texts follow couch_mrview_http and couch_mrview_util, including
 * how Erlang prints the offending value: ~p of a URL value (a byte list)
 * is "text" in double quotes when every byte is printable ASCII, else the
 * list of byte values; a decoded JSON string prints as <<"text">> and a
 * number as written.
 *
 * Nothing here allocates per parameter beyond the owned copies of keys and
 * doc ids; a whole request's parsing is O(parameter bytes).
 */
#include "http/query_args.h"

#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void key_init(query_key *k)
{
    k->set = 0;
    k->is_string = 0;
    buf_init(&k->json);
    buf_init(&k->str);
}

static void key_free(query_key *k)
{
    buf_free(&k->json);
    buf_free(&k->str);
    key_init(k);
}

void query_args_init(query_args *a)
{
    memset(a, 0, sizeof *a);
    key_init(&a->start_key);
    key_init(&a->end_key);
    buf_init(&a->keys);
    buf_init(&a->start_docid);
    buf_init(&a->end_docid);
    a->inclusive_end = 1;
    a->limit = UINT64_MAX;
    a->conflicts = -1;
    a->reduce = -1;
    a->group = -1;
    a->group_level = -1;
    a->sorted = 1;
    a->update = QUERY_UPDATE_TRUE;
}

void query_args_free(query_args *a)
{
    key_free(&a->start_key);
    key_free(&a->end_key);
    buf_free(&a->keys);
    buf_free(&a->start_docid);
    buf_free(&a->end_docid);
    query_args_init(a);
}

static int copy_buf(buf_t *dst, const buf_t *src)
{
    return src->len ? buf_append(dst, src->data, src->len) : DV_OK;
}

int query_args_copy(query_args *dst, const query_args *src)
{
    query_args_init(dst);
    query_args tmp = *src; /* the scalars; every buffer of dst stays its own */
    tmp.start_key = dst->start_key;
    tmp.end_key = dst->end_key;
    tmp.keys = dst->keys;
    tmp.start_docid = dst->start_docid;
    tmp.end_docid = dst->end_docid;
    *dst = tmp;
    dst->start_key.set = src->start_key.set;
    dst->start_key.is_string = src->start_key.is_string;
    dst->end_key.set = src->end_key.set;
    dst->end_key.is_string = src->end_key.is_string;
    if (copy_buf(&dst->start_key.json, &src->start_key.json) != DV_OK ||
        copy_buf(&dst->start_key.str, &src->start_key.str) != DV_OK ||
        copy_buf(&dst->end_key.json, &src->end_key.json) != DV_OK ||
        copy_buf(&dst->end_key.str, &src->end_key.str) != DV_OK || copy_buf(&dst->keys, &src->keys) != DV_OK ||
        copy_buf(&dst->start_docid, &src->start_docid) != DV_OK ||
        copy_buf(&dst->end_docid, &src->end_docid) != DV_OK) {
        query_args_free(dst);
        return DV_ERR_NOMEM;
    }
    return DV_OK;
}

void query_args_new_query(query_args *a)
{
    a->has_keys = 0;
    buf_free(&a->keys);
    a->group = -1;
    a->group_level = -1;
}

/* ---- errors ------------------------------------------------------------ */

static int parse_error(db_err *e, const char *reason)
{
    db_err_set(e, 400, "query_parse_error", "%s", reason);
    return DV_ERR_INVALID;
}

/* Appends s to out[0..cap), truncating; returns the new length. */
static size_t append_trunc(char *out, size_t cap, size_t k, const char *s)
{
    size_t n = strlen(s);
    if (k + n >= cap)
        n = cap - 1 - k;
    memcpy(out + k, s, n);
    out[k + n] = 0;
    return k + n;
}

/* Erlang's ~p of a value: a URL value is a byte list ("text" or [1,2]),
 * a decoded string a binary (<<"text">> or <<1,2>>).  cap >= 1; long
 * values are cut (reasons stay short). */
static void erl_repr(char *out, size_t cap, const char *p, size_t n, int binary)
{
    int printable = 1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 32 || (unsigned char)p[i] > 126)
            printable = 0;
    size_t k = append_trunc(out, cap, 0, binary ? "<<" : printable ? "" : "[");
    k = append_trunc(out, cap, k, printable ? "\"" : "");
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        char item[8];
        if (!printable)
            snprintf(item, sizeof item, "%s%u", i ? "," : "", (unsigned char)p[i]);
        else if (p[i] == '"' || p[i] == '\\')
            snprintf(item, sizeof item, "\\%c", p[i]);
        else
            snprintf(item, sizeof item, "%c", p[i]);
        k = append_trunc(out, cap, k, item);
    }
    k = append_trunc(out, cap, k, printable ? "\"" : "");
    append_trunc(out, cap, k, binary ? ">>" : printable ? "" : "]");
}

/* The printed form of a decoded value for an error reason. */
static void json_repr(char *out, size_t cap, const json_val *v)
{
    size_t n;
    const char *s = json_str(v, &n);
    if (json_is_string(v)) {
        erl_repr(out, cap, s, n, 1);
        return;
    }
    buf_t b = BUF_INIT;
    if (json_serialize(v, &b) == DV_OK && b.len)
        snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    else
        snprintf(out, cap, "?");
    buf_free(&b);
    /* A cut inside a UTF-8 sequence would make the reason invalid UTF-8:
     * drop the partial sequence. */
    size_t k = strlen(out), i = k;
    while (i > 0 && ((unsigned char)out[i - 1] & 0xc0) == 0x80)
        i--;
    if (i > 0 && (unsigned char)out[i - 1] >= 0xc0) {
        unsigned char lead = (unsigned char)out[i - 1];
        size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (k - (i - 1) < want)
            out[i - 1] = 0;
    }
}

static int value_error(db_err *e, const char *what, const char *repr)
{
    db_err_set(e, 400, "query_parse_error", "%s: %s", what, repr);
    return DV_ERR_INVALID;
}

/* ---- value parsers --------------------------------------------------------- */

/* couch_mrview_http:parse_boolean on URL text: "true"/"false", any case. */
static int text_bool(const char *v, size_t n, int *out, db_err *e)
{
    if (n == 4 && !strncasecmp(v, "true", 4))
        *out = 1;
    else if (n == 5 && !strncasecmp(v, "false", 5))
        *out = 0;
    else {
        char repr[120];
        erl_repr(repr, sizeof repr, v, n, 0);
        return value_error(e, "Invalid boolean parameter", repr);
    }
    return DV_OK;
}

/* Erlang's list_to_integer: optional sign, then decimal digits; the value
 * saturates at UINT64_MAX (Erlang integers are unbounded).  Then >= 0. */
static int text_pos_int(const char *v, size_t n, uint64_t *out, db_err *e)
{
    size_t i = 0;
    int neg = 0;
    if (n && (v[0] == '+' || v[0] == '-'))
        neg = v[i++] == '-';
    uint64_t x = 0;
    int ok = i < n;
    for (; i < n && ok; i++) {
        if (v[i] < '0' || v[i] > '9')
            ok = 0;
        else
            x = x > (UINT64_MAX - 9) / 10 ? UINT64_MAX : x * 10 + (uint64_t)(v[i] - '0');
    }
    char repr[120];
    erl_repr(repr, sizeof repr, v, n, 0);
    if (!ok)
        return value_error(e, "Invalid value for integer", repr);
    if (neg && x)
        return value_error(e, "Invalid value for positive integer", repr);
    *out = x;
    return DV_OK;
}

/* parse_boolean on a decoded value: true/false or the strings. */
static int json_bool(const json_val *v, int *out, db_err *e)
{
    if (json_is_bool(v)) {
        *out = json_is_true(v);
        return DV_OK;
    }
    size_t n;
    const char *s = json_str(v, &n);
    if (json_is_string(v) && ((n == 4 && !strncasecmp(s, "true", 4)) || (n == 5 && !strncasecmp(s, "false", 5)))) {
        *out = n == 4;
        return DV_OK;
    }
    char repr[120];
    json_repr(repr, sizeof repr, v);
    return value_error(e, "Invalid boolean parameter", repr);
}

/* parse_pos_int on a decoded value: a JSON integer >= 0. */
static int json_pos_int(const json_val *v, uint64_t *out, db_err *e)
{
    char repr[120];
    size_t n;
    const char *s = json_str(v, &n);
    json_repr(repr, sizeof repr, v);
    if (!json_is_number(v) || memchr(s, '.', n) || memchr(s, 'e', n) || memchr(s, 'E', n))
        return value_error(e, "Invalid value for integer", repr);
    uint64_t x;
    if (s[0] == '-') {
        if (text_pos_int(s, n, &x, e) != DV_OK || x)
            return value_error(e, "Invalid value for positive integer", repr);
    } else if (text_pos_int(s, n, &x, e) != DV_OK) {
        return value_error(e, "Invalid value for integer", repr);
    }
    *out = x;
    return DV_OK;
}

/* Stores a decoded value as a key. */
static int set_key(query_key *k, const json_val *v)
{
    buf_reset(&k->json);
    buf_reset(&k->str);
    k->set = 1;
    k->is_string = json_is_string(v);
    int rc = json_serialize(v, &k->json);
    if (rc == DV_OK && k->is_string) {
        size_t n;
        const char *s = json_str(v, &n);
        rc = n ? buf_append(&k->str, s, n) : DV_OK;
    }
    return rc;
}

/* A doc id parameter: URL text as is; a decoded string's bytes, any other
 * value its JSON text (couch_util:to_binary). */
static int set_docid(buf_t *b, int *has, const char *p, size_t n)
{
    buf_reset(b);
    *has = 1;
    return n ? buf_append(b, p, n) : DV_OK;
}

static int set_docid_json(buf_t *b, int *has, const json_val *v)
{
    size_t n;
    const char *s = json_str(v, &n);
    if (json_is_string(v))
        return set_docid(b, has, s, n);
    buf_reset(b);
    *has = 1;
    return json_serialize(v, b);
}

/* ---- parameters ------------------------------------------------------------------ */

enum {
    P_KEY, P_KEYS, P_START, P_END, P_START_DOCID, P_END_DOCID, P_LIMIT, P_SKIP, P_DESC, P_INCL_END,
    P_INCLUDE_DOCS, P_CONFLICTS, P_ATTS, P_ATT_ENC, P_UPDATE_SEQ, P_REDUCE, P_GROUP, P_GROUP_LEVEL,
    P_SORTED, P_STALE, P_STABLE, P_UPDATE, P_PARTITION, P_NONE
};

static const struct {
    const char *name;
    int id;
} params[] = {
    {"key", P_KEY},
    {"keys", P_KEYS},
    {"startkey", P_START},
    {"start_key", P_START},
    {"endkey", P_END},
    {"end_key", P_END},
    {"startkey_docid", P_START_DOCID},
    {"start_key_doc_id", P_START_DOCID},
    {"endkey_docid", P_END_DOCID},
    {"end_key_doc_id", P_END_DOCID},
    {"limit", P_LIMIT},
    {"skip", P_SKIP},
    {"descending", P_DESC},
    {"inclusive_end", P_INCL_END},
    {"include_docs", P_INCLUDE_DOCS},
    {"conflicts", P_CONFLICTS},
    {"attachments", P_ATTS},
    {"att_encoding_info", P_ATT_ENC},
    {"update_seq", P_UPDATE_SEQ},
    {"reduce", P_REDUCE},
    {"group", P_GROUP},
    {"group_level", P_GROUP_LEVEL},
    {"sorted", P_SORTED},
    {"stale", P_STALE},
    {"stable", P_STABLE},
    {"update", P_UPDATE},
    {"partition", P_PARTITION},
};

static int param_id(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (strlen(params[i].name) == n && !memcmp(params[i].name, name, n))
            return params[i].id;
    return P_NONE;
}

/* The flag a boolean parameter sets, or NULL. */
static int *bool_field(query_args *a, int id)
{
    switch (id) {
    case P_DESC: return &a->descending;
    case P_INCL_END: return &a->inclusive_end;
    case P_INCLUDE_DOCS: return &a->include_docs;
    case P_CONFLICTS: return &a->conflicts;
    case P_ATTS: return &a->attachments;
    case P_ATT_ENC: return &a->att_encoding_info;
    case P_UPDATE_SEQ: return &a->update_seq;
    case P_REDUCE: return &a->reduce;
    case P_GROUP: return &a->group;
    case P_SORTED: return &a->sorted;
    default: return NULL;
    }
}

static void set_int(query_args *a, int id, uint64_t x)
{
    if (id == P_LIMIT)
        a->limit = x;
    else if (id == P_SKIP)
        a->skip = x;
    else
        a->group_level = x > INT32_MAX ? INT32_MAX : (long long)x;
}

/* stale / stable / update take words, not booleans; v is the text (for a
 * decoded value: a string's bytes, or "true"/"false" for booleans). */
static int set_word(query_args *a, int id, const char *v, size_t n, db_err *e)
{
#define IS(w) (n == sizeof(w) - 1 && !memcmp(v, w, n))
    switch (id) {
    case P_STALE:
        if (IS("ok")) {
            a->stable = 1;
            a->update = QUERY_UPDATE_FALSE;
        } else if (IS("update_after")) {
            a->stable = 1;
            a->update = QUERY_UPDATE_LAZY;
        } else {
            return parse_error(e, "Invalid value for `stale`.");
        }
        return DV_OK;
    case P_STABLE:
        if (!IS("true") && !IS("false"))
            return parse_error(e, "Invalid value for `stable`.");
        a->stable = IS("true");
        return DV_OK;
    default: /* P_UPDATE */
        if (IS("true"))
            a->update = QUERY_UPDATE_TRUE;
        else if (IS("false"))
            a->update = QUERY_UPDATE_FALSE;
        else if (IS("lazy"))
            a->update = QUERY_UPDATE_LAZY;
        else
            return parse_error(e, "Invalid value for `update`.");
        return DV_OK;
    }
#undef IS
}

static int nomem(int rc, db_err *e)
{
    if (rc == DV_ERR_NOMEM)
        db_err_set(e, 500, "error", "out of memory");
    return rc;
}

int query_args_set_json(query_args *a, const char *name, size_t nlen, const json_val *v, db_err *e)
{
    int id = param_id(name, nlen), *flag = bool_field(a, id), rc = DV_OK;
    uint64_t x;
    if (flag)
        return json_bool(v, flag, e);
    switch (id) {
    case P_KEY:
        rc = set_key(&a->start_key, v);
        if (rc == DV_OK)
            rc = set_key(&a->end_key, v);
        break;
    case P_KEYS:
        a->has_keys = 1;
        buf_reset(&a->keys);
        rc = json_serialize(v, &a->keys);
        break;
    case P_START: rc = set_key(&a->start_key, v); break;
    case P_END: rc = set_key(&a->end_key, v); break;
    case P_START_DOCID: rc = set_docid_json(&a->start_docid, &a->has_start_docid, v); break;
    case P_END_DOCID: rc = set_docid_json(&a->end_docid, &a->has_end_docid, v); break;
    case P_LIMIT:
    case P_SKIP:
    case P_GROUP_LEVEL:
        if ((rc = json_pos_int(v, &x, e)) != DV_OK)
            return rc;
        set_int(a, id, x);
        break;
    case P_STALE:
    case P_STABLE:
    case P_UPDATE: {
        size_t n = 0;
        const char *s = "";
        if (json_is_bool(v) && id != P_STALE)
            s = json_is_true(v) ? "true" : "false", n = strlen(s);
        else if (json_is_string(v))
            s = json_str(v, &n);
        return set_word(a, id, s, n, e); /* anything else fails as a bad word */
    }
    case P_PARTITION: a->has_partition = 1; break;
    default: break; /* unknown parameters are ignored, as CouchDB's "extra" */
    }
    return nomem(rc, e);
}

int query_args_set_text(query_args *a, const char *name, size_t nlen, const char *val, size_t vlen,
                        unsigned max_depth, db_err *e)
{
    int id = param_id(name, nlen), *flag = bool_field(a, id);
    uint64_t x;
    if (flag)
        return text_bool(val, vlen, flag, e);
    switch (id) {
    case P_KEY:
    case P_KEYS:
    case P_START:
    case P_END: {
        json_doc jd = JSON_DOC_INIT;
        int rc = json_doc_parse(&jd, val, vlen, max_depth, NULL);
        if (rc == DV_OK)
            rc = query_args_set_json(a, name, nlen, json_doc_root(&jd), e);
        else if (rc != DV_ERR_NOMEM) {
            db_err_set(e, 400, "bad_request", "invalid UTF-8 JSON");
            rc = DV_ERR_INVALID;
        }
        json_doc_free(&jd);
        return nomem(rc, e);
    }
    case P_START_DOCID: return nomem(set_docid(&a->start_docid, &a->has_start_docid, val, vlen), e);
    case P_END_DOCID: return nomem(set_docid(&a->end_docid, &a->has_end_docid, val, vlen), e);
    case P_LIMIT:
    case P_SKIP:
    case P_GROUP_LEVEL:
        if (text_pos_int(val, vlen, &x, e) != DV_OK)
            return DV_ERR_INVALID;
        set_int(a, id, x);
        return DV_OK;
    case P_STALE:
    case P_STABLE:
    case P_UPDATE: return set_word(a, id, val, vlen, e);
    case P_PARTITION: a->has_partition = 1; return DV_OK;
    default: return DV_OK;
    }
}

int query_args_from_target(query_args *a, const http_target_t *t, unsigned max_depth, db_err *e)
{
    for (size_t i = 0; i < t->nparam; i++) {
        const http_param_t *p = &t->param[i];
        int rc = query_args_set_text(a, p->key.p, p->key.n, p->value.p, p->value.n, max_depth, e);
        if (rc != DV_OK)
            return rc;
    }
    return DV_OK;
}

int query_args_from_object(query_args *a, const json_val *obj, db_err *e)
{
    json_iter it = json_iter_begin(obj);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v)) {
        size_t n;
        const char *name = json_str(k, &n);
        int rc = query_args_set_json(a, name, n, v, e);
        if (rc != DV_OK)
            return rc;
    }
    return DV_OK;
}

/* ---- validation ------------------------------------------------------------------ */

/* A JSON array text with at least one element (keys are minified). */
static int keys_nonempty(const buf_t *keys)
{
    return keys->len > 2 && keys->data[0] == '[';
}

int query_args_validate(query_args *a, int view_type, db_err *e)
{
    /* determine_group_level */
    long long level;
    if (a->group == 0 && a->group_level > 0)
        return parse_error(e, "Can't specify group=false and group_level>0 at the same time");
    if (a->group_level >= 0)
        level = a->group_level;
    else
        level = a->group == 1 ? QUERY_GROUP_EXACT : 0;
    if (view_type == QUERY_VIEW_MAP && a->reduce == 1)
        return parse_error(e, "Reduce is invalid for map-only views.");
    if (view_type == QUERY_VIEW_REDUCE && level != QUERY_GROUP_EXACT && a->has_keys && a->keys.len &&
        a->keys.data[0] == '[')
        return parse_error(e, "Multi-key fetchs for reduce views must use `group=true`");
    if (a->has_keys && (!a->keys.len || a->keys.data[0] != '['))
        return parse_error(e, "`keys` must be an array of strings.");
    if (a->has_keys && keys_nonempty(&a->keys) && (a->start_key.set || a->end_key.set))
        return parse_error(e, "`keys` is incompatible with `key`, `start_key` and `end_key`");
    if (view_type == QUERY_VIEW_MAP && level != 0)
        return parse_error(e, "Invalid use of grouping on a map view.");
    if (view_type == QUERY_VIEW_REDUCE && a->include_docs)
        return parse_error(e, "`include_docs` is invalid for reduce");
    if (view_type == QUERY_VIEW_REDUCE && a->conflicts != -1)
        return parse_error(e, "`conflicts` is invalid for reduce views.");
    if (a->has_partition)
        return parse_error(e, "`partition` parameter is not supported on this db");
    a->group_level = level;
    return DV_OK;
}
