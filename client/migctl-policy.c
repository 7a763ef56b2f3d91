/* migctl-policy: 'vfio-migctl check VM' and 'vfio-migctl policy reload|validate' */
#include "migctl-verbs.h"

#include <errno.h>
#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "migctl-json.h"
#include "migctl-print.h"
#include "policy-files.h"

/* CheckMigration's reply (b, a(sss), a(ssss), as, a{sv}) as one JSON object. */
static json_t *decision_to_json(const char *vm, json_t *reply)
{
        json_t *blockers = json_array(), *plan = json_array(), *e;
        size_t i;

        for (i = 0; (e = json_array_get(json_array_get(reply, 1), i)); i++)
                json_array_append_new(
                    blockers, json_pack("{s:O,s:O,s:O}", "id", json_array_get(e, 0), "device",
                                        json_array_get(e, 1), "message", json_array_get(e, 2)));
        for (i = 0; (e = json_array_get(json_array_get(reply, 2), i)); i++)
                json_array_append_new(
                    plan, json_pack("{s:O,s:O,s:O,s:O}", "phase", json_array_get(e, 0), "device",
                                    json_array_get(e, 1), "target", json_array_get(e, 2), "path",
                                    json_array_get(e, 3)));
        return json_pack("{s:s,s:O,s:o,s:o,s:O,s:O}", "vm", vm, "allowed", json_array_get(reply, 0),
                         "blockers", blockers, "plan", plan, "matched", json_array_get(reply, 3),
                         "settings", json_array_get(reply, 4));
}

/* The VM's effective settings, one a line with where each came from. */
static void print_settings(FILE *f, const json_t *s)
{
        static const char *const keys[] = {
            "mode",       "strategy",    "phase-deadline-ms",       "parallelism",
            "on-failure", "after-crash", "hook-daemon-unavailable", "on-start-unmigratable"};
        static const char *const headers[] = {"SETTING", "VALUE", "FROM"};
        const json_t *sources = json_object_get(s, "sources");
        Table *t = table_new(G_N_ELEMENTS(headers), headers);

        for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
                const json_t *v = json_object_get(s, keys[i]);
                g_autofree char *value = NULL;
                if (!v)
                        continue;
                value = fmt_value(v);
                const char *row[] = {keys[i], value, json_str(sources, keys[i], "?")};
                table_add(t, row);
        }
        fprintf(f, "  Settings in effect for this VM:\n");
        table_print(t, f, "    ");
        table_free(t);
}

static void print_decision(FILE *f, const json_t *d)
{
        const json_t *s = json_object_get(d, "settings");
        const json_t *blockers = json_arr(d, "blockers"), *plan = json_arr(d, "plan");
        g_autofree char *matched = fmt_value(json_object_get(d, "matched"));
        json_t *e;
        size_t i;

        fprintf(f, "VM %s: migration %s\n", json_str(d, "vm", "?"),
                json_bool(d, "allowed") ? "allowed" : "refused");
        print_settings(f, s);
        fprintf(f, "  %-16s %s\n", "Policy entries:", matched);
        if (json_array_size(blockers) > 0) {
                static const char *const headers[] = {"BLOCKER", "DEVICE", "WHY"};
                Table *t = table_new(G_N_ELEMENTS(headers), headers);
                for (i = 0; (e = json_array_get(blockers, i)); i++) {
                        const char *row[] = {json_str(e, "id", "?"), json_str(e, "device", ""),
                                             json_str(e, "message", "")};
                        table_add(t, row);
                }
                fprintf(f, "  Blockers:\n");
                table_print(t, f, "    ");
                table_free(t);
        }
        if (json_array_size(plan) > 0) {
                static const char *const headers[] = {"PHASE", "DEVICE", "TARGET", "KERNEL PATH"};
                Table *t = table_new(G_N_ELEMENTS(headers), headers);
                for (i = 0; (e = json_array_get(plan, i)); i++) {
                        const char *row[] = {json_str(e, "phase", "?"), json_str(e, "device", "?"),
                                             json_str(e, "target", "?"), json_str(e, "path", "")};
                        table_add(t, row);
                }
                fprintf(f, "  Plan of a migration (save) from the devices' states now:\n");
                table_print(t, f, "    ");
                table_free(t);
        }
}

/* CheckMigration for one VM as a decision object; an exit code on failure (said). */
static int check_one(Ctl *c, const char *vm, json_t **ret)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        json_auto_t *values = NULL;
        g_autofree char *what = g_strdup_printf("check VM '%s'", vm);
        int r;

        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "CheckMigration", &error, &reply, "s", vm);
        if (r >= 0)
                r = json_from_bus_message(reply, &values);
        sd_bus_message_unref(reply);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        *ret = decision_to_json(vm, values);
        return MIGCTL_EXIT_OK;
}

int verb_check(Ctl *c, int argc, char **argv)
{
        json_auto_t *decision = NULL;
        int r = check_one(c, argv[0], &decision);

        if (r != MIGCTL_EXIT_OK)
                return r;
        if (c->json)
                json_print(c->out, decision);
        else
                print_decision(c->out, decision);
        /* like a VM method refused with NotMigratable: scripts test the exit status */
        return json_bool(decision, "allowed") ? MIGCTL_EXIT_OK : MIGCTL_EXIT_REFUSED;
}

/* The policy files in force and what they decide for every registered VM. */
int verb_policy_show(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        json_auto_t *files = NULL, *vms = NULL, *decisions = json_array();
        json_t *e;
        size_t i;
        int r;

        r = ctl_get_property(c, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE, "PolicyFiles", &files, &error);
        if (r >= 0)
                r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                       "ListVMs", &error, &reply, "");
        if (r >= 0)
                r = json_from_bus_message(reply, &vms);
        sd_bus_message_unref(reply);
        if (r < 0) {
                r = ctl_fail(c, "show the policy", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        /* ListVMs: [[ (name, path)... ]] */
        for (i = 0; (e = json_array_get(json_array_get(vms, 0), i)); i++) {
                json_t *d = NULL;
                r = check_one(c, json_string_value(json_array_get(e, 0)), &d);
                if (r != MIGCTL_EXIT_OK)
                        return r;
                json_array_append_new(decisions, d);
        }
        if (c->json) {
                json_t *j = json_pack("{s:O,s:O}", "policy-files", files, "vms", decisions);
                json_print(c->out, j);
                json_decref(j);
                return MIGCTL_EXIT_OK;
        }
        if (json_array_size(files) == 0)
                fprintf(c->out, "Policy files: none; the built-in defaults apply\n");
        else {
                fprintf(c->out, "Policy files, in the order read (later entries win):\n");
                for (i = 0; (e = json_array_get(files, i)); i++)
                        fprintf(c->out, "  %s\n", json_string_value(e));
        }
        if (json_array_size(decisions) == 0)
                fprintf(c->out, "No VM is registered.\n");
        for (i = 0; (e = json_array_get(decisions, i)); i++) {
                fputc('\n', c->out);
                print_decision(c->out, e);
        }
        return MIGCTL_EXIT_OK;
}

int verb_policy_reload(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        json_auto_t *files = NULL;
        uint32_t n = 0;
        int r;

        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "ReloadPolicy", &error, &reply, "");
        if (r >= 0)
                r = sd_bus_message_read(reply, "u", &n);
        sd_bus_message_unref(reply);
        if (r >= 0)
                r = ctl_get_property(c, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE, "PolicyFiles", &files,
                                     &error);
        if (r < 0) {
                r = ctl_fail(c, "reload the policy", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json) {
                json_t *j = json_pack("{s:i,s:O}", "files", (int)n, "policy-files", files);
                json_print(c->out, j);
                json_decref(j);
        } else {
                g_autofree char *list = fmt_value(files);
                fprintf(c->out, "policy reloaded from %u file%s: %s\n", n, n == 1 ? "" : "s",
                        n ? list : "none (built-in defaults)");
        }
        return MIGCTL_EXIT_OK;
}

/* The JSON schema shipped beside the policies (policy/schema.json) is not a policy. */
static bool is_json_schema(const char *path)
{
        json_auto_t *j = json_load_file(path, 0, NULL);
        return json_is_object(j) && json_object_get(j, "$schema");
}

/* No daemon needed: the files are parsed by the daemon's own policy code, each on its own,
 * so that every invalid file is reported, then together as the daemon reads them. */
int verb_policy_validate(Ctl *c, int argc, char **argv)
{
        json_t *files = json_array();
        g_autoptr(GPtrArray) policies = g_ptr_array_new();
        g_autofree char *first_error = NULL;
        int n_invalid = 0;

        for (int i = 0; i < argc; i++) {
                g_autoptr(Policy) policy = NULL;
                g_autofree char *problem = NULL;
                const char *one[] = {argv[i]};

                if (is_json_schema(argv[i])) {
                        json_array_append_new(files, json_pack("{s:s,s:s}", "file", argv[i],
                                                               "skipped", "a JSON schema"));
                        if (!c->json)
                                fprintf(c->out, "%s: skipped: a JSON schema, not a policy\n",
                                        argv[i]);
                        continue;
                }
                if (policy_files_load_list(one, 1, &policy, &problem) < 0) {
                        n_invalid++;
                        json_array_append_new(files, json_pack("{s:s,s:b,s:s?}", "file", argv[i],
                                                               "valid", 0, "error", problem));
                        fprintf(stderr, "%s\n", problem ? problem : argv[i]);
                        if (!first_error)
                                first_error = g_strdup(problem);
                        continue;
                }
                g_ptr_array_add(policies, argv[i]);
                json_array_append_new(files, json_pack("{s:s,s:b}", "file", argv[i], "valid", 1));
        }
        if (n_invalid == 0 && policies->len > 0) {
                g_autoptr(Policy) policy = NULL;
                if (policy_files_load_list((const char *const *)policies->pdata, policies->len,
                                           &policy, &first_error) < 0) {
                        n_invalid++;
                        fprintf(stderr, "%s\n", first_error ? first_error : "invalid");
                }
        }
        if (c->json) {
                json_t *j = json_pack("{s:b,s:s?,s:o}", "valid", n_invalid == 0, "error",
                                      first_error, "files", files);
                json_print(c->out, j);
                json_decref(j);
        } else {
                json_decref(files);
        }
        if (n_invalid > 0) {
                fprintf(stderr, "%d of %d policy file%s invalid\n", n_invalid, argc,
                        argc == 1 ? "" : "s");
                return MIGCTL_EXIT_FAILURE;
        }
        if (!c->json)
                fprintf(c->out, "%u policy file%s valid\n", policies->len,
                        policies->len == 1 ? "" : "s");
        return MIGCTL_EXIT_OK;
}
