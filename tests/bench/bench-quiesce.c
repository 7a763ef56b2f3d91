/* bench-quiesce: Quiesce over D-Bus, parallel against qemu (QEMU's order) and naive
 *
 * Starts a private dbus-daemon and a vfio-migd on sim devices, then for N = 1, 4, 16, 64
 * devices with a per-arc latency registers three VMs of N devices each (strategies parallel,
 * qemu and naive) and times the Quiesce call as a client sees it, side by side in one run,
 * taking the median of several rounds. Prints the three wall times, both ratios
 * (qemu/parallel, naive/parallel), the floor (a quiesce's two arcs), and how the parallel
 * time compares with the target 1.2 x floor + 5 ms. qemu (QEMU >= 8.1) and naive (QEMU
 * before 8.1) both walk 2 x N arcs one after another; qemu corrupts nothing, naive does (see
 * scripts/demo.sh). A second table does the same with zero latency, where the target is 64
 * devices in under 10 ms.
 *
 * Usage: bench-quiesce VFIO_MIGD BUS_CONF [ROUNDS]
 */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "bench-util.h"
#include "devices/sim.h"
#include "util.h"

#define BUS_NAME "org.vfiomig.Coordinator1"
#define ROOT     "/org/vfiomig/Coordinator1"
#define VM_IFACE BUS_NAME ".VM"

static const unsigned sizes[] = {1, 4, 16, 64};

/* The bus, the daemon and the temporary directory: tests/bench/bench-util.h. */
typedef BenchHost Bench;

static void create_devices(Bench *b, const char *prefix, unsigned n, unsigned latency_ms)
{
        for (unsigned i = 0; i < n; i++) {
                g_autofree char *name = g_strdup_printf("%s-%u", prefix, i);
                SimSpec spec = {
                        .name = name,
                        .driver = "mlx5_vfio_pci",
                        .vendor_id = 0x15b3,
                        .device_id = 0x101e,
                        .flags = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P,
                        .blob_size = 256, /* the zero-latency table measures coordination, not sim hashing */
                        .latency_ms = latency_ms,
                };
                bench_create_device(b, &spec);
        }
}

static void register_vm(Bench *b, const char *vm, const char *prefix, unsigned n,
                        const char *strategy)
{
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

        for (unsigned i = 0; i < n; i++)
                g_ptr_array_add(names, g_strdup_printf("%s-%u", prefix, i));
        bench_register_vm(b, vm, (const char *const *)names->pdata, n, strategy);
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
                bench_die(b, "encode path: %s", strerror(-r));
        t0 = now_usec();
        r = sd_bus_call_method(b->bus, BUS_NAME, path, VM_IFACE, method, &error, &reply, "");
        if (r < 0)
                bench_die(b, "%s %s: %s", vm, method, error.message);
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

static const char *const strategies[] = {"parallel", "qemu", "naive"};

static void run_table(Bench *b, unsigned latency_ms, unsigned rounds)
{
        /* A P2P device's quiesce walks two arcs: RUNNING>RUNNING_P2P, RUNNING_P2P>STOP. */
        const unsigned arcs = 2;
        const double floor_ms = arcs * latency_ms;

        printf("\nQuiesce over D-Bus, per-arc latency %u ms, median of %u rounds; floor %.0f ms "
               "(%u arcs)\n",
               latency_ms, rounds, floor_ms, arcs);
        printf("%6s %12s %12s %12s %10s %10s %9s %10s %s\n", "N", "parallel ms", "qemu ms",
               "naive ms", "qemu/par", "naive/par", "floor ms", "target ms",
               "parallel within target");
        for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
                unsigned n = sizes[i];
                uint64_t t[G_N_ELEMENTS(strategies)];
                double target_ms = latency_ms ? 1.2 * floor_ms + 5.0 : 10.0;

                for (size_t k = 0; k < G_N_ELEMENTS(strategies); k++) {
                        g_autofree char *prefix =
                            g_strdup_printf("%c%u-%u", strategies[k][0], latency_ms, n);

                        create_devices(b, prefix, n, latency_ms);
                        register_vm(b, prefix, prefix, n, strategies[k]);
                }
                /* Side by side: each size times all three, so they see the same machine load. */
                for (size_t k = 0; k < G_N_ELEMENTS(strategies); k++) {
                        g_autofree char *prefix =
                            g_strdup_printf("%c%u-%u", strategies[k][0], latency_ms, n);

                        t[k] = median_quiesce(b, prefix, rounds);
                }
                printf("%6u %12.2f %12.2f %12.2f %9.1fx %9.1fx %9.1f %10.1f %s\n", n, t[0] / 1000.0,
                       t[1] / 1000.0, t[2] / 1000.0, (double)t[1] / (double)(t[0] ? t[0] : 1),
                       (double)t[2] / (double)(t[0] ? t[0] : 1), floor_ms, target_ms,
                       t[0] / 1000.0 <= target_ms ? "yes" : "NO");
        }
}

int main(int argc, char **argv)
{
        Bench b;
        unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 5;

        if (argc < 3) {
                fprintf(stderr, "usage: bench-quiesce VFIO_MIGD BUS_CONF [ROUNDS]\n");
                return 2;
        }
        if (rounds == 0)
                rounds = 1;
        bench_host_init(&b, "bench-quiesce");
        bench_start_bus(&b, argv[2]);
        bench_start_daemon(&b, argv[1], NULL, 0);

        run_table(&b, 20, rounds);
        run_table(&b, 0, rounds * 4);

        bench_host_cleanup(&b);
        return 0;
}
