#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/addr.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/log.h"

/* T_CSV: a comma-separated string; a flag given again adds to it (--profile a --profile b). */
enum opt_type { T_BOOL, T_INT, T_SIZE, T_SECONDS, T_STRING, T_CSV, T_LIST, T_LOGLEVEL, T_LOGFORMAT };

typedef struct option_s {
    const char *name; /* flag without dashes; env is VIGIL_ + upper(name) with '-' -> '_' */
    enum opt_type type;
    size_t offset;   /* into vg_config_t */
    double min, max; /* for numbers */
    const char *def; /* default, as text (NULL: none) */
    const char *help;
} option_t;

#define OFF(f) offsetof(vg_config_t, f)
#define KiB    1024.0
#define GiB    (1024.0 * 1024.0 * 1024.0)

static const option_t options[] = {
    {"listen", T_LIST, OFF(listen), 0, 0, "127.0.0.1:8000",
     "address to listen on, HOST:PORT or [V6]:PORT (repeatable)"},
    {"workers", T_INT, OFF(workers), 1, 256, NULL, "worker threads (default: number of cores)"},
    {"data-dir", T_STRING, OFF(data_dir), 0, 0, "./vigil-data", "directory for durable data"},
    {"log-level", T_LOGLEVEL, OFF(log_level), 0, 0, "notice", "debug|verbose|notice|warning"},
    {"log-format", T_LOGFORMAT, OFF(log_format), 0, 0, "text", "text|json"},
    {"max-message-size", T_SIZE, OFF(max_message_size), 16, 1 * GiB, "1MiB",
     "largest WebSocket message accepted (over it: close 1009)"},
    {"max-outbound", T_SIZE, OFF(max_outbound), 4 * KiB, 16 * GiB, "4MiB",
     "bytes queued for one slow client before it is closed (1008 slow consumer)"},
    {"max-header-size", T_SIZE, OFF(max_header_size), 1 * KiB, 1024 * KiB, "16KiB",
     "largest HTTP request line + headers (over it: 431)"},
    {"max-body-size", T_SIZE, OFF(max_body_size), 0, 1 * GiB, "1MiB",
     "largest HTTP request body (over it: 413)"},
    {"request-timeout", T_SECONDS, OFF(request_timeout), 0.01, 3600, "10",
     "seconds a client has to send a whole request"},
    {"idle-timeout", T_SECONDS, OFF(idle_timeout), 0.01, 86400, "60",
     "seconds an idle keep-alive HTTP connection is kept"},
    {"shutdown-timeout", T_SECONDS, OFF(shutdown_timeout), 0.1, 60, "3",
     "seconds connections get to close on SIGTERM before they are cut"},
    {"echo", T_BOOL, OFF(echo), 0, 0, "false", "enable the /echo WebSocket endpoint"},
    {"jwt-secret", T_STRING, OFF(jwt_secret), 0, 0, NULL, "HS256/384/512 secret for user tokens"},
    {"jwt-public-key", T_STRING, OFF(jwt_public_key), 0, 0, NULL,
     "PEM file with the RSA (RS256) or EC P-256 (ES256) key for user tokens"},
    {"jwt-leeway", T_SECONDS, OFF(jwt_leeway), 0, 3600, "5",
     "seconds of clock skew allowed on exp and nbf"},
    {"jwt-issuer", T_STRING, OFF(jwt_issuer), 0, 0, NULL, "required token issuer (iss)"},
    {"jwt-audience", T_STRING, OFF(jwt_audience), 0, 0, NULL, "required token audience (aud)"},
    {"api-key", T_STRING, OFF(api_key), 0, 0, NULL, "publishers' API key (also admin)"},
    {"allow-anonymous", T_BOOL, OFF(allow_anonymous), 0, 0, "false",
     "let clients without a token in as user 'anonymous'"},
    {"default-channels", T_STRING, OFF(default_channels), 0, 0, ">",
     "channel patterns users without a channels claim may subscribe to (comma-separated)"},
    {"max-connections-per-user", T_INT, OFF(max_connections_per_user), 1, 1000000, "5",
     "WebSocket connections one user may hold"},
    {"allowed-origins", T_STRING, OFF(allowed_origins), 0, 0, NULL,
     "comma-separated Origin values allowed to open WebSockets (default: any)"},
    {"max-inbound-rate", T_SECONDS, OFF(max_inbound_rate), 0.1, 1e9, "100",
     "messages and pings per second one connection may send"},
    {"max-subscriptions", T_INT, OFF(max_subscriptions), 1, 10000000, "1024",
     "channel subscriptions one connection may hold (past it: error too_many_subscriptions)"},
    {"ping-interval", T_SECONDS, OFF(ping_interval), 0.01, 86400, "30",
     "seconds between server pings"},
    {"history-size", T_INT, OFF(history_size), 0, 1000000, "100",
     "messages kept per channel for recovery (0: none)"},
    {"history-ttl", T_SECONDS, OFF(history_ttl), 0.01, 31536000, "300",
     "seconds a message stays in history"},
    {"history-memory", T_SIZE, OFF(history_memory), 0, 1024 * GiB, "64MiB",
     "memory for the history of all channels; the oldest messages go first"},
    {"durable-channels", T_STRING, OFF(durable_channels), 0, 0, NULL,
     "channel patterns whose history is kept on disk, so recovery works across restarts"},
    {"ack-channels", T_STRING, OFF(ack_channels), 0, 0, "alerts.>",
     "channel patterns whose messages are kept until each user acks them (comma-separated)"},
    {"ack-ttl", T_SECONDS, OFF(ack_ttl), 1, 31536000 * 10.0, "604800",
     "seconds an unacknowledged message is kept"},
    {"ack-max", T_INT, OFF(ack_max), 1, 100000000, "10000",
     "messages kept per acknowledged-delivery channel"},
    {"state-interval", T_SECONDS, OFF(state_interval), 0.01, 3600, "0.5",
     "at most one state delta per document per this many seconds"},
    {"state-broadcast", T_STRING, OFF(state_broadcast), 0, 0, NULL,
     "NAME:TYPE:SECONDS,...: publish state document NAME on channel NAME as TYPE periodically"},
    {"ping-timeout", T_SECONDS, OFF(ping_timeout), 0.01, 86400, "60",
     "seconds of silence (not even a pong) before a connection is closed"},
    {"refuse-websocket", T_BOOL, OFF(refuse_websocket), 0, 0, "false",
     "answer every WebSocket upgrade with 403 (to test clients' SSE/long-poll fallback)"},
    {"rpc-url", T_STRING, OFF(rpc_url), 0, 0, NULL,
     "backend URL that client RPCs and Socket.IO events are POSTed to"},
    {"rpc-timeout", T_SECONDS, OFF(rpc_timeout), 0.1, 300, "10",
     "seconds the backend has to answer an RPC"},
    {"max-rpc-inflight-per-connection", T_INT, OFF(max_rpc_inflight_per_connection), 1, 1000000,
     "2", "RPCs one connection may have waiting for the backend (past it: answered busy)"},
    {"max-rpc-inflight-per-user", T_INT, OFF(max_rpc_inflight_per_user), 1, 1000000, "2",
     "RPCs one user may have waiting for the backend, all connections together (past it: busy)"},
    {"demo", T_BOOL, OFF(demo), 0, 0, "false",
     "run the simulated camera fleet and log browsers in as a demo user"},
    {"demo-cameras", T_INT, OFF(demo_cameras), 1, 256, "8", "cameras in the demo fleet"},
    {"profile", T_CSV, OFF(profiles), 0, 0, NULL,
     "compatibility profiles: openeye, phase10, visionguard, socketio or all (repeatable)"},
    {"openeye-channels", T_STRING, OFF(openeye_channels), 0, 0, "cameras.>,alerts.>",
     "channels whose messages OpenEye clients receive (camera_event, alert, ...)"},
    {"openeye-statistics", T_STRING, OFF(openeye_statistics), 0, 0, "statistics",
     "state document sent to OpenEye clients as statistics_update"},
    {"openeye-statistics-interval", T_SECONDS, OFF(openeye_statistics_interval), 0.05, 86400,
     "5", "seconds between statistics_update messages (also sent on change)"},
    {"openeye-auth", T_BOOL, OFF(openeye_auth), 0, 0, "true", "OpenEye clients need a token"},
    {"phase10-channels", T_STRING, OFF(phase10_channels), 0, 0, "events.>",
     "channels whose messages Phase 10 clients receive as {type:event}"},
    {"phase10-status", T_STRING, OFF(phase10_status), 0, 0, "status",
     "state document sent to Phase 10 clients as {type:status} on change"},
    {"phase10-auth", T_BOOL, OFF(phase10_auth), 0, 0, "true",
     "Phase 10 clients need a token (seed 002 had none)"},
    {"visionguard-channels", T_STRING, OFF(visionguard_channels), 0, 0, "anomalies.{user}",
     "channels of VisionGuard alerts ({user} is the path's user id); acknowledged delivery"},
    {"visionguard-auth", T_BOOL, OFF(visionguard_auth), 0, 0, "true",
     "VisionGuard clients need a token whose sub is the path's user id"},
    {"visionguard-ping-interval", T_SECONDS, OFF(visionguard_ping_interval), 0.01, 86400, "30",
     "seconds between the server's {type:ping} messages"},
    {"visionguard-ping-timeout", T_SECONDS, OFF(visionguard_ping_timeout), 0.01, 86400, "60",
     "seconds without a pong before a VisionGuard connection is closed"},
    {"socketio-status", T_STRING, OFF(socketio_status), 0, 0, "status",
     "state document emitted to Socket.IO clients as status_update"},
    {"socketio-status-interval", T_SECONDS, OFF(socketio_status_interval), 0.01, 86400, "0.5",
     "seconds between status_update events"},
    {"socketio-events", T_STRING, OFF(socketio_events), 0, 0, NULL,
     "PATTERN=EVENT,...: channels whose messages are emitted as Socket.IO events"},
    {"socketio-auth", T_BOOL, OFF(socketio_auth), 0, 0, "false",
     "Socket.IO clients need a token (in the CONNECT auth payload or ?token=)"},
    {"socketio-cors", T_STRING, OFF(socketio_cors), 0, 0, "*",
     "Access-Control-Allow-Origin for Socket.IO polling requests (* or origins)"},
    {"socketio-ping-interval", T_SECONDS, OFF(socketio_ping_interval), 0.01, 86400, "25",
     "Engine.IO pingInterval"},
    {"socketio-ping-timeout", T_SECONDS, OFF(socketio_ping_timeout), 0.01, 86400, "20",
     "Engine.IO pingTimeout"},
    {"socketio-max-sessions", T_INT, OFF(socketio_max_sessions), 1, 10000000, "10000",
     "Engine.IO sessions the server holds (over it: handshake answered 503 with Retry-After)"},
    {"socketio-max-sessions-per-ip", T_INT, OFF(socketio_max_sessions_per_ip), 0, 10000000, "256",
     "Engine.IO sessions one client address holds (over it: 429 with Retry-After; 0: no cap)"},
    {"socketio-connect-timeout", T_SECONDS, OFF(socketio_connect_timeout), 0.05, 3600, "5",
     "seconds an Engine.IO session has to connect its Socket.IO socket before it is closed"},
    {"socketio-max-connect-payload", T_SIZE, OFF(socketio_max_connect_payload), 64, 1 * GiB,
     "32KiB", "largest POST body or WebSocket message, and queue, of a session not yet connected"},
    {"config", T_STRING, OFF(config_file), 0, 0, NULL, "JSON config file"},
};

static const option_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int vg_parse_size(const char *text, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno != 0 || !(v >= 0))
        return VG_EINVAL;
    double mult = 1;
    if (*end != '\0') {
        char unit = (char)toupper((unsigned char)*end);
        const char *rest = end + 1;
        if (unit == 'K')
            mult = 1024.0;
        else if (unit == 'M')
            mult = 1024.0 * 1024;
        else if (unit == 'G')
            mult = 1024.0 * 1024 * 1024;
        else if (unit != 'B')
            return VG_EINVAL;
        if (unit != 'B' && (strcasecmp(rest, "ib") == 0 || strcasecmp(rest, "b") == 0))
            rest = "";
        if (*rest != '\0')
            return VG_EINVAL;
    }
    v *= mult;
    if (v > 1e15 || v != floor(v))
        return VG_EINVAL;
    *out = (size_t)v;
    return 0;
}

static int parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(text, no[i]) == 0)
            return *out = 0, 0;
    }
    return VG_EINVAL;
}

static const char *expected(const option_t *o)
{
    switch (o->type) {
    case T_BOOL: return "true or false";
    case T_INT: return "a whole number";
    case T_SIZE: return "a size such as 65536, 64KiB or 1MiB";
    case T_SECONDS: return "a number of seconds such as 10 or 0.5";
    case T_LOGLEVEL: return "debug, verbose, notice or warning";
    case T_LOGFORMAT: return "text or json";
    case T_LIST: return "HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:8000";
    default: return "a value";
    }
}

static void free_list(vg_config_t *cfg)
{
    for (size_t i = 0; i < cfg->num_listen; i++)
        vg_free(cfg->listen[i]);
    cfg->num_listen = 0;
}

/* Sets one option from its text form.  `append` adds to a list instead of replacing it. */
static int set_option(vg_config_t *cfg, const option_t *o, const char *value, int append,
                      const char *source, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    double num = 0;
    int ival;
    size_t size;
    char *end;
    switch (o->type) {
    case T_BOOL:
        if (parse_bool(value, &ival) != 0)
            goto bad;
        *(int *)field = ival;
        return 0;
    case T_INT:
        errno = 0;
        num = (double)strtol(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0)
            goto bad;
        goto range;
    case T_SIZE:
        if (vg_parse_size(value, &size) != 0)
            goto bad;
        num = (double)size;
        goto range;
    case T_SECONDS:
        errno = 0;
        num = strtod(value, &end);
        if (*value == '\0' || *end != '\0' || errno != 0 || !(num == num))
            goto bad;
        goto range;
    case T_STRING:
        vg_free(*(char **)field);
        *(char **)field = vg_strdup(value);
        return 0;
    case T_CSV: {
        char *old = *(char **)field;
        if (append && old != NULL && old[0] != '\0') {
            size_t n = strlen(old) + strlen(value) + 2;
            char *joined = vg_malloc(n);
            snprintf(joined, n, "%s,%s", old, value);
            vg_free(old);
            *(char **)field = joined;
        } else {
            vg_free(old);
            *(char **)field = vg_strdup(value);
        }
        return 0;
    }
    case T_LIST: {
        struct sockaddr_storage addr;
        if (vg_parse_listen_addr(value, &addr) != 0)
            goto bad;
        if (!append)
            free_list(cfg);
        if (cfg->num_listen == VG_CONFIG_MAX_LISTEN) {
            snprintf(err, errlen, "too many --%s values (at most %d)", o->name,
                     VG_CONFIG_MAX_LISTEN);
            return VG_ECONFIG;
        }
        cfg->listen[cfg->num_listen++] = vg_strdup(value);
        return 0;
    }
    case T_LOGLEVEL:
        if ((ival = vg_log_level_parse(value)) < 0)
            goto bad;
        *(int *)field = ival;
        return 0;
    case T_LOGFORMAT:
        if (strcmp(value, "text") == 0)
            *(int *)field = VG_LOG_TEXT;
        else if (strcmp(value, "json") == 0)
            *(int *)field = VG_LOG_JSON;
        else
            goto bad;
        return 0;
    }
bad:
    snprintf(err, errlen, "invalid value '%s' for --%s (from %s): expected %s", value, o->name,
             source, expected(o));
    return VG_ECONFIG;
range:
    if (num < o->min || num > o->max) {
        snprintf(err, errlen, "value '%s' for --%s (from %s) is out of range [%g, %g]", value,
                 o->name, source, o->min, o->max);
        return VG_ECONFIG;
    }
    if (o->type == T_INT)
        *(int *)field = (int)num;
    else if (o->type == T_SIZE)
        *(size_t *)field = (size_t)num;
    else
        *(double *)field = num;
    return 0;
}

static int apply_defaults(vg_config_t *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (options[i].def != NULL &&
            set_option(cfg, &options[i], options[i].def, 0, "default", err, errlen) != 0)
            return VG_ECONFIG;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = cores > 0 ? (int)(cores > 256 ? 256 : cores) : 1;
    return 0;
}

/* A JSON scalar as the text the flag would take. */
static int json_to_text(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "true");
    else if (json_is_false(v))
        snprintf(buf, len, "false");
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%.17g", json_real_value(v));
    else
        return VG_EINVAL;
    return 0;
}

static int apply_file(vg_config_t *cfg, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "cannot read config file %s: %s (line %d)", path, jerr.text,
                 jerr.line);
        return VG_ECONFIG;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "config file %s: expected a JSON object", path);
        rc = VG_ECONFIG;
        goto Exit;
    }
    char source[300], text[512];
    snprintf(source, sizeof(source), "config file %s", path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        const option_t *o = find_option(key, strlen(key));
        if (o == NULL || strcmp(o->name, "config") == 0) {
            snprintf(err, errlen, "config file %s: unknown option '%s'", path, key);
            rc = VG_ECONFIG;
            goto Exit;
        }
        if ((o->type == T_LIST || o->type == T_CSV) && json_is_array(v)) {
            if (o->type == T_LIST)
                free_list(cfg);
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                if (json_to_text(item, text, sizeof(text)) != 0 ||
                    set_option(cfg, o, text, i > 0 || o->type == T_LIST, source, err, errlen) != 0)
                    goto bad_value;
            }
            continue;
        }
        if (json_to_text(v, text, sizeof(text)) != 0 ||
            set_option(cfg, o, text, 0, source, err, errlen) != 0)
            goto bad_value;
    }
    goto Exit;
bad_value:
    if (err[0] == '\0')
        snprintf(err, errlen, "config file %s: invalid value for '%s'", path, key);
    rc = VG_ECONFIG;
Exit:
    json_decref(root);
    return rc;
}

static void env_name(const option_t *o, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "VIGIL_");
    for (const char *p = o->name; *p != '\0' && n + 1 < len; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static int apply_env(vg_config_t *cfg, const char *const *envp, char *err, size_t errlen)
{
    if (envp == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        const option_t *o = &options[i];
        if (strcmp(o->name, "config") == 0)
            continue;
        char name[64];
        env_name(o, name, sizeof(name));
        size_t nlen = strlen(name);
        for (const char *const *e = envp; *e != NULL; e++) {
            if (strncmp(*e, name, nlen) != 0 || (*e)[nlen] != '=')
                continue;
            char source[80];
            snprintf(source, sizeof(source), "environment %s", name);
            /* VIGIL_LISTEN may hold several addresses separated by commas. */
            if (o->type == T_LIST) {
                char *copy = vg_strdup(*e + nlen + 1), *save = NULL;
                int first = 1, rc = 0;
                for (char *tok = strtok_r(copy, ", ", &save); tok && rc == 0;
                     tok = strtok_r(NULL, ", ", &save), first = 0)
                    rc = set_option(cfg, o, tok, !first, source, err, errlen);
                vg_free(copy);
                if (rc != 0)
                    return rc;
            } else if (set_option(cfg, o, *e + nlen + 1, 0, source, err, errlen) != 0) {
                return VG_ECONFIG;
            }
        }
    }
    return 0;
}

/* Splits "--name=value" / "--name value" / "--flag".  Returns the option or NULL. */
static const option_t *flag_option(const char *arg, const char **inline_value)
{
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    const char *name = arg + 2, *eq = strchr(name, '=');
    *inline_value = eq ? eq + 1 : NULL;
    return find_option(name, eq ? (size_t)(eq - name) : strlen(name));
}

static int apply_flags(vg_config_t *cfg, int argc, const char *const *argv, int pass_config,
                       char *err, size_t errlen)
{
    int listen_from_flags = 0, csv_from_flags = 0;
    for (int i = 0; i < argc; i++) {
        const char *value;
        const option_t *o = flag_option(argv[i], &value);
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", argv[i]);
            return VG_ECONFIG;
        }
        if (value == NULL && o->type == T_BOOL) {
            value = "true";
        } else if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return VG_ECONFIG;
            }
            value = argv[++i];
        }
        int is_config = strcmp(o->name, "config") == 0;
        if (is_config != pass_config)
            continue;
        int append = (o->type == T_LIST && listen_from_flags++ > 0) ||
                     (o->type == T_CSV && csv_from_flags++ > 0);
        if (set_option(cfg, o, value, append, "command line", err, errlen) != 0)
            return VG_ECONFIG;
    }
    return 0;
}

int vg_config_load(vg_config_t *cfg, int argc, const char *const *argv, const char *const *envp,
                   char *err, size_t errlen)
{
    err[0] = '\0';
    if (apply_defaults(cfg, err, errlen) != 0)
        return VG_ECONFIG;
    /* The config file's path itself comes from the flag or VIGIL_CONFIG. */
    for (const char *const *e = envp; e != NULL && *e != NULL; e++)
        if (strncmp(*e, "VIGIL_CONFIG=", 13) == 0)
            cfg->config_file = vg_strdup(*e + 13);
    if (apply_flags(cfg, argc, argv, 1, err, errlen) != 0)
        return VG_ECONFIG;
    if (cfg->config_file != NULL && apply_file(cfg, cfg->config_file, err, errlen) != 0)
        return VG_ECONFIG;
    if (apply_env(cfg, envp, err, errlen) != 0)
        return VG_ECONFIG;
    if (apply_flags(cfg, argc, argv, 0, err, errlen) != 0)
        return VG_ECONFIG;
    if (cfg->num_listen == 0) {
        snprintf(err, errlen, "--listen: at least one address is needed");
        return VG_ECONFIG;
    }
    return 0;
}

void vg_config_dispose(vg_config_t *cfg)
{
    free_list(cfg);
    char **strings[] = {&cfg->data_dir,        &cfg->config_file,      &cfg->jwt_secret,
                        &cfg->jwt_public_key,  &cfg->jwt_issuer,       &cfg->jwt_audience,
                        &cfg->api_key,         &cfg->default_channels, &cfg->allowed_origins,
                        &cfg->state_broadcast, &cfg->ack_channels,     &cfg->durable_channels,
                        &cfg->rpc_url,         &cfg->profiles,         &cfg->openeye_channels,
                        &cfg->openeye_statistics, &cfg->phase10_channels, &cfg->phase10_status,
                        &cfg->visionguard_channels, &cfg->socketio_status, &cfg->socketio_events,
                        &cfg->socketio_cors};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        vg_free(*strings[i]);
    memset(cfg, 0, sizeof(*cfg));
}

void vg_config_print_help(FILE *out)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        const option_t *o = &options[i];
        char flag[64], env[64];
        snprintf(flag, sizeof(flag), "--%s%s", o->name, o->type == T_BOOL ? "" : " VALUE");
        env_name(o, env, sizeof(env));
        fprintf(out, "  %-28s %s", flag, o->help);
        if (o->def != NULL && o->type != T_BOOL)
            fprintf(out, " [default: %s]", o->def);
        fprintf(out, "\n  %-28s env %s\n", "", env);
    }
}
