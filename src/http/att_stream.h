/*
 * att_stream.h — streamed answers made of framing bytes and attachment
 * bytes: standalone attachment GETs (whole, decoded, one range,
 * multipart/byteranges) and the multipart forms of documents
 * (multipart/related, multipart/mixed).
 *
 * An answer is a queue of pieces: text (headers, JSON, boundaries, copied
 * into the stream) and attachment ranges (read from the store when sent).
 * The stream owns a database reference and a snapshot, so the attachment
 * streams it reads stay valid for the whole answer whatever the writer or
 * compaction do meanwhile.  Each fill sends at most ATT_STREAM_CHUNK bytes
 * (one store_snap_read_att call, or one window of inflated output), so an
 * answer costs O(chunk + largest text piece) memory whatever the
 * attachments' sizes.  When the queue runs dry a `more` callback may queue
 * the next document (open_revs), so long answers never hold every
 * document at once.
 */
#ifndef DV_HTTP_ATT_STREAM_H
#define DV_HTTP_ATT_STREAM_H

#include "db/db.h"
#include "http/server.h"

#include <stddef.h>
#include <stdint.h>

#define ATT_STREAM_CHUNK (64 * 1024)

typedef struct att_stream att_stream;

/* Queues the next pieces (after att_stream_reset) and returns 1, or 0 when
 * the answer is complete, or a negative DV_ERR_* to abort it. */
typedef int (*att_stream_more_fn)(att_stream *s, void *arg);

/* A stream owning the reference db and the snapshot snap (both released
 * when the answer is finished); NULL when out of memory (the caller keeps
 * them then). */
att_stream *att_stream_new(db_t *db, store_snap *snap);
/* Frees a stream that was never sent (releases db and snap too). */
void att_stream_free(att_stream *s);

db_t *att_stream_db(att_stream *s);
store_snap *att_stream_snap(att_stream *s);
/* The revision body whose attachments att pieces name (by index); the
 * caller fills it (store_snap_read_body); owned by the stream. */
store_docbody *att_stream_body(att_stream *s);

int att_stream_text(att_stream *s, const void *p, size_t n);
int att_stream_printf(att_stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues n bytes of a header value with CR and LF replaced by spaces, so
 * that a value taken from stored data (an attachment's content type, a
 * document id) cannot end its header line and forge the lines after it. */
int att_stream_header_text(att_stream *s, const void *p, size_t n);
/* Bytes [from, from + len) of attachment att of the body; decode: the
 * gzip-encoded attachment inflated (from must be 0, len its identity
 * length). */
int att_stream_att(att_stream *s, size_t att, uint64_t from, uint64_t len, int decode);
/* Bytes queued and not yet sent: the Content-Length of a one-shot answer. */
uint64_t att_stream_length(const att_stream *s);
/* Drops the queue (only from a more callback, when everything was sent);
 * the body is kept until the caller replaces it. */
void att_stream_reset(att_stream *s);
/* Sets the callback that refills the queue; free_arg(arg) runs with the
 * stream's disposal. */
void att_stream_set_more(att_stream *s, att_stream_more_fn fn, void *arg, void (*free_arg)(void *));

/* Starts the answer (status, the headers added so far) and takes
 * ownership of s.  with_length: Content-Length is the queued length,
 * otherwise the answer is chunked. */
void att_stream_send(http_req_t *r, int status, att_stream *s, int with_length);

/* 32 random hex digits, as CouchDB's couch_uuids:random() boundaries. */
void att_stream_boundary(char out[33]);

#endif
