/* recovery-decide: what a restart does with a VM whose sequence a crash interrupted */
#pragma once

/*
 * Pure logic, no I/O, no globals: recovery.c reads the journal and the devices' real states,
 * asks recovery_decide() and runs the operation it names as an ordinary sequence.
 *
 * after-crash rollback: the rollback of the interrupted op (plan_op_rollback(): Abort, or
 * Reset for a destination's Resume), unless every device is RUNNING already.
 * after-crash finish: Quiesce, PreCopy, Start and Abort run to their end, a Resume past its
 * validate phase is started; what cannot be finished (a device in ERROR or RESUMING, a
 * data session that died with the daemon, a Save, a Resume before validate) is rolled back,
 * and the reason says why. A sequence that had in fact completed (every device in STOP after
 * a Quiesce, every device RUNNING after a Start or Abort) needs nothing.
 *
 * Errors: none; the result is the decision.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mig-state.h"
#include "core/plan.h"
#include "core/policy.h"

/* The interrupted sequence as the journal recorded it. */
typedef struct RecoveryInterrupted {
        enum plan_op op;
        char *const *phases; /* the plan's phase names, NULL-terminated; may be NULL */
        int64_t phase_index; /* the last phase begun; -1 before the first */
        bool rollback;       /* the sequencer had begun rolling back */
} RecoveryInterrupted;

/*
 * Returns true with *ret_op to run, false when nothing needs doing; *ret_action is
 * "rollback", "finish" or "none" (static), *ret_reason a sentence (owned by the caller).
 */
bool recovery_decide(enum policy_after_crash policy, const RecoveryInterrupted *seq,
                     const enum mig_state *states, size_t n, enum plan_op *ret_op,
                     const char **ret_action, char **ret_reason);
