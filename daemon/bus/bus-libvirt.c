/* bus-libvirt: the Manager's libvirt methods and properties, and the tracker's bus side */
#include "bus/bus-libvirt.h"

#include <errno.h>
#include <string.h>

#include "bus/bus-errors.h"
#include "bus/bus-manager.h"
#include "bus/bus-util.h"
#include "core/iova.h"
#include "libvirt/lv-tracker.h"
#include "libvirt/lv-xml.h"
#include "log.h"
#include "offload.h"

/* ---- the tracker's bus side ---- */

static int tracker_register_vm(void *userdata, const char *name, const char *const *devices,
                               size_t n, GError **error)
{
        Daemon *d = userdata;

        return manager_register_vm(&d->manager, name, devices, n, registry_defaults(d->registry),
                                   "libvirt", NULL, error);
}

static int tracker_unregister_vm(void *userdata, const char *name, GError **error)
{
        Daemon *d = userdata;

        return manager_unregister_vm(&d->manager, name, error);
}

static int rescan(Daemon *d)
{
        g_autoptr(GError) gerr = NULL;
        int r;

        r = manager_rescan(&d->manager, &gerr);
        if (r < 0)
                log_warning("Rescan: %s", gerr->message);
        return r;
}

static int tracker_rescan(void *userdata)
{
        return rescan(userdata);
}

static void tracker_connected_changed(void *userdata, bool connected)
{
        Daemon *d = userdata;

        (void)sd_bus_emit_properties_changed(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                             "LibvirtConnected", NULL);
}

int bus_libvirt_start(Daemon *d)
{
        static const LvTrackerOps ops = {
            .register_vm = tracker_register_vm,
            .unregister_vm = tracker_unregister_vm,
            .rescan = tracker_rescan,
            .connected_changed = tracker_connected_changed,
        };

        if (!d->libvirt_uri) {
                log_info("libvirt: off (--libvirt-uri=none).");
                return 0;
        }
        return lv_tracker_new(d->event, d->registry, d->libvirt_uri, &ops, d, &d->libvirt);
}

void bus_libvirt_stop(Daemon *d)
{
        g_clear_pointer(&d->libvirt, lv_tracker_free);
}

/* ---- RegisterVMFromXML ---- */

static int reply_vm_path(sd_bus_message *m, const char *name)
{
        g_autofree char *path = bus_vm_path(name);

        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(m, "o", path);
}

/* Every device known (after one rescan), a VFIO device as CheckIncomingMigration judges it,
 * and free, before anything changes. */
static int check_devices(Daemon *d, const LvDomain *dom, const Vm *existing, sd_bus_error *error)
{
        bool rescanned = false;

        for (size_t i = 0; i < dom->n_hostdevs; i++) {
                const LvHostdev *h = &dom->hostdevs[i];
                g_autoptr(GError) gerr = NULL;
                g_autofree char *not_vfio = NULL;
                Device *dev;
                Vm *holder;
                int r;

                if (!registry_has_device(d->registry, h->name) && !rescanned) {
                        rescanned = true;
                        (void)rescan(d);
                }
                if (!registry_has_device(d->registry, h->name)) {
                        g_autofree char *s = lv_hostdev_unknown_sentence(
                            registry_backend_name(d->registry), dom->name, h);
                        return sd_bus_error_set(error, BUS_ERROR_NO_SUCH_DEVICE, s);
                }
                r = registry_open_device(d->registry, h->name, &dev, &gerr);
                if (r < 0)
                        return bus_error_set_model(error, r, gerr->message);
                not_vfio = lv_hostdev_not_vfio_sentence(h, &dev->info);
                if (not_vfio)
                        return sd_bus_error_set(error, BUS_ERROR_NO_SUCH_DEVICE, not_vfio);
                holder = registry_device_vm(d->registry, h->name);
                if (holder && holder != existing)
                        return sd_bus_error_setf(error, BUS_ERROR_DEVICE_BUSY,
                                                 "Hostdev %s of domain %s belongs to VM %s; "
                                                 "unregister %s first or fix the domain's "
                                                 "hostdevs.",
                                                 h->name, dom->name, vm_name(holder),
                                                 vm_name(holder));
        }
        return 0;
}

/* ---- the XML methods: the parse runs off the loop (offload.h) ---- */

/* What a method does with its parsed XML, on the loop; a handler's return convention. */
typedef int (*XmlNext)(sd_bus_message *m, Daemon *d, LvDomain *parsed, const VmOptions *options,
                       sd_bus_error *error);

typedef struct XmlCall {
        Daemon *daemon;
        sd_bus_message *message;
        const char *xml; /* inside message */
        VmOptions options;
        XmlNext next;
        /* the worker's result */
        int r;
        LvDomain *domain;
        GError *error;
} XmlCall;

static void xml_call_parse(void *data)
{
        XmlCall *c = data;

        c->r = lv_xml_parse(c->xml, strlen(c->xml), &c->domain, &c->error);
}

/* On the loop: the method goes on, and its error becomes the reply, as sd-bus would do. */
static void xml_call_done(void *data)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        XmlCall *c = data;
        int r = c->r;

        if (r < 0)
                r = bus_error_set_model(&error, r, c->error->message);
        else
                r = c->next(c->message, c->daemon, g_steal_pointer(&c->domain), &c->options,
                            &error);
        if (r < 0 && sd_bus_error_is_set(&error))
                (void)sd_bus_reply_method_error(c->message, &error);
        else if (r < 0)
                (void)sd_bus_reply_method_errno(c->message, r, NULL);
        sd_bus_message_unref(c->message);
        lv_domain_free(c->domain);
        g_clear_error(&c->error);
        g_free(c);
}

static int xml_call_start(sd_bus_message *m, Daemon *d, const char *xml, const VmOptions *options,
                          XmlNext next)
{
        XmlCall *c = g_new0(XmlCall, 1);
        int r;

        c->daemon = d;
        c->message = sd_bus_message_ref(m);
        c->xml = xml;
        if (options)
                c->options = *options;
        c->next = next;
        r = offload_run(d->offload, xml_call_parse, xml_call_done, c);
        if (r < 0) {
                sd_bus_message_unref(c->message);
                g_free(c);
                return r;
        }
        return 1;
}

static int register_vm_from_xml_parsed(sd_bus_message *m, Daemon *d, LvDomain *parsed,
                                       const VmOptions *opts, sd_bus_error *error)
{
        VmOptions options = *opts;
        g_autoptr(LvDomain) dom = NULL;
        g_autoptr(GPtrArray) devices = NULL;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *action = NULL;
        const char *const *names;
        Vm *existing;
        int r;

        r = lv_xml_vm_args_of(parsed, &dom, &devices, &gerr);
        if (r >= 0)
                r = registry_check_vm_args(dom->name, (const char *const *)devices->pdata,
                                           devices->len, &options, &gerr);
        if (r < 0)
                return bus_error_set_model(error, r, gerr->message);
        names = (const char *const *)devices->pdata;

        action = g_strdup_printf("register VM %s from its domain XML", dom->name);
        r = bus_authorize(m, &d->auth, action, error);
        if (r < 0)
                return r;
        if (r == 0)
                return 1; /* the bus is asked who the caller is; the call comes again */
        if (d->stopping)
                return sd_bus_error_set(error, BUS_ERROR_BUSY,
                                        "vfio-migd is shutting down; retry once it has "
                                        "restarted.");

        existing = registry_get_vm(d->registry, dom->name);
        if (existing && lv_vm_has_devices(existing, names, devices->len))
                return reply_vm_path(m, dom->name);
        if (existing &&
            (!g_str_has_prefix(vm_origin(existing), "libvirt") || vm_is_busy(existing, NULL)))
                return sd_bus_error_setf(
                    error, BUS_ERROR_VM_EXISTS,
                    "VM %s is registered with other devices%s; unregister it first.", dom->name,
                    vm_is_busy(existing, NULL) ? " and a sequence runs on it"
                                               : " through RegisterVM");
        r = check_devices(d, dom, existing, error);
        if (r < 0)
                return r;
        if (existing) {
                r = manager_unregister_vm(&d->manager, dom->name, &gerr);
                if (r < 0)
                        return bus_error_set_model(error, r, gerr->message);
                log_info("VM %s: registered again from its domain XML (its hostdevs changed).",
                         dom->name);
        }
        r = manager_register_vm(&d->manager, dom->name, names, devices->len, &options,
                                "libvirt-xml", NULL, &gerr);
        if (r < 0)
                return bus_error_set_model(error, r, gerr->message);
        return reply_vm_path(m, dom->name);
}

int bus_libvirt_method_register_vm_from_xml(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;
        VmOptions options = *registry_defaults(d->registry);
        const char *xml;
        int r;

        r = sd_bus_message_read(m, "s", &xml);
        if (r < 0)
                return r;
        r = bus_manager_read_vm_options(m, &options, error);
        if (r < 0)
                return r;
        return xml_call_start(m, d, xml, &options, register_vm_from_xml_parsed);
}

/* ---- CheckIncomingMigration ---- */

static int append_ranges(sd_bus_message *reply, const GArray *ranges)
{
        int r = sd_bus_message_open_container(reply, 'a', "(tt)");

        for (guint i = 0; r >= 0 && i < ranges->len; i++) {
                const IovaRange *x = &g_array_index(ranges, IovaRange, i);
                r = sd_bus_message_append(reply, "(tt)", x->start, x->end);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* One a{sv} entry whose value is an "as" (strv is char*) or "a(tt)". */
static int append_detail(sd_bus_message *reply, const char *key, const GPtrArray *strv,
                         const GArray *ranges)
{
        int r = sd_bus_message_open_container(reply, 'e', "sv");

        if (r >= 0)
                r = sd_bus_message_append(reply, "s", key);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', strv ? "as" : "a(tt)");
        if (r >= 0 && strv) {
                r = sd_bus_message_open_container(reply, 'a', "s");
                for (guint i = 0; r >= 0 && i < strv->len; i++)
                        r = sd_bus_message_append(reply, "s", (const char *)strv->pdata[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        } else if (r >= 0)
                r = append_ranges(reply, ranges);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* A few lines per call whatever the XML holds: the first problems, then a count. */
#define CHECK_LOG_PROBLEMS_MAX 8u

static void log_check_problems(const GPtrArray *problems)
{
        for (guint i = 0; i < problems->len && i < CHECK_LOG_PROBLEMS_MAX; i++) {
                const LvProblem *p = problems->pdata[i];
                log_notice("Incoming migration check: %s: %s", p->id, p->message);
        }
        if (problems->len > CHECK_LOG_PROBLEMS_MAX)
                log_notice("Incoming migration check: ... and %u more problems (the reply "
                           "lists them all).",
                           problems->len - CHECK_LOG_PROBLEMS_MAX);
}

static int check_incoming_parsed(sd_bus_message *m, Daemon *d, LvDomain *parsed,
                                 const VmOptions *options, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(LvIncoming) c = NULL;
        g_autoptr(GError) gerr = NULL;
        size_t before = registry_n_devices(d->registry);
        int r;

        r = lv_check_incoming_of(d->registry, parsed, &c, &gerr);
        if (registry_n_devices(d->registry) != before)
                bus_manager_emit_counts(d, false, true);
        if (r < 0)
                return bus_error_set_model(error, r, gerr->message);
        log_check_problems(c->problems);

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "b", c->allowed);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sss)");
        for (guint i = 0; r >= 0 && i < c->problems->len; i++) {
                const LvProblem *p = c->problems->pdata[i];
                r = sd_bus_message_append(reply, "(sss)", p->id, p->hostdev, p->message);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = append_detail(reply, "warnings", c->warnings, NULL);
        if (r >= 0)
                r = append_detail(reply, "guest-ram", NULL, c->guest_ram);
        if (r >= 0)
                r = append_detail(reply, "iova-ranges", NULL, c->iova);
        if (r >= 0)
                r = append_detail(reply, "devices", c->devices, NULL);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int bus_libvirt_method_check_incoming(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        const char *xml;
        int r;

        r = sd_bus_message_read(m, "s", &xml);
        if (r < 0)
                return r;
        return xml_call_start(m, userdata, xml, NULL, check_incoming_parsed);
}

/* ---- ListLibvirtDomains and the properties ---- */

static int append_domain(sd_bus_message *reply, const LvDomainReport *rep)
{
        g_autofree char *path = rep->vm ? bus_vm_path(rep->vm) : g_strdup("/");
        int r;

        if (!path)
                return -ENOMEM;
        r = sd_bus_message_open_container(reply, 'r', "ssoa(ss)");
        if (r >= 0)
                r = sd_bus_message_append(reply, "sso", rep->name,
                                          lv_domain_status_to_string(rep->status), path);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (guint i = 0; r >= 0 && i < rep->problems->len; i++) {
                const LvProblem *p = rep->problems->pdata[i];
                r = sd_bus_message_append(reply, "(ss)", p->hostdev, p->message);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

int bus_libvirt_method_list_domains(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Daemon *d = userdata;
        const GPtrArray *domains = d->libvirt ? lv_tracker_domains(d->libvirt) : NULL;
        int r;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ssoa(ss))");
        for (guint i = 0; r >= 0 && domains && i < domains->len; i++)
                r = append_domain(reply, domains->pdata[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int bus_libvirt_property_get_uri(sd_bus *bus, const char *path, const char *interface,
                                 const char *property, sd_bus_message *reply, void *userdata,
                                 sd_bus_error *error)
{
        Daemon *d = userdata;

        return sd_bus_message_append(reply, "s", d->libvirt_uri ? d->libvirt_uri : "");
}

int bus_libvirt_property_get_connected(sd_bus *bus, const char *path, const char *interface,
                                       const char *property, sd_bus_message *reply, void *userdata,
                                       sd_bus_error *error)
{
        Daemon *d = userdata;

        return sd_bus_message_append(reply, "b", d->libvirt && lv_tracker_connected(d->libvirt));
}
