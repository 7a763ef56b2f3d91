/* host-object: the snapshot's records, made and freed where the scan and host.c share them */
#pragma once

#include "host/host.h"

HostSnapshot *host_snapshot_new(void);
HostGroup *host_group_new(const char *id);
void host_group_free(HostGroup *g);
HostDevice *host_device_new(const char *name, const char *bus);
void host_device_free(HostDevice *d);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(HostGroup, host_group_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HostDevice, host_device_free)
