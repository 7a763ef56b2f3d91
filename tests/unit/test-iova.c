/* test-iova: range arithmetic with inclusive ends over the whole 64-bit space
 *
 * Table-driven: every row is a test of its own, named after the behaviour it pins down. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/iova.h"

#define MAX_S "0xffffffffffffffff"

/* "0x0-0xff,0x200-0x2ff" into ranges, in the order written (not normalized): the tables
 * read like the format the module writes. */
static GArray *ranges(const char *spec)
{
        GArray *a = iova_ranges_new();
        g_auto(GStrv) parts = g_strsplit(spec, ",", -1);

        for (char **p = parts; *p && **p; p++) {
                char *dash = strchr(*p, '-');
                IovaRange r;

                g_assert_nonnull(dash);
                r.start = g_ascii_strtoull(*p, NULL, 16);
                r.end = g_ascii_strtoull(dash + 1, NULL, 16);
                g_array_append_val(a, r);
        }
        return a;
}

/* ---- normalize ---- */

typedef struct NormalizeCase {
        const char *name, *in, *out;
} NormalizeCase;

static const NormalizeCase normalize_cases[] = {
    {"empty", "", ""},
    {"one-range", "0x1000-0x1fff", "0x1000-0x1fff"},
    {"sorts", "0x3000-0x3fff,0x1000-0x1fff", "0x1000-0x1fff,0x3000-0x3fff"},
    {"adjacent-merge", "0x0-0xfff,0x1000-0x1fff", "0x0-0x1fff"},
    {"one-byte-gap-stays", "0x0-0xfff,0x1001-0x1fff", "0x0-0xfff,0x1001-0x1fff"},
    {"overlap-merges", "0x0-0x17ff,0x1000-0x1fff", "0x0-0x1fff"},
    {"contained-absorbed", "0x0-0xffff,0x1000-0x1fff", "0x0-0xffff"},
    {"duplicates", "0x10-0x20,0x10-0x20", "0x10-0x20"},
    {"single-bytes-adjacent", "0x5-0x5,0x6-0x6", "0x5-0x6"},
    {"single-bytes-apart", "0x5-0x5,0x7-0x7", "0x5-0x5,0x7-0x7"},
    {"single-byte-at-0", "0x0-0x0", "0x0-0x0"},
    {"end-at-max", "0xfffffffffffff000-" MAX_S, "0xfffffffffffff000-" MAX_S},
    {"adjacent-at-max", "0x0-0xfffffffffffffffe," MAX_S "-" MAX_S, "0x0-" MAX_S},
    {"full-space-absorbs", "0x1000-0x1fff,0x0-" MAX_S "," MAX_S "-" MAX_S, "0x0-" MAX_S},
    {"after-a-range-ending-at-max", "0x10-" MAX_S ",0x20-0x30", "0x10-" MAX_S},
    {"start-above-end-dropped", "0x2000-0x1000,0x0-0xf", "0x0-0xf"},
};

static void test_normalize(gconstpointer data)
{
        const NormalizeCase *c = data;
        g_autoptr(GArray) a = ranges(c->in);
        g_autofree char *got = NULL;

        iova_ranges_normalize(a);
        got = iova_ranges_format(a);
        g_assert_cmpstr(got, ==, c->out);
}

/* ---- subtract ---- */

typedef struct SubtractCase {
        const char *name, *base, *cut, *out;
} SubtractCase;

static const SubtractCase subtract_cases[] = {
    {"nothing-cut", "0x0-" MAX_S, "", "0x0-" MAX_S},
    {"msi-window-from-full-space", "0x0-" MAX_S, "0xfee00000-0xfeefffff",
     "0x0-0xfedfffff,0xfef00000-" MAX_S},
    {"at-the-start", "0x0-" MAX_S, "0x0-0xfff", "0x1000-" MAX_S},
    {"at-the-end", "0x0-" MAX_S, "0xfffffffffffff000-" MAX_S, "0x0-0xffffffffffffefff"},
    {"single-byte-at-0", "0x0-" MAX_S, "0x0-0x0", "0x1-" MAX_S},
    {"single-byte-at-max", "0x0-" MAX_S, MAX_S "-" MAX_S, "0x0-0xfffffffffffffffe"},
    {"both-ends", "0x0-" MAX_S, "0x0-0x0," MAX_S "-" MAX_S, "0x1-0xfffffffffffffffe"},
    {"everything", "0x0-" MAX_S, "0x0-" MAX_S, ""},
    {"cut-larger-than-base", "0x1000-0x1fff", "0x0-0xffff", ""},
    {"cuts-beside-base", "0x1000-0x1fff", "0x2000-0x2fff,0x0-0xfff", "0x1000-0x1fff"},
    {"overlapping-cuts", "0x0-0xffff", "0x1000-0x2fff,0x2000-0x3fff", "0x0-0xfff,0x4000-0xffff"},
    {"adjacent-cuts", "0x0-0xffff", "0x1000-0x1fff,0x2000-0x2fff", "0x0-0xfff,0x3000-0xffff"},
    {"one-cut-across-two-bases", "0x0-0xfff,0x2000-0x2fff", "0x800-0x27ff",
     "0x0-0x7ff,0x2800-0x2fff"},
    {"unsorted-inputs", "0x2000-0x2fff,0x0-0xfff", "0x2800-0x28ff,0x100-0x1ff",
     "0x0-0xff,0x200-0xfff,0x2000-0x27ff,0x2900-0x2fff"},
    {"single-byte-base-cut", "0x5-0x5", "0x5-0x5", ""},
    {"single-byte-base-between-cuts", "0x5-0x5", "0x4-0x4,0x6-0x6", "0x5-0x5"},
    {"empty-base", "", "0x0-0xfff", ""},
    {"x86-reserved-regions", "0x0-" MAX_S, "0xfee00000-0xfeefffff,0x0-0xfff,0xfed90000-0xfed90fff",
     "0x1000-0xfed8ffff,0xfed91000-0xfedfffff,0xfef00000-" MAX_S},
};

static void test_subtract(gconstpointer data)
{
        const SubtractCase *c = data;
        g_autoptr(GArray) base = ranges(c->base);
        g_autoptr(GArray) cut = ranges(c->cut);
        g_autoptr(GArray) out = iova_ranges_subtract(base, cut);
        g_autofree char *got = iova_ranges_format(out);

        g_assert_cmpstr(got, ==, c->out);
}

/* ---- equal and cover ---- */

typedef struct CompareCase {
        const char *name, *a, *b;
        bool expected;
} CompareCase;

static const CompareCase equal_cases[] = {
    {"both-empty", "", "", true},
    {"same", "0x0-0xfff", "0x0-0xfff", true},
    {"split-equals-whole", "0x0-0x7ff,0x800-0xfff", "0x0-0xfff", true},
    {"order-does-not-matter", "0x800-0xfff,0x0-0x7ff", "0x0-0xfff", true},
    {"one-byte-short", "0x0-0xfff", "0x0-0xffe", false},
    {"max-byte-missing", "0x0-" MAX_S, "0x0-0xfffffffffffffffe", false},
    {"empty-and-not", "0x0-0xfff", "", false},
};

static void test_equal(gconstpointer data)
{
        const CompareCase *c = data;
        g_autoptr(GArray) a = ranges(c->a);
        g_autoptr(GArray) b = ranges(c->b);
        g_autofree char *before = iova_ranges_format(a);
        g_autofree char *after = NULL;

        g_assert_cmpint(iova_ranges_equal(a, b), ==, c->expected);
        g_assert_cmpint(iova_ranges_equal(b, a), ==, c->expected);
        after = iova_ranges_format(a);
        g_assert_cmpstr(after, ==, before); /* the inputs are left alone */
}

/* a = have, b = want */
static const CompareCase cover_cases[] = {
    {"full-space-covers-max", "0x0-" MAX_S, "0x1000-0x1fff," MAX_S "-" MAX_S, true},
    {"across-adjacent-ranges", "0x0-0xfff,0x1000-0x1fff", "0x800-0x17ff", true},
    {"one-byte-missing", "0x0-0xfff,0x1001-0x1fff", "0x800-0x17ff", false},
    {"nothing-wanted", "0x0-0xfff", "", true},
    {"nothing-had", "", "0x0-0x0", false},
    {"max-byte-not-had", "0x0-0xfffffffffffffffe", MAX_S "-" MAX_S, false},
};

static void test_cover(gconstpointer data)
{
        const CompareCase *c = data;
        g_autoptr(GArray) have = ranges(c->a);
        g_autoptr(GArray) want = ranges(c->b);

        g_assert_cmpint(iova_ranges_cover(have, want), ==, c->expected);
}

/* ---- format and add ---- */

typedef struct FormatCase {
        const char *name;
        IovaRange r[2];
        guint n;
        const char *out;
} FormatCase;

static const FormatCase format_cases[] = {
    {"none", {{0, 0}}, 0, ""},
    {"single-byte", {{5, 5}}, 1, "0x5-0x5"},
    {"full-space", {{0, UINT64_MAX}}, 1, "0x0-" MAX_S},
    {"array-order",
     {{0xfef00000, UINT64_MAX}, {0, 0xfedfffff}},
     2,
     "0xfef00000-" MAX_S ",0x0-0xfedfffff"},
};

static void test_format(gconstpointer data)
{
        const FormatCase *c = data;
        g_autoptr(GArray) a = iova_ranges_new();
        g_autofree char *got = NULL;

        g_array_append_vals(a, c->r, c->n);
        got = iova_ranges_format(a);
        g_assert_cmpstr(got, ==, c->out);
}

static void test_add_refuses_start_above_end(void)
{
        g_autoptr(GArray) a = iova_ranges_new();

        g_assert_cmpint(iova_ranges_add(a, 0x2000, 0x1fff), ==, -EINVAL);
        g_assert_cmpuint(a->len, ==, 0);
}

static void test_add_takes_single_bytes_at_both_ends(void)
{
        g_autoptr(GArray) a = iova_ranges_new();
        g_autofree char *got = NULL;

        g_assert_cmpint(iova_ranges_add(a, UINT64_MAX, UINT64_MAX), ==, 0);
        g_assert_cmpint(iova_ranges_add(a, 0, 0), ==, 0);
        got = iova_ranges_format(a);
        g_assert_cmpstr(got, ==, MAX_S "-" MAX_S ",0x0-0x0");
}

/* Registers each row of a table as "/iova/GROUP/ROW". */
#define ADD_TABLE(group, table, fn)                                                                \
        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {                                         \
                g_autofree char *path = g_strdup_printf("/iova/%s/%s", group, table[i].name);      \
                g_test_add_data_func(path, &table[i], fn);                                         \
        }

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        ADD_TABLE("normalize", normalize_cases, test_normalize);
        ADD_TABLE("subtract", subtract_cases, test_subtract);
        ADD_TABLE("equal", equal_cases, test_equal);
        ADD_TABLE("cover", cover_cases, test_cover);
        ADD_TABLE("format", format_cases, test_format);
        g_test_add_func("/iova/add/refuses-start-above-end", test_add_refuses_start_above_end);
        g_test_add_func("/iova/add/single-bytes-at-both-ends",
                        test_add_takes_single_bytes_at_both_ends);
        return g_test_run();
}
