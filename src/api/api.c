/*
 * The HTTP API's route table (docs/PROTOCOL.md).  The handlers live one file per concern:
 * publish.c, admin.c, state.c, acks.c, metrics.c; common.c has what they share.
 */
#include "api/api.h"
#include "api/internal.h"

void vg_api_register(vg_app_t *app)
{
    vg_app_route(app, "/api/publish", VG_M_POST, vg__api_handle_publish);
    vg_app_route(app, "/api/ws/ticket", VG_M_POST, vg__api_handle_ticket);
    vg_app_route(app, "/api/ws/status", VG_M_GET, vg__api_handle_status);
    vg_app_route(app, "/ws/connections", VG_M_GET, vg__api_handle_connections);
    vg_app_route(app, "/ws/connections/{user_id}", VG_M_GET, vg__api_handle_connections);
    vg_app_route(app, "/api/broadcast", VG_M_POST, vg__api_handle_broadcast);
    vg_app_route(app, "/api/disconnect", VG_M_POST, vg__api_handle_disconnect);
    vg_app_route(app, "/metrics", VG_M_GET, vg__api_handle_metrics);
    vg_app_route(app, "/api/sse", VG_M_GET, vg_sse_handle);
    vg_app_route(app, "/api/poll", VG_M_GET, vg_poll_handle);
    vg_app_route(app, "/api/ack", VG_M_POST, vg__api_handle_ack);
    vg_app_route(app, "/api/alerts", VG_M_GET, vg__api_handle_alerts);
    vg_app_route(app, "/api/state/{name}", VG_M_GET | VG_M_PUT | VG_M_PATCH | VG_M_DELETE,
                 vg__api_handle_state);
}
