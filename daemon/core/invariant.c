/* invariant: the P2P rule every step of every sequence keeps, written once */
#include "core/invariant.h"

bool invariant_state_is_stopped(enum mig_state s)
{
        return s == MIG_STATE_STOP || s == MIG_STATE_STOP_COPY || s == MIG_STATE_RESUMING;
}

/* victim stopped while initiator can DMA into it: allowed only by the two exceptions. */
static bool endangers(uint32_t fv, enum mig_state sv, bool v_discards, uint32_t fi,
                      enum mig_state si, enum plan_p2p_mode mode)
{
        if (!invariant_state_is_stopped(sv) || !mig_state_initiates_p2p(si) || v_discards)
                return false;
        return !(mode == PLAN_P2P_BLOCKED && !(fv & MIG_FLAG_P2P) && !(fi & MIG_FLAG_P2P));
}

bool invariant_pair_ok(uint32_t fa, enum mig_state sa, bool a_discards, uint32_t fb,
                       enum mig_state sb, bool b_discards, enum plan_p2p_mode mode)
{
        return !endangers(fa, sa, a_discards, fb, sb, mode) &&
               !endangers(fb, sb, b_discards, fa, sa, mode);
}

bool invariant_allows(const uint32_t *flags, const enum mig_state *states, size_t n,
                      enum plan_p2p_mode mode, size_t device, enum mig_state target,
                      size_t *ret_peer)
{
        for (size_t j = 0; j < n; j++) {
                if (j == device || invariant_pair_ok(flags[device], target, false, flags[j],
                                                     states[j], false, mode))
                        continue;
                if (ret_peer)
                        *ret_peer = j;
                return false;
        }
        return true;
}

static bool spans_conflict(const InvariantSpan *v, size_t iv, const InvariantSpan *x, size_t ix,
                           enum plan_p2p_mode mode, InvariantConflict *ret)
{
        for (size_t a = 0; a < v->n_states; a++)
                for (size_t b = 0; b < x->n_states; b++) {
                        /* Both where they already are: the phase did not make that pair. */
                        if (a == 0 && b == 0)
                                continue;
                        if (!endangers(v->flags, v->states[a], v->discards, x->flags, x->states[b],
                                       mode))
                                continue;
                        if (ret)
                                *ret = (InvariantConflict){iv, ix, v->states[a], x->states[b]};
                        return true;
                }
        return false;
}

bool invariant_phase_ok(const InvariantSpan *spans, size_t n, enum plan_p2p_mode mode,
                        InvariantConflict *ret)
{
        /* The rule is about pairs, so checking every pair of possible states covers every
         * order the phase's parallel steps can take. */
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++)
                        if (i != j && spans_conflict(&spans[i], i, &spans[j], j, mode, ret))
                                return false;
        return true;
}
