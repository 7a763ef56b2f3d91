/* test-plan: the phases, steps and kernel paths of every operation, and every refusal */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/plan.h"

/*
 * Each row is a VM given as "name:FLAGS:STATE ..." with the drivers' real flag sets:
 * mlx5 SC|P2P|PC, hisi SC|PC, pds SC|P2P, vfio_ap SC. A plan is rendered as
 * "phase: dev=PATH dev=PATH | phase<kind>: ..." so a row states the whole plan at once.
 */
typedef struct PlanCase {
        const char *test;
        enum plan_op op;
        enum plan_strategy strategy;
        enum plan_p2p_mode mode;
        const char *vm;
        const char *plan;   /* expected rendering when error == 0 */
        int error;          /* 0, -EPERM or -EINVAL */
        const char *reason; /* expected reason when error != 0 */
} PlanCase;

#define PAR     PLAN_STRATEGY_PARALLEL
#define QEMU    PLAN_STRATEGY_QEMU
#define NAIVE   PLAN_STRATEGY_NAIVE
#define REQUIRE PLAN_P2P_REQUIRE
#define BLOCKED PLAN_P2P_BLOCKED

static const PlanCase cases[] = {
    /* quiesce */
    {"quiesce/parallel/p2p-devices", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING",
     "p2p: mlx=RUNNING>RUNNING_P2P pds=RUNNING>RUNNING_P2P"
     " | stop: mlx=RUNNING_P2P>STOP pds=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/parallel/p2p-blocked-mix", PLAN_OP_QUIESCE, PAR, BLOCKED,
     "mlx:SC|P2P|PC:RUNNING hisi:SC|PC:RUNNING pds:SC|P2P:RUNNING ap:SC:RUNNING",
     "p2p: mlx=RUNNING>RUNNING_P2P pds=RUNNING>RUNNING_P2P"
     " | stop-no-p2p: hisi=RUNNING>STOP ap=RUNNING>STOP"
     " | stop: mlx=RUNNING_P2P>STOP pds=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/parallel/pre-copy-keeps-session", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:PRE_COPY pds:SC|P2P:RUNNING",
     "p2p: mlx=PRE_COPY>PRE_COPY_P2P pds=RUNNING>RUNNING_P2P"
     " | stop: mlx=PRE_COPY_P2P>STOP_COPY pds=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/parallel/non-p2p-pre-copy", PLAN_OP_QUIESCE, PAR, BLOCKED,
     "hisi:SC|PC:PRE_COPY mlx:SC|P2P|PC:RUNNING",
     "p2p: mlx=RUNNING>RUNNING_P2P | stop-no-p2p: hisi=PRE_COPY>STOP_COPY"
     " | stop: mlx=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/parallel/single-non-p2p-device", PLAN_OP_QUIESCE, PAR, REQUIRE, "hisi:SC|PC:RUNNING",
     "stop: hisi=RUNNING>STOP", 0, NULL},
    {"quiesce/parallel/single-vfio-ap", PLAN_OP_QUIESCE, PAR, REQUIRE, "ap:SC:RUNNING",
     "stop: ap=RUNNING>STOP", 0, NULL},
    {"quiesce/parallel/partly-quiesced", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:PRE_COPY_P2P pds:SC|P2P:RUNNING_P2P mlx2:SC|P2P|PC:RUNNING",
     "p2p: mlx2=RUNNING>RUNNING_P2P"
     " | stop: mlx=PRE_COPY_P2P>STOP_COPY pds=RUNNING_P2P>STOP mlx2=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/parallel/already-stopped", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:STOP pds:SC|P2P:STOP_COPY", "", 0, NULL},
    {"quiesce/naive/whole-journey-alone", PLAN_OP_QUIESCE, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING",
     "device mlx: mlx=RUNNING>RUNNING_P2P>STOP | device pds: pds=RUNNING>RUNNING_P2P>STOP", 0,
     NULL},
    {"quiesce/naive/pre-copy", PLAN_OP_QUIESCE, NAIVE, BLOCKED,
     "mlx:SC|P2P|PC:PRE_COPY hisi:SC|PC:PRE_COPY ap:SC:STOP",
     "device mlx: mlx=PRE_COPY>PRE_COPY_P2P>STOP_COPY | device hisi: hisi=PRE_COPY>STOP_COPY", 0,
     NULL},
    /* QEMU >= 8.1: one device per phase, every P2P quiesce before any stop; a VM stop runs
     * QEMU's handlers backwards, so the last device goes first */
    {"quiesce/qemu/p2p-each-then-stop-each-last-device-first", PLAN_OP_QUIESCE, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING mlx2:SC|P2P|PC:PRE_COPY",
     "p2p mlx2: mlx2=PRE_COPY>PRE_COPY_P2P | p2p pds: pds=RUNNING>RUNNING_P2P"
     " | p2p mlx: mlx=RUNNING>RUNNING_P2P"
     " | stop mlx2: mlx2=PRE_COPY_P2P>STOP_COPY | stop pds: pds=RUNNING_P2P>STOP"
     " | stop mlx: mlx=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/qemu/partly-quiesced", PLAN_OP_QUIESCE, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING_P2P pds:SC|P2P:RUNNING",
     "p2p pds: pds=RUNNING>RUNNING_P2P | stop pds: pds=RUNNING_P2P>STOP"
     " | stop mlx: mlx=RUNNING_P2P>STOP",
     0, NULL},
    {"quiesce/qemu/single-non-p2p-device", PLAN_OP_QUIESCE, QEMU, BLOCKED, "hisi:SC|PC:RUNNING",
     "stop hisi: hisi=RUNNING>STOP", 0, NULL},
    /* pre-copy */
    {"precopy/qemu/one-device-at-a-time", PLAN_OP_PRECOPY, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING mlx2:SC|P2P|PC:RUNNING",
     "pre-copy mlx: mlx=RUNNING>PRE_COPY | pre-copy mlx2: mlx2=RUNNING>PRE_COPY", 0, NULL},
    {"precopy/capable-devices-only", PLAN_OP_PRECOPY, PAR, BLOCKED,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING hisi:SC|PC:RUNNING mlx2:SC|P2P|PC:PRE_COPY",
     "pre-copy: mlx=RUNNING>PRE_COPY hisi=RUNNING>PRE_COPY", 0, NULL},
    {"precopy/naive-is-one-phase", PLAN_OP_PRECOPY, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING mlx2:SC|P2P|PC:RUNNING",
     "pre-copy: mlx=RUNNING>PRE_COPY mlx2=RUNNING>PRE_COPY", 0, NULL},
    {"precopy/nothing-capable", PLAN_OP_PRECOPY, PAR, BLOCKED, "pds:SC|P2P:RUNNING ap:SC:RUNNING",
     "", 0, NULL},
    /* save */
    {"save/parallel/from-running", PLAN_OP_SAVE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING",
     "p2p: mlx=RUNNING>RUNNING_P2P pds=RUNNING>RUNNING_P2P"
     " | stop: mlx=RUNNING_P2P>STOP pds=RUNNING_P2P>STOP"
     " | stop-copy: mlx=STOP>STOP_COPY pds=STOP>STOP_COPY"
     " | save<save>: mlx=STOP_COPY pds=STOP_COPY"
     " | stopped: mlx=STOP_COPY>STOP pds=STOP_COPY>STOP",
     0, NULL},
    {"save/parallel/from-pre-copy", PLAN_OP_SAVE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:PRE_COPY pds:SC|P2P:RUNNING",
     "p2p: mlx=PRE_COPY>PRE_COPY_P2P pds=RUNNING>RUNNING_P2P"
     " | stop: mlx=PRE_COPY_P2P>STOP_COPY pds=RUNNING_P2P>STOP"
     " | stop-copy: pds=STOP>STOP_COPY"
     " | save<save>: mlx=STOP_COPY pds=STOP_COPY"
     " | stopped: mlx=STOP_COPY>STOP pds=STOP_COPY>STOP",
     0, NULL},
    {"save/parallel/after-quiesce", PLAN_OP_SAVE, PAR, BLOCKED, "mlx:SC|P2P|PC:STOP ap:SC:STOP",
     "stop-copy: mlx=STOP>STOP_COPY ap=STOP>STOP_COPY"
     " | save<save>: mlx=STOP_COPY ap=STOP_COPY"
     " | stopped: mlx=STOP_COPY>STOP ap=STOP_COPY>STOP",
     0, NULL},
    {"save/parallel/sessions-open", PLAN_OP_SAVE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:STOP_COPY pds:SC|P2P:STOP_COPY",
     "save<save>: mlx=STOP_COPY pds=STOP_COPY | stopped: mlx=STOP_COPY>STOP pds=STOP_COPY>STOP", 0,
     NULL},
    {"save/naive/device-after-device", PLAN_OP_SAVE, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:STOP",
     "device mlx: mlx=RUNNING>RUNNING_P2P>STOP>STOP_COPY | save mlx<save>: mlx=STOP_COPY"
     " | stopped mlx: mlx=STOP_COPY>STOP"
     " | device pds: pds=STOP>STOP_COPY | save pds<save>: pds=STOP_COPY"
     " | stopped pds: pds=STOP_COPY>STOP",
     0, NULL},
    {"save/qemu/stop-copy-and-save-each-then-stop-each", PLAN_OP_SAVE, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:PRE_COPY pds:SC|P2P:RUNNING",
     "p2p pds: pds=RUNNING>RUNNING_P2P | p2p mlx: mlx=PRE_COPY>PRE_COPY_P2P"
     " | stop pds: pds=RUNNING_P2P>STOP | stop mlx: mlx=PRE_COPY_P2P>STOP_COPY"
     " | save mlx<save>: mlx=STOP_COPY"
     " | stop-copy pds: pds=STOP>STOP_COPY | save pds<save>: pds=STOP_COPY"
     " | stopped mlx: mlx=STOP_COPY>STOP | stopped pds: pds=STOP_COPY>STOP",
     0, NULL},
    {"save/qemu/after-quiesce", PLAN_OP_SAVE, QEMU, REQUIRE, "mlx:SC|P2P|PC:STOP pds:SC|P2P:STOP",
     "stop-copy mlx: mlx=STOP>STOP_COPY | save mlx<save>: mlx=STOP_COPY"
     " | stop-copy pds: pds=STOP>STOP_COPY | save pds<save>: pds=STOP_COPY"
     " | stopped mlx: mlx=STOP_COPY>STOP | stopped pds: pds=STOP_COPY>STOP",
     0, NULL},
    {"save/single-non-p2p-device", PLAN_OP_SAVE, PAR, REQUIRE, "hisi:SC|PC:PRE_COPY",
     "stop: hisi=PRE_COPY>STOP_COPY | save<save>: hisi=STOP_COPY"
     " | stopped: hisi=STOP_COPY>STOP",
     0, NULL},
    /* resume */
    /* Fresh destination devices run: they quiesce in the safe order before RESUMING, so none
     * stops while a peer can still DMA into it. */
    {"resume/parallel/fresh-devices", PLAN_OP_RESUME, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:STOP",
     "quiesce-p2p: mlx=RUNNING>RUNNING_P2P | quiesce-stop: mlx=RUNNING_P2P>STOP"
     " | resuming: mlx=STOP>RESUMING pds=STOP>RESUMING"
     " | load<load>: mlx=RESUMING pds=RESUMING"
     " | validate: mlx=RESUMING>STOP pds=RESUMING>STOP"
     " | p2p: mlx=STOP>RUNNING_P2P pds=STOP>RUNNING_P2P"
     " | run: mlx=RUNNING_P2P>RUNNING pds=RUNNING_P2P>RUNNING",
     0, NULL},
    {"resume/parallel/p2p-blocked-mix", PLAN_OP_RESUME, PAR, BLOCKED, "ap:SC:STOP pds:SC|P2P:STOP",
     "resuming: ap=STOP>RESUMING pds=STOP>RESUMING"
     " | load<load>: ap=RESUMING pds=RESUMING"
     " | validate: ap=RESUMING>STOP pds=RESUMING>STOP | p2p: pds=STOP>RUNNING_P2P"
     " | run-no-p2p: ap=STOP>RUNNING | run: pds=RUNNING_P2P>RUNNING",
     0, NULL},
    {"resume/naive/whole-journey-alone", PLAN_OP_RESUME, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:STOP pds:SC|P2P:STOP",
     "resuming mlx: mlx=STOP>RESUMING | resuming pds: pds=STOP>RESUMING"
     " | load<load>: mlx=RESUMING pds=RESUMING"
     " | device mlx: mlx=RESUMING>STOP>RUNNING_P2P>RUNNING"
     " | device pds: pds=RESUMING>STOP>RUNNING_P2P>RUNNING",
     0, NULL},
    {"resume/qemu/resuming-each-load-p2p-each-run-each", PLAN_OP_RESUME, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:STOP pds:SC|P2P:STOP",
     "resuming mlx: mlx=STOP>RESUMING | resuming pds: pds=STOP>RESUMING"
     " | load<load>: mlx=RESUMING pds=RESUMING"
     " | p2p mlx: mlx=RESUMING>STOP>RUNNING_P2P | p2p pds: pds=RESUMING>STOP>RUNNING_P2P"
     " | run mlx: mlx=RUNNING_P2P>RUNNING | run pds: pds=RUNNING_P2P>RUNNING",
     0, NULL},
    /* QEMU takes a fresh device straight to RESUMING; qemu first quiesces it QEMU's way. */
    {"resume/qemu/fresh-devices", PLAN_OP_RESUME, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RUNNING",
     "quiesce-p2p pds: pds=RUNNING>RUNNING_P2P | quiesce-p2p mlx: mlx=RUNNING>RUNNING_P2P"
     " | quiesce-stop pds: pds=RUNNING_P2P>STOP | quiesce-stop mlx: mlx=RUNNING_P2P>STOP"
     " | resuming mlx: mlx=STOP>RESUMING | resuming pds: pds=STOP>RESUMING"
     " | load<load>: mlx=RESUMING pds=RESUMING"
     " | p2p mlx: mlx=RESUMING>STOP>RUNNING_P2P | p2p pds: pds=RESUMING>STOP>RUNNING_P2P"
     " | run mlx: mlx=RUNNING_P2P>RUNNING | run pds: pds=RUNNING_P2P>RUNNING",
     0, NULL},
    {"resume/qemu/single-non-p2p-device", PLAN_OP_RESUME, QEMU, REQUIRE, "ap:SC:STOP",
     "resuming ap: ap=STOP>RESUMING | load<load>: ap=RESUMING | run ap: ap=RESUMING>STOP>RUNNING",
     0, NULL},
    /* start */
    {"start/qemu/p2p-each-then-run-each", PLAN_OP_START, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:STOP_COPY pds:SC|P2P:STOP",
     "p2p mlx: mlx=STOP_COPY>STOP>RUNNING_P2P | p2p pds: pds=STOP>RUNNING_P2P"
     " | run mlx: mlx=RUNNING_P2P>RUNNING | run pds: pds=RUNNING_P2P>RUNNING",
     0, NULL},
    /* A device without P2P has no prepare handler: it runs before any P2P device leaves
     * RUNNING_P2P, as under parallel. */
    {"start/qemu/p2p-blocked-mix", PLAN_OP_START, QEMU, BLOCKED, "pds:SC|P2P:STOP ap:SC:STOP",
     "p2p pds: pds=STOP>RUNNING_P2P | run ap: ap=STOP>RUNNING | run pds: pds=RUNNING_P2P>RUNNING",
     0, NULL},
    {"start/p2p-then-run", PLAN_OP_START, PAR, BLOCKED,
     "mlx:SC|P2P|PC:STOP ap:SC:STOP_COPY pds:SC|P2P:RUNNING_P2P",
     "p2p: mlx=STOP>RUNNING_P2P | run-no-p2p: ap=STOP_COPY>STOP>RUNNING"
     " | run: mlx=RUNNING_P2P>RUNNING pds=RUNNING_P2P>RUNNING",
     0, NULL},
    {"start/naive-takes-safe-order", PLAN_OP_START, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:STOP_COPY pds:SC|P2P:STOP",
     "p2p: mlx=STOP_COPY>STOP>RUNNING_P2P pds=STOP>RUNNING_P2P"
     " | run: mlx=RUNNING_P2P>RUNNING pds=RUNNING_P2P>RUNNING",
     0, NULL},
    /* abort and reset */
    {"abort/from-anywhere", PLAN_OP_ABORT, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:ERROR pds:SC|P2P:RESUMING mlx2:SC|P2P|PC:STOP_COPY"
     " mlx3:SC|P2P|PC:PRE_COPY_P2P hisi:SC|PC:PRE_COPY ap:SC:STOP",
     "p2p: mlx2=STOP_COPY>STOP>RUNNING_P2P mlx3=PRE_COPY_P2P>RUNNING_P2P"
     " | run-no-p2p: hisi=PRE_COPY>RUNNING ap=STOP>RUNNING"
     " | reset<reset>: mlx=ERROR>RUNNING pds=RESUMING>RUNNING"
     " | run: mlx2=RUNNING_P2P>RUNNING mlx3=RUNNING_P2P>RUNNING",
     0, NULL},
    /* One device per phase, in the invariant's order: peers that keep their state quiesce
     * before any reset device runs again. */
    {"abort/qemu/quiesce-then-reset-each-then-start", PLAN_OP_ABORT, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:ERROR pds:SC|P2P:RESUMING mlx2:SC|P2P|PC:STOP_COPY",
     "p2p mlx2: mlx2=STOP_COPY>STOP>RUNNING_P2P | reset mlx<reset>: mlx=ERROR>RUNNING"
     " | reset pds<reset>: pds=RESUMING>RUNNING | run mlx2: mlx2=RUNNING_P2P>RUNNING",
     0, NULL},
    {"abort/already-running", PLAN_OP_ABORT, PAR, REQUIRE, "mlx:SC|P2P|PC:RUNNING ap:SC:RUNNING",
     "", 0, NULL},
    {"abort/not-migratable-device", PLAN_OP_ABORT, PAR, REQUIRE, "plain:none:RUNNING", "", 0, NULL},
    {"reset/every-device", PLAN_OP_RESET, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RESUMING ap:SC:ERROR",
     "reset<reset>: mlx=RUNNING pds=RESUMING>RUNNING ap=ERROR>RUNNING", 0, NULL},
    {"reset/qemu-takes-parallel-order", PLAN_OP_RESET, QEMU, REQUIRE,
     "mlx:SC|P2P|PC:RESUMING pds:SC|P2P:RESUMING",
     "reset<reset>: mlx=RESUMING>RUNNING pds=RESUMING>RUNNING", 0, NULL},
    /* refusals: the multi-device rule */
    {"refuse/quiesce-non-p2p-among-several", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING hisi:SC|PC:RUNNING", NULL, -EPERM,
     "device hisi (flags STOP_COPY|PRE_COPY) has no P2P quiesce; with several devices "
     "every device needs P2P, or the VM must be registered with p2p-mode p2p-blocked"},
    {"refuse/save-non-p2p-among-several", PLAN_OP_SAVE, NAIVE, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING ap:SC:RUNNING", NULL, -EPERM,
     "device ap (flags STOP_COPY) has no P2P quiesce; with several devices every device "
     "needs P2P, or the VM must be registered with p2p-mode p2p-blocked"},
    {"refuse/precopy-non-p2p-among-several", PLAN_OP_PRECOPY, PAR, REQUIRE,
     "hisi:SC|PC:RUNNING mlx:SC|P2P|PC:RUNNING", NULL, -EPERM,
     "device hisi (flags STOP_COPY|PRE_COPY) has no P2P quiesce; with several devices "
     "every device needs P2P, or the VM must be registered with p2p-mode p2p-blocked"},
    {"refuse/resume-non-p2p-among-several", PLAN_OP_RESUME, PAR, REQUIRE,
     "pds:SC|P2P:STOP ap:SC:STOP", NULL, -EPERM,
     "device ap (flags STOP_COPY) has no P2P quiesce; with several devices every device "
     "needs P2P, or the VM must be registered with p2p-mode p2p-blocked"},
    {"refuse/start-non-p2p-among-several", PLAN_OP_START, PAR, REQUIRE,
     "ap:SC:STOP pds:SC|P2P:STOP", NULL, -EPERM,
     "device ap (flags STOP_COPY) has no P2P quiesce; with several devices every device "
     "needs P2P, or the VM must be registered with p2p-mode p2p-blocked"},
    {"refuse/qemu-non-p2p-among-several-even-p2p-blocked", PLAN_OP_QUIESCE, QEMU, BLOCKED,
     "mlx:SC|P2P|PC:RUNNING ap:SC:RUNNING", NULL, -EPERM,
     "device ap (flags STOP_COPY) has no P2P quiesce; the qemu strategy follows QEMU, which "
     "migrates several devices only if every one has P2P; register the VM with strategy "
     "parallel (or naive) to migrate it in p2p-blocked mode"},
    {"refuse/qemu-resume-non-p2p-among-several", PLAN_OP_RESUME, QEMU, BLOCKED,
     "ap:SC:STOP pds:SC|P2P:STOP", NULL, -EPERM,
     "device ap (flags STOP_COPY) has no P2P quiesce; the qemu strategy follows QEMU, which "
     "migrates several devices only if every one has P2P; register the VM with strategy "
     "parallel (or naive) to migrate it in p2p-blocked mode"},
    {"refuse/not-migratable", PLAN_OP_QUIESCE, PAR, BLOCKED,
     "mlx:SC|P2P|PC:RUNNING plain:none:RUNNING", NULL, -EPERM,
     "device plain (flags none) cannot migrate: it does not advertise STOP_COPY"},
    {"refuse/no-stop-copy", PLAN_OP_SAVE, PAR, BLOCKED, "odd:P2P:RUNNING", NULL, -EPERM,
     "device odd (flags P2P) cannot migrate: it does not advertise STOP_COPY"},
    /* refusals: starting states */
    {"refuse/quiesce-resuming", PLAN_OP_QUIESCE, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING pds:SC|P2P:RESUMING", NULL, -EINVAL,
     "device pds is in RESUMING; quiesce needs every device in RUNNING, PRE_COPY or an "
     "already quiesced state (RUNNING_P2P, PRE_COPY_P2P, STOP, STOP_COPY)"},
    {"refuse/save-error", PLAN_OP_SAVE, PAR, REQUIRE, "mlx:SC|P2P|PC:ERROR", NULL, -EINVAL,
     "device mlx is in ERROR; save needs every device in RUNNING, PRE_COPY or an already "
     "quiesced state (RUNNING_P2P, PRE_COPY_P2P, STOP, STOP_COPY)"},
    {"refuse/precopy-stopped", PLAN_OP_PRECOPY, PAR, REQUIRE,
     "mlx:SC|P2P|PC:RUNNING mlx2:SC|P2P|PC:STOP", NULL, -EINVAL,
     "device mlx2 is in STOP; precopy needs every device in RUNNING or PRE_COPY"},
    {"refuse/resume-stop-copy", PLAN_OP_RESUME, PAR, REQUIRE, "pds:SC|P2P:STOP_COPY", NULL, -EINVAL,
     "device pds is in STOP_COPY; resume needs every device in RUNNING (fresh) or STOP"},
    {"refuse/resume-running-p2p", PLAN_OP_RESUME, PAR, REQUIRE, "pds:SC|P2P:RUNNING_P2P", NULL,
     -EINVAL, "device pds is in RUNNING_P2P; resume needs every device in RUNNING (fresh) or STOP"},
    {"refuse/start-resuming", PLAN_OP_START, PAR, REQUIRE, "pds:SC|P2P:RESUMING", NULL, -EINVAL,
     "device pds is in RESUMING; start needs every device in STOP, STOP_COPY or a running "
     "state; use abort for ERROR and RESUMING"},
    /* a state the device's flags cannot be in has no kernel path: never sent */
    {"refuse/no-kernel-path", PLAN_OP_QUIESCE, PAR, REQUIRE, "pds:SC|P2P:PRE_COPY", NULL, -EINVAL,
     "no kernel path for device pds (flags STOP_COPY|P2P) from PRE_COPY to PRE_COPY_P2P; "
     "this is a bug in the plan"},
};

/* Parses "name:FLAGS:STATE ..."; the strings stay owned by *ret_words. */
static PlanDevice *parse_vm(const char *vm, size_t *ret_n, GPtrArray *keep)
{
        g_auto(GStrv) words = g_strsplit(vm, " ", -1);
        size_t n = g_strv_length(words);
        PlanDevice *devs = g_new0(PlanDevice, n);

        for (size_t i = 0; i < n; i++) {
                g_auto(GStrv) f = g_strsplit(words[i], ":", 3);

                g_assert_cmpuint(g_strv_length(f), ==, 3);
                devs[i].name = g_strdup(f[0]);
                g_ptr_array_add(keep, (char *)devs[i].name);
                g_assert_cmpint(mig_flags_from_string(f[1], &devs[i].flags), ==, 0);
                g_assert_cmpint(mig_state_from_string(f[2], &devs[i].state), ==, 0);
        }
        *ret_n = n;
        return devs;
}

static const char *kind_suffix(enum plan_phase_kind k)
{
        switch (k) {
        case PLAN_PHASE_TRANSITION:
                return "";
        case PLAN_PHASE_RESET:
                return "<reset>";
        case PLAN_PHASE_SAVE:
                return "<save>";
        case PLAN_PHASE_LOAD:
                return "<load>";
        }
        return "<?>";
}

/* Also checks what every step must satisfy: its path starts at 'from' and ends at
 * 'target', and a transition's path is exactly the kernel's walk. */
static char *render(const Plan *p, const PlanDevice *devs)
{
        GString *s = g_string_new(NULL);

        for (size_t i = 0; i < p->n_phases; i++) {
                const PlanPhase *ph = &p->phases[i];

                g_assert_cmpuint(ph->n_steps, >, 0);
                g_string_append_printf(s, "%s%s%s:", i ? " | " : "", ph->name,
                                       kind_suffix(ph->kind));
                for (size_t j = 0; j < ph->n_steps; j++) {
                        const PlanStep *st = &ph->steps[j];
                        char buf[256];

                        g_assert_cmpuint(st->path_len, >, 0);
                        g_assert_cmpint(st->path[0], ==, st->from);
                        g_assert_cmpint(st->path[st->path_len - 1], ==, st->target);
                        if (ph->kind == PLAN_PHASE_TRANSITION) {
                                enum mig_state kpath[MIG_PATH_MAX];
                                size_t klen;

                                g_assert_cmpint(mig_path(devs[st->device].flags, st->from,
                                                         st->target, kpath, &klen),
                                                ==, 0);
                                g_assert_cmpuint(klen, ==, st->path_len);
                                g_assert_cmpmem(kpath, klen * sizeof(*kpath), st->path,
                                                st->path_len * sizeof(*st->path));
                        }
                        mig_path_format(st->path, st->path_len, buf, sizeof(buf));
                        g_string_append_printf(s, " %s=%s", devs[st->device].name, buf);
                }
        }
        return g_string_free(s, FALSE);
}

static void test_case(const void *data)
{
        const PlanCase *c = data;
        g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_free);
        g_autofree PlanDevice *devs = NULL;
        g_autofree char *reason = NULL;
        Plan *plan = NULL;
        size_t n;
        int r;

        devs = parse_vm(c->vm, &n, keep);
        r = plan_build(c->op, c->strategy, c->mode, devs, n, &plan, &reason);
        if (c->error) {
                g_assert_cmpint(r, ==, c->error);
                g_assert_null(plan);
                g_assert_cmpstr(reason, ==, c->reason);
                return;
        }
        g_assert_cmpint(r, ==, 0);
        g_assert_null(reason);
        g_assert_nonnull(plan);
        g_assert_cmpint(plan->op, ==, c->op);
        {
                g_autofree char *got = render(plan, devs);
                g_assert_cmpstr(got, ==, c->plan);
        }
        plan_free(plan);
}

/* The strategy a plan really takes: naive only where it is the comparison (quiesce, save,
 * resume), qemu for every operation but a destination's reset. */
static void test_effective_strategy(void)
{
        static const struct {
                enum plan_op op;
                enum plan_strategy asked, taken;
        } rows[] = {
            {PLAN_OP_PRECOPY, NAIVE, PAR}, {PLAN_OP_QUIESCE, NAIVE, NAIVE},
            {PLAN_OP_SAVE, NAIVE, NAIVE},  {PLAN_OP_RESUME, NAIVE, NAIVE},
            {PLAN_OP_START, NAIVE, PAR},   {PLAN_OP_ABORT, NAIVE, PAR},
            {PLAN_OP_RESET, NAIVE, PAR},   {PLAN_OP_PRECOPY, QEMU, QEMU},
            {PLAN_OP_QUIESCE, QEMU, QEMU}, {PLAN_OP_SAVE, QEMU, QEMU},
            {PLAN_OP_RESUME, QEMU, QEMU},  {PLAN_OP_START, QEMU, QEMU},
            {PLAN_OP_ABORT, QEMU, QEMU},   {PLAN_OP_RESET, QEMU, PAR},
        };

        for (size_t i = 0; i < G_N_ELEMENTS(rows); i++) {
                PlanDevice d = {"mlx", MIG_FLAGS_KNOWN, MIG_STATE_RUNNING};
                Plan *p = NULL;

                if (rows[i].op == PLAN_OP_RESUME)
                        d.state = MIG_STATE_STOP;
                g_assert_cmpint(
                    plan_build(rows[i].op, rows[i].asked, PLAN_P2P_REQUIRE, &d, 1, &p, NULL), ==,
                    0);
                g_assert_cmpint(p->strategy, ==, rows[i].taken);
                plan_free(p);
        }
}

static void test_refusal_without_reason_pointer(void)
{
        PlanDevice d = {"pds", MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, MIG_STATE_ERROR};
        Plan *p = NULL;

        g_assert_cmpint(
            plan_build(PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE, &d, 1, &p, NULL),
            ==, -EINVAL);
        g_assert_null(p);
}

static void test_unknown_op_refused(void)
{
        g_autofree char *reason = NULL;
        Plan *p = NULL;

        g_assert_cmpint(plan_build(PLAN_OP_COUNT, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE, NULL, 0,
                                   &p, &reason),
                        ==, -EINVAL);
        g_assert_nonnull(reason);
}

static void test_no_devices_no_phases(void)
{
        Plan *p = NULL;

        g_assert_cmpint(plan_build(PLAN_OP_QUIESCE, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE, NULL,
                                   0, &p, NULL),
                        ==, 0);
        g_assert_cmpuint(p->n_phases, ==, 0);
        plan_free(p);
}

static void test_rollback_ops(void)
{
        g_assert_cmpint(plan_op_rollback(PLAN_OP_RESUME), ==, PLAN_OP_RESET);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_PRECOPY), ==, PLAN_OP_ABORT);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_QUIESCE), ==, PLAN_OP_ABORT);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_SAVE), ==, PLAN_OP_ABORT);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_START), ==, PLAN_OP_ABORT);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_ABORT), ==, PLAN_OP_ABORT);
        g_assert_cmpint(plan_op_rollback(PLAN_OP_RESET), ==, PLAN_OP_ABORT);
}

static void test_op_names_round_trip(void)
{
        static const char *const names[] = {"precopy", "quiesce", "save", "resume",
                                            "start",   "abort",   "reset"};
        enum plan_op op;

        G_STATIC_ASSERT(G_N_ELEMENTS(names) == PLAN_OP_COUNT);
        for (unsigned i = 0; i < PLAN_OP_COUNT; i++) {
                g_assert_cmpstr(plan_op_to_string((enum plan_op)i), ==, names[i]);
                g_assert_cmpint(plan_op_from_string(names[i], &op), ==, 0);
                g_assert_cmpint(op, ==, i);
        }
        g_assert_cmpint(plan_op_from_string("Quiesce", &op), ==, -EINVAL);
        g_assert_cmpint(plan_op_from_string(NULL, &op), ==, -EINVAL);
}

static void test_strategy_and_mode_names(void)
{
        enum plan_strategy s;
        enum plan_p2p_mode m;

        g_assert_cmpstr(plan_strategy_to_string(PLAN_STRATEGY_PARALLEL), ==, "parallel");
        g_assert_cmpstr(plan_strategy_to_string(PLAN_STRATEGY_QEMU), ==, "qemu");
        g_assert_cmpstr(plan_strategy_to_string(PLAN_STRATEGY_NAIVE), ==, "naive");
        g_assert_cmpint(plan_strategy_from_string("parallel", &s), ==, 0);
        g_assert_cmpint(s, ==, PLAN_STRATEGY_PARALLEL);
        g_assert_cmpint(plan_strategy_from_string("qemu", &s), ==, 0);
        g_assert_cmpint(s, ==, PLAN_STRATEGY_QEMU);
        g_assert_cmpint(plan_strategy_from_string("naive", &s), ==, 0);
        g_assert_cmpint(s, ==, PLAN_STRATEGY_NAIVE);
        /* The old name of naive: accepted, and said to be deprecated. */
        s = PLAN_STRATEGY_PARALLEL;
        g_assert_cmpint(plan_strategy_from_string("serial", &s), ==, PLAN_STRATEGY_DEPRECATED_NAME);
        g_assert_cmpint(s, ==, PLAN_STRATEGY_NAIVE);
        g_assert_cmpint(plan_strategy_from_string("fast", &s), ==, -EINVAL);
        g_assert_cmpint(plan_strategy_from_string("QEMU", &s), ==, -EINVAL);
        g_assert_cmpint(plan_strategy_from_string(NULL, &s), ==, -EINVAL);
        g_assert_cmpint(s, ==, PLAN_STRATEGY_NAIVE);

        g_assert_cmpstr(plan_p2p_mode_to_string(PLAN_P2P_REQUIRE), ==, "require-p2p");
        g_assert_cmpstr(plan_p2p_mode_to_string(PLAN_P2P_BLOCKED), ==, "p2p-blocked");
        g_assert_cmpint(plan_p2p_mode_from_string("p2p-blocked", &m), ==, 0);
        g_assert_cmpint(m, ==, PLAN_P2P_BLOCKED);
        g_assert_cmpint(plan_p2p_mode_from_string("require-p2p", &m), ==, 0);
        g_assert_cmpint(m, ==, PLAN_P2P_REQUIRE);
        g_assert_cmpint(plan_p2p_mode_from_string("single-only", &m), ==, -EINVAL);
}

/* No plan, of any operation from any state, ever asks a device for STOP_COPY -> PRE_COPY. */
static void test_never_requests_stop_copy_to_pre_copy(void)
{
        for (unsigned op = 0; op < PLAN_OP_COUNT; op++)
                for (unsigned s = 0; s < MIG_STATE_COUNT; s++) {
                        PlanDevice d[2] = {{"a", MIG_FLAGS_KNOWN, (enum mig_state)s},
                                           {"b", MIG_FLAGS_KNOWN, MIG_STATE_STOP_COPY}};
                        Plan *p = NULL;

                        if (plan_build((enum plan_op)op, PLAN_STRATEGY_PARALLEL, PLAN_P2P_REQUIRE,
                                       d, 2, &p, NULL) < 0)
                                continue;
                        for (size_t i = 0; i < p->n_phases; i++)
                                for (size_t j = 0; j < p->phases[i].n_steps; j++) {
                                        const PlanStep *st = &p->phases[i].steps[j];
                                        for (size_t k = 1; k < st->path_len; k++)
                                                g_assert_false(
                                                    st->path[k - 1] == MIG_STATE_STOP_COPY &&
                                                    (st->path[k] == MIG_STATE_PRE_COPY ||
                                                     st->path[k] == MIG_STATE_PRE_COPY_P2P));
                                }
                        plan_free(p);
                }
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *path = g_strdup_printf("/plan/%s", cases[i].test);
                g_test_add_data_func(path, &cases[i], test_case);
        }
        g_test_add_func("/plan/effective-strategy", test_effective_strategy);
        g_test_add_func("/plan/refusal-without-reason-pointer",
                        test_refusal_without_reason_pointer);
        g_test_add_func("/plan/unknown-op", test_unknown_op_refused);
        g_test_add_func("/plan/no-devices", test_no_devices_no_phases);
        g_test_add_func("/plan/rollback-ops", test_rollback_ops);
        g_test_add_func("/plan/names/op", test_op_names_round_trip);
        g_test_add_func("/plan/names/strategy-and-mode", test_strategy_and_mode_names);
        g_test_add_func("/plan/never-stop-copy-to-pre-copy",
                        test_never_requests_stop_copy_to_pre_copy);
        return g_test_run();
}
