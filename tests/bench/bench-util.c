/* bench-util: a private dbus-daemon and a vfio-migd on sim devices, for the benchmarks */
#include "bench-util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* What the signal handler kills: plain pids, read with async-signal-safe calls only. */
static volatile sig_atomic_t signal_bus_pid, signal_daemon_pid;
/* rm -rf DIR, prepared beforehand: fork, execve and waitpid are async-signal-safe. */
static char *signal_rm_argv[4];

static void on_fatal_signal(int sig)
{
        pid_t rm;

        if (signal_daemon_pid > 0)
                kill((pid_t)signal_daemon_pid, SIGKILL);
        if (signal_bus_pid > 0)
                kill((pid_t)signal_bus_pid, SIGKILL);
        if (signal_rm_argv[2]) {
                rm = fork();
                if (rm == 0) {
                        execve(signal_rm_argv[0], signal_rm_argv, (char *[]){NULL});
                        _exit(127);
                }
                if (rm > 0)
                        waitpid(rm, NULL, 0);
        }
        _exit(128 + sig);
}

void bench_host_init(BenchHost *h, const char *prog)
{
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
        g_autoptr(GError) error = NULL;
        g_autofree char *template = g_strdup_printf("%s-XXXXXX", prog);
        const char *slow = getenv("MIGD_TEST_SLOW");

        *h = (BenchHost){.prog = prog, .slow = 1};
        if (slow && atoi(slow) > 0)
                h->slow = (unsigned)atoi(slow);
        else if (getenv("MIGD_WRAPPER") && *getenv("MIGD_WRAPPER"))
                h->slow = 6;
        for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++) {
                struct sigaction sa = {.sa_handler = on_fatal_signal};
                sigaction(sigs[i], &sa, NULL);
        }
        h->dir = g_dir_make_tmp(template, &error);
        if (!h->dir)
                bench_die(h, "%s", error->message);
        h->sim_dir = g_build_filename(h->dir, "sim", NULL);
        signal_rm_argv[0] = "/bin/rm";
        signal_rm_argv[1] = "-rf";
        signal_rm_argv[2] = h->dir;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st, (void)type, (void)ftw;
        return remove(path) < 0 ? -errno : 0;
}

void bench_host_cleanup(BenchHost *h)
{
        if (h->bus)
                h->bus = sd_bus_flush_close_unref(h->bus);
        if (h->daemon_pid) {
                bench_stop_child(h->daemon_pid, 5000 * h->slow);
                h->daemon_pid = 0;
                signal_daemon_pid = 0;
        }
        if (h->bus_pid) {
                bench_stop_child(h->bus_pid, 5000);
                h->bus_pid = 0;
                signal_bus_pid = 0;
        }
        signal_rm_argv[2] = NULL;
        if (h->dir)
                nftw(h->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        g_clear_pointer(&h->daemon_log, g_free);
        g_clear_pointer(&h->sim_dir, g_free);
        g_clear_pointer(&h->dir, g_free);
}

void bench_die(BenchHost *h, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "%s: ", h->prog);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        bench_host_cleanup(h);
        exit(1);
}

static void die_errno(BenchHost *h, const char *what, int r)
{
        bench_die(h, "%s: %s", what, strerror(r < 0 ? -r : r));
}

/* The children die with the benchmark, whatever kills it. */
static void child_setup(gpointer data)
{
        (void)data;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void bench_start_bus(BenchHost *h, const char *conf)
{
        g_autofree char *addr = g_strdup_printf("unix:path=%s/bus", h->dir);
        g_autofree char *sock = g_strdup_printf("%s/bus", h->dir);
        g_autofree char *conf_copy = g_build_filename(h->dir, "bus.conf", NULL);
        g_autofree char *conf_arg = g_strdup_printf("--config-file=%s", conf_copy);
        const char *argv[] = {"dbus-daemon", conf_arg, "--nofork", "--nopidfile", NULL};
        g_autofree char *template = NULL;
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) parts = NULL;
        g_autofree char *text = NULL;

        /* The template names its socket @LISTEN@; dbus-daemon insists on a <listen> element. */
        if (!g_file_get_contents(conf, &template, NULL, &error))
                bench_die(h, "%s", error->message);
        parts = g_strsplit(template, "@LISTEN@", -1);
        text = g_strjoinv(addr, parts);
        if (!g_file_set_contents(conf_copy, text, -1, &error))
                bench_die(h, "%s", error->message);

        if (!g_spawn_async(NULL, (char **)argv, NULL,
                           G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, child_setup, NULL,
                           &h->bus_pid, &error))
                bench_die(h, "cannot start dbus-daemon: %s", error->message);
        signal_bus_pid = h->bus_pid;
        g_setenv("DBUS_SYSTEM_BUS_ADDRESS", addr, TRUE);
        for (int i = 0; i < 500; i++) {
                if (g_file_test(sock, G_FILE_TEST_EXISTS))
                        return;
                g_usleep(10000);
        }
        die_errno(h, "dbus-daemon did not create its socket", ETIMEDOUT);
}

/* $MIGD_WRAPPER's words, then MIGD and its arguments. */
static GPtrArray *daemon_argv(BenchHost *h, const char *migd, const char *const *extra_args,
                              unsigned flags)
{
        GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
        const char *wrapper = getenv("MIGD_WRAPPER");

        if ((flags & BENCH_DAEMON_WRAPPER) && wrapper && *wrapper) {
                g_auto(GStrv) words = NULL;
                g_autoptr(GError) error = NULL;

                if (!g_shell_parse_argv(wrapper, NULL, &words, &error))
                        bench_die(h, "MIGD_WRAPPER: %s", error->message);
                for (char **w = words; *w; w++)
                        g_ptr_array_add(argv, g_strdup(*w));
        }
        g_ptr_array_add(argv, g_strdup(migd));
        g_ptr_array_add(argv, g_strdup("--backend=sim"));
        g_ptr_array_add(argv, g_strdup_printf("--sim-dir=%s", h->sim_dir));
        g_ptr_array_add(argv, g_strdup("--log-level=warning"));
        /* Hermetic: never the host's crash journal (/var/lib/vfio-migd) nor its libvirt. */
        g_ptr_array_add(argv, g_strdup_printf("--state-dir=%s/state", h->dir));
        g_ptr_array_add(argv, g_strdup("--libvirt-uri=none"));
        for (const char *const *a = extra_args; a && *a; a++)
                g_ptr_array_add(argv, g_strdup(*a));
        g_ptr_array_add(argv, NULL);
        return argv;
}

void bench_start_daemon(BenchHost *h, const char *migd, const char *const *extra_args,
                        unsigned flags)
{
        g_autoptr(GPtrArray) argv = daemon_argv(h, migd, extra_args, flags);
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int log_fd = -1;
        int r;

        if (flags & BENCH_DAEMON_LOG) {
                h->daemon_log = g_build_filename(h->dir, "daemon.stderr", NULL);
                log_fd = open(h->daemon_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                if (log_fd < 0)
                        die_errno(h, h->daemon_log, errno);
        }
        /* SEARCH_PATH finds a wrapper (valgrind); MIGD itself is a path. */
        if (!g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL,
                                    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, child_setup,
                                    NULL, &h->daemon_pid, -1, -1, log_fd, &error))
                bench_die(h, "cannot start %s: %s", migd, error->message);
        signal_daemon_pid = h->daemon_pid;
        r = sd_bus_open_system(&h->bus);
        if (r < 0)
                die_errno(h, "connect to the private bus", r);
        for (unsigned i = 0; i < 1000 * h->slow; i++) {
                if (sd_bus_get_name_creds(h->bus, BENCH_BUS_NAME, 0, NULL) >= 0)
                        return;
                if (waitpid(h->daemon_pid, NULL, WNOHANG) == h->daemon_pid) {
                        g_spawn_close_pid(h->daemon_pid);
                        h->daemon_pid = signal_daemon_pid = 0;
                        bench_die(h, "vfio-migd exited before it took its bus name%s%s",
                                  h->daemon_log ? "; its stderr: " : "",
                                  h->daemon_log ? h->daemon_log : "");
                }
                g_usleep(10000);
        }
        die_errno(h, "vfio-migd did not take its bus name", ETIMEDOUT);
}

int bench_stop_child(GPid pid, unsigned timeout_ms)
{
        int status = 0;

        kill(pid, SIGTERM);
        for (unsigned waited = 0;; waited += 10) {
                pid_t p = waitpid(pid, &status, WNOHANG);

                if (p == pid || (p < 0 && errno != EINTR))
                        break;
                if (waited >= timeout_ms) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        g_spawn_close_pid(pid);
                        return -ETIMEDOUT;
                }
                g_usleep(10000);
        }
        g_spawn_close_pid(pid);
        return status;
}

void bench_create_device(BenchHost *h, const SimSpec *spec)
{
        g_autoptr(GError) error = NULL;

        if (sim_device_create(h->sim_dir, spec, &error) < 0)
                bench_die(h, "%s", error->message);
}

void bench_register_vm(BenchHost *h, const char *vm, const char *const *devices, size_t n,
                       const char *strategy)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(h->bus, &m, BENCH_BUS_NAME, BENCH_ROOT, BENCH_MANAGER,
                                           "RegisterVM");
        if (r < 0)
                die_errno(h, "new RegisterVM", r);
        sd_bus_message_append(m, "s", vm);
        sd_bus_message_open_container(m, 'a', "s");
        for (size_t i = 0; i < n; i++)
                sd_bus_message_append(m, "s", devices[i]);
        sd_bus_message_close_container(m);
        if (strategy)
                r = sd_bus_message_append(m, "a{sv}", 1, "strategy", "s", strategy);
        else
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                die_errno(h, "append RegisterVM", r);
        r = sd_bus_call(h->bus, m, 0, &error, &reply);
        if (r < 0)
                bench_die(h, "RegisterVM %s: %s", vm, error.message);
}
