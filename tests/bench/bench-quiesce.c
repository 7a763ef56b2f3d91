/* bench-quiesce: Quiesce over D-Bus, vfio-migd's parallel phases against one device at a time
 *
 * Starts a private dbus-daemon and a vfio-migd on sim devices, then for N = 1, 4, 16, 64
 * devices with a per-arc latency registers two VMs of N devices each (strategy parallel and
 * serial) and times the Quiesce call as a client sees it, side by side in one run, taking the
 * median of several rounds. Prints each wall time, the ratio, and how the parallel time
 * compares with the target 1.2 x (phases x latency) + 5 ms. A second table does the same with
 * zero latency, where the target is 64 devices in under 10 ms.
 *
 * Usage: bench-quiesce VFIO_MIGD BUS_CONF [ROUNDS]
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>

#include "devices/sim.h"
#include "util.h"

#define BUS_NAME "org.vfiomig.Coordinator1"
#define ROOT     "/org/vfiomig/Coordinator1"
#define MANAGER  BUS_NAME ".Manager"
#define VM_IFACE BUS_NAME ".VM"

static const unsigned sizes[] = {1, 4, 16, 64};

typedef struct Bench {
        char *dir;
        char *sim_dir;
        GPid bus_pid, daemon_pid;
        sd_bus *bus;
} Bench;

static void die(const char *what, int r)
{
        fprintf(stderr, "bench-quiesce: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(1);
}

static void start_bus(Bench *b, const char *conf)
{
        g_autofree char *addr = g_strdup_printf("unix:path=%s/bus", b->dir);
        g_autofree char *conf_copy = g_build_filename(b->dir, "bus.conf", NULL);
        g_autofree char *conf_arg = g_strdup_printf("--config-file=%s", conf_copy);
        const char *argv[] = {"dbus-daemon", conf_arg, "--nofork", "--nopidfile", NULL};
        g_autofree char *template = NULL;
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) parts = NULL;
        g_autofree char *text = NULL;

        /* The template names its socket @LISTEN@; dbus-daemon insists on a <listen> element. */
        if (!g_file_get_contents(conf, &template, NULL, &error)) {
                fprintf(stderr, "bench-quiesce: %s\n", error->message);
                exit(1);
        }
        parts = g_strsplit(template, "@LISTEN@", -1);
        text = g_strjoinv(addr, parts);
        if (!g_file_set_contents(conf_copy, text, -1, &error)) {
                fprintf(stderr, "bench-quiesce: %s\n", error->message);
                exit(1);
        }

        if (!g_spawn_async(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                           NULL, NULL, &b->bus_pid, &error)) {
                fprintf(stderr, "bench-quiesce: cannot start dbus-daemon: %s\n", error->message);
                exit(1);
        }
        g_setenv("DBUS_SYSTEM_BUS_ADDRESS", addr, TRUE);
        for (int i = 0; i < 500; i++) {
                g_autofree char *sock = g_strdup_printf("%s/bus", b->dir);
                if (g_file_test(sock, G_FILE_TEST_EXISTS))
                        return;
                g_usleep(10000);
        }
        die("dbus-daemon did not create its socket", ETIMEDOUT);
}

static void start_daemon(Bench *b, const char *migd)
{
        g_autofree char *sim_arg = g_strdup_printf("--sim-dir=%s", b->sim_dir);
        const char *argv[] = {migd, "--backend=sim", sim_arg, "--log-level=warning", NULL};
        g_autoptr(GError) error = NULL;
        int r;

        if (!g_spawn_async(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL,
                           &b->daemon_pid, &error)) {
                fprintf(stderr, "bench-quiesce: cannot start %s: %s\n", migd, error->message);
                exit(1);
        }
        r = sd_bus_open_system(&b->bus);
        if (r < 0)
                die("connect to the private bus", r);
        for (int i = 0; i < 1000; i++) {
                if (sd_bus_get_name_creds(b->bus, BUS_NAME, 0, NULL) >= 0)
                        return;
                g_usleep(10000);
        }
        die("vfio-migd did not take its bus name", ETIMEDOUT);
}

static void stop_child(GPid pid)
{
        int status;
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
        g_spawn_close_pid(pid);
}

static void create_devices(Bench *b, const char *prefix, unsigned n, unsigned latency_ms)
{
        for (unsigned i = 0; i < n; i++) {
                g_autofree char *name = g_strdup_printf("%s-%u", prefix, i);
                g_autoptr(GError) error = NULL;
                SimSpec spec = {
                        .name = name,
                        .driver = "mlx5_vfio_pci",
                        .vendor_id = 0x15b3,
                        .device_id = 0x101e,
                        .flags = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
                        .blob_size = 256, /* the zero-latency table measures coordination, not sim hashing */
                        .latency_ms = latency_ms,
                };
                if (sim_device_create(b->sim_dir, &spec, &error) < 0) {
                        fprintf(stderr, "bench-quiesce: %s\n", error->message);
                        exit(1);
                }
        }
}

static void register_vm(Bench *b, const char *vm, const char *prefix, unsigned n,
                        const char *strategy)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(b->bus, &m, BUS_NAME, ROOT, MANAGER, "RegisterVM");
        if (r < 0)
                die("new RegisterVM", r);
        sd_bus_message_append(m, "s", vm);
        sd_bus_message_open_container(m, 'a', "s");
        for (unsigned i = 0; i < n; i++) {
                g_autofree char *name = g_strdup_printf("%s-%u", prefix, i);
                sd_bus_message_append(m, "s", name);
        }
        sd_bus_message_close_container(m);
        r = sd_bus_message_append(m, "a{sv}", 1, "strategy", "s", strategy);
        if (r < 0)
                die("append RegisterVM", r);
        r = sd_bus_call(b->bus, m, 0, &error, &reply);
        if (r < 0) {
                fprintf(stderr, "bench-quiesce: RegisterVM %s: %s\n", vm, error.message);
                exit(1);
        }
}

/* Calls a VM method and returns the wall time the client saw, in microseconds. */
static uint64_t call_vm(Bench *b, const char *vm, const char *method)
{
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autofree char *path = NULL;
        uint64_t t0;
        int r;

        r = sd_bus_path_encode(ROOT "/vm", vm, &path);
        if (r < 0)
                die("encode path", r);
        t0 = now_usec();
        r = sd_bus_call_method(b->bus, BUS_NAME, path, VM_IFACE, method, &error, &reply, "");
        if (r < 0) {
                fprintf(stderr, "bench-quiesce: %s %s: %s\n", vm, method, error.message);
                exit(1);
        }
        return now_usec() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static uint64_t median_quiesce(Bench *b, const char *vm, unsigned rounds)
{
        g_autofree uint64_t *t = g_new0(uint64_t, rounds);

        for (unsigned i = 0; i < rounds; i++) {
                t[i] = call_vm(b, vm, "Quiesce");
                call_vm(b, vm, "Start");
        }
        qsort(t, rounds, sizeof(*t), cmp_u64);
        return t[rounds / 2];
}

static void run_table(Bench *b, unsigned latency_ms, unsigned rounds)
{
        /* A P2P device's quiesce walks two arcs: RUNNING>RUNNING_P2P, RUNNING_P2P>STOP. */
        const unsigned phases = 2;

        printf("\nQuiesce over D-Bus, per-arc latency %u ms, median of %u rounds\n", latency_ms,
               rounds);
        printf("%6s %14s %14s %9s %14s %s\n", "N", "parallel ms", "one-at-a-time", "ratio",
               "target ms", "parallel within target");
        for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
                unsigned n = sizes[i];
                g_autofree char *pp = g_strdup_printf("p%u-%u", latency_ms, n);
                g_autofree char *sp = g_strdup_printf("s%u-%u", latency_ms, n);
                uint64_t par, ser;
                double target_ms = latency_ms ? 1.2 * phases * latency_ms + 5.0 : 10.0;

                create_devices(b, pp, n, latency_ms);
                create_devices(b, sp, n, latency_ms);
                register_vm(b, pp, pp, n, "parallel");
                register_vm(b, sp, sp, n, "serial");
                /* Side by side: each round times both, so both see the same machine load. */
                par = median_quiesce(b, pp, rounds);
                ser = median_quiesce(b, sp, rounds);
                printf("%6u %14.2f %14.2f %8.1fx %14.1f %s\n", n, par / 1000.0, ser / 1000.0,
                       (double)ser / (double)(par ? par : 1), target_ms,
                       par / 1000.0 <= target_ms ? "yes" : "NO");
        }
}

int main(int argc, char **argv)
{
        Bench b = {0};
        unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 5;
        g_autoptr(GError) error = NULL;

        if (argc < 3) {
                fprintf(stderr, "usage: bench-quiesce VFIO_MIGD BUS_CONF [ROUNDS]\n");
                return 2;
        }
        if (rounds == 0)
                rounds = 1;
        b.dir = g_dir_make_tmp("bench-quiesce-XXXXXX", &error);
        if (!b.dir) {
                fprintf(stderr, "bench-quiesce: %s\n", error->message);
                return 1;
        }
        b.sim_dir = g_build_filename(b.dir, "sim", NULL);
        start_bus(&b, argv[2]);
        start_daemon(&b, argv[1]);

        run_table(&b, 20, rounds);
        run_table(&b, 0, rounds * 4);

        sd_bus_flush_close_unref(b.bus);
        stop_child(b.daemon_pid);
        stop_child(b.bus_pid);
        {
                g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", b.dir);
                (void)!system(cmd);
        }
        g_free(b.sim_dir);
        g_free(b.dir);
        return 0;
}
