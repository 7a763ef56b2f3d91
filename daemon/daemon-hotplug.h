/* daemon-hotplug: the daemon's answer to a host change: rescan, compare groups, report */
#pragma once

/*
 * daemon_watch_hotplug() starts the watch that fits the backend (host/hotplug.h): inotify on
 * the sim directory, udev (or the kernel's uevents) for the kernel backend on the real /sys.
 * A kernel backend on another --sysfs-root has no watch: no uevent describes a tree of files,
 * and Rescan is how such a tree is looked at again. Without a watch the daemon runs on, with
 * a warning.
 *
 * daemon_reevaluate() is the one re-evaluation, for the watch's bursts and for Rescan:
 * registry_reevaluate(), then through the manager (manager_report_host_change()) on the bus
 * GroupChanged per changed group, PropertiesChanged of Migratable and Blockers for each VM
 * whose hotplug blockers changed, DeviceCount when it changed; in the log, a warning per change and per new blocker. Returns the number of
 * devices known, or a negative errno with *error set (the rescan failed).
 */

#include <glib.h>

#include "daemon.h"

int daemon_watch_hotplug(Daemon *d, const DaemonOptions *options);
int daemon_reevaluate(Daemon *d, const char *why, GError **error);
