/*
 * `vigil serve`: the server context built from the configuration, and the callbacks that tie the
 * server's workers and connections to it (main.c runs them).
 */
#ifndef VG_CLI_SERVE_H
#define VG_CLI_SERVE_H

#include "core/config.h"
#include "net/server.h"
#include "transport/transport.h"

/* Builds everything the workers share and adds every route.  Returns 0, or VG_ECONFIG /
 * VG_ESTORE with a message in err (then call vg_serve_dispose all the same). */
int vg_serve_init(vg_app_t *app, const vg_config_t *cfg, int workers, char *err, size_t errlen);
void vg_serve_dispose(vg_app_t *app);
/* on_accept makes a session; worker start/stop give the hub its per-worker parts. */
extern const vg_server_callbacks_t vg_serve_callbacks;

#endif
