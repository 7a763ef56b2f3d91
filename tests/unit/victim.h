/* victim.h: the root 0600 file a test's planted links point at, and the check that nothing
 * wrote through them (test-safe-dir, test-sim, test-journal). */
#pragma once

#include <glib.h>
#include <sys/stat.h>

#define VICTIM_TEXT "root's secret\n"

static inline void victim_create(const char *path)
{
        g_assert_true(g_file_set_contents(path, VICTIM_TEXT, -1, NULL));
        g_assert_cmpint(chmod(path, 0600), ==, 0);
}

/* Same text, same mode, no second name. */
static inline void victim_assert_untouched(const char *path)
{
        g_autofree char *text = NULL;
        struct stat st;

        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        g_assert_cmpstr(text, ==, VICTIM_TEXT);
        g_assert_cmpint(stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0600);
        g_assert_cmpuint(st.st_nlink, ==, 1);
}
