/* sysfs-parse: the text of sysfs attributes and names, parsed from buffers */
#pragma once

/*
 * Pure functions over a buffer and its length (no NUL needed, embedded NULs are garbage), so
 * the fuzzer reaches them directly. Each accepts exactly what the kernel writes, give or take
 * a trailing newline, and refuses the rest: a value that is nearly right is still odd.
 *
 * Errors: 0 or negative errno (-EINVAL malformed, -ERANGE a number above its maximum).
 */

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/host.h"

/* Where a reserved_regions text went wrong: the line (1-based, and where it lies in the
 * text, without its newline) and a phrase saying what is wrong with it. */
typedef struct SysfsParseError {
        unsigned line;
        size_t offset, length;
        const char *reason; /* static */
} SysfsParseError;

/*
 * A reserved_regions file: lines "0x<start> 0x<end> <type>" (end inclusive). Any type word is
 * taken (every type is excluded from the IOVA space alike, and a newer kernel may add types).
 * On success *ret holds the regions in file order (HostRegion, types owned by the array).
 */
int sysfs_parse_reserved_regions(const char *text, size_t len, GArray **ret, SysfsParseError *err);
/* A number file such as vendor, device or class: "0x1af4" and an optional newline. */
int sysfs_parse_hex(const char *text, size_t len, uint64_t max, uint64_t *ret);
/* A one-word file such as an IOMMU group's type: [A-Za-z0-9_-]{1,64}, optional newline. */
int sysfs_parse_word(const char *text, size_t len, char **ret);

/* "12": the decimal name of an IOMMU group directory. */
bool sysfs_name_is_group_id(const char *name);
/* "0000:06:0d.0" (domains above 0xffff, as VMD creates, have more digits). */
bool sysfs_name_is_pci_address(const char *name);
/* "vfio3": a VFIO device cdev under .../vfio-dev/. */
bool sysfs_name_is_vfio_cdev(const char *name);
/* Valid UTF-8 without control characters, 1 to 255 bytes: safe to put on the bus and into
 * a log line as it is. */
bool sysfs_name_is_printable(const char *name);
