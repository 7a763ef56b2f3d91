/* vfio-migsim: create, inspect and script simulated migration devices */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <jansson.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mig-state.h"
#include "devices/device.h"
#include "devices/sim.h"
#include "log.h"

#define EXIT_USAGE      2
#define EXIT_UNSAFE_DIR 73 /* EX_CANTCREAT, as vfio-migd exits for the same directory */
#define DEFAULT_DIR     "/var/lib/vfio-migd/sim"

static char *arg_dir;
static gboolean arg_json;
static gboolean arg_version;

static const GOptionEntry global_entries[] = {
    {"dir", 'd', 0, G_OPTION_ARG_FILENAME, &arg_dir,
     "State directory (default $VFIO_MIGSIM_DIR, else " DEFAULT_DIR ")", "DIR"},
    {"json", 'j', 0, G_OPTION_ARG_NONE, &arg_json, "Print JSON instead of text", NULL},
    {"version", 0, 0, G_OPTION_ARG_NONE, &arg_version, "Print the version and exit", NULL},
    G_OPTION_ENTRY_NULL,
};

static const char *sim_dir(void)
{
        const char *env = g_getenv("VFIO_MIGSIM_DIR");

        if (arg_dir)
                return arg_dir;
        return env && *env ? env : DEFAULT_DIR;
}

static int fail(GError *error)
{
        g_printerr("vfio-migsim: %s\n", error->message);
        g_error_free(error);
        return EXIT_FAILURE;
}

static int usage(const char *command, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int usage(const char *command, const char *fmt, ...)
{
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_printerr("vfio-migsim: %s\nTry 'vfio-migsim %s%s--help'.\n", msg, command ? command : "",
                   command ? " " : "");
        return EXIT_USAGE;
}

static void print_json(json_t *o)
{
        json_dumpf(o, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(o);
}

/* After a change: --json prints the device as it is now, text a one-line confirmation. */
static int print_result(const char *name, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int print_result(const char *name, const char *fmt, ...)
{
        g_autoptr(SimDevice) d = NULL;
        GError *error = NULL;
        va_list ap;

        if (!arg_json) {
                va_start(ap, fmt);
                vprintf(fmt, ap);
                va_end(ap);
                putchar('\n');
                return EXIT_SUCCESS;
        }
        if (sim_device_read(sim_dir(), name, &d, &error) < 0)
                return fail(error);
        print_json(sim_device_to_json(d));
        return EXIT_SUCCESS;
}

static bool parse_uint(const char *s, int base, uint64_t max, uint64_t *ret)
{
        if (base == 16 && (g_str_has_prefix(s, "0x") || g_str_has_prefix(s, "0X")))
                s += 2;
        else if (base == 0 && (g_str_has_prefix(s, "0x") || g_str_has_prefix(s, "0X"))) {
                s += 2;
                base = 16;
        } else if (base == 0)
                base = 10;
        return s && g_ascii_string_to_unsigned(s, (guint)base, 0, max, ret, NULL);
}

/* ---- create ---- */

typedef struct Preset {
        const char *name, *driver;
        uint16_t vendor_id, device_id;
        uint32_t flags;
} Preset;

#define SC  MIG_FLAG_STOP_COPY
#define P2P MIG_FLAG_P2P
#define PC  MIG_FLAG_PRE_COPY

/* The migration drivers of shared/reference/vfio-uapi.md, "Devices that exist". */
static const Preset presets[] = {
    {"mlx5", "mlx5_vfio_pci", 0x15b3, 0x101e, SC | P2P | PC},
    {"hisi", "hisi_acc_vfio_pci", 0x19e5, 0xa251, SC | PC},
    {"pds", "pds_vfio_pci", 0x1dd8, 0x1003, SC | P2P},
    {"virtio", "virtio_vfio_pci", 0x1af4, 0x1041, SC | P2P | PC},
    {"qat", "qat_vfio_pci", 0x8086, 0x4941, SC | P2P | PC},
    {"xe", "xe_vfio_pci", 0x8086, 0x56c0, SC | P2P},
    {"ap", "vfio_ap", 0x1014, 0x0000, SC}, /* an s390 AP queue: no PCI id of its own */
    {"mtty", "mtty", 0x0000, 0x0000, SC | P2P | PC},
};

static char *opt_preset, *opt_flags, *opt_driver, *opt_vendor, *opt_device, *opt_group,
    *opt_p2p_group, *opt_latency, *opt_blob_size, *opt_seed;

static const GOptionEntry create_entries[] = {
    {"preset", 0, 0, G_OPTION_ARG_STRING, &opt_preset,
     "Identity and flags of a real driver: mlx5 hisi pds virtio qat xe ap mtty", "NAME"},
    {"flags", 0, 0, G_OPTION_ARG_STRING, &opt_flags,
     "Migration flags, e.g. SC|P2P|PC or none (default SC|P2P|PC)", "FLAGS"},
    {"driver", 0, 0, G_OPTION_ARG_STRING, &opt_driver, "Driver name (default sim_vfio_pci)",
     "DRIVER"},
    {"vendor", 0, 0, G_OPTION_ARG_STRING, &opt_vendor, "PCI vendor id, hex", "HEX"},
    {"device", 0, 0, G_OPTION_ARG_STRING, &opt_device, "PCI device id, hex", "HEX"},
    {"group", 0, 0, G_OPTION_ARG_STRING, &opt_group, "IOMMU group label (default: the name)", "G"},
    {"p2p-group", 0, 0, G_OPTION_ARG_STRING, &opt_p2p_group,
     "Devices of one P2P group are peers that can DMA into each other", "G"},
    {"latency-ms", 0, 0, G_OPTION_ARG_STRING, &opt_latency, "Default per-arc latency", "N"},
    {"blob-size", 0, 0, G_OPTION_ARG_STRING, &opt_blob_size, "Internal state size (default 65536)",
     "BYTES"},
    {"seed", 0, 0, G_OPTION_ARG_STRING, &opt_seed,
     "Initial state seed (default: derived from the name)", "N"},
    G_OPTION_ENTRY_NULL,
};

static int create_apply_preset(SimSpec *spec)
{
        spec->flags = SC | P2P | PC;
        if (!opt_preset)
                return 0;
        for (size_t i = 0; i < G_N_ELEMENTS(presets); i++)
                if (strcmp(opt_preset, presets[i].name) == 0) {
                        spec->driver = presets[i].driver;
                        spec->vendor_id = presets[i].vendor_id;
                        spec->device_id = presets[i].device_id;
                        spec->flags = presets[i].flags;
                        return 0;
                }
        return usage("create",
                     "Unknown preset '%s': use mlx5, hisi, pds, virtio, qat, xe, ap "
                     "or mtty",
                     opt_preset);
}

/* Explicit options override the preset. */
static int create_apply_options(SimSpec *spec)
{
        uint64_t v;

        if (opt_flags && mig_flags_from_string(opt_flags, &spec->flags) < 0)
                return usage("create",
                             "Invalid --flags '%s': use names STOP_COPY|P2P|PRE_COPY "
                             "(or SC|P2P|PC) joined by '|', or none",
                             opt_flags);
        if (opt_driver)
                spec->driver = opt_driver;
        if (opt_vendor && !parse_uint(opt_vendor, 16, UINT16_MAX, &v))
                return usage("create", "Invalid --vendor '%s': give 4 hex digits, e.g. 15b3",
                             opt_vendor);
        spec->vendor_id = opt_vendor ? (uint16_t)v : spec->vendor_id;
        if (opt_device && !parse_uint(opt_device, 16, UINT16_MAX, &v))
                return usage("create", "Invalid --device '%s': give 4 hex digits, e.g. 101e",
                             opt_device);
        spec->device_id = opt_device ? (uint16_t)v : spec->device_id;
        spec->iommu_group = opt_group;
        spec->p2p_group = opt_p2p_group;
        if (opt_latency && !parse_uint(opt_latency, 10, UINT32_MAX, &v))
                return usage("create", "Invalid --latency-ms '%s': give milliseconds", opt_latency);
        spec->latency_ms = opt_latency ? (uint32_t)v : 0;
        if (opt_blob_size && !parse_uint(opt_blob_size, 10, UINT32_MAX, &v))
                return usage("create", "Invalid --blob-size '%s': give bytes", opt_blob_size);
        spec->blob_size = opt_blob_size ? (uint32_t)v : 0;
        if (opt_seed && !parse_uint(opt_seed, 0, UINT64_MAX, &v))
                return usage("create", "Invalid --seed '%s': give a number (0x for hex)", opt_seed);
        spec->seed = opt_seed ? v : 0;
        return 0;
}

static int cmd_create(char **args)
{
        SimSpec spec = {.name = args[0]};
        GError *error = NULL;
        int r;

        r = create_apply_preset(&spec);
        if (r == 0)
                r = create_apply_options(&spec);
        if (r != 0)
                return r;
        if (sim_device_create(sim_dir(), &spec, &error) < 0)
                return fail(error);
        return print_result(spec.name, "created %s (%s %04x:%04x %s) in %s", spec.name,
                            spec.driver ? spec.driver : "sim_vfio_pci", spec.vendor_id,
                            spec.device_id, mig_flags_to_string(spec.flags), sim_dir());
}

/* ---- list, show ---- */

static int cmd_list(char **args)
{
        g_autoptr(GPtrArray) devices = NULL;
        GError *error = NULL;
        json_t *a;

        /* An empty list from a directory that is not there would hide a typo. */
        if (!g_file_test(sim_dir(), G_FILE_TEST_IS_DIR)) {
                g_printerr("vfio-migsim: %s: no such directory; give the directory vfio-migd's "
                           "--sim-dir names (--dir or $VFIO_MIGSIM_DIR), or create a device "
                           "there first ('vfio-migsim --dir %s create NAME')\n",
                           sim_dir(), sim_dir());
                return EXIT_FAILURE;
        }
        if (sim_device_list(sim_dir(), &devices, &error) < 0)
                return fail(error);
        if (arg_json) {
                a = json_array();
                for (guint i = 0; i < devices->len; i++)
                        json_array_append_new(a, sim_device_to_json(devices->pdata[i]));
                print_json(a);
                return EXIT_SUCCESS;
        }
        printf("%-20s %-18s %-9s %-22s %-12s %6s %-16s %6s\n", "NAME", "DRIVER", "ID", "FLAGS",
               "STATE", "GEN", "DIGEST", "EVENTS");
        for (guint i = 0; i < devices->len; i++) {
                const SimDevice *d = devices->pdata[i];

                printf("%-20s %-18s %04x:%04x %-22s %-12s %6" PRIu64 " %-16.16s %6" PRIu64 "\n",
                       d->name, d->driver, d->vendor_id, d->device_id,
                       mig_flags_to_string(d->flags), mig_state_to_string(d->state), d->generation,
                       d->blob_sha256, d->events->len + d->events_dropped);
        }
        return EXIT_SUCCESS;
}

static void show_faults(const SimDevice *d)
{
        char arc[64];

        printf("faults:%s\n", d->faults->len ? "" : "      none");
        for (guint i = 0; i < d->faults->len; i++) {
                const SimFault *f = &g_array_index(d->faults, SimFault, i);
                const char *ename = strerrorname_np(f->error);

                printf("  %u. %s %s", i + 1, sim_fault_format_arc(f, arc, sizeof(arc)),
                       sim_fault_action_to_string(f->action));
                if (f->action != SIM_FAULT_HANG)
                        printf(" %s", ename ? ename : "?");
                if (f->action == SIM_FAULT_FAIL)
                        printf(" leave %s", sim_fault_leave_to_string(f->leave));
                if (f->remaining)
                        printf(", %u more time%s\n", f->remaining, f->remaining == 1 ? "" : "s");
                else
                        printf(", every time\n");
        }
}

static void show_latency(const SimDevice *d)
{
        GHashTableIter it;
        gpointer key, ms;

        printf("latency:     %u ms per arc\n", d->latency_ms);
        g_hash_table_iter_init(&it, d->arc_latency_ms);
        while (g_hash_table_iter_next(&it, &key, &ms))
                printf("  %s: %u ms\n", (const char *)key, GPOINTER_TO_UINT(ms));
}

static int cmd_show(char **args)
{
        g_autoptr(SimDevice) d = NULL;
        GError *error = NULL;

        if (sim_device_read(sim_dir(), args[0], &d, &error) < 0)
                return fail(error);
        if (arg_json) {
                print_json(sim_device_to_json(d));
                return EXIT_SUCCESS;
        }
        printf("name:        %s\ndriver:      %s\nid:          %04x:%04x\n", d->name, d->driver,
               d->vendor_id, d->device_id);
        printf("flags:       %s\niommu_group: %s\np2p_group:   %s\n", mig_flags_to_string(d->flags),
               d->iommu_group, *d->p2p_group ? d->p2p_group : "(none)");
        printf("state:       %s\ngeneration:  %" PRIu64 "\nseed:        0x%016" PRIx64 "\n",
               mig_state_to_string(d->state), d->generation, d->seed);
        printf("blob:        %u bytes, digest %s\n", d->blob_size, d->blob_sha256);
        printf("counters:    %" PRIu64 " loads, %" PRIu64 " saves, %" PRIu64 " resets\n", d->loads,
               d->saves, d->resets);
        show_latency(d);
        show_faults(d);
        printf("events:%s\n", d->events->len ? "" : "      none");
        if (d->events_dropped)
                printf("  (%" PRIu64 " older events dropped)\n", d->events_dropped);
        for (guint i = 0; i < d->events->len; i++) {
                const SimEvent *e = d->events->pdata[i];
                printf("  %s corrupted in %s: peer %s was %s\n", e->time,
                       mig_state_to_string(e->state), e->peer, mig_state_to_string(e->peer_state));
        }
        return EXIT_SUCCESS;
}

/* ---- fault, clear-faults ---- */

static char *opt_arc, *opt_action, *opt_errno, *opt_leave, *opt_times;

static const GOptionEntry fault_entries[] = {
    {"arc", 0, 0, G_OPTION_ARG_STRING, &opt_arc,
     "Arc to fault: FROM>TO, *>TO, FROM>* or * (required)", "ARC"},
    {"action", 0, 0, G_OPTION_ARG_STRING, &opt_action,
     "fail (errno), error (falls into ERROR) or hang (until cleared or cancelled) "
     "(required)",
     "ACTION"},
    {"errno", 0, 0, G_OPTION_ARG_STRING, &opt_errno, "Error reported (default EIO)",
     "N|EIO|EBUSY..."},
    {"leave", 0, 0, G_OPTION_ARG_STRING, &opt_leave,
     "Where a fail leaves the device: original (default) or intermediate", "WHERE"},
    {"times", 0, 0, G_OPTION_ARG_STRING, &opt_times,
     "Fire this many times, then disappear (default 0: every time)", "N"},
    G_OPTION_ENTRY_NULL,
};

static int cmd_fault(char **args)
{
        SimFault f = {.error = EIO};
        GError *error = NULL;
        char arc[64];
        uint64_t times = 0;

        if (!opt_arc || !opt_action)
                return usage("fault", "fault needs --arc and --action");
        if (sim_fault_parse_arc(opt_arc, &f, &error) < 0) {
                usage("fault", "%s", error->message);
                g_error_free(error);
                return EXIT_USAGE;
        }
        if (sim_fault_action_from_string(opt_action, &f.action) < 0)
                return usage("fault", "Invalid --action '%s': use fail, error or hang", opt_action);
        if (opt_errno && sim_errno_from_string(opt_errno, &f.error) < 0)
                return usage("fault",
                             "Invalid --errno '%s': use a name such as EIO or EBUSY, "
                             "or a positive number",
                             opt_errno);
        if (opt_leave && sim_fault_leave_from_string(opt_leave, &f.leave) < 0)
                return usage("fault", "Invalid --leave '%s': use original or intermediate",
                             opt_leave);
        if (opt_times && !parse_uint(opt_times, 10, UINT32_MAX, &times))
                return usage("fault", "Invalid --times '%s': give a count (0: every time)",
                             opt_times);
        f.remaining = (unsigned)times;
        if (sim_device_add_fault(sim_dir(), args[0], &f, &error) < 0)
                return fail(error);
        return print_result(args[0], "%s: %s on %s added", args[0], opt_action,
                            sim_fault_format_arc(&f, arc, sizeof(arc)));
}

static int cmd_clear_faults(char **args)
{
        GError *error = NULL;

        if (sim_device_clear_faults(sim_dir(), args[0], &error) < 0)
                return fail(error);
        return print_result(args[0], "%s: faults cleared", args[0]);
}

/* ---- latency, set-state, clear-events, remove ---- */

static const GOptionEntry latency_entries[] = {
    {"arc", 0, 0, G_OPTION_ARG_STRING, &opt_arc,
     "Only this arc, e.g. RUNNING>RUNNING_P2P (default: every arc without its own)", "ARC"},
    G_OPTION_ENTRY_NULL,
};

static int cmd_latency(char **args)
{
        GError *error = NULL;
        uint64_t ms;

        if (!parse_uint(args[1], 10, UINT32_MAX, &ms))
                return usage("latency", "Invalid latency '%s': give milliseconds", args[1]);
        if (sim_device_set_latency(sim_dir(), args[0], opt_arc, (uint32_t)ms, &error) < 0)
                return fail(error);
        return print_result(args[0], "%s: latency %s %" PRIu64 " ms", args[0],
                            opt_arc ? opt_arc : "per arc", ms);
}

static gboolean opt_walk;

static const GOptionEntry set_state_entries[] = {
    {"walk", 'w', 0, G_OPTION_ARG_NONE, &opt_walk,
     "Walk the kernel's path arc by arc (latency, faults, corruption events) instead of "
     "forcing the state; a data session opened this way ends with this command",
     NULL},
    G_OPTION_ENTRY_NULL,
};

static int set_state_walk(const char *name, enum mig_state target)
{
        g_autoptr(Backend) b = NULL;
        g_autoptr(Device) dev = NULL;
        GError *error = NULL;
        enum mig_state now = MIG_STATE_ERROR;
        int fd = -1, r;

        if (sim_backend_new(sim_dir(), &b, &error) < 0)
                return fail(error);
        r = b->open_device(b, name, &dev);
        if (r < 0) {
                g_printerr("vfio-migsim: Cannot open sim device '%s' in %s: %s\n", name, sim_dir(),
                           g_strerror(-r));
                return EXIT_FAILURE;
        }
        r = device_set_state(dev, target, &fd);
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                device_get_state(dev, &now);
                g_printerr("vfio-migsim: %s: walking to %s failed: %s; the device is now %s "
                           "(see 'vfio-migsim show %s')\n",
                           name, mig_state_to_string(target), g_strerror(-r),
                           mig_state_to_string(now), name);
                return EXIT_FAILURE;
        }
        return print_result(name, "%s: %s", name, mig_state_to_string(target));
}

static int cmd_set_state(char **args)
{
        GError *error = NULL;
        enum mig_state s;

        if (mig_state_from_string(args[1], &s) < 0)
                return usage("set-state",
                             "Invalid state '%s': use STOP, RUNNING, STOP_COPY, "
                             "RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P or "
                             "ERROR",
                             args[1]);
        if (opt_walk)
                return set_state_walk(args[0], s);
        if (sim_device_force_state(sim_dir(), args[0], s, &error) < 0)
                return fail(error);
        return print_result(args[0], "%s: %s (forced)", args[0], mig_state_to_string(s));
}

static int cmd_clear_events(char **args)
{
        GError *error = NULL;

        if (sim_device_clear_events(sim_dir(), args[0], &error) < 0)
                return fail(error);
        return print_result(args[0], "%s: corruption events cleared", args[0]);
}

static int cmd_remove(char **args)
{
        GError *error = NULL;

        if (sim_device_remove(sim_dir(), args[0], &error) < 0)
                return fail(error);
        if (arg_json)
                print_json(json_pack("{s:s}", "removed", args[0]));
        else
                printf("removed %s\n", args[0]);
        return EXIT_SUCCESS;
}

/* ---- dispatch ---- */

typedef struct Command {
        const char *name, *params, *summary;
        const GOptionEntry *entries;
        unsigned n_args;
        int (*run)(char **args);
} Command;

static const Command commands[] = {
    {"create", "NAME", "Create a device (in RUNNING)", create_entries, 1, cmd_create},
    {"list", "", "List devices", NULL, 0, cmd_list},
    {"show", "NAME", "Show a device, its faults and corruption events", NULL, 1, cmd_show},
    {"fault", "NAME", "Inject a fault on an arc", fault_entries, 1, cmd_fault},
    {"clear-faults", "NAME", "Remove every fault (releases hangs)", NULL, 1, cmd_clear_faults},
    {"latency", "NAME MS", "Set the latency of every arc or of one", latency_entries, 2,
     cmd_latency},
    {"set-state", "NAME STATE", "Force a state (or walk to it with --walk)", set_state_entries, 2,
     cmd_set_state},
    {"clear-events", "NAME", "Forget the corruption events", NULL, 1, cmd_clear_events},
    {"remove", "NAME", "Remove a device", NULL, 1, cmd_remove},
};

static char *commands_help(void)
{
        GString *s = g_string_new("Commands:\n");

        for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
                g_string_append_printf(s, "  %-14s %-11s %s\n", commands[i].name,
                                       commands[i].params, commands[i].summary);
        g_string_append(s, "\nRun 'vfio-migsim COMMAND --help' for a command's options.\n"
                           "Exit status: 0 ok, 1 failure, 2 usage error, 73 the directory is\n"
                           "unsafe: owned by another user, writable by group or others, or a\n"
                           "symbolic link (another user could plant links in it).");
        return g_string_free(s, FALSE);
}

static int run_command(const Command *c, int argc, char **argv)
{
        g_autofree char *params = g_strdup_printf("%s %s", c->name, c->params);
        g_autoptr(GOptionContext) ctx = g_option_context_new(params);
        g_autoptr(GError) error = NULL;

        if (c->entries)
                g_option_context_add_main_entries(ctx, c->entries, NULL);
        /* Accepted after the command too: 'vfio-migsim list --json'. */
        g_option_context_add_main_entries(ctx, global_entries, NULL);
        g_option_context_set_summary(ctx, c->summary);
        if (!g_option_context_parse(ctx, &argc, &argv, &error))
                return usage(c->name, "%s", error->message);
        if ((unsigned)argc - 1 != c->n_args)
                return usage(c->name, "'%s' takes %s%s", c->name,
                             c->n_args ? "the arguments " : "no arguments",
                             c->n_args ? c->params : "");
        /* Every command writes there (a lock at least); a missing one is each command's
         * own answer (create makes it, list says so). */
        if (sim_dir_check(sim_dir(), false, &error) < 0 &&
            !g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
                g_printerr("vfio-migsim: %s\n", error->message);
                return EXIT_UNSAFE_DIR;
        }
        return c->run(argv + 1);
}

int main(int argc, char **argv)
{
        g_autoptr(GOptionContext) ctx = g_option_context_new("COMMAND [ARGS...]");
        g_autofree char *help = commands_help();
        g_autoptr(GError) error = NULL;

        setlocale(LC_ALL, "");
        g_set_prgname("vfio-migsim");
        log_set_max_level(LOG_WARNING);
        g_option_context_add_main_entries(ctx, global_entries, NULL);
        g_option_context_set_summary(ctx, "Simulated VFIO migration devices: one file each in "
                                          "a state directory, used by vfio-migd's sim backend.");
        g_option_context_set_description(ctx, help);
        /* Options after the command belong to it. */
        g_option_context_set_strict_posix(ctx, TRUE);
        if (!g_option_context_parse(ctx, &argc, &argv, &error))
                return usage(NULL, "%s", error->message);
        if (arg_version) {
                printf("vfio-migsim %s\n", VFIO_MIGD_VERSION);
                return EXIT_SUCCESS;
        }
        if (argc < 2)
                return usage(NULL, "No command given");
        for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return run_command(&commands[i], argc - 1, argv + 1);
        return usage(NULL, "Unknown command '%s'", argv[1]);
}
