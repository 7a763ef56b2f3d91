/* lv-tracker: running libvirt domains with VFIO hostdevs become registered VMs */
#include "libvirt/lv-tracker.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <string.h>

#include "libvirt/lv-conn.h"
#include "libvirt/lv-event.h"
#include "log.h"

#define BUSY_RETRY_USEC (1000ULL * 1000ULL)

struct LvTracker {
        sd_event *event;
        Registry *registry;
        LvTrackerOps ops;
        void *userdata;
        LvConn *conn;
        GPtrArray *domains;                /* LvDomainReport*, the last reconcile */
        GHashTable *logged;                /* domain -> the outcome last logged */
        sd_event_source *reconcile_source; /* defer: events arriving together, one reconcile */
        sd_event_source *busy_source;      /* retries while a VM to change is sequencing */
        bool rescanned;                    /* this reconcile rescanned the devices already */
        bool busy_pending;
        bool event_registered;         /* lv_event_register() is ours to undo */
};

const char *lv_domain_status_to_string(LvDomainStatus s)
{
        switch (s) {
        case LV_DOMAIN_TRACKED:
                return "tracked";
        case LV_DOMAIN_UNRESOLVED:
                return "unresolved";
        case LV_DOMAIN_REFUSED:
                return "refused";
        default:
                return "no-hostdevs";
        }
}

static void report_free(LvDomainReport *rep)
{
        g_free(rep->name);
        g_free(rep->vm);
        g_ptr_array_unref(rep->problems);
        g_free(rep);
}

static LvDomainReport *report_new(const char *name)
{
        LvDomainReport *rep = g_new0(LvDomainReport, 1);

        rep->name = g_strdup(name);
        rep->problems = g_ptr_array_new_with_free_func((GDestroyNotify)lv_problem_free);
        return rep;
}

const char *lv_tracker_uri(const LvTracker *t)
{
        return lv_conn_uri(t->conn);
}

bool lv_tracker_connected(const LvTracker *t)
{
        return lv_conn_get(t->conn) != NULL;
}

const GPtrArray *lv_tracker_domains(const LvTracker *t)
{
        return t->domains;
}

static bool origin_is_libvirt(const Vm *vm)
{
        return g_strcmp0(vm_origin(vm), "libvirt") == 0 ||
               g_strcmp0(vm_origin(vm), "libvirt-xml") == 0;
}

/* Unregisters a VM of ours; a busy one is retried once idle. */
static void drop_vm(LvTracker *t, const char *name, const char *why)
{
        g_autoptr(GError) gerr = NULL;
        Vm *vm = registry_get_vm(t->registry, name);

        if (!vm || !origin_is_libvirt(vm))
                return;
        if (vm_is_busy(vm, NULL)) {
                log_info("libvirt: VM %s: %s, but a sequence runs; unregistering it once the "
                         "sequence ends.",
                         name, why);
                t->busy_pending = true;
                return;
        }
        if (t->ops.unregister_vm(t->userdata, name, &gerr) < 0)
                log_warning("libvirt: cannot unregister VM %s: %s", name, gerr->message);
        else
                log_info("libvirt: VM %s unregistered: %s.", name, why);
}

static void store_metadata(LvTracker *t, virDomainPtr dom, const char *name)
{
        Vm *vm = registry_get_vm(t->registry, name);
        g_autofree LvDeclared *decl = NULL;
        g_autofree char *xml = NULL;
        Device *dev;

        if (!vm)
                return;
        if (lv_conn_read_only(t->conn)) {
                log_debug("libvirt: VM %s: read-only connection, no metadata stored.", name);
                return;
        }
        decl = g_new0(LvDeclared, vm_n_devices(vm) + 1);
        VM_FOREACH_DEVICE (vm, i, dev)
                decl[i] = (LvDeclared){dev->info.name, dev->info.driver, dev->info.vendor_id,
                                       dev->info.device_id, dev->info.migration_flags};
        xml = lv_metadata_format(decl, vm_n_devices(vm));
        if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, LV_METADATA_KEY,
                                 LV_METADATA_NS, VIR_DOMAIN_AFFECT_LIVE) < 0)
                log_warning("libvirt: domain %s: cannot store vfio-migd's metadata: %s; a "
                            "migration's destination cannot compare the devices.",
                            name, lv_conn_last_error());
}

/* Every hostdev known to the backend, after one rescan per reconcile; else the problems. */
static bool resolve_hostdevs(LvTracker *t, const LvDomain *d, LvDomainReport *rep)
{
        bool unknown = false;

        for (size_t i = 0; i < d->n_hostdevs; i++)
                unknown |= !registry_has_device(t->registry, d->hostdevs[i].name);
        if (unknown && !t->rescanned) {
                t->rescanned = true;
                (void)t->ops.rescan(t->userdata);
        }
        for (size_t i = 0; i < d->n_hostdevs; i++) {
                const LvHostdev *h = &d->hostdevs[i];
                g_autofree char *s = NULL;

                if (registry_has_device(t->registry, h->name))
                        continue;
                s = lv_hostdev_unknown_sentence(registry_backend_name(t->registry), d->name, h);
                lv_problem_add(rep->problems, "no-device", h->name, "%s", s);
        }
        return rep->problems->len == 0;
}

/* The domain's VM as it should be: registered with exactly these devices. */
static void track(LvTracker *t, virDomainPtr dom, const LvDomain *d, const char *const *devices,
                  size_t n, LvDomainReport *rep)
{
        g_autoptr(GError) gerr = NULL;
        Vm *vm = registry_get_vm(t->registry, d->name);
        int r;

        if (vm && lv_vm_has_devices(vm, devices, n)) {
                rep->status = LV_DOMAIN_TRACKED;
                rep->vm = g_strdup(d->name);
                return;
        }
        if (vm && !origin_is_libvirt(vm)) {
                rep->status = LV_DOMAIN_REFUSED;
                lv_problem_add(rep->problems, "vm-exists", "",
                               "VM %s was registered through %s with other devices and is left "
                               "alone; unregister it to let the libvirt tracker take over.",
                               d->name, vm_origin(vm));
                return;
        }
        if (vm && vm_is_busy(vm, NULL)) {
                rep->status = LV_DOMAIN_TRACKED;
                rep->vm = g_strdup(d->name);
                lv_problem_add(rep->problems, "busy", "",
                               "The domain's hostdevs changed while a sequence runs on VM %s; "
                               "it is registered again once the sequence ends.",
                               d->name);
                t->busy_pending = true;
                return;
        }
        for (size_t i = 0; i < n; i++) {
                Vm *holder = registry_device_vm(t->registry, devices[i]);

                if (holder && holder != vm)
                        lv_problem_add(rep->problems, "device-busy", devices[i],
                                       "Hostdev %s of domain %s belongs to VM %s; unregister %s "
                                       "or fix the domain's hostdevs.",
                                       devices[i], d->name, vm_name(holder), vm_name(holder));
        }
        if (rep->problems->len > 0) {
                rep->status = LV_DOMAIN_REFUSED;
                return;
        }
        if (vm)
                drop_vm(t, d->name, "the domain's hostdevs changed");
        r = t->ops.register_vm(t->userdata, d->name, devices, n, &gerr);
        if (r < 0) {
                rep->status = r == -ENODEV ? LV_DOMAIN_UNRESOLVED : LV_DOMAIN_REFUSED;
                lv_problem_add(rep->problems, r == -ENODEV ? "no-device" : "refused", "", "%s",
                               gerr ? gerr->message : g_strerror(-r));
                return;
        }
        rep->status = LV_DOMAIN_TRACKED;
        rep->vm = g_strdup(d->name);
        store_metadata(t, dom, d->name);
}

static LvDomainReport *reconcile_domain(LvTracker *t, virDomainPtr dom)
{
        LvDomainReport *rep = report_new(virDomainGetName(dom));
        g_autoptr(GError) gerr = NULL;
        g_autoptr(LvDomain) d = NULL;
        g_autoptr(GPtrArray) devices = g_ptr_array_new();
        g_autofree char *xml = virDomainGetXMLDesc(dom, 0);

        rep->status = LV_DOMAIN_UNRESOLVED;
        if (!xml) {
                lv_problem_add(rep->problems, "no-xml", "", "Cannot read the domain's XML: %s",
                               lv_conn_last_error());
                return rep;
        }
        if (lv_domain_parse(xml, strlen(xml), &d, &gerr) < 0 ||
            lv_domain_check_bounds(d, &gerr) < 0) {
                lv_problem_add(rep->problems, "bad-xml", "", "%s", gerr->message);
                return rep;
        }
        for (size_t i = 0; i < d->n_hostdevs; i++) {
                const LvHostdev *h = &d->hostdevs[i];

                if (h->problem)
                        lv_problem_add(rep->problems, "bad-hostdev", h->alias ? h->alias : "", "%s",
                                       h->problem);
                else
                        g_ptr_array_add(devices, h->name);
        }
        if (d->n_hostdevs == 0) {
                rep->status = LV_DOMAIN_NO_HOSTDEVS;
                drop_vm(t, rep->name, "its domain has no VFIO hostdev any more");
                return rep;
        }
        if (rep->problems->len > 0 || !resolve_hostdevs(t, d, rep))
                return rep;
        if (!vm_name_is_valid(d->name)) {
                g_autoptr(GError) error = NULL;
                vm_name_check(d->name, "domain name", LV_DOMAIN_RENAME_FIX, &error);
                rep->status = LV_DOMAIN_REFUSED;
                lv_problem_add(rep->problems, "invalid-name", "", "%s", error->message);
                return rep;
        }
        track(t, dom, d, (const char *const *)devices->pdata, devices->len, rep);
        return rep;
}

/* Each domain's outcome is logged when it changes, not on every event. */
static void log_outcome(LvTracker *t, const LvDomainReport *rep)
{
        g_autoptr(GString) s = g_string_new(lv_domain_status_to_string(rep->status));
        const char *old;

        for (guint i = 0; i < rep->problems->len; i++) {
                const LvProblem *p = rep->problems->pdata[i];
                g_string_append_printf(s, "%s%s", i ? "; " : ": ", p->message);
        }
        old = g_hash_table_lookup(t->logged, rep->name);
        if (g_strcmp0(old, s->str) == 0)
                return;
        if (rep->status == LV_DOMAIN_TRACKED || rep->status == LV_DOMAIN_NO_HOSTDEVS)
                log_info("libvirt: domain %s: %s", rep->name, s->str);
        else
                log_warning("libvirt: domain %s: %s", rep->name, s->str);
        g_hash_table_replace(t->logged, g_strdup(rep->name),
                             g_string_free(g_steal_pointer(&s), false));
}

static void schedule_busy_retry(LvTracker *t)
{
        uint64_t now = 0;

        (void)sd_event_now(t->event, CLOCK_MONOTONIC, &now);
        (void)sd_event_source_set_time(t->busy_source, now + BUSY_RETRY_USEC);
        (void)sd_event_source_set_enabled(t->busy_source, SD_EVENT_ONESHOT);
}

void lv_tracker_reconcile(LvTracker *t)
{
        virConnectPtr conn = lv_conn_get(t->conn);
        g_autoptr(GHashTable) running = g_hash_table_new(g_str_hash, g_str_equal);
        g_autoptr(GPtrArray) vms = NULL;
        virDomainPtr *doms = NULL;
        int n;

        g_ptr_array_set_size(t->domains, 0);
        t->busy_pending = false;
        t->rescanned = false;
        if (!conn)
                return;
        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                log_warning("libvirt: cannot list the running domains: %s", lv_conn_last_error());
                return;
        }
        for (int i = 0; i < n; i++) {
                LvDomainReport *rep = reconcile_domain(t, doms[i]);

                log_outcome(t, rep);
                g_ptr_array_add(t->domains, rep);
                g_hash_table_add(running, rep->name);
                virDomainFree(doms[i]);
        }
        free(doms);

        /* The domains of our VMs that no longer run. */
        vms = registry_vms(t->registry);
        for (guint i = 0; i < vms->len; i++) {
                const char *name = vm_name(vms->pdata[i]);

                if (g_strcmp0(vm_origin(vms->pdata[i]), "libvirt") == 0 &&
                    !g_hash_table_contains(running, name)) {
                        g_autofree char *copy = g_strdup(name);
                        g_hash_table_remove(t->logged, copy);
                        drop_vm(t, copy, "its domain is not running");
                }
        }
        if (t->busy_pending)
                schedule_busy_retry(t);
}

static int on_reconcile(sd_event_source *s, void *userdata)
{
        lv_tracker_reconcile(userdata);
        return 0;
}

static int on_busy_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        lv_tracker_reconcile(userdata);
        return 0;
}

static void on_connected(LvConn *c, bool connected, void *userdata)
{
        LvTracker *t = userdata;

        if (!connected)
                g_ptr_array_set_size(t->domains, 0);
        else
                lv_tracker_reconcile(t);
        t->ops.connected_changed(t->userdata, connected);
}

static void on_domain_event(LvConn *c, const char *domain, bool stopped, void *userdata)
{
        LvTracker *t = userdata;

        /* A VM RegisterVMFromXML made is unregistered only when its own domain stops. */
        if (stopped) {
                Vm *vm = registry_get_vm(t->registry, domain);
                if (vm && g_strcmp0(vm_origin(vm), "libvirt-xml") == 0)
                        drop_vm(t, domain, "its domain stopped");
        }
        /* Device added/removed events share this path (the test driver cannot raise them). */
        (void)sd_event_source_set_enabled(t->reconcile_source, SD_EVENT_ONESHOT);
}

int lv_tracker_new(sd_event *event, Registry *registry, const char *uri, const LvTrackerOps *ops,
                   void *userdata, LvTracker **ret)
{
        static const LvConnCallbacks callbacks = {
            .connected = on_connected,
            .domain_event = on_domain_event,
        };
        LvTracker *t = g_new0(LvTracker, 1);
        int r;

        t->event = sd_event_ref(event);
        t->registry = registry;
        t->ops = *ops;
        t->userdata = userdata;
        t->domains = g_ptr_array_new_with_free_func((GDestroyNotify)report_free);
        t->logged = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        r = lv_event_register(event);
        if (r < 0)
                goto fail;
        t->event_registered = true;
        r = sd_event_add_defer(event, &t->reconcile_source, on_reconcile, t);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_enabled(t->reconcile_source, SD_EVENT_OFF);
        r = sd_event_add_time(event, &t->busy_source, CLOCK_MONOTONIC, UINT64_MAX, 0, on_busy_retry,
                              t);
        if (r < 0)
                goto fail;
        (void)sd_event_source_set_enabled(t->busy_source, SD_EVENT_OFF);
        r = lv_conn_new(event, uri, &callbacks, t, &t->conn);
        if (r < 0)
                goto fail;
        lv_tracker_reconcile(t);
        *ret = t;
        return 0;
fail:
        lv_tracker_free(t);
        return r;
}

void lv_tracker_free(LvTracker *t)
{
        if (!t)
                return;
        lv_conn_free(t->conn);
        /* libvirt's handles are gone with the connection; their frees run now. */
        if (t->event_registered)
                lv_event_unregister();
        sd_event_source_disable_unref(t->reconcile_source);
        sd_event_source_disable_unref(t->busy_source);
        g_ptr_array_unref(t->domains);
        g_hash_table_unref(t->logged);
        sd_event_unref(t->event);
        g_free(t);
}
