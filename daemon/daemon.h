/* daemon: the vfio-migd process: event loop, bus connection, registry, options */
#pragma once

/*
 * daemon_new() loads the policy (an invalid one is -EINVAL unless allow_default_policy),
 * opens the backend, connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS
 * selects another one, as the tests do), registers every object and only then requests
 * the bus name, so a caller woken by the name finds the whole API. daemon_run() tells
 * systemd READY=1 and runs the loop until SIGTERM or SIGINT.
 *
 * Stopping: the first SIGTERM/SIGINT makes every changing method fail with Busy (reads go
 * on), then the daemon waits for running sequences, whose callers still get their replies
 * and whose signals still go out under the bus name; the loop exits once none runs.
 * Sequences are bounded by their phase deadlines, so this ends; a device that hangs past
 * cancel is left to its worker and does not hold the exit up. Losing the bus connection is
 * different: nobody can call or hear the daemon, so it exits at once with a failure
 * (daemon_run() returns -ENOTCONN), whatever runs; the crash journal leaves the VMs to the
 * recovery of the next start.
 *
 * Errors: negative errno, with a GError sentence from daemon_new().
 */

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus/bus-util.h"
#include "model/manager.h"
#include "registry.h"
#include "vm.h"

typedef struct DaemonOptions {
        const char *backend; /* "sim" or "kernel" */
        const char *sim_dir;
        const char *sysfs_root; /* kernel backend; default /sys */
        const char *dev_root;   /* kernel backend; default /dev */
        const char *operator_group; /* NULL: root only */
        VmOptions vm_defaults;
        const char *policy_file;    /* default /etc/vfio-migd/policy.json */
        const char *policy_dir;     /* default /etc/vfio-migd/policy.d */
        bool allow_default_policy;  /* run with built-in defaults when the policy is invalid */
        const char *state_dir;      /* the crash journal's directory; default /var/lib/vfio-migd */
        const char *libvirt_uri;    /* NULL: no libvirt connection (--libvirt-uri=none) */
        uint32_t stop_timeout_ms;   /* SIGTERM: how long aborted sequences may take; 0: default */
} DaemonOptions;

/* Below the unit's TimeoutStopSec=90s, so the daemon exits before systemd kills it. */
#define DAEMON_STOP_TIMEOUT_DEFAULT_MS UINT32_C(60000)
#define DAEMON_STOP_TIMEOUT_MAX_MS     UINT32_C(3600000)

typedef struct Daemon {
        sd_event *event;
        sd_bus *bus;
        Registry *registry;
        Manager manager; /* registration and rescan over the registry (model/manager.h) */
        BusAuth auth;
        bool stopping;
        uint32_t stop_timeout_ms;
        sd_event_source *stop_timer; /* SIGTERM: the bound on waiting for aborted sequences */
        bool abandon_sequences;      /* that bound passed: exit without joining them */
        bool bus_lost;    /* the bus connection is gone: daemon_run() returns -ENOTCONN */
        GPtrArray *slots; /* sd_bus_slot*: every vtable, enumerator and match */
        char *policy_file, *policy_dir;
        char **policy_files; /* the files of the policy in force, in order */
        char *state_dir;     /* the crash journal's directory */
        struct Recovery *recovery; /* the journal and what the start recovered (recovery.h) */
        struct HotplugWatch *hotplug; /* devices that come and go (daemon-hotplug.h), or NULL */
        char *libvirt_uri;   /* NULL: libvirt is off */
        struct LvTracker *libvirt; /* libvirt domains as VMs (bus/bus-libvirt.h), or NULL */
        struct Offload *offload;   /* long pure work off the loop (offload.h): XML parsing */
} Daemon;

int daemon_new(const DaemonOptions *options, Daemon **ret, GError **error);
/*
 * Reads the policy files again and puts them in force; on any error the policy in force stays
 * and *error names the file, line and column. Logs either way. -EINVAL for a bad policy.
 */
int daemon_reload_policy(Daemon *d, GError **error);

/*
 * Returns 0 after a clean stop, else the loop's negative errno; -ENOTCONN when the bus
 * connection was lost: then the caller exits at once with a failure (no daemon_free(), which
 * would wait for running sequences), so systemd restarts the daemon and recovery takes over.
 */
int daemon_run(Daemon *d);
void daemon_free(Daemon *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Daemon, daemon_free)

/* Called by the bus layer when a sequence's reply went out: a stopping daemon exits once
 * no sequence runs. */
void daemon_sequence_finished(Daemon *d);
