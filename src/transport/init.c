/*
 * The transport layer's entry point: the context's own parts, and the hooks through which the
 * connection code (session.c) reaches the user side (wsuser.c) without calling up into it.
 */
#include "transport/internal.h"

void vg_transport_init(vg_app_t *app, const vg_config_t *cfg)
{
    vg__app_init(app, cfg);
    app->wsuser = &vg__wsuser_ops;
}

void vg_transport_dispose(vg_app_t *app)
{
    vg__app_dispose(app);
}
