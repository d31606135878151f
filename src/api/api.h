/*
 * The HTTP API (docs/PROTOCOL.md): publishing, state documents, acks, admin, metrics, the
 * fallback transports' URLs, health and static files.  Each function adds its routes to the
 * context's table, which matches routes in the order they were added.
 */
#ifndef VG_API_API_H
#define VG_API_API_H

#include "transport/transport.h"

/* GET /healthz. */
void vg_api_register_health(vg_app_t *app);
/* Everything under /api/ and /ws/connections, /metrics (api/api.c). */
void vg_api_register(vg_app_t *app);
/* The catch-all: files of web/ or 404.  Register it last. */
void vg_api_register_static(vg_app_t *app);

#endif
