/*
 * Durable channels (--durable-channels): the hub's history written through to the store, and
 * read back at start so those channels resume their offsets, epochs and history after a restart.
 */
#include <stdio.h>
#include <string.h>

#include "broker/durable.h"
#include "broker/memory.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/log.h"

static int durable_wants(void *arg, const char *channel)
{
    vg_durable_t *d = arg;
    return vg_patterns_match(d->channels, channel, strlen(channel));
}

static int durable_append(void *arg, const char *channel, uint64_t offset, const char *epoch,
                          int64_t time_ms, const uint8_t *text, size_t len)
{
    vg_durable_t *d = arg;
    vg_store_hist_msg_t m = {channel, offset, epoch, time_ms, (const char *)text, len};
    if (vg_store_hist_append(d->store, &m, 1) < 0)
        return VG_ESTORE;
    /* Runs under the publish lock, so the counter needs no other. */
    if (++d->appends % 1000 == 0)
        vg_store_hist_trim(d->store, NULL, d->history_size,
                           time_ms - (int64_t)(d->history_ttl * 1000));
    return 0;
}

typedef struct restored_s {
    char *channel;
    uint64_t last;
    char epoch[VG_STORE_EPOCH_SIZE];
} restored_t;

static int collect_channel(const char *channel, uint64_t last, const char *epoch, void *arg)
{
    vg_buf_t *list = arg;
    restored_t r = {vg_strdup(channel), last, ""};
    snprintf(r.epoch, sizeof(r.epoch), "%s", epoch);
    vg_buf_append(list, &r, sizeof(r));
    return 0;
}

static int restore_message(const vg_store_hist_msg_t *m, void *arg)
{
    vg_broker_t *broker = arg;
    json_t *msg = json_loadb(m->text, m->len, 0, NULL);
    const char *type = json_string_value(json_object_get(msg, "type"));
    vg_memory_broker_restore_message(broker, m->channel, m->offset, m->time_ms, type ? type : "",
                                     m->text, m->len);
    json_decref(msg);
    return 0;
}

vg_durable_t *vg_durable_start(vg_broker_t *broker, vg_store_t *store,
                               const vg_patterns_t *channels, uint64_t history_size,
                               double history_ttl)
{
    vg_durable_t *d = vg_malloc(sizeof(*d));
    *d = (vg_durable_t){store, channels, history_size, history_ttl, 0};
    vg_durability_t hd = {durable_wants, durable_append, d};
    vg_memory_broker_set_durability(broker, &hd);
    vg_buf_t list = VG_BUF_INIT;
    if (vg_store_hist_channels(store, collect_channel, &list) < 0)
        vg_warning("durable channels could not be read from the store");
    restored_t *r = (restored_t *)list.base;
    size_t n = list.len / sizeof(*r);
    int64_t horizon = vg_wall_ms() - (int64_t)(history_ttl * 1000);
    vg_store_hist_trim(store, NULL, history_size, horizon);
    for (size_t i = 0; i < n; i++) {
        vg_memory_broker_restore_channel(broker, r[i].channel, r[i].last, r[i].epoch);
        vg_store_hist_read(store, r[i].channel, 0, 0, restore_message, broker);
        vg_free(r[i].channel);
    }
    if (n > 0)
        vg_notice("restored %zu durable channel(s) from the store", n);
    vg_buf_dispose(&list);
    return d;
}

void vg_durable_free(vg_durable_t *d)
{
    vg_free(d);
}
