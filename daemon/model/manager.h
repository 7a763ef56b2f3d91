/* manager: the model's front door for registering, unregistering and rescanning VMs */
#pragma once

/*
 * Every front end registers and unregisters through here (RegisterVM, RegisterVMFromXML, the
 * libvirt tracker, the journal's restore), so the bus always shows the same thing. The
 * manager does the registry's and the journal's work and takes the decisions; what a change
 * means to the outside it reports through ManagerEvents, the table the bus layer installs at
 * start-up (manager_set_events()), as systemd's machine_send_signal(): that table is the
 * model's only upward call. Without one (unit tests) nothing is reported.
 *
 * Errors: negative errno with a GError sentence, passed up unchanged from registry.h and
 * recovery.h.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "group-watch.h"
#include "registry.h"
#include "vm.h"

typedef struct Daemon Daemon;

typedef struct ManagerEvents {
        /* VMCount and/or DeviceCount changed. */
        void (*counts_changed)(void *userdata, bool vm_count, bool device_count);
        /* vm was registered and is journalled; the VM count changed. */
        void (*vm_new)(void *userdata, Vm *vm);
        /* name was unregistered; former_devices (char*) were its devices, devices_changed
         * says whether the device count changed. */
        void (*vm_removed)(void *userdata, const char *name, const GPtrArray *former_devices,
                           bool devices_changed);
        /* A re-evaluation of the host (daemon-hotplug.h) found group's membership changed. */
        void (*group_changed)(void *userdata, const GroupChange *change);
        /* ... and vm's hotplug blockers (Migratable, Blockers) changed. */
        void (*vm_blockers_changed)(void *userdata, const char *vm);
        /* A sequence of vm running op moved: a device's state, a phase, a hung step. */
        void (*sequence_event)(void *userdata, Vm *vm, enum plan_op op, const SeqEvent *ev);
} ManagerEvents;

typedef struct Manager {
        Registry *registry;
        Daemon *daemon; /* opaque here: what recovery.h's journal bookkeeping takes */
        const ManagerEvents *events;
        void *userdata;
} Manager;

void manager_init(Manager *m, Registry *registry, Daemon *daemon);
void manager_set_events(Manager *m, const ManagerEvents *events, void *userdata);

/*
 * Registers a VM (registry_register_vm(), same errors; origin as vm_set_origin()), records it
 * in the journal and reports counts_changed and vm_new. A rescan the registration made is
 * reported (DeviceCount) even when it fails.
 */
int manager_register_vm(Manager *m, const char *name, const char *const *devices, size_t n,
                        const VmOptions *options, const char *origin, Vm **ret, GError **error);
/*
 * Unregisters (registry_unregister_vm(), same errors): the journal first, so a removal it
 * cannot record is refused (-EIO); a VM only the journal holds is forgotten. Reports
 * vm_removed.
 */
int manager_unregister_vm(Manager *m, const char *name, GError **error);
/* registry_rescan(), reporting DeviceCount when it changed; the number of devices known. */
int manager_rescan(Manager *m, GError **error);
/* Reports what a re-evaluation of the host found: each group change, each VM whose blockers
 * changed, then DeviceCount when devices_changed. */
void manager_report_host_change(Manager *m, const GroupWatchResult *result, bool devices_changed);
/* Reports a sequence's event (the one place a sequence event becomes a signal). */
void manager_sequence_event(Manager *m, Vm *vm, enum plan_op op, const SeqEvent *ev);
