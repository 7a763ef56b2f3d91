/* registry: the backend's devices and the registered VMs, by name */
#pragma once

/*
 * Model only: knows nothing of D-Bus. The registry owns the Backend, every device the backend
 * listed (by name) and every VM. A device belongs to at most one VM. A device's Device is
 * opened when needed and kept while a VM holds it or a device fd was handed over to it;
 * otherwise it is released once the event loop is idle again, so the daemon holds no fd of a
 * device no VM holds (for the kernel backend: no VFIO group a VMM could not then open).
 *
 * Errors: negative errno, with a GError whose message names the input and what would fix it:
 *   -EINVAL  malformed arguments (VM name, device list, option values)
 *   -ENOENT  no VM of that name
 *   -ENODEV  the backend knows no device of that name
 *   -EEXIST  a VM of that name is registered
 *   -EBUSY   the device belongs to another VM (named) or is held outside the daemon
 *   -EAGAIN  a sequence is running on the VM
 * plus the backend's errnos, passed up unchanged.
 */

#include <glib.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "core/policy.h"
#include "devices/device.h"
#include "group-watch.h"
#include "vm.h"

typedef struct Registry Registry;

/* Takes ownership of backend; VMs registered without an option get it from defaults. */
int registry_new(Backend *backend, sd_event *event, const VmOptions *defaults, Registry **ret);
/* Waits for running sequences (delivering their callbacks), then frees everything. */
void registry_free(Registry *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Registry, registry_free)

const char *registry_backend_name(const Registry *r);
const VmOptions *registry_defaults(const Registry *r);

/*
 * Re-reads the backend's device list; returns the number of devices known afterwards.
 * A device that vanished stays known while a VM holds it.
 */
int registry_rescan(Registry *r, GError **error);
size_t registry_n_devices(const Registry *r);
/* Names of the known devices, sorted; the strings belong to the registry (valid until the
 * next rescan), the array to the caller. */
GPtrArray *registry_device_names(const Registry *r);
bool registry_has_device(const Registry *r, const char *name);
/* The device, opened when needed; it stays the registry's, borrowed until the event loop
 * runs again (a device no VM holds is released then). */
int registry_open_device(Registry *r, const char *name, Device **ret, GError **error);
/*
 * The device's state: for a device in a VM, the VM's cached state (vm_device_state(), never a
 * read on the loop; when the last read failed, that failure as the error);
 * for a free one, read from the device, except where opening it claims it
 * (Backend.open_claims_device, the kernel backend: its VFIO group): -ENODATA then, with a
 * sentence, and nothing opened.
 */
int registry_device_state(Registry *r, const char *name, enum mig_state *ret, GError **error);
/* The VM holding the device, or NULL. */
Vm *registry_device_vm(const Registry *r, const char *name);

size_t registry_n_vms(const Registry *r);
/* Vm*, sorted by name; the VMs belong to the registry, the array to the caller. */
GPtrArray *registry_vms(const Registry *r);
Vm *registry_get_vm(const Registry *r, const char *name);
/* A sequence runs on some VM. */
bool registry_busy(const Registry *r);

/*
 * The checks of registry_register_vm() that need no lookup: name syntax, 1..VM_DEVICES_MAX
 * device names, none empty or listed twice, option values. Front ends call it before they
 * authorize the caller, so a malformed call is refused the same way for everyone.
 */
int registry_check_vm_args(const char *name, const char *const *devices, size_t n,
                           const VmOptions *options, GError **error);
/*
 * Validates everything (the checks above; VM name free; every device known, after a rescan
 * when one is not; no device in another VM; every device opens) before anything changes,
 * then creates the VM. *ret belongs to the registry.
 */
int registry_register_vm(Registry *r, const char *name, const char *const *devices, size_t n,
                         const VmOptions *options, Vm **ret, GError **error);
/* Closes the VM's data sessions and forgets it; its devices stay in the state they are in,
 * and the backend closes them (with any device fd handed over for them). */
int registry_unregister_vm(Registry *r, const char *name, GError **error);

/*
 * A device fd the VMM holds, handed over (AttachDeviceFd) because the VMM holds the device's
 * VFIO group and no other process can open it. The check needs no privilege and changes
 * nothing: -EINVAL when the backend takes no fds (the sim backend) or fd cannot be the named
 * device's fd, -ENODEV for an unknown device. Attaching takes fd over (closed on error) and
 * keeps it until the VM holding the device is unregistered or the device disappears: -EBUSY
 * when the device already has a device fd (vfio-migd opened it, or one was handed over).
 */
int registry_check_device_fd(Registry *r, const char *name, int fd, GError **error);
int registry_attach_device_fd(Registry *r, const char *name, int fd, GError **error);

/*
 * The valid IOVA space of the VM's IOMMU context (IovaRange, normalized: the aperture minus
 * its groups' reserved regions, from sysfs) and sentences where the kernel's view of an open
 * container disagrees (char*). Both new. Opens nothing. The sim backend: the whole space.
 */
int registry_vm_iova(Registry *r, const Vm *vm, GArray **ret_ranges, GPtrArray **ret_warnings);

/*
 * The policy in force (owned; NULL means the built-in defaults). Setting one re-applies its
 * settings to every registered VM, keeping the options each VM's caller gave explicitly.
 */
void registry_set_policy(Registry *r, Policy *policy);
const Policy *registry_policy(const Registry *r);
/*
 * The migration decision for a VM under the policy in force, with the facts only the
 * registry knows: another VM holding a device of the same IOMMU group, and devices of a
 * VM's group that are not in it. With log, every blocker is logged at notice level with
 * the VM, the mode and the entries that decided it. Its settings are the VM's effective ones:
 * the options its registrant gave explicitly (strategy, phase deadline, parallelism, p2p
 * mode) win, with "VM registration" as their source.
 */
PolicyDecision *registry_decide(Registry *r, Vm *vm, bool log);

/*
 * The same decision and IOVA space for devices that no VM holds yet under that name (an
 * incoming migration's domain): every device is looked up (-ENODEV unknown, the backend's
 * errors otherwise; the kernel backend opens no fd for it). A VM of that name, when one is
 * registered, counts as the same VM (its devices' groups are not "claimed by another VM").
 * assumed_flags (NULL, or one per device, UINT32_MAX for none) stand in for the migration
 * flags of a device whose flags are not known yet (DeviceInfo.flags_unknown): what the
 * source declares. Nothing is registered or changed.
 */
int registry_decide_devices(Registry *r, const char *name, const char *const *devices, size_t n,
                            const uint32_t *assumed_flags, PolicyDecision **ret, GError **error);
int registry_devices_iova(Registry *r, const char *const *devices, size_t n, GArray **ret_ranges,
                          GPtrArray **ret_warnings, GError **error);

/*
 * After the host changed (hotplug) or on Rescan: rescans, then compares each VM's IOMMU
 * groups and devices with what they were at registration (group-watch.h). A device the host
 * removed is marked gone (device_set_gone()): a sequence running on its VM fails and rolls the
 * other devices back. The VMs' blockers then include "group-changed" and "device-removed".
 * NULL with *error set when the rescan fails.
 */
GroupWatchResult *registry_reevaluate(Registry *r, GError **error);
