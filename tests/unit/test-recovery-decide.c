/* test-recovery-decide: what a restart does with each interrupted sequence, one row per case */
#include <glib.h>
#include <string.h>

#include "core/recovery-decide.h"

/*
 * Each row: the policy's after-crash, the interrupted op, the last phase begun (an index into
 * the op's phases below), whether the sequencer was rolling back, the two devices' real
 * states; then what recovery_decide() answers: act or not, the op it runs, the action and a
 * phrase its reason contains.
 */
typedef struct DecideCase {
        const char *test;
        enum policy_after_crash policy;
        enum plan_op op;
        int64_t phase_index;
        bool rollback;
        enum mig_state states[2];
        bool act;
        enum plan_op run;
        const char *action;
        const char *reason; /* a phrase of the reason */
} DecideCase;

#define R  MIG_STATE_RUNNING
#define P2 MIG_STATE_RUNNING_P2P
#define ST MIG_STATE_STOP
#define SC MIG_STATE_STOP_COPY
#define RS MIG_STATE_RESUMING
#define ER MIG_STATE_ERROR
#define PC MIG_STATE_PRE_COPY
#define RB POLICY_AFTER_CRASH_ROLLBACK
#define FI POLICY_AFTER_CRASH_FINISH
#define NO PLAN_OP_COUNT

/* clang-format off: one row per case reads better than one field per line */
static const DecideCase cases[] = {
    /* rollback */
    {"rollback/quiesce-half-stopped-aborts", RB, PLAN_OP_QUIESCE, 1, false, {ST, P2}, true,
     PLAN_OP_ABORT, "rollback", "every device goes back to RUNNING"},
    {"rollback/nothing-moved-needs-nothing", RB, PLAN_OP_QUIESCE, 0, false, {R, R}, false, NO,
     "none", "nothing to roll back"},
    {"rollback/save-in-stop-copy-aborts", RB, PLAN_OP_SAVE, 3, false, {SC, SC}, true,
     PLAN_OP_ABORT, "rollback", "RUNNING by the kernel's paths"},
    {"rollback/precopy-aborts", RB, PLAN_OP_PRECOPY, 0, false, {PC, R}, true, PLAN_OP_ABORT,
     "rollback", "RUNNING"},
    {"rollback/resume-resets-and-loses-the-state", RB, PLAN_OP_RESUME, 1, false, {RS, RS}, true,
     PLAN_OP_RESET, "rollback", "resetting every device"},
    {"rollback/resume-that-ran-needs-nothing", RB, PLAN_OP_RESUME, 4, false, {R, R}, false, NO,
     "none", "RUNNING already"},
    /* finish */
    {"finish/quiesce-runs-to-its-end", FI, PLAN_OP_QUIESCE, 1, false, {ST, P2}, true,
     PLAN_OP_QUIESCE, "finish", "quiesce to the end"},
    {"finish/quiesce-that-completed-needs-nothing", FI, PLAN_OP_QUIESCE, 1, false, {ST, ST},
     false, NO, "none", "every device is in STOP"},
    {"finish/quiesce-with-a-device-in-error-rolls-back", FI, PLAN_OP_QUIESCE, 1, false, {ER, P2},
     true, PLAN_OP_ABORT, "rollback", "in ERROR or RESUMING"},
    {"finish/precopy-whose-session-died-rolls-back", FI, PLAN_OP_PRECOPY, 0, false, {PC, R},
     true, PLAN_OP_ABORT, "rollback", "data session died"},
    {"finish/quiesce-in-stop-copy-rolls-back", FI, PLAN_OP_QUIESCE, 1, false, {SC, P2}, true,
     PLAN_OP_ABORT, "rollback", "pre-copy data cannot be saved"},
    {"finish/save-rolls-back-without-its-stream", FI, PLAN_OP_SAVE, 3, false, {SC, SC}, true,
     PLAN_OP_ABORT, "rollback", "without its data stream"},
    {"finish/start-runs-to-its-end", FI, PLAN_OP_START, 0, false, {P2, ST}, true, PLAN_OP_START,
     "finish", "start to the end"},
    {"finish/start-that-completed-needs-nothing", FI, PLAN_OP_START, 1, false, {R, R}, false, NO,
     "none", "the sequence had completed"},
    {"finish/abort-runs-to-its-end", FI, PLAN_OP_ABORT, 0, false, {P2, ST}, true, PLAN_OP_ABORT,
     "finish", "abort to the end"},
    {"finish/resume-before-validate-resets", FI, PLAN_OP_RESUME, 1, false, {RS, RS}, true,
     PLAN_OP_RESET, "rollback", "before every device validated"},
    {"finish/resume-after-validate-starts", FI, PLAN_OP_RESUME, 3, false, {ST, P2}, true,
     PLAN_OP_START, "finish", "start to the end"},
    {"finish/resume-after-validate-while-rolling-back-resets", FI, PLAN_OP_RESUME, 3, true,
     {ST, P2}, true, PLAN_OP_RESET, "rollback", "resetting every device"},
    {"finish/resume-after-validate-with-a-device-in-error-resets", FI, PLAN_OP_RESUME, 3, false,
     {ER, P2}, true, PLAN_OP_RESET, "rollback", "resetting every device"},
    {"finish/reset-is-not-finished-but-rolled-back", FI, PLAN_OP_RESET, 0, false, {RS, R}, true,
     PLAN_OP_ABORT, "rollback", "a reset is not finished"},
};
/* clang-format on */

static void test_decide(gconstpointer data)
{
        const DecideCase *c = data;
        char *quiesce[] = {"p2p", "stop", NULL};
        char *save[] = {"p2p", "stop", "stop-copy", "save", "stopped", NULL};
        char *resume[] = {"resuming", "load", "validate", "p2p", "run", NULL};
        RecoveryInterrupted seq = {
            .op = c->op,
            .phases = c->op == PLAN_OP_RESUME ? resume
                      : c->op == PLAN_OP_SAVE ? save
                                              : quiesce,
            .phase_index = c->phase_index,
            .rollback = c->rollback,
        };
        g_autofree char *reason = NULL;
        const char *action = NULL;
        enum plan_op op = NO;
        bool act;

        act = recovery_decide(c->policy, &seq, c->states, G_N_ELEMENTS(c->states), &op, &action,
                              &reason);
        g_assert_cmpint(act, ==, c->act);
        g_assert_cmpstr(action, ==, c->action);
        g_assert_nonnull(reason);
        if (!strstr(reason, c->reason))
                g_error("reason \"%s\" lacks \"%s\"", reason, c->reason);
        if (act)
                g_assert_cmpstr(plan_op_to_string(op), ==, plan_op_to_string(c->run));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *path = g_strdup_printf("/recovery-decide/%s", cases[i].test);
                g_test_add_data_func(path, &cases[i], test_decide);
        }
        return g_test_run();
}
