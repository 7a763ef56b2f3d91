/* host: the IOMMU groups and VFIO devices the kernel shows in sysfs */
#pragma once

/*
 * host_scan() reads a sysfs tree (root configurable, so tests use real directory trees of
 * their own) and the /dev tree next to it. It never fails for what it finds odd: a missing
 * file, an unreadable link, garbage in reserved_regions, a device that vanishes mid-scan
 * each add a warning naming the path, and the device or group is left out whole (never half
 * registered). Only an unusable root (-ENOENT, -EACCES) is an error.
 *
 * A device is kept only together with its group and only if the group lists it, so every
 * device's group is in groups. Everything is read beneath the two roots: a link that leads
 * out of them is odd, not followed. Files are read up to 64 KiB.
 *
 * Errors: 0 or negative errno.
 */

#include <glib.h>
#include <stdint.h>

#include "core/iova.h"

typedef struct HostRegion {
        IovaRange range;
        char *type; /* "direct", "direct-relaxable", "reserved", "msi" */
} HostRegion;

typedef struct HostGroup {
        char *id;          /* "12" */
        char *type;        /* "DMA", "DMA-FQ", "identity", "blocked", "auto", or NULL */
        GArray *regions;   /* HostRegion */
        GPtrArray *members; /* char*: device names, sorted */
        char *vfio_node;   /* "/dev/vfio/12" when it exists, else NULL */
} HostGroup;

typedef struct HostDevice {
        char *name;        /* PCI address "0000:06:0d.0" or mdev UUID */
        char *bus;         /* "pci" or "mdev" */
        char *driver;      /* bound driver, NULL when none */
        uint16_t vendor_id, device_id;
        uint32_t class_code;
        char *group;       /* IOMMU group id, NULL when none */
        char *vfio_group_node; /* "/dev/vfio/12" when bound to a VFIO driver and present */
        /* (any driver bound to an mdev counts as a VFIO driver: mdevs exist for VFIO) */
        char *cdev_node;   /* "/dev/vfio/devices/vfio0" (6.6+), NULL when absent */
        char *parent;      /* mdev: the parent device's name */
} HostDevice;

typedef struct HostSnapshot {
        GHashTable *groups;   /* id -> HostGroup* */
        GHashTable *devices;  /* name -> HostDevice* */
        GPtrArray *warnings;  /* char*: "PATH: what is odd" */
} HostSnapshot;

/* sysfs_root: "/sys" normally; dev_root: "/dev". */
int host_scan(const char *sysfs_root, const char *dev_root, HostSnapshot **ret);
void host_snapshot_free(HostSnapshot *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HostSnapshot, host_snapshot_free)

/* A driver name that means the device is driven through VFIO. */
bool host_driver_is_vfio(const char *driver);
/*
 * The one answer to "is this a VFIO device", used by discovery, the kernel backend and the
 * libvirt checks alike: an mdev (bus "mdev") whatever its vendor driver (mtty, mdpy, mbochs,
 * a vendor's vGPU driver: an mdev exists to be driven through VFIO), any other device when
 * its driver is a VFIO driver (host_driver_is_vfio()). No driver: false.
 */
bool host_device_is_vfio(const char *bus, const char *driver);

/*
 * The IOMMU context of a set of devices: their groups, the members of those groups that are
 * not in the set (a multi-device group held only in part), and the valid IOVA space: the
 * aperture [0, UINT64_MAX] minus the union of the groups' reserved regions (inclusive ends).
 */
typedef struct HostContext {
        GPtrArray *groups;          /* char*, sorted */
        GPtrArray *outside_members; /* char*: "device (group N)" */
        GArray *iova_ranges;        /* IovaRange, normalized */
} HostContext;

/* -ENODEV for a device the snapshot does not have, -ENOENT for one without an IOMMU group. */
int host_context(const HostSnapshot *s, const char *const *devices, size_t n, HostContext **ret);
void host_context_free(HostContext *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HostContext, host_context_free)
