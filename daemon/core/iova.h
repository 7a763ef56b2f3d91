/* iova: IOVA range arithmetic, inclusive ends, the whole 64-bit space without overflow */
#pragma once

/*
 * Pure logic. A range is [start, end] with end inclusive, as sysfs reserved_regions and
 * VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE write them, so [0, UINT64_MAX] is the whole space
 * and no computation may form end + 1 without checking for overflow.
 *
 * Errors: 0 or negative errno (-EINVAL for start > end, -ENOMEM never: glib aborts).
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct IovaRange {
        uint64_t start, end; /* inclusive */
} IovaRange;

/* Appends [start, end]; -EINVAL (and nothing appended) when start > end. */
int iova_ranges_add(GArray *ranges /* IovaRange */, uint64_t start, uint64_t end);
/* Sorts and merges overlapping and adjacent ranges in place. Entries with start > end
 * describe no addresses and are dropped. */
void iova_ranges_normalize(GArray *ranges /* IovaRange */);
/* The parts of base not covered by any of cut: a new normalized array. */
GArray *iova_ranges_subtract(const GArray *base, const GArray *cut);
/* Both normalized and equal: the same set of addresses (compared on normalized copies, so
 * the inputs need not be normalized and are left alone). */
bool iova_ranges_equal(const GArray *a, const GArray *b);
/* Every byte of want lies in have. */
bool iova_ranges_cover(const GArray *have, const GArray *want);
/* "0x0-0xfedfffff,0xfef00000-0xffffffffffffffff" into a new string, in the array's order;
 * "" for no ranges. */
char *iova_ranges_format(const GArray *ranges);
GArray *iova_ranges_new(void);
