/* hotplug: tells the daemon, once per burst, that devices or IOMMU groups may have changed */
#pragma once

/*
 * A watch runs on the daemon's sd-event loop and never blocks it. It only notices; what
 * changed is for the caller to find out (a rescan): every event of a burst is collected and
 * the callback runs once, debounce_us after the burst's first event, with what was seen
 * ("pci add 0000:01:04.0", "sim device nic3 created"; at most HOTPLUG_WHAT_MAX lines, the
 * rest counted in the last one).
 *
 * Two sources:
 * - hotplug_watch_udev(): the host's PCI devices and their driver binds and unbinds, VFIO and
 *   mdev devices: an sd_device_monitor when systemd-udevd runs (udev's events, after its
 *   rules), else the kernel's own uevents on a NETLINK_KOBJECT_UEVENT socket, so a host
 *   without udevd (a container, a minimal guest) is watched too.
 * - hotplug_watch_dir(): a sim directory through inotify: a device file DIR/NAME.json that
 *   appears or goes away. The sim backend rewrites a file with a rename on every state change;
 *   those are not hotplug and are not reported.
 *
 * Errors: negative errno from the kernel or sd-event, passed up unchanged.
 */

#include <glib.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#define HOTPLUG_DEBOUNCE_US (100 * 1000)
#define HOTPLUG_WHAT_MAX    32

typedef struct HotplugWatch HotplugWatch;

/* Loop thread, once per burst. what: char*, owned by the watch (valid during the call). */
typedef void (*HotplugFunc)(const GPtrArray *what, void *userdata);

int hotplug_watch_udev(sd_event *event, uint64_t debounce_us, HotplugFunc func, void *userdata,
                       HotplugWatch **ret);
/* dir must exist. */
int hotplug_watch_dir(sd_event *event, const char *dir, uint64_t debounce_us, HotplugFunc func,
                      void *userdata, HotplugWatch **ret);
/* "udev", "kernel uevents" or "inotify on DIR": what the watch listens to, for the log. */
const char *hotplug_watch_source(const HotplugWatch *w);
void hotplug_watch_free(HotplugWatch *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HotplugWatch, hotplug_watch_free)
