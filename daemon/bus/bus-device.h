/* bus-device: org.vfiomig.Coordinator1.Device at /org/vfiomig/Coordinator1/device/<name> */
#pragma once

#include "core/mig-state.h"
#include "daemon.h"

/* The fallback vtable and node enumerator for every device the registry knows. */
int bus_device_register(Daemon *d);

/* DeviceStateChanged on the Manager and PropertiesChanged for the device's State. */
void bus_device_emit_state_changed(Daemon *d, const char *device, enum mig_state old_state,
                                   enum mig_state new_state);
