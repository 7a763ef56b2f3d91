/* iova: IOVA range arithmetic, inclusive ends, the whole 64-bit space without overflow */
#include <errno.h>
#include <inttypes.h>

#include "core/iova.h"

#define RANGE(a, i) g_array_index((a), IovaRange, (i))

GArray *iova_ranges_new(void)
{
        return g_array_new(FALSE, FALSE, sizeof(IovaRange));
}

int iova_ranges_add(GArray *ranges, uint64_t start, uint64_t end)
{
        IovaRange r = {.start = start, .end = end};

        if (start > end)
                return -EINVAL;
        g_array_append_val(ranges, r);
        return 0;
}

static int range_compare(gconstpointer a, gconstpointer b)
{
        const IovaRange *x = a, *y = b;

        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        if (x->end != y->end)
                return x->end < y->end ? -1 : 1;
        return 0;
}

/* next starts inside cur or right after it; next->start > cur->end implies next->start >= 1,
 * so next->start - 1 cannot wrap, and cur->end + 1 (which can) is never formed. */
static bool range_touches(const IovaRange *cur, const IovaRange *next)
{
        return next->start <= cur->end || next->start - 1 == cur->end;
}

void iova_ranges_normalize(GArray *ranges)
{
        guint out = 0;

        g_array_sort(ranges, range_compare);
        for (guint i = 0; i < ranges->len; i++) {
                IovaRange r = RANGE(ranges, i);

                if (r.start > r.end)
                        continue;
                if (out > 0 && range_touches(&RANGE(ranges, out - 1), &r)) {
                        IovaRange *cur = &RANGE(ranges, out - 1);
                        cur->end = MAX(cur->end, r.end);
                        continue;
                }
                RANGE(ranges, out++) = r;
        }
        g_array_set_size(ranges, out);
}

static GArray *ranges_normalized_copy(const GArray *ranges)
{
        GArray *copy = iova_ranges_new();

        g_array_append_vals(copy, ranges->data, ranges->len);
        iova_ranges_normalize(copy);
        return copy;
}

/* Appends the parts of b that no cut covers. cuts is normalized; *next is the first cut that
 * can still reach b, kept across calls because b comes in ascending order. */
static void subtract_one(GArray *out, IovaRange b, const GArray *cuts, guint *next)
{
        uint64_t from = b.start;

        while (*next < cuts->len && RANGE(cuts, *next).end < b.start)
                (*next)++;
        for (guint j = *next; j < cuts->len; j++) {
                const IovaRange *c = &RANGE(cuts, j);

                if (c->start > b.end)
                        break;
                if (c->start > from)
                        iova_ranges_add(out, from, c->start - 1);
                /* Covered up to b.end, which may be UINT64_MAX: c->end + 1 is never formed. */
                if (c->end >= b.end)
                        return;
                from = MAX(from, c->end + 1); /* c->end < b.end, so no overflow */
        }
        iova_ranges_add(out, from, b.end);
}

GArray *iova_ranges_subtract(const GArray *base, const GArray *cut)
{
        g_autoptr(GArray) b = ranges_normalized_copy(base);
        g_autoptr(GArray) c = ranges_normalized_copy(cut);
        GArray *out = iova_ranges_new();
        guint next = 0;

        for (guint i = 0; i < b->len; i++)
                subtract_one(out, RANGE(b, i), c, &next);
        return out;
}

bool iova_ranges_equal(const GArray *a, const GArray *b)
{
        g_autoptr(GArray) x = ranges_normalized_copy(a);
        g_autoptr(GArray) y = ranges_normalized_copy(b);

        if (x->len != y->len)
                return false;
        for (guint i = 0; i < x->len; i++)
                if (range_compare(&RANGE(x, i), &RANGE(y, i)) != 0)
                        return false;
        return true;
}

bool iova_ranges_cover(const GArray *have, const GArray *want)
{
        g_autoptr(GArray) missing = iova_ranges_subtract(want, have);

        return missing->len == 0;
}

char *iova_ranges_format(const GArray *ranges)
{
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < ranges->len; i++)
                g_string_append_printf(s, "%s0x%" PRIx64 "-0x%" PRIx64, i ? "," : "",
                                       RANGE(ranges, i).start, RANGE(ranges, i).end);
        return g_string_free(s, FALSE);
}
