/* The hub over the in-process broker: history and recovery, without sockets.  A worker is a
 * bare loop with the hub's per-worker state, and recovery is read through
 * vg_hub_subscribe_atomically. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/memory.h"
#include "core/hub.h"

typedef struct fixture_s {
    vg_broker_t *broker;
    vg_hub_t *hub;
    vg_worker_t worker;
} fixture_t;

static fixture_t *setup_hub(size_t size, double ttl, size_t max_bytes)
{
    fixture_t *f = calloc(1, sizeof(*f));
    vg_history_limits_t hist = {size, ttl, max_bytes};
    f->broker = vg_memory_broker_new(&hist);
    f->hub = vg_hub_new(1, f->broker);
    uv_loop_init(&f->worker.loop);
    vg_hub_worker_start(f->hub, &f->worker);
    return f;
}

static void teardown_hub(fixture_t *f)
{
    vg_hub_worker_stop(f->hub, &f->worker);
    uv_run(&f->worker.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->worker.loop), 0); /* nothing left on the loop */
    vg_hub_free(f->hub);
    f->broker->ops->free(f->broker);
    free(f);
}

static void publish(fixture_t *f, const char *channel, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *data = json_integer(i);
        vg_publish_t m = {channel, "t", data, NULL};
        uint64_t offset;
        vg_hub_publish(f->hub, &m, 1, &offset);
        json_decref(data);
    }
}

/* Recovers `channel` from since_offset in the channel's current epoch (or `epoch`). */
static vg_recovery_t recover(fixture_t *f, const char *channel, uint64_t since, const char *epoch,
                             size_t *count)
{
    vg_recovery_t r = {.channel = channel,
                       .has_since = 1,
                       .since_offset = since,
                       .since_epoch = epoch,
                       .any_epoch = epoch == NULL};
    vg_missed_t missed;
    vg_hub_subscribe_atomically(&f->worker, NULL, NULL, &r, 1, &missed);
    *count = missed.count;
    for (size_t i = 1; i < missed.count; i++)
        assert_int_equal(missed.offsets[i], missed.offsets[i - 1] + 1); /* in order, no gap */
    if (missed.count > 0)
        assert_int_equal(missed.offsets[missed.count - 1], r.offset);
    vg_missed_dispose(&missed);
    return r;
}

static void test_recovers_within_history(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 300, 1 << 20);
    publish(f, "a.b", 10);
    size_t n;
    vg_recovery_t r = recover(f, "a.b", 4, NULL, &n);
    assert_true(r.recovered);
    assert_int_equal(r.offset, 10);
    assert_int_equal(n, 6);
    r = recover(f, "a.b", 10, NULL, &n); /* nothing missed */
    assert_true(r.recovered);
    assert_int_equal(n, 0);
    r = recover(f, "a.b", 11, NULL, &n); /* from the future: another epoch's offsets */
    assert_false(r.recovered);
    teardown_hub(f);
}

static void test_size_cap_breaks_recovery(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(5, 300, 1 << 20);
    publish(f, "a.b", 20);
    size_t n;
    assert_false(recover(f, "a.b", 10, NULL, &n).recovered); /* 11..15 are gone */
    vg_recovery_t r = recover(f, "a.b", 15, NULL, &n);       /* 16..20 are kept */
    assert_true(r.recovered);
    assert_int_equal(n, 5);
    teardown_hub(f);
}

static void test_memory_budget_evicts_oldest_across_channels(void **state)
{
    (void)state;
    /* Each framed message is ~90 bytes: a 1000-byte budget keeps about ten in all. */
    fixture_t *f = setup_hub(100, 300, 1000);
    publish(f, "old.a", 10);
    publish(f, "new.b", 10);
    size_t n;
    assert_false(recover(f, "old.a", 0, NULL, &n).recovered);
    vg_recovery_t r = recover(f, "new.b", 5, NULL, &n);
    assert_true(r.recovered);
    assert_int_equal(n, 5);
    teardown_hub(f);
}

static void test_ttl_expires_history(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 0.05, 1 << 20);
    publish(f, "a.b", 3);
    usleep(120 * 1000);
    size_t n;
    assert_false(recover(f, "a.b", 0, NULL, &n).recovered);
    assert_true(recover(f, "a.b", 3, NULL, &n).recovered); /* nothing was missed */
    teardown_hub(f);
}

static void test_epochs(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 300, 1 << 20);
    fixture_t *g = setup_hub(100, 300, 1 << 20); /* another process, in effect */
    publish(f, "a.b", 3);
    size_t n;
    vg_recovery_t r = recover(f, "a.b", 1, NULL, &n);
    assert_int_equal(strlen(r.epoch), 16);
    assert_true(recover(f, "a.b", 1, r.epoch, &n).recovered);
    assert_false(recover(f, "a.b", 1, "0000000000000000", &n).recovered);
    vg_recovery_t other = recover(g, "a.b", 0, NULL, &n);
    assert_string_not_equal(other.epoch, r.epoch);
    assert_false(recover(g, "a.b", 0, r.epoch, &n).recovered);
    teardown_hub(f);
    teardown_hub(g);
}

static void test_restore_resumes_offsets(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 300, 1 << 20);
    vg_memory_broker_restore_channel(f->broker, "d.a", 41, "feedfacefeedface");
    static const char text[] = "{\"type\":\"t\",\"channel\":\"d.a\",\"offset\":41,\"data\":1}";
    vg_memory_broker_restore_message(f->broker, "d.a", 41, (int64_t)time(NULL) * 1000, "t", text,
                                     sizeof(text) - 1);
    publish(f, "d.a", 1);
    size_t n;
    vg_recovery_t r = recover(f, "d.a", 40, "feedfacefeedface", &n);
    assert_true(r.recovered);
    assert_int_equal(r.offset, 42);
    assert_int_equal(n, 2);
    teardown_hub(f);
}

/* Subscribing to a channel nobody published on holds nothing, and the epoch it answers is the
 * one the channel's first run gets, so a position taken then recovers everything after. */
static void test_subscribe_creates_no_record(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 300, 1 << 20);
    size_t n, live;
    uint64_t freed;
    vg_recovery_t before = recover(f, "a.b", 0, NULL, &n);
    assert_int_equal(before.offset, 0);
    assert_true(before.recovered);
    vg_hub_channel_counts(f->hub, &live, &freed);
    assert_int_equal(live, 0);
    publish(f, "a.b", 3);
    vg_recovery_t r = recover(f, "a.b", 0, before.epoch, &n);
    assert_true(r.recovered);
    assert_int_equal(n, 3);
    assert_string_equal(r.epoch, before.epoch);
    assert_false(recover(f, "a.b", 1, "0123456789abcdef", &n).recovered);
    vg_hub_channel_counts(f->hub, &live, &freed);
    assert_int_equal(live, 1);
    teardown_hub(f);
}

/* A record whose history expired is freed once idle (at least a second); the channel's next run
 * has a new epoch, so positions in the old run or before it are refused. */
static void test_idle_record_is_freed_and_the_next_run_has_a_new_epoch(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 0.05, 1 << 20);
    size_t n, live;
    uint64_t freed;
    vg_recovery_t empty = recover(f, "a.b", 0, NULL, &n);
    publish(f, "a.b", 2);
    vg_recovery_t old = recover(f, "a.b", 2, NULL, &n);
    assert_string_equal(old.epoch, empty.epoch);
    usleep(1100 * 1000);
    publish(f, "x.y", 1); /* a publish sweeps what is idle */
    vg_hub_channel_counts(f->hub, &live, &freed);
    assert_int_equal(live, 1);
    assert_int_equal(freed, 1);
    assert_false(recover(f, "a.b", 2, old.epoch, &n).recovered);
    assert_false(recover(f, "a.b", 0, empty.epoch, &n).recovered);
    publish(f, "a.b", 1);
    vg_recovery_t r = recover(f, "a.b", 1, NULL, &n);
    assert_int_equal(r.offset, 1);
    assert_string_not_equal(r.epoch, old.epoch);
    teardown_hub(f);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* since_time replays the history after it of the channels published to since, whichever order
 * they were created in, and nothing of channels left alone. */
static void test_since_time_follows_last_publish(void **state)
{
    (void)state;
    fixture_t *f = setup_hub(100, 300, 1 << 20);
    publish(f, "a.one", 1);
    publish(f, "a.two", 1);
    publish(f, "a.three", 1);
    usleep(5 * 1000);
    int64_t since = now_ms();
    usleep(5 * 1000);
    publish(f, "a.four", 1);
    publish(f, "a.one", 2);
    publish(f, "b.other", 1);
    const char *patterns[] = {"a.*"};
    vg_time_recovery_t tr = {patterns, 1, since};
    vg_missed_t missed;
    vg_hub_subscribe_atomically_ex(&f->worker, NULL, NULL, NULL, 0, &tr, &missed);
    assert_int_equal(missed.count, 3);
    assert_string_equal(missed.channels[0], "a.four");
    assert_string_equal(missed.channels[1], "a.one");
    assert_int_equal(missed.offsets[1], 2);
    assert_int_equal(missed.offsets[2], 3);
    vg_missed_dispose(&missed);
    teardown_hub(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovers_within_history),
        cmocka_unit_test(test_size_cap_breaks_recovery),
        cmocka_unit_test(test_memory_budget_evicts_oldest_across_channels),
        cmocka_unit_test(test_ttl_expires_history),
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_restore_resumes_offsets),
        cmocka_unit_test(test_subscribe_creates_no_record),
        cmocka_unit_test(test_idle_record_is_freed_and_the_next_run_has_a_new_epoch),
        cmocka_unit_test(test_since_time_follows_last_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
