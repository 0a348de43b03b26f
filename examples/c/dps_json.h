/*
 * How the LL client reads a DPS reply body, reduced to what a transport's parse callback needs:
 * the string value of one key. (The SDK's LL client uses parson; DPS sends compact JSON, so a
 * string lookup is enough here.) Shared by the C sample and the C harness's driver.
 */
#ifndef DPS_JSON_H
#define DPS_JSON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The string value of "key" in a compact JSON text, malloc'ed; NULL when absent. */
static inline char* dps_json_string(const char* json, const char* key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char* at = strstr(json, pattern);
    if (at == NULL) return NULL;
    at += strlen(pattern);
    const char* end = strchr(at, '"');
    if (end == NULL) return NULL;
    char* out = malloc((size_t)(end - at) + 1);
    if (out != NULL) {
        memcpy(out, at, (size_t)(end - at));
        out[end - at] = '\0';
    }
    return out;
}

#endif
