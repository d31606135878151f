#include "core/state.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"
#include "core/hub.h"
#include "proto/mergepatch.h"
#include "store/store.h"
#include "proto/ws.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

typedef struct doc_s {
    char *name;
    json_t *doc; /* NULL once deleted (the version keeps counting) */
    uint64_t version;
    json_t *sent; /* the document as subscribers have it after the last push ({} at first) */
    int dirty;    /* changed since the last push */
    int deleted_pending;
    int64_t last_push_ms;
    struct doc_s *next;
} doc_t;

typedef struct broadcast_s {
    vg_state_broadcast_t spec;
    int64_t next_ms;
    uint64_t sent_version; /* of the document last published (on_change feeds) */
} broadcast_t;

struct vg_state_s {
    pthread_mutex_t lock;
    vg_hub_t *hub;
    vg_store_t *store;
    int64_t interval_ms;
    doc_t *docs; /* a list: dashboards have tens of documents, not thousands */
    broadcast_t *broadcasts;
    size_t num_broadcasts;
};

static doc_t *find(vg_state_t *st, const char *name, int create);

/* The store's list call holds its lock: collect the names first, read them after. */
static int collect_name(const char *name, uint64_t version, void *arg)
{
    (void)version;
    vg_patterns_t *names = arg; /* a list of strings */
    names->items = vg_realloc(names->items, (names->count + 1) * sizeof(char *));
    names->items[names->count++] = vg_strdup(name);
    return 0;
}

static void load_one(vg_state_t *st, const char *name)
{
    uint64_t version;
    char *text = NULL;
    size_t len = 0;
    if (vg_store_state_get(st->store, name, &text, &len, &version) != 1)
        return;
    json_t *doc = json_loadb(text, len, JSON_DECODE_ANY, NULL);
    vg_free(text);
    if (doc == NULL) {
        vg_warning("state %s: stored document is not JSON; skipped", name);
        return;
    }
    doc_t *d = find(st, name, 1);
    d->doc = doc;
    d->version = version;
    json_decref(d->sent);
    d->sent = json_incref(doc);
}

vg_state_t *vg_state_new(vg_hub_t *hub, double interval_seconds, vg_store_t *store)
{
    vg_state_t *st = vg_calloc(1, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->hub = hub;
    st->store = store;
    st->interval_ms = (int64_t)(interval_seconds * 1000);
    vg_patterns_t names = {NULL, 0};
    if (store != NULL && vg_store_state_list(store, collect_name, &names) < 0)
        vg_warning("state documents could not be loaded from the store");
    for (size_t i = 0; i < names.count; i++)
        load_one(st, names.items[i]);
    vg_patterns_dispose(&names);
    return st;
}

/* Under the lock: writes the document through to the store.  Returns 0 or VG_ESTORE. */
static int persist(vg_state_t *st, const char *name, json_t *doc, uint64_t version)
{
    if (st->store == NULL)
        return 0;
    if (doc == NULL)
        return vg_store_state_delete(st->store, name) < 0 ? VG_ESTORE : 0;
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = vg_store_state_put(st->store, name, text, strlen(text), version);
    free(text);
    return rc < 0 ? VG_ESTORE : 0;
}

void vg_state_free(vg_state_t *st)
{
    if (st == NULL)
        return;
    for (doc_t *d = st->docs, *next; d != NULL; d = next) {
        next = d->next;
        json_decref(d->doc);
        json_decref(d->sent);
        vg_free(d->name);
        vg_free(d);
    }
    for (size_t i = 0; i < st->num_broadcasts; i++) {
        vg_free(st->broadcasts[i].spec.name);
        vg_free(st->broadcasts[i].spec.type);
        vg_free(st->broadcasts[i].spec.channel);
    }
    vg_free(st->broadcasts);
    pthread_mutex_destroy(&st->lock);
    vg_free(st);
}

int vg_state_add_broadcast(vg_state_t *st, const char *spec)
{
    const char *a = strchr(spec, ':'), *b = a ? strchr(a + 1, ':') : NULL;
    if (a == NULL || b == NULL || a == spec || b == a + 1)
        return VG_EINVAL;
    char *end;
    double seconds = strtod(b + 1, &end);
    if (*end != '\0' || !(seconds >= 0.05))
        return VG_EINVAL;
    st->broadcasts = vg_realloc(st->broadcasts, (st->num_broadcasts + 1) * sizeof(broadcast_t));
    broadcast_t *bc = &st->broadcasts[st->num_broadcasts++];
    bc->spec.name = vg_strndup(spec, (size_t)(a - spec));
    bc->spec.type = vg_strndup(a + 1, (size_t)(b - a - 1));
    bc->spec.seconds = seconds;
    bc->spec.channel = NULL;
    bc->spec.on_change = 0;
    bc->next_ms = 0;
    bc->sent_version = 0;
    return 0;
}

void vg_state_add_feed(vg_state_t *st, const vg_state_broadcast_t *spec)
{
    st->broadcasts = vg_realloc(st->broadcasts, (st->num_broadcasts + 1) * sizeof(broadcast_t));
    broadcast_t *bc = &st->broadcasts[st->num_broadcasts++];
    bc->spec.name = vg_strdup(spec->name);
    bc->spec.type = vg_strdup(spec->type);
    bc->spec.seconds = spec->seconds;
    bc->spec.channel = spec->channel ? vg_strdup(spec->channel) : NULL;
    bc->spec.on_change = spec->on_change;
    bc->next_ms = 0;
    bc->sent_version = 0;
}

static doc_t *find(vg_state_t *st, const char *name, int create)
{
    for (doc_t *d = st->docs; d != NULL; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    if (!create)
        return NULL;
    doc_t *d = vg_calloc(1, sizeof(*d));
    d->name = vg_strdup(name);
    d->sent = json_object();
    d->next = st->docs;
    st->docs = d;
    return d;
}

/* Publishes a state message (no envelope: it is the message) on "state.<name>". */
static void publish_state(vg_state_t *st, const char *name, json_t *msg)
{
    char channel[256];
    snprintf(channel, sizeof(channel), "state.%s", name);
    char *text = json_dumps(msg, JSON_COMPACT);
    vg_hub_publish_raw(st->hub, channel, "state", text, strlen(text));
    free(text);
    json_decref(msg);
}

/* Under the lock: the message that brings subscribers from what they have (d->sent) to the
 * document, or NULL when nothing changed.  The delta is computed at push time, so any number of
 * updates inside one interval become one patch.  When a merge patch cannot express the change
 * (RFC 7396 has no way to set a member to null) a snapshot goes out instead. */
static json_t *take_delta(doc_t *d, int64_t now_ms)
{
    json_t *msg = NULL;
    if (d->deleted_pending) {
        msg = json_pack("{s:s, s:s, s:I, s:b}", "type", "state", "name", d->name, "version",
                        (json_int_t)d->version, "deleted", 1);
        json_decref(d->sent);
        d->sent = json_object();
    } else if (d->dirty && d->doc != NULL) {
        json_t *patch = vg_merge_patch_diff(d->sent, d->doc);
        if (patch == NULL)
            msg = json_pack("{s:s, s:s, s:I, s:O}", "type", "state", "name", d->name, "version",
                            (json_int_t)d->version, "snapshot", d->doc);
        else if (!(json_is_object(patch) && json_object_size(patch) == 0))
            msg = json_pack("{s:s, s:s, s:I, s:O}", "type", "state", "name", d->name, "version",
                            (json_int_t)d->version, "patch", patch);
        json_decref(patch);
        json_decref(d->sent);
        d->sent = json_incref(d->doc); /* documents are replaced, never changed in place */
    }
    d->dirty = 0;
    d->deleted_pending = 0;
    if (msg != NULL)
        d->last_push_ms = now_ms;
    return msg;
}

/* Records a change; returns a message to publish now when the interval allows. */
static json_t *changed(vg_state_t *st, doc_t *d)
{
    d->dirty = 1;
    int64_t now = vg_wall_ms();
    if (now - d->last_push_ms >= st->interval_ms)
        return take_delta(d, now);
    return NULL; /* the tick sends it when the interval is over */
}

static int update(vg_state_t *st, const char *name, json_t *newdoc, json_t *patch,
                  uint64_t *version)
{
    pthread_mutex_lock(&st->lock);
    doc_t *d = find(st, name, 1);
    json_t *doc = newdoc ? json_deep_copy(newdoc) : vg_merge_patch_apply(d->doc, patch);
    if (doc == NULL) {
        pthread_mutex_unlock(&st->lock);
        return VG_EINVAL;
    }
    if (persist(st, name, doc, d->version + 1) != 0) {
        json_decref(doc);
        pthread_mutex_unlock(&st->lock);
        return VG_ESTORE;
    }
    json_decref(d->doc);
    d->doc = doc;
    d->deleted_pending = 0;
    *version = ++d->version;
    json_t *msg = changed(st, d);
    pthread_mutex_unlock(&st->lock);
    /* Published outside the lock; a late delta is harmless because clients compare versions. */
    if (msg != NULL)
        publish_state(st, name, msg);
    return 0;
}

int vg_state_put(vg_state_t *st, const char *name, json_t *doc, uint64_t *version)
{
    return update(st, name, doc, NULL, version);
}

int vg_state_patch(vg_state_t *st, const char *name, json_t *patch, uint64_t *version)
{
    return update(st, name, NULL, patch, version);
}

json_t *vg_state_get(vg_state_t *st, const char *name, uint64_t *version)
{
    pthread_mutex_lock(&st->lock);
    doc_t *d = find(st, name, 0);
    json_t *doc = d && d->doc ? json_deep_copy(d->doc) : NULL;
    if (doc != NULL)
        *version = d->version;
    pthread_mutex_unlock(&st->lock);
    return doc;
}

int vg_state_delete(vg_state_t *st, const char *name)
{
    pthread_mutex_lock(&st->lock);
    doc_t *d = find(st, name, 0);
    if (d == NULL || d->doc == NULL) {
        pthread_mutex_unlock(&st->lock);
        return VG_EINVAL;
    }
    if (persist(st, name, NULL, 0) != 0) {
        pthread_mutex_unlock(&st->lock);
        return VG_ESTORE;
    }
    json_decref(d->doc);
    d->doc = NULL;
    d->version++;
    d->deleted_pending = 1;
    json_t *msg = changed(st, d);
    pthread_mutex_unlock(&st->lock);
    if (msg != NULL)
        publish_state(st, name, msg);
    return 0;
}

static void run_broadcasts(vg_state_t *st, int64_t now_ms)
{
    for (size_t i = 0; i < st->num_broadcasts; i++) {
        broadcast_t *bc = &st->broadcasts[i];
        pthread_mutex_lock(&st->lock);
        doc_t *d = find(st, bc->spec.name, 0);
        uint64_t version = d && d->doc ? d->version : 0;
        int periodic = bc->spec.seconds > 0 && now_ms >= bc->next_ms;
        int changed = bc->spec.on_change && version != 0 && version != bc->sent_version;
        json_t *doc = (periodic || changed) && version != 0 ? json_deep_copy(d->doc) : NULL;
        pthread_mutex_unlock(&st->lock);
        if (periodic)
            bc->next_ms = now_ms + (int64_t)(bc->spec.seconds * 1000);
        if (doc == NULL)
            continue;
        bc->sent_version = version;
        vg_publish_t m = {bc->spec.channel ? bc->spec.channel : bc->spec.name, bc->spec.type, doc,
                          NULL, NULL};
        uint64_t offset;
        vg_hub_publish(st->hub, &m, 1, &offset);
        json_decref(doc);
    }
}

void vg_state_tick(vg_state_t *st, int64_t now_ms)
{
    json_t *due[64];
    char *names[64];
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    for (doc_t *d = st->docs; d != NULL && n < 64; d = d->next) {
        if ((!d->dirty && !d->deleted_pending) || now_ms - d->last_push_ms < st->interval_ms)
            continue;
        json_t *msg = take_delta(d, now_ms);
        if (msg != NULL) {
            due[n] = msg;
            names[n++] = vg_strdup(d->name);
        }
    }
    pthread_mutex_unlock(&st->lock);
    for (size_t i = 0; i < n; i++) {
        publish_state(st, names[i], due[i]);
        vg_free(names[i]);
    }
    run_broadcasts(st, now_ms);
}

vg_chunk_t *vg_state_snapshot_frame(vg_state_t *st, const char *name)
{
    pthread_mutex_lock(&st->lock);
    doc_t *d = find(st, name, 0);
    json_t *msg = NULL;
    if (d != NULL && d->doc != NULL)
        msg = json_pack("{s:s, s:s, s:I, s:O}", "type", "state", "name", d->name, "version",
                        (json_int_t)d->version, "snapshot", d->doc);
    pthread_mutex_unlock(&st->lock);
    if (msg == NULL)
        return NULL;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    vg_chunk_t *frame = vg_ws_frame_new(VG_WS_OP_TEXT, text, strlen(text));
    free(text);
    return frame;
}
