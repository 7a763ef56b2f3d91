/* bus-manager: org.vfiomig.Coordinator1.Manager at /org/vfiomig/Coordinator1 */
#pragma once

#include <stdbool.h>

#include "daemon.h"

int bus_manager_register(Daemon *d);

/* PropertiesChanged for VMCount and/or DeviceCount. */
void bus_manager_emit_counts(Daemon *d, bool vm_count, bool device_count);
/* DeviceStateChanged and SequenceProgress, on the Manager (docs/dbus-api.md, "Signals"). */
void bus_manager_emit_device_state_changed(Daemon *d, const char *device, const char *old_state,
                                           const char *new_state);
void bus_manager_emit_sequence_progress(Daemon *d, const char *vm, const char *operation,
                                        const char *phase, unsigned index, unsigned count,
                                        const char *status, uint64_t elapsed_us);
