/* migctl-verbs: the subcommands of vfio-migctl, one function each */
#pragma once

/*
 * Each takes the arguments after the subcommand's name (already counted by the caller)
 * and returns a MIGCTL_EXIT_* code, having printed the result or the error itself.
 * Reading (migctl-read.c, check in migctl-policy.c) is open to everyone; changing
 * (migctl-change.c, policy reload) needs root or the daemon's operator group.
 */

#include <stdbool.h>
#include <stdint.h>

#include "migctl-bus.h"

/* RegisterVM's options a{sv}: only those given are sent, the daemon has the defaults. */
typedef struct RegisterOptions {
        const char *strategy;
        const char *p2p_mode;
        bool has_deadline, has_parallelism;
        uint32_t phase_deadline_ms;
        uint32_t parallelism;
} RegisterOptions;

int verb_status(Ctl *c, int argc, char **argv);
int verb_list_vms(Ctl *c, int argc, char **argv);
int verb_list_devices(Ctl *c, int argc, char **argv);
int verb_show(Ctl *c, int argc, char **argv);        /* VM */
int verb_show_device(Ctl *c, int argc, char **argv); /* DEVICE */
int verb_last(Ctl *c, int argc, char **argv);        /* VM */
int verb_monitor(Ctl *c, int argc, char **argv);
int verb_check(Ctl *c, int argc, char **argv); /* VM: 0 allowed, MIGCTL_EXIT_REFUSED not */
int verb_policy_validate(Ctl *c, int argc, char **argv); /* FILE...: local, c->bus is NULL */

int verb_register(Ctl *c, int argc, char **argv, const RegisterOptions *options); /* VM DEV... */
/* The options a{sv} of RegisterVM and RegisterVMFromXML, appended to m. */
int append_options(sd_bus_message *m, const RegisterOptions *reg);
/* migctl-libvirt.c */
int verb_register_xml(Ctl *c, int argc, char **argv, const RegisterOptions *options); /* FILE|- */
int verb_check_incoming(Ctl *c, int argc, char **argv); /* FILE|-: 0 allowed, REFUSED not */
int verb_libvirt_domains(Ctl *c, int argc, char **argv);
int verb_unregister(Ctl *c, int argc, char **argv);                               /* VM */
int verb_rescan(Ctl *c, int argc, char **argv);
int verb_attach_fd(Ctl *c, int argc, char **argv); /* DEVICE PATH|fd:N */
int verb_precopy(Ctl *c, int argc, char **argv); /* VM */
int verb_quiesce(Ctl *c, int argc, char **argv); /* VM */
int verb_save(Ctl *c, int argc, char **argv);    /* VM FILE|- */
int verb_resume(Ctl *c, int argc, char **argv);  /* VM FILE|- */
int verb_start(Ctl *c, int argc, char **argv);   /* VM */
int verb_abort(Ctl *c, int argc, char **argv);   /* VM */
int verb_policy_reload(Ctl *c, int argc, char **argv);
int verb_policy_show(Ctl *c, int argc, char **argv);
/* migctl-hook.c: the libvirt qemu hook (docs/libvirt.md); connects itself, c->bus is NULL */
int verb_libvirt_hook(Ctl *c, int argc, char **argv); /* DOMAIN OPERATION SUBOP EXTRA */
