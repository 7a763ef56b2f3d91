/* log: leveled logging to stderr, read by journald with sd-daemon priority prefixes */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int max_level = LOG_INFO;

void log_set_max_level(int priority)
{
        max_level = priority;
}

int log_get_max_level(void)
{
        return max_level;
}

static const char *const level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
        [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
        [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s, int *ret)
{
        char *end;
        long v;

        for (int i = 0; i <= LOG_DEBUG; i++)
                if (strcasecmp(s, level_names[i]) == 0) {
                        *ret = i;
                        return 0;
                }
        v = strtol(s, &end, 10);
        if (*s && !*end && v >= 0 && v <= LOG_DEBUG) {
                *ret = (int)v;
                return 0;
        }
        return -EINVAL;
}

void log_full(int priority, const char *fmt, ...)
{
        char line[4096];
        int off;
        va_list ap;
        int saved_errno = errno;

        if (priority > max_level)
                return;
        if (getenv("JOURNAL_STREAM"))
                off = snprintf(line, sizeof(line), "<%d>", priority);
        else
                off = snprintf(line, sizeof(line), "vfio-migd[%s]: ", level_names[priority & 7]);
        va_start(ap, fmt);
        vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
        va_end(ap);
        off = (int)strlen(line);
        line[off++] = '\n';
        /* One write per line keeps lines from threads whole. */
        (void)!write(STDERR_FILENO, line, (size_t)off);
        errno = saved_errno;
}
