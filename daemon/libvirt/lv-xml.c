/* lv-xml: what the daemon does with a domain XML a caller hands in */
#include "libvirt/lv-xml.h"

#include <errno.h>
#include <string.h>

#include "core/iova.h"
#include "core/mig-state.h"
#include "host/host.h"

G_STATIC_ASSERT(LV_DOMAIN_HOSTDEVS_MAX == VM_DEVICES_MAX);


int lv_xml_parse(const char *xml, size_t len, LvDomain **ret, GError **error)
{
        g_autoptr(LvDomain) d = NULL;
        int r;

        r = lv_domain_parse(xml, len, &d, error);
        if (r < 0)
                return r;
        /* Before any per-hostdev work: a caller-sized list is refused in O(n). */
        r = lv_domain_check_bounds(d, error);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&d);
        return 0;
}

int lv_xml_vm_args(const char *xml, size_t len, LvDomain **ret_domain, GPtrArray **ret_devices,
                   GError **error)
{
        LvDomain *d = NULL;
        int r;

        r = lv_xml_parse(xml, len, &d, error);
        if (r < 0)
                return r;
        return lv_xml_vm_args_of(d, ret_domain, ret_devices, error);
}

int lv_xml_vm_args_of(LvDomain *parsed, LvDomain **ret_domain, GPtrArray **ret_devices,
                      GError **error)
{
        g_autoptr(LvDomain) d = parsed;
        g_autoptr(GPtrArray) devices = g_ptr_array_new();
        g_autoptr(GString) problems = NULL;
        int r;


        r = vm_name_check(d->name, "domain name", LV_DOMAIN_RENAME_FIX, error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < d->n_hostdevs; i++) {
                const LvHostdev *h = &d->hostdevs[i];
                g_autofree char *label = NULL;

                if (!h->problem) {
                        g_ptr_array_add(devices, h->name);
                        continue;
                }
                /* Every broken hostdev, so that one edit fixes them all. */
                label = lv_hostdev_label(d, i);
                if (!problems)
                        problems = g_string_new(NULL);
                g_string_append_printf(problems, "%shostdev %s: %s", problems->len ? "; " : "",
                                       label, h->problem);
        }
        if (problems) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL), "Domain %s: %s",
                            d->name, problems->str);
                return -EINVAL;
        }
        if (devices->len == 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "Domain %s has no VFIO hostdev (<hostdev mode='subsystem' "
                            "type='pci'> or type='mdev'>): there is nothing for vfio-migd to "
                            "coordinate.",
                            d->name);
                return -EINVAL;
        }
        *ret_domain = g_steal_pointer(&d);
        *ret_devices = g_steal_pointer(&devices);
        return 0;
}

bool lv_vm_has_devices(const Vm *vm, const char *const *names, size_t n)
{
        g_autoptr(GHashTable) held = g_hash_table_new(g_str_hash, g_str_equal);

        if (vm_n_devices(vm) != n)
                return false;
        /* A hash, not vm_device_index() per name: O(n) for a caller's list. */
        for (size_t i = 0; i < n; i++)
                g_hash_table_add(held, vm_device(vm, i)->info.name);
        for (size_t i = 0; i < n; i++)
                if (!g_hash_table_contains(held, names[i]))
                        return false;
        return true;
}

char *lv_hostdev_unknown_sentence(const char *backend, const char *domain, const LvHostdev *h)
{
        return g_strdup_printf(
            "Hostdev %s of domain %s: the %s backend knows no such device; %s, then call "
            "Rescan or register again.",
            h->name, domain, backend,
            h->type == LV_HOSTDEV_MDEV ? "create the mdev (mdevctl start)"
                                       : "bind it to vfio-pci or its vendor's VFIO variant driver");
}

char *lv_hostdev_not_vfio_sentence(const LvHostdev *h, const DeviceInfo *info)
{
        if (host_device_is_vfio(h->type == LV_HOSTDEV_MDEV ? "mdev" : "pci", info->driver))
                return NULL;
        return g_strdup_printf("Hostdev %s is bound to %s, not to a VFIO driver; bind it to "
                               "vfio-pci (or its vendor's VFIO variant driver).",
                               h->name, info->driver ? info->driver : "no driver");
}

void lv_problem_free(LvProblem *p)
{
        if (!p)
                return;
        g_free(p->id);
        g_free(p->hostdev);
        g_free(p->message);
        g_free(p);
}

void lv_problem_add(GPtrArray *problems, const char *id, const char *hostdev, const char *fmt, ...)
{
        LvProblem *p = g_new0(LvProblem, 1);
        va_list ap;

        p->id = g_strdup(id);
        p->hostdev = g_strdup(hostdev ? hostdev : "");
        va_start(ap, fmt);
        p->message = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_ptr_array_add(problems, p);
}

void lv_incoming_free(LvIncoming *c)
{
        if (!c)
                return;
        /* A check refused before it began (malformed XML) has none of them. */
        g_clear_pointer(&c->problems, g_ptr_array_unref);
        g_clear_pointer(&c->warnings, g_ptr_array_unref);
        g_clear_pointer(&c->guest_ram, g_array_unref);
        g_clear_pointer(&c->iova, g_array_unref);
        g_clear_pointer(&c->devices, g_ptr_array_unref);
        g_free(c);
}

/* The source's declaration against what this host sees. */
static void check_declared(LvIncoming *c, const char *domain, const LvHostdev *h,
                           const DeviceInfo *info)
{
        if (!h->has_declared) {
                g_ptr_array_add(c->warnings,
                                g_strdup_printf("Hostdev %s of domain %s: the XML declares no "
                                                "driver, id or flags (no vfio-migd metadata from "
                                                "the source), so they were not compared.",
                                                h->name, domain));
                return;
        }
        if (g_strcmp0(h->declared_driver, info->driver) != 0)
                lv_problem_add(c->problems, "driver-mismatch", h->name,
                               "Hostdev %s: the source drove it with %s, this host with %s; the "
                               "device state cannot be loaded by another driver. Bind it to %s.",
                               h->name, h->declared_driver ? h->declared_driver : "(none)",
                               info->driver ? info->driver : "(none)",
                               h->declared_driver ? h->declared_driver : "the source's driver");
        if (h->declared_vendor != info->vendor_id || h->declared_device != info->device_id)
                lv_problem_add(c->problems, "id-mismatch", h->name,
                               "Hostdev %s: the source's device is %04x:%04x, this host's is "
                               "%04x:%04x; the state of one cannot be loaded into the other. "
                               "Point the hostdev at a %04x:%04x device.",
                               h->name, h->declared_vendor, h->declared_device, info->vendor_id,
                               info->device_id, h->declared_vendor, h->declared_device);
        if (__atomic_load_n(&info->flags_unknown, __ATOMIC_ACQUIRE)) {
                g_autofree char *src = g_strdup(mig_flags_to_string(h->declared_flags));
                g_ptr_array_add(c->warnings,
                                g_strdup_printf("Hostdev %s: this host's migration flags are not "
                                                "known yet (reading them would open the "
                                                "device's VFIO group, which the VMM needs), so "
                                                "the source's %s are assumed; they are compared "
                                                "when vfio-migd opens the device.",
                                                h->name, src));
        } else if (h->declared_flags != info->migration_flags) {
                g_autofree char *src = g_strdup(mig_flags_to_string(h->declared_flags));

                lv_problem_add(c->problems, "flags-mismatch", h->name,
                               "Hostdev %s: the source's device migrates with flags %s, this "
                               "host's with %s; both sides must offer the same migration "
                               "features (driver or firmware version).",
                               h->name, src, mig_flags_to_string(info->migration_flags));
        }
}

static void check_hostdev(Registry *r, LvIncoming *c, const LvDomain *d, size_t i)
{
        const LvHostdev *h = &d->hostdevs[i];
        g_autoptr(GError) gerr = NULL;
        g_autofree char *not_vfio = NULL;
        Device *dev;
        Vm *holder;
        int err;

        if (h->problem) {
                g_autofree char *label = lv_hostdev_label(d, i);
                lv_problem_add(c->problems, "bad-hostdev", label, "Hostdev %s: %s", label,
                               h->problem);
                return;
        }
        if (!registry_has_device(r, h->name)) {
                g_autofree char *s =
                    lv_hostdev_unknown_sentence(registry_backend_name(r), d->name, h);
                lv_problem_add(c->problems, "no-device", h->name, "%s", s);
                return;
        }
        err = registry_open_device(r, h->name, &dev, &gerr);
        if (err < 0) {
                lv_problem_add(c->problems, err == -EBUSY ? "device-busy" : "no-device", h->name,
                               "Hostdev %s: %s", h->name, gerr->message);
                return;
        }
        g_ptr_array_add(c->devices, g_strdup(h->name));
        not_vfio = lv_hostdev_not_vfio_sentence(h, &dev->info);
        if (not_vfio)
                lv_problem_add(c->problems, "not-vfio", h->name, "%s", not_vfio);
        holder = registry_device_vm(r, h->name);
        if (holder && strcmp(vm_name(holder), d->name) != 0)
                lv_problem_add(c->problems, "device-busy", h->name,
                               "Hostdev %s belongs to VM %s on this host; migrate or stop %s "
                               "first, or use another device.",
                               h->name, vm_name(holder), vm_name(holder));
        check_declared(c, d->name, h, &dev->info);
}

static void check_policy(Registry *r, LvIncoming *c, const LvDomain *d)
{
        g_autoptr(GError) gerr = NULL;
        g_autoptr(GHashTable) by_name = g_hash_table_new(g_str_hash, g_str_equal);
        g_autofree uint32_t *assumed = g_new(uint32_t, c->devices->len + 1);
        PolicyDecision *dec = NULL;

        /* Flags this host has not read yet are taken as the source declares them. */
        for (size_t i = 0; i < d->n_hostdevs; i++)
                if (d->hostdevs[i].name && d->hostdevs[i].has_declared)
                        g_hash_table_insert(by_name, d->hostdevs[i].name, &d->hostdevs[i]);
        for (guint i = 0; i < c->devices->len; i++) {
                const LvHostdev *h = g_hash_table_lookup(by_name, c->devices->pdata[i]);
                assumed[i] = h ? h->declared_flags : UINT32_MAX;
        }
        if (registry_decide_devices(r, d->name, (const char *const *)c->devices->pdata,
                                    c->devices->len, assumed, &dec, &gerr) < 0) {
                lv_problem_add(c->problems, "no-device", "", "%s", gerr->message);
                return;
        }
        for (size_t i = 0; i < dec->n_blockers; i++) {
                g_autofree char *id = g_strconcat("policy:", dec->blockers[i].id, NULL);
                lv_problem_add(c->problems, id, dec->blockers[i].device, "%s",
                               dec->blockers[i].message);
        }
        policy_decision_free(dec);
}

static void check_iova(Registry *r, LvIncoming *c, const LvDomain *d)
{
        g_autoptr(GError) gerr = NULL;
        g_autoptr(GPtrArray) warnings = NULL;
        g_autoptr(GArray) ranges = NULL;
        g_autoptr(GArray) uncovered = NULL;

        if (registry_devices_iova(r, (const char *const *)c->devices->pdata, c->devices->len,
                                  &ranges, &warnings, &gerr) < 0) {
                g_ptr_array_add(c->warnings, g_strdup_printf("The devices' IOVA space is "
                                                             "unknown: %s",
                                                             gerr->message));
                return;
        }
        for (guint i = 0; i < warnings->len; i++)
                g_ptr_array_add(c->warnings, g_strdup(warnings->pdata[i]));
        g_array_append_vals(c->iova, ranges->data, ranges->len);
        uncovered = iova_ranges_subtract(c->guest_ram, ranges);
        for (guint i = 0; i < uncovered->len; i++) {
                const IovaRange *u = &g_array_index(uncovered, IovaRange, i);

                lv_problem_add(c->problems, "iova", "",
                               "Guest RAM 0x%" G_GINT64_MODIFIER "x-0x%" G_GINT64_MODIFIER
                               "x of domain %s lies outside the devices' valid IOVA space "
                               "(reserved regions of their IOMMU groups); the devices could "
                               "not DMA there. Give the guest less RAM or use devices in other "
                               "groups.",
                               u->start, u->end, d->name);
        }
}

int lv_check_incoming(Registry *r, const char *xml, size_t len, LvIncoming **ret, GError **error)
{
        LvDomain *d = NULL;
        int err;

        err = lv_xml_parse(xml, len, &d, error);
        if (err < 0)
                return err;
        return lv_check_incoming_of(r, d, ret, error);
}

int lv_check_incoming_of(Registry *r, LvDomain *parsed, LvIncoming **ret, GError **error)
{
        g_autoptr(LvDomain) d = parsed;
        g_autoptr(LvIncoming) c = g_new0(LvIncoming, 1);
        bool unknown = false;
        int err;

        err = vm_name_check(d->name, "domain name", LV_DOMAIN_RENAME_FIX, error);
        if (err < 0)
                return err;
        c->problems = g_ptr_array_new_with_free_func((GDestroyNotify)lv_problem_free);
        c->warnings = g_ptr_array_new_with_free_func(g_free);
        c->devices = g_ptr_array_new_with_free_func(g_free);
        c->iova = iova_ranges_new();
        c->guest_ram = lv_domain_guest_ram(d);

        for (size_t i = 0; i < d->n_hostdevs; i++)
                if (d->hostdevs[i].name && !registry_has_device(r, d->hostdevs[i].name))
                        unknown = true;
        /* A device bound since the last scan is not unknown. */
        if (unknown)
                (void)registry_rescan(r, NULL);
        for (size_t i = 0; i < d->n_hostdevs; i++)
                check_hostdev(r, c, d, i);
        if (d->n_hostdevs == 0)
                g_ptr_array_add(c->warnings, g_strdup_printf("Domain %s has no VFIO hostdev; "
                                                             "vfio-migd has nothing to check.",
                                                             d->name));
        /* The decision and the IOVA space need every device. */
        if (c->devices->len > 0 && c->devices->len == lv_domain_n_usable(d)) {
                check_policy(r, c, d);
                check_iova(r, c, d);
        }
        c->allowed = c->problems->len == 0;
        *ret = g_steal_pointer(&c);
        return 0;
}
