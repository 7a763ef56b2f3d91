/* fuzz-sysfs: libFuzzer target for the sysfs text parsers and the IOVA arithmetic behind them
 *
 * Every input goes through each parser. reserved_regions either fails naming a line that
 * exists, or gives regions with start <= end that survive a round trip through the kernel's
 * own format, and whose complement in the 64-bit space neither overlaps them nor leaves a
 * byte out. The number, word and name parsers must simply never fault.
 */
#include <glib.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "core/iova.h"
#include "host/sysfs-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static GArray *ranges_of(const GArray *regions)
{
        GArray *a = iova_ranges_new();

        for (guint i = 0; i < regions->len; i++)
                g_array_append_val(a, g_array_index(regions, HostRegion, i).range);
        return a;
}

/* The IOVA space left is disjoint from the regions and, with them, the whole space. */
static void check_complement(const GArray *regions)
{
        g_autoptr(GArray) reserved = ranges_of(regions);
        g_autoptr(GArray) full = iova_ranges_new();
        g_autoptr(GArray) valid = NULL;
        g_autoptr(GArray) overlap = NULL;
        g_autoptr(GArray) both = iova_ranges_new();

        iova_ranges_add(full, 0, UINT64_MAX);
        valid = iova_ranges_subtract(full, reserved);
        overlap = iova_ranges_subtract(valid, reserved);
        if (!iova_ranges_equal(overlap, valid))
                __builtin_trap();
        g_array_append_vals(both, valid->data, valid->len);
        g_array_append_vals(both, reserved->data, reserved->len);
        if (!iova_ranges_equal(both, full) || !iova_ranges_cover(both, full))
                __builtin_trap();
}

static void check_round_trip(const GArray *regions)
{
        GString *text = g_string_new(NULL);
        g_autoptr(GArray) again = NULL;
        SysfsParseError err;

        for (guint i = 0; i < regions->len; i++) {
                const HostRegion *r = &g_array_index(regions, HostRegion, i);
                if (r->range.start > r->range.end || !r->type || !*r->type)
                        __builtin_trap();
                g_string_append_printf(text, "0x%016" PRIx64 " 0x%016" PRIx64 " %s\n",
                                       r->range.start, r->range.end, r->type);
        }
        if (sysfs_parse_reserved_regions(text->str, text->len, &again, &err) < 0 ||
            again->len != regions->len)
                __builtin_trap();
        for (guint i = 0; i < regions->len; i++) {
                const HostRegion *a = &g_array_index(regions, HostRegion, i);
                const HostRegion *b = &g_array_index(again, HostRegion, i);
                if (a->range.start != b->range.start || a->range.end != b->range.end ||
                    strcmp(a->type, b->type) != 0)
                        __builtin_trap();
        }
        g_string_free(text, TRUE);
}

static void fuzz_reserved_regions(const char *text, size_t size)
{
        g_autoptr(GArray) regions = NULL;
        SysfsParseError err = {0};

        if (sysfs_parse_reserved_regions(text, size, &regions, &err) < 0) {
                if (err.line == 0 || !err.reason || err.offset + err.length > size ||
                    memchr(text + err.offset, '\n', err.length))
                        __builtin_trap();
                return;
        }
        check_round_trip(regions);
        check_complement(regions);
}

static void fuzz_values(const char *text, size_t size)
{
        g_autofree char *word = NULL;
        g_autofree char *name = g_strndup(size ? text : "", size);
        uint64_t v;

        if (sysfs_parse_hex(text, size, 0xffff, &v) == 0 && v > 0xffff)
                __builtin_trap();
        sysfs_parse_hex(text, size, UINT64_MAX, &v);
        if (sysfs_parse_word(text, size, &word) == 0 && strlen(word) == 0)
                __builtin_trap();
        sysfs_name_is_group_id(name);
        sysfs_name_is_pci_address(name);
        sysfs_name_is_vfio_cdev(name);
        sysfs_name_is_printable(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        fuzz_reserved_regions((const char *)data, size);
        fuzz_values((const char *)data, size);
        return 0;
}
