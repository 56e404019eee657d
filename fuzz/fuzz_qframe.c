/*
 * fuzz_qframe.c — libFuzzer target for the server side of the query-server
 * protocol: the bytes a misbehaving divan-js could send.
 *
 * The input is a reply stream, decoded frame by frame as views/qserver.c
 * does (qframe_decode with a small payload limit so long lengths are
 * exercised), each payload handed to the reader of its type: errors
 * (qserver_parse_error: texts always NUL-terminated valid UTF-8), validate
 * verdicts (qserver_parse_verdict, and qserver_parse_verdicts for the same
 * payload read as a batch answer: a message is valid JSON, a refusal or
 * error always has one), map rows
 * (json_validate).  Checked: a decoded frame lies inside the input and its
 * length is within the limit; decoding stops at an incomplete or corrupt
 * frame.  ASan catches any overrun.
 */
#include "base/buf.h"
#include "base/status.h"
#include "js/qproto.h"
#include "json/json.h"
#include "views/qserver.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t limit = 4096;
    size_t off = 0;
    buf_t msg = BUF_INIT;
    while (off < size) {
        qframe f;
        int rc = qframe_decode(data + off, size - off, limit, &f);
        if (rc != QFRAME_OK)
            break;
        if (f.len > limit || f.consumed != QP_HDR + f.len || f.consumed > size - off ||
            f.payload != data + off + QP_HDR)
            abort();
        switch (f.type) {
        case QP_ERROR: {
            qserver_error e;
            qserver_parse_error(f.payload, f.len, &e);
            if (memchr(e.error, 0, sizeof e.error) == NULL || memchr(e.reason, 0, sizeof e.reason) == NULL)
                abort();
            if (!json_utf8_valid(e.error, strlen(e.error)) || !json_utf8_valid(e.reason, strlen(e.reason)))
                abort();
            break;
        }
        case QP_OK: {
            enum qserver_verdict v;
            buf_reset(&msg);
            if (qserver_parse_verdict(f.payload, f.len, &v, &msg) == DV_OK) {
                if ((unsigned)v > QSERVER_OTHER)
                    abort();
                if (msg.len && json_validate(msg.data, msg.len, 0, NULL) != DV_OK)
                    abort();
            }
            /* the same payload as a batch answer of 0..4 documents */
            enum qserver_verdict vs[4];
            buf_t msgs[4];
            size_t n = f.len % 5;
            for (size_t i = 0; i < 4; i++)
                buf_init(&msgs[i]);
            if (qserver_parse_verdicts(f.payload, f.len, n, vs, msgs) == DV_OK) {
                for (size_t i = 0; i < n; i++) {
                    if ((unsigned)vs[i] > QSERVER_ERROR || (vs[i] != QSERVER_VALID && msgs[i].len == 0))
                        abort();
                    if (msgs[i].len && json_validate(msgs[i].data, msgs[i].len, 0, NULL) != DV_OK)
                        abort();
                }
            }
            for (size_t i = 0; i < 4; i++)
                buf_free(&msgs[i]);
            break;
        }
        case QP_MAP_ROW:
            (void)json_validate(f.payload, f.len, 0, NULL);
            break;
        default:
            break;
        }
        off += f.consumed;
    }
    buf_free(&msg);
    return 0;
}
