/* migctl-change: the subcommands of vfio-migctl that change things: register, unregister,
 * rescan, attach-fd and the VM methods (precopy, quiesce, save, resume, start, abort) */
#include "migctl-verbs.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <signal.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migctl-json.h"
#include "migctl-print.h"
#include "util.h"
#include "vm.h"

int append_options(sd_bus_message *m, const RegisterOptions *reg)
{
        int r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && reg->strategy)
                r = sd_bus_message_append(m, "{sv}", "strategy", "s", reg->strategy);
        if (r >= 0 && reg->p2p_mode)
                r = sd_bus_message_append(m, "{sv}", "p2p-mode", "s", reg->p2p_mode);
        if (r >= 0 && reg->has_deadline)
                r = sd_bus_message_append(m, "{sv}", "phase-deadline-ms", "u",
                                          reg->phase_deadline_ms);
        if (r >= 0 && reg->has_parallelism)
                r = sd_bus_message_append(m, "{sv}", "parallelism", "u", reg->parallelism);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

int verb_register(Ctl *c, int argc, char **argv, const RegisterOptions *reg)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("register VM '%s'", shown);
        const char *path = NULL;
        int r;

        r = sd_bus_message_new_method_call(c->bus, &m, MIGD_BUS_NAME, MIGD_ROOT_PATH,
                                           MIGD_MANAGER_IFACE, "RegisterVM");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv + 1);
        if (r >= 0)
                r = append_options(m, reg);
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 0, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                goto out;
        }
        if (c->json) {
                json_t *j = json_pack("{s:s,s:s}", "name", argv[0], "path", path);
                json_print(c->out, j);
                json_decref(j);
        } else {
                fprintf(c->out, "registered VM %s with %d device%s at %s\n", argv[0], argc - 1,
                        argc == 2 ? "" : "s", path);
        }
        r = MIGCTL_EXIT_OK;
out:
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        sd_bus_message_unref(m);
        return r;
}

int verb_unregister(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("unregister VM '%s'", shown);
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   "UnregisterVM", &error, NULL, "s", argv[0]);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json) {
                json_t *j = json_pack("{s:s}", "name", argv[0]);
                json_print(c->out, j);
                json_decref(j);
        } else {
                fprintf(c->out, "unregistered VM %s\n", argv[0]);
        }
        return MIGCTL_EXIT_OK;
}

int verb_rescan(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint32_t n = 0;
        int r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                                   "Rescan", &error, &reply, "");
        if (r >= 0)
                r = sd_bus_message_read(reply, "u", &n);
        sd_bus_message_unref(reply);
        if (r < 0) {
                r = ctl_fail(c, "rescan", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json) {
                json_t *j = json_pack("{s:i}", "devices", (int)n);
                json_print(c->out, j);
                json_decref(j);
        } else {
                fprintf(c->out, "vfio-migd knows %u device%s\n", n, n == 1 ? "" : "s");
        }
        return MIGCTL_EXIT_OK;
}

static int check_fd_passing(Ctl *c);

/* An fd the caller inherited ("fd:N"), else PATH opened read-write: a copy for the call. */
static int attach_fd_open(const char *arg, int *ret)
{
        char *end;
        long n;

        if (g_str_has_prefix(arg, "fd:")) {
                errno = 0;
                n = strtol(arg + 3, &end, 10);
                if (errno || end == arg + 3 || *end || n < 0 || n > INT_MAX)
                        return -EINVAL;
                *ret = fcntl((int)n, F_DUPFD_CLOEXEC, 3);
        } else {
                *ret = open(arg, O_RDWR | O_CLOEXEC | O_NOCTTY);
        }
        return *ret < 0 ? -errno : 0;
}

int verb_attach_fd(Ctl *c, int argc, char **argv)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autofree char *shown = vm_name_shown(argv[0]);
        g_autofree char *what = g_strdup_printf("hand over the device fd of '%s'", shown);
        _cleanup_close_ int fd = -1;
        int r;

        if ((r = check_fd_passing(c)) != MIGCTL_EXIT_OK)
                return r;
        r = attach_fd_open(argv[1], &fd);
        if (r == -EINVAL && g_str_has_prefix(argv[1], "fd:")) {
                fprintf(stderr, "vfio-migctl: '%s' is not fd:N with N a file descriptor number\n",
                        argv[1]);
                return MIGCTL_EXIT_USAGE;
        }
        if (r < 0)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, r, "cannot open '%s'", argv[1]);
        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, MIGD_ROOT_PATH, MIGD_MANAGER_IFACE,
                               "AttachDeviceFd", &error, NULL, "sh", argv[0], fd);
        if (r < 0) {
                r = ctl_fail(c, what, &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        if (c->json) {
                json_t *j = json_pack("{s:s}", "device", argv[0]);
                json_print(c->out, j);
                json_decref(j);
        } else {
                fprintf(c->out, "handed the device fd of %s over to vfio-migd\n", argv[0]);
        }
        return MIGCTL_EXIT_OK;
}

/*
 * A VM method: the report on success; on failure the error, then the failed attempt's
 * report from LastSequence when the sequence ran and was rolled back.
 */
static int run_sequence(Ctl *c, const char *vm, const char *method, int fd)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        json_auto_t *report = NULL;
        g_autofree char *path = NULL;
        g_autofree char *lower = g_ascii_strdown(method, -1);
        g_autofree char *shown = vm_name_shown(vm);
        g_autofree char *what = g_strdup_printf("%s VM '%s'", lower, shown);
        int r;

        r = ctl_vm_path(c, vm, &path, &error);
        if (r >= 0) {
                if (fd >= 0 && c->renamed_from)
                        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, path, MIGD_VM_IFACE,
                                               "ResumeWithOptions", &error, &reply, "ha{sv}", fd, 1,
                                               "renamed-from", "s", c->renamed_from);
                else if (fd >= 0)
                        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, path, MIGD_VM_IFACE, method,
                                               &error, &reply, "h", fd);
                else
                        r = sd_bus_call_method(c->bus, MIGD_BUS_NAME, path, MIGD_VM_IFACE, method,
                                               &error, &reply, "");
        }
        if (r >= 0)
                r = json_from_bus_value(reply, &report);
        reply = sd_bus_message_unref(reply);
        if (r >= 0) {
                if (c->json)
                        json_print(c->out, report);
                else
                        print_report(c->out, vm, report);
                return MIGCTL_EXIT_OK;
        }

        int code = ctl_exit_code(&error, r);
        bool ran = code == MIGCTL_EXIT_ROLLED_BACK;
        json_t *last = NULL;
        if (ran && path &&
            ctl_get_property(c, path, MIGD_VM_IFACE, "LastSequence", &last, NULL) < 0)
                last = NULL;
        if (c->json) {
                bool json = c->json;
                c->json = false; /* one JSON document: the error and the report together */
                ctl_fail(c, what, &error, r);
                c->json = json;
                json_t *j = json_pack("{s:{s:s?,s:s},s:i,s:O?}", "error", "name",
                                      sd_bus_error_is_set(&error) ? error.name : NULL, "message",
                                      error.message ? error.message : strerror(-r), "exit-code",
                                      code, "report", last);
                json_print(c->out, j);
                json_decref(j);
        } else {
                ctl_fail(c, what, &error, r);
                if (last)
                        print_report(c->out, vm, last);
        }
        json_decref(last);
        sd_bus_error_free(&error);
        return code;
}

static int sequence_verb(Ctl *c, int argc, char **argv, const char *method)
{
        return run_sequence(c, argv[0], method, -1);
}

int verb_precopy(Ctl *c, int argc, char **argv)
{
        return sequence_verb(c, argc, argv, "PreCopy");
}

int verb_quiesce(Ctl *c, int argc, char **argv)
{
        return sequence_verb(c, argc, argv, "Quiesce");
}

int verb_start(Ctl *c, int argc, char **argv)
{
        return sequence_verb(c, argc, argv, "Start");
}

int verb_abort(Ctl *c, int argc, char **argv)
{
        return sequence_verb(c, argc, argv, "Abort");
}

static int check_fd_passing(Ctl *c)
{
        if (sd_bus_can_send(c->bus, SD_BUS_TYPE_UNIX_FD) > 0)
                return MIGCTL_EXIT_OK;
        return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, 0,
                              "this bus connection cannot pass file descriptors (save and resume "
                              "need a unix socket)");
}

/* The VM must exist before any file is touched: a typo must not cost the operator a file. */
static int check_vm_exists(Ctl *c, const char *vm, const char *what)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autofree char *path = NULL;
        int r = ctl_vm_path(c, vm, &path, &error);

        if (r >= 0)
                return MIGCTL_EXIT_OK;
        r = ctl_fail(c, what, &error, r);
        sd_bus_error_free(&error);
        return r;
}

/*
 * save writes into a temporary file beside FILE (O_EXCL, 0600) and renames it over FILE only
 * when the Save succeeded, so FILE is either the new complete stream or what it was before.
 * A FILE that is not a regular file (a FIFO, a device) is written directly: there is nothing
 * to keep, and a pipe to a destination is the point.
 */
int verb_save(Ctl *c, int argc, char **argv)
{
        const char *file = argv[1];
        g_autofree char *what = g_strdup_printf("save VM '%s'", argv[0]);
        g_autofree char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        /* The daemon writes the stream; this process only holds fds, but it must not die
         * if the reader of its stdout goes away. */
        signal(SIGPIPE, SIG_IGN);
        if ((r = check_fd_passing(c)) != MIGCTL_EXIT_OK)
                return r;
        if ((r = check_vm_exists(c, argv[0], what)) != MIGCTL_EXIT_OK)
                return r;
        if (strcmp(file, "-") == 0) {
                if (isatty(STDOUT_FILENO)) {
                        fprintf(stderr, "vfio-migctl: refusing to write the binary migration "
                                        "stream to a terminal: redirect stdout or name a FILE\n");
                        return MIGCTL_EXIT_USAGE;
                }
                fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
                c->out = stderr; /* stdout carries the stream */
        } else if (stat(file, &st) == 0 && !S_ISREG(st.st_mode)) {
                fd = open(file, O_WRONLY | O_CLOEXEC);
        } else {
                g_autofree char *dir = g_path_get_dirname(file);
                g_autofree char *base = g_path_get_basename(file);

                tmp = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
                fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600);
        }
        if (fd < 0)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, -errno,
                                      "cannot %s '%s' for the migration stream",
                                      tmp ? "create a temporary file beside" : "open", file);
        r = run_sequence(c, argv[0], "Save", fd);
        if (!tmp)
                return r;
        if (r == MIGCTL_EXIT_OK && (fsync(fd) < 0 || rename(tmp, file) < 0)) {
                r = ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, -errno,
                                   "the stream is complete in '%s' but cannot replace '%s'", tmp,
                                   file);
                unlink(tmp);
                return r;
        }
        if (r != MIGCTL_EXIT_OK) {
                unlink(tmp);
                fprintf(stderr, "vfio-migctl: '%s' was left as it was\n", file);
        }
        return r;
}

int verb_resume(Ctl *c, int argc, char **argv)
{
        const char *file = argv[1];
        _cleanup_close_ int fd = -1;
        int r;

        signal(SIGPIPE, SIG_IGN);
        if ((r = check_fd_passing(c)) != MIGCTL_EXIT_OK)
                return r;
        if (strcmp(file, "-") == 0) {
                if (isatty(STDIN_FILENO)) {
                        fprintf(stderr, "vfio-migctl: refusing to read the migration stream "
                                        "from a terminal: redirect stdin or name a FILE\n");
                        return MIGCTL_EXIT_USAGE;
                }
                fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
        } else
                fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ctl_fail_errno(c, MIGCTL_EXIT_FAILURE, -errno,
                                      "cannot open '%s' to read the migration stream", file);
        return run_sequence(c, argv[0], "Resume", fd);
}
