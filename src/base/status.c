/*
 * status.c — names of status codes, for logs and test failure messages.
 */
#include "base/status.h"

const char *dv_strerror(int status)
{
    switch (status) {
    case DV_OK: return "ok";
    case DV_ERR_IO: return "io error";
    case DV_ERR_CORRUPT: return "corrupt";
    case DV_ERR_NOMEM: return "out of memory";
    case DV_ERR_NOTFOUND: return "not found";
    case DV_ERR_CONFLICT: return "conflict";
    case DV_ERR_INVALID: return "invalid";
    case DV_ERR_EXISTS: return "exists";
    case DV_ERR_TOO_LARGE: return "too large";
    case DV_ERR_CLOSED: return "closed";
    case DV_ERR_BUSY: return "busy";
    case DV_ERR_MISSING_STUB: return "missing stub";
    case DV_ERR_TIMEOUT: return "timeout";
    }
    return "unknown error";
}
