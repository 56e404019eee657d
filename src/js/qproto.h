/*
 * qproto.h — the wire format between divan (views/qserver.c) and divan-js.
 * Header-only, no dependencies: both sides include it.  docs/views.md
 * ("Query server protocol") describes the messages; this file is the
 * byte-level contract.
 *
 * A frame is QP_HDR bytes — u32 little-endian payload length, u8 type —
 * followed by the payload.  Payloads are JSON text unless said otherwise.
 * Requests go server → divan-js on the child's stdin; responses come back
 * on its stdout.  Every request gets exactly one final response (QP_OK or
 * QP_ERROR), except QP_MAP, answered by one QP_MAP_ROW per document, in
 * order, then QP_MAP_END (or a single QP_ERROR when the batch as a whole is
 * refused, e.g. an unknown handle).  QP_LOG frames may come before any
 * response: they carry log() lines of the function running at the time.
 */
#ifndef DV_JS_QPROTO_H
#define DV_JS_QPROTO_H

#define QP_HDR 5u
/* Largest payload either side accepts (a batch of documents or one map
 * result); a bigger length is a protocol error. */
#define QP_MAX_PAYLOAD (256u * 1024u * 1024u)

enum qp_type {
    /* requests */
    QP_DEFINE = 'D',   /* {"handle","views":[{"name","map","reduce"}],"lib","filters",
                          "validate_doc_update","ddoc"} -> QP_OK {"errors":[...]} */
    QP_FORGET = 'X',   /* {"handle"} -> QP_OK {} */
    QP_MAP = 'M',      /* binary: u32 handle length, handle, then per document
                          u32 length + document JSON -> QP_MAP_ROW per doc, QP_MAP_END */
    QP_REDUCE = 'R',   /* {"handle","views":[i...],"kvs":[[[key,docid],value]...]} -> QP_OK [r...] */
    QP_REREDUCE = 'C', /* {"handle","views":[i...],"values":[...]} -> QP_OK [r...] */
    QP_FILTER = 'F',   /* {"handle","filter":name | "view":i,"docs":[...],"req":{}} -> QP_OK [bool...] */
    QP_VALIDATE = 'V', /* {"handle","args":[newDoc,oldDoc,userCtx,secObj]} ->
                          QP_OK {"ok":true} | {"forbidden":msg} | {"unauthorized":msg} | {"other":msg};
                          {"handle","batch":[args...]} -> QP_OK [one of those or
                          {"error","reason"} (a JavaScript error) per element] */
    /* responses */
    QP_OK = 'k',
    QP_ERROR = 'e',    /* {"error","reason"} */
    QP_MAP_ROW = 'm',  /* [per view: [[key,value]...] | {"error","reason"}] */
    QP_MAP_END = 'z',  /* empty */
    QP_LOG = 'l',      /* raw UTF-8 text of one log() call */
};

/* The progress page: one shared memory page (a memfd the server passes as
 * the child's fd 3, `--progress-fd 3`).  divan-js buffers MAP rows and
 * writes them in chunks, so the frames that arrived do not tell which
 * document a stuck or crashed child was on; this page does, without a
 * system call per document.  The server zeroes it before each MAP request;
 * the child stores, with release ordering, started_ns (CLOCK_MONOTONIC)
 * before each document and then done = documents of the batch answered.
 * Read with acquire ordering. */
typedef struct qp_progress {
    unsigned long long done;
    long long started_ns;
} qp_progress;

#endif
