/* json-locate: where in a JSON text a value or key stands, for error messages */
#pragma once

/*
 * jansson reports line and column only for syntax errors. Semantic errors (an unknown key, a
 * value of the wrong type) are found on the parsed tree, which keeps no positions; this
 * walks the text again along the same path to point the operator at the exact spot.
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct JsonPathElem {
        const char *key; /* object member, or NULL for an array element */
        size_t index;
} JsonPathElem;

/*
 * Finds the element at path (depth elements) in text: the position of its value, or with
 * want_key and a final key element, of the key itself (for "unknown key" errors). Returns false when the text does not contain
 * the path (then the position is that of the deepest element found).
 * Lines and columns count from 1; columns in bytes.
 */
bool json_locate(const char *text, size_t len, const JsonPathElem *path, size_t depth,
                 bool want_key, unsigned *ret_line, unsigned *ret_column);
