/* lv-xml: what the daemon does with a domain XML a caller hands in */
#pragma once

/*
 * Model for RegisterVMFromXML and CheckIncomingMigration (bus/bus-libvirt.c is the wire):
 * the VM a domain XML makes (name = the domain's name, devices = its VFIO hostdevs' names),
 * and the check a migration's destination runs before the domain starts. Shared with the
 * tracker (lv-tracker.c) so every front end words the same problem the same way.
 *
 * Errors: negative errno with a GError sentence naming the input and the fix:
 *   -EINVAL  malformed XML (line and column), no VFIO hostdev, a hostdev whose address cannot
 *            be used, a domain name that is not a valid VM name.
 */

#include <glib.h>
#include <stdbool.h>

#include "libvirt/lv-domain.h"
#include "registry.h"

/*
 * The parse both methods start with: lv_domain_parse() and lv_domain_check_bounds(). Pure and
 * thread-safe, so the daemon runs it off the event loop (a 16 MiB XML takes half a second);
 * the *_of() functions below take its result over and do the rest on the loop.
 */
int lv_xml_parse(const char *xml, size_t len, LvDomain **ret, GError **error);

/*
 * Parses xml (len bytes) and checks that it makes a VM. *ret_devices holds the hostdev names
 * in XML order (borrowed from *ret_domain, char*). _of: from a parsed domain (taken over).
 */
int lv_xml_vm_args(const char *xml, size_t len, LvDomain **ret_domain, GPtrArray **ret_devices,
                   GError **error);
int lv_xml_vm_args_of(LvDomain *parsed, LvDomain **ret_domain, GPtrArray **ret_devices,
                      GError **error);

/* The VM's devices are exactly names (same order not required). */
bool lv_vm_has_devices(const Vm *vm, const char *const *names, size_t n);

/* "hostdev H of domain D: the B backend knows no such device; bind it to vfio-pci ..." */
char *lv_hostdev_unknown_sentence(const char *backend, const char *domain, const LvHostdev *h);

/* NULL when the device behind hostdev h is a VFIO device (host_device_is_vfio(): an mdev of any
 * vendor driver, a PCI device on a VFIO driver), else "Hostdev H is bound to D, not to a VFIO
 * driver; bind it to vfio-pci ...". */
char *lv_hostdev_not_vfio_sentence(const LvHostdev *h, const DeviceInfo *info);

typedef struct LvProblem {
        char *id;      /* "no-device", "not-vfio", "device-busy", "driver-mismatch",
                          "id-mismatch", "flags-mismatch", "bad-hostdev", "policy:<blocker>",
                          "iova" (CheckIncomingMigration); status words (the tracker) */
        char *hostdev; /* the hostdev's name (or alias for a bad one); "" for the domain */
        char *message; /* a sentence naming the hostdev and what would fix it */
} LvProblem;

void lv_problem_free(LvProblem *p);
/* Appends a new LvProblem to problems (of lv_problem_free). */
void lv_problem_add(GPtrArray *problems, const char *id, const char *hostdev, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

typedef struct LvIncoming {
        bool allowed;        /* no problems */
        GPtrArray *problems; /* LvProblem* */
        GPtrArray *warnings; /* char* */
        GArray *guest_ram;   /* IovaRange */
        GArray *iova;        /* IovaRange: the devices' valid IOVA space; empty if unknown */
        GPtrArray *devices;  /* char*: the usable hostdevs' names */
} LvIncoming;

void lv_incoming_free(LvIncoming *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LvIncoming, lv_incoming_free)

/*
 * The destination's check (docs/dbus-api.md, CheckIncomingMigration): per hostdev known,
 * on a VFIO driver, free (a VM of the domain's name may hold it), as the source's metadata
 * declares; then the policy decision for the domain's name with these devices and the
 * guest's RAM inside the devices' valid IOVA space. Changes nothing but may rescan the
 * devices once when a hostdev is unknown. -EINVAL as lv_xml_vm_args() for malformed XML or
 * an invalid name; an XML without VFIO hostdevs is allowed, with a warning.
 */
int lv_check_incoming(Registry *r, const char *xml, size_t len, LvIncoming **ret, GError **error);
/* The same from a parsed domain (lv_xml_parse(), taken over): the part that needs the loop. */
int lv_check_incoming_of(Registry *r, LvDomain *parsed, LvIncoming **ret, GError **error);
