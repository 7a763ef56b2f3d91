/* vfio-kernel: real VFIO devices through the kernel's migration uAPI */
#include "devices/vfio-kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/vfio-capchain.h"
#include "devices/vfio-uapi.h"
#include "host/host.h"
#include "log.h"
#include "util.h"

/* Larger answers from VFIO_IOMMU_GET_INFO or IOMMU_IOAS_IOVA_RANGES are refused, not
 * allocated: a real chain is a few hundred bytes. */
#define IOVA_INFO_MAX    (1024u * 1024u)
#define IOVA_QUERY_TRIES 4

_Static_assert(MIG_FLAG_STOP_COPY == VFIO_MIGRATION_STOP_COPY, "flag values are the kernel's");
_Static_assert(MIG_FLAG_P2P == VFIO_MIGRATION_P2P, "flag values are the kernel's");
_Static_assert(MIG_FLAG_PRE_COPY == VFIO_MIGRATION_PRE_COPY, "flag values are the kernel's");
_Static_assert((int)MIG_STATE_RUNNING_P2P == (int)VFIO_DEVICE_STATE_RUNNING_P2P, "state values");
_Static_assert((int)MIG_STATE_PRE_COPY_P2P == VFIO_DEVICE_STATE_PRE_COPY_P2P, "state values");
_Static_assert(VFIO_CAPCHAIN_INFO_SIZE == sizeof(struct vfio_iommu_type1_info), "info size");
_Static_assert(VFIO_CAPCHAIN_FLAG_CAPS == VFIO_IOMMU_INFO_CAPS, "caps flag");
_Static_assert(VFIO_CAPCHAIN_IOVA_RANGE_ID == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, "cap id");

/* One open VFIO group with its container, shared by the group's devices (a group can be
 * open once only, system-wide). Guarded by KernelBackend.lock. */
typedef struct KernelGroup {
        char *id;
        int group_fd;
        int container_fd;
        unsigned users;
} KernelGroup;

typedef struct KernelBackend {
        char *sysfs_root, *dev_root;
        GMutex lock;            /* snapshot, groups */
        HostSnapshot *snapshot; /* the last scan */
        GHashTable *groups;     /* id -> KernelGroup* */
} KernelBackend;

/* Device.backend_data. */
typedef struct KernelDevice {
        KernelBackend *kb;
        GMutex lock;        /* everything below: fds are set up on first use by any thread */
        char *bus;          /* "pci", "mdev" */
        char *group_node;   /* dev_root/vfio/N, NULL when sysfs showed none */
        char *cdev_node;    /* dev_root/vfio/devices/vfioX, NULL when none */
        int fd;             /* the device fd, -1 until first use */
        bool adopted;       /* fd came from the VMM's manager: no group or IOAS of ours */
        KernelGroup *group; /* group path */
        int iommufd;        /* cdev path */
        uint32_t ioas_id;
        bool flags_known;   /* the kernel answered VFIO_DEVICE_FEATURE_MIGRATION */
        char *error;        /* why the last open failed, for describe_error */
        char *iova_warning; /* the last mismatch logged, so it is logged once */
        bool iova_agreed;   /* agreement was logged */
} KernelDevice;

static KernelBackend *backend_of(Backend *b)
{
        return b->data;
}

static KernelDevice *kdev(Device *d)
{
        return d->backend_data;
}

/* ---- raw ioctls ---- */

static int xioctl(int fd, unsigned long request, void *arg)
{
        int r = ioctl(fd, request, arg);
        return r < 0 ? -errno : r;
}

/* VFIO_DEVICE_FEATURE with a payload of size bytes copied in and out of data. */
static int device_feature(int fd, uint32_t flags, void *data, size_t size)
{
        /* u64 storage: the payloads hold __aligned_u64 fields. */
        uint64_t buf[(sizeof(struct vfio_device_feature) + 16 + 7) / 8] = {0};
        struct vfio_device_feature *f = (struct vfio_device_feature *)buf;
        int r;

        g_assert(size <= 16);
        f->argsz = (uint32_t)(sizeof(*f) + size);
        f->flags = flags;
        if (size)
                memcpy(f->data, data, size);
        r = xioctl(fd, VFIO_DEVICE_FEATURE, f);
        if (r >= 0 && size)
                memcpy(data, f->data, size);
        return r;
}

int vfio_kernel_query_migration(int fd, uint32_t *ret_flags)
{
        struct vfio_device_feature_migration mig = {0};
        int r;

        /* A device without migration support has no mig_ops: the kernel answers -ENOTTY. */
        r = device_feature(
            fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION,
            NULL, 0);
        if (r == -ENOTTY) {
                *ret_flags = 0;
                return 0;
        }
        if (r < 0)
                return r;
        r = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, &mig,
                           sizeof(mig));
        if (r < 0)
                return r;
        *ret_flags = (uint32_t)(mig.flags & MIG_FLAGS_KNOWN);
        return 0;
}

static int mig_get(int fd, enum mig_state *ret)
{
        struct vfio_device_feature_mig_state st = {0};
        int r;

        r = device_feature(fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st,
                           sizeof(st));
        if (r < 0)
                return r;
        if (st.device_state >= MIG_STATE_COUNT)
                return -EPROTO;
        *ret = (enum mig_state)st.device_state;
        return 0;
}

/* *ret_fd: the data fd of a session-opening arc, else -1 (the kernel sets -1 itself). */
static int mig_set(int fd, enum mig_state target, int *ret_fd)
{
        struct vfio_device_feature_mig_state st = {.device_state = target, .data_fd = -1};
        int r;

        *ret_fd = -1;
        r = device_feature(fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, &st,
                           sizeof(st));
        if (r < 0)
                return r;
        *ret_fd = st.data_fd >= 0 ? st.data_fd : -1;
        return 0;
}

/* ---- opening: groups and containers ---- */

static int open_node(const char *path, int *ret)
{
        int fd = open(path, O_RDWR | O_CLOEXEC);
        struct stat st;

        if (fd < 0)
                return -errno;
        /* A regular file where a device node belongs (a test tree, a mistake) must fail here
         * with a clear error, not as a puzzling ioctl failure later. */
        if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
                close(fd);
                return -ENOTTY;
        }
        *ret = fd;
        return 0;
}

static void kernel_group_free(KernelGroup *g)
{
        closep(&g->group_fd);
        closep(&g->container_fd);
        g_free(g->id);
        g_free(g);
}

/* The container, a new one for this group: VFIO_GET_API_VERSION, type1v2, the group in it. */
static int group_attach_container(KernelBackend *kb, KernelGroup *g, const char *node, char **why)
{
        g_autofree char *path = g_build_filename(kb->dev_root, "vfio", "vfio", NULL);
        struct vfio_group_status status = {.argsz = sizeof(status)};
        int r;

        r = xioctl(g->group_fd, VFIO_GROUP_GET_STATUS, &status);
        if (r < 0) {
                *why =
                    g_strdup_printf("VFIO_GROUP_GET_STATUS on %s failed: %s", node, g_strerror(-r));
                return r;
        }
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
                *why = g_strdup_printf("IOMMU group %s is not viable: a member of the group is "
                                       "bound to a host driver; bind every member to vfio-pci "
                                       "or unbind it",
                                       g->id);
                return -EBUSY;
        }
        r = open_node(path, &g->container_fd);
        if (r < 0) {
                *why = g_strdup_printf("cannot open the VFIO container %s: %s", path,
                                       r == -ENOTTY ? "not a character device" : g_strerror(-r));
                return r;
        }
        r = xioctl(g->container_fd, VFIO_GET_API_VERSION, NULL);
        if (r != VFIO_API_VERSION) {
                *why = g_strdup_printf("%s speaks VFIO API version %d, not %d", path, r,
                                       VFIO_API_VERSION);
                return r < 0 ? r : -EPROTO;
        }
        if (xioctl(g->container_fd, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU) <=
            0) {
                *why = g_strdup_printf("%s does not offer the type1v2 IOMMU; load "
                                       "vfio_iommu_type1",
                                       path);
                return -EOPNOTSUPP;
        }
        r = xioctl(g->group_fd, VFIO_GROUP_SET_CONTAINER, &g->container_fd);
        if (r < 0) {
                *why = g_strdup_printf("VFIO_GROUP_SET_CONTAINER for %s failed: %s", node,
                                       g_strerror(-r));
                return r;
        }
        /* Only now: the IOMMU model is chosen for the groups already in the container. */
        r = xioctl(g->container_fd, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
        if (r < 0) {
                *why = g_strdup_printf("VFIO_SET_IOMMU type1v2 on %s failed: %s", path,
                                       g_strerror(-r));
                return r;
        }
        return 0;
}

/* The group's shared record, opened on first use; kb->lock held. */
static int group_get(KernelBackend *kb, const char *id, const char *node, KernelGroup **ret,
                     char **why)
{
        KernelGroup *g = g_hash_table_lookup(kb->groups, id);
        int r;

        if (g) {
                g->users++;
                *ret = g;
                return 0;
        }
        g = g_new0(KernelGroup, 1);
        g->id = g_strdup(id);
        g->group_fd = g->container_fd = -1;
        r = open_node(node, &g->group_fd);
        if (r == -EBUSY)
                *why = g_strdup_printf("VFIO group %s is open in another process, normally the "
                                       "VMM running the VM (a group can be open in one process "
                                       "only); have the VM's manager hand the device fd over "
                                       "with AttachDeviceFd (vfio-migctl attach-fd)",
                                       node);
        else if (r == -ENOTTY)
                *why = g_strdup_printf("%s is not a character device, so it is no VFIO group "
                                       "node; check --dev-root",
                                       node);
        else if (r < 0)
                *why = g_strdup_printf("cannot open VFIO group %s: %s", node, g_strerror(-r));
        if (r >= 0)
                r = group_attach_container(kb, g, node, why);
        if (r < 0) {
                kernel_group_free(g);
                return r;
        }
        g->users = 1;
        g_hash_table_insert(kb->groups, g->id, g);
        *ret = g;
        return 0;
}

static void group_put(KernelBackend *kb, KernelGroup *g)
{
        g_mutex_lock(&kb->lock);
        if (--g->users == 0)
                g_hash_table_remove(kb->groups, g->id); /* closes group, then container */
        g_mutex_unlock(&kb->lock);
}

/* kd->lock held. */
static int device_open_group(Device *d, char **why)
{
        KernelDevice *kd = kdev(d);
        KernelBackend *kb = kd->kb;
        KernelGroup *g = NULL;
        int r;

        if (!kd->group_node) {
                *why = g_strdup_printf("sysfs shows no VFIO group node for device %s (group "
                                       "%s); is it still bound to a VFIO driver?",
                                       d->info.name,
                                       d->info.iommu_group ? d->info.iommu_group : "none");
                return -ENOENT;
        }
        g_mutex_lock(&kb->lock);
        r = group_get(kb, d->info.iommu_group, kd->group_node, &g, why);
        g_mutex_unlock(&kb->lock);
        if (r < 0)
                return r;
        r = xioctl(g->group_fd, VFIO_GROUP_GET_DEVICE_FD, d->info.name);
        if (r < 0) {
                *why = g_strdup_printf("VFIO_GROUP_GET_DEVICE_FD for %s on %s failed: %s",
                                       d->info.name, kd->group_node, g_strerror(-r));
                group_put(kb, g);
                return r;
        }
        kd->fd = r;
        kd->group = g;
        return 0;
}

/* kd->lock held. The device's own iommufd context with one IOAS, as QEMU makes for it. */
static int device_open_cdev(Device *d, char **why)
{
        KernelDevice *kd = kdev(d);
        g_autofree char *iommu = g_build_filename(kd->kb->dev_root, "iommu", NULL);
        _cleanup_close_ int fd = -1, iommufd = -1;
        struct vfio_device_bind_iommufd bind = {.argsz = sizeof(bind)};
        struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
        struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof(attach)};
        int r;

        if ((r = open_node(kd->cdev_node, &fd)) < 0 || (r = open_node(iommu, &iommufd)) < 0)
                return r; /* the caller falls back to the group */
        bind.iommufd = iommufd;
        r = xioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
        if (r == -EBUSY || r == -EINVAL) {
                /* EBUSY: the group is open elsewhere; EINVAL: the cdev is bound elsewhere. */
                *why = g_strdup_printf("device %s is in use by another process, normally the "
                                       "VMM running the VM (VFIO_DEVICE_BIND_IOMMUFD on %s: %s); "
                                       "have the VM's manager hand the device fd over with "
                                       "AttachDeviceFd (vfio-migctl attach-fd)",
                                       d->info.name, kd->cdev_node, g_strerror(-r));
                return -EBUSY;
        }
        if (r >= 0)
                r = xioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc);
        if (r >= 0) {
                attach.pt_id = alloc.out_ioas_id;
                r = xioctl(fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
        }
        if (r < 0) {
                *why = g_strdup_printf("cannot bind device %s (%s) to %s: %s", d->info.name,
                                       kd->cdev_node, iommu, g_strerror(-r));
                return r;
        }
        kd->ioas_id = alloc.out_ioas_id;
        kd->iommufd = steal_fd(&iommufd);
        kd->fd = steal_fd(&fd);
        return 0;
}

/* kd->lock held: asks the kernel for the migration flags and keeps them in d->info. */
static int device_learn_flags(Device *d)
{
        KernelDevice *kd = kdev(d);
        uint32_t flags = 0;
        int r;

        r = vfio_kernel_query_migration(kd->fd, &flags);
        if (r < 0) {
                log_warning("Device %s: cannot read its VFIO migration flags: %s; asking again "
                            "on its next use.",
                            d->info.name, g_strerror(-r));
                return r;
        }
        kd->flags_known = true;
        /* Readers on other threads see the old or the new value, never a torn one. */
        __atomic_store_n(&d->info.migration_flags, flags, __ATOMIC_RELEASE);
        __atomic_store_n(&d->info.flags_unknown, false, __ATOMIC_RELEASE);
        log_debug("Device %s: VFIO migration flags %s.", d->info.name, mig_flags_to_string(flags));
        return 0;
}

/* The device fd, opened on first use; every op starts here. */
static int device_ensure_open(Device *d, int *ret_fd)
{
        KernelDevice *kd = kdev(d);
        g_autofree char *why = NULL;
        int r = 0;

        g_mutex_lock(&kd->lock);
        if (kd->fd < 0) {
                r = -ENOENT;
                if (kd->cdev_node)
                        r = device_open_cdev(d, &why);
                /* Without /dev/iommu or the cdev node the group still works. */
                if (r == -ENOENT && !why)
                        r = device_open_group(d, &why);
                if (r >= 0) {
                        g_clear_pointer(&kd->error, g_free);
                        (void)device_learn_flags(d);
                } else {
                        if (!why)
                                why = g_strdup_printf("cannot open device %s: %s", d->info.name,
                                                      g_strerror(-r));
                        /* Logged when it changes: a VM's state is read often. */
                        if (g_strcmp0(why, kd->error) != 0)
                                log_warning("Device %s: %s.", d->info.name, why);
                        g_free(kd->error);
                        kd->error = g_steal_pointer(&why);
                }
        }
        *ret_fd = kd->fd;
        g_mutex_unlock(&kd->lock);
        return r;
}

/* ---- ops ---- */

/* The device fd and its migration flags, asking the kernel again while they are unknown
 * (a probe that failed with something other than ENOTTY). */
static int device_open_with_flags(Device *d, bool refresh, int *ret_fd, uint32_t *ret_flags)
{
        KernelDevice *kd = kdev(d);
        int r;

        r = device_ensure_open(d, ret_fd);
        if (r < 0)
                return r;
        g_mutex_lock(&kd->lock);
        if (refresh || !kd->flags_known)
                r = device_learn_flags(d);
        g_mutex_unlock(&kd->lock);
        *ret_flags = __atomic_load_n(&d->info.migration_flags, __ATOMIC_ACQUIRE);
        return r;
}

static int op_query_flags(Device *d, uint32_t *ret_flags)
{
        int fd;

        return device_open_with_flags(d, true, &fd, ret_flags);
}

static int op_get_state(Device *d, enum mig_state *ret)
{
        uint32_t flags;
        int fd, r;

        r = device_open_with_flags(d, false, &fd, &flags);
        if (r < 0)
                return r;
        /* No migration support, no state machine: the device simply runs. */
        if (flags == 0) {
                *ret = MIG_STATE_RUNNING;
                return 0;
        }
        return mig_get(fd, ret);
}

/*
 * One SET: the kernel walks the path itself and hands out the data fd of the session-opening
 * arc, which is always the walk's last (saving states are never interior).
 */
static int op_set_state(Device *d, enum mig_state target, int *ret_data_fd)
{
        enum mig_state path[MIG_PATH_MAX], cur, now;
        uint32_t flags;
        size_t len;
        int fd, r;

        *ret_data_fd = -1;
        r = device_open_with_flags(d, false, &fd, &flags);
        if (r < 0)
                return r;
        if (flags == 0)
                return -ENOTTY;
        if (!mig_state_supported(flags, target))
                return -EINVAL;
        /*
         * Only a PRE_COPY target can form STOP_COPY -> PRE_COPY(_P2P), which kernels from 6.2
         * on loop on forever with the device's lock held: ask where the device is and check
         * the kernel's path first. Every other invalid request the kernel refuses at once.
         */
        if (target == MIG_STATE_PRE_COPY || target == MIG_STATE_PRE_COPY_P2P) {
                r = mig_get(fd, &cur);
                if (r < 0)
                        return r;
                if (mig_path(flags, cur, target, path, &len) < 0) {
                        log_warning("Device %s: refusing %s -> %s, which the kernel has no "
                                    "path for; nothing was sent.",
                                    d->info.name, mig_state_to_string(cur),
                                    mig_state_to_string(target));
                        return -EINVAL;
                }
        }
        r = mig_set(fd, target, ret_data_fd);
        if (r < 0) {
                /* The uAPI: the device is now in the original state, one on the path or ERROR. */
                if (mig_get(fd, &now) >= 0)
                        log_warning("Device %s: SET to %s failed: %s; the device is now in %s.",
                                    d->info.name, mig_state_to_string(target), g_strerror(-r),
                                    mig_state_to_string(now));
                else
                        log_warning("Device %s: SET to %s failed: %s; its state cannot be read "
                                    "back.",
                                    d->info.name, mig_state_to_string(target), g_strerror(-r));
        }
        return r;
}

static int op_reset(Device *d)
{
        int fd, r;

        r = device_ensure_open(d, &fd);
        if (r < 0)
                return r;
        r = xioctl(fd, VFIO_DEVICE_RESET, NULL);
        return r < 0 ? r : 0;
}

static char *op_describe_error(Device *d)
{
        KernelDevice *kd = kdev(d);
        char *s;

        g_mutex_lock(&kd->lock);
        s = g_strdup(kd->error);
        g_mutex_unlock(&kd->lock);
        return s;
}

static void op_close(Device *d)
{
        KernelDevice *kd = kdev(d);

        if (!kd)
                return;
        /* The device fd first: the group cannot go while one of its devices is open. */
        closep(&kd->fd);
        if (kd->group)
                group_put(kd->kb, kd->group);
        closep(&kd->iommufd);
        g_mutex_clear(&kd->lock);
        g_free(kd->bus);
        g_free(kd->group_node);
        g_free(kd->cdev_node);
        g_free(kd->error);
        g_free(kd->iova_warning);
        g_free(kd);
        d->backend_data = NULL;
}

static const DeviceOps kernel_ops = {
    .query_flags = op_query_flags,
    .get_state = op_get_state,
    .set_state = op_set_state,
    .reset = op_reset,
    .cancel = NULL, /* an ioctl cannot be cancelled: the sequencer reports the device hung */
    .describe_error = op_describe_error,
    .close = op_close,
};

/* ---- handed-over device fds ---- */

int vfio_kernel_check_device_fd(Device *d, int fd, GError **error)
{
        KernelDevice *kd = kdev(d);
        struct vfio_device_info info = {.argsz = sizeof(info)};
        g_autofree char *proc = g_strdup_printf("/proc/self/fd/%d", fd);
        g_autofree char *target = NULL;
        int r;

        r = xioctl(fd, VFIO_DEVICE_GET_INFO, &info);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "The fd given for device %s is not a VFIO device fd "
                            "(VFIO_DEVICE_GET_INFO: %s); pass the fd the VMM got from "
                            "VFIO_GROUP_GET_DEVICE_FD or from the device's cdev.",
                            d->info.name, g_strerror(-r));
                return -EINVAL;
        }
        if (g_strcmp0(kd->bus, "pci") == 0 && !(info.flags & VFIO_DEVICE_FLAGS_PCI)) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                            "The fd given for device %s is a VFIO fd of a non-PCI device, but %s "
                            "is a PCI device; pass the fd of %s itself.",
                            d->info.name, d->info.name, d->info.name);
                return -EINVAL;
        }
        /* A group-path fd is an anonymous inode and names nobody; a cdev fd names its node. */
        target = g_file_read_link(proc, NULL);
        if (target && g_str_has_prefix(target, "/dev/vfio/devices/") && kd->cdev_node) {
                g_autofree char *want = g_path_get_basename(kd->cdev_node);
                g_autofree char *got = g_path_get_basename(target);
                if (strcmp(want, got) != 0) {
                        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EINVAL),
                                    "The fd given for device %s is the cdev %s of another "
                                    "device (%s's is %s); pass the fd of %s itself.",
                                    d->info.name, target, d->info.name, want, d->info.name);
                        return -EINVAL;
                }
        }
        return 0;
}

int vfio_kernel_adopt_fd(Device *d, int fd, GError **error)
{
        _cleanup_close_ int owned = fd;
        KernelDevice *kd = kdev(d);
        int r;

        r = vfio_kernel_check_device_fd(d, owned, error);
        if (r < 0)
                return r;
        g_mutex_lock(&kd->lock);
        if (kd->fd >= 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(EBUSY),
                            "Device %s already has a device fd (%s); an fd can be handed over "
                            "only before vfio-migd opens the device, or after its VM is "
                            "unregistered.",
                            d->info.name,
                            kd->adopted ? "handed over earlier" : "vfio-migd opened its group");
                g_mutex_unlock(&kd->lock);
                return -EBUSY;
        }
        kd->fd = steal_fd(&owned);
        kd->adopted = true;
        g_clear_pointer(&kd->error, g_free);
        (void)device_learn_flags(d);
        g_mutex_unlock(&kd->lock);
        log_info("Device %s: using the device fd handed over (flags %s).", d->info.name,
                 mig_flags_to_string(d->info.migration_flags));
        return 0;
}

/* ---- IOVA ranges ---- */

static int container_iova_ranges(int container_fd, GArray **ret)
{
        size_t size = sizeof(struct vfio_iommu_type1_info);

        /* The first answer says how large the capability chain is; it may grow in between. */
        for (int i = 0; i < IOVA_QUERY_TRIES; i++) {
                g_autofree struct vfio_iommu_type1_info *info = g_malloc0(size);
                int r;

                info->argsz = (uint32_t)size;
                r = xioctl(container_fd, VFIO_IOMMU_GET_INFO, info);
                if (r < 0)
                        return r;
                if (info->argsz <= size)
                        return vfio_capchain_iova_ranges(info, size, ret);
                if (info->argsz > IOVA_INFO_MAX)
                        return -EMSGSIZE;
                size = info->argsz;
        }
        return -EAGAIN;
}

static int ioas_iova_ranges(int iommufd, uint32_t ioas_id, GArray **ret)
{
        struct iommu_ioas_iova_ranges q = {.size = sizeof(q), .ioas_id = ioas_id};
        g_autofree struct iommu_iova_range *ranges = NULL;

        for (int i = 0; i < IOVA_QUERY_TRIES; i++) {
                uint32_t n = q.num_iovas;
                int r;

                q.allowed_iovas = (uintptr_t)ranges;
                r = xioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &q);
                if (r == -EMSGSIZE && q.num_iovas > n &&
                    q.num_iovas <= IOVA_INFO_MAX / sizeof(*ranges)) {
                        g_free(ranges);
                        ranges = g_new0(struct iommu_iova_range, q.num_iovas);
                        continue;
                }
                if (r < 0)
                        return r;
                if (q.num_iovas > n)
                        return -EPROTO;
                if (q.num_iovas == 0)
                        return -ENODATA;
                *ret = g_array_sized_new(false, false, sizeof(IovaRange), q.num_iovas);
                for (uint32_t k = 0; k < q.num_iovas; k++) {
                        IovaRange range = {ranges[k].start, ranges[k].last};
                        g_array_append_val(*ret, range);
                }
                return 0;
        }
        return -EAGAIN;
}

int vfio_kernel_iova_ranges(Device *d, GArray **ret, GError **error)
{
        KernelDevice *kd = kdev(d);
        const char *what;
        int r;

        g_mutex_lock(&kd->lock);
        if (kd->group) {
                what = "VFIO_IOMMU_GET_INFO";
                r = container_iova_ranges(kd->group->container_fd, ret);
        } else if (kd->iommufd >= 0) {
                what = "IOMMU_IOAS_IOVA_RANGES";
                r = ioas_iova_ranges(kd->iommufd, kd->ioas_id, ret);
        } else {
                what = NULL;
                r = -ENOTCONN;
        }
        g_mutex_unlock(&kd->lock);
        if (r < 0 && what)
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "%s for device %s: %s.", what, d->info.name,
                            r == -EBADMSG ? "the kernel's capability chain is malformed"
                                          : g_strerror(-r));
        else if (r < 0)
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(ENOTCONN),
                            "Device %s has no container of vfio-migd's open (%s).", d->info.name,
                            kd->adopted ? "its device fd was handed over" : "not opened yet");
        return r;
}

/* ---- the backend ---- */

static bool host_device_is_ours(const HostDevice *hd)
{
        return host_device_is_vfio(hd->bus, hd->driver);
}

static int compare_strings(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* kb->lock held; warnings new since the last scan are logged, the others were already. */
static void backend_replace_snapshot(KernelBackend *kb, HostSnapshot *s)
{
        for (guint i = 0; i < s->warnings->len; i++) {
                const char *w = s->warnings->pdata[i];
                bool seen = kb->snapshot && g_ptr_array_find_with_equal_func(kb->snapshot->warnings,
                                                                             w, g_str_equal, NULL);
                if (!seen)
                        log_warning("sysfs: %s", w);
        }
        host_snapshot_free(kb->snapshot);
        kb->snapshot = s;
}

static int kernel_enumerate(Backend *b, GPtrArray **ret_names)
{
        KernelBackend *kb = backend_of(b);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        HostSnapshot *s = NULL;
        GHashTableIter it;
        HostDevice *hd;
        int r;

        r = host_scan(kb->sysfs_root, kb->dev_root, &s);
        if (r < 0)
                return r;
        g_hash_table_iter_init(&it, s->devices);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&hd))
                if (host_device_is_ours(hd))
                        g_ptr_array_add(names, g_strdup(hd->name));
        g_ptr_array_sort(names, compare_strings);
        g_mutex_lock(&kb->lock);
        backend_replace_snapshot(kb, s);
        g_mutex_unlock(&kb->lock);
        *ret_names = g_steal_pointer(&names);
        return (int)(*ret_names)->len;
}

static int kernel_open_device(Backend *b, const char *name, Device **ret)
{
        KernelBackend *kb = backend_of(b);
        KernelDevice *kd;
        HostDevice *hd;
        Device *d;

        g_mutex_lock(&kb->lock);
        hd = kb->snapshot ? g_hash_table_lookup(kb->snapshot->devices, name) : NULL;
        if (!hd || !host_device_is_ours(hd)) {
                g_mutex_unlock(&kb->lock);
                return -ENOENT;
        }
        kd = g_new0(KernelDevice, 1);
        g_mutex_init(&kd->lock);
        kd->kb = kb;
        kd->fd = kd->iommufd = -1;
        kd->bus = g_strdup(hd->bus);
        kd->group_node = g_strdup(hd->vfio_group_node);
        kd->cdev_node = g_strdup(hd->cdev_node);
        d = g_new0(Device, 1);
        d->ops = &kernel_ops;
        d->backend_data = kd;
        d->refcount = 1;
        /* Flags stay 0 until the first op opens the device and asks the kernel. */
        d->info = (DeviceInfo){
            .name = g_strdup(hd->name),
            .driver = g_strdup(hd->driver),
            .iommu_group = g_strdup(hd->group),
            .vendor_id = hd->vendor_id,
            .device_id = hd->device_id,
            .flags_unknown = true,
        };
        g_mutex_unlock(&kb->lock);
        *ret = d;
        return 0;
}

/*
 * A member that shares the group in earnest: one a driver uses for DMA. PCI bridges (their
 * requester ID is why conventional devices share a group with them), unbound devices and
 * pci-stub do no DMA of their own, and the kernel counts none of them against the group's
 * viability. A member sysfs does not describe counts: the cautious answer.
 */
static bool member_takes_part(const HostSnapshot *s, const char *name)
{
        const HostDevice *hd = g_hash_table_lookup(s->devices, name);
        unsigned base_sub;

        if (!hd)
                return true;
        if (!hd->driver || strcmp(hd->driver, "pci-stub") == 0)
                return false;
        base_sub = hd->class_code >> 8;
        /* 0x0604 PCI-to-PCI, 0x0607 CardBus bridge */
        return !(g_strcmp0(hd->bus, "pci") == 0 && (base_sub == 0x0604 || base_sub == 0x0607));
}

static int kernel_group_members(Backend *b, const char *group, GPtrArray **ret)
{
        KernelBackend *kb = backend_of(b);
        HostGroup *g;
        int r = -ENOENT;

        g_mutex_lock(&kb->lock);
        g = kb->snapshot ? g_hash_table_lookup(kb->snapshot->groups, group) : NULL;
        if (g) {
                *ret = g_ptr_array_new_full(g->members->len, g_free);
                for (guint i = 0; i < g->members->len; i++)
                        if (member_takes_part(kb->snapshot, g->members->pdata[i]))
                                g_ptr_array_add(*ret, g_strdup(g->members->pdata[i]));
                r = 0;
        }
        g_mutex_unlock(&kb->lock);
        return r;
}

static int kernel_host_device(Backend *b, const char *name, char **ret_driver)
{
        KernelBackend *kb = backend_of(b);
        HostDevice *hd;
        int r = -ENOENT;

        g_mutex_lock(&kb->lock);
        hd = kb->snapshot ? g_hash_table_lookup(kb->snapshot->devices, name) : NULL;
        if (hd) {
                *ret_driver = g_strdup(hd->driver);
                r = 0;
        }
        g_mutex_unlock(&kb->lock);
        return r;
}

/* ranges within [first start, last end] of within: the aperture, which sysfs does not show. */
static GArray *iova_clip(const GArray *ranges, const GArray *within)
{
        g_autoptr(GArray) outside = iova_ranges_new();
        uint64_t lo, hi;

        if (within->len == 0)
                return iova_ranges_new();
        lo = g_array_index(within, IovaRange, 0).start;
        hi = g_array_index(within, IovaRange, within->len - 1).end;
        if (lo > 0)
                iova_ranges_add(outside, 0, lo - 1);
        if (hi < UINT64_MAX)
                iova_ranges_add(outside, hi + 1, UINT64_MAX);
        return iova_ranges_subtract(ranges, outside);
}

/*
 * What type1 and iommufd enforce for one group, as sysfs predicts it: the aperture minus the
 * group's reserved regions except direct-relaxable ones, which the kernel leaves mappable
 * (vfio_iommu_resv_exclude() skips them). NULL when the snapshot does not know the group.
 */
static GArray *group_expected_ranges(KernelBackend *kb, const char *group)
{
        g_autoptr(GArray) whole = iova_ranges_new();
        g_autoptr(GArray) cut = iova_ranges_new();
        HostGroup *g;

        g_mutex_lock(&kb->lock);
        g = kb->snapshot && group ? g_hash_table_lookup(kb->snapshot->groups, group) : NULL;
        for (guint i = 0; g && g->regions && i < g->regions->len; i++) {
                const HostRegion *reg = &g_array_index(g->regions, HostRegion, i);
                if (g_strcmp0(reg->type, "direct-relaxable") != 0)
                        g_array_append_val(cut, reg->range);
        }
        g_mutex_unlock(&kb->lock);
        if (!g)
                return NULL;
        iova_ranges_add(whole, 0, UINT64_MAX);
        return iova_ranges_subtract(whole, cut);
}

/* A sentence when the kernel's view of d's container disagrees with sysfs; NULL if it agrees
 * or d has no container open (nothing is opened to find out). */
static char *device_iova_warning(KernelBackend *kb, Device *d)
{
        g_autoptr(GArray) kernel = NULL, expected = NULL, clipped = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *k = NULL, *s = NULL;
        int r;

        r = vfio_kernel_iova_ranges(d, &kernel, &error);
        /* Not open, or an emulated IOMMU (an mdev's group), which restricts no IOVA. */
        if (r == -ENOTCONN || r == -ENODATA)
                return NULL;
        if (r < 0)
                return g_strdup_printf("Device %s: cannot read the IOVA ranges of its container: "
                                       "%s",
                                       d->info.name, error->message);
        iova_ranges_normalize(kernel);
        expected = group_expected_ranges(kb, d->info.iommu_group);
        if (!expected)
                return NULL;
        /* The IOMMU's aperture (39 or 48 address bits) is not in sysfs: compare inside it. */
        clipped = iova_clip(expected, kernel);
        k = iova_ranges_format(kernel);
        s = iova_ranges_format(clipped);
        if (iova_ranges_equal(clipped, kernel)) {
                g_mutex_lock(&kdev(d)->lock);
                if (!kdev(d)->iova_agreed)
                        log_debug("Device %s: IOVA ranges from the kernel (%s) agree with sysfs.",
                                  d->info.name, k);
                kdev(d)->iova_agreed = true;
                g_mutex_unlock(&kdev(d)->lock);
                return NULL;
        }
        return g_strdup_printf("IOVA ranges from %s (%s) differ from sysfs (%s) for device %s in "
                               "IOMMU group %s; IovaRanges follows sysfs: check the group's "
                               "reserved_regions and the IOMMU driver",
                               kdev(d)->group ? "VFIO_IOMMU_GET_INFO" : "IOMMU_IOAS_IOVA_RANGES", k,
                               s, d->info.name, d->info.iommu_group ? d->info.iommu_group : "?");
}

static int kernel_iova_context(Backend *b, Device *const *devs, size_t n, GArray **ret_ranges,
                               GPtrArray **ret_warnings)
{
        KernelBackend *kb = backend_of(b);
        g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
        g_autofree const char **names = g_new0(const char *, n + 1);
        g_autoptr(HostContext) ctx = NULL;
        int r;

        for (size_t i = 0; i < n; i++)
                names[i] = devs[i]->info.name;
        g_mutex_lock(&kb->lock);
        r = kb->snapshot ? host_context(kb->snapshot, names, n, &ctx) : -ENODEV;
        g_mutex_unlock(&kb->lock);
        if (r < 0) {
                g_ptr_array_add(warnings,
                                g_strdup_printf("The IOMMU context is unknown: a device is gone "
                                                "from sysfs or has no IOMMU group (%s); Rescan "
                                                "once the host is settled",
                                                g_strerror(-r)));
                *ret_ranges = iova_ranges_new();
                iova_ranges_add(*ret_ranges, 0, UINT64_MAX);
        } else {
                *ret_ranges = g_array_ref(ctx->iova_ranges);
        }
        for (size_t i = 0; i < n; i++) {
                KernelDevice *kd = kdev(devs[i]);
                char *w = device_iova_warning(kb, devs[i]);
                bool again;

                /* Flags 0 would read as "cannot migrate"; say that nobody knows yet. */
                g_mutex_lock(&kd->lock);
                if (kd->fd < 0 && kd->error)
                        g_ptr_array_add(warnings,
                                        g_strdup_printf("Device %s cannot be opened, so its "
                                                        "migration flags are unknown and count "
                                                        "as none: %s",
                                                        devs[i]->info.name, kd->error));
                g_mutex_unlock(&kd->lock);

                if (!w)
                        continue;
                g_mutex_lock(&kd->lock);
                again = g_strcmp0(kd->iova_warning, w) == 0;
                if (!again) {
                        g_free(kd->iova_warning);
                        kd->iova_warning = g_strdup(w);
                }
                g_mutex_unlock(&kd->lock);
                if (!again)
                        log_warning("%s.", w);
                g_ptr_array_add(warnings, w);
        }
        *ret_warnings = g_steal_pointer(&warnings);
        return 0;
}

static void kernel_backend_free(Backend *b)
{
        KernelBackend *kb = backend_of(b);

        if (kb) {
                g_hash_table_destroy(kb->groups);
                host_snapshot_free(kb->snapshot);
                g_mutex_clear(&kb->lock);
                g_free(kb->sysfs_root);
                g_free(kb->dev_root);
                g_free(kb);
        }
        g_free(b);
}

int vfio_kernel_backend_new(const char *sysfs_root, const char *dev_root, Backend **ret,
                            GError **error)
{
        KernelBackend *kb = g_new0(KernelBackend, 1);
        g_autoptr(GPtrArray) names = NULL;
        Backend *b = g_new0(Backend, 1);
        int r;

        g_mutex_init(&kb->lock);
        kb->sysfs_root = g_strdup(sysfs_root ? sysfs_root : "/sys");
        kb->dev_root = g_strdup(dev_root ? dev_root : "/dev");
        kb->groups =
            g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)kernel_group_free);
        b->name = "kernel";
        b->open_claims_device = true;
        b->data = kb;
        b->enumerate = kernel_enumerate;
        b->open_device = kernel_open_device;
        b->free = kernel_backend_free;
        b->group_members = kernel_group_members;
        b->host_device = kernel_host_device;
        b->iova_context = kernel_iova_context;
        b->check_device_fd = vfio_kernel_check_device_fd;
        b->adopt_device_fd = vfio_kernel_adopt_fd;

        /* Fail now, with the path, rather than on the first Rescan. */
        r = kernel_enumerate(b, &names);
        if (r < 0) {
                g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(-r),
                            "Cannot read the host's devices from sysfs at %s or %s: %s; give the "
                            "right roots with --sysfs-root and --dev-root.",
                            kb->sysfs_root, kb->dev_root, g_strerror(-r));
                kernel_backend_free(b);
                return r;
        }
        *ret = b;
        return 0;
}
