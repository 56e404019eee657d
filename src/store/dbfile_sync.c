/*
 * dbfile_sync.c — the syncer and completer threads of pipelined durable
 * commits, and how a group's waiters learn their status.
 *
 * The writer thread (dbfile_write.c) applies a group and writes it; these
 * make it durable, publish it and complete it.
 *
 * With durability ALWAYS the writer does not sync: it writes a group (data
 * and header) and hands it to the syncer thread, which syncs, publishes and
 * completes it while the writer already applies the next group on top of
 * it (db->tip, the newest state written; readers still see db->cur, the
 * newest durable one).  Instrumented with 64 writers, the writer thread was
 * busy all the time and half of it was the commit's fdatasync, during which
 * both cores idled: apply and sync now overlap.
 *
 * When to sync: the syncer takes every group handed over since its last
 * sync, but if the writer is in the middle of a group it first waits for
 * that one (one hand-over), so that a sync does not leave out documents
 * being applied right now (an eager syncer synced the first two documents
 * of a wave alone, and the rest waited for another sync).  Under heavy
 * load each sync covers what was handed over plus the group in progress.
 * Unsynced bytes are bounded by store_file_sync_ahead_max (past it the
 * writer syncs its data itself), which bounds what open verifies behind
 * the newest synced commit.
 *
 * Failures: a failed sync fails its groups and every later one (the file is
 * poisoned) and sets sync_failed; a failed write sets broken.  Either way
 * the writer waits until nothing is handed over, then reopens the file up
 * to what was synced, so no failed group can reappear.
 */
#include "store/dbfile_int.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static void futex_wake_all(_Atomic uint32_t *word)
{
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleeps while *word == val (returns at once when it changed, on a wake,
 * or on a signal: callers re-check their condition). */
void dbf_futex_wait(_Atomic uint32_t *word, uint32_t val)
{
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

/* Hands each item of a group its status.  A blocking waiter may return
 * (and free its item) as soon as it sees finished, so next is read before;
 * the waiters are woken afterwards with one call on their group's word,
 * which lives in db.  Words are shared by groups DBF_WAKE_WORDS apart: a
 * waiter woken for another group finds its flag unset and sleeps again. */
void dbf_complete(store_dbfile *db, dbf_item *items, int status)
{
    _Atomic uint32_t *word = NULL;
    while (items) {
        dbf_item *next = items->next;
        items->status = status;
        if (items->done) {
            dbf_prep_settle(items);
            items->done(items->arg, status);
            dbf_item_release(items); /* the caller may still hold it (see store_dbfile_write_async) */
        } else {
            word = &db->wake[items->group % DBF_WAKE_WORDS];
            atomic_store_explicit(&items->finished, 1, memory_order_release);
        }
        items = next;
    }
    if (word) {
        atomic_fetch_add_explicit(word, 1, memory_order_release);
        futex_wake_all(word);
    }
}

/* Under db->mu: hands p to the syncer. */
void dbf_hand_over_locked(store_dbfile *db, dbf_pending *p)
{
    p->next = NULL;
    if (db->ptail)
        db->ptail->next = p;
    else
        db->phead = p;
    db->ptail = p;
    db->npend++;
    db->handovers++;
    if (p->st) {
        atomic_fetch_add(&p->st->refs, 1);
        dbf_state_unref(db->tip);
        db->tip = p->st;
    }
    pthread_cond_broadcast(&db->cv_sync);
}

/* Under db->mu (released around the fdatasync): makes a batch of handed-
 * over groups durable with one sync, publishes their states in order and
 * takes them out of npend.  Returns the batch's status.  Every handed-over
 * group belongs to db->fr: the writer reopens, and compaction swaps files,
 * only once nothing is handed over. */
int dbf_sync_batch_locked(store_dbfile *db, dbf_pending *batch, int by_writer)
{
    uint64_t upto = 0;
    for (dbf_pending *p = batch; p; p = p->next)
        if (p->st)
            upto = p->end;
    store_file *f = db->fr->file;
    int rc = db->sync_failed ? DV_ERR_IO : DV_OK;
    pthread_mutex_unlock(&db->mu);
    if (!rc && upto)
        rc = store_file_sync_to(f, upto);
    pthread_mutex_lock(&db->mu);
    if (!rc && upto)
        atomic_fetch_add(&db->commits, 1); /* one durable commit, however many groups */
    int n = 0;
    for (dbf_pending *p = batch; p; p = p->next) {
        n++;
        p->status = rc;
        if (!p->st)
            continue;
        if (rc)
            dbf_state_unref(p->st);
        else
            dbf_publish_locked(db, p->st);
        p->st = NULL;
    }
    if (rc)
        db->sync_failed = 1;
    db->npend -= n;
    if (db->npend == 0) {
        dbf_state_unref(db->tip);
        db->tip = NULL;
    }
    if (!by_writer) /* a writer waiting for the drain; by the writer: only the idle syncer would wake */
        pthread_cond_broadcast(&db->cv_sync);
    return rc;
}

/* Waking waiters is for the completer thread when there are more than a
 * few: a woken thread preempts the one that wakes it, and the syncer and
 * the writer are the critical path (measured with 64 writers: completing
 * in the syncer took 17 us a document, delaying the next sync as much).
 * A batch of at most COMPLETE_INLINE waiters (a lone writer's commit) is
 * completed at once, sparing it a thread hop, when nothing is ahead of it
 * (completions stay in commit order: commit hooks report update_seq).
 * Under db->mu; may release it. */
enum { COMPLETE_INLINE = 2 };

/* Completes and frees a synced batch, in order (no lock held). */
static void complete_batch(store_dbfile *db, dbf_pending *batch)
{
    while (batch) {
        dbf_pending *next = batch->next;
        /* Published (synced) or failed by now: the nodes a published group
         * replaced serve older snapshots only; a failed group's keep the
         * current state's. */
        if (batch->status == DV_OK)
            store_btree_retire(&batch->rewritten);
        else
            store_btree_retired_free(&batch->rewritten);
        dbf_complete(db, batch->items, batch->status);
        free(batch);
        batch = next;
    }
}

/* Under db->mu: waits until *head holds groups or *stop is set, then takes
 * the whole list; NULL once stopped with nothing left. */
static dbf_pending *take_locked(store_dbfile *db, dbf_pending **head, dbf_pending **tail, const int *stop,
                                pthread_cond_t *cv)
{
    while (!*head && !*stop)
        pthread_cond_wait(cv, &db->mu);
    dbf_pending *list = *head;
    *head = *tail = NULL;
    return list;
}

void dbf_finish_batch_locked(store_dbfile *db, dbf_pending *batch)
{
    size_t n = 0;
    for (dbf_pending *p = batch; p && n <= COMPLETE_INLINE; p = p->next)
        for (dbf_item *it = p->items; it && n <= COMPLETE_INLINE; it = it->next)
            n++;
    if (n <= COMPLETE_INLINE && !db->chead) {
        pthread_mutex_unlock(&db->mu);
        complete_batch(db, batch);
        pthread_mutex_lock(&db->mu);
        return;
    }
    if (db->ctail)
        db->ctail->next = batch;
    else
        db->chead = batch;
    while (batch->next)
        batch = batch->next;
    db->ctail = batch;
    pthread_cond_signal(&db->cv_comp);
}

/* The syncer thread: takes every group handed over, syncs once for all of
 * them, publishes their states and has them completed. */
void *dbf_syncer_main(void *arg)
{
    store_dbfile *db = arg;
    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (!db->phead && !db->syncer_stop)
            pthread_cond_wait(&db->cv_sync, &db->mu);
        if (db->phead && db->writer_busy && !db->syncer_stop) {
            uint64_t seen = db->handovers;
            while (db->writer_busy && db->handovers == seen && !db->syncer_stop)
                pthread_cond_wait(&db->cv_sync, &db->mu);
        }
        dbf_pending *batch = take_locked(db, &db->phead, &db->ptail, &db->syncer_stop, &db->cv_sync);
        if (!batch)
            break;
        dbf_sync_batch_locked(db, batch, 0);
        dbf_finish_batch_locked(db, batch);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

/* The completer thread: completes synced groups in order. */
void *dbf_completer_main(void *arg)
{
    store_dbfile *db = arg;
    pthread_mutex_lock(&db->mu);
    dbf_pending *batch;
    while ((batch = take_locked(db, &db->chead, &db->ctail, &db->completer_stop, &db->cv_comp))) {
        pthread_mutex_unlock(&db->mu);
        complete_batch(db, batch);
        pthread_mutex_lock(&db->mu);
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}
