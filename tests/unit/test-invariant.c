/* test-invariant: the P2P rule, from tables of device pairs and of phases */
#include <glib.h>
#include <string.h>

#include "core/invariant.h"

#define P2P   (MIG_FLAG_STOP_COPY | MIG_FLAG_P2P)
#define NOP2P MIG_FLAG_STOP_COPY

typedef struct PairCase {
        const char *name;
        uint32_t fa;
        const char *sa;
        bool a_discards;
        uint32_t fb;
        const char *sb;
        enum plan_p2p_mode mode;
        bool ok;
} PairCase;

static const PairCase pair_cases[] = {
    {"stop-while-peer-runs", P2P, "STOP", false, P2P, "RUNNING", PLAN_P2P_REQUIRE, false},
    {"stop-copy-while-peer-pre-copies", P2P, "STOP_COPY", false, P2P, "PRE_COPY", PLAN_P2P_REQUIRE,
     false},
    {"resuming-while-peer-runs", P2P, "RESUMING", false, P2P, "RUNNING", PLAN_P2P_REQUIRE, false},
    {"stop-while-peer-quiesced", P2P, "STOP", false, P2P, "RUNNING_P2P", PLAN_P2P_REQUIRE, true},
    {"stop-while-peer-pre-copy-p2p", P2P, "STOP", false, P2P, "PRE_COPY_P2P", PLAN_P2P_REQUIRE,
     true},
    {"both-stopped", P2P, "STOP", false, P2P, "RESUMING", PLAN_P2P_REQUIRE, true},
    {"both-running", P2P, "RUNNING", false, P2P, "PRE_COPY", PLAN_P2P_REQUIRE, true},
    {"error-is-neither", P2P, "ERROR", false, P2P, "RUNNING", PLAN_P2P_REQUIRE, true},
    {"running-next-to-error", P2P, "STOP", false, P2P, "ERROR", PLAN_P2P_REQUIRE, true},
    {"order-does-not-matter", P2P, "RUNNING", false, P2P, "STOP", PLAN_P2P_REQUIRE, false},
    {"discarded-victim", P2P, "RESUMING", true, P2P, "RUNNING", PLAN_P2P_REQUIRE, true},
    {"discarding-initiator-still-endangers", P2P, "RUNNING", true, P2P, "STOP", PLAN_P2P_REQUIRE,
     false},
    {"blocked-two-without-p2p", NOP2P, "STOP", false, NOP2P, "RUNNING", PLAN_P2P_BLOCKED, true},
    {"require-two-without-p2p", NOP2P, "STOP", false, NOP2P, "RUNNING", PLAN_P2P_REQUIRE, false},
    {"blocked-p2p-victim", P2P, "STOP", false, NOP2P, "RUNNING", PLAN_P2P_BLOCKED, false},
    {"blocked-p2p-initiator", NOP2P, "STOP", false, P2P, "RUNNING", PLAN_P2P_BLOCKED, false},
};

static enum mig_state st(const char *s)
{
        enum mig_state r;

        g_assert_cmpint(mig_state_from_string(s, &r), ==, 0);
        return r;
}

static void test_pair(gconstpointer data)
{
        const PairCase *c = data;

        g_assert_cmpint(
            invariant_pair_ok(c->fa, st(c->sa), c->a_discards, c->fb, st(c->sb), false, c->mode),
            ==, c->ok);
}

static void test_allows_names_the_peer(void)
{
        const uint32_t flags[3] = {P2P, P2P, P2P};
        const enum mig_state states[3] = {MIG_STATE_RUNNING_P2P, MIG_STATE_RUNNING_P2P,
                                          MIG_STATE_RUNNING};
        size_t peer = 99;

        g_assert_true(
            invariant_allows(flags, states, 3, PLAN_P2P_REQUIRE, 0, MIG_STATE_RUNNING_P2P, &peer));
        g_assert_false(
            invariant_allows(flags, states, 3, PLAN_P2P_REQUIRE, 0, MIG_STATE_STOP, &peer));
        g_assert_cmpuint(peer, ==, 2);
        /* the device's own state never conflicts with itself */
        g_assert_true(
            invariant_allows(flags, states, 3, PLAN_P2P_REQUIRE, 2, MIG_STATE_RUNNING, NULL));
}

/* A phase as "flags:state" or "flags:from>...>to" per device, '!' suffix: discards. */
typedef struct PhaseCase {
        const char *name;
        const char *spans;
        enum plan_p2p_mode mode;
        bool ok;
        int victim, initiator; /* when !ok */
} PhaseCase;

static const PhaseCase phase_cases[] = {
    {"quiesce-p2p", "P:RUNNING>RUNNING_P2P P:RUNNING>RUNNING_P2P", PLAN_P2P_REQUIRE, true, 0, 0},
    {"quiesce-stop", "P:RUNNING_P2P>STOP P:RUNNING_P2P>STOP", PLAN_P2P_REQUIRE, true, 0, 0},
    /* the naive order: one device stops while its peer has not quiesced */
    {"stop-before-peer-quiesced", "P:RUNNING_P2P>STOP P:RUNNING", PLAN_P2P_REQUIRE, false, 0, 1},
    /* QEMU's walk in one phase: each may be STOP while the other is still RUNNING */
    {"serial-walk-in-parallel", "P:RUNNING>RUNNING_P2P>STOP P:RUNNING>RUNNING_P2P>STOP",
     PLAN_P2P_REQUIRE, false, 0, 1},
    {"run-while-late-step-may-stop", "P:RUNNING_P2P>RUNNING P:RUNNING_P2P>STOP", PLAN_P2P_REQUIRE,
     false, 1, 0},
    /* a breach the phase finds is not the phase's: it may only repair it */
    {"pre-existing-breach-not-blamed", "P:STOP>RUNNING_P2P P:RUNNING", PLAN_P2P_REQUIRE, true, 0,
     0},
    {"no-steps-no-blame", "P:STOP P:RUNNING", PLAN_P2P_REQUIRE, true, 0, 0},
    {"start-p2p", "P:STOP>RUNNING_P2P P:STOP>RUNNING_P2P", PLAN_P2P_REQUIRE, true, 0, 0},
    {"start-run", "P:RUNNING_P2P>RUNNING P:RUNNING_P2P>RUNNING", PLAN_P2P_REQUIRE, true, 0, 0},
    {"reset-every-device", "P:RESUMING>RUNNING! P:RESUMING>RUNNING!", PLAN_P2P_REQUIRE, true, 0, 0},
    {"reset-next-to-a-stopped-peer", "P:ERROR>RUNNING! P:STOP", PLAN_P2P_REQUIRE, false, 1, 0},
    {"blocked-stop-no-p2p", "N:RUNNING>STOP P:RUNNING_P2P", PLAN_P2P_BLOCKED, true, 0, 0},
    {"blocked-two-without-p2p", "N:RUNNING>STOP N:RUNNING>STOP P:RUNNING_P2P", PLAN_P2P_BLOCKED,
     true, 0, 0},
    {"blocked-p2p-device-stops-first", "N:RUNNING P:RUNNING_P2P>STOP", PLAN_P2P_BLOCKED, false, 1,
     0},
};

static void parse_span(const char *text, InvariantSpan *span)
{
        g_autofree char *copy = g_strdup(text);
        g_auto(GStrv) states = NULL;
        char *colon = strchr(copy, ':');
        size_t len;

        g_assert_nonnull(colon);
        *colon = '\0';
        span->flags = copy[0] == 'P' ? P2P : NOP2P;
        len = strlen(colon + 1);
        span->discards = len > 0 && colon[len] == '!';
        if (span->discards)
                colon[len] = '\0';
        states = g_strsplit(colon + 1, ">", -1);
        span->n_states = 0;
        for (char **s = states; *s; s++)
                span->states[span->n_states++] = st(*s);
}

static void test_phase(gconstpointer data)
{
        const PhaseCase *c = data;
        g_auto(GStrv) parts = g_strsplit(c->spans, " ", -1);
        InvariantSpan spans[8] = {0};
        InvariantConflict conflict = {0};
        size_t n = 0;

        for (char **p = parts; *p; p++)
                parse_span(*p, &spans[n++]);
        g_assert_cmpint(invariant_phase_ok(spans, n, c->mode, &conflict), ==, c->ok);
        if (c->ok)
                return;
        g_assert_cmpuint(conflict.victim, ==, (size_t)c->victim);
        g_assert_cmpuint(conflict.initiator, ==, (size_t)c->initiator);
        g_assert_true(invariant_state_is_stopped(conflict.victim_state));
        g_assert_true(mig_state_initiates_p2p(conflict.initiator_state));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        for (size_t i = 0; i < G_N_ELEMENTS(pair_cases); i++) {
                g_autofree char *path = g_strdup_printf("/invariant/pair/%s", pair_cases[i].name);
                g_test_add_data_func(path, &pair_cases[i], test_pair);
        }
        g_test_add_func("/invariant/allows/names-the-peer", test_allows_names_the_peer);
        for (size_t i = 0; i < G_N_ELEMENTS(phase_cases); i++) {
                g_autofree char *path = g_strdup_printf("/invariant/phase/%s", phase_cases[i].name);
                g_test_add_data_func(path, &phase_cases[i], test_phase);
        }
        return g_test_run();
}
