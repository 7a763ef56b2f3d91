/* lv-tracker: running libvirt domains with VFIO hostdevs become registered VMs */
#pragma once

/*
 * The tracker owns the libvirt connection (lv-conn) and keeps the registry in step with the
 * domains it sees: on connect and after every lifecycle, device-added and device-removed event
 * (events arriving together are handled once), it lists the running domains, parses each one's
 * XML (lv-domain) and reconciles:
 *   - a running domain whose VFIO hostdevs all resolve becomes a VM of the domain's name with
 *     the hostdevs as devices (origin "libvirt"), and vfio-migd stores its metadata (each
 *     device's driver, vendor:device and migration flags) in the live domain;
 *   - a domain that stopped, or whose hostdevs changed, is unregistered / registered again;
 *   - only VMs of origin "libvirt" and "libvirt-xml" are ever touched (a "libvirt-xml" VM is
 *     unregistered only when its domain stops: it may be waiting for an incoming migration);
 *     a VM whose sequence runs is left alone and retried once it is idle;
 *   - a domain that cannot be tracked is not registered and is listed with the reasons.
 * While libvirt is away the VMs stay as they are (the domains keep running); the next
 * connection reconciles.
 *
 * Registration goes through ops, so the bus layer emits its signals; the tracker itself knows
 * nothing of D-Bus.
 *
 * Errors: negative errno.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "libvirt/lv-xml.h"
#include "registry.h"

typedef struct LvTracker LvTracker;

typedef struct LvTrackerOps {
        int (*register_vm)(void *userdata, const char *name, const char *const *devices, size_t n,
                           GError **error);
        int (*unregister_vm)(void *userdata, const char *name, GError **error);
        /* registry_rescan(), announcing a changed device count; called when a hostdev is
         * unknown to the backend, at most once per reconcile. */
        int (*rescan)(void *userdata);
        void (*connected_changed)(void *userdata, bool connected);
} LvTrackerOps;

typedef enum LvDomainStatus {
        LV_DOMAIN_TRACKED,     /* registered as a VM of the same name */
        LV_DOMAIN_UNRESOLVED,  /* a hostdev is malformed or unknown to the backend */
        LV_DOMAIN_REFUSED,     /* resolved, but cannot be registered (device held, name...) */
        LV_DOMAIN_NO_HOSTDEVS, /* nothing to coordinate */
} LvDomainStatus;

const char *lv_domain_status_to_string(LvDomainStatus s);

typedef struct LvDomainReport {
        char *name;
        LvDomainStatus status;
        char *vm;            /* the VM's name when tracked, else NULL */
        GPtrArray *problems; /* LvProblem*: hostdev ("" for the domain) and reason */
} LvDomainReport;

/*
 * Registers the libvirt event loop on event (lv-event), connects to uri and reconciles at
 * once; when libvirt is not there, the tracker starts disconnected and keeps retrying.
 */
int lv_tracker_new(sd_event *event, Registry *registry, const char *uri, const LvTrackerOps *ops,
                   void *userdata, LvTracker **ret);
/* Closes the connection; leaves the VMs registered. */
void lv_tracker_free(LvTracker *t);

const char *lv_tracker_uri(const LvTracker *t);
bool lv_tracker_connected(const LvTracker *t);
/* The running domains as of the last reconcile (LvDomainReport*, owned by the tracker);
 * empty while disconnected. */
const GPtrArray *lv_tracker_domains(const LvTracker *t);
/* Reconciles now (also what every event schedules). */
void lv_tracker_reconcile(LvTracker *t);
