/* daemon: the vfio-migd process: event loop, bus connection, registry, options */
#include "daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "bus/bus-device.h"
#include "bus/bus-errors.h"
#include "bus/bus-libvirt.h"
#include "bus/bus-manager.h"
#include "bus/bus-vm.h"
#include "daemon-hotplug.h"
#include "host/hotplug.h"
#include "devices/sim.h"
#include "devices/vfio-kernel.h"
#include "log.h"
#include "offload.h"
#include "policy-files.h"
#include "recovery.h"

static int daemon_open_backend(const DaemonOptions *o, Backend **ret, GError **error)
{
        if (g_strcmp0(o->backend, "sim") == 0)
                return sim_backend_new(o->sim_dir, ret, error);
        if (g_strcmp0(o->backend, "kernel") == 0)
                return vfio_kernel_backend_new(o->sysfs_root, o->dev_root, ret, error);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EOPNOTSUPP),
                    "Backend '%s' is not available; use --backend=sim or --backend=kernel.",
                    o->backend);
        return -EOPNOTSUPP;
}

/*
 * The aborted sequences did not end in time (a stream nobody reads, a step that ignores
 * cancel and abort alike): exit anyway. Their journal records stay in flight, so the next
 * start recovers those VMs from records that explain their devices.
 */
static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        Daemon *d = userdata;
        g_autoptr(GPtrArray) vms = registry_vms(d->registry);

        for (guint i = 0; i < vms->len; i++) {
                enum plan_op op;

                if (vm_is_busy(vms->pdata[i], &op))
                        log_error("VM %s: its %s did not end within %" PRIu32 " ms of the stop; "
                                  "exiting without it. Its crash journal record stays, and the "
                                  "next start recovers the VM.",
                                  vm_name(vms->pdata[i]), plan_op_to_string(op),
                                  d->stop_timeout_ms);
        }
        d->abandon_sequences = true;
        (void)sd_event_exit(d->event, 0);
        return 0;
}

/* Every running sequence is aborted (it rolls back), none starts on its own any more. */
static void daemon_abort_sequences(Daemon *d)
{
        g_autoptr(GPtrArray) vms = registry_vms(d->registry);

        for (guint i = 0; i < vms->len; i++)
                vm_abort_for_shutdown(vms->pdata[i]);
}

static void daemon_begin_stop(Daemon *d, const char *why)
{
        int r;

        if (d->stopping) {
                log_notice("%s again: still waiting for the aborted sequences to roll back.", why);
                return;
        }
        d->stopping = true;
        /* The name stays until exit: whoever watches a running sequence by the bus name
         * keeps receiving its signals; new changes are refused with Busy meanwhile. */
        (void)sd_notify(0, "STOPPING=1");
        daemon_abort_sequences(d);
        if (!registry_busy(d->registry)) {
                log_info("%s: stopping.", why);
                (void)sd_event_exit(d->event, 0);
                return;
        }
        log_info("%s: aborting the running sequences; stopping once they rolled back (at most "
                 "%" PRIu32 " ms).",
                 why, d->stop_timeout_ms);
        (void)sd_notify(0, "STATUS=Stopping: rolling back the running sequences.");
        r = sd_event_add_time_relative(d->event, &d->stop_timer, CLOCK_MONOTONIC,
                                       (uint64_t)d->stop_timeout_ms * 1000u, 0, on_stop_timeout, d);
        if (r < 0)
                log_warning("Cannot bound the wait for the running sequences: %s", strerror(-r));
}

int daemon_reload_policy(Daemon *d, GError **error)
{
        g_autofree char *why = NULL;
        g_auto(GStrv) files = NULL;
        Policy *policy = NULL;
        int r;

        r = policy_files_load(d->policy_file, d->policy_dir, &policy, &files, &why);
        if (r < 0 && !d->policy_files) {
                /* At start-up there is no policy in force to keep. */
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "The policy is invalid: %s; vfio-migd does not start with it. Fix "
                            "the file (vfio-migctl policy validate FILE), or start with "
                            "--allow-default-policy to run with the built-in defaults.",
                            why);
                return r == -ENOENT ? -EIO : -EINVAL;
        }
        if (r < 0) {
                log_error("Policy not changed: %s", why);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "%s; the policy in force stays. Fix the file (vfio-migctl policy "
                            "validate FILE) and reload again.",
                            why);
                return r == -ENOENT ? -EIO : -EINVAL;
        }
        registry_set_policy(d->registry, policy);
        g_strfreev(d->policy_files);
        d->policy_files = g_steal_pointer(&files);
        if (!d->policy_files[0])
                log_info("Policy: no policy files (%s, %s/*.json); built-in defaults apply.",
                         d->policy_file, d->policy_dir);
        for (char **f = d->policy_files; *f; f++)
                log_info("Policy: %s in force.", *f);
        /* ReloadPolicy and SIGHUP alike: every VM's settings and verdict may have changed. */
        if (d->bus) {
                (void)sd_bus_emit_properties_changed(d->bus, BUS_PATH_ROOT, BUS_IFACE_MANAGER,
                                                     "PolicyFiles", NULL);
                bus_vm_emit_policy_changed(d);
        }
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        g_autoptr(GError) error = NULL;

        log_info("SIGHUP: reloading the policy.");
        (void)daemon_reload_policy(userdata, &error);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        daemon_begin_stop(userdata, si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        return 0;
}

void daemon_sequence_finished(Daemon *d)
{
        if (d->stopping && !registry_busy(d->registry)) {
                log_info("Every sequence finished: stopping.");
                (void)sd_event_exit(d->event, 0);
        }
}

static int daemon_setup_event(Daemon *d, GError **error)
{
        sigset_t mask;
        int r;

        r = sd_event_default(&d->event);
        if (r < 0)
                goto fail;
        /* sd_event_add_signal() needs the signals blocked, or they kill us first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        r = -pthread_sigmask(SIG_BLOCK, &mask, NULL);
        if (r < 0)
                goto fail;
        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_signal, d);
        if (r < 0)
                goto fail;
        r = sd_event_add_signal(d->event, NULL, SIGINT, on_signal, d);
        if (r < 0)
                goto fail;
        r = sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d);
        if (r < 0)
                goto fail;
        /* Pings systemd from the loop when WatchdogSec= is set: a stuck loop gets restarted. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                goto fail;
        return 0;
fail:
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                    "Cannot set up the event loop: %s.", g_strerror(-r));
        return r;
}

/* sd-bus's own message when the connection is gone: leave the loop with a failure. */
static int on_bus_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error)
{
        Daemon *d = userdata;

        d->bus_lost = true;
        (void)sd_event_exit(d->event, EXIT_FAILURE);
        return 0;
}

static int daemon_setup_bus(Daemon *d, GError **error)
{
        int r;

        r = bus_errors_register();
        if (r < 0)
                goto fail;
        /* Honours DBUS_SYSTEM_BUS_ADDRESS, which is how the tests bring their own bus. */
        r = sd_bus_open_system(&d->bus);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot connect to the system bus: %s.", g_strerror(-r));
                return r;
        }
        (void)sd_bus_set_description(d->bus, "vfio-migd");
        r = sd_bus_attach_event(d->bus, d->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;
        /* Without the bus there is nobody to serve: leave the loop (systemd restarts us). */
        r = sd_bus_set_exit_on_disconnect(d->bus, true);
        if (r < 0)
                goto fail;
        r = sd_bus_match_signal(d->bus, NULL, "org.freedesktop.DBus.Local",
                                "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                "Disconnected", on_bus_disconnected, d);
        if (r < 0)
                goto fail;

        r = bus_manager_register(d);
        if (r < 0)
                goto fail;
        r = bus_vm_register(d);
        if (r < 0)
                goto fail;
        r = bus_device_register(d);
        if (r < 0)
                goto fail;
        /* The journal's VMs are back before anything else registers one (recovery.h). */
        r = recovery_restore(d, d->state_dir, error);
        if (r < 0)
                return r;
        /* Running domains are VMs before the name is there; libvirt being away is no error. */
        r = bus_libvirt_start(d);
        if (r < 0)
                goto fail;

        /* Last: a caller woken by the name finds every object already there. */
        r = sd_bus_request_name(d->bus, BUS_NAME, 0);
        if (r == -EEXIST) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EEXIST),
                            "Another process owns %s on this bus; stop it first.", BUS_NAME);
                return r;
        }
        if (r == -EACCES || r == -EPERM) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EPERM),
                            "The bus policy does not let this user own %s; install "
                            "org.vfiomig.Coordinator1.conf into the bus's system.d directory or "
                            "run as root.",
                            BUS_NAME);
                return r;
        }
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot acquire the bus name %s: %s.", BUS_NAME, g_strerror(-r));
                return r;
        }
        return 0;
fail:
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                    "Cannot publish the D-Bus objects: %s.", g_strerror(-r));
        return r;
}

static void slot_unref(gpointer slot)
{
        sd_bus_slot_unref(slot);
}

int daemon_new(const DaemonOptions *options, Daemon **ret, GError **error)
{
        g_autoptr(Daemon) d = g_new0(Daemon, 1);
        Backend *backend = NULL;
        int r;

        d->slots = g_ptr_array_new_with_free_func(slot_unref);
        r = bus_auth_init(&d->auth, options->operator_group);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Operator group '%s' %s; create it (groupadd %s) or name an "
                            "existing group in --operator-group.",
                            options->operator_group,
                            r == -ENOENT ? "does not exist" : g_strerror(-r),
                            options->operator_group);
                return r;
        }
        r = daemon_setup_event(d, error);
        if (r < 0)
                return r;
        /* Two threads: the machine's cores, and a flood of 16 MiB XMLs queues behind them. */
        r = offload_new(d->event, 2, &d->offload);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot start the worker threads: %s.", g_strerror(-r));
                return r;
        }

        r = daemon_open_backend(options, &backend, error);
        if (r < 0)
                return r;
        r = registry_new(backend, d->event, &options->vm_defaults, &d->registry);
        if (r < 0) {
                backend_free(backend);
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot set up the registry: %s.", g_strerror(-r));
                return r;
        }
        manager_init(&d->manager, d->registry, d);
        r = registry_rescan(d->registry, error);
        if (r < 0)
                return r;
        log_info("Backend %s: %d devices.", registry_backend_name(d->registry), r);

        d->policy_file = g_strdup(options->policy_file ? options->policy_file : POLICY_MAIN_DEFAULT);
        d->policy_dir = g_strdup(options->policy_dir ? options->policy_dir : POLICY_DROPIN_DEFAULT);
        r = daemon_reload_policy(d, error);
        if (r < 0 && !options->allow_default_policy)
                return r;
        if (r < 0) {
                log_warning("Running with the built-in default policy (--allow-default-policy).");
                g_clear_error(error);
                d->policy_files = g_new0(char *, 1);
        }

        d->libvirt_uri = g_strdup(options->libvirt_uri);
        d->state_dir = g_strdup(options->state_dir);
        d->stop_timeout_ms = options->stop_timeout_ms ? options->stop_timeout_ms
                                                      : DAEMON_STOP_TIMEOUT_DEFAULT_MS;
        r = daemon_setup_bus(d, error);
        if (r < 0)
                return r;
        /* Once the name is owned, so whoever watches it sees the recovery's signals. */
        recovery_start(d);
        /* Not fatal: without a watch, Rescan still compares the groups. */
        (void)daemon_watch_hotplug(d, options);

        *ret = g_steal_pointer(&d);
        return 0;
}

int daemon_run(Daemon *d)
{
        int r;

        (void)sd_notifyf(0, "READY=1\nSTATUS=Serving %s with %zu devices.", BUS_NAME,
                         registry_n_devices(d->registry));
        log_info("Ready: %s on the system bus.", BUS_NAME);
        r = sd_event_loop(d->event);
        if (r < 0) {
                log_error("The event loop failed: %s", strerror(-r));
                return r;
        }
        /* Nobody can reach us or get a reply any more. */
        if (d->bus_lost) {
                log_error("Lost the system bus: exiting with failure now, without waiting for "
                          "running sequences (%s); the crash journal in %s leaves their VMs to "
                          "the recovery of the next start.",
                          registry_busy(d->registry) ? "some run" : "none runs",
                          d->state_dir ? d->state_dir : "the state directory");
                return -ENOTCONN;
        }
        return 0;
}

void daemon_free(Daemon *d)
{
        if (!d)
                return;
        /* Calls whose parsing is still off the loop get their answers while all is there. */
        offload_free(d->offload);
        /* libvirt first: no event may register a VM while the registry goes away. */
        bus_libvirt_stop(d);
        hotplug_watch_free(d->hotplug);
        sd_event_source_disable_unref(d->stop_timer);
        /* The registry first: a sequence still running finishes and replies on the bus.
         * Past the stop timeout a sequence may never end: the process exits without it. */
        if (!d->abandon_sequences)
                registry_free(d->registry);
        /* After the registry: its last sequences still write the journal. */
        recovery_free(d->recovery);
        g_free(d->state_dir);
        if (d->slots)
                g_ptr_array_free(d->slots, true);
        sd_bus_flush_close_unref(d->bus);
        sd_event_unref(d->event);
        bus_auth_clear(&d->auth);
        g_free(d->policy_file);
        g_free(d->policy_dir);
        g_strfreev(d->policy_files);
        g_free(d->libvirt_uri);
        g_free(d);
}
