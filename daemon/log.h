/* log: leveled logging to stderr, read by journald with sd-daemon priority prefixes */
#pragma once

/*
 * Under systemd (JOURNAL_STREAM set) each line starts "<N>" so the journal keeps the
 * priority; on a terminal it starts with the level name. Thread-safe: one write per line.
 */

#include <syslog.h>

void log_set_max_level(int priority);
int log_get_max_level(void);
/* "err", "warning", "notice", "info", "debug" or a number; -EINVAL otherwise. */
int log_level_from_string(const char *s, int *ret);
void log_full(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
