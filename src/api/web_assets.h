/*
 * Static files served at "/": the contents of web/, embedded at build time by
 * cmake/embed_web.cmake so the binary needs nothing beside it.
 */
#ifndef VG_API_WEB_ASSETS_H
#define VG_API_WEB_ASSETS_H

#include <stddef.h>

typedef struct vg_web_asset_s {
    const char *path; /* "/index.html" */
    const unsigned char *data;
    size_t len;
} vg_web_asset_t;

/* Terminated by an entry whose path is NULL. */
extern const vg_web_asset_t vg_web_assets[];

/* Finds the asset for a decoded, validated request path ("/" means "/index.html");
 * returns NULL when there is none. */
const vg_web_asset_t *vg_web_asset_find(const char *path);
/* Content-Type for a file name, by extension. */
const char *vg_web_content_type(const char *path);

#endif
