/* crash-point: named places where a test build can make the daemon die, one at a time */
#include "crash-point.h"

#ifdef VFIO_MIGD_CRASH_POINTS

#include <glib.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"

static unsigned long crash_at; /* 0: never */
static bool crash_count;
static gsize configured;
static gint reached;

static void crash_point_configure(void)
{
        const char *at = g_getenv("VFIO_MIGD_CRASH_AT");
        const char *count = g_getenv("VFIO_MIGD_CRASH_COUNT");

        crash_at = at ? strtoul(at, NULL, 10) : 0;
        crash_count = count && g_strcmp0(count, "0") != 0;
}

void crash_point(const char *name)
{
        unsigned long n;

        if (g_once_init_enter(&configured)) {
                crash_point_configure();
                g_once_init_leave(&configured, 1);
        }
        if (!crash_at && !crash_count)
                return;
        n = (unsigned long)g_atomic_int_add(&reached, 1) + 1;
        if (crash_at && n == crash_at) {
                log_notice("crash point %lu: %s: aborting", n, name);
                abort();
        }
        if (crash_count)
                log_notice("crash point %lu: %s", n, name);
}

#endif
