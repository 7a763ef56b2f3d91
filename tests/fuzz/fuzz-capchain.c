/* fuzz-capchain: libFuzzer target for the VFIO_IOMMU_GET_INFO capability-chain walker
 *
 * The input is the buffer the kernel would have filled. Every input is either refused
 * (-EBADMSG, -ENODATA) or yields ranges that lie inside it with start <= end; never a read
 * out of bounds, a loop, a crash or a leak.
 */
#include <errno.h>
#include <glib.h>
#include <stdint.h>

#include "core/iova.h"
#include "devices/vfio-capchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        GArray *ranges = NULL;
        int r;

        r = vfio_capchain_iova_ranges(data, size, &ranges);
        if (r < 0) {
                if ((r != -EBADMSG && r != -ENODATA) || ranges)
                        __builtin_trap();
                return 0;
        }
        if (!ranges || (size_t)ranges->len * 16 + VFIO_CAPCHAIN_INFO_SIZE + 16 > size)
                __builtin_trap();
        for (guint i = 0; i < ranges->len; i++)
                if (g_array_index(ranges, IovaRange, i).start >
                    g_array_index(ranges, IovaRange, i).end)
                        __builtin_trap();
        g_array_unref(ranges);
        return 0;
}
