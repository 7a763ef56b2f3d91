/* bus-manager: org.vfiomig.Coordinator1.Manager at /org/vfiomig/Coordinator1 */
#pragma once

#include <stdbool.h>

#include "daemon.h"

int bus_manager_register(Daemon *d);

/*
 * Reads RegisterVM's options a{sv} into o (which holds the defaults): InvalidArgs naming an
 * unknown key, a wrong type, a bad value or a key given twice.
 */
int bus_manager_read_vm_options(sd_bus_message *m, VmOptions *o, sd_bus_error *error);
/* PropertiesChanged for VMCount and/or DeviceCount. */
void bus_manager_emit_counts(Daemon *d, bool vm_count, bool device_count);
/* DeviceStateChanged and SequenceProgress, on the Manager (docs/dbus-api.md, "Signals"). */
void bus_manager_emit_device_state_changed(Daemon *d, const char *device, const char *old_state,
                                           const char *new_state);
/* GroupChanged(group, added, removed, vms) (docs/dbus-api.md, "Signals"). */
void bus_manager_emit_group_changed(Daemon *d, const char *group, const GPtrArray *added,
                                    const GPtrArray *removed, const GPtrArray *vms);
void bus_manager_emit_sequence_progress(Daemon *d, const char *vm, const char *operation,
                                        const char *phase, unsigned index, unsigned count,
                                        const char *status, uint64_t elapsed_us);
