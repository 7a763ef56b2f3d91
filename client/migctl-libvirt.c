/* migctl-libvirt: the libvirt subcommands of vfio-migctl: register-xml, check-incoming and
 * libvirt-domains */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "migctl-json.h"
#include "migctl-print.h"
#include "migctl-verbs.h"

/* FILE or "-" (stdin) into a new string; a MIGCTL_EXIT_* code, having said why on failure. */
static int read_xml(Ctl *c, const char *file, char **ret)
{
        g_autoptr(GError) gerr = NULL;
        g_autofree char *text = NULL;
        gsize len = 0;

        if (strcmp(file, "-") == 0) {
                g_autoptr(GIOChannel) in = g_io_channel_unix_new(0);

                if (g_io_channel_set_encoding(in, NULL, &gerr) == G_IO_STATUS_NORMAL)
                        (void)g_io_channel_read_to_end(in, &text, &len, &gerr);
        } else
                (void)g_file_get_contents(file, &text, &len, &gerr);
        if (gerr)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, -EIO, "cannot read %s: %s",
                                      strcmp(file, "-") == 0 ? "the domain XML from stdin" : file,
                                      gerr->message);
        if (strlen(text) != len)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, -EINVAL,
                                      "%s holds a NUL byte; give the domain XML as text (virsh "
                                      "dumpxml DOMAIN)",
                                      file);
        *ret = g_steal_pointer(&text);
        return MIGCTL_EXIT_OK;
}

int verb_register_xml(Ctl *c, int argc, char **argv, const RegisterOptions *reg)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        g_autofree char *xml = NULL, *what = NULL, *name = NULL;
        const char *path = NULL;
        int r;

        r = read_xml(c, argv[0], &xml);
        if (r != MIGCTL_EXIT_OK)
                return r;
        what = g_strdup_printf("register the VM of the domain XML in %s", argv[0]);
        r = sd_bus_message_new_method_call(c->bus, &m, MIGD_BUS_NAME, MIGD_ROOT_PATH,
                                           MIGD_MANAGER_IFACE, "RegisterVMFromXML");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", xml);
        if (r >= 0)
                r = append_options(m, reg);
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 0, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                goto out;
        }
        name = ctl_path_to_name(path, MIGD_VM_PREFIX);
        if (c->json) {
                json_t *j = json_pack("{s:s?,s:s}", "name", name, "path", path);
                json_print(c->out, j);
                json_decref(j);
        } else
                fprintf(c->out, "registered VM %s from %s at %s\n", name ? name : "?", argv[0],
                        path);
        r = MIGCTL_EXIT_OK;
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        return r;
}

/* A range end: an integer, or above 2^63-1 the decimal string the JSON conversion makes. */
static uint64_t range_value(const json_t *v)
{
        if (json_is_string(v))
                return g_ascii_strtoull(json_string_value(v), NULL, 10);
        return (uint64_t)json_integer_value(v);
}

/* [[start, end]...] as "0x0-0x7fffffff, ..." */
static char *format_ranges(const json_t *ranges)
{
        GString *s = g_string_new(NULL);
        const json_t *e;
        size_t i;

        json_array_foreach(ranges, i, e)
            g_string_append_printf(s, "%s0x%" PRIx64 "-0x%" PRIx64, i ? ", " : "",
                                   range_value(json_array_get(e, 0)),
                                   range_value(json_array_get(e, 1)));
        if (s->len == 0)
                g_string_append(s, "-");
        return g_string_free(s, false);
}

static void print_incoming(FILE *f, const char *file, const json_t *j)
{
        const json_t *e, *details = json_object_get(j, "details");
        g_autofree char *ram = format_ranges(json_arr(details, "guest-ram"));
        g_autofree char *iova = format_ranges(json_arr(details, "iova-ranges"));
        g_autofree char *devices = fmt_value(json_object_get(details, "devices"));
        size_t i;

        fprintf(f, "Incoming migration of %s: %s\n", file,
                json_bool(j, "allowed") ? "allowed" : "refused");
        fprintf(f, "  devices:     %s\n  guest RAM:   %s\n  IOVA space:  %s\n", devices, ram, iova);
        json_array_foreach(json_arr(j, "problems"), i, e)
            fprintf(f, "  problem %s%s%s: %s\n", json_str(e, "id", ""),
                    *json_str(e, "hostdev", "") ? " on " : "", json_str(e, "hostdev", ""),
                    json_str(e, "message", ""));
        json_array_foreach(json_arr(details, "warnings"), i, e)
            fprintf(f, "  warning: %s\n", json_string_value(e));
}

int verb_check_incoming(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        g_autofree char *xml = NULL, *what = NULL;
        json_auto_t *values = NULL, *out = NULL;
        json_t *problems = json_array(), *e;
        size_t i;
        int r;

        r = read_xml(c, argv[0], &xml);
        if (r != MIGCTL_EXIT_OK) {
                json_decref(problems);
                return r;
        }
        what = g_strdup_printf("check the incoming migration of the domain XML in %s", argv[0]);
        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "CheckIncomingMigration", &error, &reply, "s", xml);
        if (r >= 0)
                r = json_from_bus_message(reply, &values);
        sd_bus_message_unref(reply);
        if (r < 0) {
                json_decref(problems);
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        /* [allowed, [(id, hostdev, message)...], {details}] */
        json_array_foreach(json_array_get(values, 1), i, e) json_array_append_new(
            problems, json_pack("{s:O,s:O,s:O}", "id", json_array_get(e, 0), "hostdev",
                                json_array_get(e, 1), "message", json_array_get(e, 2)));
        out = json_pack("{s:O,s:o,s:O}", "allowed", json_array_get(values, 0), "problems", problems,
                        "details", json_array_get(values, 2));
        if (c->json)
                json_print(c->out, out);
        else
                print_incoming(c->out, argv[0], out);
        return json_bool(out, "allowed") ? MIGCTL_EXIT_OK : MIGCTL_EXIT_REFUSED;
}

static void print_domains(FILE *f, const json_t *j)
{
        static const char *const headers[] = {"DOMAIN", "STATUS", "VM"};
        const char *uri = json_str(j, "uri", "");
        const json_t *e, *p;
        Table *t;
        size_t i, k;

        if (!*uri) {
                fprintf(f, "libvirt: off (vfio-migd runs with --libvirt-uri=none)\n");
                return;
        }
        fprintf(f, "libvirt: %s (%s)\n", uri,
                json_bool(j, "connected") ? "connected"
                                          : "not connected, "
                                            "retrying");
        if (!json_bool(j, "connected")) {
                fprintf(f, "Not connected to libvirt, so the running domains are unknown; "
                           "'journalctl -u vfio-migd' says why (is libvirtd running?).\n");
                return;
        }
        if (json_array_size(json_arr(j, "domains")) == 0) {
                fprintf(f, "No running domain.\n");
                return;
        }
        t = table_new(3, headers);
        json_array_foreach(json_arr(j, "domains"), i, e)
        {
                const char *row[] = {json_str(e, "name", ""), json_str(e, "status", ""),
                                     json_str(e, "vm", NULL)};
                table_add(t, row);
        }
        table_print(t, f, "");
        table_free(t);
        json_array_foreach(json_arr(j, "domains"), i, e)
            json_array_foreach(json_arr(e, "problems"), k, p)
                fprintf(f, "%s%s%s: %s\n", json_str(e, "name", ""),
                        *json_str(p, "hostdev", "") ? " " : "", json_str(p, "hostdev", ""),
                        json_str(p, "reason", ""));
}

int verb_libvirt_domains(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        json_auto_t *uri = NULL, *connected = NULL, *values = NULL, *out = NULL;
        json_t *domains = json_array(), *e, *p;
        size_t i, k;
        int r;

        r = ctl_get_property(c, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE, "LibvirtURI", &uri, &error);
        if (r >= 0)
                r = ctl_get_property(c, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE, "LibvirtConnected",
                                     &connected, &error);
        if (r >= 0)
                r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                       "ListLibvirtDomains", &error, &reply, "");
        if (r >= 0)
                r = json_from_bus_message(reply, &values);
        sd_bus_message_unref(reply);
        if (r < 0) {
                json_decref(domains);
                r = ctl_fail(c, "list the libvirt domains", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        /* [[(name, status, vm path, [(hostdev, reason)...])...]] */
        json_array_foreach(json_array_get(values, 0), i, e)
        {
                g_autofree char *vm =
                    ctl_path_to_name(json_string_value(json_array_get(e, 2)), MIGD_VM_PREFIX);
                json_t *problems = json_array();

                json_array_foreach(json_array_get(e, 3), k, p) json_array_append_new(
                    problems, json_pack("{s:O,s:O}", "hostdev", json_array_get(p, 0), "reason",
                                        json_array_get(p, 1)));
                json_array_append_new(
                    domains, json_pack("{s:O,s:O,s:s?,s:O,s:o}", "name", json_array_get(e, 0),
                                       "status", json_array_get(e, 1), "vm", vm, "path",
                                       json_array_get(e, 2), "problems", problems));
        }
        out = json_pack("{s:O,s:O,s:o}", "uri", uri, "connected", connected, "domains", domains);
        if (c->json)
                json_print(c->out, out);
        else
                print_domains(c->out, out);
        return MIGCTL_EXIT_OK;
}
