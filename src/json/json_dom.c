/*
 * json_dom.c — reading a parsed document: lookups and number conversion.
 *
 * Member lookup is a linear walk comparing lengths before bytes.  CouchDB
 * documents rarely have more than a few dozen top-level members, where this
 * beats building a hash index per object; a handler that looks up many names
 * in one huge object should iterate once instead.  Shadowed duplicates are
 * skipped, so the first visible match is the only one (last-wins semantics
 * are settled at parse time).
 *
 * Numbers stay text until asked for; conversion never changes the stored
 * text, so a value too big for int64/double still serialises unchanged.
 * json_get_double uses strtod, hence the C locale's '.' decimal point: divan
 * never calls setlocale(LC_NUMERIC).
 */
#include "json/json.h"

#include "base/status.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool json_str_eq(const json_val *v, const char *s)
{
    size_t n = strlen(s);
    return json_is_string(v) && v->len == n && memcmp(v->str, s, n) == 0;
}

const json_val *json_object_get(const json_val *obj, const char *name, size_t name_len)
{
    if (!json_is_object(obj))
        return NULL;
    json_iter it = json_iter_begin(obj);
    const json_val *k, *v;
    while (json_iter_member(&it, &k, &v))
        if (k->len == name_len && memcmp(k->str, name, name_len) == 0)
            return v;
    return NULL;
}

const json_val *json_object_get_cstr(const json_val *obj, const char *name)
{
    return json_object_get(obj, name, strlen(name));
}

const json_val *json_array_get(const json_val *arr, size_t i)
{
    if (!json_is_array(arr) || i >= arr->len)
        return NULL;
    json_iter it = json_iter_begin(arr);
    const json_val *e = NULL;
    for (size_t k = 0; k <= i; k++)
        json_iter_elem(&it, &e);
    return e;
}

int json_get_i64(const json_val *v, int64_t *out)
{
    if (!json_is_number(v))
        return DV_ERR_INVALID;
    const char *s = v->str, *end = v->str + v->len;
    int neg = 0;
    if (s < end && *s == '-') {
        neg = 1;
        s++;
    }
    /* magnitude limit: 2^63 for negatives, 2^63-1 otherwise */
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    int too_big = 0;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return DV_ERR_INVALID; /* fraction or exponent: not integer syntax */
        unsigned d = (unsigned)(*s - '0');
        if (acc > (limit - d) / 10)
            too_big = 1;
        else
            acc = acc * 10 + d;
    }
    if (too_big)
        return DV_ERR_TOO_LARGE;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return DV_OK;
}

int json_get_double(const json_val *v, double *out)
{
    if (!json_is_number(v))
        return DV_ERR_INVALID;
    char local[64], *tmp = local;
    if (v->len >= sizeof local) {
        tmp = malloc((size_t)v->len + 1);
        if (!tmp)
            return DV_ERR_NOMEM;
    }
    memcpy(tmp, v->str, v->len);
    tmp[v->len] = '\0';
    errno = 0;
    double d = strtod(tmp, NULL);
    int overflow = errno == ERANGE && isinf(d);
    if (tmp != local)
        free(tmp);
    if (overflow)
        return DV_ERR_TOO_LARGE;
    *out = d;
    return DV_OK;
}
