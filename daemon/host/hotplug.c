/* hotplug: tells the daemon, once per burst, that devices or IOMMU groups may have changed */
#include "host/hotplug.h"

#include <errno.h>
#include <linux/netlink.h>
#include <stdbool.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>
#include <systemd/sd-device.h>

#include "log.h"
#include "util.h"

/* The subsystems whose events can change a device list or an IOMMU group. */
static const char *const watched_subsystems[] = {"pci", "vfio", "mdev", "iommu_group"};

struct HotplugWatch {
        sd_event *event;
        uint64_t debounce_us;
        HotplugFunc func;
        void *userdata;
        char *source;

        sd_event_source *timer; /* the pending burst; NULL when none */
        GPtrArray *what;        /* char*: the burst so far */
        unsigned dropped;       /* events of the burst beyond HOTPLUG_WHAT_MAX */

        sd_device_monitor *monitor; /* udev */
        sd_event_source *io;        /* kernel uevents or inotify */
        int fd;
        sd_event_source *quiet; /* inotify: reading paused until it fires */
        char *dir;         /* inotify: the sim directory */
        GHashTable *names; /* inotify: device names present, to tell rewrites from hotplug */
};

static int on_debounce(sd_event_source *s, uint64_t usec, void *userdata)
{
        HotplugWatch *w = userdata;
        g_autoptr(GPtrArray) what = g_steal_pointer(&w->what);

        w->timer = sd_event_source_disable_unref(w->timer);
        w->what = g_ptr_array_new_with_free_func(g_free);
        if (w->dropped)
                g_ptr_array_add(what, g_strdup_printf("and %u more", w->dropped));
        w->dropped = 0;
        w->func(what, w->userdata);
        return 0;
}

/* Records one event; the first of a burst arms the timer. */
static void watch_note(HotplugWatch *w, char *what)
{
        int r;

        log_debug("hotplug: %s", what);
        if (w->what->len < HOTPLUG_WHAT_MAX)
                g_ptr_array_add(w->what, what);
        else {
                w->dropped++;
                g_free(what);
        }
        if (w->timer)
                return;
        r = sd_event_add_time_relative(w->event, &w->timer, CLOCK_MONOTONIC, w->debounce_us, 0,
                                       on_debounce, w);
        if (r < 0) {
                /* Without a timer, at once: a lost re-evaluation would hide a change. */
                log_warning("hotplug: cannot arm the debounce timer: %s; re-evaluating now.",
                            g_strerror(-r));
                (void)on_debounce(NULL, 0, w);
                return;
        }
        (void)sd_event_source_set_description(w->timer, "hotplug-debounce");
}

static HotplugWatch *watch_new(sd_event *event, uint64_t debounce_us, HotplugFunc func,
                               void *userdata)
{
        HotplugWatch *w = g_new0(HotplugWatch, 1);

        w->event = sd_event_ref(event);
        w->debounce_us = debounce_us;
        w->func = func;
        w->userdata = userdata;
        w->what = g_ptr_array_new_with_free_func(g_free);
        w->fd = -1;
        return w;
}

void hotplug_watch_free(HotplugWatch *w)
{
        if (!w)
                return;
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->quiet);
        sd_device_monitor_unref(w->monitor);
        closep(&w->fd);
        if (w->names)
                g_hash_table_destroy(w->names);
        g_ptr_array_unref(w->what);
        g_free(w->dir);
        g_free(w->source);
        sd_event_unref(w->event);
        g_free(w);
}

const char *hotplug_watch_source(const HotplugWatch *w)
{
        return w->source;
}

/* ---- udev ---- */

static const char *action_name(sd_device_action_t a)
{
        static const char *const names[] = {
            [SD_DEVICE_ADD] = "add",       [SD_DEVICE_REMOVE] = "remove",
            [SD_DEVICE_CHANGE] = "change", [SD_DEVICE_MOVE] = "move",
            [SD_DEVICE_ONLINE] = "online", [SD_DEVICE_OFFLINE] = "offline",
            [SD_DEVICE_BIND] = "bind",     [SD_DEVICE_UNBIND] = "unbind",
        };

        return a >= 0 && (size_t)a < G_N_ELEMENTS(names) && names[a] ? names[a] : "event";
}

static bool subsystem_watched(const char *subsystem)
{
        for (size_t i = 0; subsystem && i < G_N_ELEMENTS(watched_subsystems); i++)
                if (strcmp(subsystem, watched_subsystems[i]) == 0)
                        return true;
        return false;
}

static char *describe_event(const char *subsystem, const char *action, const char *name,
                            const char *driver)
{
        return g_strdup_printf("%s %s %s%s%s%s", subsystem, action, name, driver ? " (" : "",
                               driver ? driver : "", driver ? ")" : "");
}

static int on_udev_event(sd_device_monitor *m, sd_device *device, void *userdata)
{
        const char *subsystem = NULL, *name = NULL, *driver = NULL;
        sd_device_action_t action = _SD_DEVICE_ACTION_INVALID;

        (void)sd_device_get_subsystem(device, &subsystem);
        (void)sd_device_get_sysname(device, &name);
        (void)sd_device_get_driver(device, &driver);
        (void)sd_device_get_action(device, &action);
        /* "change" and the others say nothing about membership or drivers. */
        if (action != SD_DEVICE_ADD && action != SD_DEVICE_REMOVE && action != SD_DEVICE_BIND &&
            action != SD_DEVICE_UNBIND && action != SD_DEVICE_MOVE)
                return 0;
        watch_note(userdata, describe_event(subsystem ? subsystem : "?", action_name(action),
                                            name ? name : "?", driver));
        return 0;
}

static int watch_udev_monitor(HotplugWatch *w)
{
        int r;

        r = sd_device_monitor_new(&w->monitor);
        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(watched_subsystems); i++)
                r = sd_device_monitor_filter_add_match_subsystem_devtype(
                    w->monitor, watched_subsystems[i], NULL);
        if (r >= 0)
                r = sd_device_monitor_attach_event(w->monitor, w->event);
        if (r >= 0)
                (void)sd_device_monitor_set_description(w->monitor, "hotplug-udev");
        if (r >= 0)
                r = sd_device_monitor_start(w->monitor, on_udev_event, w);
        if (r >= 0)
                w->source = g_strdup("udev");
        return r;
}

/* A kernel uevent: "ACTION@DEVPATH\0KEY=VALUE\0...". */
static void kernel_uevent(HotplugWatch *w, const char *buf, size_t len)
{
        const char *action = NULL, *subsystem = NULL, *devpath = NULL, *driver = NULL;
        const char *end = buf + len, *slash;

        if (!memchr(buf, '@', strnlen(buf, len)))
                return; /* not the kernel's format (udev's own "libudev" messages) */
        for (const char *p = buf + strnlen(buf, len) + 1; p < end; p += strnlen(p, end - p) + 1) {
                if (g_str_has_prefix(p, "ACTION="))
                        action = p + strlen("ACTION=");
                else if (g_str_has_prefix(p, "SUBSYSTEM="))
                        subsystem = p + strlen("SUBSYSTEM=");
                else if (g_str_has_prefix(p, "DEVPATH="))
                        devpath = p + strlen("DEVPATH=");
                else if (g_str_has_prefix(p, "DRIVER="))
                        driver = p + strlen("DRIVER=");
        }
        if (!action || !devpath || !subsystem_watched(subsystem))
                return;
        if (strcmp(action, "add") != 0 && strcmp(action, "remove") != 0 &&
            strcmp(action, "bind") != 0 && strcmp(action, "unbind") != 0 &&
            strcmp(action, "move") != 0)
                return;
        slash = strrchr(devpath, '/');
        watch_note(w, describe_event(subsystem, action, slash ? slash + 1 : devpath, driver));
}

static int on_kernel_uevents(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        char buf[8192];

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == ENOBUFS) {
                                /* Events were lost: re-evaluate all the same. */
                                watch_note(userdata, g_strdup("uevents lost (ENOBUFS)"));
                                continue;
                        }
                        if (errno != EAGAIN && errno != EINTR)
                                log_warning("hotplug: reading kernel uevents: %s",
                                            g_strerror(errno));
                        return 0;
                }
                buf[n] = '\0';
                kernel_uevent(userdata, buf, (size_t)n);
        }
}

static int watch_kernel_uevents(HotplugWatch *w)
{
        struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = 1 /* the kernel's */};
        int r;

        w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
        if (w->fd < 0)
                return -errno;
        if (bind(w->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                return -errno;
        r = sd_event_add_io(w->event, &w->io, w->fd, EPOLLIN, on_kernel_uevents, w);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(w->io, "hotplug-uevents");
        w->source = g_strdup("kernel uevents");
        return 0;
}

int hotplug_watch_udev(sd_event *event, uint64_t debounce_us, HotplugFunc func, void *userdata,
                       HotplugWatch **ret)
{
        g_autoptr(HotplugWatch) w = watch_new(event, debounce_us, func, userdata);
        int r;

        /* udevd's control socket: without udevd, udev's multicast group stays silent. */
        if (access("/run/udev/control", F_OK) == 0)
                r = watch_udev_monitor(w);
        else
                r = watch_kernel_uevents(w);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&w);
        return 0;
}

/* ---- a sim directory ---- */

/* NAME for DIR/NAME.json; NULL for the sim backend's temporary and lock files. */
static char *sim_device_name(const char *file)
{
        if (!file || file[0] == '.' || !g_str_has_suffix(file, ".json"))
                return NULL;
        return g_strndup(file, strlen(file) - strlen(".json"));
}

static int dir_list(HotplugWatch *w);
static void dir_resync(HotplugWatch *w);

static void dir_event(HotplugWatch *w, const struct inotify_event *ev)
{
        g_autofree char *name = sim_device_name(ev->len ? ev->name : NULL);
        g_autofree char *path = NULL;
        bool exists;

        if (ev->mask & IN_Q_OVERFLOW) {
                watch_note(w, g_strdup("inotify queue overflow"));
                dir_resync(w);
                return;
        }
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
                watch_note(w, g_strdup_printf("sim directory %s went away", w->dir));
                return;
        }
        if (!name || !(ev->mask & (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM)))
                return;
        /* What the directory holds now decides, not the event: the sim backend swaps a new
         * version in with RENAME_EXCHANGE, which reports the file as moved away and back. */
        path = g_strdup_printf("%s/%s", w->dir, ev->name);
        exists = access(path, F_OK) == 0;
        if (exists && !g_hash_table_contains(w->names, name)) {
                watch_note(w, g_strdup_printf("sim device %s created", name));
                g_hash_table_add(w->names, g_steal_pointer(&name));
        } else if (!exists && g_hash_table_remove(w->names, name)) {
                watch_note(w, g_strdup_printf("sim device %s removed", name));
        }
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* The quiet period is over: read what queued up meanwhile, then listen again. */
static int on_quiet(sd_event_source *s, uint64_t usec, void *userdata)
{
        HotplugWatch *w = userdata;

        w->quiet = sd_event_source_disable_unref(w->quiet);
        (void)sd_event_source_set_enabled(w->io, SD_EVENT_ON);
        return on_inotify(w->io, w->fd, EPOLLIN, w);
}

/*
 * Every state change of a sim device rewrites its file, so a sequence makes the directory
 * report two events per device and arc. Woken for each, the loop would spend its time here
 * while it should be answering the bus: after a read, reading pauses for
 * HOTPLUG_DIR_QUIET_US and the kernel queues what comes meanwhile (an overflow makes the
 * watch list the directory again). A real hotplug is still seen, one quiet period later.
 */
#define HOTPLUG_DIR_QUIET_US (50 * 1000)

static void pause_reading(HotplugWatch *w)
{
        int r;

        if (w->quiet)
                return;
        r = sd_event_add_time_relative(w->event, &w->quiet, CLOCK_MONOTONIC, HOTPLUG_DIR_QUIET_US,
                                       0, on_quiet, w);
        if (r < 0)
                return; /* keep reading at once */
        (void)sd_event_source_set_description(w->quiet, "hotplug-inotify-quiet");
        (void)sd_event_source_set_enabled(w->io, SD_EVENT_OFF);
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool any = false;

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));

                if (n <= 0) {
                        if (n < 0 && errno != EAGAIN && errno != EINTR)
                                log_warning("hotplug: reading inotify events: %s",
                                            g_strerror(errno));
                        if (any)
                                pause_reading(userdata);
                        return 0;
                }
                any = true;
                for (char *p = buf; p < buf + n;) {
                        const struct inotify_event *ev = (const struct inotify_event *)p;

                        dir_event(userdata, ev);
                        p += sizeof(*ev) + ev->len;
                }
        }
}

/* The device files present now, so later renames over them are not taken for new devices. */
static int dir_list(HotplugWatch *w)
{
        g_autoptr(GError) error = NULL;
        const char *entry;
        GDir *gd = g_dir_open(w->dir, 0, &error);

        if (!gd)
                return -(error->code == G_FILE_ERROR_NOENT ? ENOENT : EIO);
        while ((entry = g_dir_read_name(gd))) {
                char *name = sim_device_name(entry);
                if (name)
                        g_hash_table_add(w->names, name);
        }
        g_dir_close(gd);
        return 0;
}

/* After lost events: what the directory holds now against what the watch knew. */
static void dir_resync(HotplugWatch *w)
{
        g_autoptr(GHashTable) old = g_steal_pointer(&w->names);
        GHashTableIter it;
        gpointer key;

        w->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        if (dir_list(w) < 0)
                return; /* the directory went: the re-evaluation notices */
        g_hash_table_iter_init(&it, w->names);
        while (g_hash_table_iter_next(&it, &key, NULL))
                if (!g_hash_table_contains(old, key))
                        watch_note(w, g_strdup_printf("sim device %s created", (char *)key));
        g_hash_table_iter_init(&it, old);
        while (g_hash_table_iter_next(&it, &key, NULL))
                if (!g_hash_table_contains(w->names, key))
                        watch_note(w, g_strdup_printf("sim device %s removed", (char *)key));
}

int hotplug_watch_dir(sd_event *event, const char *dir, uint64_t debounce_us, HotplugFunc func,
                      void *userdata, HotplugWatch **ret)
{
        g_autoptr(HotplugWatch) w = watch_new(event, debounce_us, func, userdata);
        int r;

        w->dir = g_strdup(dir);
        w->names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (w->fd < 0)
                return -errno;
        /* Watched before it is listed: a device made in between is seen either way. */
        if (inotify_add_watch(w->fd, dir,
                              IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF |
                                  IN_MOVE_SELF | IN_ONLYDIR) < 0)
                return -errno;
        r = dir_list(w);
        if (r < 0)
                return r;
        r = sd_event_add_io(event, &w->io, w->fd, EPOLLIN, on_inotify, w);
        if (r < 0)
                return r;
        (void)sd_event_source_set_description(w->io, "hotplug-inotify");
        w->source = g_strdup_printf("inotify on %s", dir);
        *ret = g_steal_pointer(&w);
        return 0;
}
