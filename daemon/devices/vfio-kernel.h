/* vfio-kernel: real VFIO devices through the kernel's migration uAPI */
#pragma once

/*
 * The backend behind the ops table for devices bound to a VFIO driver (host_scan() decides
 * which). open_device() opens nothing: the Device carries what sysfs says (name, driver,
 * vendor, device, group) and its VFIO fds are opened on the first op that needs them, because
 * a VFIO group can be open in one process only and opening it takes it from the VMM. They are
 * opened through the device cdev when it exists (/dev/vfio/devices/vfioX bound to /dev/iommu,
 * 6.6+), else through the group: one container (/dev/vfio/vfio, VFIO_SET_IOMMU type1v2) per
 * group, shared by the group's devices, and VFIO_GROUP_GET_DEVICE_FD. Or the device uses a
 * device fd handed over by the VMM's manager (vfio_kernel_adopt_fd()) and never opens its
 * group. Every fd is closed when the Device's last reference goes.
 *
 * Migration: VFIO_DEVICE_FEATURE PROBE then GET of VFIO_DEVICE_FEATURE_MIGRATION on first
 * open; -ENOTTY means the device cannot migrate (flags 0, and get_state reports RUNNING, which
 * is all such a device does). States through MIG_DEVICE_STATE GET/SET exactly per
 * include/uapi/linux/vfio.h; after a failed SET the state is read back with GET and logged.
 * A request for PRE_COPY(_P2P) is checked with mig_path() against the state GET reports first,
 * so STOP_COPY -> PRE_COPY, which some kernels never return from, is never sent. Reset with
 * VFIO_DEVICE_RESET. An ioctl cannot be cancelled: the ops table has no cancel.
 *
 * Errors: 0 or negative errno from the kernel, passed up unchanged; the Device's
 * describe_error op has the sentence for a failed open (who holds the group, what to do).
 */

#include <glib.h>
#include <stdint.h>

#include "core/iova.h"
#include "devices/device.h"

/* sysfs_root/dev_root as for host_scan(); the first scan happens here (-ENOENT, -EACCES). */
int vfio_kernel_backend_new(const char *sysfs_root, const char *dev_root, Backend **ret,
                            GError **error);

/* -EINVAL with a sentence naming d when fd is not a VFIO device fd (VFIO_DEVICE_GET_INFO
 * fails), is one of a non-PCI device for a PCI d, or is the cdev of another device. */
int vfio_kernel_check_device_fd(Device *d, int fd, GError **error);
/* Use fd (taken over; closed on error) as d's device fd from now on, so d never opens its
 * group: -EINVAL as above, -EBUSY when d already has a device fd (opened or adopted). */
int vfio_kernel_adopt_fd(Device *d, int fd, GError **error);

/* The valid IOVA ranges the kernel reports for the container (VFIO_IOMMU_GET_INFO's
 * capability chain) or IOAS (IOMMU_IOAS_IOVA_RANGES) d is attached to, as listed (IovaRange).
 * Opens nothing: -ENOTCONN when d has no container or IOAS of ours open (not opened yet, or
 * an adopted fd), -ENODATA when the kernel reports no ranges, -EBADMSG for a malformed chain. */
int vfio_kernel_iova_ranges(Device *d, GArray **ret /* IovaRange */, GError **error);

/* The kernel's VFIO_DEVICE_FEATURE_MIGRATION flags (MIG_FLAG_*) for a raw device fd; 0 when
 * the device cannot migrate (-ENOTTY from the probe). */
int vfio_kernel_query_migration(int device_fd, uint32_t *ret_flags);
