/*
 * log.h — leveled logging to stderr, safe from any thread.
 *
 * One line per message, prefixed with an ISO-8601 UTC time and the level, as
 * CouchDB's log lines are.  The level is process-wide ([log] level in config).
 * Never pass secrets (passwords, cookies, tokens) to these functions.
 */
#ifndef DV_BASE_LOG_H
#define DV_BASE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_NOTICE = 2, LOG_WARN = 3, LOG_ERROR = 4, LOG_NONE = 5 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug", "info", "notice", "warning"/"warn", "error", "none"; -1 if unknown. */
int log_level_parse(const char *name);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
