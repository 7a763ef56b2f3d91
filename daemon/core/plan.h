/* plan: the phases a VM's devices pass through for one operation */
#pragma once

/*
 * Pure logic: from the devices' flags and current states, an operation and a strategy,
 * build the ordered phases the sequencer runs. No I/O, no globals.
 *
 * Source:      PRE_COPY (optional) -> "p2p" (every P2P device to RUNNING_P2P / PRE_COPY_P2P)
 *              -> "stop-no-p2p" (devices without P2P, p2p-blocked VMs only, to STOP)
 *              -> barrier -> "stop" (every device to STOP, or STOP_COPY when it is in a
 *              pre-copy session, keeping its data fd) -> "stop-copy" (open the save
 *              sessions) -> "save" stream -> "stopped" (STOP_COPY -> STOP).
 * Destination: "resuming" (every device to RESUMING) -> "load" stream -> "validate"
 *              (RESUMING -> STOP) -> "p2p" -> barrier -> "run" (RUNNING).
 * Abort:       "p2p" -> "run-no-p2p" -> "reset" (devices in ERROR or RESUMING) -> "run":
 *              a reset lands in RUNNING, so it waits until no kept state is stopped.
 *
 * Strategies (docs/architecture.md, "Strategies"):
 *   parallel  vfio-migd: the phases above, every device of a phase at once, so a phase
 *             costs the slowest device.
 *   qemu      QEMU >= 8.1's order, one device per phase ("p2p nic0", "stop nic0", ...): every
 *             P2P device to RUNNING_P2P / PRE_COPY_P2P in turn before any device stops, then
 *             each device to STOP / STOP_COPY; each to STOP_COPY and saved in turn, each back
 *             to STOP after all are saved; on start (and on the destination after the load)
 *             each P2P device to RUNNING_P2P, then each device to RUNNING. Safe, and it costs
 *             N x t(p2p) + N x t(stop). Pre-copy starts one device at a time; abort resets
 *             one device at a time, then starts as QEMU starts. Fresh (RUNNING) destination
 *             devices first quiesce in the source's order: QEMU takes each straight to
 *             RESUMING, safe there only because its guest never ran. QEMU migrates several
 *             devices only if every one has P2P, so qemu refuses precopy, quiesce, save and
 *             resume of such a VM even in p2p-blocked mode.
 *   naive     each device's whole journey alone (QEMU before 8.1, or a VMM that ignores P2P):
 *             a stopped device can receive P2P DMA from a peer that still runs. Quiesce, save
 *             and resume only; the other operations take the parallel order. For comparison.
 * The reset operation (a destination's rollback) always takes the parallel order, and
 * Plan.strategy says which strategy a plan really took.
 *
 * Errors: plan_build() returns 0, or -EINVAL with *ret_reason set (a sentence naming the
 * device and its state) when the operation cannot start from the devices' states, or -EPERM
 * with *ret_reason naming the device when the multi-device rule refuses it (a device without
 * STOP_COPY; a device without P2P among several in PLAN_P2P_REQUIRE mode, or under the qemu
 * strategy in any mode for the operations that begin a migration). Abort and reset are never
 * refused. The caller frees *ret_reason.
 *
 * Steps of RESET phases carry path {from, RUNNING} (where VFIO_DEVICE_RESET lands, not a
 * walk); steps of SAVE and LOAD phases carry path {state} and target == from.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mig-state.h"

enum plan_op {
        PLAN_OP_PRECOPY,  /* RUNNING -> PRE_COPY on every device that supports it */
        PLAN_OP_QUIESCE,  /* p2p phase, barrier, stop phase */
        PLAN_OP_SAVE,     /* stop-copy, stream out, stopped (quiesces first if needed) */
        PLAN_OP_RESUME,   /* resuming, stream in, validate, p2p, run */
        PLAN_OP_START,    /* from stopped back to RUNNING: p2p, run */
        PLAN_OP_ABORT,    /* back to RUNNING from anywhere: reset, p2p, run */
        PLAN_OP_RESET,    /* every device reset (destination rollback: no state to keep) */
        PLAN_OP_COUNT,
};

enum plan_strategy {
        PLAN_STRATEGY_PARALLEL, /* vfio-migd: phases with barriers, devices in parallel */
        PLAN_STRATEGY_QEMU,     /* QEMU >= 8.1: safe, one device per phase */
        PLAN_STRATEGY_NAIVE,    /* each device's whole journey alone: corrupts P2P peers */
};

/* plan_strategy_from_string() accepted a deprecated name ("serial", now "naive"): the caller
 * warns, naming the new names. */
#define PLAN_STRATEGY_DEPRECATED_NAME 1

enum plan_p2p_mode {
        PLAN_P2P_REQUIRE, /* several devices: every device must have P2P */
        PLAN_P2P_BLOCKED, /* operator asserts no P2P mappings: non-P2P devices may join */
};

enum plan_phase_kind {
        PLAN_PHASE_TRANSITION, /* steps: set_state(target) in parallel */
        PLAN_PHASE_RESET,      /* steps: reset (target is RUNNING) */
        PLAN_PHASE_SAVE,       /* stream every device's data fd out */
        PLAN_PHASE_LOAD,       /* stream in to every device's data fd */
};

typedef struct PlanDevice {
        const char *name;
        uint32_t flags;
        enum mig_state state;
} PlanDevice;

typedef struct PlanStep {
        size_t device;          /* index into the PlanDevice array */
        enum mig_state from;    /* predicted state when the step starts */
        enum mig_state target;
        enum mig_state path[MIG_PATH_MAX]; /* the kernel's walk, from first to last */
        size_t path_len;
} PlanStep;

typedef struct PlanPhase {
        char *name;             /* "p2p", "stop", "device nic0", ... */
        enum plan_phase_kind kind;
        PlanStep *steps;
        size_t n_steps;
} PlanPhase;

typedef struct Plan {
        enum plan_op op;
        enum plan_strategy strategy;
        PlanPhase *phases;
        size_t n_phases;
} Plan;

int plan_build(enum plan_op op, enum plan_strategy strategy, enum plan_p2p_mode mode,
               const PlanDevice *devices, size_t n, Plan **ret, char **ret_reason);
void plan_free(Plan *p);

const char *plan_op_to_string(enum plan_op op);
int plan_op_from_string(const char *s, enum plan_op *ret);
const char *plan_strategy_to_string(enum plan_strategy s);
/* "parallel", "qemu", "naive": 0; "serial", the old name of naive: PLAN_STRATEGY_DEPRECATED_NAME
 * with *ret = PLAN_STRATEGY_NAIVE; anything else: -EINVAL, *ret untouched. */
int plan_strategy_from_string(const char *s, enum plan_strategy *ret);
/* The sentence a caller logs when plan_strategy_from_string() returned the deprecated outcome. */
#define PLAN_STRATEGY_SERIAL_DEPRECATION                                                           \
        "strategy 'serial' is deprecated: it is the whole-journey order now called 'naive', "      \
        "which is not QEMU's; 'qemu' is QEMU 8.1's order, 'parallel' vfio-migd's"
const char *plan_p2p_mode_to_string(enum plan_p2p_mode m);
int plan_p2p_mode_from_string(const char *s, enum plan_p2p_mode *ret);
/* The operation that returns the devices to a consistent state after op failed. */
enum plan_op plan_op_rollback(enum plan_op op);
