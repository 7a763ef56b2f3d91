/* crash-point: named places where a test build can make the daemon die, one at a time */
#include "crash-point.h"

#ifdef VFIO_MIGD_CRASH_POINTS

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"

static unsigned long crash_at, fill_at; /* 0: never */
static const char *arm_file, *fill_file, *only_name;
static bool crash_count;
static gsize configured;
static gint reached;

static unsigned long env_number(const char *name)
{
        const char *v = g_getenv(name);

        return v ? strtoul(v, NULL, 10) : 0;
}

static void crash_point_configure(void)
{
        const char *count = g_getenv("VFIO_MIGD_CRASH_COUNT");

        crash_at = env_number("VFIO_MIGD_CRASH_AT");
        fill_at = env_number("VFIO_MIGD_CRASH_FILL_AT");
        fill_file = g_getenv("VFIO_MIGD_CRASH_FILL_FILE");
        arm_file = g_getenv("VFIO_MIGD_CRASH_ARM");
        only_name = g_getenv("VFIO_MIGD_CRASH_NAME");
        crash_count = count && g_strcmp0(count, "0") != 0;
}

/* A full disk at an exact point: a file that grows until the file system says no. */
static void fill(unsigned long n, const char *name)
{
        static const char zeros[4096];
        int fd = open(fill_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

        if (fd < 0) {
                log_error("crash point %lu: %s: cannot fill %s: %s", n, name, fill_file,
                          g_strerror(errno));
                return;
        }
        while (write(fd, zeros, sizeof(zeros)) > 0)
                ;
        close(fd);
        log_notice("crash point %lu: %s: filled %s", n, name, fill_file);
}

void crash_point(const char *name)
{
        unsigned long n;

        if (g_once_init_enter(&configured)) {
                crash_point_configure();
                g_once_init_leave(&configured, 1);
        }
        if (!crash_at && !crash_count && !fill_at)
                return;
        /* Armed by the test only around the operation it walks. */
        if (arm_file && access(arm_file, F_OK) != 0)
                return;
        if (only_name && g_strcmp0(name, only_name) != 0)
                return;
        n = (unsigned long)g_atomic_int_add(&reached, 1) + 1;
        if (crash_at && n == crash_at) {
                log_notice("crash point %lu: %s: aborting", n, name);
                abort();
        }
        if (fill_at && n == fill_at && fill_file)
                fill(n, name);
        if (crash_count)
                log_notice("crash point %lu: %s", n, name);
}

#endif
