/*
 * revtree.h — CouchDB revision trees: merge, stem, winner, rev ids.
 *
 * A document's history is a forest of revisions (forest, because stemming
 * and replication can leave disconnected branches).  A revision is
 * "pos-id": pos is the generation (1 for the first edit, parent pos + 1
 * after), id an opaque string (32 lowercase hex digits for revs divan makes).
 *
 * Semantics (CouchDB 3.x):
 *   - Edit (new_edits=true): the edit must name a current leaf as parent.
 *     Naming no parent is allowed when the tree is empty or when every leaf
 *     is deleted (the new rev then extends the winning deleted leaf).  Any
 *     other case is DV_ERR_CONFLICT.
 *   - Replicated path (new_edits=false): any path merges, sharing the
 *     ancestors it has in common with the tree; it may create a conflict
 *     (a second leaf); it is never an error.  A path that is already present
 *     changes nothing (existing nodes keep their fields), except that
 *     ancestors it names beyond a stemmed root are grafted on, as CouchDB's
 *     key-tree merge does; that keeps merges order-independent.
 *   - Stemming keeps the newest revs_limit revisions of every path from a
 *     leaf; ancestors beyond that are dropped (see revtree_stem).
 *   - Winner: non-deleted leaves first, then highest pos, then highest id
 *     (byte order).  Conflicts are the other non-deleted leaves, deleted
 *     conflicts the other deleted leaves.
 *
 * In memory a tree is an array of nodes each naming its parent by index.
 * Invariant: a parent's index is smaller than its children's indices, and a
 * child's pos is its parent's pos + 1.  revtree.c keeps the array sorted by
 * store_rev_cmp (pos, then id bytes), which implies the above, makes the
 * order (and so the encoding) canonical and revtree_find a binary search:
 * build trees only through these functions (editing a node's non-rev fields
 * in place is fine).  Operations that add or remove nodes renumber them, so
 * indices are valid only until the next such call.
 */
#ifndef DV_STORE_REVTREE_H
#define DV_STORE_REVTREE_H

#include "base/buf.h"
#include "store/file.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_REV_ID_MAX 64 /* longer rev ids are rejected as invalid */

typedef struct store_rev {
    uint64_t pos;
    uint8_t len;
    char id[STORE_REV_ID_MAX]; /* not NUL-terminated */
} store_rev;

/* Parses "N-id": N a decimal integer >= 1 fitting 64 bits (no sign), id
 * 1..STORE_REV_ID_MAX chars of printable ASCII other than space, '"' and
 * '\\' (CouchDB accepts any id; these would break headers and JSON);
 * DV_ERR_INVALID otherwise. */
int store_rev_parse(const char *s, size_t n, store_rev *out);
/* 1 when id[0..n) is a valid rev id by the rule above. */
int store_rev_id_valid(const char *id, size_t n);
/* Appends "N-id" to out. */
int store_rev_format(const store_rev *r, buf_t *out);
int store_rev_equal(const store_rev *a, const store_rev *b);
/* Winner order between two leaves: >0 when a wins over b. */
int store_rev_cmp(const store_rev *a, const store_rev *b);

#define REVTREE_NONE UINT32_MAX

typedef struct revtree_node {
    store_rev rev;
    uint32_t parent;  /* REVTREE_NONE for a root */
    uint8_t deleted;
    uint8_t has_body; /* body record present (leaves; older revs until compaction) */
    store_ptr body;   /* record holding this rev's body and attachment list */
    uint64_t seq;     /* update sequence at which this rev was stored */
    uint64_t size;    /* external (uncompressed) size of body + attachments */
} revtree_node;

typedef struct revtree {
    revtree_node *nodes;
    uint32_t n, cap;
} revtree;

void revtree_init(revtree *t);
void revtree_free(revtree *t);
int revtree_copy(revtree *dst, const revtree *src);
/* 1 when both trees hold the same nodes, in the same order, with equal
 * fields (rev, parent, deleted, has_body, body, seq, size). */
int revtree_equal(const revtree *a, const revtree *b);

/* Appends the canonical encoding of t to out. */
int revtree_encode(const revtree *t, buf_t *out);
/* Decodes and checks invariants; DV_ERR_CORRUPT on any violation (the whole
 * slice must be one tree).  t must be initialised; on success its previous
 * contents are freed and replaced, on error t is unchanged. */
int revtree_decode(revtree *t, const uint8_t *p, size_t n);

/* Index of the node with this rev, or REVTREE_NONE. */
uint32_t revtree_find(const revtree *t, const store_rev *rev);
int revtree_is_leaf(const revtree *t, uint32_t idx);

/* Leaves in winner order (winner first).  *n receives the count; idx must
 * hold t->n entries. */
void revtree_leaves(const revtree *t, uint32_t *idx, uint32_t *n);
uint32_t revtree_winner(const revtree *t); /* REVTREE_NONE if empty */
/* The leaves that descend from node idx (idx itself when it is a leaf), in
 * winner order (open_revs with latest=true).  out must hold t->n entries.
 * O(n log n). */
uint32_t revtree_leaves_under(const revtree *t, uint32_t idx, uint32_t *out);

/* Edit (new_edits=true).  parent NULL = no rev given.  The new node gets
 * rev {parent pos + 1 (or 1), new_id}; *out_idx its index.  Conflict rules
 * above.  DV_ERR_CONFLICT changes nothing. */
int revtree_add_edit(revtree *t, const store_rev *parent, const char *new_id, uint8_t new_id_len,
                     const revtree_node *proto, uint32_t *out_idx);
/* The parent new_edits=true would use when parent == NULL: the winning leaf
 * if every leaf is deleted, else none (REVTREE_NONE, also for empty trees). */
uint32_t revtree_implicit_parent(const revtree *t);

/* Replicated path (new_edits=false): path[0] is the new leaf, path[i+1] the
 * parent of path[i] (pos decreasing by one).  proto gives the leaf's fields
 * (deleted, body, seq, size); ancestors added are bodiless.  *added = 1 when
 * the leaf was new (0 when it exists, leaf or inner: its fields are kept);
 * *out_idx is path[0]'s index either way.  Where the tree names a different
 * parent than the path, the tree's is kept.  DV_ERR_INVALID when positions
 * are not consecutive, a pos is 0 or an id is invalid. */
int revtree_merge_path(revtree *t, const store_rev *path, size_t n, const revtree_node *proto, int *added,
                       uint32_t *out_idx);

/* Keeps the newest limit revisions of every leaf's path, as CouchDB: the
 * result is the merge of every leaf's path cut to limit revs, so a node
 * stays when some leaf is at most limit - 1 generations below it, and keeps
 * its parent edge only when one leaf's window holds both (other nodes left
 * without their parent become roots).  limit 0 is DV_ERR_INVALID. */
int revtree_stem(revtree *t, uint64_t limit);

/* Removes the given leaves and every ancestor no other leaf keeps
 * (_purge).  *purged counts leaves actually removed. */
int revtree_purge(revtree *t, const store_rev *revs, size_t n, size_t *purged);

/* Path from node idx to its root: out[0] = idx.  Returns the count; out
 * holds at most t->n entries. */
uint32_t revtree_path(const revtree *t, uint32_t idx, uint32_t *out);

/* Deterministic rev id for an edit: 32 lowercase hex chars of
 * MD5(deleted byte, parent pos and id (or nothing), body bytes, each
 * attachment digest in order).  The same edit on two replicas yields the
 * same rev.  out must hold 33 bytes (NUL-terminated). */
void revtree_compute_rev_id(int deleted, const store_rev *parent, const uint8_t *body, size_t body_len,
                            const char *const *att_digests, size_t n_atts, char out[33]);
/* OpenSSL's MD5 (an EVP_MD), fetched once for the process: for rev ids and
 * attachment digests. */
struct evp_md_st;
const struct evp_md_st *revtree_md5(void);

#endif
