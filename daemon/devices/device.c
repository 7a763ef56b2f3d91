/* device: one migratable device behind a backend's ops table */
#include "device.h"

#include <errno.h>
#include <unistd.h>

Device *device_ref(Device *d)
{
        if (d)
                g_atomic_int_inc(&d->refcount);
        return d;
}

void device_unref(Device *d)
{
        if (!d || !g_atomic_int_dec_and_test(&d->refcount))
                return;
        if (d->ops && d->ops->close)
                d->ops->close(d);
        device_info_clear(&d->info);
        g_free(d);
}

int device_get_state(Device *d, enum mig_state *ret)
{
        if (device_is_gone(d))
                return -ENODEV;
        if (!d->ops->get_state)
                return -EOPNOTSUPP;
        return d->ops->get_state(d, ret);
}

int device_set_state(Device *d, enum mig_state target, int *ret_data_fd)
{
        int fd = -1;
        int r;

        if (ret_data_fd)
                *ret_data_fd = -1;
        if (device_is_gone(d))
                return -ENODEV;
        if (!d->ops->set_state)
                return -EOPNOTSUPP;
        r = d->ops->set_state(d, target, &fd);
        if (ret_data_fd)
                *ret_data_fd = fd;
        else if (fd >= 0)
                close(fd);
        return r;
}

int device_reset(Device *d)
{
        if (device_is_gone(d))
                return -ENODEV;
        if (!d->ops->reset)
                return -EOPNOTSUPP;
        return d->ops->reset(d);
}

void device_cancel(Device *d)
{
        if (d->ops->cancel)
                d->ops->cancel(d);
}

void device_set_gone(Device *d)
{
        if (g_atomic_int_compare_and_exchange(&d->gone, 0, 1))
                device_cancel(d);
}

bool device_is_gone(Device *d)
{
        return g_atomic_int_get(&d->gone) != 0;
}

char *device_describe_error(Device *d)
{
        return d->ops->describe_error ? d->ops->describe_error(d) : NULL;
}

void device_info_clear(DeviceInfo *info)
{
        g_clear_pointer(&info->name, g_free);
        g_clear_pointer(&info->driver, g_free);
        g_clear_pointer(&info->iommu_group, g_free);
}

void device_info_copy(DeviceInfo *dst, const DeviceInfo *src)
{
        *dst = *src;
        dst->name = g_strdup(src->name);
        dst->driver = g_strdup(src->driver);
        dst->iommu_group = g_strdup(src->iommu_group);
}

void backend_free(Backend *b)
{
        if (b && b->free)
                b->free(b);
}
