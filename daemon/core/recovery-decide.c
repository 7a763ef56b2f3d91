/* recovery-decide: what a restart does with a VM whose sequence a crash interrupted */
#include "core/recovery-decide.h"

#include <glib.h>
#include <string.h>

static bool all_in(const enum mig_state *states, size_t n, enum mig_state s)
{
        for (size_t i = 0; i < n; i++)
                if (states[i] != s)
                        return false;
        return true;
}

static bool any_in(const enum mig_state *states, size_t n, enum mig_state a, enum mig_state b)
{
        for (size_t i = 0; i < n; i++)
                if (states[i] == a || states[i] == b)
                        return true;
        return false;
}

/* A Resume whose devices had all validated the stream (a phase after "validate" began). */
static bool resume_past_validate(const RecoveryInterrupted *seq)
{
        for (int64_t i = 0; seq->phases && seq->phases[i]; i++)
                if (strcmp(seq->phases[i], "validate") == 0)
                        return !seq->rollback && seq->phase_index > i;
        return false;
}

/* The finishing operation of op, or PLAN_OP_COUNT when op cannot be finished from here. */
static enum plan_op finish_op(const RecoveryInterrupted *seq, const enum mig_state *states,
                              size_t n, const char **why)
{
        bool broken = any_in(states, n, MIG_STATE_ERROR, MIG_STATE_RESUMING);

        switch (seq->op) {
        case PLAN_OP_QUIESCE:
        case PLAN_OP_PRECOPY:
                if (broken) {
                        *why = "a device is in ERROR or RESUMING, so the sequence cannot be "
                               "finished";
                        return PLAN_OP_COUNT;
                }
                if (any_in(states, n, MIG_STATE_PRE_COPY, MIG_STATE_PRE_COPY_P2P) ||
                    any_in(states, n, MIG_STATE_STOP_COPY, MIG_STATE_STOP_COPY)) {
                        *why = "a device's data session died with the daemon, so its pre-copy "
                               "data cannot be saved";
                        return PLAN_OP_COUNT;
                }
                return seq->op;
        case PLAN_OP_START:
        case PLAN_OP_ABORT:
                return seq->op;
        case PLAN_OP_RESUME:
                if (!broken && resume_past_validate(seq))
                        return PLAN_OP_START;
                *why = "a Resume cannot be finished before every device validated the stream, "
                       "and the stream died with the daemon";
                return PLAN_OP_COUNT;
        case PLAN_OP_SAVE:
                *why = "a Save cannot be finished without its data stream, which died with the "
                       "daemon";
                return PLAN_OP_COUNT;
        default:
                *why = "a reset is not finished but repeated as a rollback";
                return PLAN_OP_COUNT;
        }
}

bool recovery_decide(enum policy_after_crash policy, const RecoveryInterrupted *seq,
                     const enum mig_state *states, size_t n, enum plan_op *ret_op,
                     const char **ret_action, char **ret_reason)
{
        const char *why = NULL;
        enum plan_op op;

        if (policy == POLICY_AFTER_CRASH_FINISH) {
                op = finish_op(seq, states, n, &why);
                if (op == PLAN_OP_QUIESCE && all_in(states, n, MIG_STATE_STOP)) {
                        *ret_action = "none";
                        *ret_reason = g_strdup("every device is in STOP: the quiesce had "
                                               "completed.");
                        return false;
                }
                if ((op == PLAN_OP_START || op == PLAN_OP_ABORT) &&
                    all_in(states, n, MIG_STATE_RUNNING)) {
                        *ret_action = "none";
                        *ret_reason = g_strdup("every device is RUNNING: the sequence had "
                                               "completed.");
                        return false;
                }
                if (op != PLAN_OP_COUNT) {
                        *ret_op = op;
                        *ret_action = "finish";
                        *ret_reason = g_strdup_printf("after-crash finish: %s to the end.",
                                                      plan_op_to_string(op));
                        return true;
                }
        }
        op = plan_op_rollback(seq->op);
        if (all_in(states, n, MIG_STATE_RUNNING)) {
                *ret_action = "none";
                *ret_reason = g_strdup("every device is RUNNING already: nothing to roll back.");
                return false;
        }
        *ret_op = op;
        *ret_action = "rollback";
        if (op == PLAN_OP_RESET)
                *ret_reason = g_strdup_printf("%s%sthe interrupted Resume is rolled back by "
                                              "resetting every device: the state it was loading "
                                              "is lost.",
                                              why ? why : "", why ? "; " : "");
        else
                *ret_reason = g_strdup_printf("%s%severy device goes back to RUNNING by the "
                                              "kernel's paths (a device in ERROR or RESUMING is "
                                              "reset and its state lost).",
                                              why ? why : "", why ? "; " : "");
        return true;
}
