/*
 * collate.h — CouchDB's view collation of JSON values.
 *
 * Every view index orders its rows by key with these functions: they are the
 * B+tree key compare, called O(log n) times per row written or looked up.
 * The order is CouchDB 3's (couch_ejson_compare: its NIF and its Erlang
 * fallback), so that a view answers the same rows in the same order here as
 * there.  docs/collation.md gives the rules with the CouchDB evidence for
 * each; in short:
 *
 *   default ("UCA")  null < false < true < numbers < strings < arrays < objects
 *     numbers   by value: integer syntax is an exact integer of any size (jiffy
 *               makes a bignum), any other number is the nearest double
 *               (1 == 1.0 == 1e0, 9007199254740993 > 9007199254740992.0);
 *     strings   ICU's root collator at its defaults (tertiary strength,
 *               normalization off, non-ignorable), as CouchDB's ucol_open("");
 *               strings ICU finds equal ARE equal ("a" == "a\u0000"): there
 *               is no byte tie-break inside a key, CouchDB orders rows with
 *               equal keys by doc id bytes (less_json_ids), and so must views/;
 *     arrays    element by element, then the shorter first;
 *     objects   member by member in their order, name (ICU) then value, then
 *               the one with fewer members first.
 *   raw              Erlang's term order of the decoded value:
 *               numbers < false < null < true < objects < arrays < strings,
 *               numbers by value as above, strings and member names by bytes
 *               (shorter prefix first), containers as above.
 *
 * Results are -1, 0 or 1.  Both orders are total preorders (antisymmetric and
 * transitive); 0 means "the same key" for grouping and key= lookups.
 *
 * Two inputs: DOM values (json_val, duplicates already resolved by the parser)
 * and serialised JSON texts, compared without building anything.  The text
 * form is meant for keys stored as json_write_value output; it accepts any
 * RFC whitespace and escapes, but does not resolve duplicate member names
 * (all members count, in text order), and has no error return: a text that is
 * not one valid JSON value (or nests deeper than JSON_COLLATE_TEXT_MAX_DEPTH)
 * makes the whole pair compare by raw bytes, which stays antisymmetric and
 * never reads outside the given lengths.
 *
 * Threads: every function may be called from any thread at any time.  One ICU
 * collator is opened once and shared: ICU documents service objects as safe
 * for concurrent use through const APIs, and ucol_strcollUTF8 takes a const
 * UCollator*.  Compares do not allocate, except for a string with escapes
 * longer than 1 KiB in the text form (heap scratch for that compare; if that
 * allocation fails the two escaped texts compare by bytes).
 *
 * Cost: ASCII strings never reach ICU (an exact model of ICU's root order for
 * ASCII, derived from ICU itself at init and tested exhaustively against it);
 * integer texts compare as decimal digits; other numbers are converted with a
 * correctly rounded fast path (Clinger) or strtod.
 */
#ifndef DV_JSON_COLLATE_H
#define DV_JSON_COLLATE_H

#include <stddef.h>
#include <stdint.h>

#include "json/json.h"

typedef enum json_collation {
    JSON_COLLATION_UCA = 0, /* CouchDB's default */
    JSON_COLLATION_RAW = 1, /* a view's "options": {"collation": "raw"} */
} json_collation;

/* Nesting limit of the text form (deeper texts compare by bytes). */
#define JSON_COLLATE_TEXT_MAX_DEPTH 4096u

/* Opens the shared ICU root collator and builds the ASCII tables.  Every
 * compare calls it (pthread_once), so calling it is optional; it is the one
 * place that reports failure: DV_OK, or DV_ERR_IO when ICU cannot open its
 * root collator (missing ICU data).  Until it succeeds, strings compare by
 * bytes. */
int json_collate_init(void);

/* DOM values (any subtree of a parsed document). */
int json_collate(const json_val *a, const json_val *b);
int json_collate_raw(const json_val *a, const json_val *b);
int json_collate_as(json_collation c, const json_val *a, const json_val *b);

/* Serialised values, a[0..alen) and b[0..blen). */
int json_collate_text(const void *a, size_t alen, const void *b, size_t blen);
int json_collate_text_raw(const void *a, size_t alen, const void *b, size_t blen);
int json_collate_text_as(json_collation c, const void *a, size_t alen, const void *b, size_t blen);

/* The pieces, for callers that hold a string or a number text. */
/* ICU root collation of two UTF-8 strings (CouchDB's compare_strings). */
int json_collate_strings(const char *a, size_t alen, const char *b, size_t blen);
/* Two JSON number texts (RFC 8259 syntax, as a json_val holds them). */
int json_collate_numbers(const char *a, size_t alen, const char *b, size_t blen);
/* Erlang's binary order: bytes unsigned, a proper prefix first.  Raw strings,
 * and the doc id tie-break between rows with equal keys. */
int json_collate_bytes(const void *a, size_t alen, const void *b, size_t blen);

/* The collation a view's "options" value selects: RAW when it is an object
 * whose "collation" member is the string "raw", UCA otherwise (CouchDB ignores
 * other values).  options may be NULL. */
json_collation json_collation_of(const json_val *options);

/* The ICU collator's version (ucol_getVersion; 153.120.0.0 for ICU 72's
 * root).  An index ordered under one version may be out of order under
 * another: CouchDB >= 3.3 records it in view headers and reports it in a
 * view's _info as "collator_versions" ("153.120").  DV_OK, or DV_ERR_IO
 * when ICU is unavailable. */
int json_collate_collator_version(uint8_t version[4]);

/* How many of the 128 ASCII code points the ICU-free path models (after a
 * successful init: all of them with ICU 72's root).  For tests and logs. */
int json_collate_ascii_modelled(void);

#endif
