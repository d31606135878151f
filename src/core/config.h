/*
 * Configuration: one declarative table of options (redis static_configs), filled from, in order
 * of precedence, command-line flags, VIGIL_* environment variables, a JSON config file
 * (--config) and the defaults.  Every value is checked against the table before the server
 * starts; a bad one is reported with the option's name and the caller exits with status 2.
 */
#ifndef VG_CORE_CONFIG_H
#define VG_CORE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define VG_CONFIG_MAX_LISTEN 16

typedef struct vg_config_s {
    char *listen[VG_CONFIG_MAX_LISTEN];
    size_t num_listen;
    int workers;
    char *data_dir;
    int log_level;  /* enum vg_log_level */
    int log_format; /* enum vg_log_format */
    size_t max_message_size;
    size_t max_outbound;
    size_t max_header_size;
    size_t max_body_size;
    double request_timeout;  /* seconds */
    double idle_timeout;     /* seconds a keep-alive connection may sit between requests */
    double shutdown_timeout; /* seconds connections get to close on SIGTERM */
    int echo;
    /* auth */
    char *jwt_secret;
    char *jwt_public_key;
    double jwt_leeway;
    char *jwt_issuer;
    char *jwt_audience;
    char *api_key;
    int allow_anonymous;
    char *default_channels; /* comma-separated patterns */
    /* limits and heartbeats */
    int max_connections_per_user;
    char *allowed_origins;   /* comma-separated, NULL = any */
    double max_inbound_rate; /* messages and pings per second per connection */
    int max_subscriptions;   /* channel subscriptions per connection */
    double ping_interval;
    double ping_timeout;
    /* history */
    int history_size;
    double history_ttl;
    size_t history_memory;
    char *durable_channels; /* history kept in the store across restarts */
    /* acknowledged delivery */
    char *ack_channels;
    double ack_ttl;
    int ack_max;
    /* state documents */
    double state_interval;
    char *state_broadcast; /* comma-separated NAME:TYPE:SECONDS */
    char *config_file;
    int refuse_websocket; /* answer upgrades with 403 (testing fallbacks) */
    char *rpc_url;        /* backend for client RPCs */
    double rpc_timeout;
    int max_rpc_inflight_per_connection; /* backend calls waiting, per connection */
    int max_rpc_inflight_per_user;       /* and per user */
    int demo;                            /* serve --demo: the simulated fleet and a demo login */
    int demo_cameras;
    /* compatibility profiles (docs/profiles/) */
    char *profiles; /* comma-separated names, or "all" */
    char *openeye_channels;
    char *openeye_statistics;
    double openeye_statistics_interval;
    int openeye_auth;
    char *phase10_channels;
    char *phase10_status;
    int phase10_auth;
    char *visionguard_channels;
    int visionguard_auth;
    double visionguard_ping_interval;
    double visionguard_ping_timeout;
    char *socketio_status;
    double socketio_status_interval;
    char *socketio_events;
    int socketio_auth;
    char *socketio_cors;
    double socketio_ping_interval;
    double socketio_ping_timeout;
    int socketio_max_sessions;
    int socketio_max_sessions_per_ip; /* 0: no cap */
    double socketio_connect_timeout;  /* seconds a session has to connect its socket */
    size_t socketio_max_connect_payload;
} vg_config_t;

/* Fills cfg from defaults, the config file, the environment (envp) and argv (the arguments after
 * the subcommand).  On error returns VG_ECONFIG and writes a message naming the option to err. */
int vg_config_load(vg_config_t *cfg, int argc, const char *const *argv, const char *const *envp,
                   char *err, size_t errlen);
void vg_config_dispose(vg_config_t *cfg);
/* Prints the options table (name, value, default, help) for --help. */
void vg_config_print_help(FILE *out);

/* Parses "1048576", "64K", "64KiB", "1M", "1MiB", "2G" (binary multiples).  Returns 0 or
 * VG_EINVAL. */
int vg_parse_size(const char *text, size_t *out);

#endif
