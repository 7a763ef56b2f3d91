/* lv-domain: what vfio-migd reads from a libvirt domain XML, and the metadata it writes */
#include "lv-domain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/iova.h"

#define GIB      UINT64_C(0x40000000)
#define FOUR_GIB (UINT64_C(4) * GIB)

/* A namespace declaration in scope: xmlns:PREFIX="URI" (prefix "" for xmlns="URI"). */
typedef struct NsBinding {
        char *prefix, *uri;
        int depth;
        int prev; /* index of the binding of the same prefix it hides, or -1 */
} NsBinding;

/* A <hostdev> of <metadata>, matched to the domain's hostdevs once everything is read. */
typedef struct Declared {
        char *name, *driver;
        uint16_t vendor, device;
        uint32_t flags;
} Declared;

typedef struct Parser {
        LvDomain *d;
        GArray *hostdevs;   /* LvHostdev */
        GHashTable *kept;   /* hostdev name -> index+1 in hostdevs: each name kept once */
        GArray *declared;   /* Declared */
        GHashTable *declared_by_name; /* name -> index+1 in declared (the first wins) */
        GArray *ns;                   /* NsBinding, in the order declared */
        GHashTable *ns_top;           /* prefix -> index+1 in ns of the binding in scope */
        GPtrArray *path;    /* local names of the open elements, root first */
        int hostdev;        /* index of the open VFIO hostdev, or -1 */
        int metadata_depth; /* depth of our <hostdevs> under <metadata>, or 0 */
        GString *text;      /* character data of <name>, <uuid>, <memory>, <maxMemory> */
        char *memory_unit, *max_memory_unit;
        bool has_name;
        size_t n_over; /* hostdevs past LV_DOMAIN_HOSTDEVS_MAX */
} Parser;

static void ns_binding_clear(gpointer p)
{
        NsBinding *b = p;
        g_free(b->prefix);
        g_free(b->uri);
}

static void declared_clear(gpointer p)
{
        Declared *x = p;
        g_free(x->name);
        g_free(x->driver);
}

static void hostdev_clear(LvHostdev *h)
{
        g_free(h->name);
        g_free(h->alias);
        g_free(h->problem);
        g_free(h->declared_driver);
}

char *lv_echo(const char *s, size_t max)
{
        const char *end;

        if (!s)
                return g_strdup("");
        if (!g_utf8_validate(s, -1, &end) || g_utf8_strlen(s, -1) > (glong)max) {
                /* Invalid UTF-8 is cut where it starts; the rest would be escaped anyway. */
                size_t valid = (size_t)(end - s);
                const char *cut = s;
                for (size_t n = 0; n < max && (size_t)(cut - s) < valid && *cut; n++)
                        cut = g_utf8_next_char(cut);
                return g_strdup_printf("%.*s...", (int)(cut - s), s);
        }
        return g_strdup(s);
}

/* An error in the XML's content, at the position GMarkup has reached. */
static void set_error(GMarkupParseContext *ctx, GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void set_error(GMarkupParseContext *ctx, GError **error, const char *fmt, ...)
{
        g_autofree char *msg = NULL;
        int line = 0, column = 0;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_markup_parse_context_get_position(ctx, &line, &column);
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "line %d char %d: %s",
                    line, column, msg);
}

static const char *local_name(const char *qname)
{
        const char *colon = strchr(qname, ':');
        return colon ? colon + 1 : qname;
}

/* The namespace URI of an element name ("" when it has none): one hash lookup, however
 * many declarations are in scope. */
static const char *namespace_of(const Parser *p, const char *qname)
{
        const char *colon = strchr(qname, ':');
        g_autofree char *prefix = g_strndup(qname, colon ? (size_t)(colon - qname) : 0);
        guint top = GPOINTER_TO_UINT(g_hash_table_lookup(p->ns_top, prefix));

        return top ? g_array_index(p->ns, NsBinding, top - 1).uri : "";
}

static const char *attr(const char **names, const char **values, const char *name)
{
        for (size_t i = 0; names[i]; i++)
                if (strcmp(names[i], name) == 0)
                        return values[i];
        return NULL;
}

static int depth(const Parser *p)
{
        return (int)p->path->len;
}

/* The open elements are exactly these local names (NULL-terminated), root first. */
static bool at_path(const Parser *p, ...)
{
        va_list ap;
        guint i = 0;
        const char *n;
        bool match = true;

        va_start(ap, p);
        while ((n = va_arg(ap, const char *))) {
                if (i >= p->path->len || strcmp(g_ptr_array_index(p->path, i), n) != 0)
                        match = false;
                i++;
        }
        va_end(ap);
        return match && i == p->path->len;
}

static bool in_hostdev_element(const Parser *p, const char *child)
{
        if (p->hostdev < 0)
                return false;
        return at_path(p, "domain", "devices", "hostdev", child, NULL) ||
               at_path(p, "domain", "devices", "interface", child, NULL);
}

static bool in_hostdev_source(const Parser *p, const char *child)
{
        if (p->hostdev < 0)
                return false;
        return at_path(p, "domain", "devices", "hostdev", "source", child, NULL) ||
               at_path(p, "domain", "devices", "interface", "source", child, NULL);
}

/* libvirt reads address numbers with base 0 (0x.. hex, 0.. octal, else decimal). */
static bool parse_number(const char *s, unsigned long max, unsigned long *ret)
{
        char *end;
        unsigned long v;

        if (!s || !g_ascii_isdigit(s[0]))
                return false;
        errno = 0;
        v = strtoul(s, &end, 0);
        if (errno || *end || v > max)
                return false;
        *ret = v;
        return true;
}

static void set_problem(LvHostdev *h, char *problem)
{
        if (h->problem) {
                g_free(problem);
                return;
        }
        h->problem = problem;
        g_clear_pointer(&h->name, g_free);
}

static void read_pci_address(LvHostdev *h, const char **names, const char **values)
{
        static const struct {
                const char *attr;
                unsigned long max;
                bool required;
        } fields[] = {
            {"domain", 0xffffffffUL, false},
            {"bus", 0xff, true},
            {"slot", 0x1f, true},
            {"function", 0x7, true},
        };
        unsigned long v[4] = {0};

        if (h->name || h->problem) {
                set_problem(h, g_strdup("has more than one <source><address>"));
                return;
        }
        for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
                const char *s = attr(names, values, fields[i].attr);
                if (!s && !fields[i].required)
                        continue;
                if (!s) {
                        set_problem(h, g_strdup_printf("<source><address> has no %s= attribute",
                                                       fields[i].attr));
                        return;
                }
                if (!parse_number(s, fields[i].max, &v[i])) {
                        g_autofree char *echo = lv_echo(s, LV_DOMAIN_ECHO_MAX);
                        set_problem(h, g_strdup_printf("<source><address %s='%s'> is not a number "
                                                       "from 0 to 0x%lx",
                                                       fields[i].attr, echo, fields[i].max));
                        return;
                }
        }
        h->name = g_strdup_printf("%04lx:%02lx:%02lx.%lx", v[0], v[1], v[2], v[3]);
}

static bool uuid_valid(const char *s)
{
        static const int dashes[] = {8, 13, 18, 23};
        size_t n = 0;

        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                if (n < G_N_ELEMENTS(dashes) && (int)i == dashes[n]) {
                        if (s[i] != '-')
                                return false;
                        n++;
                } else if (!g_ascii_isxdigit(s[i])) {
                        return false;
                }
        }
        return true;
}

static void read_mdev_address(LvHostdev *h, const char **names, const char **values)
{
        const char *uuid = attr(names, values, "uuid");

        if (h->name || h->problem) {
                set_problem(h, g_strdup("has more than one <source><address>"));
                return;
        }
        if (!uuid) {
                set_problem(h, g_strdup("<source><address> has no uuid= attribute"));
        } else if (!uuid_valid(uuid)) {
                g_autofree char *echo = lv_echo(uuid, LV_DOMAIN_ECHO_MAX);
                set_problem(h, g_strdup_printf("<source><address uuid='%s'> is not a UUID "
                                               "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                                               echo));
        } else {
                h->name = g_ascii_strdown(uuid, -1);
        }
}

/* <hostdev mode='subsystem' type='pci'|'mdev'> and <interface type='hostdev'> are VFIO. */
static void open_hostdev(Parser *p, const char *element, const char **names, const char **values)
{
        LvHostdev h = {0};

        if (strcmp(element, "hostdev") == 0) {
                const char *mode = attr(names, values, "mode");
                const char *type = attr(names, values, "type");
                if (mode && strcmp(mode, "subsystem") != 0)
                        return;
                if (g_strcmp0(type, "pci") == 0)
                        h.type = LV_HOSTDEV_PCI;
                else if (g_strcmp0(type, "mdev") == 0)
                        h.type = LV_HOSTDEV_MDEV;
                else
                        return;
        } else {
                if (g_strcmp0(attr(names, values, "type"), "hostdev") != 0)
                        return;
                h.type = LV_HOSTDEV_PCI;
        }
        h.copies = 1;
        g_array_append_val(p->hostdevs, h);
        p->hostdev = (int)p->hostdevs->len - 1;
}

/*
 * The open hostdev is complete: a name seen before is counted on the hostdev that has it, a
 * hostdev past the limit only counted; either way it is not kept. Hashing keeps this O(1).
 */
static void close_hostdev(Parser *p)
{
        guint i = (guint)p->hostdev;
        LvHostdev *h = &g_array_index(p->hostdevs, LvHostdev, i);
        guint first = h->name ? GPOINTER_TO_UINT(g_hash_table_lookup(p->kept, h->name)) : 0;

        if (!h->name && !h->problem)
                h->problem = g_strdup("has no <source><address>");
        p->hostdev = -1;
        if (first) {
                g_array_index(p->hostdevs, LvHostdev, first - 1).copies++;
                hostdev_clear(h);
                g_array_remove_index(p->hostdevs, i);
        } else if (p->hostdevs->len > LV_DOMAIN_HOSTDEVS_MAX) {
                p->n_over++;
                hostdev_clear(h);
                g_array_remove_index(p->hostdevs, i);
        } else if (h->name) {
                g_hash_table_insert(p->kept, h->name, GUINT_TO_POINTER(i + 1));
        }
}

static bool parse_hex(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;

        if (len == 0 || len > 16)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (!g_ascii_isxdigit(s[i]))
                        return false;
                v = v << 4 | (uint64_t)g_ascii_xdigit_value(s[i]);
        }
        if (v > max)
                return false;
        *ret = v;
        return true;
}

static void read_declared(GMarkupParseContext *ctx, Parser *p, const char **names,
                          const char **values, GError **error)
{
        const char *name = attr(names, values, "name");
        const char *id = attr(names, values, "id");
        const char *flags = attr(names, values, "flags");
        uint64_t vendor, device, f;
        Declared x = {0};

        if (p->declared->len >= LV_DOMAIN_HOSTDEVS_MAX) {
                set_error(ctx, error,
                          "the vfio-migd metadata declares more than %u hostdevs, more than a "
                          "VM holds; vfio-migd writes one per device of the VM (remove the "
                          "metadata with 'virsh metadata DOMAIN --uri %s --remove' and let the "
                          "source's vfio-migd write it again)",
                          LV_DOMAIN_HOSTDEVS_MAX, LV_METADATA_NS);
                return;
        }
        if (!name || !id || !flags) {
                set_error(ctx, error,
                          "the vfio-migd metadata has a <hostdev> without %s=; vfio-migd "
                          "writes name=, id= and flags= (remove the metadata with 'virsh "
                          "metadata DOMAIN --uri %s --remove' and let the source's vfio-migd "
                          "write it again)",
                          !name ? "name"
                          : !id ? "id"
                                : "flags",
                          LV_METADATA_NS);
                return;
        }
        if (strlen(id) != 9 || id[4] != ':' || !parse_hex(id, 4, 0xffff, &vendor) ||
            !parse_hex(id + 5, 4, 0xffff, &device)) {
                g_autofree char *n = lv_echo(name, LV_DOMAIN_ECHO_MAX);
                g_autofree char *i = lv_echo(id, LV_DOMAIN_ECHO_MAX);
                set_error(ctx, error,
                          "the vfio-migd metadata gives hostdev '%s' the id '%s'; an id is "
                          "vvvv:dddd in hex",
                          n, i);
                return;
        }
        if (!(flags[0] == '0' && (flags[1] == 'x' || flags[1] == 'X')) ||
            !parse_hex(flags + 2, strlen(flags + 2), UINT32_MAX, &f)) {
                g_autofree char *n = lv_echo(name, LV_DOMAIN_ECHO_MAX);
                g_autofree char *fl = lv_echo(flags, LV_DOMAIN_ECHO_MAX);
                set_error(ctx, error,
                          "the vfio-migd metadata gives hostdev '%s' the flags '%s'; flags are "
                          "0x followed by hex digits",
                          n, fl);
                return;
        }
        x.name = g_ascii_strdown(name, -1);
        x.driver = g_strdup(attr(names, values, "driver"));
        x.vendor = (uint16_t)vendor;
        x.device = (uint16_t)device;
        x.flags = (uint32_t)f;
        g_array_append_val(p->declared, x);
        if (!g_hash_table_contains(p->declared_by_name, x.name))
                g_hash_table_insert(p->declared_by_name, x.name,
                                    GUINT_TO_POINTER(p->declared->len));
}

static void push_namespaces(Parser *p, const char **names, const char **values)
{
        for (size_t i = 0; names[i]; i++) {
                NsBinding b;
                if (strcmp(names[i], "xmlns") == 0)
                        b.prefix = g_strdup("");
                else if (g_str_has_prefix(names[i], "xmlns:"))
                        b.prefix = g_strdup(names[i] + strlen("xmlns:"));
                else
                        continue;
                b.uri = g_strdup(values[i]);
                b.depth = depth(p);
                b.prev = (int)GPOINTER_TO_UINT(g_hash_table_lookup(p->ns_top, b.prefix)) - 1;
                g_array_append_val(p->ns, b);
                g_hash_table_insert(p->ns_top, g_strdup(b.prefix), GUINT_TO_POINTER(p->ns->len));
        }
}

/* The bindings of the element being closed go out of scope; the ones they hid come back. */
static void pop_namespaces(Parser *p, int d)
{
        while (p->ns->len && g_array_index(p->ns, NsBinding, p->ns->len - 1).depth == d) {
                const NsBinding *b = &g_array_index(p->ns, NsBinding, p->ns->len - 1);
                if (b->prev >= 0)
                        g_hash_table_insert(p->ns_top, g_strdup(b->prefix),
                                            GUINT_TO_POINTER((guint)b->prev + 1));
                else
                        g_hash_table_remove(p->ns_top, b->prefix);
                g_array_remove_index(p->ns, p->ns->len - 1);
        }
}

static void on_start(GMarkupParseContext *ctx, const char *element, const char **names,
                     const char **values, gpointer user_data, GError **error)
{
        Parser *p = user_data;
        const char *local = local_name(element);

        g_ptr_array_add(p->path, g_strdup(local));
        push_namespaces(p, names, values);

        if (depth(p) == 1) {
                if (strcmp(element, "domain") != 0)
                        set_error(ctx, error,
                                  "the root element is <%s>, not <domain>; a libvirt domain XML "
                                  "as 'virsh dumpxml' writes it is expected",
                                  element);
                return;
        }
        if (p->metadata_depth) {
                if (depth(p) == p->metadata_depth + 1 && strcmp(local, "hostdev") == 0)
                        read_declared(ctx, p, names, values, error);
                return;
        }
        if (at_path(p, "domain", "name", NULL) || at_path(p, "domain", "uuid", NULL)) {
                g_string_truncate(p->text, 0);
        } else if (at_path(p, "domain", "memory", NULL)) {
                g_string_truncate(p->text, 0);
                g_free(p->memory_unit);
                p->memory_unit = g_strdup(attr(names, values, "unit"));
        } else if (at_path(p, "domain", "maxMemory", NULL)) {
                g_string_truncate(p->text, 0);
                g_free(p->max_memory_unit);
                p->max_memory_unit = g_strdup(attr(names, values, "unit"));
        } else if (at_path(p, "domain", "os", "type", NULL)) {
                g_free(p->d->arch);
                g_free(p->d->machine);
                p->d->arch = g_strdup(attr(names, values, "arch"));
                p->d->machine = g_strdup(attr(names, values, "machine"));
        } else if (at_path(p, "domain", "devices", "hostdev", NULL) ||
                   at_path(p, "domain", "devices", "interface", NULL)) {
                open_hostdev(p, local, names, values);
        } else if (in_hostdev_source(p, "address")) {
                LvHostdev *h = &g_array_index(p->hostdevs, LvHostdev, p->hostdev);
                if (h->type == LV_HOSTDEV_PCI)
                        read_pci_address(h, names, values);
                else
                        read_mdev_address(h, names, values);
        } else if (in_hostdev_element(p, "alias")) {
                LvHostdev *h = &g_array_index(p->hostdevs, LvHostdev, p->hostdev);
                g_free(h->alias);
                h->alias = g_strdup(attr(names, values, "name"));
        } else if (depth(p) == 3 && at_path(p, "domain", "metadata", local, NULL) &&
                   strcmp(local, "hostdevs") == 0 &&
                   strcmp(namespace_of(p, element), LV_METADATA_NS) == 0) {
                p->metadata_depth = depth(p);
                p->d->has_metadata = true;
        }
        (void)ctx;
}

static int parse_size(GMarkupParseContext *ctx, const char *text, const char *unit, uint64_t *ret,
                      GError **error, const char *element)
{
        static const struct {
                const char *name;
                uint64_t scale;
        } units[] = {
            {"b", 1},
            {"byte", 1},
            {"bytes", 1},
            {"KB", UINT64_C(1000)},
            {"k", UINT64_C(1) << 10},
            {"KiB", UINT64_C(1) << 10},
            {"MB", UINT64_C(1000000)},
            {"M", UINT64_C(1) << 20},
            {"MiB", UINT64_C(1) << 20},
            {"GB", UINT64_C(1000000000)},
            {"G", UINT64_C(1) << 30},
            {"GiB", UINT64_C(1) << 30},
            {"TB", UINT64_C(1000000000000)},
            {"T", UINT64_C(1) << 40},
            {"TiB", UINT64_C(1) << 40},
            {"PB", UINT64_C(1000000000000000)},
            {"P", UINT64_C(1) << 50},
            {"PiB", UINT64_C(1) << 50},
            {"EB", UINT64_C(1000000000000000000)},
            {"E", UINT64_C(1) << 60},
            {"EiB", UINT64_C(1) << 60},
        };
        g_autofree char *t = g_strstrip(g_strdup(text));
        uint64_t scale = 0, v;
        char *end;

        if (!unit)
                scale = 1024;
        for (size_t i = 0; !scale && i < G_N_ELEMENTS(units); i++)
                if (g_ascii_strcasecmp(unit, units[i].name) == 0)
                        scale = units[i].scale;
        if (!scale) {
                set_error(ctx, error, "<%s unit='%s'>: unknown unit; use b, KiB, MiB, GiB or TiB",
                          element, unit);
                return -EINVAL;
        }
        errno = 0;
        v = g_ascii_strtoull(t, &end, 10);
        if (!g_ascii_isdigit(t[0]) || errno || *end || (v && v > UINT64_MAX / scale)) {
                set_error(ctx, error,
                          "<%s>%s</%s> is not a size: a whole number of %s below 2^64 bytes is "
                          "expected",
                          element, t, element, unit ? unit : "KiB");
                return -EINVAL;
        }
        *ret = v * scale;
        return 0;
}

static void on_end(GMarkupParseContext *ctx, const char *element, gpointer user_data,
                   GError **error)
{
        Parser *p = user_data;
        int d = depth(p);

        if (at_path(p, "domain", "name", NULL)) {
                if (p->has_name)
                        set_error(ctx, error, "the domain has more than one <name>");
                g_free(p->d->name);
                p->d->name = g_strdup(p->text->str);
                p->has_name = true;
        } else if (at_path(p, "domain", "uuid", NULL)) {
                g_free(p->d->uuid);
                p->d->uuid = g_strstrip(g_strdup(p->text->str));
        } else if (at_path(p, "domain", "memory", NULL)) {
                parse_size(ctx, p->text->str, p->memory_unit, &p->d->memory_bytes, error, "memory");
        } else if (at_path(p, "domain", "maxMemory", NULL)) {
                parse_size(ctx, p->text->str, p->max_memory_unit, &p->d->max_memory_bytes, error,
                           "maxMemory");
        } else if (d == 3 && p->hostdev >= 0) {
                close_hostdev(p);
        }
        if (d == p->metadata_depth)
                p->metadata_depth = 0;
        pop_namespaces(p, d);
        g_ptr_array_remove_index(p->path, p->path->len - 1);
        (void)ctx;
        (void)element;
}

static void on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer user_data,
                    GError **error)
{
        Parser *p = user_data;

        if (depth(p) == 2)
                g_string_append_len(p->text, text, (gssize)len);
        (void)ctx;
        (void)error;
}

static void apply_declared(Parser *p)
{
        for (guint i = 0; i < p->hostdevs->len; i++) {
                LvHostdev *h = &g_array_index(p->hostdevs, LvHostdev, i);
                guint j = h->name
                              ? GPOINTER_TO_UINT(g_hash_table_lookup(p->declared_by_name, h->name))
                              : 0;
                const Declared *x;

                if (!j)
                        continue;
                x = &g_array_index(p->declared, Declared, j - 1);
                h->has_declared = true;
                h->declared_driver = g_strdup(x->driver);
                h->declared_vendor = x->vendor;
                h->declared_device = x->device;
                h->declared_flags = x->flags;
        }
}

static void parser_clear(Parser *p)
{
        g_hash_table_unref(p->kept);
        g_hash_table_unref(p->declared_by_name);
        g_hash_table_unref(p->ns_top);
        g_array_unref(p->declared);
        g_array_unref(p->ns);
        g_ptr_array_unref(p->path);
        g_string_free(p->text, TRUE);
        g_free(p->memory_unit);
        g_free(p->max_memory_unit);
        if (p->hostdevs) {
                for (guint i = 0; i < p->hostdevs->len; i++)
                        hostdev_clear(&g_array_index(p->hostdevs, LvHostdev, i));
                g_array_unref(p->hostdevs);
        }
        lv_domain_free(p->d);
}

static int fail(GError **error, GError *e)
{
        g_set_error(error, G_MARKUP_ERROR, e->code,
                    "invalid domain XML: %s (vfio-migd reads the domain XML as libvirt writes "
                    "it, e.g. 'virsh dumpxml DOMAIN')",
                    e->message);
        g_error_free(e);
        return -EINVAL;
}

int lv_domain_parse(const char *xml, size_t len, LvDomain **ret, GError **error)
{
        static const GMarkupParser callbacks = {
            .start_element = on_start,
            .end_element = on_end,
            .text = on_text,
        };
        Parser p = {
            .d = g_new0(LvDomain, 1),
            .hostdevs = g_array_new(FALSE, TRUE, sizeof(LvHostdev)),
            .kept = g_hash_table_new(g_str_hash, g_str_equal),
            .declared = g_array_new(FALSE, TRUE, sizeof(Declared)),
            .declared_by_name = g_hash_table_new(g_str_hash, g_str_equal),
            .ns = g_array_new(FALSE, TRUE, sizeof(NsBinding)),
            .ns_top = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL),
            .path = g_ptr_array_new_with_free_func(g_free),
            .hostdev = -1,
            .text = g_string_new(NULL),
        };
        GMarkupParseContext *ctx;
        GError *e = NULL;
        const char *nul;
        bool ok;

        g_array_set_clear_func(p.declared, declared_clear);
        g_array_set_clear_func(p.ns, ns_binding_clear);
        if (len > LV_DOMAIN_XML_MAX) {
                parser_clear(&p);
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                            "the domain XML is %zu bytes, more than the %u vfio-migd reads; a "
                            "libvirt domain XML is far smaller, so this is not one",
                            len, LV_DOMAIN_XML_MAX);
                return -EINVAL;
        }
        nul = memchr(xml, '\0', len);
        if (nul) {
                parser_clear(&p);
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_BAD_UTF8,
                            "invalid domain XML: a NUL byte at offset %td; XML is text", nul - xml);
                return -EINVAL;
        }
        ctx = g_markup_parse_context_new(&callbacks, 0, &p, NULL);
        ok = g_markup_parse_context_parse(ctx, xml, (gssize)len, &e) &&
             g_markup_parse_context_end_parse(ctx, &e);
        g_markup_parse_context_free(ctx);
        if (!ok) {
                parser_clear(&p);
                return fail(error, e);
        }
        if (!p.has_name || !p.d->name[0]) {
                parser_clear(&p);
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_MISSING_ATTRIBUTE,
                            "invalid domain XML: the <domain> has %s <name>; libvirt's domain "
                            "XML always names the domain",
                            p.has_name ? "an empty" : "no");
                return -EINVAL;
        }
        apply_declared(&p);
        p.d->n_over = p.n_over;
        p.d->n_hostdevs = p.hostdevs->len;
        p.d->hostdevs = (LvHostdev *)(void *)g_array_free(g_steal_pointer(&p.hostdevs), FALSE);
        *ret = g_steal_pointer(&p.d);
        parser_clear(&p);
        return 0;
}

void lv_domain_free(LvDomain *d)
{
        if (!d)
                return;
        for (size_t i = 0; i < d->n_hostdevs; i++)
                hostdev_clear(&d->hostdevs[i]);
        g_free(d->hostdevs);
        g_free(d->name);
        g_free(d->uuid);
        g_free(d->machine);
        g_free(d->arch);
        g_free(d);
}

int lv_domain_check_bounds(const LvDomain *d, GError **error)
{
        g_autofree char *name = lv_echo(d->name, LV_DOMAIN_ECHO_MAX);
        g_autofree char *more = NULL;
        const LvHostdev *first = NULL;
        size_t copies = 0, others = 0;

        if (d->n_over > 0) {
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                            "Domain %s lists %zu VFIO hostdevs; a VM holds at most %u (the "
                            "first %u were read, %zu more were not): give the domain fewer "
                            "hostdevs.",
                            name, d->n_hostdevs + d->n_over, LV_DOMAIN_HOSTDEVS_MAX,
                            LV_DOMAIN_HOSTDEVS_MAX, d->n_over);
                return -EINVAL;
        }
        for (size_t i = 0; i < d->n_hostdevs; i++) {
                const LvHostdev *h = &d->hostdevs[i];
                if (h->copies <= 1)
                        continue;
                if (!first)
                        first = h;
                else
                        others++;
                copies += h->copies - 1;
        }
        if (!first)
                return 0;
        more = others ? g_strdup_printf(" (and %zu more hostdevs more than once)", others)
                      : g_strdup("");
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "Domain %s lists hostdev %s %zu times%s, %zu copies in all: libvirt gives "
                    "a device to a domain once; list each hostdev once.",
                    name, first->name, first->copies, more, copies);
        return -EINVAL;
}

char *lv_hostdev_label(const LvDomain *d, size_t i)
{
        const LvHostdev *h = &d->hostdevs[i];

        if (h->name)
                return g_strdup(h->name);
        if (h->alias)
                return g_strdup(h->alias);
        return g_strdup_printf("%zu of %zu", i + 1, d->n_hostdevs);
}

size_t lv_domain_n_usable(const LvDomain *d)
{
        size_t n = 0;

        for (size_t i = 0; i < d->n_hostdevs; i++)
                if (d->hostdevs[i].name)
                        n++;
        return n;
}

static bool arch_is_x86(const char *arch)
{
        return !arch || strcmp(arch, "x86_64") == 0 || strcmp(arch, "i686") == 0 ||
               strcmp(arch, "i386") == 0;
}

/* QEMU's RAM below 4 GiB: q35 and i440fx keep a hole under 4 GiB for PCI and firmware. */
static uint64_t x86_low_memory(const char *machine, uint64_t ram)
{
        uint64_t limit;

        if (machine && strstr(machine, "q35"))
                limit = ram >= UINT64_C(0xb0000000) ? UINT64_C(0x80000000) : UINT64_C(0xb0000000);
        else
                limit = ram >= UINT64_C(0xe0000000) ? UINT64_C(0xc0000000) : UINT64_C(0xe0000000);
        return MIN(ram, limit);
}

GArray *lv_domain_guest_ram(const LvDomain *d)
{
        GArray *a = iova_ranges_new();
        uint64_t ram = d->memory_bytes, low, high, end;

        if (!arch_is_x86(d->arch)) {
                uint64_t size = MAX(ram, d->max_memory_bytes);
                if (size)
                        iova_ranges_add(a, 0, size - 1);
                return a;
        }
        low = x86_low_memory(d->machine, ram);
        high = ram - low;
        if (low)
                iova_ranges_add(a, 0, low - 1);
        if (high)
                iova_ranges_add(a, FOUR_GIB,
                                high > UINT64_MAX - FOUR_GIB + 1 ? UINT64_MAX
                                                                 : FOUR_GIB + high - 1);
        if (d->max_memory_bytes > ram && high <= UINT64_MAX - FOUR_GIB - GIB) {
                /* QEMU's device memory region starts at the next GiB after the RAM above 4 GiB. */
                uint64_t start = (FOUR_GIB + high + GIB - 1) & ~(GIB - 1);
                uint64_t size = d->max_memory_bytes - ram;
                end = size - 1 > UINT64_MAX - start ? UINT64_MAX : start + size - 1;
                iova_ranges_add(a, start, end);
        }
        return a;
}

char *lv_metadata_format(const LvDeclared *devs, size_t n)
{
        GString *s = g_string_new("<hostdevs>\n");

        for (size_t i = 0; i < n; i++) {
                g_autofree char *name = g_markup_escape_text(devs[i].name ? devs[i].name : "", -1);
                g_string_append_printf(s, "  <hostdev name=\"%s\"", name);
                if (devs[i].driver) {
                        g_autofree char *driver = g_markup_escape_text(devs[i].driver, -1);
                        g_string_append_printf(s, " driver=\"%s\"", driver);
                }
                g_string_append_printf(s, " id=\"%04x:%04x\" flags=\"0x%" PRIx32 "\"/>\n",
                                       devs[i].vendor, devs[i].device, devs[i].flags);
        }
        g_string_append(s, "</hostdevs>");
        return g_string_free(s, FALSE);
}
