/* bus-libvirt: the Manager's libvirt methods and properties, and the tracker's bus side */
#pragma once

/*
 * RegisterVMFromXML, CheckIncomingMigration, ListLibvirtDomains, LibvirtURI and
 * LibvirtConnected (docs/dbus-api.md) are entries of the Manager vtable (bus-manager.c) and
 * are served here: thin handlers over libvirt/lv-xml.h and libvirt/lv-tracker.h.
 * bus_libvirt_start() creates the tracker when d->libvirt_uri is set, registering the VMs it
 * finds through manager_register_vm() (origin "libvirt") so the usual signals go out.
 *
 * Errors: negative errno; handlers set the named error (bus-errors.h).
 */

#include <systemd/sd-bus.h>

#include "daemon.h"

/* Connects (or starts retrying); 0 when libvirt is off or merely unreachable. */
int bus_libvirt_start(Daemon *d);
void bus_libvirt_stop(Daemon *d);

int bus_libvirt_method_register_vm_from_xml(sd_bus_message *m, void *userdata, sd_bus_error *error);
int bus_libvirt_method_check_incoming(sd_bus_message *m, void *userdata, sd_bus_error *error);
int bus_libvirt_method_list_domains(sd_bus_message *m, void *userdata, sd_bus_error *error);
int bus_libvirt_property_get_uri(sd_bus *bus, const char *path, const char *interface,
                                 const char *property, sd_bus_message *reply, void *userdata,
                                 sd_bus_error *error);
int bus_libvirt_property_get_connected(sd_bus *bus, const char *path, const char *interface,
                                       const char *property, sd_bus_message *reply, void *userdata,
                                       sd_bus_error *error);
