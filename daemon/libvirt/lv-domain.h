/* lv-domain: what vfio-migd reads from a libvirt domain XML, and the metadata it writes */
#pragma once

/*
 * Pure parsing (GMarkup), no libvirt calls, no I/O: the daemon's libvirt tracker, the
 * RegisterVMFromXML and CheckIncomingMigration methods, the hook and the fuzzer share it.
 *
 * Read: the domain's name and UUID, its memory size and machine, the VFIO hostdevs
 *   <hostdev mode='subsystem' type='pci'> <source><address domain= bus= slot= function=/>
 *   <hostdev mode='subsystem' type='mdev'> <source><address uuid=/>
 *   <interface type='hostdev'> <source><address type='pci' domain= bus= slot= function=/>
 * (with their <alias name=>), and the <metadata> element vfio-migd itself writes on the
 * source (LV_METADATA_NS), which declares each hostdev's driver, PCI id and migration
 * flags as the source saw them. It is found by its namespace URI whatever the prefix (or a
 * default xmlns=); its <hostdev> children may carry the prefix or none, as libvirt stores
 * them. A malformed declaration (no name=, id= not vvvv:dddd, flags= not 0x..) is an error:
 * only vfio-migd writes it. Addresses are read as libvirt reads them (base 0: 0x.. hex).
 *
 * A hostdev that is not VFIO-capable (type usb/scsi, mode capabilities) is skipped, not an
 * error; one with a malformed address is kept with ->problem set (the daemon reports it,
 * never drops it silently).
 *
 * Bounded: a hostdev listed again (same name) is kept once and counted (->copies); at most
 * LV_DOMAIN_HOSTDEVS_MAX hostdevs are kept, the rest only counted (->n_over), so memory and
 * the work of every caller stay bounded whatever the XML holds; lv_domain_check_bounds()
 * turns either into the caller's error. Every step is O(1) per element or attribute (the
 * namespace in scope and the declarations are hashed), values echoed in problems are cut to
 * LV_DOMAIN_ECHO_MAX characters.
 *
 * Errors: -EINVAL with a GError sentence naming what is wrong in the XML (line and column
 * when GMarkup gives them) and what would fix it. Inputs of any size and content are safe
 * (fuzzed); XML over LV_DOMAIN_XML_MAX bytes, or with a NUL byte, is refused.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define LV_DOMAIN_XML_MAX (16u << 20)
/* = VM_DEVICES_MAX: a VM holds no more devices (lv-xml.c checks they agree) */
#define LV_DOMAIN_HOSTDEVS_MAX 256u
#define LV_DOMAIN_ECHO_MAX     64u
/* What fixes a domain whose name cannot be a VM name (vm_name_problem()). */
#define LV_DOMAIN_RENAME_FIX                                                                       \
        "rename the domain ('virsh domrename'): a VM name is 1 to 1024 bytes of UTF-8 without "    \
        "control characters or '/'"
#define LV_METADATA_NS    "https://vfio-migd.org/xmlns/hostdevs/1"
#define LV_METADATA_KEY   "vfiomig"

typedef enum LvHostdevType {
        LV_HOSTDEV_PCI,
        LV_HOSTDEV_MDEV,
} LvHostdevType;

typedef struct LvHostdev {
        LvHostdevType type;
        char *name;    /* the backend's device name: "0000:03:00.1" (lower-case hex,
                          normalized from the XML's 0x.. attributes) or the mdev UUID
                          (lower case); NULL when ->problem is set */
        char *alias;   /* <alias name=>, or NULL */
        char *problem; /* NULL, or why the hostdev's address cannot be used */
        /* Declared by the source's vfio-migd in <metadata> (has_declared false: none). */
        bool has_declared;
        char *declared_driver;
        uint16_t declared_vendor, declared_device;
        uint32_t declared_flags; /* MIG_FLAG_* */
        size_t copies;           /* how often the XML lists this name: 1, or more (an error) */
} LvHostdev;

typedef struct LvDomain {
        char *name;
        char *uuid;             /* NULL when the XML has none */
        uint64_t memory_bytes;  /* <memory> in bytes (unit honoured; KiB by default) */
        uint64_t max_memory_bytes; /* <maxMemory>, 0 when absent */
        char *machine;          /* <os><type machine=...>, or NULL */
        char *arch;             /* <os><type arch=...>, or NULL */
        LvHostdev *hostdevs;    /* at most LV_DOMAIN_HOSTDEVS_MAX, each name once */
        size_t n_hostdevs;
        size_t n_over;          /* VFIO hostdevs past LV_DOMAIN_HOSTDEVS_MAX, not kept */
        bool has_metadata;      /* the vfio-migd metadata element was present */
} LvDomain;

int lv_domain_parse(const char *xml, size_t len, LvDomain **ret, GError **error);
void lv_domain_free(LvDomain *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LvDomain, lv_domain_free)

/*
 * -EINVAL with a sentence when the XML lists a hostdev more than once or more VFIO hostdevs
 * than LV_DOMAIN_HOSTDEVS_MAX: the first duplicate named, the others summarized ("and 131068
 * more copies"), so the sentence stays short whatever the XML holds.
 */
int lv_domain_check_bounds(const LvDomain *d, GError **error);

/* At most max characters of s (UTF-8 kept whole, "..." appended when cut); NULL: "". New. */
char *lv_echo(const char *s, size_t max);
/* How messages name hostdev i: its device name, else its alias, else its position among the
 * domain's VFIO hostdevs ("3 of 8", counted from 1); callers say "hostdev %s". */
char *lv_hostdev_label(const LvDomain *d, size_t i);

/* Number of hostdevs with a name (no problem). */
size_t lv_domain_n_usable(const LvDomain *d);

/*
 * The guest-physical ranges the guest's RAM occupies, [start, end] inclusive (IovaRange from
 * core/iova.h), following QEMU's x86 layout for the machine type: RAM below 4 GiB up to the
 * machine's low-memory limit (q35: 2 GiB when the RAM is 2.75 GiB or more, else up to
 * 2.75 GiB; i440fx "pc": 3 GiB when 3.5 GiB or more, else up to 3.5 GiB), the rest from
 * 4 GiB, and when max_memory_bytes is larger the hotplug area (from the next GiB boundary
 * after the RAM above 4 GiB, max_memory_bytes - memory_bytes long). Another or no x86
 * machine is taken as "pc", QEMU's default. A device DMAs to
 * these addresses, so the destination's valid IOVA space must cover them. Non-x86 arches:
 * one range from 0. Returns a new GArray of IovaRange.
 */
GArray *lv_domain_guest_ram(const LvDomain *d);

/*
 * The <vfiomig:hostdevs> element the daemon stores with virDomainSetMetadata (key
 * LV_METADATA_KEY, namespace LV_METADATA_NS): one <hostdev name= driver= id="vvvv:dddd"
 * flags="0x.."/> per device. XML-escaped. Newly allocated.
 */
typedef struct LvDeclared {
        const char *name, *driver;
        uint16_t vendor, device;
        uint32_t flags;
} LvDeclared;
char *lv_metadata_format(const LvDeclared *devs, size_t n);
