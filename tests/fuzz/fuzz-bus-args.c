/* fuzz-bus-args: libFuzzer target for every D-Bus argument a caller hands vfio-migd
 *
 * The input is a little program that builds a real sd_bus_message (on a peer-to-peer bus
 * over a socketpair, sealed and rewound as a received message is) and hands it to the
 * daemon's own readers, the same way the method handlers do:
 *   mode 0  RegisterVM / RegisterVMFromXML: a name, a device list and the options a{sv},
 *           whose entries are known or unknown keys holding variants of any type, nested;
 *           read with sd_bus_message_read_strv() and bus_manager_read_vm_options(), then
 *           registry_check_vm_args(). Anything the readers accept must pass
 *           vm_options_check() where the checks accepted it, and every refusal names
 *           InvalidArgs or comes from sd-bus itself;
 *   mode 1  a name (GetVM, GetDevice, UnregisterVM, CheckMigration, AttachDeviceFd's
 *           device): vm_name_is_valid(), and the object path of the name must decode back to
 *           the same name under both prefixes;
 *   mode 2  an object path a caller sends a VM or Device method to: bus_path_name(), as the
 *           find functions use it; a decoded name must encode to a valid path that decodes
 *           to the same name again.
 * sd-bus checks a method's signature before the handler runs, so only the values are free;
 * those are all generated here, including the variants' types.
 */
#include <assert.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "bus/bus-manager.h"
#include "bus/bus-util.h"
#include "registry.h"
#include "vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Input {
        const uint8_t *p;
        size_t n;
} Input;

static uint8_t take_byte(Input *in)
{
        uint8_t b;

        if (in->n == 0)
                return 0;
        b = *in->p++;
        in->n--;
        return b;
}

static uint32_t take_u32(Input *in)
{
        uint32_t v = 0;

        for (int i = 0; i < 4; i++)
                v = v << 8 | take_byte(in);
        return v;
}

/* A D-Bus string: valid UTF-8 without NUL; the length byte's top bit makes it long. */
static char *take_string(Input *in)
{
        size_t len = take_byte(in);
        g_autofree char *raw = NULL;
        char *s;

        if (len & 0x80)
                len = (len & 0x7f) << 6;
        len = MIN(len, in->n);
        raw = g_strndup((const char *)in->p, len);
        in->p += len;
        in->n -= len;
        /* g_strndup() stopped at a NUL already. */
        s = g_utf8_make_valid(raw, -1);
        return s;
}

static const char *const known_keys[] = {"strategy", "p2p-mode", "phase-deadline-ms",
                                         "parallelism"};
static const char *const known_values[] = {"parallel",    "qemu",        "naive", "serial",
                                           "require-p2p", "p2p-blocked", ""};

static char *take_key(Input *in)
{
        uint8_t b = take_byte(in);

        if (b < 200)
                return g_strdup(known_keys[b % G_N_ELEMENTS(known_keys)]);
        return take_string(in);
}

static char *take_value_string(Input *in)
{
        uint8_t b = take_byte(in);

        if (b < 160)
                return g_strdup(known_values[b % G_N_ELEMENTS(known_values)]);
        return take_string(in);
}

static int append_options(sd_bus_message *m, Input *in, unsigned depth);

/* A variant holding a value of a type the input chooses (nested up to a small depth). */
static int append_variant(sd_bus_message *m, Input *in, unsigned depth)
{
        static const char *const types[] = {"s",  "u", "i",     "b",    "t",  "d", "o", "g",
                                            "as", "v", "a{sv}", "(su)", "ay", "y", "q", "x"};
        const char *type = types[take_byte(in) % G_N_ELEMENTS(types)];
        int r;

        if (depth > 4 && (strchr(type, 'v') || strchr(type, 'a')))
                type = "u";
        r = sd_bus_message_open_container(m, 'v', type);
        if (r < 0)
                return r;
        switch (type[0]) {
        case 's': {
                g_autofree char *s = take_value_string(in);
                r = sd_bus_message_append(m, "s", s);
                break;
        }
        case 'u':
                r = sd_bus_message_append(m, "u", take_u32(in));
                break;
        case 'i':
                r = sd_bus_message_append(m, "i", (int32_t)take_u32(in));
                break;
        case 'b':
                r = sd_bus_message_append(m, "b", take_byte(in) & 1);
                break;
        case 't': {
                uint64_t high = take_u32(in);
                r = sd_bus_message_append(m, "t", high << 32 | take_u32(in));
                break;
        }
        case 'd':
                r = sd_bus_message_append(m, "d", (double)take_u32(in) / 7.0);
                break;
        case 'o':
                r = sd_bus_message_append(m, "o", "/org/vfiomig/Coordinator1/vm/x");
                break;
        case 'g':
                r = sd_bus_message_append(m, "g", "sa{sv}");
                break;
        case 'y':
                r = sd_bus_message_append(m, "y", take_byte(in));
                break;
        case 'q':
                r = sd_bus_message_append(m, "q", (uint16_t)take_u32(in));
                break;
        case 'x':
                r = sd_bus_message_append(m, "x", (int64_t)take_u32(in));
                break;
        case 'v':
                r = append_variant(m, in, depth + 1);
                break;
        case '(': {
                g_autofree char *s = take_value_string(in);
                r = sd_bus_message_append(m, "(su)", s, take_u32(in));
                break;
        }
        case 'a':
                if (strcmp(type, "as") == 0) {
                        unsigned n = take_byte(in) % 5;

                        r = sd_bus_message_open_container(m, 'a', "s");
                        for (unsigned i = 0; r >= 0 && i < n; i++) {
                                g_autofree char *s = take_value_string(in);
                                r = sd_bus_message_append(m, "s", s);
                        }
                        if (r >= 0)
                                r = sd_bus_message_close_container(m);
                } else if (strcmp(type, "a{sv}") == 0) {
                        r = append_options(m, in, depth + 1);
                } else {
                        uint8_t bytes[8] = {0};

                        bytes[0] = take_byte(in);
                        bytes[1] = take_byte(in);
                        r = sd_bus_message_append_array(m, 'y', bytes, take_byte(in) % 9);
                }
                break;
        }
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

/* "a{sv}": n entries, keys known or not, values of any type. */
static int append_options(sd_bus_message *m, Input *in, unsigned depth)
{
        unsigned n = take_byte(in) % 9;
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (unsigned i = 0; r >= 0 && i < n && in->n > 0; i++) {
                g_autofree char *key = take_key(in);

                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", key);
                if (r >= 0)
                        r = append_variant(m, in, depth + 1);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        return r < 0 ? r : sd_bus_message_close_container(m);
}

static sd_bus *fuzz_bus(void)
{
        static sd_bus *bus;
        int sv[2];

        if (bus)
                return bus;
        /* A peer-to-peer bus that never talks: messages are built and read in memory. */
        assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
        assert(sd_bus_new(&bus) >= 0);
        assert(sd_bus_set_fd(bus, sv[0], sv[0]) >= 0);
        assert(sd_bus_start(bus) >= 0);
        return bus;
}

static sd_bus_message *new_call(const char *path, const char *iface, const char *member)
{
        sd_bus_message *m = NULL;

        assert(sd_bus_message_new_method_call(fuzz_bus(), &m, BUS_NAME, path, iface, member) >= 0);
        return m;
}

/* As a received message: sealed, read from the start. */
static int seal(sd_bus_message *m)
{
        static uint64_t cookie;
        int r = sd_bus_message_seal(m, ++cookie, 0);

        if (r >= 0)
                r = sd_bus_message_rewind(m, true);
        return r;
}

static void fuzz_register(Input *in)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m =
            new_call(BUS_PATH_ROOT, BUS_IFACE_MANAGER, "RegisterVM");
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *name = take_string(in);
        g_auto(GStrv) devices = NULL;
        unsigned n = take_byte(in);
        VmOptions options;
        const char *read_name;
        size_t n_devices;
        int r;

        /* Building may fail only on the input's account (e.g. a string sd-bus refuses). */
        r = sd_bus_message_append(m, "s", name);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (unsigned i = 0; r >= 0 && i < n && in->n > 0; i++) {
                g_autofree char *dev = take_string(in);
                r = sd_bus_message_append(m, "s", dev);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = append_options(m, in, 0);
        if (r < 0 || seal(m) < 0)
                return;

        /* What method_register_vm() and RegisterVMFromXML do, in their order. */
        vm_options_init(&options);
        assert(sd_bus_message_read(m, "s", &read_name) >= 0);
        assert(strcmp(read_name, name) == 0);
        assert(sd_bus_message_read_strv(m, &devices) >= 0);
        n_devices = devices ? g_strv_length(devices) : 0;
        r = bus_manager_read_vm_options(m, &options, &error);
        if (r < 0) {
                /* Either a sentence for the caller or sd-bus's own type error. */
                if (sd_bus_error_is_set(&error))
                        assert(sd_bus_error_has_name(&error, SD_BUS_ERROR_INVALID_ARGS));
                return;
        }
        assert((options.explicit_mask & ~0xfu) == 0);
        r = registry_check_vm_args(name, (const char *const *)devices, n_devices, &options, &gerr);
        if (r < 0) {
                assert(gerr && gerr->message && *gerr->message);
                return;
        }
        /* Accepted: a valid name with a path, 1..VM_DEVICES_MAX devices, valid options. */
        assert(vm_name_is_valid(name));
        assert(n_devices >= 1 && n_devices <= VM_DEVICES_MAX);
        assert(vm_options_check(&options, NULL) >= 0);
}

static void check_round_trip(const char *name)
{
        static const char *const prefixes[] = {BUS_PATH_VM, BUS_PATH_DEVICE};

        for (size_t i = 0; i < G_N_ELEMENTS(prefixes); i++) {
                g_autofree char *path = i == 0 ? bus_vm_path(name) : bus_device_path(name);
                g_autofree char *back = NULL;

                assert(path);
                assert(sd_bus_object_path_is_valid(path));
                back = bus_path_name(path, prefixes[i]);
                assert(back && strcmp(back, name) == 0);
                /* A path below one prefix is never taken for the other's. */
                g_free(g_steal_pointer(&back));
                back = bus_path_name(path, prefixes[1 - i]);
                assert(!back);
        }
}

static void fuzz_name(Input *in)
{
        g_autofree char *name = take_string(in);

        (void)vm_name_is_valid(name);
        check_round_trip(name);
}

static void fuzz_path(Input *in)
{
        g_autofree char *tail = take_string(in);
        g_autofree char *path =
            g_strconcat(take_byte(in) & 1 ? BUS_PATH_DEVICE : BUS_PATH_VM, "/", tail, NULL);
        static const char *const prefixes[] = {BUS_PATH_VM, BUS_PATH_DEVICE, BUS_PATH_ROOT};

        /* sd-bus refuses a message with an invalid path before any handler sees it. */
        if (!sd_bus_object_path_is_valid(path))
                return;
        for (size_t i = 0; i < G_N_ELEMENTS(prefixes); i++) {
                g_autofree char *name = bus_path_name(path, prefixes[i]);

                if (name && strlen(name) > 0)
                        check_round_trip(name);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        Input in = {data, size};

        switch (take_byte(&in) % 3) {
        case 0:
                fuzz_register(&in);
                break;
        case 1:
                fuzz_name(&in);
                break;
        default:
                fuzz_path(&in);
                break;
        }
        return 0;
}
