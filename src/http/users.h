/*
 * users.h — the _users database's own rules (CouchDB's couch_users_db and
 * the validation of its _design/_auth, implemented in C).
 *
 * Reads: a user who is not a server or db admin sees their own
 * org.couchdb.user:NAME document whole; of another user's document only
 * the fields [chttpd_auth] public_fields names (CouchDB's
 * couch_users_db:after_doc_read), and 404 "missing" when it has none of
 * them or the list is empty; anonymous users see none.
 * Writes: a non-admin may write only their own document, anonymous users
 * may create one (sign up); a "password" member is replaced by a PBKDF2
 * hash (password_scheme, pbkdf2_prf, iterations, derived_key, salt) on a
 * worker thread; then the document must pass the _auth rules (type
 * "user", name matching the id, roles an array of strings, only admins
 * set or change roles, no "_"-prefixed roles or names, no ':' in names).
 */
#ifndef DV_HTTP_USERS_H
#define DV_HTTP_USERS_H

#include "http/doc_util.h"
#include "http/server.h"

/* Route-level check for the document and attachment routes of _users:
 * 1 to go on, 0 after answering. */
int http_users_authz_doc(http_req_t *r);

/* Whether r reads document r->match.docid of db as someone who may see
 * only its public fields: db is _users, the document is not the user's
 * own, the user is no server or _users admin. */
int http_users_public_only(http_req_t *r, db_t *db);
/* Renders revision idx (db_render_doc with o) keeping only the members
 * named in [chttpd_auth] public_fields (CouchDB's strip_non_public_fields)
 * and, with keep_meta, every "_" member (_id, _rev, _attachments, …);
 * *npublic: how many public fields it had. */
struct http_auth;
int http_users_render_public(const struct http_auth *a, const store_snap *s, const store_docinfo *di, uint32_t idx,
                             const db_render_opts *o, int keep_meta, json_writer *w, size_t *npublic);

/* Applies the write rules to c (a _users document), then calls
 * cont(r, c, new_edits) on the loop, or answers the error and frees c. */
typedef void (*http_users_cont_fn)(http_req_t *r, http_doc_ctx *c, int new_edits);
void http_users_submit(http_req_t *r, http_doc_ctx *c, int new_edits, http_users_cont_fn cont);

/* The write rules for one document d of _users (db), for the caller to
 * report (db_err e: 404 for another user's document, 403 forbidden with
 * the _auth reason, 400): DV_OK with *password a malloc'd copy of a clear
 * password to hash (NULL when none; the caller cleanses and frees it), or
 * DV_ERR_INVALID / DV_ERR_NOMEM.  admin: http_users_is_admin. */
int http_users_check(http_req_t *r, db_t *db, const db_doc *d, int admin, db_err *e, char **password,
                     size_t *pw_len);
/* Server admin or admin of _users. */
int http_users_is_admin(http_req_t *r, db_t *db);
/* Replaces d's "password" by the PBKDF2 members (worker thread: slow). */
int http_users_hash(db_doc *d, const char *password, const char *prf, long iterations);

/* The _auth validation on its own (for unit tests and _bulk_docs): newdoc
 * and olddoc (NULL: none) are full JSON objects with _id (and _deleted);
 * is_admin: server or db admin.  NULL when valid, else the forbidden
 * reason (static). */
const char *http_users_validate(const json_val *newdoc, const char *id, size_t idlen, int deleted,
                                const json_val *olddoc, const http_user_ctx_t *user, int is_admin);

#endif
