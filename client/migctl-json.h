/* migctl-json: D-Bus message values as jansson JSON, and small readers of JSON fields */
#pragma once

/*
 * Mapping: integers and doubles as numbers, 'b' as true/false, strings, object paths and
 * signatures as strings, 'h' as the fd number, arrays as arrays, dictionaries (a{..}) as
 * objects keyed by the key's text, variants as their value, structs as arrays.
 *
 * Errors: 0 or a negative errno from sd-bus.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* Reads the next complete value of m. */
int json_from_bus_value(sd_bus_message *m, json_t **ret);
/* Reads every remaining value of m into an array. */
int json_from_bus_message(sd_bus_message *m, json_t **ret);

/* Field readers that tolerate a missing key or a value of another type. */
const char *json_str(const json_t *obj, const char *key, const char *fallback);
uint64_t json_u64(const json_t *obj, const char *key);
int64_t json_i64(const json_t *obj, const char *key);
bool json_bool(const json_t *obj, const char *key);
/* The array at key, or an empty array owned by nobody: never NULL. */
const json_t *json_arr(const json_t *obj, const char *key);

/* Prints v to f, indented, followed by a newline. */
void json_print(FILE *f, const json_t *v);
