/* bus-device: org.vfiomig.Coordinator1.Device at /org/vfiomig/Coordinator1/device/<name> */
#include "bus/bus-device.h"

#include <errno.h>
#include <string.h>

#include "bus/bus-errors.h"
#include "bus/bus-manager.h"
#include "bus/bus-util.h"

/*
 * Devices are opened on first use, so there is no object to hand sd-bus until a property is
 * read: the find function only checks the name and every getter looks the device up from
 * its path.
 */
static int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                              void **found, sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autofree char *name = bus_path_name(path, BUS_PATH_DEVICE);

        if (!name || !registry_has_device(d->registry, name))
                return 0;
        *found = d;
        return 1;
}

static int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                  sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GPtrArray) names = registry_device_names(d->registry);
        g_auto(GStrv) paths = g_new0(char *, names->len + 1);

        for (guint i = 0; i < names->len; i++) {
                paths[i] = bus_device_path(names->pdata[i]);
                if (!paths[i])
                        return -ENOMEM;
        }
        *nodes = g_steal_pointer(&paths);
        return 0;
}

/* The device behind a property read; name is set for the caller to free. */
static int device_from_path(Daemon *d, const char *path, char **ret_name, Device **ret,
                            sd_bus_error *error)
{
        g_autoptr(GError) gerr = NULL;
        g_autofree char *name = bus_path_name(path, BUS_PATH_DEVICE);
        int r;

        if (!name)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No device at %s.",
                                         path);
        r = registry_open_device(d->registry, name, ret, &gerr);
        if (r < 0)
                return bus_error_set_model(error, r, gerr ? gerr->message : NULL);
        *ret_name = g_steal_pointer(&name);
        return 0;
}

static int property_get_info(sd_bus *bus, const char *path, const char *interface,
                             const char *property, sd_bus_message *reply, void *userdata,
                             sd_bus_error *error)
{
        g_autofree char *name = NULL;
        const DeviceInfo *info;
        Device *dev;
        int r;

        r = device_from_path(userdata, path, &name, &dev, error);
        if (r < 0)
                return r;
        info = &dev->info;
        if (strcmp(property, "Name") == 0)
                return sd_bus_message_append(reply, "s", name);
        if (strcmp(property, "Driver") == 0)
                return sd_bus_message_append(reply, "s", info->driver ? info->driver : "");
        if (strcmp(property, "Group") == 0)
                return sd_bus_message_append(reply, "s",
                                             info->iommu_group ? info->iommu_group : "");
        if (strcmp(property, "VendorId") == 0)
                return sd_bus_message_append(reply, "q", info->vendor_id);
        if (strcmp(property, "DeviceId") == 0)
                return sd_bus_message_append(reply, "q", info->device_id);
        if (strcmp(property, "MigrationFlags") == 0)
                return sd_bus_message_append(reply, "u", info->migration_flags);
        return sd_bus_message_append(reply, "s", mig_flags_to_string(info->migration_flags));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *name = bus_path_name(path, BUS_PATH_DEVICE);
        enum mig_state state;
        int r;

        if (!name)
                return -ENOENT;
        r = registry_device_state(d->registry, name, &state, &gerr);
        if (r == -ENODATA) /* free, and reading would open its VFIO group */
                return sd_bus_message_append(reply, "s", "unknown");
        if (r < 0)
                return bus_error_set_model(error, r, gerr ? gerr->message : NULL);
        return sd_bus_message_append(reply, "s", mig_state_to_string(state));
}

static int property_get_vm(sd_bus *bus, const char *path, const char *interface,
                           const char *property, sd_bus_message *reply, void *userdata,
                           sd_bus_error *error)
{
        Daemon *d = userdata;
        g_autofree char *name = bus_path_name(path, BUS_PATH_DEVICE);
        g_autofree char *vm_path = NULL;
        Vm *vm;

        if (!name)
                return -ENOENT;
        vm = registry_device_vm(d->registry, name);
        if (!vm)
                return sd_bus_message_append(reply, "o", "/");
        vm_path = bus_vm_path(vm_name(vm));
        if (!vm_path)
                return -ENOMEM;
        return sd_bus_message_append(reply, "o", vm_path);
}

static const sd_bus_vtable device_vtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Name", "s", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Driver", "s", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("Group", "s", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("VendorId", "q", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("DeviceId", "q", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("MigrationFlags", "u", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("MigrationFlagNames", "s", property_get_info, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("VM", "o", property_get_vm, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_VTABLE_END,
};

int bus_device_register(Daemon *d)
{
        sd_bus_slot *slot = NULL;
        int r;

        r = sd_bus_add_fallback_vtable(d->bus, &slot, BUS_PATH_DEVICE, BUS_IFACE_DEVICE,
                                       device_vtable, device_object_find, d);
        if (r < 0)
                return r;
        g_ptr_array_add(d->slots, slot);
        r = sd_bus_add_node_enumerator(d->bus, &slot, BUS_PATH_DEVICE, device_node_enumerator, d);
        if (r < 0)
                return r;
        g_ptr_array_add(d->slots, slot);
        return 0;
}

void bus_device_emit_state_changed(Daemon *d, const char *device, enum mig_state old_state,
                                   enum mig_state new_state)
{
        g_autofree char *path = bus_device_path(device);

        if (!path)
                return;
        (void)sd_bus_emit_properties_changed(d->bus, path, BUS_IFACE_DEVICE, "State", NULL);
        bus_manager_emit_device_state_changed(d, device, mig_state_to_string(old_state),
                                              mig_state_to_string(new_state));
}
