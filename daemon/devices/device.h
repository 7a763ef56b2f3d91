/* device: one migratable device behind a backend's ops table */
#pragma once

/*
 * Errors: every int-returning function returns 0 or a negative errno, passed up unchanged
 * from the backend. A Device is reference counted and safe to use from several threads as
 * long as only one thread drives its state at a time (the sequencer guarantees that).
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/mig-state.h"

typedef struct Device Device;
typedef struct Backend Backend;

typedef struct DeviceInfo {
        char *name;        /* unique within the backend: sim name, PCI address, mdev UUID */
        char *driver;      /* e.g. "mlx5_vfio_pci" */
        char *iommu_group; /* IOMMU group (or sim context) label; NULL if unknown */
        uint16_t vendor_id;
        uint16_t device_id;
        uint32_t migration_flags; /* MIG_FLAG_*; 0: the device cannot migrate */
        /* Not learned yet (read with __atomic): the kernel backend learns the flags when it
         * first opens the device, and does not open a free device to read them. */
        bool flags_unknown;
} DeviceInfo;

typedef struct DeviceOps {
        /* VFIO_DEVICE_FEATURE_MIGRATION: refreshes info.migration_flags as well. */
        int (*query_flags)(Device *d, uint32_t *ret_flags);
        /* VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE GET. */
        int (*get_state)(Device *d, enum mig_state *ret_state);
        /*
         * VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE SET: the backend walks the kernel's path
         * (mig_path) to target. *ret_data_fd is set to a new fd owned by the caller when
         * the walk contains an arc that opens a data session (mig_arc_opens_data_fd),
         * else to -1. On failure the device may be in the original state, any state on
         * the path or ERROR: callers ask get_state.
         */
        int (*set_state)(Device *d, enum mig_state target, int *ret_data_fd);
        /* VFIO_DEVICE_RESET: leaves the device RUNNING with its state discarded. */
        int (*reset)(Device *d);
        /* Optional (may be NULL): make a blocked set_state return -ECANCELED promptly. */
        void (*cancel)(Device *d);
        /*
         * Optional: a sentence saying why the last failed op failed where the errno alone
         * would not (which file is not a device node, that another process holds the VFIO
         * group) and what would fix it; NULL when there is nothing to add. Caller frees.
         */
        char *(*describe_error)(Device *d);
        /* Release backend resources; called once when the last reference goes. */
        void (*close)(Device *d);
} DeviceOps;

struct Device {
        const DeviceOps *ops;
        DeviceInfo info;
        void *backend_data;
        gint refcount;
        gint gone; /* the host no longer has the device (device_set_gone()) */
};

struct Backend {
        const char *name; /* "sim", "kernel" */
        /*
         * Opening a device takes what another process needs (the kernel backend: its VFIO
         * group, which one process at a time may hold, and the VMM opens it when the VM
         * starts). The registry then never opens a device that no VM holds just to read it.
         */
        bool open_claims_device;
        /* Names of the devices this backend can open now, sorted; caller frees (g_ptr_array_unref). */
        int (*enumerate)(Backend *b, GPtrArray **ret_names);
        /* -ENOENT: no such device; -EBUSY: held by another user. */
        int (*open_device)(Backend *b, const char *name, Device **ret);
        void (*free)(Backend *b);
        void *data;

        /* The ops below are optional (NULL in the sim backend). */

        /*
         * The members of an IOMMU group that take part in it, whatever their driver, sorted
         * (char*; caller frees); -ENOENT for an unknown group. A member bound to a host driver
         * is not one of the backend's devices, yet it shares the group: without this a group
         * held in part would look whole. Members that do no DMA of their own (bridges,
         * unbound devices) are left out.
         */
        int (*group_members)(Backend *b, const char *group, GPtrArray **ret);
        /*
         * The valid IOVA space of the IOMMU context of devs (IovaRange, normalized) and
         * sentences about it, such as the kernel's view differing from sysfs (char*); both new,
         * caller frees. NULL op: the whole 64-bit space and no warnings.
         */
        int (*iova_context)(Backend *b, Device *const *devs, size_t n, GArray **ret_ranges,
                            GPtrArray **ret_warnings);
        /* -EINVAL with a sentence naming d when fd cannot be d's device fd. */
        int (*check_device_fd)(Device *d, int fd, GError **error);
        /* fd (taken over, closed on error) becomes d's device fd; -EBUSY: d has one already. */
        int (*adopt_device_fd)(Device *d, int fd, GError **error);
        /*
         * The host's view of a device the backend may no longer list (hotplug): 0 with the
         * driver bound now (*ret_driver new, NULL when unbound), -ENOENT when the host has no
         * such device. NULL op: a device the backend does not list is gone.
         */
        int (*host_device)(Backend *b, const char *name, char **ret_driver);
};

Device *device_ref(Device *d);
void device_unref(Device *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Device, device_unref)

/* Convenience wrappers that check for NULL ops and keep errno conventions. */
int device_get_state(Device *d, enum mig_state *ret);
int device_set_state(Device *d, enum mig_state target, int *ret_data_fd);
int device_reset(Device *d);
void device_cancel(Device *d);
/* The describe_error op's sentence, or NULL (also when the backend has none). */
char *device_describe_error(Device *d);
/*
 * The host removed the device (hotplug): from now on get_state, set_state and reset fail
 * with -ENODEV without asking the backend, a blocked set_state is cancelled, and the
 * sequencer leaves the device out of a rollback. Thread-safe; never undone (a device that
 * comes back is a new Device).
 */
void device_set_gone(Device *d);
bool device_is_gone(Device *d);

void device_info_clear(DeviceInfo *info);
void device_info_copy(DeviceInfo *dst, const DeviceInfo *src);

void backend_free(Backend *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Backend, backend_free)
