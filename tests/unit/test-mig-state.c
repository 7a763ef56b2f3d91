/* test-mig-state: the path function reproduces the kernel's walk for every row of
 * tests/data/vfio-fsm-paths.tsv (copied from shared/reference) */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/mig-state.h"

static void test_every_reference_row(void)
{
        g_autofree char *text = NULL;
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) lines = NULL;
        unsigned rows = 0, mismatches = 0;

        g_assert_true(g_file_get_contents(TEST_DATA_DIR "/vfio-fsm-paths.tsv", &text, NULL, &error));
        g_assert_no_error(error);
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) col = NULL;
                uint32_t flags;
                enum mig_state from, to, path[MIG_PATH_MAX];
                size_t len = 0;
                char got[256];
                int r;

                if (**l == '#' || **l == '\0')
                        continue;
                col = g_strsplit(*l, "\t", -1);
                g_assert_cmpuint(g_strv_length(col), ==, 4);
                g_assert_cmpint(mig_flags_from_string(col[0], &flags), ==, 0);
                g_assert_cmpint(mig_state_from_string(col[1], &from), ==, 0);
                g_assert_cmpint(mig_state_from_string(col[2], &to), ==, 0);
                r = mig_path(flags, from, to, path, &len);
                if (r < 0)
                        g_strlcpy(got, r == -EINVAL ? "EINVAL" : "OTHER", sizeof(got));
                else {
                        mig_path_format(path, len, got, sizeof(got));
                        g_strdelimit(got, ">", ' ');
                }
                if (strcmp(got, col[3]) != 0) {
                        g_test_message("%s %s->%s: expected '%s', got '%s'", col[0], col[1],
                                       col[2], col[3], got);
                        mismatches++;
                }
                rows++;
        }
        g_assert_cmpuint(rows, ==, 147); /* 4 flag sets x supported states x 7 targets */
        g_assert_cmpuint(mismatches, ==, 0);
}

static void test_stop_copy_to_pre_copy_is_refused(void)
{
        enum mig_state path[MIG_PATH_MAX];
        size_t len;
        uint32_t all = MIG_FLAGS_KNOWN;

        g_assert_cmpint(mig_path(all, MIG_STATE_STOP_COPY, MIG_STATE_PRE_COPY, path, &len), ==,
                        -EINVAL);
        g_assert_cmpint(mig_path(all, MIG_STATE_STOP_COPY, MIG_STATE_PRE_COPY_P2P, path, &len), ==,
                        -EINVAL);
}

static void test_unsupported_states_are_refused(void)
{
        enum mig_state path[MIG_PATH_MAX];
        size_t len;

        /* A device that cannot migrate (flags 0) supports no state at all. */
        g_assert_cmpint(mig_path(0, MIG_STATE_RUNNING, MIG_STATE_STOP, path, &len), ==, -EINVAL);
        /* ERROR is never requestable; out-of-range values are refused, not indexed. */
        g_assert_cmpint(mig_path(MIG_FLAGS_KNOWN, MIG_STATE_RUNNING, MIG_STATE_ERROR, path, &len),
                        ==, -EINVAL);
        g_assert_cmpint(mig_path(MIG_FLAGS_KNOWN, MIG_STATE_RUNNING, (enum mig_state)42, path, &len),
                        ==, -EINVAL);
        g_assert_false(mig_state_supported(MIG_FLAG_STOP_COPY, MIG_STATE_RUNNING_P2P));
}

static void test_same_state_is_a_path_of_one(void)
{
        enum mig_state path[MIG_PATH_MAX];
        size_t len = 0;

        g_assert_cmpint(mig_path(MIG_FLAG_STOP_COPY, MIG_STATE_RUNNING, MIG_STATE_RUNNING, path, &len),
                        ==, 0);
        g_assert_cmpuint(len, ==, 1);
        g_assert_cmpint(path[0], ==, MIG_STATE_RUNNING);
}

static void test_names_round_trip(void)
{
        for (unsigned s = 0; s < MIG_STATE_COUNT; s++) {
                enum mig_state back;
                g_assert_cmpint(mig_state_from_string(mig_state_to_string(s), &back), ==, 0);
                g_assert_cmpint(back, ==, s);
        }
        for (uint32_t f = 0; f <= MIG_FLAGS_KNOWN; f++) {
                uint32_t back;
                g_assert_cmpint(mig_flags_from_string(mig_flags_to_string(f), &back), ==, 0);
                g_assert_cmpuint(back, ==, f);
        }
}

static void test_bad_names_are_refused(void)
{
        enum mig_state s;
        uint32_t f;

        g_assert_cmpint(mig_state_from_string("RUNNIN", &s), ==, -EINVAL);
        g_assert_cmpint(mig_state_from_string(NULL, &s), ==, -EINVAL);
        g_assert_cmpint(mig_flags_from_string("STOP_COPY|NDMA", &f), ==, -EINVAL);
        g_assert_cmpint(mig_flags_from_string("", &f), ==, -EINVAL);
        g_assert_cmpint(mig_flags_from_string("8", &f), ==, -EINVAL);
        g_assert_cmpstr(mig_flags_to_string(8), ==, "UNKNOWN");
        g_assert_cmpstr(mig_state_to_string((enum mig_state)9), ==, "INVALID");
}

static void test_data_fd_arcs(void)
{
        g_assert_true(mig_arc_opens_data_fd(MIG_STATE_STOP, MIG_STATE_STOP_COPY));
        g_assert_true(mig_arc_opens_data_fd(MIG_STATE_STOP, MIG_STATE_RESUMING));
        g_assert_true(mig_arc_opens_data_fd(MIG_STATE_RUNNING, MIG_STATE_PRE_COPY));
        g_assert_true(mig_arc_opens_data_fd(MIG_STATE_RUNNING_P2P, MIG_STATE_PRE_COPY_P2P));
        /* PRE_COPY -> STOP_COPY keeps the session's fd. */
        g_assert_false(mig_arc_opens_data_fd(MIG_STATE_PRE_COPY_P2P, MIG_STATE_STOP_COPY));
        g_assert_false(mig_arc_opens_data_fd(MIG_STATE_RUNNING, MIG_STATE_RUNNING_P2P));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/mig-state/every-reference-row", test_every_reference_row);
        g_test_add_func("/mig-state/stop-copy-to-pre-copy-refused", test_stop_copy_to_pre_copy_is_refused);
        g_test_add_func("/mig-state/unsupported-states-refused", test_unsupported_states_are_refused);
        g_test_add_func("/mig-state/same-state-path-of-one", test_same_state_is_a_path_of_one);
        g_test_add_func("/mig-state/names-round-trip", test_names_round_trip);
        g_test_add_func("/mig-state/bad-names-refused", test_bad_names_are_refused);
        g_test_add_func("/mig-state/data-fd-arcs", test_data_fd_arcs);
        return g_test_run();
}
