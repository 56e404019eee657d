/*
 * ddoc.h — a design document's views as the index engine sees them: names,
 * map and reduce sources, options, the CommonJS library, and each view's
 * signature.
 *
 * A view's signature is the MD5 (hex) of everything that decides its rows:
 * the language, its map source, its reduce source, the options that change
 * what the map sees or how keys sort (include_design, local_seq,
 * collation), and the serialised views.lib (a map may require any of it).
 * Sibling views and other members of the design document are not part of
 * it, so editing one view leaves the others' indexes valid.
 */
#ifndef DV_VIEWS_DDOC_H
#define DV_VIEWS_DDOC_H

#include "db/db.h"
#include "json/json.h"
#include "views/reduce.h"

#include <stddef.h>

typedef struct view_def {
    char *name;
    char *map;            /* source */
    char *reduce;         /* source or NULL */
    view_reduce_kind rkind;
    char sig[33];
} view_def;

typedef struct view_group {
    char *ddoc_id;        /* "_design/…" */
    char *language;       /* "javascript" */
    int include_design;   /* options.include_design */
    int local_seq;        /* options.local_seq */
    int raw;              /* options.collation == "raw" */
    char *lib;            /* views.lib serialised, or NULL */
    view_def *views;
    size_t nviews;
} view_group;

void view_group_free(view_group *g);
/* Reads the views of a design document (its JSON body, _id included).
 * Shape errors (views not an object, a view without a string map, a
 * reduce that is neither a string nor absent, an unknown built-in reduce,
 * a language other than javascript) set e (400) and return
 * DV_ERR_INVALID.  JavaScript syntax is the query server's to check. */
int view_group_from_ddoc(const json_val *ddoc, view_group *out, db_err *e);
/* The view named name[0..n), or NULL. */
const view_def *view_group_find(const view_group *g, const char *name, size_t n);

#endif
