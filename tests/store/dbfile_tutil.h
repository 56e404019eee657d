/*
 * dbfile_tutil.h — small helpers shared by the tests of store/dbfile.h:
 * one-call edits, reads of a doc's winner, rev strings.  They go through the
 * public API only (blocking writes, fresh snapshots).
 */
#ifndef DV_TESTS_STORE_DBFILE_TUTIL_H
#define DV_TESTS_STORE_DBFILE_TUTIL_H

#include "store/dbfile.h"

#include <stdint.h>

store_rev dt_rev(const char *s); /* aborts on a bad literal */
/* "pos-id" in a caller buffer of >= 96 bytes. */
const char *dt_rev_str(const store_rev *r, char *buf);

/* One STORE_EDIT of id (parent NULL = none).  Returns the item status (or
 * the batch error); *rev (optional) gets the rev written. */
int dt_edit(store_dbfile *db, const char *id, const char *parent, const char *body, int deleted, store_rev *rev);
/* One STORE_REPLICATE of a path given newest first, space separated. */
int dt_replicate(store_dbfile *db, const char *id, const char *path, const char *body, int deleted);

/* Reads id's winner from a fresh snapshot: its rev string, body, deleted
 * flag.  Returns DV_ERR_NOTFOUND if the id is unknown. */
int dt_winner(store_dbfile *db, const char *id, char rev[96], buf_t *body, int *deleted);
store_dbinfo dt_info(store_dbfile *db);

#endif
