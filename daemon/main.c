/* vfio-migd: sequences the VFIO migration of every device of a VM, on the system bus */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "journal.h"
#include "log.h"
#include "recovery.h"
#include "util.h"
#include "policy-files.h"

#define EXIT_USAGE 2
/* sysexits.h: the state directory is another daemon's (try later), or cannot be written */
#define EXIT_CANTCREAT 73
#define EXIT_TEMPFAIL  75
#define EXIT_CONFIG 78
/* parse_args(): go on and run the daemon (any other value is the exit status). */
#define ARGS_RUN (-1)

static void print_help(void)
{
        printf("Usage: vfio-migd [OPTIONS]\n"
               "Coordinates the VFIO migration of every device of a VM and serves\n"
               "org.vfiomig.Coordinator1 on the system bus (DBUS_SYSTEM_BUS_ADDRESS selects\n"
               "another bus).\n"
               "\n"
               "  --backend=NAME               device backend: sim (simulated devices) or kernel\n"
               "                               (VFIO devices of this host) (default: sim)\n"
               "  --sim-dir=DIR                the simulated devices' directory; like\n"
               "                               --state-dir, root's and writable by no one else\n"
               "                               (default: /var/lib/vfio-migd/sim)\n"
               "  --sysfs-root=DIR             where the kernel backend reads sysfs\n"
               "                               (default: /sys)\n"
               "  --dev-root=DIR               where it finds /dev/vfio and /dev/iommu\n"
               "                               (default: /dev)\n"
               "  --operator-group=GROUP       members may change things as root can\n"
               "                               (default: none, root only)\n"
               "  --strategy=NAME              default strategy of new VMs: parallel (vfio-migd's\n"
               "                               phases), qemu (QEMU 8.1's order) or naive (each\n"
               "                               device alone; serial is its old name)\n"
               "                               (default: parallel)\n"
               "  --phase-deadline-ms=N        default phase deadline of new VMs, 1..%" PRIu32
               " (default: 10000)\n"
               "  --parallelism=N              default worker threads per phase, 0..%" PRIu32
               ", 0: one per device\n"
               "                               (default: 0)\n"
               "  --policy=FILE                the main policy file, which must exist when given\n"
               "                               (default: %s)\n"
               "  --policy-dir=DIR             policy drop-ins, *.json in name order (default:\n"
               "                               %s)\n"
               "  --allow-default-policy       run with built-in defaults if the policy is invalid\n"
               "                               (default: refuse to start, exit status 78)\n"
               "  --state-dir=DIR              the crash journal's directory, created 0700, one\n"
               "                               daemon's only (locked: a second daemon exits 75);\n"
               "                               one owned by another user or writable by group\n"
               "                               or others is refused (exit status 73)\n"
               "                               (default: /var/lib/vfio-migd)\n"
               "  --libvirt-uri=URI            track the running domains of this libvirt; none:\n"
               "                               no libvirt (default: qemu:///system)\n"
               "  --stop-timeout-ms=N          on SIGTERM, running sequences are aborted and\n"
               "                               rolled back; exit after at most N ms even if\n"
               "                               one has not ended (default: 60000, below the\n"
               "                               unit's TimeoutStopSec=90s)\n"
               "  --log-level=LEVEL            err, warning, notice, info or debug (default: "
               "info)\n"
               "  --version                    print the version and exit\n"
               "  --help                       print this help and exit\n",
               VM_PHASE_DEADLINE_MAX, VM_PARALLELISM_MAX, POLICY_MAIN_DEFAULT,
               POLICY_DROPIN_DEFAULT);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
        va_list ap;

        fputs("vfio-migd: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'vfio-migd --help'.\n", stderr);
        return EXIT_USAGE;
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
        char *end;
        unsigned long long v;

        if (!s || !*s || *s == '-' || *s == '+')
                return false;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return false;
        *ret = (uint32_t)v;
        return true;
}

enum {
        ARG_BACKEND = 0x100,
        ARG_SIM_DIR,
        ARG_SYSFS_ROOT,
        ARG_DEV_ROOT,
        ARG_OPERATOR_GROUP,
        ARG_STRATEGY,
        ARG_PHASE_DEADLINE,
        ARG_PARALLELISM,
        ARG_LOG_LEVEL,
        ARG_POLICY,
        ARG_POLICY_DIR,
        ARG_ALLOW_DEFAULT_POLICY,
        ARG_STATE_DIR,
        ARG_LIBVIRT_URI,
        ARG_STOP_TIMEOUT,
        ARG_VERSION,
        ARG_HELP,
};

/* ARGS_RUN, or the status to exit with, having said why. */
static int parse_args(int argc, char **argv, DaemonOptions *o)
{
        static const struct option longopts[] = {
            {"backend", required_argument, NULL, ARG_BACKEND},
            {"sim-dir", required_argument, NULL, ARG_SIM_DIR},
            {"sysfs-root", required_argument, NULL, ARG_SYSFS_ROOT},
            {"dev-root", required_argument, NULL, ARG_DEV_ROOT},
            {"operator-group", required_argument, NULL, ARG_OPERATOR_GROUP},
            {"strategy", required_argument, NULL, ARG_STRATEGY},
            {"phase-deadline-ms", required_argument, NULL, ARG_PHASE_DEADLINE},
            {"parallelism", required_argument, NULL, ARG_PARALLELISM},
            {"log-level", required_argument, NULL, ARG_LOG_LEVEL},
            {"policy", required_argument, NULL, ARG_POLICY},
            {"policy-dir", required_argument, NULL, ARG_POLICY_DIR},
            {"allow-default-policy", no_argument, NULL, ARG_ALLOW_DEFAULT_POLICY},
            {"state-dir", required_argument, NULL, ARG_STATE_DIR},
            {"libvirt-uri", required_argument, NULL, ARG_LIBVIRT_URI},
            {"stop-timeout-ms", required_argument, NULL, ARG_STOP_TIMEOUT},
            {"version", no_argument, NULL, ARG_VERSION},
            {"help", no_argument, NULL, ARG_HELP},
            {},
        };
        int c, level, r;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":", longopts, NULL)) >= 0) {
                switch (c) {
                case ARG_BACKEND:
                        if (strcmp(optarg, "sim") != 0 && strcmp(optarg, "kernel") != 0)
                                return usage_error("--backend: unknown backend '%s'; use sim or "
                                                   "kernel.",
                                                   optarg);
                        o->backend = optarg;
                        break;
                case ARG_SIM_DIR:
                        if (!*optarg)
                                return usage_error("--sim-dir: give a directory.");
                        o->sim_dir = optarg;
                        break;
                case ARG_SYSFS_ROOT:
                        if (!*optarg)
                                return usage_error("--sysfs-root: give a directory.");
                        o->sysfs_root = optarg;
                        break;
                case ARG_DEV_ROOT:
                        if (!*optarg)
                                return usage_error("--dev-root: give a directory.");
                        o->dev_root = optarg;
                        break;
                case ARG_OPERATOR_GROUP:
                        if (!*optarg)
                                return usage_error("--operator-group: give a group name.");
                        o->operator_group = optarg;
                        break;
                case ARG_STRATEGY:
                        r = plan_strategy_from_string(optarg, &o->vm_defaults.strategy);
                        if (r < 0)
                                return usage_error("--strategy: '%s' is not parallel, qemu or "
                                                   "naive.",
                                                   optarg);
                        if (r == PLAN_STRATEGY_DEPRECATED_NAME)
                                log_warning("--strategy: %s; taken as 'naive'",
                                            PLAN_STRATEGY_SERIAL_DEPRECATION);
                        break;
                case ARG_PHASE_DEADLINE:
                        if (!parse_u32(optarg, 1, VM_PHASE_DEADLINE_MAX,
                                       &o->vm_defaults.phase_deadline_ms))
                                return usage_error("--phase-deadline-ms: '%s' is not a number "
                                                   "from 1 to %" PRIu32 ".",
                                                   optarg, VM_PHASE_DEADLINE_MAX);
                        break;
                case ARG_PARALLELISM:
                        if (!parse_u32(optarg, 0, VM_PARALLELISM_MAX, &o->vm_defaults.parallelism))
                                return usage_error("--parallelism: '%s' is not a number from 0 "
                                                   "to %" PRIu32 ".",
                                                   optarg, VM_PARALLELISM_MAX);
                        break;
                case ARG_LOG_LEVEL:
                        if (log_level_from_string(optarg, &level) < 0)
                                return usage_error("--log-level: '%s' is not one of err, "
                                                   "warning, notice, info, debug.",
                                                   optarg);
                        log_set_max_level(level);
                        break;
                case ARG_POLICY:
                        if (!*optarg)
                                return usage_error("--policy: give a file.");
                        o->policy_file = optarg;
                        break;
                case ARG_POLICY_DIR:
                        if (!*optarg)
                                return usage_error("--policy-dir: give a directory.");
                        o->policy_dir = optarg;
                        break;
                case ARG_ALLOW_DEFAULT_POLICY:
                        o->allow_default_policy = true;
                        break;
                case ARG_STATE_DIR:
                        if (!*optarg)
                                return usage_error("--state-dir: give a directory.");
                        o->state_dir = optarg;
                        break;
                case ARG_LIBVIRT_URI:
                        if (!*optarg)
                                return usage_error("--libvirt-uri: give a libvirt URI, or none "
                                                   "for no libvirt.");
                        o->libvirt_uri = strcmp(optarg, "none") == 0 ? NULL : optarg;
                        break;
                case ARG_STOP_TIMEOUT:
                        if (!parse_u32(optarg, 1, DAEMON_STOP_TIMEOUT_MAX_MS,
                                       &o->stop_timeout_ms))
                                return usage_error("--stop-timeout-ms: '%s' is not a number "
                                                   "from 1 to %" PRIu32 ".",
                                                   optarg, DAEMON_STOP_TIMEOUT_MAX_MS);
                        break;
                case ARG_VERSION:
                        printf("vfio-migd %s\n", VFIO_MIGD_VERSION);
                        return EXIT_SUCCESS;
                case ARG_HELP:
                        print_help();
                        return EXIT_SUCCESS;
                case ':':
                        return usage_error("%s needs a value.", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'.", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument '%s'; vfio-migd takes options only.",
                                   argv[optind]);
        return ARGS_RUN;
}

int main(int argc, char **argv)
{
        DaemonOptions options = {
            .backend = "sim",
            .sim_dir = "/var/lib/vfio-migd/sim",
            .sysfs_root = "/sys",
            .dev_root = "/dev",
            .libvirt_uri = "qemu:///system",
        };
        g_autoptr(Daemon) d = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int lock_fd = -1;
        int r;

        vm_options_init(&options.vm_defaults);
        r = parse_args(argc, argv, &options);
        if (r != ARGS_RUN)
                return r;
        /* A path given explicitly must exist: silently running on the defaults instead would
         * hide a typo in the unit file. */
        if (options.policy_file && !g_file_test(options.policy_file, G_FILE_TEST_IS_REGULAR)) {
                log_error("--policy=%s: no such file; give the path of an existing policy file "
                          "(vfio-migctl policy validate FILE checks it), or leave --policy out "
                          "to use %s.",
                          options.policy_file, POLICY_MAIN_DEFAULT);
                return EXIT_CONFIG;
        }

        /* A Save's reader that goes away is EPIPE for that Save, not the end of the daemon
         * (outside systemd, which sets this itself, SIGPIPE would kill it with 141). */
        signal(SIGPIPE, SIG_IGN);
        /* First: a second daemon on this state directory would rewrite the first one's
         * journal and act on its VMs. Held until exit. */
        r = journal_lock_dir(options.state_dir ? options.state_dir : RECOVERY_STATE_DIR_DEFAULT,
                             &lock_fd, &error);
        if (r < 0) {
                log_error("%s", error->message);
                return r == -EWOULDBLOCK ? EXIT_TEMPFAIL : EXIT_CANTCREAT;
        }
        g_clear_error(&error);

        /* Workers stay around between sequences: creating 64 threads for every phase of
         * every sequence is a visible part of a VM's downtime. They are stopped at exit. */
        g_thread_pool_set_max_unused_threads(256);

        r = daemon_new(&options, &d, &error);
        if (r < 0) {
                log_error("%s", error ? error->message : strerror(-r));
                /* EX_CONFIG: systemd and operators can tell a bad policy from a crash;
                 * EX_CANTCREAT: a sim directory others could write or a link, as for
                 * --state-dir. */
                if (r == -EINVAL)
                        return EXIT_CONFIG;
                return r == -EPERM || r == -ELOOP ? EXIT_CANTCREAT : EXIT_FAILURE;
        }
        r = daemon_run(d);
        if (r == -ENOTCONN) {
                /* A sequence with a hung stream would hold daemon_free() up, and a daemon
                 * without its name serves nobody: the journal has what recovery needs. */
                fflush(NULL);
                _exit(EXIT_FAILURE);
        }
        g_clear_pointer(&d, daemon_free);
        /* Idle workers would otherwise still be running when the process exits. */
        g_thread_pool_set_max_unused_threads(0);
        g_thread_pool_stop_unused_threads();
        while (g_thread_pool_get_num_unused_threads() > 0)
                g_usleep(1000);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
