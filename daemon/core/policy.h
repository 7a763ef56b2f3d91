/* policy: operator policy files, parsed and merged, and the migration decision for a VM */
#pragma once

/*
 * Pure logic: files come in as (name, text); loading them from /etc is policy-files.c.
 * A Policy is built from several files in order, later entries winning. Every error names
 * the file, line and column and says what would fix it; a policy with any error is rejected
 * whole, so the caller keeps the policy in force.
 *
 * Format (docs/policy.md is the reference, policy/schema.json the schema):
 *   { "defaults": { "mode": ..., "phase-deadline-ms": ..., "parallelism": ...,
 *                   "on-failure": ..., "strategy": ..., "max-device-state-bytes": ... },
 *     "vms":     [ { "match": "<glob on VM name>", <any default key>, "migratable": bool,
 *                    "reason": "..." } ],
 *     "devices": [ { "match": { "driver": "<glob>", "id": "vvvv:dddd", "address": "<glob>" },
 *                    "migratable": bool, "reason": "..." } ] }
 *
 * Errors: 0 or negative errno; parse errors are -EINVAL with *ret_error set to
 * "FILE:LINE:COLUMN: sentence".
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/plan.h"

enum policy_mode {
        POLICY_MODE_REQUIRE_P2P, /* several devices: every device must have P2P */
        POLICY_MODE_P2P_BLOCKED, /* operator asserts the IOMMU context has no P2P mappings */
        POLICY_MODE_SINGLE_ONLY, /* only VMs with one migratable device may migrate */
        POLICY_MODE_DENY,        /* never migrate */
};

enum policy_on_failure {
        POLICY_ON_FAILURE_ROLLBACK, /* bring every device back to where the VM was consistent */
        POLICY_ON_FAILURE_RESET,    /* reset every device (state discarded) */
};

/* What the daemon does on start with a sequence its crash interrupted (docs/policy.md). */
enum policy_after_crash {
        POLICY_AFTER_CRASH_ROLLBACK, /* back to where the VM was consistent before it began */
        POLICY_AFTER_CRASH_FINISH,   /* complete it when it can be completed, else roll back */
};

/* What the libvirt hook does when the daemon does not answer. */
enum policy_hook_unavailable {
        POLICY_HOOK_FAIL_OPEN,   /* let libvirt go on, logged */
        POLICY_HOOK_FAIL_CLOSED, /* refuse the operation */
};

/* What the libvirt hook does when a domain starts that could not migrate. */
enum policy_start_unmigratable {
        POLICY_START_ALLOW,  /* start it, logged with the blockers */
        POLICY_START_REFUSE, /* veto the start */
};

typedef struct PolicySettings {
        enum policy_mode mode;
        uint32_t phase_deadline_ms;
        uint32_t parallelism; /* 0: one worker per device */
        enum policy_on_failure on_failure;
        enum plan_strategy strategy;
        enum policy_after_crash after_crash;
        enum policy_hook_unavailable hook_daemon_unavailable;
        enum policy_start_unmigratable on_start_unmigratable;
        uint64_t max_device_state_bytes; /* a stream's device with more is refused */
} PolicySettings;

/* Large enough for real devices (GPUs hold GiBs), small enough to refuse a runaway stream. */
#define POLICY_MAX_DEVICE_STATE_DEFAULT (UINT64_C(32) << 30)
#define POLICY_MAX_DEVICE_STATE_MAX     (UINT64_C(1) << 40)

typedef struct Policy Policy;

/* The built-in defaults: require-p2p, 10000 ms, parallelism 0, rollback, parallel,
 * after-crash rollback, hook fail-open, start allowed, 32 GiB per device's state. */
Policy *policy_new_default(void);
/*
 * Parses the files in order into a new policy. names[i] is used in messages only.
 * -EINVAL with *ret_error ("FILE:LINE:COL: sentence") on the first error.
 */
int policy_parse(const char *const *names, const char *const *texts, size_t n, Policy **ret,
                 char **ret_error);
void policy_free(Policy *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Policy, policy_free)
size_t policy_n_files(const Policy *p);
const char *policy_file_name(const Policy *p, size_t i);

/* One device of a VM as the decision sees it. */
typedef struct PolicyDevice {
        const char *name;
        const char *address;     /* PCI address or mdev UUID; may equal name */
        const char *driver;
        uint16_t vendor_id, device_id;
        uint32_t flags;          /* MIG_FLAG_* */
        const char *iommu_group; /* NULL: unknown */
        /* Facts about the device's IOMMU group the registry knows, not the policy: */
        const char *group_claimed_by; /* another VM holding a device of the same group */
        const char *group_outside_member; /* a group member that is not in this VM */
} PolicyDevice;

typedef struct PolicyBlocker {
        char *id;       /* stable: "no-migration", "no-stop-copy", "no-p2p", "single-only",
                           "vm-denied", "mode-deny", "device-denied", "group-shared",
                           "partial-group" */
        char *device;   /* NULL when the blocker is about the VM */
        char *message;  /* a sentence naming the device and the rule */
} PolicyBlocker;

/* Where each setting of a decision came from: the policy entry that set it last
 * ("FILE: defaults", "FILE: vms[2]"), "VM registration" (the p2p override), or NULL: the
 * base the evaluation started from (the daemon's options or the built-in defaults). */
typedef struct PolicySources {
        const char *mode, *phase_deadline_ms, *parallelism, *on_failure, *strategy;
        const char *after_crash, *hook_daemon_unavailable, *on_start_unmigratable;
} PolicySources;

typedef struct PolicyDecision {
        bool allowed;
        PolicySettings settings;  /* what applies to this VM */
        PolicySources sources;    /* strings owned by the decision */
        char **source_labels;     /* owns the sources' strings */
        PolicyBlocker *blockers;
        size_t n_blockers;
        char **matched;           /* "FILE: vms[1] (match \"web-*\")", NULL-terminated */
} PolicyDecision;

/*
 * base: the settings before any file (NULL: the built-in defaults), e.g. the daemon's options.
 * p2p_override (NULL: none): the VM's registrant's own assertion about P2P mappings
 * (require-p2p or p2p-blocked); it replaces either of those after the files, but never
 * single-only or deny, and never lifts a denial.
 */
int policy_evaluate(const Policy *p, const PolicySettings *base,
                    const enum policy_mode *p2p_override, const char *vm,
                    const PolicyDevice *devices, size_t n, PolicyDecision **ret);
void policy_settings_default(PolicySettings *s);
void policy_decision_free(PolicyDecision *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PolicyDecision, policy_decision_free)

const char *policy_mode_to_string(enum policy_mode m);
int policy_mode_from_string(const char *s, enum policy_mode *ret);
const char *policy_on_failure_to_string(enum policy_on_failure f);
const char *policy_after_crash_to_string(enum policy_after_crash a);
const char *policy_hook_unavailable_to_string(enum policy_hook_unavailable h);
const char *policy_start_unmigratable_to_string(enum policy_start_unmigratable s);
/* The plan's P2P mode for a policy mode (single-only and deny never reach a plan). */
enum plan_p2p_mode policy_mode_to_plan(enum policy_mode m);
