/* vfio-capchain: the IOVA ranges in VFIO_IOMMU_GET_INFO's capability chain, from a buffer */
#include "devices/vfio-capchain.h"

#include <errno.h>
#include <string.h>

#include "core/iova.h"

#define CAP_HEADER_SIZE     8u  /* struct vfio_info_cap_header */
#define IOVA_CAP_FIXED_SIZE 16u /* header, nr_iovas, reserved */
#define IOVA_RANGE_SIZE     16u /* struct vfio_iova_range */

/* The buffer may be any alignment (a fuzzer's is): read fields byte-wise, host order as the
 * kernel wrote them. */
static uint16_t read_u16(const uint8_t *p)
{
        uint16_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static uint32_t read_u32(const uint8_t *p)
{
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

static uint64_t read_u64(const uint8_t *p)
{
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
}

/* The capability at off, known to hold at least its header. */
static int parse_iova_cap(const uint8_t *buf, size_t len, size_t off, GArray **ret)
{
        g_autoptr(GArray) ranges = NULL;
        uint32_t nr;
        size_t room;

        if (len - off < IOVA_CAP_FIXED_SIZE)
                return -EBADMSG;
        nr = read_u32(buf + off + CAP_HEADER_SIZE);
        /* Division, not multiplication: a huge nr_iovas must not wrap around. */
        room = (len - off - IOVA_CAP_FIXED_SIZE) / IOVA_RANGE_SIZE;
        if (nr > room)
                return -EBADMSG;
        ranges = g_array_sized_new(false, false, sizeof(IovaRange), nr);
        for (uint32_t i = 0; i < nr; i++) {
                const uint8_t *r = buf + off + IOVA_CAP_FIXED_SIZE + (size_t)i * IOVA_RANGE_SIZE;
                IovaRange range = {read_u64(r), read_u64(r + 8)};

                if (range.start > range.end)
                        return -EBADMSG;
                g_array_append_val(ranges, range);
        }
        *ret = g_steal_pointer(&ranges);
        return 0;
}

int vfio_capchain_iova_ranges(const void *data, size_t len, GArray **ret)
{
        const uint8_t *buf = data;
        size_t off, min_next = VFIO_CAPCHAIN_INFO_SIZE;

        if (!buf || len < VFIO_CAPCHAIN_INFO_SIZE)
                return -EBADMSG;
        if (!(read_u32(buf + 4) & VFIO_CAPCHAIN_FLAG_CAPS))
                return -ENODATA;
        off = read_u32(buf + 16);
        /*
         * Each capability must start after the fixed header and after the previous
         * capability's header: the kernel appends them in order, and the rule alone bounds
         * the walk to len / 8 steps whatever the next fields say.
         */
        while (off != 0) {
                uint32_t next;

                if (off < min_next || off > len || len - off < CAP_HEADER_SIZE)
                        return -EBADMSG;
                if (read_u16(buf + off) == VFIO_CAPCHAIN_IOVA_RANGE_ID)
                        return parse_iova_cap(buf, len, off, ret);
                next = read_u32(buf + off + 4);
                min_next = off + CAP_HEADER_SIZE;
                off = next;
        }
        return -ENODATA;
}
