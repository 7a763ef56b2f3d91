/* fuzz-domain-xml: libFuzzer target for the libvirt domain XML reader and the metadata writer
 *
 * Every input either parses into a domain whose hostdevs each have exactly one of a name or
 * a problem, whose guest RAM ranges are well formed, and whose declared metadata survives a
 * round trip through lv_metadata_format(); or fails with -EINVAL and a message. Never a
 * crash, a leak or undefined behaviour.
 */
#include <errno.h>
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "core/iova.h"
#include "libvirt/lv-domain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ram(const LvDomain *d)
{
        g_autoptr(GArray) ram = lv_domain_guest_ram(d);
        uint64_t total = 0;

        for (guint i = 0; i < ram->len; i++) {
                const IovaRange *r = &g_array_index(ram, IovaRange, i);
                if (r->start > r->end)
                        __builtin_trap();
                /* Ranges come sorted and disjoint. */
                if (i && r->start <= g_array_index(ram, IovaRange, i - 1).end)
                        __builtin_trap();
                total += r->end - r->start + 1;
        }
        /* The RAM the guest has is all there (when the arithmetic did not saturate). */
        if (d->memory_bytes < (UINT64_C(1) << 62) && total < d->memory_bytes)
                __builtin_trap();
}

/* What the domain declares, written again and read back, is the same. */
static void check_metadata_round_trip(const LvDomain *d)
{
        g_autofree LvDeclared *decl = g_new0(LvDeclared, d->n_hostdevs + 1);
        g_autofree char *content = NULL;
        g_autofree char *inner = NULL;
        g_autoptr(GString) xml = g_string_new("<domain><name>x</name><metadata>");
        g_autoptr(LvDomain) back = NULL;
        g_autoptr(GError) error = NULL;
        size_t n = 0;

        for (size_t i = 0; i < d->n_hostdevs; i++) {
                const LvHostdev *h = &d->hostdevs[i];
                if (!h->has_declared)
                        continue;
                decl[n++] = (LvDeclared){h->name, h->declared_driver, h->declared_vendor,
                                         h->declared_device, h->declared_flags};
        }
        content = lv_metadata_format(decl, n);
        if (!g_str_has_prefix(content, "<hostdevs>") || !g_str_has_suffix(content, "</hostdevs>"))
                __builtin_trap();
        inner = g_strndup(content + strlen("<hostdevs>"),
                          strlen(content) - strlen("<hostdevs></hostdevs>"));
        g_string_append_printf(xml, "<v:hostdevs xmlns:v='%s'>%s</v:hostdevs></metadata><devices>",
                               LV_METADATA_NS, inner);
        for (size_t i = 0; i < n; i++) {
                g_autofree char *uuid = g_markup_escape_text(decl[i].name, -1);
                /* Every declared name is one of the domain's hostdev names: PCI or UUID. */
                if (strchr(decl[i].name, ':'))
                        g_string_append_printf(
                            xml,
                            "<hostdev mode='subsystem' type='pci'><source><address "
                            "domain='0x%.*s' bus='0x%.2s' slot='0x%.2s' function='0x%.1s'/>"
                            "</source></hostdev>",
                            (int)(strchr(decl[i].name, ':') - decl[i].name), decl[i].name,
                            strchr(decl[i].name, ':') + 1, strrchr(decl[i].name, ':') + 1,
                            strrchr(decl[i].name, '.') + 1);
                else
                        g_string_append_printf(xml,
                                               "<hostdev mode='subsystem' type='mdev'><source>"
                                               "<address uuid='%s'/></source></hostdev>",
                                               uuid);
        }
        g_string_append(xml, "</devices></domain>");
        if (lv_domain_parse(xml->str, xml->len, &back, &error) < 0 || !back->has_metadata ||
            back->n_hostdevs != n)
                __builtin_trap();
        for (size_t i = 0; i < n; i++) {
                const LvHostdev *h = &back->hostdevs[i];
                if (!h->has_declared || g_strcmp0(h->name, decl[i].name) != 0)
                        __builtin_trap();
                if (h->declared_vendor != decl[i].vendor || h->declared_device != decl[i].device ||
                    h->declared_flags != decl[i].flags ||
                    g_strcmp0(h->declared_driver, decl[i].driver) != 0)
                        __builtin_trap();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autoptr(LvDomain) d = NULL;
        g_autoptr(GError) error = NULL;
        int r = lv_domain_parse((const char *)data, size, &d, &error);

        if (r < 0) {
                if (r != -EINVAL || d || !error || !error->message[0])
                        __builtin_trap();
                return 0;
        }
        if (!d || error || !d->name || !d->name[0])
                __builtin_trap();
        for (size_t i = 0; i < d->n_hostdevs; i++)
                if (!d->hostdevs[i].name == !d->hostdevs[i].problem || d->hostdevs[i].copies < 1)
                        __builtin_trap();
        if (lv_domain_n_usable(d) > d->n_hostdevs || d->n_hostdevs > LV_DOMAIN_HOSTDEVS_MAX)
                __builtin_trap();
        /* The bounds check names the problem in a short sentence, or passes. */
        {
                g_autoptr(GError) bounds = NULL;
                r = lv_domain_check_bounds(d, &bounds);
                if ((r < 0) != (bounds != NULL) || (bounds && strlen(bounds->message) > 512))
                        __builtin_trap();
        }
        check_ram(d);
        check_metadata_round_trip(d);
        return 0;
}
