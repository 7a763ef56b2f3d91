/* migctl-read: the reading subcommands of vfio-migctl: status, list-*, show*, last, monitor */
#include "migctl-verbs.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mig-state.h"
#include "migctl-json.h"
#include "migctl-monitor.h"
#include "migctl-print.h"
#include "vm.h"

int verb_status(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *props = NULL, *vms = NULL, *devices = NULL;
        sd_bus_message *reply = NULL;
        size_t i, in_vms = 0;
        json_t *d;
        int r;

        r = ctl_get_all(c, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE, &props, &error);
        if (r >= 0)
                r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                       "ListVMs", &error, &reply, "");
        if (r >= 0)
                r = json_from_bus_value(reply, &vms);
        reply = sd_bus_message_unref(reply);
        if (r >= 0)
                r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                       "ListDevices", &error, &reply, "");
        if (r >= 0)
                r = json_from_bus_value(reply, &devices);
        reply = sd_bus_message_unref(reply);
        if (r < 0) {
                r = ctl_fail(c, "status", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        /* a(ssusoo): the fifth member is the VM's path, "/" when the device is free */
        for (i = 0; (d = json_array_get(devices, i)); i++)
                if (strcmp(json_string_value(json_array_get(d, 4)) ?: "/", "/") != 0)
                        in_vms++;

        if (c->json) {
                json_t *j = json_pack("{s:O,s:I,s:I,s:I,s:I}", "properties", props, "vms",
                                      (json_int_t)json_array_size(vms), "devices",
                                      (json_int_t)json_array_size(devices), "devices-in-vms",
                                      (json_int_t)in_vms, "devices-free",
                                      (json_int_t)(json_array_size(devices) - in_vms));
                json_print(c->out, j);
                json_decref(j);
                return MIGCTL_EXIT_OK;
        }
        fprintf(c->out, "vfio-migd %s on %s\n", json_str(props, "Version", "?"),
                getenv("DBUS_SYSTEM_BUS_ADDRESS") ?: "the system bus");
        fprintf(c->out, "Backend: %s\n", json_str(props, "Backend", "?"));
        if (json_object_get(props, "PolicyFiles")) {
                g_autofree char *files = fmt_value(json_object_get(props, "PolicyFiles"));
                fprintf(c->out, "Policy:  %s\n",
                        json_array_size(json_object_get(props, "PolicyFiles"))
                            ? files
                            : "built-in defaults");
        }
        fprintf(c->out, "VMs:     %zu\n", json_array_size(vms));
        fprintf(c->out, "Devices: %zu (%zu in VMs, %zu free)\n", json_array_size(devices), in_vms,
                json_array_size(devices) - in_vms);
        return MIGCTL_EXIT_OK;
}

static int list_vms_json(Ctl *c, json_t **ret, sd_bus_error *error)
{
        sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   "ListVMs", error, &reply, "");
        if (r >= 0)
                r = json_from_bus_value(reply, ret);
        sd_bus_message_unref(reply);
        return r;
}

int verb_list_vms(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *vms = NULL, *out = json_array();
        size_t i;
        json_t *vm;
        int r;

        r = list_vms_json(c, &vms, &error);
        if (r < 0) {
                r = ctl_fail(c, "list VMs", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        for (i = 0; (vm = json_array_get(vms, i)); i++) {
                json_t *props = NULL;
                const char *path = json_string_value(json_array_get(vm, 1));
                /* A VM unregistered since ListVMs is shown without its properties. */
                if (ctl_get_all(c, path, MIGD_VM_IFACE, &props, NULL) < 0)
                        props = json_object();
                json_object_set_new(props, "Path", json_string(path));
                json_object_set_new(props, "Name", json_copy(json_array_get(vm, 0)));
                json_array_append_new(out, props);
        }
        if (c->json) {
                json_print(c->out, out);
                return MIGCTL_EXIT_OK;
        }
        if (json_array_size(out) == 0) {
                fprintf(c->out, "no VMs registered (see 'vfio-migctl register')\n");
                return MIGCTL_EXIT_OK;
        }
        static const char *const headers[] = {"NAME", "STATE", "MIGRATABLE", "P2P-MODE", "DEVICES"};
        Table *t = table_new(G_N_ELEMENTS(headers), headers);
        for (i = 0; (vm = json_array_get(out, i)); i++) {
                g_autofree char *devices = fmt_value(json_object_get(vm, "DeviceNames"));
                g_autofree char *migratable = fmt_value(json_object_get(vm, "Migratable"));
                const char *row[] = {json_str(vm, "Name", "?"), json_str(vm, "State", "?"),
                                     migratable, json_str(vm, "P2PMode", "?"), devices};
                table_add(t, row);
        }
        table_print(t, c->out, "");
        table_free(t);
        return MIGCTL_EXIT_OK;
}

int verb_list_devices(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *devices = NULL, *out = json_array();
        sd_bus_message *reply = NULL;
        size_t i;
        json_t *d;
        int r;

        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "ListDevices", &error, &reply, "");
        if (r >= 0)
                r = json_from_bus_value(reply, &devices);
        sd_bus_message_unref(reply);
        if (r < 0) {
                r = ctl_fail(c, "list devices", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        /* a(ssusoo): name, driver, flags, state, VM path, device path */
        for (i = 0; (d = json_array_get(devices, i)); i++) {
                const char *vm_path = json_string_value(json_array_get(d, 4));
                g_autofree char *vm = ctl_path_to_name(vm_path, MIGD_VM_PREFIX);
                uint32_t flags = (uint32_t)json_integer_value(json_array_get(d, 2));
                json_t *o =
                    json_pack("{s:O,s:O,s:i,s:s,s:O,s:s?,s:O,s:O}", "name", json_array_get(d, 0),
                              "driver", json_array_get(d, 1), "flags", (int)flags, "flag-names",
                              mig_flags_to_string(flags), "state", json_array_get(d, 3), "vm", vm,
                              "vm-path", json_array_get(d, 4), "path", json_array_get(d, 5));
                if (o)
                        json_array_append_new(out, o);
        }
        if (c->json) {
                json_print(c->out, out);
                return MIGCTL_EXIT_OK;
        }
        if (json_array_size(out) == 0) {
                fprintf(c->out, "vfio-migd knows no devices (after adding some: "
                                "'vfio-migctl rescan')\n");
                return MIGCTL_EXIT_OK;
        }
        static const char *const headers[] = {"NAME", "DRIVER", "FLAGS", "STATE", "VM"};
        Table *t = table_new(G_N_ELEMENTS(headers), headers);
        for (i = 0; (d = json_array_get(out, i)); i++) {
                const char *row[] = {json_str(d, "name", "?"), json_str(d, "driver", "?"),
                                     json_str(d, "flag-names", "?"), json_str(d, "state", "?"),
                                     json_str(d, "vm", "-")};
                table_add(t, row);
        }
        table_print(t, c->out, "");
        table_free(t);
        return MIGCTL_EXIT_OK;
}

/* Properties the human output shows in this order, with labels; others follow as they come. */
typedef struct Label {
        const char *property, *label;
} Label;

static void print_properties(FILE *f, const json_t *props, const Label *labels, size_t n,
                             const char *const *skip)
{
        json_t *obj = (json_t *)props;

        for (size_t i = 0; i < n; i++) {
                json_t *pv = json_object_get(props, labels[i].property);
                if (!pv)
                        continue;
                g_autofree char *text = fmt_value(pv);
                fprintf(f, "  %-16s %s\n", labels[i].label, text);
        }
        for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
                const char *key = json_object_iter_key(it);
                bool known = false;
                for (size_t i = 0; i < n; i++)
                        known = known || strcmp(labels[i].property, key) == 0;
                for (size_t i = 0; skip && skip[i]; i++)
                        known = known || strcmp(skip[i], key) == 0;
                if (known)
                        continue;
                g_autofree char *text = fmt_value(json_object_iter_value(it));
                fprintf(f, "  %-16s %s\n", key, text);
        }
}

/* IovaRanges as "0xSTART-0xEND" strings for people: addresses read in hex, and the generic
 * conversion gives 2^64-1 as a decimal string. NULL on failure. */
static json_t *iova_ranges_text(Ctl *c, const char *path)
{
        sd_bus_message *reply = NULL;
        json_t *out = NULL;
        uint64_t start, end;
        int r;

        r = sd_bus_get_property(c->bus, MIGD_BUS_NAME, path, MIGD_VM_IFACE, "IovaRanges", NULL,
                                &reply, "a(tt)");
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(tt)");
        if (r >= 0)
                out = json_array();
        while (r >= 0 && (r = sd_bus_message_read(reply, "(tt)", &start, &end)) > 0)
                json_array_append_new(out, json_sprintf("0x%" PRIx64 "-0x%" PRIx64, start, end));
        sd_bus_message_unref(reply);
        if (r < 0)
                json_decref(g_steal_pointer(&out));
        return out;
}

int verb_show(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *props = NULL, *devices = json_array();
        g_autofree char *path = NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("show VM '%s'", shown);
        size_t i;
        json_t *dp;
        int r;

        r = ctl_vm_path(c, argv[0], &path, &error);
        if (r >= 0)
                r = ctl_get_all(c, path, MIGD_VM_IFACE, &props, &error);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        for (i = 0; (dp = json_array_get(json_arr(props, "Devices"), i)); i++) {
                json_t *d = NULL;
                if (ctl_get_all(c, json_string_value(dp), MIGD_DEVICE_IFACE, &d, NULL) < 0)
                        d = json_object();
                json_object_set_new(d, "Path", json_copy(dp));
                json_array_append_new(devices, d);
        }
        if (c->json) {
                json_t *j = json_deep_copy(props);
                json_object_set_new(j, "Path", json_string(path));
                json_object_set(j, "DeviceDetails", devices);
                json_print(c->out, j);
                json_decref(j);
                return MIGCTL_EXIT_OK;
        }

        static const Label labels[] = {
            {"State", "State:"},
            {"Migratable", "Migratable:"},
            {"Blockers", "Blockers:"},
            {"P2PMode", "P2P mode:"},
            {"Strategy", "Strategy:"},
            {"PhaseDeadlineMs", "Phase deadline:"},
            {"Parallelism", "Parallelism:"},
            {"Groups", "IOMMU groups:"},
            {"IovaRanges", "IOVA ranges:"},
            {"Warnings", "Warnings:"},
        };
        static const char *const skip[] = {"Name", "Devices", "DeviceNames", "LastSequence", NULL};
        json_t *iova = iova_ranges_text(c, path);
        if (iova)
                json_object_set_new(props, "IovaRanges", iova);
        fprintf(c->out, "VM %s (%s)\n", json_str(props, "Name", argv[0]), path);
        /* units and meanings the bare numbers do not carry */
        json_t *deadline = json_object_get(props, "PhaseDeadlineMs");
        if (json_is_integer(deadline))
                json_object_set_new(
                    props, "PhaseDeadlineMs",
                    json_sprintf("%" JSON_INTEGER_FORMAT " ms", json_integer_value(deadline)));
        if (json_integer_value(json_object_get(props, "Parallelism")) == 0 &&
            json_object_get(props, "Parallelism"))
                json_object_set_new(props, "Parallelism", json_string("0 (one worker per device)"));
        print_properties(c->out, props, labels, G_N_ELEMENTS(labels), skip);
        fprintf(c->out, "  %-16s ", "Last sequence:");
        json_t *last = json_object_get(props, "LastSequence");
        if (json_object_size(last) > 0)
                print_report_summary(c->out, last);
        else
                fprintf(c->out, "none\n");
        fprintf(c->out, "  Devices:\n");
        static const char *const headers[] = {"NAME", "DRIVER", "FLAGS", "STATE", "GROUP"};
        Table *t = table_new(G_N_ELEMENTS(headers), headers);
        for (i = 0; (dp = json_array_get(devices, i)); i++) {
                const char *row[] = {json_str(dp, "Name", "?"), json_str(dp, "Driver", "?"),
                                     json_str(dp, "MigrationFlagNames", "?"),
                                     json_str(dp, "State", "?"), json_str(dp, "Group", "?")};
                table_add(t, row);
        }
        table_print(t, c->out, "    ");
        table_free(t);
        return MIGCTL_EXIT_OK;
}

int verb_show_device(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *props = NULL;
        g_autofree char *path = NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("show device '%s'", shown);
        int r;

        r = ctl_device_path(c, argv[0], &path, &error);
        if (r >= 0)
                r = ctl_get_all(c, path, MIGD_DEVICE_IFACE, &props, &error);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json) {
                json_object_set_new(props, "Path", json_string(path));
                json_print(c->out, props);
                return MIGCTL_EXIT_OK;
        }
        g_autofree char *vm = ctl_path_to_name(json_str(props, "VM", "/"), MIGD_VM_PREFIX);
        char ids[32];
        snprintf(ids, sizeof(ids), "%04" G_GINT64_MODIFIER "x:%04" G_GINT64_MODIFIER "x",
                 json_i64(props, "VendorId"), json_i64(props, "DeviceId"));
        fprintf(c->out, "Device %s (%s)\n", json_str(props, "Name", argv[0]), path);
        fprintf(c->out, "  %-16s %s\n", "Driver:", json_str(props, "Driver", "?"));
        fprintf(c->out, "  %-16s %s\n", "Vendor:device:", ids);
        fprintf(c->out, "  %-16s %s\n", "IOMMU group:", json_str(props, "Group", "?"));
        fprintf(c->out, "  %-16s %s (%" G_GINT64_FORMAT ")\n",
                "Migration flags:", json_str(props, "MigrationFlagNames", "?"),
                json_i64(props, "MigrationFlags"));
        fprintf(c->out, "  %-16s %s\n", "State:", json_str(props, "State", "?"));
        fprintf(c->out, "  %-16s %s\n", "VM:", vm ? vm : "- (free)");
        static const char *const skip[] = {"Name",
                                           "Driver",
                                           "Group",
                                           "VendorId",
                                           "DeviceId",
                                           "MigrationFlags",
                                           "MigrationFlagNames",
                                           "State",
                                           "VM",
                                           "Path",
                                           NULL};
        print_properties(c->out, props, NULL, 0, skip);
        return MIGCTL_EXIT_OK;
}

int verb_last(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        json_auto_t *report = NULL;
        g_autofree char *path = NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("last sequence of VM '%s'", shown);
        int r;

        r = ctl_vm_path(c, argv[0], &path, &error);
        if (r >= 0)
                r = ctl_get_property(c, path, MIGD_VM_IFACE, "LastSequence", &report, &error);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json)
                json_print(c->out, report);
        else
                print_report(c->out, argv[0], report);
        return MIGCTL_EXIT_OK;
}

int verb_monitor(Ctl *c, int argc, char **argv)
{
        return ctl_monitor(c);
}
