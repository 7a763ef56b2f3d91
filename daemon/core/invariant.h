/* invariant: the P2P rule every step of every sequence keeps, written once */
#pragma once

/*
 * In a VM whose devices may hold P2P mappings, no device is in STOP, STOP_COPY or RESUMING
 * (its state is captured or being loaded) while a peer can initiate P2P DMA into it
 * (RUNNING or PRE_COPY). Two exceptions, both stated by the caller:
 *   - p2p-blocked: the operator asserts the VM's IOMMU context has no P2P mappings; a pair
 *     of devices that both lack the P2P quiesce state (RUNNING_P2P) is then allowed, since
 *     nothing could order them (with one such device the plan's order is safe regardless).
 *   - discards: a device whose state is about to be discarded (a reset is planned for it)
 *     has nothing a peer's DMA could corrupt.
 * ERROR is neither stopped nor initiating: nothing is known of such a device but that it
 * will be reset.
 *
 * Pure logic: no I/O, no globals. The sequencer checks every phase it issues (sequence and
 * rollback) with invariant_phase_ok() and does not issue one that would break the rule.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mig-state.h"
#include "core/plan.h"

/* STOP, STOP_COPY, RESUMING: a peer's P2P DMA would land in captured or loading state. */
bool invariant_state_is_stopped(enum mig_state s);

/* May device a (flags fa, in sa) and device b (fb, sb) be so at the same time? */
bool invariant_pair_ok(uint32_t fa, enum mig_state sa, bool a_discards, uint32_t fb,
                       enum mig_state sb, bool b_discards, enum plan_p2p_mode mode);

/*
 * Would moving device to target keep the rule, every other device being where states[]
 * says? true if so; else false with *ret_peer (optional) the first peer it conflicts with.
 */
bool invariant_allows(const uint32_t *flags, const enum mig_state *states, size_t n,
                      enum plan_p2p_mode mode, size_t device, enum mig_state target,
                      size_t *ret_peer);

/*
 * Every state one device may be in while a phase runs: states[0] is where it is, then each
 * state its step walks (the steps of a phase run in parallel and interleave in any order).
 * A pair that breaks the rule with both devices in their states[0] was not made by the
 * phase (a rollback after QEMU's serial order starts from one), so only pairs a step enters
 * count: a phase may repair a breach, never make one.
 */
typedef struct InvariantSpan {
        uint32_t flags;
        enum mig_state states[MIG_PATH_MAX];
        size_t n_states;
        bool discards; /* a reset of this device is planned: its state is not kept */
} InvariantSpan;

/* The first pair that could break the rule, in any interleaving of the phase's steps. */
typedef struct InvariantConflict {
        size_t victim, initiator; /* indexes into the spans */
        enum mig_state victim_state, initiator_state;
} InvariantConflict;

/* true when no interleaving breaks the rule; else false and *ret (optional) says how. */
bool invariant_phase_ok(const InvariantSpan *spans, size_t n, enum plan_p2p_mode mode,
                        InvariantConflict *ret);
