/*
 * The demo: a simulated camera fleet, and the demo login of `vigil serve --demo`.
 *
 * The fleet is a publisher like any other: it runs on its own thread and talks to a vigil
 * server only through the public HTTP API (POST /api/publish, PUT/PATCH /api/state/...) with
 * the API key, over one kept-alive connection (net/httpc.h).  `vigil demo` points it at any
 * server; `vigil serve --demo` points it at its own first listening address.
 *
 * What it publishes (the dashboard is built against exactly this; docs in demo.c):
 *   state `statistics`           PUT every 3 s
 *   state `status`               PUT at start, PATCH on every camera change
 *   cameras.<id>.events          motion | person | vehicle, about one every 1-3 s
 *   cameras.<id>.status          camera_status, when a camera goes down, recovers, records
 *   alerts.<id>                  alert (acknowledged delivery), with a PNG thumbnail
 */
#ifndef VG_CLI_DEMO_H
#define VG_CLI_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "transport/transport.h"
#include "core/config.h"

typedef struct vg_demo_options_s {
    const char *url;     /* the server's base URL, http:// (copied) */
    const char *api_key; /* publishers' key (copied), or NULL */
    int cameras;         /* fleet size, 1..256 */
    uint64_t seed;       /* the same seed gives the same sequence of choices; 0: random */
} vg_demo_options_t;

typedef struct vg_demo_stats_s {
    uint64_t sent;   /* requests the server accepted */
    uint64_t failed; /* requests that failed or were refused */
    int refused;     /* the server refused the API key (401/403): the fleet stopped */
} vg_demo_stats_t;

typedef struct vg_demo_s vg_demo_t;

/* Starts the fleet's thread.  Returns 0, or VG_EINVAL with a message in err (a bad URL). */
int vg_demo_start(vg_demo_t **out, const vg_demo_options_t *o, char *err, size_t errlen);
/* Nonzero once the fleet's thread has stopped on its own (the API key was refused). */
int vg_demo_finished(vg_demo_t *d);
/* Stops the fleet after its current request, joins its thread, fills *stats (may be NULL) and
 * frees it.  Any thread but a signal handler; d may be NULL. */
void vg_demo_stop(vg_demo_t *d, vg_demo_stats_t *stats);

/* `serve --demo`: generates an API key and a JWT secret for this run when none was given, and
 * makes the camera channels durable (--durable-channels cameras.>) unless that option is set,
 * so a restart loses no camera history.  Returns 0 or VG_ECONFIG with a message in err. */
int vg_demo_prepare_config(vg_config_t *cfg, char *err, size_t errlen);
/* "http://127.0.0.1:8000" for a listening address "127.0.0.1:8000" (a wildcard address such as
 * 0.0.0.0 or [::] becomes the loopback address of its family, which a browser can open). */
void vg_demo_base_url(const char *listen_name, char *out, size_t cap);
/* Registers GET /api/demo/session: a 12-hour admin token for user "demo", so the dashboard
 * logs in by itself.  Only for `serve --demo`: anyone who can reach the server gets it. */
void vg_demo_register(vg_app_t *app);

#endif
