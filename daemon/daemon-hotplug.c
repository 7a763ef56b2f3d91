/* daemon-hotplug: the daemon's answer to a host change: rescan, compare groups, report */
#include "daemon-hotplug.h"

#include <errno.h>

#include "host/hotplug.h"
#include "log.h"
#include "model/manager.h"
#include "recovery.h"

static char *join(const GPtrArray *strings)
{
        g_autoptr(GString) s = g_string_new(NULL);

        for (guint i = 0; i < strings->len; i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "", (const char *)strings->pdata[i]);
        return g_string_free(g_steal_pointer(&s), FALSE);
}

static void log_change(const GroupChange *c)
{
        g_autofree char *added = join(c->added), *removed = join(c->removed), *vms = join(c->vms);

        log_warning("IOMMU group %s changed: joined: %s; left: %s; held by VM %s.", c->group,
                    *added ? added : "none", *removed ? removed : "none", vms);
}

/* The VM's hotplug blockers, as they stand now, into the log. */
static void log_vm_blockers(Daemon *d, const char *name)
{
        Vm *vm = registry_get_vm(d->registry, name);
        g_autoptr(PolicyDecision) dec = vm ? registry_decide(d->registry, vm, false) : NULL;
        bool any = false;

        for (size_t i = 0; dec && i < dec->n_blockers; i++) {
                const char *id = dec->blockers[i].id;
                if (!g_str_equal(id, "group-changed") && !g_str_equal(id, "device-removed"))
                        continue;
                log_warning("VM %s: %s: %s", name, id, dec->blockers[i].message);
                any = true;
        }
        if (vm && !any)
                log_notice("VM %s: its IOMMU groups and devices are as registered again; the "
                           "hotplug blockers are lifted.",
                           name);
}

int daemon_reevaluate(Daemon *d, const char *why, GError **error)
{
        size_t before = registry_n_devices(d->registry);
        g_autoptr(GroupWatchResult) res = NULL;

        res = registry_reevaluate(d->registry, error);
        if (!res)
                return -EIO;
        log_debug("Re-evaluated the host's IOMMU groups (%s): %u group change(s).", why,
                  res->changes->len);
        for (guint i = 0; i < res->gone->len; i++) {
                g_auto(GStrv) parts = g_strsplit(res->gone->pdata[i], "\t", 2);
                log_warning("VM %s: device %s was removed from the host; a sequence running on "
                            "the VM is cancelled and new ones are refused.",
                            parts[0], parts[1] ? parts[1] : "?");
        }
        for (guint i = 0; i < res->changes->len; i++)
                log_change(res->changes->pdata[i]);
        for (guint i = 0; i < res->vms_changed->len; i++)
                log_vm_blockers(d, res->vms_changed->pdata[i]);
        manager_report_host_change(&d->manager, res, registry_n_devices(d->registry) != before);
        /* A device a journal VM was waiting for may be back (recovery.h). */
        recovery_retry(d, why);
        return (int)registry_n_devices(d->registry);
}

static void on_hotplug(const GPtrArray *what, void *userdata)
{
        Daemon *d = userdata;
        g_autoptr(GError) error = NULL;
        g_autofree char *seen = join(what);

        log_info("Hotplug: %s.", seen);
        if (daemon_reevaluate(d, seen, &error) < 0)
                log_warning("Hotplug: cannot look at the host again: %s", error->message);
}

int daemon_watch_hotplug(Daemon *d, const DaemonOptions *o)
{
        const char *backend = registry_backend_name(d->registry);
        int r;

        if (g_str_equal(backend, "sim")) {
                r = hotplug_watch_dir(d->event, o->sim_dir, HOTPLUG_DEBOUNCE_US, on_hotplug, d,
                                      &d->hotplug);
        } else if (o->sysfs_root && !g_str_equal(o->sysfs_root, "/sys")) {
                log_info("Hotplug: no watch on --sysfs-root=%s (no uevent describes it); call "
                         "Rescan after changing it.",
                         o->sysfs_root);
                return 0;
        } else {
                r = hotplug_watch_udev(d->event, HOTPLUG_DEBOUNCE_US, on_hotplug, d, &d->hotplug);
        }
        if (r < 0) {
                log_warning("Hotplug: cannot watch the host for devices that come and go: %s; "
                            "call Rescan after a change.",
                            g_strerror(-r));
                return r;
        }
        log_info("Hotplug: watching %s.", hotplug_watch_source(d->hotplug));
        return 0;
}
