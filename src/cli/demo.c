/*
 * The demo camera fleet (see demo.h) and the demo login.
 *
 * Data contract (the dashboard in web/ reads exactly these shapes; timestamps are RFC 3339 UTC
 * with milliseconds):
 *
 *   PUT /api/state/statistics, every 3 s:
 *     {"cameras":{"total":8,"online":7,"recording":3,"down":1},"events_today":N,
 *      "events_last_hour":N,"alerts_open":N,"people_today":N,"vehicles_today":N,
 *      "motion_today":N,"events_per_minute":[60 integers, oldest first],"timestamp":T}
 *     ("online" counts every camera that is not down, recording ones included.)
 *   PUT /api/state/status at start, then PATCH (merge patch) on every change:
 *     {"cameras":{"cam-1":{"id","name","location","state":"online|recording|down","since":T,
 *      "fps":15,"resolution":"1920x1080","last_event":T|null},...},
 *      "summary":{"online":n,"recording":n,"down":n}}
 *   cameras.<id>.events, type motion|person|vehicle, envelope fields camera_id and event_type,
 *     data {"id":"evt-<n>","camera_id","camera_name","event_type","confidence","timestamp"}
 *   cameras.<id>.status, type camera_status,
 *     data {"camera_id","camera_name","state","previous","timestamp"}
 *   alerts.<id>, type alert, message id "alert-<run>-<n>",
 *     data {"id","camera_id","camera_name","level":"warning|critical","title","message",
 *           "timestamp","thumbnail":"data:image/png;base64,..."}
 *
 * Rates: an event every 1-3 s across the fleet (motion ~60 %, person ~28 %, vehicle ~12 %,
 * vehicles only from cameras that see a road or a yard; none from cameras that are down); an
 * alert every 20-40 s plus one per outage; a camera goes down every 40-80 s and recovers after
 * 10-40 s; a camera starts or stops recording every 8-20 s.  The first of each comes within
 * seconds of the start, so a newcomer sees everything happen in the first minute.
 */
#include "cli/demo.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth/auth.h"
#include "net/httpc.h"
#include "cli/png.h"
#include "util/alloc.h"
#include "util/base64.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

#define STATS_PERIOD_MS 3000
#define REQUEST_TIMEOUT 5000
#define THUMB_W         160
#define THUMB_H         90
#define OPEN_ALERT_MS   (15 * 60 * 1000) /* an alert counts as open this long */
#define MAX_RECENT      128

/* ---- the fleet's model ---------------------------------------------------------------------- */

enum cam_state { CAM_ONLINE, CAM_RECORDING, CAM_DOWN };
static const char *const state_names[] = {"online", "recording", "down"};

typedef struct camera_s {
    char id[16];
    char name[32];
    char location[32];
    const char *resolution;
    int fps;      /* while up */
    int vehicles; /* sees a road or a yard: vehicle events and alerts */
    enum cam_state state;
    enum cam_state before_down; /* the state to return to after an outage */
    int64_t since_ms;           /* wall time of the last state change */
    int64_t last_event_ms;      /* 0: none yet */
    uint64_t recover_at;        /* monotonic ms, while down */
} camera_t;

/* Sites a fleet of up to 16 cameras covers; larger fleets get numbered cameras. */
static const struct {
    const char *name, *location, *resolution;
    int fps, vehicles;
} catalog[] = {
    {"Front door", "Entrance", "1920x1080", 15, 0},
    {"Driveway", "Exterior", "2560x1440", 15, 1},
    {"Backyard", "Exterior", "1920x1080", 15, 0},
    {"Garage", "Garage", "1920x1080", 15, 1},
    {"Lobby", "Main building", "1920x1080", 30, 0},
    {"Parking lot", "North lot", "2560x1440", 15, 1},
    {"Loading dock", "Warehouse", "1920x1080", 15, 1},
    {"Warehouse", "Warehouse floor", "2560x1440", 30, 0},
    {"Reception", "Main building", "1280x720", 15, 0},
    {"Side gate", "Perimeter", "1920x1080", 15, 1},
    {"Server room", "Main building", "1280x720", 10, 0},
    {"Rooftop", "Main building", "1920x1080", 15, 0},
    {"Stairwell B", "East wing", "1280x720", 15, 0},
    {"Break room", "East wing", "1280x720", 15, 0},
    {"Storage", "Basement", "1280x720", 10, 0},
    {"Back alley", "Perimeter", "1920x1080", 15, 1},
};

struct vg_demo_s {
    /* options */
    char *url, *api_key;
    int ncams;
    /* thread and stop signal */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop, finished; /* under lock */
    /* connection (fleet thread only from here on) */
    vg_httpc_t http;
    char prefix[256]; /* the base URL's path, without a trailing '/' */
    vg_buf_t headers; /* request headers, NUL-terminated */
    int failing;      /* in a streak of failures (logged once) */
    vg_demo_stats_t stats;
    /* simulation */
    uint64_t rng;
    char run_tag[16]; /* makes alert ids unique across runs (acks are per id) */
    uint64_t evt_seq, alert_seq;
    camera_t *cams;
    uint64_t next_stats, next_event, next_alert, next_outage, next_record; /* monotonic ms */
    /* statistics */
    int64_t day; /* wall days since 1970 of the _today counters */
    uint64_t motion_today, people_today, vehicles_today;
    int64_t minute;                    /* wall minutes since 1970 of per_minute[59] */
    int per_minute[60];                /* oldest first */
    int64_t recent_alerts[MAX_RECENT]; /* wall ms of recent alerts, a ring */
    unsigned num_alerts;
};

/* ---- randomness (splitmix64: seedable, so a run can be replayed) ------------------------------
 */

static uint64_t next_u64(vg_demo_t *d)
{
    uint64_t z = (d->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static int64_t uniform(vg_demo_t *d, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(next_u64(d) % (uint64_t)(hi - lo + 1));
}

static double unit(vg_demo_t *d)
{
    return (double)(next_u64(d) >> 11) * (1.0 / 9007199254740992.0);
}

/* Confidence in [lo, hi], to two decimals. */
static double confidence(vg_demo_t *d, int lo, int hi)
{
    return (double)uniform(d, lo, hi) / 100.0;
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = (uint64_t)vg_wall_ms() ^ vg_mono_ns();
    return v;
}

static uint64_t mono_ms(void)
{
    return vg_mono_ns() / 1000000u;
}

static void iso(int64_t ms, char out[32])
{
    vg_format_rfc3339(ms, out);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

static void set_stop(vg_demo_t *d)
{
    pthread_mutex_lock(&d->lock);
    d->stop = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static int stopping(vg_demo_t *d)
{
    pthread_mutex_lock(&d->lock);
    int s = d->stop;
    pthread_mutex_unlock(&d->lock);
    return s;
}

/* One failure per streak is logged, and the recovery, so a server that is away for a while
 * does not fill the log. */
static void note_result(vg_demo_t *d, int ok, const char *what, const char *why)
{
    if (ok) {
        d->stats.sent++;
        if (d->failing)
            vg_notice("demo: publishing to %s again", d->url);
        d->failing = 0;
        return;
    }
    d->stats.failed++;
    if (!d->failing && !stopping(d))
        vg_warning("demo: %s failed: %s (retrying)", what, why);
    d->failing = 1;
}

/* Sends doc (consumed) as JSON to path on the server.  Returns 0 when it was accepted.  A
 * refused API key stops the fleet: nothing it could send would be accepted. */
static int send_doc(vg_demo_t *d, const char *method, const char *path, json_t *doc)
{
    char *body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(doc);
    char full[512], what[600], why[300];
    snprintf(full, sizeof(full), "%s%s", d->prefix, path);
    snprintf(what, sizeof(what), "%s %s", method, full);
    vg_httpc_response_t r;
    int rc = vg_httpc_request(&d->http, method, full, d->headers.base, body, strlen(body), &r);
    free(body);
    int ok = rc == 0 && r.status >= 200 && r.status < 300;
    if (rc != 0)
        snprintf(why, sizeof(why), "%s", d->http.errstr);
    else
        snprintf(why, sizeof(why), "HTTP %d %.200s", r.status, r.body.base ? r.body.base : "");
    if (rc == 0 && (r.status == 401 || r.status == 403)) {
        vg_warning("demo: %s refused (HTTP %d): check --api-key; the fleet stops", what, r.status);
        d->stats.refused = 1;
        set_stop(d);
    }
    vg_httpc_response_dispose(&r);
    note_result(d, ok, what, why);
    return ok ? 0 : -1;
}

/* POST /api/publish of one message; `extra` (consumed, may be NULL) adds envelope fields. */
static int publish(vg_demo_t *d, const char *channel, const char *type, json_t *data, json_t *extra)
{
    json_t *msg = extra != NULL ? extra : json_object();
    json_object_set_new(msg, "channel", json_string(channel));
    json_object_set_new(msg, "type", json_string(type));
    json_object_set_new(msg, "data", data);
    return send_doc(d, "POST", "/api/publish", msg);
}

static int put_state(vg_demo_t *d, const char *method, const char *name, json_t *doc)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/state/%s", name);
    return send_doc(d, method, path, doc);
}

/* ---- thumbnails ------------------------------------------------------------------------------ */

/* Mostly flat areas with sparse grain: a night camera's look that still deflates to a few KiB
 * (per-pixel noise everywhere would cost ~40 KiB). */
static void draw_night(vg_demo_t *d, vg_image_t *img)
{
    int horizon = 48 + (int)uniform(d, 0, 8);
    for (int y = 0; y < img->height; y++) {
        uint32_t c = y < horizon ? VG_RGB(12 + y / 4, 18 + y / 4, 32 + y / 5)
                                 : VG_RGB(40 - (y - horizon) / 3, 44 - (y - horizon) / 3,
                                          40 - (y - horizon) / 3);
        vg_image_fill(img, 0, y, img->width, 1, c);
    }
    int bx = (int)uniform(d, 0, 100), bw = (int)uniform(d, 40, 60), by = horizon - 26;
    vg_image_fill(img, bx, by, bw, 26, VG_RGB(22, 26, 34));
    for (int i = 0; i < 4; i++)
        if (unit(d) < 0.6)
            vg_image_fill(img, bx + 5 + i * (bw - 10) / 4, by + 6, 5, 5, VG_RGB(128, 112, 58));
    int lx = (int)uniform(d, 10, 150);
    vg_image_blend(img, lx - 12, 6, 25, 22, VG_RGB(190, 170, 110), 28);
    vg_image_fill(img, lx - 1, 14, 2, horizon - 14, VG_RGB(46, 46, 50));
    vg_image_disc(img, lx, 13, 3, VG_RGB(230, 210, 150));
    for (int i = 0; i < img->width * img->height / 10; i++)
        vg_image_blend(img, (int)uniform(d, 0, img->width - 1), (int)uniform(d, 0, img->height - 1),
                       1, 1, VG_RGB(255, 255, 255), (int)uniform(d, 4, 26));
}

static void draw_person(vg_image_t *img, int x, int y, uint32_t c)
{
    vg_image_disc(img, x + 7, y + 5, 4, c);
    vg_image_fill(img, x + 3, y + 10, 9, 14, c);
    vg_image_fill(img, x + 1, y + 11, 2, 10, c);
    vg_image_fill(img, x + 12, y + 11, 2, 10, c);
    vg_image_fill(img, x + 4, y + 24, 3, 10, c);
    vg_image_fill(img, x + 8, y + 24, 3, 10, c);
}

static void draw_vehicle(vg_image_t *img, int x, int y, uint32_t c)
{
    vg_image_fill(img, x + 8, y, 22, 9, c);
    vg_image_fill(img, x + 11, y + 2, 7, 5, VG_RGB(70, 84, 100));
    vg_image_fill(img, x, y + 8, 44, 11, c);
    vg_image_fill(img, x + 41, y + 10, 3, 3, VG_RGB(250, 240, 170));
    vg_image_disc(img, x + 10, y + 19, 4, VG_RGB(14, 14, 16));
    vg_image_disc(img, x + 34, y + 19, 4, VG_RGB(14, 14, 16));
}

/* The detection box, the subject inside it and a "PERSON 91%" tag. */
static void draw_detection(vg_demo_t *d, vg_image_t *img, const char *kind, double conf)
{
    int vehicle = strcmp(kind, "vehicle") == 0, person = strcmp(kind, "person") == 0;
    int w = vehicle ? 52 : person ? 22 : 30, h = vehicle ? 30 : person ? 40 : 26;
    int x = (int)uniform(d, 4, img->width - w - 4), y = (int)uniform(d, 24, img->height - h - 13);
    uint32_t color = vehicle  ? VG_RGB(80, 180, 255)
                     : person ? VG_RGB(255, 92, 92)
                              : VG_RGB(255, 214, 64);
    if (vehicle)
        draw_vehicle(img, x + 4, y + 4, VG_RGB(96, 104, 116));
    else if (person)
        draw_person(img, x + 4, y + 3, VG_RGB(104, 110, 118));
    else
        vg_image_blend(img, x + 4, y + 4, w - 8, h - 8, VG_RGB(200, 200, 200), 40);
    vg_image_frame(img, x, y, w, h, 2, color);
    char tag[32];
    snprintf(tag, sizeof(tag), "%s %d%%", kind, (int)(conf * 100 + 0.5));
    int tw = vg_image_text_width(tag, 1) + 4, ty = y - 10 < 12 ? y + h : y - 10;
    vg_image_fill(img, x, ty, tw, 10, color);
    vg_image_text(img, x + 2, ty + 2, tag, 1, VG_RGB(0, 0, 0));
}

static void draw_no_signal(vg_image_t *img)
{
    static const uint32_t bars[] = {
        VG_RGB(150, 150, 150), VG_RGB(150, 150, 40), VG_RGB(40, 150, 150), VG_RGB(40, 150, 40),
        VG_RGB(150, 40, 150),  VG_RGB(150, 40, 40),  VG_RGB(40, 40, 150)};
    int n = (int)VG_ARRAY_SIZE(bars), bw = (img->width + n - 1) / n;
    for (int i = 0; i < n; i++)
        vg_image_fill(img, i * bw, 0, bw, img->height, bars[i]);
    vg_image_blend(img, 0, 0, img->width, img->height, VG_RGB(0, 0, 0), 150);
    const char *text = "NO SIGNAL";
    int tw = vg_image_text_width(text, 2);
    vg_image_fill(img, (img->width - tw) / 2 - 6, 32, tw + 12, 24, VG_RGB(0, 0, 0));
    vg_image_text(img, (img->width - tw) / 2, 37, text, 2, VG_RGB(255, 255, 255));
}

/* Camera name (and REC) on top, id and time at the bottom, as a camera's overlay shows them. */
static void draw_overlay(vg_image_t *img, const camera_t *cam, int64_t wall_ms)
{
    char ts[32], line[64];
    iso(wall_ms, ts);
    vg_image_blend(img, 0, 0, img->width, 11, VG_RGB(0, 0, 0), 150);
    vg_image_text(img, 3, 2, cam->name, 1, VG_RGB(255, 255, 255));
    if (cam->state == CAM_RECORDING) {
        vg_image_disc(img, img->width - 24, 5, 2, VG_RGB(255, 40, 40));
        vg_image_text(img, img->width - 20, 2, "REC", 1, VG_RGB(255, 255, 255));
    }
    snprintf(line, sizeof(line), "%s %.10s %.8s", cam->id, ts, ts + 11);
    vg_image_blend(img, 0, img->height - 11, img->width, 11, VG_RGB(0, 0, 0), 150);
    vg_image_text(img, 3, img->height - 9, line, 1, VG_RGB(230, 230, 230));
}

/* A data: URL of a PNG showing what triggered an alert: kind is person, vehicle or motion, or
 * NULL for a camera that went offline. */
static char *thumbnail(vg_demo_t *d, const camera_t *cam, const char *kind, double conf,
                       int64_t wall_ms)
{
    vg_image_t img;
    vg_image_init(&img, THUMB_W, THUMB_H);
    if (kind != NULL) {
        draw_night(d, &img);
        draw_detection(d, &img, kind, conf);
    } else {
        draw_no_signal(&img);
    }
    draw_overlay(&img, cam, wall_ms);
    vg_buf_t png = VG_BUF_INIT;
    vg_png_encode(&img, &png);
    vg_image_dispose(&img);
    static const char scheme[] = "data:image/png;base64,";
    char *url = vg_malloc(sizeof(scheme) + vg_base64_encoded_len(png.len, VG_BASE64_STD));
    memcpy(url, scheme, sizeof(scheme) - 1);
    vg_base64_encode(png.base, png.len, url + sizeof(scheme) - 1, VG_BASE64_STD);
    vg_buf_dispose(&png);
    return url;
}

/* ---- documents ------------------------------------------------------------------------------- */

static json_t *camera_json(const camera_t *c)
{
    char since[32], last[32];
    iso(c->since_ms, since);
    iso(c->last_event_ms, last);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:s,s:o}", "id", c->id, "name", c->name, "location",
                     c->location, "state", state_names[c->state], "since", since, "fps",
                     c->state == CAM_DOWN ? 0 : c->fps, "resolution", c->resolution, "last_event",
                     c->last_event_ms != 0 ? json_string(last) : json_null());
}

static void count_states(const vg_demo_t *d, int *online, int *recording, int *down)
{
    *online = *recording = *down = 0;
    for (int i = 0; i < d->ncams; i++) {
        *down += d->cams[i].state == CAM_DOWN;
        *recording += d->cams[i].state == CAM_RECORDING;
    }
    *online = d->ncams - *down;
}

static json_t *summary_json(const vg_demo_t *d)
{
    int online, recording, down;
    count_states(d, &online, &recording, &down);
    return json_pack("{s:i,s:i,s:i}", "online", online, "recording", recording, "down", down);
}

static int put_status(vg_demo_t *d)
{
    json_t *cams = json_object();
    for (int i = 0; i < d->ncams; i++)
        json_object_set_new(cams, d->cams[i].id, camera_json(&d->cams[i]));
    return put_state(d, "PUT", "status",
                     json_pack("{s:o,s:o}", "cameras", cams, "summary", summary_json(d)));
}

/* Merge patch of one camera's fields (and the summary, which may have changed with it). */
static int patch_camera(vg_demo_t *d, const camera_t *c, json_t *fields)
{
    json_t *patch =
        json_pack("{s:{s:o},s:o}", "cameras", c->id, fields, "summary", summary_json(d));
    return put_state(d, "PATCH", "status", patch);
}

/* Keeps per_minute[59] the current minute and the _today counters today's. */
static void roll_counters(vg_demo_t *d, int64_t wall_ms)
{
    int64_t day = wall_ms / 86400000, minute = wall_ms / 60000;
    if (day != d->day) {
        d->day = day;
        d->motion_today = d->people_today = d->vehicles_today = 0;
    }
    for (int n = 0; d->minute < minute && n < 60; n++) {
        memmove(d->per_minute, d->per_minute + 1, 59 * sizeof(int));
        d->per_minute[59] = 0;
        d->minute++;
    }
    d->minute = minute;
}

static int alerts_open(const vg_demo_t *d, int64_t wall_ms)
{
    int open = 0;
    unsigned n = d->num_alerts < MAX_RECENT ? d->num_alerts : MAX_RECENT;
    for (unsigned i = 0; i < n; i++)
        open += wall_ms - d->recent_alerts[i] < OPEN_ALERT_MS;
    return open;
}

static int put_statistics(vg_demo_t *d)
{
    int64_t now = vg_wall_ms();
    roll_counters(d, now);
    int online, recording, down, last_hour = 0;
    count_states(d, &online, &recording, &down);
    json_t *epm = json_array();
    for (int i = 0; i < 60; i++) {
        json_array_append_new(epm, json_integer(d->per_minute[i]));
        last_hour += d->per_minute[i];
    }
    char ts[32];
    iso(now, ts);
    json_t *doc = json_pack(
        "{s:{s:i,s:i,s:i,s:i},s:I,s:i,s:i,s:I,s:I,s:I,s:o,s:s}", "cameras", "total", d->ncams,
        "online", online, "recording", recording, "down", down, "events_today",
        (json_int_t)(d->motion_today + d->people_today + d->vehicles_today), "events_last_hour",
        last_hour, "alerts_open", alerts_open(d, now), "people_today", (json_int_t)d->people_today,
        "vehicles_today", (json_int_t)d->vehicles_today, "motion_today",
        (json_int_t)d->motion_today, "events_per_minute", epm, "timestamp", ts);
    return put_state(d, "PUT", "statistics", doc);
}

/* ---- what happens ---------------------------------------------------------------------------- */

/* A random camera that is up (and sees vehicles, when asked), or NULL. */
static camera_t *pick_up(vg_demo_t *d, int needs_vehicles)
{
    int candidates = 0;
    for (int i = 0; i < d->ncams; i++)
        candidates += d->cams[i].state != CAM_DOWN && (!needs_vehicles || d->cams[i].vehicles);
    if (candidates == 0)
        return NULL;
    int64_t k = uniform(d, 0, candidates - 1);
    for (int i = 0; i < d->ncams; i++)
        if (d->cams[i].state != CAM_DOWN && (!needs_vehicles || d->cams[i].vehicles) && k-- == 0)
            return &d->cams[i];
    return NULL;
}

static void publish_event(vg_demo_t *d, camera_t *cam, const char *kind, double conf)
{
    int64_t now = vg_wall_ms();
    char ts[32], id[32], channel[64];
    iso(now, ts);
    snprintf(id, sizeof(id), "evt-%llu", (unsigned long long)++d->evt_seq);
    snprintf(channel, sizeof(channel), "cameras.%s.events", cam->id);
    json_t *data =
        json_pack("{s:s,s:s,s:s,s:s,s:f,s:s}", "id", id, "camera_id", cam->id, "camera_name",
                  cam->name, "event_type", kind, "confidence", conf, "timestamp", ts);
    json_t *envelope = json_pack("{s:s,s:s}", "camera_id", cam->id, "event_type", kind);
    publish(d, channel, kind, data, envelope);
    roll_counters(d, now);
    d->per_minute[59]++;
    if (strcmp(kind, "person") == 0)
        d->people_today++;
    else if (strcmp(kind, "vehicle") == 0)
        d->vehicles_today++;
    else
        d->motion_today++;
    cam->last_event_ms = now;
    patch_camera(d, cam, json_pack("{s:s}", "last_event", ts));
}

static void random_event(vg_demo_t *d)
{
    camera_t *cam = pick_up(d, 0);
    if (cam == NULL)
        return;
    double r = unit(d);
    if (r < 0.12 && cam->vehicles)
        publish_event(d, cam, "vehicle", confidence(d, 72, 99));
    else if (r < 0.40)
        publish_event(d, cam, "person", confidence(d, 68, 99));
    else
        publish_event(d, cam, "motion", confidence(d, 51, 96));
}

static void publish_alert(vg_demo_t *d, const camera_t *cam, const char *level, const char *title,
                          const char *message, const char *kind, double conf)
{
    int64_t now = vg_wall_ms();
    char ts[32], id[64], channel[64];
    iso(now, ts);
    snprintf(id, sizeof(id), "alert-%s-%llu", d->run_tag, (unsigned long long)++d->alert_seq);
    snprintf(channel, sizeof(channel), "alerts.%s", cam->id);
    char *thumb = thumbnail(d, cam, kind, conf, now);
    json_t *data = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "camera_id", cam->id,
                             "camera_name", cam->name, "level", level, "title", title, "message",
                             message, "timestamp", ts, "thumbnail", thumb);
    vg_free(thumb);
    publish(d, channel, "alert", data, json_pack("{s:s}", "id", id));
    d->recent_alerts[d->num_alerts++ % MAX_RECENT] = now;
}

/* A detection worth an alert: the event itself, then the alert about it. */
static void random_alert(vg_demo_t *d)
{
    static const struct {
        const char *kind, *what, *level, *title;
        int vehicles;
    } scenarios[] = {
        {"person", "Person", "critical", "Person in restricted area", 0},
        {"vehicle", "Vehicle", "warning", "Vehicle in loading zone", 1},
        {"person", "Person", "warning", "Loitering detected", 0},
        {"motion", "Motion", "warning", "Motion after hours", 0},
    };
    size_t i = (size_t)uniform(d, 0, VG_ARRAY_SIZE(scenarios) - 1);
    camera_t *cam = pick_up(d, scenarios[i].vehicles);
    if (cam == NULL && scenarios[i].vehicles) {
        cam = pick_up(d, 0); /* no vehicle camera is up: a person alert instead */
        i = 0;
    }
    if (cam == NULL)
        return;
    double conf = confidence(d, 80, 99);
    publish_event(d, cam, scenarios[i].kind, conf);
    char message[160];
    snprintf(message, sizeof(message), "%s detected at %s (%s), %d%% confidence", scenarios[i].what,
             cam->name, cam->location, (int)(conf * 100 + 0.5));
    publish_alert(d, cam, scenarios[i].level, scenarios[i].title, message, scenarios[i].kind, conf);
}

/* A state change: the camera_status message, the status document, and for an outage the
 * "Camera offline" alert. */
static void change_state(vg_demo_t *d, camera_t *cam, enum cam_state to)
{
    enum cam_state from = cam->state;
    int64_t now = vg_wall_ms();
    char ts[32], channel[64];
    iso(now, ts);
    cam->state = to;
    cam->since_ms = now;
    vg_verbose("demo: %s (%s) %s -> %s", cam->id, cam->name, state_names[from], state_names[to]);
    snprintf(channel, sizeof(channel), "cameras.%s.status", cam->id);
    publish(d, channel, "camera_status",
            json_pack("{s:s,s:s,s:s,s:s,s:s}", "camera_id", cam->id, "camera_name", cam->name,
                      "state", state_names[to], "previous", state_names[from], "timestamp", ts),
            NULL);
    patch_camera(d, cam,
                 json_pack("{s:s,s:s,s:i}", "state", state_names[to], "since", ts, "fps",
                           to == CAM_DOWN ? 0 : cam->fps));
    if (to == CAM_DOWN) {
        char message[160];
        snprintf(message, sizeof(message), "%s (%s) stopped sending video", cam->name,
                 cam->location);
        publish_alert(d, cam, "critical", "Camera offline", message, NULL, 0);
    }
}

/* Takes a camera down unless too many already are (a third of the fleet, keeping one up). */
static void random_outage(vg_demo_t *d, uint64_t now)
{
    int online, recording, down;
    count_states(d, &online, &recording, &down);
    int max_down = d->ncams / 3 > 0 ? d->ncams / 3 : 1;
    camera_t *cam = pick_up(d, 0);
    if (cam == NULL || down >= max_down || online <= 1)
        return;
    cam->before_down = cam->state;
    cam->recover_at = now + (uint64_t)uniform(d, 10000, 40000);
    change_state(d, cam, CAM_DOWN);
}

static void recoveries(vg_demo_t *d, uint64_t now)
{
    for (int i = 0; i < d->ncams; i++)
        if (d->cams[i].state == CAM_DOWN && now >= d->cams[i].recover_at)
            change_state(d, &d->cams[i], d->cams[i].before_down);
}

static void toggle_recording(vg_demo_t *d)
{
    camera_t *cam = pick_up(d, 0);
    if (cam != NULL)
        change_state(d, cam, cam->state == CAM_RECORDING ? CAM_ONLINE : CAM_RECORDING);
}

/* ---- the fleet's thread ------------------------------------------------------------------------
 */

static void init_camera(vg_demo_t *d, camera_t *c, int i, int64_t now)
{
    snprintf(c->id, sizeof(c->id), "cam-%d", i + 1);
    if (i < (int)VG_ARRAY_SIZE(catalog)) {
        snprintf(c->name, sizeof(c->name), "%s", catalog[i].name);
        snprintf(c->location, sizeof(c->location), "%s", catalog[i].location);
        c->resolution = catalog[i].resolution;
        c->fps = catalog[i].fps;
        c->vehicles = catalog[i].vehicles;
    } else {
        snprintf(c->name, sizeof(c->name), "Camera %d", i + 1);
        snprintf(c->location, sizeof(c->location), "Zone %d", i / 8 + 1);
        c->resolution = "1920x1080";
        c->fps = 15;
        c->vehicles = i % 3 == 0;
    }
    c->state = unit(d) < 0.4 ? CAM_RECORDING : CAM_ONLINE;
    c->since_ms = now - uniform(d, 3600, 36 * 3600) * 1000;
}

/* Counters that look like a fleet that has been running all day: about 30 events a minute
 * (the live rate) since midnight UTC, and a plausible last hour. */
static void init_statistics(vg_demo_t *d, int64_t now)
{
    d->day = now / 86400000;
    d->minute = now / 60000;
    uint64_t so_far = (uint64_t)(now % 86400000) / 2000;
    d->people_today = so_far * 28 / 100;
    d->vehicles_today = so_far * 12 / 100;
    d->motion_today = so_far - d->people_today - d->vehicles_today;
    for (int i = 0; i < 59; i++)
        d->per_minute[i] = (int)uniform(d, 22, 38);
    d->per_minute[59] = (int)(now % 60000 / 2000);
}

/* First occurrences come early so that the first minute shows every kind of message. */
static void init_schedule(vg_demo_t *d, uint64_t now)
{
    d->next_stats = now;
    d->next_event = now + (uint64_t)uniform(d, 300, 1000);
    d->next_alert = now + (uint64_t)uniform(d, 3000, 6000);
    d->next_outage = now + (uint64_t)uniform(d, 8000, 15000);
    d->next_record = now + (uint64_t)uniform(d, 5000, 10000);
}

static uint64_t earliest(const vg_demo_t *d)
{
    uint64_t t = d->next_stats;
    uint64_t others[] = {d->next_event, d->next_alert, d->next_outage, d->next_record};
    for (size_t i = 0; i < VG_ARRAY_SIZE(others); i++)
        t = others[i] < t ? others[i] : t;
    for (int i = 0; i < d->ncams; i++)
        if (d->cams[i].state == CAM_DOWN && d->cams[i].recover_at < t)
            t = d->cams[i].recover_at;
    return t;
}

/* Sleeps until the monotonic time `until` or a stop request.  Returns nonzero on stop. */
static int sleep_until(vg_demo_t *d, uint64_t until)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = mono_ms();
    uint64_t wait = until > now ? until - now : 0;
    ts.tv_sec += (time_t)(wait / 1000);
    ts.tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->lock);
    while (!d->stop && pthread_cond_timedwait(&d->cond, &d->lock, &ts) != ETIMEDOUT)
        ;
    int stop = d->stop;
    pthread_mutex_unlock(&d->lock);
    return stop;
}

static void run_due(vg_demo_t *d, uint64_t now)
{
    recoveries(d, now);
    if (now >= d->next_event) {
        random_event(d);
        d->next_event = now + (uint64_t)uniform(d, 1000, 3000);
    }
    if (now >= d->next_outage) {
        random_outage(d, now);
        d->next_outage = now + (uint64_t)uniform(d, 40000, 80000);
    }
    if (now >= d->next_record) {
        toggle_recording(d);
        d->next_record = now + (uint64_t)uniform(d, 8000, 20000);
    }
    if (now >= d->next_alert) {
        random_alert(d);
        d->next_alert = now + (uint64_t)uniform(d, 20000, 40000);
    }
    if (now >= d->next_stats) {
        put_statistics(d);
        d->next_stats = now + STATS_PERIOD_MS;
    }
}

static void *fleet_main(void *arg)
{
    vg_demo_t *d = arg;
    vg_log_set_thread_name("demo");
    uint64_t start = mono_ms();
    init_schedule(d, start);
    /* Until the status document is there, nothing else makes sense to a dashboard. */
    while (put_status(d) != 0 && !sleep_until(d, mono_ms() + 1000))
        ;
    while (!stopping(d)) {
        run_due(d, mono_ms());
        if (sleep_until(d, earliest(d)))
            break;
    }
    vg_httpc_dispose(&d->http); /* closes the connection now, not at free */
    pthread_mutex_lock(&d->lock);
    d->finished = 1;
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void init_connection(vg_demo_t *d)
{
    const char *base = d->http.url.path;
    size_t blen = strcspn(base, "?");
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    snprintf(d->prefix, sizeof(d->prefix), "%.*s", (int)blen, base);
    vg_buf_append_str(&d->headers, "Content-Type: application/json\r\n"
                                   "User-Agent: vigil-demo/" VG_VERSION "\r\n");
    if (d->api_key != NULL && d->api_key[0] != '\0')
        vg_buf_printf(&d->headers, "Authorization: Bearer %s\r\n", d->api_key);
    vg_buf_append(&d->headers, "", 1);
}

static void init_fleet(vg_demo_t *d, uint64_t seed)
{
    d->rng = seed != 0 ? seed : random_u64();
    snprintf(d->run_tag, sizeof(d->run_tag), "%08llx", (unsigned long long)(random_u64() >> 32));
    /* Event ids go on from the clock, so a restart (durable history) never repeats one. */
    d->evt_seq = (uint64_t)vg_wall_ms();
    int64_t now = vg_wall_ms();
    d->cams = vg_calloc((size_t)d->ncams, sizeof(*d->cams));
    for (int i = 0; i < d->ncams; i++)
        init_camera(d, &d->cams[i], i, now);
    init_statistics(d, now);
}

static void free_fleet(vg_demo_t *d)
{
    vg_buf_dispose(&d->headers);
    vg_free(d->cams);
    vg_free(d->url);
    vg_free(d->api_key);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    vg_free(d);
}

int vg_demo_start(vg_demo_t **out, const vg_demo_options_t *o, char *err, size_t errlen)
{
    vg_demo_t *d = vg_calloc(1, sizeof(*d));
    d->url = vg_strdup(o->url);
    d->api_key = o->api_key != NULL ? vg_strdup(o->api_key) : NULL;
    d->ncams = o->cameras < 1 ? 1 : o->cameras > 256 ? 256 : o->cameras;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* sleeps ignore wall-clock jumps */
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (vg_httpc_init(&d->http, o->url, REQUEST_TIMEOUT) != 0) {
        snprintf(err, errlen, "%s", d->http.errstr);
        vg_httpc_dispose(&d->http);
        free_fleet(d);
        return VG_EINVAL;
    }
    init_connection(d);
    init_fleet(d, o->seed);
    if (pthread_create(&d->thread, NULL, fleet_main, d) != 0) {
        snprintf(err, errlen, "cannot start the demo thread");
        vg_httpc_dispose(&d->http);
        free_fleet(d);
        return VG_EINVAL;
    }
    d->started = 1;
    *out = d;
    return 0;
}

int vg_demo_finished(vg_demo_t *d)
{
    pthread_mutex_lock(&d->lock);
    int f = d->finished;
    pthread_mutex_unlock(&d->lock);
    return f;
}

void vg_demo_stop(vg_demo_t *d, vg_demo_stats_t *stats)
{
    if (d == NULL)
        return;
    set_stop(d);
    if (d->started)
        pthread_join(d->thread, NULL);
    if (stats != NULL)
        *stats = d->stats;
    free_fleet(d);
}

/* ---- serve --demo ---------------------------------------------------------------------------- */

static int random_secret(char **out, char *err, size_t errlen)
{
    uint8_t raw[24];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        snprintf(err, errlen, "--demo: cannot get random bytes for a key: %s", strerror(errno));
        return VG_ECONFIG;
    }
    char *hex = vg_malloc(sizeof(raw) * 2 + 1);
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    *out = hex;
    return 0;
}

int vg_demo_prepare_config(vg_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->demo)
        return 0;
    if (cfg->api_key == NULL && random_secret(&cfg->api_key, err, errlen) != 0)
        return VG_ECONFIG;
    /* Also with --jwt-public-key: the demo login mints HS256 tokens, which need a secret. */
    if (cfg->jwt_secret == NULL && random_secret(&cfg->jwt_secret, err, errlen) != 0)
        return VG_ECONFIG;
    if (cfg->durable_channels == NULL)
        cfg->durable_channels = vg_strdup("cameras.>");
    return 0;
}

void vg_demo_base_url(const char *listen_name, char *out, size_t cap)
{
    const char *colon = strrchr(listen_name, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - listen_name) : strlen(listen_name);
    const char *port = colon != NULL ? colon : "";
    if (hlen == 7 && strncmp(listen_name, "0.0.0.0", 7) == 0)
        snprintf(out, cap, "http://127.0.0.1%s", port);
    else if ((hlen == 4 && strncmp(listen_name, "[::]", 4) == 0) ||
             (hlen == 2 && strncmp(listen_name, "::", 2) == 0))
        snprintf(out, cap, "http://[::1]%s", port);
    else
        snprintf(out, cap, "http://%s", listen_name);
}

static void handle_session(vg_session_t *s, vg_http_request_t *req, const vg_route_match_t *m)
{
    (void)req;
    (void)m;
    const char *secret = s->app->cfg->jwt_secret;
    char *token =
        secret != NULL ? vg_auth_mint_token(secret, "HS256", "demo", 12 * 3600, 1, NULL) : NULL;
    if (token == NULL) {
        vg_session_respond_error(s, 503, "unavailable", "the demo login needs a --jwt-secret",
                                 NULL);
        return;
    }
    json_t *body = json_pack("{s:s,s:s,s:b}", "token", token, "user", "demo", "admin", 1);
    vg_free(token);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    vg_session_respond(s, 200, "application/json", "Cache-Control: no-store\r\n", text,
                       strlen(text));
    free(text);
}

void vg_demo_register(vg_app_t *app)
{
    vg_notice("demo mode: every browser that reaches this server is logged in as admin 'demo'");
    vg_app_route(app, "/api/demo/session", VG_M_GET, handle_session);
}
