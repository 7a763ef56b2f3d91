/* group-watch: each VM's IOMMU groups as they were at registration, and what changed since */
#pragma once

/*
 * Model only: no I/O of its own and nothing of D-Bus. The registry adds a VM when it registers
 * it (the groups' members are read then: the baseline) and removes it when it goes, and after
 * every look at the host (a rescan from the hotplug watch or the Rescan method) asks
 * group_watch_evaluate() what changed. The host is seen through GroupWatchHost.
 *
 * What a VM is blamed for, until it is registered again (or the change is undone):
 *   "group-changed"   a device joined one of its groups after it was registered (a device
 *                     hot-added into a group in use can DMA into the VM's context), or one of
 *                     its devices left its VFIO driver (bound to a host driver or unbound)
 *   "device-removed"  one of its devices is gone from the host (sticky: a device that comes
 *                     back is a new device; the VM holds the old one)
 *
 * Errors: none; the functions cannot fail.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct GroupWatchHost {
        /* The group's members that take part now, sorted (new, char*); empty when the group
         * is gone. */
        GPtrArray *(*members)(const char *group, void *userdata);
        /* A device now: 0 on the driver it was registered with; 1 when present on another
         * driver (*ret_driver new, NULL when unbound); -ENODEV when the host has it no more. */
        int (*device_status)(const char *device, const char *registered_driver, char **ret_driver,
                             void *userdata);
        void *userdata;
} GroupWatchHost;

typedef struct GroupWatchBlocker {
        char *id;      /* "group-changed", "device-removed" */
        char *device;  /* the device it is about */
        char *message; /* a sentence naming device, group, VM and what to do */
} GroupWatchBlocker;

/* Members of a group that changed since the last evaluation, and the VMs holding it. */
typedef struct GroupChange {
        char *group;
        GPtrArray *added;   /* char*, sorted */
        GPtrArray *removed; /* char*, sorted */
        GPtrArray *vms;     /* char*, sorted */
} GroupChange;

/* What one evaluation found. */
typedef struct GroupWatchResult {
        GPtrArray *changes;     /* GroupChange* */
        GPtrArray *vms_changed; /* char*: VMs whose blockers changed */
        GPtrArray *gone;        /* char*: "VM\tDEVICE" for devices newly gone */
} GroupWatchResult;

typedef struct GroupWatch GroupWatch;

GroupWatch *group_watch_new(void);
void group_watch_free(GroupWatch *gw);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GroupWatch, group_watch_free)

/* The VM's devices with their IOMMU groups (NULL: none) and drivers, as registered; the
 * groups' members are read now through host. Replaces a VM of the same name. */
void group_watch_add_vm(GroupWatch *gw, const char *vm, const char *const *devices,
                        const char *const *groups, const char *const *drivers, size_t n,
                        const GroupWatchHost *host);
void group_watch_remove_vm(GroupWatch *gw, const char *vm);

/* Compares the host now with each VM's baseline and with the last evaluation. */
GroupWatchResult *group_watch_evaluate(GroupWatch *gw, const GroupWatchHost *host);
void group_watch_result_free(GroupWatchResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GroupWatchResult, group_watch_result_free)

/* The VM's blockers after the last evaluation (GroupWatchBlocker, owned by gw); NULL when
 * there are none or the VM is unknown. */
const GArray *group_watch_blockers(const GroupWatch *gw, const char *vm);
