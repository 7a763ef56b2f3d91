/* vfio-capchain: the IOVA ranges in VFIO_IOMMU_GET_INFO's capability chain, from a buffer */
#pragma once

/*
 * Pure: no I/O, no kernel headers in the interface, so the unit tests and the fuzzer feed it
 * any bytes. The buffer is what the kernel filled: struct vfio_iommu_type1_info (24 bytes:
 * argsz, flags, iova_pgsizes, cap_offset, pad) followed by capabilities, each starting with
 * {u16 id; u16 version; u32 next}, where next is an offset from the start of the buffer and
 * 0 ends the chain. Every offset, length and count is checked against the buffer: a chain
 * from a buggy kernel (or a fuzzer) is refused, never followed out of bounds or in a loop.
 *
 * Errors: 0, or negative errno:
 *   -ENODATA  the buffer is well formed but has no VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
 *             (no VFIO_IOMMU_INFO_CAPS flag, cap_offset 0, or no capability with id 1)
 *   -EBADMSG  malformed: truncated header or capability, an offset into the fixed header,
 *             outside the buffer or not after the previous capability, nr_iovas beyond the
 *             buffer, a range whose start lies after its end
 */

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

/* sizeof(struct vfio_iommu_type1_info) with cap_offset, as the kernel lays it out. */
#define VFIO_CAPCHAIN_INFO_SIZE 24u
/* VFIO_IOMMU_INFO_CAPS and VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE. */
#define VFIO_CAPCHAIN_FLAG_CAPS     (1u << 1)
#define VFIO_CAPCHAIN_IOVA_RANGE_ID 1u

/* The ranges as the kernel lists them (IovaRange, inclusive ends, in its order) in *ret. */
int vfio_capchain_iova_ranges(const void *buf, size_t len, GArray **ret);
