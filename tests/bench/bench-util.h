/* bench-util: a private dbus-daemon and a vfio-migd on sim devices, for the benchmarks */
#pragma once

/*
 * A BenchHost is one machine as the benchmarks see it: a temporary directory holding the
 * bus's socket and configuration, a sim device directory, a dbus-daemon started from a
 * template (tests/data/demo-bus.conf, whose @LISTEN@ becomes the socket address) and a
 * vfio-migd on that bus, reached through DBUS_SYSTEM_BUS_ADDRESS.
 *
 * Children are started with PR_SET_PDEATHSIG, and SIGINT/SIGTERM/SIGHUP kill them and remove
 * the directory, so a benchmark that dies or is killed leaves no process or file behind.
 *
 * Errors: set-up failures are fatal. bench_die() prints "PROG: message" on stderr, kills the
 * children, removes the temporary directory and exits 1; every bench_* function that can
 * fail calls it. bench_stop_child() returns the child's wait status, or -ETIMEDOUT when it
 * had to be killed.
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-bus.h>

#include "devices/sim.h"

#define BENCH_BUS_NAME  "org.vfiomig.Coordinator1"
#define BENCH_ROOT      "/org/vfiomig/Coordinator1"
#define BENCH_MANAGER   BENCH_BUS_NAME ".Manager"
#define BENCH_VM_IFACE  BENCH_BUS_NAME ".VM"
#define BENCH_DEV_IFACE BENCH_BUS_NAME ".Device"

enum {
        BENCH_DAEMON_WRAPPER = 1 << 0, /* run under $MIGD_WRAPPER (e.g. valgrind) when set */
        BENCH_DAEMON_LOG = 1 << 1,     /* the daemon's stderr goes to BenchHost.daemon_log */
};

typedef struct BenchHost {
        const char *prog;         /* prefix of every message */
        char *dir;                /* the temporary directory */
        char *sim_dir;            /* DIR/sim */
        char *daemon_log;         /* DIR/daemon.stderr with BENCH_DAEMON_LOG, else NULL */
        unsigned slow;            /* factor for every time bound: 1, or 6 under a wrapper */
        GPid bus_pid, daemon_pid; /* 0: not running */
        sd_bus *bus;              /* the main thread's connection, once the daemon is up */
} BenchHost;

/* Makes the temporary directory PROG-XXXXXX and arms the signal handlers. One host at a time. */
void bench_host_init(BenchHost *h, const char *prog);
/* Kills what still runs, closes the connection, removes the directory, frees; idempotent. */
void bench_host_cleanup(BenchHost *h);
_Noreturn void bench_die(BenchHost *h, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Starts dbus-daemon from the template CONF and sets DBUS_SYSTEM_BUS_ADDRESS. */
void bench_start_bus(BenchHost *h, const char *conf);
/* Starts MIGD --backend=sim --sim-dir=DIR/sim --log-level=warning --state-dir=DIR/state
 * --libvirt-uri=none EXTRA_ARGS (NULL-terminated, may be NULL) and waits until it owns its
 * bus name; opens h->bus. flags: BENCH_DAEMON_*. */
void bench_start_daemon(BenchHost *h, const char *migd, const char *const *extra_args,
                        unsigned flags);
/* SIGTERM, then waits up to timeout_ms (SIGKILL after it); the wait status or -ETIMEDOUT. */
int bench_stop_child(GPid pid, unsigned timeout_ms);

void bench_create_device(BenchHost *h, const SimSpec *spec);
/* RegisterVM(name, devices, {strategy} or {} when strategy is NULL) on h->bus. */
void bench_register_vm(BenchHost *h, const char *vm, const char *const *devices, size_t n,
                       const char *strategy);
