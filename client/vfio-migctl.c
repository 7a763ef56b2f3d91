/* vfio-migctl: every vfio-migd D-Bus call as a subcommand, with human or --json output */
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-bus.h"
#include "migctl-verbs.h"

#define DEFAULT_TIMEOUT_SEC 300

static RegisterOptions reg;

static int verb_register_with_options(Ctl *c, int argc, char **argv)
{
        return verb_register(c, argc, argv, &reg);
}

static int verb_register_xml_with_options(Ctl *c, int argc, char **argv)
{
        return verb_register_xml(c, argc, argv, &reg);
}

/* --- command line ------------------------------------------------------------------- */

enum {
        VERB_REGISTER_OPTIONS = 1 << 0, /* --strategy & co. belong to this verb */
        VERB_LOCAL = 1 << 1,            /* needs no bus */
};

typedef struct Verb {
        const char *name;
        const char *sub;        /* a second word ("policy reload"), or NULL */
        int min_args, max_args; /* after the name (and sub); max -1: any number */
        unsigned flags;
        int (*run)(Ctl *c, int argc, char **argv);
        const char *args;
} Verb;

static const Verb verbs[] = {
    {"status", NULL, 0, 0, 0, verb_status, ""},
    {"list-vms", NULL, 0, 0, 0, verb_list_vms, ""},
    {"list-devices", NULL, 0, 0, 0, verb_list_devices, ""},
    {"show", NULL, 1, 1, 0, verb_show, "VM"},
    {"show-device", NULL, 1, 1, 0, verb_show_device, "DEVICE"},
    {"last", NULL, 1, 1, 0, verb_last, "VM"},
    {"check", NULL, 1, 1, 0, verb_check, "VM"},
    {"monitor", NULL, 0, 0, 0, verb_monitor, ""},
    {"register", NULL, 2, -1, VERB_REGISTER_OPTIONS, verb_register_with_options, "VM DEVICE..."},
    {"unregister", NULL, 1, 1, 0, verb_unregister, "VM"},
    {"rescan", NULL, 0, 0, 0, verb_rescan, ""},
    {"attach-fd", NULL, 2, 2, 0, verb_attach_fd, "DEVICE PATH|fd:N"},
    {"precopy", NULL, 1, 1, 0, verb_precopy, "VM"},
    {"quiesce", NULL, 1, 1, 0, verb_quiesce, "VM"},
    {"save", NULL, 2, 2, 0, verb_save, "VM FILE|-"},
    {"resume", NULL, 2, 2, 0, verb_resume, "VM FILE|-"},
    {"start", NULL, 1, 1, 0, verb_start, "VM"},
    {"abort", NULL, 1, 1, 0, verb_abort, "VM"},
    {"policy", "show", 0, 0, 0, verb_policy_show, ""},
    {"policy", "reload", 0, 0, 0, verb_policy_reload, ""},
    {"policy", "validate", 1, -1, VERB_LOCAL, verb_policy_validate, "FILE..."},
    {"libvirt-hook", NULL, 4, 4, VERB_LOCAL, verb_libvirt_hook, "DOMAIN OPERATION SUBOP EXTRA"},
    {"libvirt-domains", NULL, 0, 0, 0, verb_libvirt_domains, ""},
    {"check-incoming", NULL, 1, 1, 0, verb_check_incoming, "FILE|-"},
    {"register-xml", NULL, 1, 1, VERB_REGISTER_OPTIONS, verb_register_xml_with_options, "FILE|-"},
};

static void help(FILE *f)
{
        fprintf(f,
                "Usage: vfio-migctl [--json] [--timeout SEC] COMMAND [ARGS...]\n"
                "\n"
                "Drives vfio-migd, which sequences the VFIO migration state machine of every\n"
                "device of a VM, over the system bus (DBUS_SYSTEM_BUS_ADDRESS selects another).\n"
                "\n"
                "Reading (open to every user):\n"
                "  status                 the daemon's version, backend and VM/device counts\n"
                "  list-vms               registered VMs with state and devices\n"
                "  list-devices           every device the daemon knows, its state and VM\n"
                "  show VM                all of a VM's properties, its devices, last sequence\n"
                "  show-device DEVICE     all of a device's properties\n"
                "  last VM                the timeline of the VM's last sequence\n"
                "  check VM               whether the VM may migrate under the policy, its\n"
                "                         blockers and the plan (exit 6 when refused)\n"
                "  policy show            the policy files in force and each VM's decision\n"
                "  monitor                print the daemon's signals until interrupted\n"
                "                         (or for --timeout SEC when given)\n"
                "Changing (root or vfio-migd's operator group):\n"
                "  register VM DEVICE...  register a VM made of these devices\n"
                "      --strategy parallel|qemu|naive    how its sequences run\n"
                "      --p2p-mode require-p2p|p2p-blocked\n"
                "      --phase-deadline-ms N             a slower phase is rolled back\n"
                "      --parallelism N                   workers per phase; 0: one per device\n"
                "  unregister VM          forget a VM (its devices stay as they are)\n"
                "  rescan                 re-read the backend's device list\n"
                "  attach-fd DEVICE PATH|fd:N\n"
                "                         hand vfio-migd the VFIO device fd of DEVICE (kernel\n"
                "                         backend): PATH opened read-write, or fd N inherited\n"
                "                         from the caller, such as the fd the VMM passed on\n"
                "  precopy VM             RUNNING -> PRE_COPY on devices that support it\n"
                "  quiesce VM             P2P quiesce on every device, then stop every device\n"
                "  save VM FILE|-         stream every device's state into FILE (or stdout);\n"
                "                         written beside FILE, renamed over it on success\n"
                "  resume VM FILE|-       load a stream from FILE (or stdin) and run the VM;\n"
                "                         a stream saved by another VM is refused\n"
                "      --renamed-from NAME               accept a stream VM NAME saved (the\n"
                "                                        VM was renamed since)\n"
                "  start VM               back to RUNNING from stopped\n"
                "  abort VM               back to RUNNING from anywhere\n"
                "  policy reload          re-read the daemon's policy files\n"
                "Local (no daemon):\n"
                "  policy validate FILE...  check policy files as the daemon reads them\n"
                "                         (exit 1 and FILE:LINE:COL when one is invalid)\n"
                "libvirt:\n"
                "  libvirt-domains        the running domains vfio-migd's libvirt connection\n"
                "                         sees: tracked as a VM, or why not\n"
                "  check-incoming FILE|-  may this host receive the domain (XML in FILE or on\n"
                "                         stdin): problems per hostdev (exit 6 when refused)\n"
                "  register-xml FILE|-    register the VM of a domain XML (its hostdevs);\n"
                "                         takes register's options (changing)\n"
                "  libvirt-hook DOMAIN OPERATION SUBOP EXTRA\n"
                "                         the qemu hook (/etc/libvirt/hooks/qemu.d/vfio-migd):\n"
                "                         domain XML on stdin; exit 1 vetoes (docs/libvirt.md);\n"
                "                         --timeout defaults to 10 (VFIO_MIGD_HOOK_TIMEOUT)\n"
                "\n"
                "Options:\n"
                "  --json                 machine-readable JSON on stdout\n"
                "  --timeout SEC          how long to wait for a reply (default %d)\n"
                "  -h, --help             this text\n"
                "  --version              the version\n"
                "\n"
                "Sequence commands print a timeline: each phase and each device step with its\n"
                "start, duration and a bar on one time axis, then the result.\n"
                "\n"
                "Exit status:\n"
                "  0  success\n"
                "  1  any other failure\n"
                "  2  usage error\n"
                "  3  the bus or vfio-migd cannot be reached\n"
                "  4  no such VM or device\n"
                "  5  access denied (changing needs root or the operator group)\n"
                "  6  refused before anything moved (InvalidState, NotMigratable, Busy,\n"
                "     VMExists, DeviceBusy, InvalidArgs, PolicyInvalid); check: refused\n"
                "  7  the sequence failed and was rolled back (SequenceFailed, Timeout,\n"
                "     StreamInvalid); the failed attempt's timeline is printed\n",
                DEFAULT_TIMEOUT_SEC);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
        va_list ap;

        fputs("vfio-migctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs(" (see 'vfio-migctl --help')\n", stderr);
        return MIGCTL_EXIT_USAGE;
}

static bool parse_u32(const char *s, uint32_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        if (!s[0] || s[0] == '-')
                return false;
        v = strtoull(s, &end, 10);
        if (errno || *end || v > UINT32_MAX)
                return false;
        *ret = (uint32_t)v;
        return true;
}

/* The verb named by args[0] (and args[1] for two-word verbs); *ret_words: how many. */
static const Verb *find_verb(char **args, int n, int *ret_words)
{
        for (size_t i = 0; i < G_N_ELEMENTS(verbs); i++) {
                const Verb *v = &verbs[i];
                if (strcmp(v->name, args[0]) != 0)
                        continue;
                if (!v->sub) {
                        *ret_words = 1;
                        return v;
                }
                if (n > 1 && strcmp(v->sub, args[1]) == 0) {
                        *ret_words = 2;
                        return v;
                }
        }
        return NULL;
}

int main(int argc, char **argv)
{
        enum {
                ARG_JSON = 0x100,
                ARG_TIMEOUT,
                ARG_VERSION,
                ARG_STRATEGY,
                ARG_P2P_MODE,
                ARG_DEADLINE,
                ARG_PARALLELISM,
                ARG_RENAMED_FROM
        };
        static const struct option options[] = {
            {"json", no_argument, NULL, ARG_JSON},
            {"timeout", required_argument, NULL, ARG_TIMEOUT},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, ARG_VERSION},
            {"strategy", required_argument, NULL, ARG_STRATEGY},
            {"p2p-mode", required_argument, NULL, ARG_P2P_MODE},
            {"phase-deadline-ms", required_argument, NULL, ARG_DEADLINE},
            {"parallelism", required_argument, NULL, ARG_PARALLELISM},
            {"renamed-from", required_argument, NULL, ARG_RENAMED_FROM},
            {},
        };
        Ctl c = {.timeout_usec = DEFAULT_TIMEOUT_SEC * UINT64_C(1000000), .out = stdout};
        const char *register_option = NULL;
        const Verb *verb;
        int opt, n_args, words, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (opt) {
                case ARG_JSON:
                        c.json = true;
                        break;
                case ARG_TIMEOUT: {
                        char *end;
                        double sec;
                        errno = 0;
                        sec = strtod(optarg, &end);
                        if (errno || *end || !(sec > 0) || sec > 1e9)
                                return usage_error("--timeout takes a positive number of "
                                                   "seconds, not '%s'",
                                                   optarg);
                        c.timeout_usec = (uint64_t)(sec * 1e6);
                        c.timeout_given = true;
                        break;
                }
                case 'h':
                        help(stdout);
                        return MIGCTL_EXIT_OK;
                case ARG_VERSION:
                        printf("vfio-migctl %s\n", VFIO_MIGD_VERSION);
                        return MIGCTL_EXIT_OK;
                case ARG_STRATEGY:
                        reg.strategy = optarg;
                        register_option = "--strategy";
                        break;
                case ARG_P2P_MODE:
                        reg.p2p_mode = optarg;
                        register_option = "--p2p-mode";
                        break;
                case ARG_DEADLINE:
                        if (!parse_u32(optarg, &reg.phase_deadline_ms))
                                return usage_error("--phase-deadline-ms takes milliseconds, "
                                                   "not '%s'",
                                                   optarg);
                        reg.has_deadline = true;
                        register_option = "--phase-deadline-ms";
                        break;
                case ARG_PARALLELISM:
                        if (!parse_u32(optarg, &reg.parallelism))
                                return usage_error("--parallelism takes a number of workers, "
                                                   "not '%s'",
                                                   optarg);
                        reg.has_parallelism = true;
                        register_option = "--parallelism";
                        break;
                case ARG_RENAMED_FROM:
                        c.renamed_from = optarg;
                        break;
                default:
                        fprintf(stderr, "(see 'vfio-migctl --help')\n");
                        return MIGCTL_EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                help(stderr);
                return MIGCTL_EXIT_USAGE;
        }
        verb = find_verb(argv + optind, argc - optind, &words);
        if (!verb && strcmp(argv[optind], "policy") == 0)
                return usage_error("usage: vfio-migctl policy show | vfio-migctl policy reload | "
                                   "vfio-migctl policy validate FILE...");
        if (!verb)
                return usage_error("unknown command '%s'", argv[optind]);
        if (register_option && !(verb->flags & VERB_REGISTER_OPTIONS))
                return usage_error("%s only applies to 'register'", register_option);
        if (c.renamed_from && verb->run != verb_resume)
                return usage_error("--renamed-from only applies to 'resume'");
        n_args = argc - optind - words;
        if (n_args < verb->min_args || (verb->max_args >= 0 && n_args > verb->max_args)) {
                fprintf(stderr, "vfio-migctl: usage: vfio-migctl %s%s%s %s\n", verb->name,
                        verb->sub ? " " : "", verb->sub ? verb->sub : "", verb->args);
                return MIGCTL_EXIT_USAGE;
        }

        r = verb->flags & VERB_LOCAL ? MIGCTL_EXIT_OK : ctl_connect(&c);
        if (r == MIGCTL_EXIT_OK)
                r = verb->run(&c, n_args, argv + optind + words);
        fflush(stdout);
        sd_bus_flush_close_unref(c.bus);
        return r;
}
