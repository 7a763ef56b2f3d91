/* vfio-uapi: the kernel's VFIO and iommufd uAPI, with what Debian 12's 6.1 headers lack */
#pragma once

/*
 * Private to the kernel backend. <linux/vfio.h> of Linux 6.1 has migration v2 and DMA logging
 * but not PRE_COPY (6.2), MIG_DATA_SIZE (6.2), the PRECOPY_INFO ioctl (6.2), the device cdev
 * ioctls (6.6) or <linux/iommufd.h> (6.2). Each definition below is copied from the upstream
 * uAPI (include/uapi/linux/vfio.h, include/uapi/linux/iommufd.h) and guarded, so building
 * against newer headers uses theirs. The structs are only used with argsz/size set to their
 * own sizeof, which every later kernel accepts (the uAPI only ever grows at the end).
 */

#include <linux/types.h>
#include <linux/vfio.h>

/* ---- migration (6.2) ---- */

#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif

/* enum vfio_device_mig_state gained these in 6.2; the enum itself cannot be extended. */
#ifndef VFIO_DEVICE_STATE_PRE_COPY
#define VFIO_DEVICE_STATE_PRE_COPY 6
#endif
#ifndef VFIO_DEVICE_STATE_PRE_COPY_P2P
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7
#endif

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
struct vfio_device_feature_mig_data_size {
        __aligned_u64 stop_copy_length;
};
#endif

#ifndef VFIO_MIG_GET_PRECOPY_INFO
struct vfio_precopy_info {
        __u32 argsz;
        __u32 flags;
        __aligned_u64 initial_bytes;
        __aligned_u64 dirty_bytes;
};
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif

/* ---- the device cdev, /dev/vfio/devices/vfioX (6.6) ---- */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
        __u32 argsz;
        __u32 flags;
        __s32 iommufd;
        __u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
struct vfio_device_attach_iommufd_pt {
        __u32 argsz;
        __u32 flags;
        __u32 pt_id;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

/* ---- iommufd, /dev/iommu (6.2) ---- */

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')
#endif

#ifndef IOMMU_IOAS_ALLOC
struct iommu_ioas_alloc {
        __u32 size;
        __u32 flags;
        __u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
#endif

#ifndef IOMMU_IOAS_IOVA_RANGES
struct iommu_iova_range {
        __aligned_u64 start;
        __aligned_u64 last; /* inclusive */
};
/* -EMSGSIZE with num_iovas set to the number needed when the array is too small. */
struct iommu_ioas_iova_ranges {
        __u32 size;
        __u32 ioas_id;
        __u32 num_iovas;
        __u32 __reserved;
        __aligned_u64 allowed_iovas; /* user pointer to struct iommu_iova_range[num_iovas] */
        __aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, 0x84)
#endif

/* The values the reference (shared/reference/vfio-uapi.md) states, checked at build time. */
_Static_assert(VFIO_DEVICE_FEATURE == 0x3B75, "VFIO_DEVICE_FEATURE");
_Static_assert(VFIO_IOMMU_GET_INFO == 0x3B70, "VFIO_IOMMU_GET_INFO");
_Static_assert(VFIO_DEVICE_BIND_IOMMUFD == 0x3B76, "VFIO_DEVICE_BIND_IOMMUFD");
_Static_assert(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3B77, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
_Static_assert(VFIO_MIG_GET_PRECOPY_INFO == 0x3B79, "VFIO_MIG_GET_PRECOPY_INFO");
_Static_assert(IOMMU_IOAS_ALLOC == 0x3B81, "IOMMU_IOAS_ALLOC");
_Static_assert(IOMMU_IOAS_IOVA_RANGES == 0x3B84, "IOMMU_IOAS_IOVA_RANGES");
_Static_assert(sizeof(struct vfio_info_cap_header) == 8, "vfio_info_cap_header");
_Static_assert(sizeof(struct vfio_iova_range) == 16, "vfio_iova_range");
