/* json-locate: where in a JSON text a value or key stands, for error messages */
#include "json-locate.h"

#include <string.h>

typedef struct Scanner {
        const char *s;
        size_t len, pos;
} Scanner;

static void skip_ws(Scanner *sc)
{
        while (sc->pos < sc->len && strchr(" \t\r\n", sc->s[sc->pos]) && sc->s[sc->pos])
                sc->pos++;
}

/* Skips a string starting at its opening quote; returns false on an unterminated one. */
static bool skip_string(Scanner *sc)
{
        sc->pos++;
        while (sc->pos < sc->len) {
                char c = sc->s[sc->pos++];
                if (c == '\\')
                        sc->pos++;
                else if (c == '"')
                        return true;
        }
        return false;
}

static bool skip_value(Scanner *sc);

static bool skip_container(Scanner *sc, char close)
{
        sc->pos++;
        skip_ws(sc);
        if (sc->pos < sc->len && sc->s[sc->pos] == close) {
                sc->pos++;
                return true;
        }
        while (sc->pos < sc->len) {
                if (close == '}') {
                        skip_ws(sc);
                        if (sc->pos >= sc->len || sc->s[sc->pos] != '"' || !skip_string(sc))
                                return false;
                        skip_ws(sc);
                        if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
                                return false;
                        sc->pos++;
                }
                if (!skip_value(sc))
                        return false;
                skip_ws(sc);
                if (sc->pos >= sc->len)
                        return false;
                if (sc->s[sc->pos] == ',') {
                        sc->pos++;
                        continue;
                }
                if (sc->s[sc->pos] == close) {
                        sc->pos++;
                        return true;
                }
                return false;
        }
        return false;
}

static bool skip_value(Scanner *sc)
{
        skip_ws(sc);
        if (sc->pos >= sc->len)
                return false;
        switch (sc->s[sc->pos]) {
        case '"':
                return skip_string(sc);
        case '{':
                return skip_container(sc, '}');
        case '[':
                return skip_container(sc, ']');
        default:
                /* numbers, true, false, null */
                while (sc->pos < sc->len && !strchr(",]} \t\r\n", sc->s[sc->pos]) &&
                       sc->s[sc->pos])
                        sc->pos++;
                return true;
        }
}

/* Compares the raw bytes of the string at sc->pos with key (keys with escapes do not match). */
static bool string_equals(const Scanner *sc, const char *key)
{
        size_t n = strlen(key);
        return sc->pos + n + 2 <= sc->len && sc->s[sc->pos] == '"' &&
               memcmp(sc->s + sc->pos + 1, key, n) == 0 && sc->s[sc->pos + 1 + n] == '"';
}

/* Moves sc to the member 'key' of the object at sc->pos; *key_pos gets the key's position. */
static bool find_member(Scanner *sc, const char *key, size_t *key_pos)
{
        sc->pos++;
        for (;;) {
                skip_ws(sc);
                if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
                        return false;
                *key_pos = sc->pos;
                bool match = string_equals(sc, key);
                if (!skip_string(sc))
                        return false;
                skip_ws(sc);
                if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
                        return false;
                sc->pos++;
                skip_ws(sc);
                if (match)
                        return true;
                if (!skip_value(sc))
                        return false;
                skip_ws(sc);
                if (sc->pos >= sc->len || sc->s[sc->pos] != ',')
                        return false;
                sc->pos++;
        }
}

static bool find_element(Scanner *sc, size_t index)
{
        sc->pos++;
        for (size_t i = 0;; i++) {
                skip_ws(sc);
                if (sc->pos >= sc->len || sc->s[sc->pos] == ']')
                        return false;
                if (i == index)
                        return true;
                if (!skip_value(sc))
                        return false;
                skip_ws(sc);
                if (sc->pos >= sc->len || sc->s[sc->pos] != ',')
                        return false;
                sc->pos++;
        }
}

static void offset_to_line_column(const char *s, size_t off, unsigned *line, unsigned *column)
{
        unsigned l = 1, c = 1;
        for (size_t i = 0; i < off; i++) {
                if (s[i] == '\n') {
                        l++;
                        c = 1;
                } else
                        c++;
        }
        *line = l;
        *column = c;
}

bool json_locate(const char *text, size_t len, const JsonPathElem *path, size_t depth,
                 bool want_key, unsigned *ret_line, unsigned *ret_column)
{
        Scanner sc = {.s = text, .len = len};
        size_t best = 0;
        bool found = true;

        skip_ws(&sc);
        best = sc.pos;
        for (size_t i = 0; i < depth; i++) {
                size_t key_pos = 0;
                char open = sc.pos < len ? text[sc.pos] : 0;

                if (path[i].key && open == '{' && find_member(&sc, path[i].key, &key_pos)) {
                        best = want_key && i + 1 == depth ? key_pos : sc.pos;
                } else if (!path[i].key && open == '[' && find_element(&sc, path[i].index)) {
                        best = sc.pos;
                } else {
                        found = false;
                        break;
                }
        }
        offset_to_line_column(text, best < len ? best : len, ret_line, ret_column);
        return found;
}
