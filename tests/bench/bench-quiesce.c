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
