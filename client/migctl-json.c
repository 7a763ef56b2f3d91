/* migctl-json: D-Bus message values as jansson JSON, and small readers of JSON fields */
#include "migctl-json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>

static bool bus_type_is_basic_char(char t)
{
        return t && strchr("ybnqiuxtdsogh", t);
}

/* jansson's integers are signed 64-bit and a double cannot hold 2^64-1 (the top of the IOVA
 * space): above INT64_MAX the exact value goes out as a decimal string. */
static json_t *json_from_u64(uint64_t v)
{
        if (v > (uint64_t)INT64_MAX) {
                char buf[24];
                snprintf(buf, sizeof(buf), "%" PRIu64, v);
                return json_string(buf);
        }
        return json_integer((json_int_t)v);
}

static int read_basic(sd_bus_message *m, char type, json_t **ret)
{
        union {
                uint8_t y;
                int b;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                const char *s;
                int h;
        } v;
        int r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        switch (type) {
        case 'y':
                *ret = json_integer(v.y);
                break;
        case 'b':
                *ret = json_boolean(v.b);
                break;
        case 'n':
                *ret = json_integer(v.n);
                break;
        case 'q':
                *ret = json_integer(v.q);
                break;
        case 'i':
                *ret = json_integer(v.i);
                break;
        case 'u':
                *ret = json_integer(v.u);
                break;
        case 'x':
                *ret = json_integer(v.x);
                break;
        case 't':
                *ret = json_from_u64(v.t);
                break;
        case 'd':
                *ret = json_real(v.d);
                break;
        case 'h':
                *ret = json_integer(v.h);
                break;
        default:
                *ret = json_string(v.s ? v.s : "");
                break; /* s, o, g */
        }
        return *ret ? 0 : -ENOMEM;
}

/* A dictionary key as object key text. */
static int read_key(sd_bus_message *m, char **ret)
{
        json_t *k = NULL;
        char type;
        int r = sd_bus_message_peek_type(m, &type, NULL);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        r = read_basic(m, type, &k);
        if (r < 0)
                return r;
        if (json_is_string(k))
                *ret = strdup(json_string_value(k));
        else
                *ret = json_dumps(k, JSON_ENCODE_ANY);
        json_decref(k);
        return *ret ? 0 : -ENOMEM;
}

static int read_array(sd_bus_message *m, const char *contents, json_t **ret)
{
        bool dict = contents[0] == '{';
        json_t *j = dict ? json_object() : json_array();
        int r;

        if (!j)
                return -ENOMEM;
        while ((r = sd_bus_message_at_end(m, false)) == 0) {
                json_t *v = NULL;
                if (dict) {
                        char *key = NULL;
                        r = sd_bus_message_enter_container(m, 'e', NULL);
                        if (r >= 0)
                                r = read_key(m, &key);
                        if (r >= 0)
                                r = json_from_bus_value(m, &v);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                        if (r >= 0)
                                json_object_set_new(j, key, v);
                        else
                                json_decref(v);
                        free(key);
                } else {
                        r = json_from_bus_value(m, &v);
                        if (r >= 0)
                                json_array_append_new(j, v);
                }
                if (r < 0)
                        break;
        }
        if (r < 0) {
                json_decref(j);
                return r;
        }
        *ret = j;
        return 0;
}

int json_from_bus_value(sd_bus_message *m, json_t **ret)
{
        const char *contents;
        char type;
        json_t *j = NULL;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        if (bus_type_is_basic_char(type))
                return read_basic(m, type, ret);

        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
                return r;
        if (type == 'a') {
                r = read_array(m, contents, &j);
        } else if (type == 'v') {
                r = json_from_bus_value(m, &j);
        } else { /* 'r': a struct as an array of its members */
                j = json_array();
                while (j && (r = sd_bus_message_at_end(m, false)) == 0) {
                        json_t *v = NULL;
                        r = json_from_bus_value(m, &v);
                        if (r < 0)
                                break;
                        json_array_append_new(j, v);
                }
                if (!j)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                json_decref(j);
                return r;
        }
        *ret = j;
        return 0;
}

int json_from_bus_message(sd_bus_message *m, json_t **ret)
{
        json_t *a = json_array();
        int r;

        if (!a)
                return -ENOMEM;
        while ((r = sd_bus_message_at_end(m, true)) == 0) {
                json_t *v = NULL;
                r = json_from_bus_value(m, &v);
                if (r < 0)
                        break;
                json_array_append_new(a, v);
        }
        if (r < 0) {
                json_decref(a);
                return r;
        }
        *ret = a;
        return 0;
}

const char *json_str(const json_t *obj, const char *key, const char *fallback)
{
        const char *s = json_string_value(json_object_get(obj, key));
        return s ? s : fallback;
}

uint64_t json_u64(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);
        if (json_is_integer(v))
                return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
        if (json_is_real(v))
                return json_real_value(v) < 0 ? 0 : (uint64_t)json_real_value(v);
        if (json_is_string(v))
                return strtoull(json_string_value(v), NULL, 10);
        return 0;
}

int64_t json_i64(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);
        return json_is_integer(v) ? json_integer_value(v) : 0;
}

bool json_bool(const json_t *obj, const char *key)
{
        return json_is_true(json_object_get(obj, key));
}

const json_t *json_arr(const json_t *obj, const char *key)
{
        static json_t *empty;
        const json_t *v = json_object_get(obj, key);
        if (json_is_array(v))
                return v;
        if (!empty)
                empty = json_array();
        return empty;
}

void json_print(FILE *f, const json_t *v)
{
        json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
        fputc('\n', f);
        fflush(f);
}
