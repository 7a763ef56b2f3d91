/* sysfs-parse: the text of sysfs attributes and names, parsed from buffers */
#include <errno.h>
#include <string.h>

#include "host/sysfs-parse.h"

#define WORD_MAX 64

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

static bool is_word_char(char c)
{
        return g_ascii_isalnum(c) || c == '_' || c == '-';
}

/* "0x" and 1 to 16 hex digits at *p, which then points past them. More digits than 16 are
 * refused rather than summed, so no value wraps. */
static bool take_hex(const char **p, const char *end, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;
        size_t digits = 0;

        if (end - s < 2 || s[0] != '0' || s[1] != 'x')
                return false;
        for (s += 2; s < end && g_ascii_isxdigit(*s); s++) {
                if (++digits > 16)
                        return false;
                v = v << 4 | (uint64_t)g_ascii_xdigit_value(*s);
        }
        if (digits == 0)
                return false;
        *p = s;
        *ret = v;
        return true;
}

static bool take_blanks(const char **p, const char *end)
{
        const char *s = *p;

        while (s < end && is_blank(*s))
                s++;
        if (s == *p)
                return false;
        *p = s;
        return true;
}

static size_t word_length(const char *s, const char *end)
{
        size_t n = 0;

        while (s + n < end && is_word_char(s[n]))
                n++;
        return n;
}

/* One line of reserved_regions; NULL when it is a region, else what is wrong with it. */
static const char *parse_region_line(const char *p, const char *end, HostRegion *ret)
{
        uint64_t start, last;
        size_t type_len;

        if (!take_hex(&p, end, &start) || !take_blanks(&p, end) || !take_hex(&p, end, &last) ||
            !take_blanks(&p, end))
                return "expected \"0x<start> 0x<end> <type>\"";
        type_len = word_length(p, end);
        if (type_len == 0 || type_len > WORD_MAX)
                return "the region type is not a word";
        ret->type = g_strndup(p, type_len);
        for (p += type_len; p < end; p++)
                if (!is_blank(*p))
                        return "text after the region type";
        if (start > last)
                return "start is above end";
        ret->range = (IovaRange){.start = start, .end = last};
        return NULL;
}

static void host_region_clear(gpointer p)
{
        HostRegion *r = p;

        g_clear_pointer(&r->type, g_free);
}

int sysfs_parse_reserved_regions(const char *text, size_t len, GArray **ret, SysfsParseError *err)
{
        g_autoptr(GArray) regions = g_array_new(FALSE, TRUE, sizeof(HostRegion));
        const char *p = text, *end = text + len;
        unsigned line = 0;

        g_array_set_clear_func(regions, host_region_clear);
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *eol = nl ? nl : end;
                HostRegion r = {0};
                const char *reason;

                line++;
                if (eol > p) { /* the kernel writes no empty lines, but one harms nothing */
                        reason = parse_region_line(p, eol, &r);
                        if (reason) {
                                g_free(r.type);
                                *err = (SysfsParseError){.line = line,
                                                         .offset = (size_t)(p - text),
                                                         .length = (size_t)(eol - p),
                                                         .reason = reason};
                                return -EINVAL;
                        }
                        g_array_append_val(regions, r);
                }
                p = nl ? nl + 1 : end;
        }
        *ret = g_steal_pointer(&regions);
        return 0;
}

/* The length without one trailing newline, as sysfs attributes end. */
static size_t chomp(const char *text, size_t len)
{
        return len > 0 && text[len - 1] == '\n' ? len - 1 : len;
}

int sysfs_parse_hex(const char *text, size_t len, uint64_t max, uint64_t *ret)
{
        const char *p = text, *end = text + chomp(text, len);
        uint64_t v;

        if (!take_hex(&p, end, &v) || p != end)
                return -EINVAL;
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int sysfs_parse_word(const char *text, size_t len, char **ret)
{
        size_t n = chomp(text, len);

        if (n == 0 || n > WORD_MAX || word_length(text, text + n) != n)
                return -EINVAL;
        *ret = g_strndup(text, n);
        return 0;
}

/* min to max characters for which is() holds at *p, and no more of them: *p moves past. */
static bool take_chars(const char **p, size_t min, size_t max, gboolean (*is)(gchar))
{
        size_t n = 0;

        while (n < max && is((*p)[n]))
                n++;
        if (n < min || is((*p)[n]))
                return false;
        *p += n;
        return true;
}

static gboolean is_octal_digit(gchar c)
{
        return c >= '0' && c <= '7';
}

static gboolean is_digit(gchar c)
{
        return g_ascii_isdigit(c);
}

static gboolean is_xdigit(gchar c)
{
        return g_ascii_isxdigit(c);
}

bool sysfs_name_is_group_id(const char *name)
{
        return take_chars(&name, 1, 10, is_digit) && *name == '\0';
}

bool sysfs_name_is_pci_address(const char *name)
{
        const char *p = name;

        return take_chars(&p, 4, 8, is_xdigit) && *p++ == ':' && take_chars(&p, 2, 2, is_xdigit) &&
               *p++ == ':' && take_chars(&p, 2, 2, is_xdigit) && *p++ == '.' &&
               take_chars(&p, 1, 1, is_octal_digit) && *p == '\0';
}

bool sysfs_name_is_vfio_cdev(const char *name)
{
        return g_str_has_prefix(name, "vfio") && sysfs_name_is_group_id(name + 4);
}

bool sysfs_name_is_printable(const char *name)
{
        size_t len = strlen(name);

        if (len == 0 || len > 255 || !g_utf8_validate(name, (gssize)len, NULL))
                return false;
        for (const char *p = name; *p; p = g_utf8_next_char(p))
                if (g_unichar_iscntrl(g_utf8_get_char(p)))
                        return false;
        return true;
}
