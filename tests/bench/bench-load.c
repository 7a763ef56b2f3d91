/* bench-load: many D-Bus clients mixing reads and sequences against many VMs of sim devices
 *
 * Starts a private dbus-daemon and a vfio-migd on sim devices (VMS VMs of two P2P peers
 * each, an mlx5 with PRE_COPY and a pds without, zero per-arc latency by default; with
 * --no-peers they are not peers, so the sim skips its peer scan), registers
 * every VM, then runs CLIENTS threads for SECONDS, each on its own bus connection and each
 * owning VMS / CLIENTS VMs. A client repeats a cycle of ten calls, 80:20 reads to sequences:
 * eight reads (Get State of the VM it sequenced last, ListVMs, GetVM, GetDevice, GetAll of a
 * VM and of a device, Get of a device's State, CheckMigration), then a pair of sequences on
 * the next VM it owns (Quiesce + Start, or PreCopy + Abort, alternately). Reads go to any
 * VM or device, sequences only to the client's own VMs, so no call may legitimately fail.
 *
 * Every reply is checked (a report's result is "ok", a VM is "running" again, GetAll names
 * the object asked for, ...); an error, a timeout or a wrong result is a failure, printed
 * with the error's name and message. At the end every device must be RUNNING without
 * corruption events, and the daemon must exit 0 on SIGTERM with nothing from a sanitizer on
 * its stderr (ASan's leak check runs at its exit). Prints per call type count, p50, p90, p99
 * and max latency, calls/s and sequences/s: figures, never asserted.
 *
 * Usage: bench-load VFIO_MIGD BUS_CONF [--seconds N] [--vms N] [--clients N] [--latency-ms N]
 *                   [--call-timeout SEC] [--no-peers]
 * Exit status: 0 no failure, 1 a failure (or a set-up error), 2 usage error.
 * MIGD_WRAPPER runs the daemon under a command (valgrind), as in tests/dbus.
 */
#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>

#include "bench-util.h"
#include "devices/sim.h"
#include "util.h"

#define PROG         "bench-load"
#define MAX_REPORTED 10
#define DEVS_PER_VM  2

enum call_type {
        CALL_LIST_VMS,
        CALL_GET_VM,
        CALL_GET_DEVICE,
        CALL_GET_VM_STATE,
        CALL_GET_DEVICE_STATE,
        CALL_GETALL_VM,
        CALL_GETALL_DEVICE,
        CALL_CHECK_MIGRATION,
        CALL_QUIESCE,
        CALL_START,
        CALL_PRECOPY,
        CALL_ABORT,
        CALL_TYPE_COUNT,
        CALL_FIRST_SEQUENCE = CALL_QUIESCE,
};

static const char *const call_names[CALL_TYPE_COUNT] = {
    [CALL_LIST_VMS] = "ListVMs",
    [CALL_GET_VM] = "GetVM",
    [CALL_GET_DEVICE] = "GetDevice",
    [CALL_GET_VM_STATE] = "Get VM.State",
    [CALL_GET_DEVICE_STATE] = "Get Device.State",
    [CALL_GETALL_VM] = "GetAll VM",
    [CALL_GETALL_DEVICE] = "GetAll Device",
    [CALL_CHECK_MIGRATION] = "CheckMigration",
    [CALL_QUIESCE] = "Quiesce",
    [CALL_START] = "Start",
    [CALL_PRECOPY] = "PreCopy",
    [CALL_ABORT] = "Abort",
};

typedef struct Config {
        unsigned seconds, vms, clients, latency_ms, call_timeout_s;
        bool peers; /* a VM's devices are P2P peers (the sim scans for peers on every arc) */
} Config;

/* Names and object paths, built once before the clients start and only read after. */
typedef struct Names {
        char **vm, **vm_path;   /* [vms] */
        char **dev, **dev_path; /* [vms * DEVS_PER_VM]; device i belongs to VM i / 2 */
} Names;

typedef struct Client {
        unsigned id;
        const Config *cfg;
        const Names *names;
        pthread_barrier_t *start;
        sd_bus *bus;
        uint64_t rng;
        GArray *latency_us[CALL_TYPE_COUNT]; /* uint32_t, this thread's only */
        uint64_t failures;
} Client;

static atomic_bool stop_clients;
static atomic_uint_fast64_t failures_total;
static pthread_mutex_t failures_lock = PTHREAD_MUTEX_INITIALIZER;
static char *failures_first[MAX_REPORTED];

/* Failure path only: the first few are kept for the report, the rest counted. */
static void G_GNUC_PRINTF(2, 3) client_fail(Client *c, const char *fmt, ...)
{
        uint64_t n = atomic_fetch_add(&failures_total, 1);
        va_list ap;

        c->failures++;
        if (n >= MAX_REPORTED)
                return;
        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&failures_lock);
        failures_first[n] = g_strdup_printf("client %u: %s", c->id, msg);
        pthread_mutex_unlock(&failures_lock);
}

static uint32_t client_random(Client *c, uint32_t bound)
{
        /* xorshift64*: per thread, no locks */
        c->rng ^= c->rng >> 12;
        c->rng ^= c->rng << 25;
        c->rng ^= c->rng >> 27;
        return (uint32_t)((c->rng * 0x2545F4914F6CDD1DULL) >> 32) % bound;
}

/* One timed call; the reply, or NULL after recording the failure. The latency is recorded
 * for successful calls only, so a timeout does not pose as a figure. */
static sd_bus_message *client_call(Client *c, enum call_type type, const char *path,
                                   const char *iface, const char *member, const char *what,
                                   const char *types, ...)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t t0, dt;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, BENCH_BUS_NAME, path, iface, member);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r < 0) {
                client_fail(c, "%s %s: cannot build the call: %s", call_names[type], what,
                            strerror(-r));
                return NULL;
        }
        t0 = now_usec();
        r = sd_bus_call(c->bus, m, (uint64_t)c->cfg->call_timeout_s * 1000000u, &error, &reply);
        dt = now_usec() - t0;
        if (r < 0) {
                client_fail(c, "%s %s: %s: %s (after %.1f ms)", call_names[type], what,
                            error.name ? error.name : "(no error name)",
                            error.message ? error.message : strerror(-r), dt / 1000.0);
                return NULL;
        }
        g_array_append_val(c->latency_us[type], (uint32_t){dt > UINT32_MAX ? UINT32_MAX : dt});
        return reply;
}

/* Reads the string value of KEY from an a{sv} (a property dict or a report); NULL when the
 * key is missing or not a string. */
static char *dict_string(sd_bus_message *m, const char *key)
{
        char *found = NULL;
        int r;

        if (sd_bus_message_enter_container(m, 'a', "{sv}") <= 0)
                return NULL;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *k, *v;

                if (sd_bus_message_read(m, "s", &k) < 0)
                        break;
                if (!found && strcmp(k, key) == 0 && sd_bus_message_read(m, "v", "s", &v) >= 0)
                        found = g_strdup(v);
                else if (sd_bus_message_skip(m, "v") < 0)
                        break;
                if (sd_bus_message_exit_container(m) < 0)
                        break;
        }
        return found;
}

/* ListVMs: every VM, each once. */
static void read_list_vms(Client *c)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply =
            client_call(c, CALL_LIST_VMS, BENCH_ROOT, BENCH_MANAGER, "ListVMs", "", NULL);
        const char *name, *path;
        unsigned n = 0;

        if (!reply)
                return;
        if (sd_bus_message_enter_container(reply, 'a', "(so)") <= 0) {
                client_fail(c, "ListVMs: the reply is not a(so)");
                return;
        }
        while (sd_bus_message_read(reply, "(so)", &name, &path) > 0)
                n++;
        if (n != c->cfg->vms)
                client_fail(c, "ListVMs: %u VMs listed, %u registered", n, c->cfg->vms);
}

/* GetVM / GetDevice: the object path of the name. */
static void read_get_object(Client *c, enum call_type type, const char *name, const char *expected)
{
        const char *member = type == CALL_GET_VM ? "GetVM" : "GetDevice";
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply =
            client_call(c, type, BENCH_ROOT, BENCH_MANAGER, member, name, "s", name);
        const char *path;

        if (!reply)
                return;
        if (sd_bus_message_read(reply, "o", &path) < 0 || strcmp(path, expected) != 0)
                client_fail(c, "%s %s: wrong path in the reply, expected %s", member, name,
                            expected);
}

/* Properties.Get of a string property that must read EXPECTED. */
static void read_get_state(Client *c, enum call_type type, const char *path, const char *iface,
                           const char *expected)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = client_call(
            c, type, path, "org.freedesktop.DBus.Properties", "Get", path, "ss", iface, "State");
        const char *state;

        if (!reply)
                return;
        if (sd_bus_message_read(reply, "v", "s", &state) < 0)
                client_fail(c, "%s %s: the reply is not a string variant", call_names[type], path);
        else if (strcmp(state, expected) != 0)
                client_fail(c, "%s %s: \"%s\", expected \"%s\"", call_names[type], path, state,
                            expected);
}

/* Properties.GetAll: Name is the object's name (any VM or device, sequencing or not). */
static void read_get_all(Client *c, enum call_type type, const char *path, const char *iface,
                         const char *name)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = client_call(
            c, type, path, "org.freedesktop.DBus.Properties", "GetAll", path, "s", iface);
        g_autofree char *got = NULL;

        if (!reply)
                return;
        got = dict_string(reply, "Name");
        if (!got || strcmp(got, name) != 0)
                client_fail(c, "%s %s: Name is \"%s\", expected \"%s\"", call_names[type], path,
                            got ? got : "(missing)", name);
}

/* CheckMigration of an idle VM of this client's: allowed. */
static void read_check_migration(Client *c, const char *vm)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = client_call(
            c, CALL_CHECK_MIGRATION, BENCH_ROOT, BENCH_MANAGER, "CheckMigration", vm, "s", vm);
        int allowed = 0;

        if (!reply)
                return;
        if (sd_bus_message_read(reply, "b", &allowed) < 0 || !allowed)
                client_fail(c, "CheckMigration %s: not allowed", vm);
}

/* A VM method whose report must say "ok". */
static bool sequence(Client *c, enum call_type type, unsigned vm)
{
        const char *path = c->names->vm_path[vm], *name = c->names->vm[vm];
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply =
            client_call(c, type, path, BENCH_VM_IFACE, call_names[type], name, "", NULL);
        g_autofree char *result = NULL;

        if (!reply)
                return false;
        result = dict_string(reply, "result");
        if (!result || strcmp(result, "ok") != 0) {
                client_fail(c, "%s %s: the report's result is \"%s\", expected \"ok\"",
                            call_names[type], name, result ? result : "(missing)");
                return false;
        }
        return true;
}

static unsigned client_own_vm(const Client *c, unsigned k)
{
        unsigned owned = (c->cfg->vms - c->id + c->cfg->clients - 1) / c->cfg->clients;
        return c->id + (k % owned) * c->cfg->clients;
}

/* Eight reads, then two sequences on the next VM the client owns. */
static void client_cycle(Client *c, unsigned cycle, unsigned *last_vm)
{
        const Names *n = c->names;
        unsigned any_vm = client_random(c, c->cfg->vms);
        unsigned any_dev = client_random(c, c->cfg->vms * DEVS_PER_VM);
        unsigned any_dev2 = client_random(c, c->cfg->vms * DEVS_PER_VM);
        unsigned vm = client_own_vm(c, cycle);
        unsigned own_dev = *last_vm * DEVS_PER_VM + cycle % DEVS_PER_VM;

        read_get_state(c, CALL_GET_VM_STATE, n->vm_path[*last_vm], BENCH_VM_IFACE, "running");
        read_list_vms(c);
        read_get_object(c, CALL_GET_VM, n->vm[any_vm], n->vm_path[any_vm]);
        read_get_object(c, CALL_GET_DEVICE, n->dev[any_dev], n->dev_path[any_dev]);
        read_get_all(c, CALL_GETALL_VM, n->vm_path[any_vm], BENCH_VM_IFACE, n->vm[any_vm]);
        read_get_all(c, CALL_GETALL_DEVICE, n->dev_path[any_dev2], BENCH_DEV_IFACE,
                     n->dev[any_dev2]);
        read_get_state(c, CALL_GET_DEVICE_STATE, n->dev_path[own_dev], BENCH_DEV_IFACE, "RUNNING");
        read_check_migration(c, n->vm[*last_vm]);

        if (cycle % 2 == 0) {
                if (sequence(c, CALL_QUIESCE, vm))
                        sequence(c, CALL_START, vm);
        } else {
                if (sequence(c, CALL_PRECOPY, vm))
                        sequence(c, CALL_ABORT, vm);
        }
        *last_vm = vm;
}

static void *client_main(void *data)
{
        Client *c = data;
        uint64_t deadline;
        unsigned last_vm = client_own_vm(c, 0);
        int r;

        r = sd_bus_open_system(&c->bus);
        if (r < 0)
                client_fail(c, "cannot connect to the bus: %s", strerror(-r));
        pthread_barrier_wait(c->start);
        deadline = now_usec() + (uint64_t)c->cfg->seconds * 1000000u;
        for (unsigned cycle = 0; c->bus && !atomic_load(&stop_clients) && now_usec() < deadline;
             cycle++)
                client_cycle(c, cycle, &last_vm);
        c->bus = sd_bus_flush_close_unref(c->bus);
        return NULL;
}

static void names_build(Names *n, const Config *cfg)
{
        unsigned ndev = cfg->vms * DEVS_PER_VM;

        n->vm = g_new0(char *, cfg->vms + 1);
        n->vm_path = g_new0(char *, cfg->vms + 1);
        n->dev = g_new0(char *, ndev + 1);
        n->dev_path = g_new0(char *, ndev + 1);
        for (unsigned i = 0; i < cfg->vms; i++) {
                n->vm[i] = g_strdup_printf("vm-%04u", i);
                sd_bus_path_encode(BENCH_ROOT "/vm", n->vm[i], &n->vm_path[i]);
        }
        for (unsigned i = 0; i < ndev; i++) {
                n->dev[i] = g_strdup_printf("vm-%04u-d%u", i / DEVS_PER_VM, i % DEVS_PER_VM);
                sd_bus_path_encode(BENCH_ROOT "/device", n->dev[i], &n->dev_path[i]);
        }
}

static void names_free(Names *n)
{
        g_strfreev(n->vm);
        g_strfreev(n->vm_path);
        g_strfreev(n->dev);
        g_strfreev(n->dev_path);
}

/* Two P2P peers per VM: an mlx5 with PRE_COPY and a pds without, so PreCopy moves one. */
static void create_devices(BenchHost *h, const Config *cfg, const Names *n)
{
        for (unsigned i = 0; i < cfg->vms * DEVS_PER_VM; i++) {
                bool mlx5 = i % DEVS_PER_VM == 0;
                SimSpec spec = {
                    .name = n->dev[i],
                    .driver = mlx5 ? "mlx5_vfio_pci" : "pds_vfio_pci",
                    .vendor_id = mlx5 ? 0x15b3 : 0x1dd8,
                    .device_id = mlx5 ? 0x101e : 0x1003,
                    .flags = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | (mlx5 ? MIG_FLAG_PRE_COPY : 0),
                    .p2p_group = cfg->peers ? n->vm[i / DEVS_PER_VM] : NULL,
                    .blob_size = 256, /* coordination under load, not sim hashing */
                    .latency_ms = cfg->latency_ms,
                };
                bench_create_device(h, &spec);
        }
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

static double percentile_ms(const GArray *sorted, double p)
{
        size_t i;

        if (sorted->len == 0)
                return 0;
        i = (size_t)(p * (sorted->len - 1) + 0.5);
        return g_array_index(sorted, uint32_t, i) / 1000.0;
}

static void print_row(const char *label, GArray *lat, double seconds)
{
        qsort(lat->data, lat->len, sizeof(uint32_t), cmp_u32);
        printf("  %-18s %9u %9.1f %8.2f %8.2f %8.2f %8.2f\n", label, lat->len, lat->len / seconds,
               percentile_ms(lat, 0.50), percentile_ms(lat, 0.90), percentile_ms(lat, 0.99),
               percentile_ms(lat, 1.0));
}

static void print_figures(Client *clients, const Config *cfg, double seconds)
{
        g_autoptr(GArray) reads = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        g_autoptr(GArray) seqs = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(uint32_t));

        printf("\n  %-18s %9s %9s %8s %8s %8s %8s\n", "call", "count", "calls/s", "p50 ms",
               "p90 ms", "p99 ms", "max ms");
        for (int t = 0; t < CALL_TYPE_COUNT; t++) {
                g_autoptr(GArray) lat = g_array_new(FALSE, FALSE, sizeof(uint32_t));

                for (unsigned i = 0; i < cfg->clients; i++)
                        g_array_append_vals(lat, clients[i].latency_us[t]->data,
                                            clients[i].latency_us[t]->len);
                g_array_append_vals(t < CALL_FIRST_SEQUENCE ? reads : seqs, lat->data, lat->len);
                g_array_append_vals(all, lat->data, lat->len);
                print_row(call_names[t], lat, seconds);
        }
        printf("  %-18s\n", "------------------");
        print_row("reads", reads, seconds);
        print_row("sequences", seqs, seconds);
        print_row("all calls", all, seconds);
        printf("\nLoad: %u calls in %.2f s: %.0f calls/s, p50 %.2f ms, p99 %.2f ms; "
               "%u sequences: %.1f sequences/s, p50 %.2f ms, p99 %.2f ms\n",
               all->len, seconds, all->len / seconds, percentile_ms(all, 0.5),
               percentile_ms(all, 0.99), seqs->len, seqs->len / seconds, percentile_ms(seqs, 0.5),
               percentile_ms(seqs, 0.99));
}

/* Every device RUNNING, and no peer was ever stopped under a running one. */
static unsigned check_devices(BenchHost *h, const Config *cfg)
{
        g_autoptr(GPtrArray) devices = NULL;
        g_autoptr(GError) error = NULL;
        unsigned bad = 0;

        if (sim_device_list(h->sim_dir, &devices, &error) < 0) {
                fprintf(stderr, "%s: %s\n", PROG, error->message);
                return 1;
        }
        g_ptr_array_set_free_func(devices, (GDestroyNotify)sim_device_free);
        if (devices->len != cfg->vms * DEVS_PER_VM) {
                fprintf(stderr, "%s: FAIL: %u sim devices, expected %u\n", PROG, devices->len,
                        cfg->vms * DEVS_PER_VM);
                bad++;
        }
        for (guint i = 0; i < devices->len; i++) {
                const SimDevice *d = devices->pdata[i];

                if (d->state == MIG_STATE_RUNNING && d->events->len == 0)
                        continue;
                if (bad++ < MAX_REPORTED)
                        fprintf(stderr,
                                "%s: FAIL: device %s is %s with %u corruption events at the end\n",
                                PROG, d->name, mig_state_to_string(d->state), d->events->len);
        }
        return bad;
}

/* The daemon's stderr: sanitizer reports fail the run; other lines are shown. */
static unsigned check_daemon_log(BenchHost *h)
{
        static const char *const fatal[] = {"ERROR: AddressSanitizer", "LeakSanitizer",
                                            "runtime error:", "ERROR SUMMARY: ", "definitely lost"};
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        unsigned bad = 0, n;

        if (!g_file_get_contents(h->daemon_log, &text, NULL, NULL) || !*text)
                return 0;
        lines = g_strsplit(text, "\n", -1);
        n = g_strv_length(lines);
        for (size_t i = 0; i < G_N_ELEMENTS(fatal); i++)
                if (strstr(text, fatal[i]) && !(strcmp(fatal[i], "ERROR SUMMARY: ") == 0 &&
                                                strstr(text, "ERROR SUMMARY: 0 errors")))
                        bad++;
        fprintf(stderr, "%s: the daemon's stderr (%u lines)%s:\n", PROG, n - 1,
                bad ? ", with a sanitizer or valgrind report" : "");
        for (unsigned i = 0; i < n && (bad || i < 40); i++)
                if (*lines[i])
                        fprintf(stderr, "  | %s\n", lines[i]);
        return bad;
}

static unsigned stop_daemon(BenchHost *h)
{
        uint64_t t0 = now_usec();
        int status;

        if (waitpid(h->daemon_pid, &status, WNOHANG) == h->daemon_pid) {
                g_spawn_close_pid(h->daemon_pid);
                h->daemon_pid = 0;
                fprintf(stderr, "%s: FAIL: vfio-migd died during the run (%s %d)\n", PROG,
                        WIFSIGNALED(status) ? "signal" : "exit status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                return 1;
        }
        status = bench_stop_child(h->daemon_pid, 30000 * h->slow);
        h->daemon_pid = 0;
        if (status == -ETIMEDOUT) {
                fprintf(stderr, "%s: FAIL: vfio-migd did not exit within %u s of SIGTERM\n", PROG,
                        30 * h->slow);
                return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s: FAIL: vfio-migd ended with %s %d on SIGTERM\n", PROG,
                        WIFSIGNALED(status) ? "signal" : "exit status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                return 1;
        }
        printf("vfio-migd exited 0 on SIGTERM in %.0f ms\n", (now_usec() - t0) / 1000.0);
        return 0;
}

/* Runs the clients until they are done, stopping them early when the daemon dies. */
static double run_clients(BenchHost *h, Client *clients, const Config *cfg)
{
        g_autofree pthread_t *threads = g_new0(pthread_t, cfg->clients);
        pthread_barrier_t start;
        uint64_t t0;
        int r;

        pthread_barrier_init(&start, NULL, cfg->clients + 1);
        for (unsigned i = 0; i < cfg->clients; i++) {
                clients[i].start = &start;
                r = pthread_create(&threads[i], NULL, client_main, &clients[i]);
                if (r != 0)
                        bench_die(h, "cannot start client thread %u: %s", i, strerror(r));
        }
        pthread_barrier_wait(&start);
        t0 = now_usec();
        for (unsigned waited = 0; waited < cfg->seconds * 1000u; waited += 50) {
                siginfo_t info = {0};

                /* WNOWAIT: stop_daemon() reaps it and reports how it ended. */
                if (waitid(P_PID, (id_t)h->daemon_pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    info.si_pid == h->daemon_pid) {
                        atomic_store(&stop_clients, true);
                        break;
                }
                g_usleep(50000);
        }
        for (unsigned i = 0; i < cfg->clients; i++)
                pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&start);
        return (now_usec() - t0) / 1e6;
}

static int parse_args(int *argc, char ***argv, Config *cfg)
{
        gint seconds = 10, vms = 500, clients = 100, latency = 0, timeout = 30;
        gboolean no_peers = FALSE;
        GOptionEntry entries[] = {
            {"seconds", 0, 0, G_OPTION_ARG_INT, &seconds, "How long the clients run (10)", "N"},
            {"vms", 0, 0, G_OPTION_ARG_INT, &vms, "VMs of two sim devices each (500)", "N"},
            {"clients", 0, 0, G_OPTION_ARG_INT, &clients, "Client threads (100)", "N"},
            {"latency-ms", 0, 0, G_OPTION_ARG_INT, &latency, "Per-arc latency (0)", "MS"},
            {"call-timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "Per-call timeout (30)", "SEC"},
            {"no-peers", 0, 0, G_OPTION_ARG_NONE, &no_peers,
             "No p2p_group: the sim does not scan its directory for peers on every arc", NULL},
            G_OPTION_ENTRY_NULL,
        };
        g_autoptr(GOptionContext) ctx = g_option_context_new("VFIO_MIGD BUS_CONF");
        g_autoptr(GError) error = NULL;

        g_option_context_add_main_entries(ctx, entries, NULL);
        if (!g_option_context_parse(ctx, argc, argv, &error)) {
                fprintf(stderr, "%s: %s\n", PROG, error->message);
                return -EINVAL;
        }
        if (*argc != 3) {
                fprintf(stderr,
                        "usage: %s VFIO_MIGD BUS_CONF [--seconds N] [--vms N] "
                        "[--clients N] [--latency-ms N] [--call-timeout SEC] [--no-peers]\n",
                        PROG);
                return -EINVAL;
        }
        if (seconds < 1 || clients < 1 || vms < clients || vms > 9999 || latency < 0 ||
            timeout < 1) {
                fprintf(stderr,
                        "%s: need --seconds >= 1, 1 <= --clients <= --vms <= 9999, "
                        "--latency-ms >= 0 and --call-timeout >= 1\n",
                        PROG);
                return -EINVAL;
        }
        *cfg = (Config){seconds, vms, clients, latency, timeout, !no_peers};
        return 0;
}

int main(int argc, char **argv)
{
        Config cfg;
        Names names = {0};
        BenchHost h;
        g_autofree Client *clients = NULL;
        g_autofree char *policy = NULL, *policy_dir = NULL;
        uint64_t t0, t_dev, t_up;
        unsigned bad = 0;
        double seconds;

        if (parse_args(&argc, &argv, &cfg) < 0)
                return 2;
        bench_host_init(&h, PROG);
        names_build(&names, &cfg);
        printf("Load: %u VMs x %u sim devices (%s, latency %u ms per arc), %u clients, %u s, "
               "reads:sequences 80:20 by call count\n",
               cfg.vms, DEVS_PER_VM, cfg.peers ? "P2P peers" : "no peers", cfg.latency_ms,
               cfg.clients, cfg.seconds);
        fflush(stdout);

        t0 = now_usec();
        create_devices(&h, &cfg, &names);
        t_dev = now_usec();
        bench_start_bus(&h, argv[2]);
        /* The host's own policy must not decide: no files, built-in defaults (require-p2p). */
        policy = g_strdup_printf("%s/policy.json", h.dir);
        /* --policy must name an existing file: an empty policy, every setting a default. */
        if (!g_file_set_contents(policy, "{}", -1, NULL)) {
                fprintf(stderr, "bench-load: cannot write %s\n", policy);
                return 1;
        }
        g_free(policy);
        policy = g_strdup_printf("--policy=%s/policy.json", h.dir);
        policy_dir = g_strdup_printf("--policy-dir=%s/policy.d", h.dir);
        bench_start_daemon(&h, argv[1], (const char *const[]){policy, policy_dir, NULL},
                           BENCH_DAEMON_WRAPPER | BENCH_DAEMON_LOG);
        t_up = now_usec();
        for (unsigned i = 0; i < cfg.vms; i++)
                bench_register_vm(&h, names.vm[i], (const char *const *)&names.dev[i * DEVS_PER_VM],
                                  DEVS_PER_VM, NULL);
        printf("set-up: %u devices created in %.2f s, daemon up in %.2f s, %u VMs registered "
               "in %.2f s\n",
               cfg.vms * DEVS_PER_VM, (t_dev - t0) / 1e6, (t_up - t_dev) / 1e6, cfg.vms,
               (now_usec() - t_up) / 1e6);
        fflush(stdout);

        clients = g_new0(Client, cfg.clients);
        for (unsigned i = 0; i < cfg.clients; i++) {
                clients[i] = (Client){
                    .id = i, .cfg = &cfg, .names = &names, .rng = 0x9E3779B97F4A7C15ULL * (i + 1)};
                for (int t = 0; t < CALL_TYPE_COUNT; t++)
                        clients[i].latency_us[t] = g_array_new(FALSE, FALSE, sizeof(uint32_t));
        }
        seconds = run_clients(&h, clients, &cfg);
        print_figures(clients, &cfg, seconds);

        bad += check_devices(&h, &cfg);
        bad += stop_daemon(&h);
        bad += check_daemon_log(&h);

        for (unsigned i = 0; i < MAX_REPORTED && failures_first[i]; i++)
                fprintf(stderr, "%s: FAIL: %s\n", PROG, failures_first[i]);
        printf("failures: %" G_GUINT64_FORMAT " calls\n", (guint64)atomic_load(&failures_total));
        bad += atomic_load(&failures_total) > 0;

        for (unsigned i = 0; i < cfg.clients; i++)
                for (int t = 0; t < CALL_TYPE_COUNT; t++)
                        g_array_unref(clients[i].latency_us[t]);
        for (unsigned i = 0; i < MAX_REPORTED; i++)
                g_free(failures_first[i]);
        names_free(&names);
        bench_host_cleanup(&h);
        printf("%s\n", bad ? "bench-load: FAILED" : "bench-load: ok");
        return bad ? 1 : 0;
}
