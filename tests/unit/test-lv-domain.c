/* test-lv-domain: the domain XML facts vfio-migd reads, and the metadata it writes
 *
 * Each test is one behaviour of lv_domain_parse(), lv_domain_guest_ram() or
 * lv_metadata_format(), on XML shaped as libvirt writes it. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "core/iova.h"
#include "core/mig-state.h"
#include "libvirt/lv-domain.h"

#define GIB UINT64_C(0x40000000)

/* A domain around the given <devices> content and extra top-level elements. */
static char *domain_xml(const char *top, const char *devices)
{
        return g_strdup_printf("<domain type='kvm' id='3'>\n"
                               "  <name>web-1</name>\n"
                               "  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n"
                               "  <memory unit='KiB'>4194304</memory>\n"
                               "  <currentMemory unit='KiB'>4194304</currentMemory>\n"
                               "  <vcpu placement='static'>2</vcpu>\n"
                               "  <os>\n"
                               "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
                               "    <boot dev='hd'/>\n"
                               "  </os>\n"
                               "%s"
                               "  <devices>\n"
                               "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
                               "%s"
                               "  </devices>\n"
                               "</domain>\n",
                               top, devices);
}

static LvDomain *parse_ok(const char *xml)
{
        g_autoptr(GError) error = NULL;
        LvDomain *d = NULL;
        int r = lv_domain_parse(xml, strlen(xml), &d, &error);

        g_assert_no_error(error);
        g_assert_cmpint(r, ==, 0);
        g_assert_nonnull(d);
        return d;
}

/* Parsing fails with -EINVAL and a message containing every one of the fragments. */
static void parse_fails(const char *xml, size_t len, const char *const *fragments)
{
        g_autoptr(GError) error = NULL;
        LvDomain *d = NULL;
        int r = lv_domain_parse(xml, len, &d, &error);

        g_assert_cmpint(r, ==, -EINVAL);
        g_assert_null(d);
        g_assert_nonnull(error);
        for (size_t i = 0; fragments[i]; i++)
                if (!strstr(error->message, fragments[i]))
                        g_error("'%s' not in error '%s'", fragments[i], error->message);
}

#define PCI_HOSTDEV(bus, slot, fn, alias)                                                          \
        "    <hostdev mode='subsystem' type='pci' managed='yes'>\n"                                \
        "      <driver name='vfio'/>\n"                                                            \
        "      <source>\n"                                                                         \
        "        <address domain='0x0000' bus='" bus "' slot='" slot "' function='" fn "'/>\n"     \
        "      </source>\n"                                                                        \
        "      <alias name='" alias "'/>\n"                                                        \
        "      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>\n"      \
        "    </hostdev>\n"

/* ---- the domain's own facts ---- */

static void test_domain_facts(void)
{
        g_autofree char *xml = domain_xml("", "");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpstr(d->name, ==, "web-1");
        g_assert_cmpstr(d->uuid, ==, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
        g_assert_cmpuint(d->memory_bytes, ==, 4 * GIB);
        g_assert_cmpuint(d->max_memory_bytes, ==, 0);
        g_assert_cmpstr(d->arch, ==, "x86_64");
        g_assert_cmpstr(d->machine, ==, "pc-q35-7.2");
        g_assert_cmpuint(d->n_hostdevs, ==, 0);
        g_assert_false(d->has_metadata);
        g_assert_cmpuint(lv_domain_n_usable(d), ==, 0);
}

static void test_domain_minimal(void)
{
        static const char xml[] = "<?xml version='1.0'?>\n<!-- a comment -->\n"
                                  "<domain><name>a</name></domain>";
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpstr(d->name, ==, "a");
        g_assert_null(d->uuid);
        g_assert_null(d->machine);
        g_assert_null(d->arch);
        g_assert_cmpuint(d->memory_bytes, ==, 0);
}

typedef struct UnitCase {
        const char *name, *memory;
        uint64_t bytes;
} UnitCase;

static const UnitCase unit_cases[] = {
    {"default-kib", "<memory>1024</memory>", 1024 * 1024},
    {"b", "<memory unit='b'>4096</memory>", 4096},
    {"bytes", "<memory unit='bytes'>4097</memory>", 4097},
    {"k", "<memory unit='k'>2</memory>", 2048},
    {"KiB", "<memory unit='KiB'>2</memory>", 2048},
    {"KB-is-decimal", "<memory unit='KB'>2</memory>", 2000},
    {"M", "<memory unit='M'>3</memory>", 3 << 20},
    {"MiB", "<memory unit='MiB'>3</memory>", 3 << 20},
    {"G", "<memory unit='G'>5</memory>", 5 * GIB},
    {"GiB", "<memory unit='GiB'>5</memory>", 5 * GIB},
    {"GB-is-decimal", "<memory unit='GB'>1</memory>", 1000000000},
    {"T", "<memory unit='T'>1</memory>", 1024 * GIB},
    {"TiB", "<memory unit='TiB'>2</memory>", 2048 * GIB},
    {"case-insensitive", "<memory unit='gib'>1</memory>", GIB},
    {"whitespace-around", "<memory unit='MiB'>\n  8\n</memory>", 8 << 20},
};

static void test_memory_unit(gconstpointer data)
{
        const UnitCase *c = data;
        g_autofree char *xml = g_strdup_printf("<domain><name>a</name>%s</domain>", c->memory);
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->memory_bytes, ==, c->bytes);
}

static void test_memory_bad_unit(void)
{
        static const char xml[] =
            "<domain><name>a</name><memory unit='furlong'>1</memory></domain>";
        parse_fails(xml, strlen(xml),
                    (const char *const[]){"unit='furlong'", "unknown unit", "line 1", NULL});
}

static void test_memory_not_a_number(void)
{
        static const char xml[] = "<domain><name>a</name><memory>lots</memory></domain>";
        parse_fails(xml, strlen(xml), (const char *const[]){"<memory>lots</memory>", NULL});
}

static void test_memory_overflow(void)
{
        static const char xml[] =
            "<domain><name>a</name><memory unit='TiB'>99999999999</memory></domain>";
        parse_fails(xml, strlen(xml), (const char *const[]){"below 2^64", NULL});
}

static void test_max_memory(void)
{
        g_autofree char *xml =
            domain_xml("  <maxMemory slots='16' unit='GiB'>64</maxMemory>\n", "");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->max_memory_bytes, ==, 64 * GIB);
        g_assert_cmpuint(d->memory_bytes, ==, 4 * GIB);
}

/* ---- hostdevs ---- */

static void test_pci_hostdev(void)
{
        g_autofree char *xml = domain_xml("", PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_cmpint(d->hostdevs[0].type, ==, LV_HOSTDEV_PCI);
        /* The source address, not the guest <address> after it. */
        g_assert_cmpstr(d->hostdevs[0].name, ==, "0000:03:00.1");
        g_assert_cmpstr(d->hostdevs[0].alias, ==, "hostdev0");
        g_assert_null(d->hostdevs[0].problem);
        g_assert_false(d->hostdevs[0].has_declared);
        g_assert_cmpuint(lv_domain_n_usable(d), ==, 1);
}

typedef struct AddressCase {
        const char *name, *address, *want;
} AddressCase;

static const AddressCase address_cases[] = {
    {"hex-with-0x", "domain='0x0000' bus='0x03' slot='0x00' function='0x1'", "0000:03:00.1"},
    {"upper-case-hex", "domain='0x00AB' bus='0xAF' slot='0x1F' function='0x7'", "00ab:af:1f.7"},
    {"upper-case-0X", "domain='0X0000' bus='0X0a' slot='0x02' function='0x0'", "0000:0a:02.0"},
    {"decimal", "domain='0' bus='10' slot='3' function='2'", "0000:0a:03.2"},
    {"domain-defaults-to-0", "bus='0x81' slot='0x00' function='0x0'", "0000:81:00.0"},
    {"domain-above-ffff", "domain='0x10000' bus='0x01' slot='0x00' function='0x0'",
     "10000:01:00.0"},
};

static void test_address_normalized(gconstpointer data)
{
        const AddressCase *c = data;
        g_autofree char *dev = g_strdup_printf("<hostdev mode='subsystem' type='pci'><source>"
                                               "<address %s/></source></hostdev>",
                                               c->address);
        g_autofree char *xml = domain_xml("", dev);
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_cmpstr(d->hostdevs[0].name, ==, c->want);
}

static const AddressCase bad_address_cases[] = {
    {"bus-too-big", "domain='0x0000' bus='0x100' slot='0x00' function='0x0'", "bus='0x100'"},
    {"slot-too-big", "bus='0x01' slot='0x20' function='0x0'", "slot='0x20'"},
    {"function-too-big", "bus='0x01' slot='0x00' function='0x8'", "function='0x8'"},
    {"not-a-number", "bus='zz' slot='0x00' function='0x0'", "bus='zz'"},
    {"negative", "bus='-1' slot='0x00' function='0x0'", "bus='-1'"},
    {"trailing-garbage", "bus='0x01x' slot='0x00' function='0x0'", "bus='0x01x'"},
    {"missing-function", "bus='0x01' slot='0x00'", "no function="},
    {"empty", "bus='' slot='0x00' function='0x0'", "bus=''"},
};

static void test_bad_address_kept(gconstpointer data)
{
        const AddressCase *c = data;
        g_autofree char *dev = g_strdup_printf(
            "<hostdev mode='subsystem' type='pci'><source><address %s/></source>"
            "<alias name='hostdev3'/></hostdev>" PCI_HOSTDEV("0x04", "0x00", "0x0", "hostdev4"),
            c->address);
        g_autofree char *xml = domain_xml("", dev);
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 2);
        g_assert_null(d->hostdevs[0].name);
        g_assert_cmpstr(d->hostdevs[0].alias, ==, "hostdev3");
        g_assert_nonnull(d->hostdevs[0].problem);
        if (!strstr(d->hostdevs[0].problem, c->want))
                g_error("'%s' not in problem '%s'", c->want, d->hostdevs[0].problem);
        g_assert_cmpstr(d->hostdevs[1].name, ==, "0000:04:00.0");
        g_assert_cmpuint(lv_domain_n_usable(d), ==, 1);
}

static void test_hostdev_without_source(void)
{
        g_autofree char *xml = domain_xml("", "<hostdev mode='subsystem' type='pci'>"
                                              "<alias name='hostdev0'/></hostdev>");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_null(d->hostdevs[0].name);
        g_assert_cmpstr(d->hostdevs[0].problem, ==, "has no <source><address>");
}

static void test_mdev_hostdev(void)
{
        g_autofree char *xml = domain_xml(
            "", "    <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci'>\n"
                "      <source><address uuid='C2177883-F1BB-47F0-914D-32A22E3A8804'/></source>\n"
                "      <alias name='hostdev1'/>\n"
                "    </hostdev>\n");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_cmpint(d->hostdevs[0].type, ==, LV_HOSTDEV_MDEV);
        g_assert_cmpstr(d->hostdevs[0].name, ==, "c2177883-f1bb-47f0-914d-32a22e3a8804");
        g_assert_cmpstr(d->hostdevs[0].alias, ==, "hostdev1");
}

static void test_mdev_bad_uuid(void)
{
        g_autofree char *xml = domain_xml("", "<hostdev mode='subsystem' type='mdev'><source>"
                                              "<address uuid='not-a-uuid'/></source></hostdev>");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_null(d->hostdevs[0].name);
        g_assert_nonnull(strstr(d->hostdevs[0].problem, "uuid='not-a-uuid'"));
}

static void test_interface_hostdev(void)
{
        g_autofree char *xml = domain_xml(
            "", "    <interface type='hostdev' managed='yes'>\n"
                "      <mac address='52:54:00:6d:90:02'/>\n"
                "      <source><address type='pci' domain='0x0000' bus='0x65' slot='0x10' "
                "function='0x2'/></source>\n"
                "      <alias name='hostdev2'/>\n"
                "    </interface>\n"
                "    <interface type='network'><source network='default'/></interface>\n");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_cmpstr(d->hostdevs[0].name, ==, "0000:65:10.2");
        g_assert_cmpstr(d->hostdevs[0].alias, ==, "hostdev2");
}

static void test_non_vfio_skipped(void)
{
        g_autofree char *xml =
            domain_xml("", "    <hostdev mode='subsystem' type='usb' managed='yes'>\n"
                           "      <source><vendor id='0x1234'/><product id='0xbeef'/></source>\n"
                           "    </hostdev>\n"
                           "    <hostdev mode='subsystem' type='scsi'>\n"
                           "      <source><adapter name='scsi_host0'/><address bus='0' target='0' "
                           "unit='0'/></source>\n"
                           "    </hostdev>\n"
                           "    <hostdev mode='capabilities' type='storage'>\n"
                           "      <source><block>/dev/sdf1</block></source>\n"
                           "    </hostdev>\n" PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_cmpstr(d->hostdevs[0].name, ==, "0000:03:00.1");
}

/* ---- the vfio-migd metadata ---- */

static void check_declared(const LvDomain *d)
{
        g_assert_true(d->has_metadata);
        g_assert_cmpuint(d->n_hostdevs, ==, 2);
        g_assert_true(d->hostdevs[0].has_declared);
        g_assert_cmpstr(d->hostdevs[0].declared_driver, ==, "mlx5_vfio_pci");
        g_assert_cmpuint(d->hostdevs[0].declared_vendor, ==, 0x15b3);
        g_assert_cmpuint(d->hostdevs[0].declared_device, ==, 0x101e);
        g_assert_cmpuint(d->hostdevs[0].declared_flags, ==,
                         MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY);
        /* A hostdev the metadata does not mention has nothing declared. */
        g_assert_false(d->hostdevs[1].has_declared);
        g_assert_null(d->hostdevs[1].declared_driver);
}

static void test_metadata_prefixed(void)
{
        g_autofree char *xml =
            domain_xml("  <metadata>\n"
                       "    <vfiomig:hostdevs xmlns:vfiomig=\"" LV_METADATA_NS "\">\n"
                       "      <vfiomig:hostdev name=\"0000:03:00.1\" driver=\"mlx5_vfio_pci\" "
                       "id=\"15b3:101e\" flags=\"0x7\"/>\n"
                       "      <vfiomig:hostdev name=\"0000:09:00.0\" driver=\"x\" id=\"1234:5678\" "
                       "flags=\"0x1\"/>\n"
                       "    </vfiomig:hostdevs>\n"
                       "  </metadata>\n",
                       PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0")
                           PCI_HOSTDEV("0x04", "0x00", "0x0", "hostdev1"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        check_declared(d);
}

/* libvirt sets the namespace on the stored root only; its children come unprefixed. */
static void test_metadata_children_unprefixed(void)
{
        g_autofree char *xml =
            domain_xml("  <metadata>\n"
                       "    <x:hostdevs xmlns:x='" LV_METADATA_NS "'>\n"
                       "      <hostdev name='0000:03:00.1' driver='mlx5_vfio_pci' id='15B3:101E' "
                       "flags='0x7'/>\n"
                       "    </x:hostdevs>\n"
                       "  </metadata>\n",
                       PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0")
                           PCI_HOSTDEV("0x04", "0x00", "0x0", "hostdev1"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        check_declared(d);
}

static void test_metadata_default_namespace(void)
{
        g_autofree char *xml =
            domain_xml("  <metadata>\n"
                       "    <hostdevs xmlns='" LV_METADATA_NS "'>\n"
                       "      <hostdev name='0000:03:00.1' driver='mlx5_vfio_pci' id='15b3:101e' "
                       "flags='0x7'/>\n"
                       "    </hostdevs>\n"
                       "  </metadata>\n",
                       PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0")
                           PCI_HOSTDEV("0x04", "0x00", "0x0", "hostdev1"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        check_declared(d);
}

static void test_metadata_foreign_ignored(void)
{
        g_autofree char *xml =
            domain_xml("  <metadata>\n"
                       "    <other:hostdevs xmlns:other='https://example.com/hostdevs/1'>\n"
                       "      <other:hostdev name='0000:03:00.1' driver='evil' id='dead:beef' "
                       "flags='0x7'/>\n"
                       "    </other:hostdevs>\n"
                       "    <hostdevs><hostdev name='0000:03:00.1' driver='evil' id='dead:beef' "
                       "flags='0x7'/></hostdevs>\n"
                       "    <vfiomig:hostdevs xmlns:vfiomig='" LV_METADATA_NS "/2'>\n"
                       "      <vfiomig:hostdev name='0000:03:00.1' driver='v2' id='dead:beef' "
                       "flags='0x7'/>\n"
                       "    </vfiomig:hostdevs>\n"
                       "  </metadata>\n",
                       PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_false(d->has_metadata);
        g_assert_false(d->hostdevs[0].has_declared);
}

/* The prefix is bound where it is declared only: a sibling reusing it is someone else's. */
static void test_metadata_prefix_scope(void)
{
        g_autofree char *xml = domain_xml(
            "  <metadata>\n"
            "    <a:x xmlns:a='" LV_METADATA_NS "'/>\n"
            "    <a:hostdevs xmlns:a='https://example.com/1'>\n"
            "      <a:hostdev name='0000:03:00.1' driver='evil' id='dead:beef' flags='0x7'/>\n"
            "    </a:hostdevs>\n"
            "  </metadata>\n",
            PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_false(d->has_metadata);
        g_assert_false(d->hostdevs[0].has_declared);
}

static void test_metadata_empty(void)
{
        g_autofree char *xml =
            domain_xml("<metadata><m:hostdevs xmlns:m='" LV_METADATA_NS "'/></metadata>",
                       PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_true(d->has_metadata);
        g_assert_false(d->hostdevs[0].has_declared);
}

static void test_metadata_mdev_matches_case_insensitively(void)
{
        g_autofree char *xml =
            domain_xml("<metadata><m:hostdevs xmlns:m='" LV_METADATA_NS "'>"
                       "<m:hostdev name='C2177883-F1BB-47F0-914D-32A22E3A8804' driver='mtty' "
                       "id='1234:0001' flags='0x3'/></m:hostdevs></metadata>",
                       "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
                       "<address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>");
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_true(d->hostdevs[0].has_declared);
        g_assert_cmpstr(d->hostdevs[0].declared_driver, ==, "mtty");
        g_assert_cmpuint(d->hostdevs[0].declared_flags, ==, 3);
}

typedef struct BadMetadataCase {
        const char *name, *hostdev, *want;
} BadMetadataCase;

static const BadMetadataCase bad_metadata_cases[] = {
    {"no-name", "<m:hostdev id='15b3:101e' flags='0x7'/>", "without name="},
    {"no-id", "<m:hostdev name='0000:03:00.1' flags='0x7'/>", "without id="},
    {"no-flags", "<m:hostdev name='0000:03:00.1' id='15b3:101e'/>", "without flags="},
    {"bad-id", "<m:hostdev name='0000:03:00.1' id='15b3-101e' flags='0x7'/>", "id '15b3-101e'"},
    {"short-id", "<m:hostdev name='0000:03:00.1' id='15b:101e' flags='0x7'/>", "id '15b:101e'"},
    {"decimal-flags", "<m:hostdev name='0000:03:00.1' id='15b3:101e' flags='7'/>", "flags '7'"},
    {"flags-too-big", "<m:hostdev name='0000:03:00.1' id='15b3:101e' flags='0x100000000'/>",
     "flags '0x100000000'"},
};

static void test_metadata_bad(gconstpointer data)
{
        const BadMetadataCase *c = data;
        g_autofree char *top = g_strdup_printf("<metadata><m:hostdevs xmlns:m='" LV_METADATA_NS
                                               "'>%s</m:hostdevs></metadata>",
                                               c->hostdev);
        g_autofree char *xml = domain_xml(top, PCI_HOSTDEV("0x03", "0x00", "0x1", "hostdev0"));

        parse_fails(xml, strlen(xml), (const char *const[]){"vfio-migd metadata", c->want, NULL});
}

/* ---- errors ---- */

static void test_malformed_position(void)
{
        static const char xml[] = "<domain>\n  <name>a</name>\n  <devices>\n    <hostdev>\n"
                                  "  </devices>\n</domain>\n";
        parse_fails(xml, strlen(xml),
                    (const char *const[]){"invalid domain XML", "line 5", "virsh dumpxml", NULL});
}

static void test_malformed_truncated(void)
{
        static const char xml[] = "<domain><name>a</name><devices>";
        parse_fails(xml, strlen(xml), (const char *const[]){"invalid domain XML", NULL});
}

static void test_empty_input(void)
{
        parse_fails("", 0, (const char *const[]){"invalid domain XML", NULL});
}

static void test_nul_byte(void)
{
        static const char xml[] = "<domain><name>a\0b</name></domain>";
        parse_fails(xml, sizeof(xml) - 1, (const char *const[]){"invalid domain XML", NULL});
}

static void test_wrong_root(void)
{
        static const char xml[] = "<network><name>default</name></network>";
        parse_fails(xml, strlen(xml), (const char *const[]){"<network>", "not <domain>", NULL});
}

static void test_missing_name(void)
{
        static const char xml[] = "<domain><uuid>x</uuid><memory>1</memory></domain>";
        parse_fails(xml, strlen(xml), (const char *const[]){"no <name>", NULL});
}

static void test_empty_name(void)
{
        static const char xml[] = "<domain><name></name></domain>";
        parse_fails(xml, strlen(xml), (const char *const[]){"empty <name>", NULL});
}

static void test_two_names(void)
{
        static const char xml[] = "<domain><name>a</name><name>b</name></domain>";
        parse_fails(xml, strlen(xml), (const char *const[]){"more than one <name>", NULL});
}

static void test_name_in_other_places_ignored(void)
{
        static const char xml[] = "<domain><name>real</name><devices><disk><name>x</name>"
                                  "</disk></devices><metadata><name>y</name></metadata></domain>";
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpstr(d->name, ==, "real");
}

static void test_oversize_refused(void)
{
        /* Refused on its length before a byte is read: the buffer need not be that big. */
        static const char xml[] = "<domain><name>a</name></domain>";
        parse_fails(xml, (size_t)LV_DOMAIN_XML_MAX + 1,
                    (const char *const[]){"16777217 bytes", "more than", NULL});
}

static void test_max_size_accepted(void)
{
        static const char head[] = "<domain><name>big</name><description>";
        static const char tail[] = "</description></domain>";
        size_t len = LV_DOMAIN_XML_MAX;
        g_autofree char *xml = g_malloc(len);
        g_autoptr(LvDomain) d = NULL;
        g_autoptr(GError) error = NULL;

        memset(xml, 'x', len);
        memcpy(xml, head, strlen(head));
        memcpy(xml + len - strlen(tail), tail, strlen(tail));
        g_assert_cmpint(lv_domain_parse(xml, len, &d, &error), ==, 0);
        g_assert_no_error(error);
        g_assert_cmpstr(d->name, ==, "big");
}

/* ---- bounds: what a caller-sized XML can make the parser keep ---- */

/* n copies of one PCI hostdev (bus 0x03) and distinct ones on buses 0x10.. */
static char *hostdevs_xml(size_t copies, size_t distinct)
{
        g_autoptr(GString) devs = g_string_new(NULL);

        for (size_t i = 0; i < copies; i++)
                g_string_append(devs, PCI_HOSTDEV("0x03", "0x00", "0x0", "hostdev0"));
        for (size_t i = 0; i < distinct; i++)
                g_string_append_printf(devs,
                                       "<hostdev mode='subsystem' type='pci'><source><address "
                                       "domain='0x%04zx' bus='0x%02zx' slot='0x00' "
                                       "function='0x0'/></source></hostdev>\n",
                                       i / 256, i % 256);
        return domain_xml("", devs->str);
}

static void test_duplicate_hostdev_kept_once(void)
{
        g_autofree char *xml = hostdevs_xml(5000, 1);
        g_autoptr(LvDomain) d = parse_ok(xml);
        g_autoptr(GError) error = NULL;

        g_assert_cmpuint(d->n_hostdevs, ==, 2);
        g_assert_cmpuint(d->hostdevs[0].copies, ==, 5000);
        g_assert_cmpuint(d->hostdevs[1].copies, ==, 1);
        g_assert_cmpint(lv_domain_check_bounds(d, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "lists hostdev 0000:03:00.0 5000 times"));
        g_assert_nonnull(strstr(error->message, "4999 copies"));
        g_assert_cmpuint(strlen(error->message), <, 300);
}

static void test_hostdevs_past_the_limit_counted(void)
{
        g_autofree char *xml = hostdevs_xml(0, LV_DOMAIN_HOSTDEVS_MAX + 1000);
        g_autoptr(LvDomain) d = parse_ok(xml);
        g_autoptr(GError) error = NULL;

        g_assert_cmpuint(d->n_hostdevs, ==, LV_DOMAIN_HOSTDEVS_MAX);
        g_assert_cmpuint(d->n_over, ==, 1000);
        g_assert_cmpint(lv_domain_check_bounds(d, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error->message, "lists 1256 VFIO hostdevs"));
        g_assert_nonnull(strstr(error->message, "at most 256"));
}

static void test_hostdevs_at_the_limit_accepted(void)
{
        g_autofree char *xml = hostdevs_xml(0, LV_DOMAIN_HOSTDEVS_MAX);
        g_autoptr(LvDomain) d = parse_ok(xml);
        g_autoptr(GError) error = NULL;

        g_assert_cmpuint(d->n_hostdevs, ==, LV_DOMAIN_HOSTDEVS_MAX);
        g_assert_cmpint(lv_domain_check_bounds(d, &error), ==, 0);
        g_assert_no_error(error);
}

static void test_declarations_past_the_limit_refused(void)
{
        g_autoptr(GString) meta =
            g_string_new("<metadata><v:hostdevs xmlns:v='" LV_METADATA_NS "'>");
        g_autofree char *xml = NULL;

        for (unsigned i = 0; i <= LV_DOMAIN_HOSTDEVS_MAX; i++)
                g_string_append_printf(meta,
                                       "<v:hostdev name='0000:%02x:00.0' id='1234:5678' "
                                       "flags='0x1'/>",
                                       i);
        g_string_append(meta, "</v:hostdevs></metadata>");
        xml = domain_xml(meta->str, "");
        parse_fails(xml, strlen(xml), (const char *const[]){"declares more than 256", NULL});
}

/* An attribute of 100 KiB is echoed as its first characters, not whole. */
static void test_problem_echo_bounded(void)
{
        g_autofree char *uuid = g_strnfill(100 * 1024, 'z');
        g_autofree char *dev = g_strdup_printf("<hostdev mode='subsystem' type='mdev'><source>"
                                               "<address uuid='%s'/></source></hostdev>",
                                               uuid);
        g_autofree char *xml = domain_xml("", dev);
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_cmpuint(d->n_hostdevs, ==, 1);
        g_assert_nonnull(d->hostdevs[0].problem);
        g_assert_nonnull(strstr(d->hostdevs[0].problem, "zzz..."));
        g_assert_cmpuint(strlen(d->hostdevs[0].problem), <, 200);
}

/* Hundreds of namespace declarations in scope (GMarkup allows a thousand attributes per
 * element) cost one lookup per element, and scope still works. */
static void test_many_namespaces_in_scope(void)
{
        g_autoptr(GString) top = g_string_new("<metadata");
        g_autofree char *xml = NULL;

        for (unsigned i = 0; i < 900; i++)
                g_string_append_printf(top, " xmlns:n%u='urn:x:%u'", i, i);
        g_string_append(top, " xmlns:v='" LV_METADATA_NS "'>");
        for (unsigned i = 0; i < 20000; i++)
                g_string_append(top, "<n7:hostdevs xmlns:n7='urn:other'/>");
        g_string_append(top, "<v:hostdevs><v:hostdev name='0000:03:00.0' driver='vfio-pci' "
                             "id='1234:5678' flags='0x1'/></v:hostdevs></metadata>");
        xml = domain_xml(top->str, PCI_HOSTDEV("0x03", "0x00", "0x0", "hostdev0"));
        g_autoptr(LvDomain) d = parse_ok(xml);

        g_assert_true(d->has_metadata);
        g_assert_true(d->hostdevs[0].has_declared);
        g_assert_cmpuint(d->hostdevs[0].declared_vendor, ==, 0x1234);
}

static void test_echo_cuts_utf8_whole(void)
{
        g_autofree char *short_one = lv_echo("vm-\u00e9", 8);
        g_autofree char *cut = lv_echo("\u00e9\u00e9\u00e9\u00e9", 2);
        g_autofree char *none = lv_echo(NULL, 4);

        g_assert_cmpstr(short_one, ==, "vm-\u00e9");
        g_assert_cmpstr(cut, ==, "\u00e9\u00e9...");
        g_assert_cmpstr(none, ==, "");
}

/* ---- guest RAM layout ---- */

typedef struct RamCase {
        const char *name, *arch, *machine;
        uint64_t memory, max_memory;
        const char *want;
} RamCase;

static const RamCase ram_cases[] = {
    {"q35-small-all-low", "x86_64", "pc-q35-7.2", 2 * GIB, 0, "0x0-0x7fffffff"},
    {"q35-below-2.75G-all-low", "x86_64", "q35", UINT64_C(0xa0000000), 0, "0x0-0x9fffffff"},
    {"q35-2.75G-splits-at-2G", "x86_64", "pc-q35-8.0", UINT64_C(0xb0000000), 0,
     "0x0-0x7fffffff,0x100000000-0x12fffffff"},
    {"q35-8G", "x86_64", "pc-q35-7.2", 8 * GIB, 0, "0x0-0x7fffffff,0x100000000-0x27fffffff"},
    {"pc-3G-all-low", "x86_64", "pc-i440fx-7.2", 3 * GIB, 0, "0x0-0xbfffffff"},
    {"pc-3.25G-all-low", "x86_64", "pc", UINT64_C(0xd0000000), 0, "0x0-0xcfffffff"},
    {"pc-3.5G-splits-at-3G", "x86_64", "pc-i440fx-7.2", UINT64_C(0xe0000000), 0,
     "0x0-0xbfffffff,0x100000000-0x11fffffff"},
    {"pc-8G", "i686", "pc", 8 * GIB, 0, "0x0-0xbfffffff,0x100000000-0x23fffffff"},
    {"no-machine-is-pc", NULL, NULL, 8 * GIB, 0, "0x0-0xbfffffff,0x100000000-0x23fffffff"},
    {"q35-hotplug-after-ram", "x86_64", "pc-q35-7.2", 8 * GIB, 16 * GIB,
     "0x0-0x7fffffff,0x100000000-0x27fffffff,0x280000000-0x47fffffff"},
    {"q35-hotplug-gib-aligned", "x86_64", "pc-q35-7.2", UINT64_C(0xc0100000), 4 * GIB,
     "0x0-0x7fffffff,0x100000000-0x1400fffff,0x180000000-0x1bfefffff"},
    {"hotplug-with-all-ram-low", "x86_64", "q35", 1 * GIB, 2 * GIB,
     "0x0-0x3fffffff,0x100000000-0x13fffffff"},
    {"maxmemory-below-memory-ignored", "x86_64", "q35", 1 * GIB, GIB / 2, "0x0-0x3fffffff"},
    {"aarch64-from-0", "aarch64", "virt-7.2", 8 * GIB, 0, "0x0-0x1ffffffff"},
    {"ppc64-with-maxmemory", "ppc64le", "pseries", 4 * GIB, 8 * GIB, "0x0-0x1ffffffff"},
    {"no-memory", "x86_64", "q35", 0, 0, ""},
};

static void test_guest_ram(gconstpointer data)
{
        const RamCase *c = data;
        LvDomain d = {
            .name = (char *)"a",
            .arch = (char *)c->arch,
            .machine = (char *)c->machine,
            .memory_bytes = c->memory,
            .max_memory_bytes = c->max_memory,
        };
        g_autoptr(GArray) ram = lv_domain_guest_ram(&d);
        g_autofree char *got = iova_ranges_format(ram);

        g_assert_cmpstr(got, ==, c->want);
}

static void test_guest_ram_from_xml(void)
{
        g_autofree char *xml = domain_xml("  <maxMemory slots='4' unit='GiB'>8</maxMemory>\n", "");
        g_autoptr(LvDomain) d = parse_ok(xml);
        g_autoptr(GArray) ram = lv_domain_guest_ram(d);
        g_autofree char *got = iova_ranges_format(ram);

        /* 4 GiB on q35: 2 GiB low, 2 GiB from 4 GiB, 4 GiB of hotplug area from 6 GiB. */
        g_assert_cmpstr(got, ==, "0x0-0x7fffffff,0x100000000-0x17fffffff,0x180000000-0x27fffffff");
}

/* ---- metadata written ---- */

static void test_metadata_format(void)
{
        static const LvDeclared devs[] = {
            {"0000:03:00.1", "mlx5_vfio_pci", 0x15b3, 0x101e, 7},
            {"c2177883-f1bb-47f0-914d-32a22e3a8804", NULL, 0x1234, 0x0001, 0},
        };
        g_autofree char *s = lv_metadata_format(devs, G_N_ELEMENTS(devs));

        g_assert_cmpstr(s, ==,
                        "<hostdevs>\n"
                        "  <hostdev name=\"0000:03:00.1\" driver=\"mlx5_vfio_pci\" "
                        "id=\"15b3:101e\" flags=\"0x7\"/>\n"
                        "  <hostdev name=\"c2177883-f1bb-47f0-914d-32a22e3a8804\" "
                        "id=\"1234:0001\" flags=\"0x0\"/>\n"
                        "</hostdevs>");
}

static void test_metadata_format_escapes(void)
{
        static const LvDeclared devs[] = {{"a\"<&>'b", "d&\"r", 0xffff, 0, 0xffffffff}};
        g_autofree char *s = lv_metadata_format(devs, 1);

        g_assert_nonnull(strstr(s, "name=\"a&quot;&lt;&amp;&gt;&apos;b\""));
        g_assert_nonnull(strstr(s, "driver=\"d&amp;&quot;r\""));
        g_assert_nonnull(strstr(s, "flags=\"0xffffffff\""));
}

/* What the daemon writes, stored as libvirt stores it, reads back as it was. */
static void test_metadata_round_trip(void)
{
        static const LvDeclared devs[] = {
            {"0000:03:00.1", "mlx5_vfio_pci", 0x15b3, 0x101e, 7},
            {"0000:04:00.0", "a&b", 0x8086, 0x1234, 0x3},
        };
        g_autofree char *content = lv_metadata_format(devs, G_N_ELEMENTS(devs));
        g_autofree char *inner = NULL;
        g_autofree char *top = NULL;
        g_autofree char *xml = NULL;
        g_autoptr(LvDomain) d = NULL;

        /* libvirt stores <hostdevs>...</hostdevs> as <vfiomig:hostdevs xmlns:vfiomig="NS">... */
        g_assert_true(g_str_has_prefix(content, "<hostdevs>"));
        g_assert_true(g_str_has_suffix(content, "</hostdevs>"));
        inner = g_strndup(content + strlen("<hostdevs>"),
                          strlen(content) - strlen("<hostdevs></hostdevs>"));
        top = g_strdup_printf("<metadata><vfiomig:hostdevs xmlns:vfiomig=\"%s\">%s"
                              "</vfiomig:hostdevs></metadata>",
                              LV_METADATA_NS, inner);
        xml = domain_xml(top, PCI_HOSTDEV("0x03", "0x00", "0x1", "a")
                                  PCI_HOSTDEV("0x04", "0x00", "0x0", "b"));
        d = parse_ok(xml);
        for (size_t i = 0; i < G_N_ELEMENTS(devs); i++) {
                g_assert_true(d->hostdevs[i].has_declared);
                g_assert_cmpstr(d->hostdevs[i].name, ==, devs[i].name);
                g_assert_cmpstr(d->hostdevs[i].declared_driver, ==, devs[i].driver);
                g_assert_cmpuint(d->hostdevs[i].declared_vendor, ==, devs[i].vendor);
                g_assert_cmpuint(d->hostdevs[i].declared_device, ==, devs[i].device);
                g_assert_cmpuint(d->hostdevs[i].declared_flags, ==, devs[i].flags);
        }
}

#define ADD_TABLE(prefix, table, fn)                                                               \
        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {                                         \
                g_autofree char *path = g_strdup_printf("%s/%s", prefix, table[i].name);           \
                g_test_add_data_func(path, &table[i], fn);                                         \
        }

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/lv-domain/facts", test_domain_facts);
        g_test_add_func("/lv-domain/minimal", test_domain_minimal);
        ADD_TABLE("/lv-domain/memory-unit", unit_cases, test_memory_unit);
        g_test_add_func("/lv-domain/memory/bad-unit", test_memory_bad_unit);
        g_test_add_func("/lv-domain/memory/not-a-number", test_memory_not_a_number);
        g_test_add_func("/lv-domain/memory/overflow", test_memory_overflow);
        g_test_add_func("/lv-domain/memory/max-memory", test_max_memory);

        g_test_add_func("/lv-domain/hostdev/pci", test_pci_hostdev);
        ADD_TABLE("/lv-domain/hostdev/address", address_cases, test_address_normalized);
        ADD_TABLE("/lv-domain/hostdev/bad-address-kept", bad_address_cases, test_bad_address_kept);
        g_test_add_func("/lv-domain/hostdev/without-source", test_hostdev_without_source);
        g_test_add_func("/lv-domain/hostdev/mdev", test_mdev_hostdev);
        g_test_add_func("/lv-domain/hostdev/mdev-bad-uuid", test_mdev_bad_uuid);
        g_test_add_func("/lv-domain/hostdev/interface-hostdev", test_interface_hostdev);
        g_test_add_func("/lv-domain/hostdev/non-vfio-skipped", test_non_vfio_skipped);

        g_test_add_func("/lv-domain/metadata/prefixed", test_metadata_prefixed);
        g_test_add_func("/lv-domain/metadata/children-unprefixed",
                        test_metadata_children_unprefixed);
        g_test_add_func("/lv-domain/metadata/default-namespace", test_metadata_default_namespace);
        g_test_add_func("/lv-domain/metadata/foreign-ignored", test_metadata_foreign_ignored);
        g_test_add_func("/lv-domain/metadata/prefix-scope", test_metadata_prefix_scope);
        g_test_add_func("/lv-domain/metadata/empty", test_metadata_empty);
        g_test_add_func("/lv-domain/metadata/mdev-case-insensitive",
                        test_metadata_mdev_matches_case_insensitively);
        ADD_TABLE("/lv-domain/metadata/bad", bad_metadata_cases, test_metadata_bad);

        g_test_add_func("/lv-domain/error/malformed-position", test_malformed_position);
        g_test_add_func("/lv-domain/error/truncated", test_malformed_truncated);
        g_test_add_func("/lv-domain/error/empty", test_empty_input);
        g_test_add_func("/lv-domain/error/nul-byte", test_nul_byte);
        g_test_add_func("/lv-domain/error/wrong-root", test_wrong_root);
        g_test_add_func("/lv-domain/error/missing-name", test_missing_name);
        g_test_add_func("/lv-domain/error/empty-name", test_empty_name);
        g_test_add_func("/lv-domain/error/two-names", test_two_names);
        g_test_add_func("/lv-domain/name-elsewhere-ignored", test_name_in_other_places_ignored);
        g_test_add_func("/lv-domain/error/oversize", test_oversize_refused);
        g_test_add_func("/lv-domain/max-size-accepted", test_max_size_accepted);
        g_test_add_func("/lv-domain/bounds/duplicate-hostdev-kept-once",
                        test_duplicate_hostdev_kept_once);
        g_test_add_func("/lv-domain/bounds/hostdevs-past-the-limit-counted",
                        test_hostdevs_past_the_limit_counted);
        g_test_add_func("/lv-domain/bounds/hostdevs-at-the-limit-accepted",
                        test_hostdevs_at_the_limit_accepted);
        g_test_add_func("/lv-domain/bounds/declarations-past-the-limit-refused",
                        test_declarations_past_the_limit_refused);
        g_test_add_func("/lv-domain/bounds/problem-echo-bounded", test_problem_echo_bounded);
        g_test_add_func("/lv-domain/bounds/many-namespaces-in-scope",
                        test_many_namespaces_in_scope);
        g_test_add_func("/lv-domain/bounds/echo-cuts-utf8-whole", test_echo_cuts_utf8_whole);

        ADD_TABLE("/lv-domain/guest-ram", ram_cases, test_guest_ram);
        g_test_add_func("/lv-domain/guest-ram/from-xml", test_guest_ram_from_xml);

        g_test_add_func("/lv-domain/metadata-format/devices", test_metadata_format);
        g_test_add_func("/lv-domain/metadata-format/escapes", test_metadata_format_escapes);
        g_test_add_func("/lv-domain/metadata-format/round-trip", test_metadata_round_trip);

        return g_test_run();
}
