#include "core/registry.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

#define USER_BUCKETS 4096

struct vg_user_s {
    char *name;
    size_t count;
    vg_reg_entry_t *conns;
    vg_user_t *next; /* hash chain */
};

struct vg_registry_s {
    pthread_mutex_t lock;
    vg_reg_entry_t *all;
    size_t total, users;
    vg_user_t *buckets[USER_BUCKETS];
};

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h % USER_BUCKETS;
}

vg_registry_t *vg_registry_new(void)
{
    vg_registry_t *r = vg_calloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void vg_registry_free(vg_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < USER_BUCKETS; i++) {
        for (vg_user_t *u = r->buckets[i], *next; u != NULL; u = next) {
            next = u->next;
            vg_free(u->name);
            vg_free(u);
        }
    }
    pthread_mutex_destroy(&r->lock);
    vg_free(r);
}

static vg_user_t *find_user(vg_registry_t *r, const char *name, int create)
{
    size_t b = hash(name);
    for (vg_user_t *u = r->buckets[b]; u != NULL; u = u->next)
        if (strcmp(u->name, name) == 0)
            return u;
    if (!create)
        return NULL;
    vg_user_t *u = vg_calloc(1, sizeof(*u));
    u->name = vg_strdup(name);
    u->next = r->buckets[b];
    r->buckets[b] = u;
    return u;
}

static void drop_user(vg_registry_t *r, vg_user_t *gone)
{
    for (vg_user_t **p = &r->buckets[hash(gone->name)]; *p != NULL; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            break;
        }
    }
    vg_free(gone->name);
    vg_free(gone);
}

int vg_registry_add(vg_registry_t *r, vg_reg_entry_t *e, const char *user, int max_per_user)
{
    pthread_mutex_lock(&r->lock);
    vg_user_t *u = find_user(r, user, 1);
    if (u->count >= (size_t)max_per_user) {
        pthread_mutex_unlock(&r->lock);
        return VG_ELIMIT;
    }
    if (u->count++ == 0)
        r->users++;
    e->_user = u;
    e->_user_prev = NULL;
    e->_user_next = u->conns;
    if (u->conns != NULL)
        u->conns->_user_prev = e;
    u->conns = e;
    e->_prev = NULL;
    e->_next = r->all;
    if (r->all != NULL)
        r->all->_prev = e;
    r->all = e;
    r->total++;
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void vg_registry_remove(vg_registry_t *r, vg_reg_entry_t *e)
{
    pthread_mutex_lock(&r->lock);
    vg_user_t *u = e->_user;
    if (u != NULL) {
        if (e->_user_prev != NULL)
            e->_user_prev->_user_next = e->_user_next;
        else
            u->conns = e->_user_next;
        if (e->_user_next != NULL)
            e->_user_next->_user_prev = e->_user_prev;
        if (e->_prev != NULL)
            e->_prev->_next = e->_next;
        else
            r->all = e->_next;
        if (e->_next != NULL)
            e->_next->_prev = e->_prev;
        r->total--;
        if (--u->count == 0) {
            r->users--;
            drop_user(r, u);
        }
        e->_user = NULL;
    }
    vg_free(e->subscriptions);
    e->subscriptions = NULL;
    e->_subs_len = e->_subs_cap = 0;
    pthread_mutex_unlock(&r->lock);
}

void vg_registry_set_subscriptions(vg_registry_t *r, vg_reg_entry_t *e, char *json_array)
{
    size_t len = json_array != NULL ? strlen(json_array) : 0;
    pthread_mutex_lock(&r->lock);
    vg_free(e->subscriptions);
    e->subscriptions = json_array;
    e->_subs_len = len;
    e->_subs_cap = json_array != NULL ? len + 1 : 0;
    pthread_mutex_unlock(&r->lock);
}

void vg_registry_append_subscriptions(vg_registry_t *r, vg_reg_entry_t *e, const char *items,
                                      size_t len)
{
    if (len == 0)
        return;
    pthread_mutex_lock(&r->lock);
    if (e->subscriptions == NULL) {
        e->subscriptions = vg_malloc(2 + 1);
        memcpy(e->subscriptions, "[]", 3);
        e->_subs_len = 2;
        e->_subs_cap = 3;
    }
    /* "[...]" becomes "[...,items]" (no comma after "["); the buffer doubles as it grows. */
    int comma = e->_subs_len > 2;
    size_t need = e->_subs_len + (size_t)comma + len + 1;
    if (need > e->_subs_cap) {
        size_t cap = e->_subs_cap * 2 > need ? e->_subs_cap * 2 : need;
        e->subscriptions = vg_realloc(e->subscriptions, cap);
        e->_subs_cap = cap;
    }
    char *end = e->subscriptions + e->_subs_len - 1; /* the "]" */
    if (comma)
        *end++ = ',';
    memcpy(end, items, len);
    end[len] = ']';
    end[len + 1] = '\0';
    e->_subs_len = need - 1;
    pthread_mutex_unlock(&r->lock);
}

size_t vg_registry_total(vg_registry_t *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->total;
    pthread_mutex_unlock(&r->lock);
    return n;
}

size_t vg_registry_users(vg_registry_t *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->users;
    pthread_mutex_unlock(&r->lock);
    return n;
}

size_t vg_registry_user_count(vg_registry_t *r, const char *user)
{
    pthread_mutex_lock(&r->lock);
    vg_user_t *u = find_user(r, user, 0);
    size_t n = u ? u->count : 0;
    pthread_mutex_unlock(&r->lock);
    return n;
}

json_t *vg_registry_connections_by_user(vg_registry_t *r)
{
    json_t *out = json_object();
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < USER_BUCKETS; i++)
        for (vg_user_t *u = r->buckets[i]; u != NULL; u = u->next)
            json_object_set_new(out, u->name, json_integer((json_int_t)u->count));
    pthread_mutex_unlock(&r->lock);
    return out;
}

static json_t *describe_entry(const vg_reg_entry_t *e, int64_t now_ms)
{
    char id[24], connected[32], heartbeat[32];
    int64_t hb = atomic_load_explicit(&e->last_heartbeat_ms, memory_order_relaxed);
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)e->conn_id);
    vg_format_rfc3339(e->connected_at_ms, connected);
    vg_format_rfc3339(hb, heartbeat);
    json_t *subs = e->subscriptions ? json_loads(e->subscriptions, 0, NULL) : NULL;
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:f, s:s, s:f, s:o, s:I, s:I}", "connection_id", id, "user_id",
        e->_user->name, "remote_address", e->peer, "endpoint", e->endpoint, "connected_at",
        connected, "uptime_seconds", (double)(now_ms - e->connected_at_ms) / 1e3, "last_heartbeat",
        heartbeat, "seconds_since_heartbeat", (double)(now_ms - hb) / 1e3, "subscriptions",
        subs ? subs : json_array(), "messages_in",
        (json_int_t)atomic_load_explicit(&e->messages_in, memory_order_relaxed), "messages_out",
        (json_int_t)atomic_load_explicit(&e->messages_out, memory_order_relaxed));
}

json_t *vg_registry_describe(vg_registry_t *r, const char *user, int64_t now_ms)
{
    json_t *out = json_array();
    pthread_mutex_lock(&r->lock);
    vg_reg_entry_t *e = r->all;
    if (user != NULL) {
        vg_user_t *u = find_user(r, user, 0);
        e = u ? u->conns : NULL;
    }
    for (; e != NULL; e = user ? e->_user_next : e->_next)
        json_array_append_new(out, describe_entry(e, now_ms));
    pthread_mutex_unlock(&r->lock);
    return out;
}

size_t vg_registry_each(vg_registry_t *r, const char *user, void (*fn)(vg_reg_entry_t *, void *),
                        void *arg)
{
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    vg_reg_entry_t *e = r->all;
    if (user != NULL) {
        vg_user_t *u = find_user(r, user, 0);
        e = u ? u->conns : NULL;
    }
    for (vg_reg_entry_t *next; e != NULL; e = next, n++) {
        next = user ? e->_user_next : e->_next;
        fn(e, arg);
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}
