/* scan-devices: PCI devices and mdevs with their driver, IOMMU group and VFIO nodes */
#include <errno.h>
#include <string.h>

#include "host/host-object.h"
#include "host/scan.h"
#include "host/sysfs-parse.h"
#include "host/sysfs-read.h"

typedef HostDevice *(*ScanDeviceFn)(Scan *s, const char *name);

static int scan_device_present(Scan *s, const char *rel, char **ret_where)
{
        g_autofree char *where = NULL;
        int r = sysfs_resolve(s->sys_fd, rel, &where);

        if (r < 0)
                scan_warn(s, rel, "%s", scan_odd_text(r));
        else if (ret_where)
                *ret_where = g_steal_pointer(&where);
        return r;
}

static int scan_device_driver(Scan *s, const char *dir, char **ret)
{
        g_autofree char *rel = g_build_filename(dir, "driver", NULL);
        g_autofree char *where = NULL;
        g_autofree char *name = NULL;
        int r;

        r = scan_link(s, rel, &where);
        if (r < 0 || !where)
                return r;
        name = g_path_get_basename(where);
        if (!sysfs_name_is_printable(name)) {
                scan_warn(s, rel, "not a printable driver name");
                return -EINVAL;
        }
        *ret = g_steal_pointer(&name);
        return 0;
}

static int scan_device_group(Scan *s, const char *dir, char **ret)
{
        g_autofree char *rel = g_build_filename(dir, "iommu_group", NULL);
        g_autofree char *where = NULL;
        const char *id;
        int r;

        r = scan_link(s, rel, &where);
        if (r < 0 || !where)
                return r; /* no link: no IOMMU translates this device's DMA */
        id = g_str_has_prefix(where, GROUPS_DIR "/") ? where + strlen(GROUPS_DIR "/") : "";
        if (!sysfs_name_is_group_id(id)) {
                g_autofree char *shown = scan_printable(where);
                scan_warn(s, rel, "leads to %s, not to an IOMMU group", shown);
                return -EINVAL;
        }
        *ret = g_strdup(id);
        return 0;
}

static char *joined_names(const GPtrArray *names)
{
        GString *out = g_string_new(NULL);

        for (guint i = 0; i < names->len; i++) {
                g_autofree char *shown = scan_printable(names->pdata[i]);
                g_string_append_printf(out, "%s%s", i ? " " : "", shown);
        }
        return g_string_free(out, FALSE);
}

/* The device's VFIO cdev (6.6+): the one vfioN under vfio-dev, when /dev has it too. */
static int scan_device_cdev(Scan *s, const char *dir, char **ret)
{
        g_autofree char *rel = g_build_filename(dir, "vfio-dev", NULL);
        g_autofree char *node = NULL;
        g_autoptr(GPtrArray) names = NULL;
        int r;

        r = sysfs_list_dir(s->sys_fd, rel, &names);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                scan_warn(s, rel, "%s", scan_odd_text(r));
                return r;
        }
        if (names->len != 1 || !sysfs_name_is_vfio_cdev(names->pdata[0])) {
                g_autofree char *found = joined_names(names);
                scan_warn(s, rel, "expected one vfioN entry, found \"%s\"", found);
                return -EINVAL;
        }
        node = g_build_filename("vfio", "devices", names->pdata[0], NULL);
        *ret = scan_dev_node(s, node);
        return 0;
}

static bool device_driven_by_vfio(const HostDevice *d)
{
        return host_device_is_vfio(d->bus, d->driver);
}

/* What PCI devices and mdevs share: driver, IOMMU group, cdev and the VFIO group node. */
static int scan_device_links(Scan *s, const char *dir, HostDevice *d)
{
        g_autofree char *node = NULL;
        int r;

        if ((r = scan_device_driver(s, dir, &d->driver)) < 0 ||
            (r = scan_device_group(s, dir, &d->group)) < 0 ||
            (r = scan_device_cdev(s, dir, &d->cdev_node)) < 0)
                return r;
        if (d->group && device_driven_by_vfio(d)) {
                node = g_build_filename("vfio", d->group, NULL);
                d->vfio_group_node = scan_dev_node(s, node);
        }
        return 0;
}

static HostDevice *scan_pci_device(Scan *s, const char *name)
{
        g_autofree char *rel = g_build_filename("bus/pci/devices", name, NULL);
        g_autoptr(HostDevice) d = NULL;
        uint64_t vendor, device, class_code;

        if (!sysfs_name_is_pci_address(name)) {
                scan_warn(s, rel, "not a PCI address");
                return NULL;
        }
        d = host_device_new(name, "pci");
        if (scan_device_present(s, rel, NULL) < 0 ||
            scan_hex(s, rel, "vendor", 0xffff, &vendor) < 0 ||
            scan_hex(s, rel, "device", 0xffff, &device) < 0 ||
            scan_hex(s, rel, "class", 0xffffff, &class_code) < 0 ||
            scan_device_links(s, rel, d) < 0 || scan_device_present(s, rel, NULL) < 0)
                return NULL;
        d->vendor_id = (uint16_t)vendor;
        d->device_id = (uint16_t)device;
        d->class_code = (uint32_t)class_code;
        return g_steal_pointer(&d);
}

/* An mdev lives in its parent's directory: devices/pci0000:00/0000:00:02.0/UUID. */
static int scan_mdev_parent(Scan *s, const char *rel, char **ret)
{
        g_autofree char *where = NULL;
        g_autofree char *dir = NULL;
        int r;

        r = scan_device_present(s, rel, &where);
        if (r < 0)
                return r;
        dir = g_path_get_dirname(where);
        *ret = g_path_get_basename(dir);
        if (strchr(where, '/') && sysfs_name_is_printable(*ret))
                return 0;
        g_clear_pointer(ret, g_free);
        scan_warn(s, rel, "has no printable parent device");
        return -EINVAL;
}

static HostDevice *scan_mdev_device(Scan *s, const char *name)
{
        g_autofree char *rel = g_build_filename("bus/mdev/devices", name, NULL);
        g_autoptr(HostDevice) d = NULL;

        if (!g_uuid_string_is_valid(name)) {
                scan_warn(s, rel, "not an mdev UUID");
                return NULL;
        }
        d = host_device_new(name, "mdev");
        if (scan_mdev_parent(s, rel, &d->parent) < 0 || scan_device_links(s, rel, d) < 0 ||
            scan_device_present(s, rel, NULL) < 0)
                return NULL;
        return g_steal_pointer(&d);
}

static void scan_bus(Scan *s, const char *bus, ScanDeviceFn scan_device)
{
        g_autofree char *rel = g_build_filename("bus", bus, "devices", NULL);
        g_autoptr(GPtrArray) names = NULL;
        int r;

        r = sysfs_list_dir(s->sys_fd, rel, &names);
        if (r == -ENOENT)
                return; /* no such bus on this host (mdev not loaded, no PCI) */
        if (r < 0) {
                scan_warn(s, rel, "%s", scan_odd_text(r));
                return;
        }
        for (guint i = 0; i < names->len; i++) {
                HostDevice *d = scan_device(s, names->pdata[i]);
                if (d)
                        g_hash_table_insert(s->snap->devices, d->name, d);
        }
}

void scan_devices(Scan *s)
{
        scan_bus(s, "pci", scan_pci_device);
        scan_bus(s, "mdev", scan_mdev_device);
}
