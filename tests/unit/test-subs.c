/* The per-worker subscription index: exact names, patterns, exactly-once delivery, removal,
 * churn that must leave nothing behind, and a randomized cross-check against vg_channel_match. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/channel.h"
#include "core/subs.h"
#include "util/alloc.h"
#include "util/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifdef HAVE_ASAN
#include <sanitizer/lsan_interface.h>
/* Declared here because gcc does not ship sanitizer/allocator_interface.h. */
size_t __sanitizer_get_current_allocated_bytes(void);
#define HEAP_EXACT 1
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}
#endif

/* Records which subscribers a match reached and how often. */
typedef struct hits_s {
    size_t calls;
    size_t counts[64];
    vg_subscriber_t *base; /* subscribers are an array; index = sub - base */
    size_t nbase;
} hits_t;

static void on_hit(vg_subscriber_t *sub, void *arg)
{
    hits_t *h = arg;
    h->calls++;
    size_t i = (size_t)(sub - h->base);
    assert_true(i < h->nbase);
    if (i < 64)
        h->counts[i]++;
}

static hits_t match(vg_subs_t *s, vg_subscriber_t *base, size_t n, const char *channel)
{
    hits_t h;
    memset(&h, 0, sizeof(h));
    h.base = base;
    h.nbase = n;
    vg_subs_match(s, channel, strlen(channel), on_hit, &h);
    return h;
}

static int add(vg_subs_t *s, vg_subscriber_t *sub, const char *p)
{
    assert_null(vg_channel_check_pattern(p, strlen(p)));
    return vg_subs_add(s, sub, p, strlen(p));
}

static int del(vg_subs_t *s, vg_subscriber_t *sub, const char *p)
{
    return vg_subs_remove(s, sub, p, strlen(p));
}

static void init_subs(vg_subscriber_t *subs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vg_subscriber_init(&subs[i], (void *)(uintptr_t)(i + 1));
}

static void test_exact(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[3];
    init_subs(subs, 3);
    assert_ptr_equal(subs[1].data, (void *)2);
    assert_int_equal(add(s, &subs[0], "cameras.cam-1"), 1);
    assert_int_equal(add(s, &subs[1], "cameras.cam-1"), 1);
    assert_int_equal(add(s, &subs[2], "cameras.cam-2"), 1);
    assert_int_equal(add(s, &subs[2], "stats"), 1);

    hits_t h = match(s, subs, 3, "cameras.cam-1");
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.counts[0], 1);
    assert_int_equal(h.counts[1], 1);
    h = match(s, subs, 3, "stats");
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.counts[2], 1);
    assert_int_equal(match(s, subs, 3, "cameras").calls, 0);
    assert_int_equal(match(s, subs, 3, "cameras.cam-11").calls, 0);
    assert_int_equal(match(s, subs, 3, "cameras.cam-").calls, 0);
    assert_int_equal(match(s, subs, 3, "stats.x").calls, 0);
    assert_int_equal(vg_subscriber_count(&subs[2]), 2);

    for (size_t i = 0; i < 3; i++)
        vg_subs_remove_all(s, &subs[i]);
    vg_subs_free(s);
}

static void test_patterns(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[6];
    init_subs(subs, 6);
    add(s, &subs[0], "cameras.*");
    add(s, &subs[1], "cameras.>");
    add(s, &subs[2], ">");
    add(s, &subs[3], "*.events");
    add(s, &subs[4], "cameras.*.events");
    add(s, &subs[5], "*");

    static const struct {
        const char *channel;
        const char *want; /* one char per subscriber */
    } t[] = {
        {"cameras", "001001"},
        {"cameras.cam-1", "111000"},
        {"cameras.events", "111100"},
        {"cameras.cam-1.events", "011010"},
        {"cameras.cam-1.status", "011000"},
        {"alerts.events", "001100"},
        {"stats", "001001"},
        {"a.b.c.d.e", "001000"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        hits_t h = match(s, subs, 6, t[i].channel);
        for (size_t j = 0; j < 6; j++)
            if (h.counts[j] != (size_t)(t[i].want[j] - '0'))
                fail_msg("%s: subscriber %zu called %zu times, want %c", t[i].channel, j,
                         h.counts[j], t[i].want[j]);
    }
    for (size_t i = 0; i < 6; i++)
        vg_subs_remove_all(s, &subs[i]);
    assert_int_equal(match(s, subs, 6, "cameras.cam-1").calls, 0);
    vg_subs_free(s);
}

/* One subscriber holding many overlapping subscriptions is called once per match; a second
 * match reaches it again (the stamp is per call). */
static void test_exactly_once(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[2];
    init_subs(subs, 2);
    static const char *const pats[] = {"a.b", "a.*", "a.>", ">", "*.b", "*.*", "*.>", "a.b"};
    for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
        add(s, &subs[0], pats[i]);
        add(s, &subs[1], pats[i]);
    }
    assert_int_equal(vg_subscriber_count(&subs[0]), 7); /* "a.b" twice is one */
    for (int round = 0; round < 3; round++) {
        hits_t h = match(s, subs, 2, "a.b");
        assert_int_equal(h.calls, 2);
        assert_int_equal(h.counts[0], 1);
        assert_int_equal(h.counts[1], 1);
    }
    hits_t h = match(s, subs, 2, "x.y.z");
    assert_int_equal(h.calls, 2);
    vg_subs_remove_all(s, &subs[0]);
    h = match(s, subs, 2, "a.b");
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.counts[1], 1);
    vg_subs_remove_all(s, &subs[1]);
    vg_subs_free(s);
}

static void test_duplicate_add(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t sub;
    init_subs(&sub, 1);
    assert_int_equal(add(s, &sub, "a.b"), 1);
    assert_int_equal(add(s, &sub, "a.b"), 0);
    assert_int_equal(add(s, &sub, "a.*"), 1);
    assert_int_equal(add(s, &sub, "a.*"), 0);
    assert_int_equal(add(s, &sub, "a.>"), 1);
    assert_int_equal(add(s, &sub, "a.>"), 0);
    assert_int_equal(add(s, &sub, ">"), 1);
    assert_int_equal(add(s, &sub, ">"), 0);
    assert_int_equal(vg_subscriber_count(&sub), 4);
    /* Nothing was stored twice: one removal each makes them disappear. */
    assert_int_equal(del(s, &sub, "a.b"), 1);
    assert_int_equal(del(s, &sub, "a.b"), 0);
    assert_int_equal(del(s, &sub, "a.*"), 1);
    assert_int_equal(del(s, &sub, "a.>"), 1);
    assert_int_equal(del(s, &sub, ">"), 1);
    assert_int_equal(del(s, &sub, ">"), 0);
    assert_int_equal(vg_subscriber_count(&sub), 0);
    assert_int_equal(match(s, &sub, 1, "a.b").calls, 0);

    /* The duplicate check scans whichever list is shorter: exercise both directions. */
    vg_subscriber_t many[50];
    init_subs(many, 50);
    for (size_t i = 0; i < 50; i++)
        assert_int_equal(add(s, &many[i], "hot.*"), 1);
    assert_int_equal(add(s, &many[7], "hot.*"), 0); /* subscriber list is shorter */
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "hot.%d", i);
        assert_int_equal(add(s, &many[0], name), 1);
    }
    assert_int_equal(add(s, &many[0], "hot.*"), 0);  /* index list is shorter */
    assert_int_equal(add(s, &many[0], "hot.42"), 0); /* index list is shorter */
    assert_int_equal(del(s, &many[1], "hot.42"), 0); /* someone else's */
    assert_int_equal(del(s, &many[0], "hot.*"), 1);  /* index list is longer */
    assert_int_equal(del(s, &many[0], "hot.*"), 0);
    assert_int_equal(match(s, many, 50, "hot.42").calls, 50);
    for (size_t i = 0; i < 50; i++)
        vg_subs_remove_all(s, &many[i]);
    vg_subs_free(s);
}

/* vg_subs_set_limit: past the limit nothing is added (and no index node is left behind), a
 * duplicate is still fine, a removal makes room, and other subscribers are not affected. */
static void test_limit(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[2];
    init_subs(subs, 2);
    assert_int_equal(vg_subs_limit(s), 0);
    vg_subs_set_limit(s, 3);
    assert_int_equal(vg_subs_limit(s), 3);
    assert_int_equal(add(s, &subs[0], "a.b"), 1);
    assert_int_equal(add(s, &subs[0], "a.*"), 1);
    assert_int_equal(add(s, &subs[0], "a.>"), 1);
    size_t heap = heap_in_use();
    assert_int_equal(add(s, &subs[0], "c.d"), VG_ELIMIT);
    assert_int_equal(add(s, &subs[0], "c.*.e"), VG_ELIMIT);
    assert_int_equal(add(s, &subs[0], "c.>"), VG_ELIMIT);
    assert_int_equal(heap_in_use(), heap); /* refused without creating anything */
    assert_int_equal(add(s, &subs[0], "a.*"), 0);
    assert_int_equal(vg_subscriber_count(&subs[0]), 3);
    assert_true(vg_subs_contains(s, &subs[0], "a.*", 3));
    assert_false(vg_subs_contains(s, &subs[0], "c.d", 3));
    assert_false(vg_subs_contains(s, &subs[1], "a.*", 3));
    assert_int_equal(match(s, subs, 2, "c.d").calls, 0);
    assert_int_equal(add(s, &subs[1], "c.d"), 1);
    assert_int_equal(del(s, &subs[0], "a.b"), 1);
    assert_int_equal(add(s, &subs[0], "c.d"), 1);
    assert_int_equal(match(s, subs, 2, "c.d").calls, 2);
    vg_subs_remove_all(s, &subs[0]);
    vg_subs_remove_all(s, &subs[1]);
    vg_subs_free(s);
}

static void test_remove(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[2];
    init_subs(subs, 2);
    add(s, &subs[0], "a.b");
    add(s, &subs[0], "a.*");
    add(s, &subs[1], "a.*");
    add(s, &subs[1], "a.b.>");

    assert_int_equal(del(s, &subs[0], "a.c"), 0);   /* no such name */
    assert_int_equal(del(s, &subs[0], "a.b.>"), 0); /* someone else's pattern */
    assert_int_equal(del(s, &subs[0], "x.*.>"), 0); /* no such tree path */
    assert_int_equal(del(s, &subs[0], "a"), 0);
    assert_int_equal(del(s, &subs[0], "a.b.c"), 0);

    assert_int_equal(del(s, &subs[0], "a.*"), 1);
    hits_t h = match(s, subs, 2, "a.c");
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.counts[1], 1);
    h = match(s, subs, 2, "a.b");
    assert_int_equal(h.calls, 2); /* subs[0] by name, subs[1] by a.* */

    assert_int_equal(del(s, &subs[1], "a.*"), 1);
    assert_int_equal(match(s, subs, 2, "a.c").calls, 0);
    h = match(s, subs, 2, "a.b.c.d");
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.counts[1], 1);

    /* Removing a prefix's pattern keeps the longer one below it, and vice versa. */
    add(s, &subs[0], "a.b");
    add(s, &subs[0], "a.b.*");
    add(s, &subs[0], "a.>");
    assert_int_equal(del(s, &subs[0], "a.>"), 1);
    assert_int_equal(match(s, subs, 2, "a.b.c").counts[0], 1);
    assert_int_equal(del(s, &subs[0], "a.b.*"), 1);
    assert_int_equal(match(s, subs, 2, "a.b.c").counts[0], 0);
    assert_int_equal(match(s, subs, 2, "a.b.c").counts[1], 1);
    assert_int_equal(match(s, subs, 2, "a.b").counts[0], 1);

    assert_int_equal(vg_subscriber_count(&subs[0]), 1);
    assert_int_equal(vg_subscriber_count(&subs[1]), 1);
    vg_subs_remove_all(s, &subs[0]);
    vg_subs_remove_all(s, &subs[1]);
    vg_subs_free(s);
}

static void test_remove_all(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[2];
    init_subs(subs, 2);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), i % 2 ? "c.%d" : "c.%d.>", i);
        add(s, &subs[0], name);
        if (i % 10 == 0)
            add(s, &subs[1], name);
    }
    assert_int_equal(vg_subscriber_count(&subs[0]), 1000);
    vg_subs_remove_all(s, &subs[0]);
    assert_int_equal(vg_subscriber_count(&subs[0]), 0);
    assert_null(subs[0]._entries);
    hits_t h = match(s, subs, 2, "c.10.x");
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(match(s, subs, 2, "c.11").calls, 0);
    /* The subscriber is reusable afterwards. */
    assert_int_equal(add(s, &subs[0], "c.11"), 1);
    assert_int_equal(match(s, subs, 2, "c.11").counts[0], 1);
    vg_subs_remove_all(s, &subs[0]);
    vg_subs_remove_all(s, &subs[1]);
    vg_subs_remove_all(s, &subs[1]); /* already empty */
    vg_subs_free(s);
}

typedef struct each_s {
    char out[256];
} each_t;

static void on_each(const char *pattern, size_t len, void *arg)
{
    each_t *e = arg;
    assert_int_equal(pattern[len], '\0');
    strncat(e->out, pattern, len);
    strcat(e->out, " ");
}

static void test_each_order(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t sub;
    init_subs(&sub, 1);
    add(s, &sub, "b");
    add(s, &sub, "a.>");
    add(s, &sub, "c.*");
    add(s, &sub, "a");
    add(s, &sub, "a.>"); /* duplicate keeps its place */
    each_t e = {""};
    vg_subscriber_each(&sub, on_each, &e);
    assert_string_equal(e.out, "b a.> c.* a ");

    del(s, &sub, "a.>"); /* middle */
    del(s, &sub, "a");   /* tail */
    add(s, &sub, "d");
    del(s, &sub, "b"); /* head */
    add(s, &sub, "a.>");
    e.out[0] = '\0';
    vg_subscriber_each(&sub, on_each, &e);
    assert_string_equal(e.out, "c.* d a.> ");
    assert_int_equal(vg_subscriber_count(&sub), 3);

    del(s, &sub, "c.*");
    del(s, &sub, "d");
    del(s, &sub, "a.>");
    e.out[0] = '\0';
    vg_subscriber_each(&sub, on_each, &e);
    assert_string_equal(e.out, "");
    add(s, &sub, "z");
    vg_subscriber_each(&sub, on_each, &e);
    assert_string_equal(e.out, "z ");
    vg_subs_remove_all(s, &sub);
    vg_subs_free(s);
}

/* Subscribe/unsubscribe churn over 100k distinct names and patterns, with a small live set
 * around it, must return the heap to exactly where it was: every tree node, hash node and
 * bucket array is freed when it empties.  The index is then freed and LeakSanitizer (when
 * built with ASan) must find nothing. */
static void churn_name(char *out, size_t size, int i)
{
    switch (i % 4) {
    case 0: snprintf(out, size, "churn.%d", i); break;
    case 1: snprintf(out, size, "churn.%d.*.x%d", i, i % 7); break;
    case 2: snprintf(out, size, "t%d.u%d.>", i % 1000, i); break;
    default: snprintf(out, size, "*.%d.*", i); break;
    }
}

static void test_churn(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    enum { NSUBS = 16, N = 100000, WINDOW = 1000 };
    vg_subscriber_t subs[NSUBS], live[2];
    init_subs(subs, NSUBS);
    init_subs(live, 2);
    add(s, &live[0], "live.>");
    add(s, &live[1], "live.x");

    size_t before = heap_in_use();
    char name[64];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        churn_name(name, sizeof(name), i);
        bad |= vg_subs_add(s, &subs[i % NSUBS], name, strlen(name)) != 1;
        /* Keep a window of live subscriptions so the tables grow and shrink. */
        if (i >= WINDOW) {
            int j = i - WINDOW;
            churn_name(name, sizeof(name), j);
            bad |= vg_subs_remove(s, &subs[j % NSUBS], name, strlen(name)) != 1;
        }
    }
    for (size_t i = 0; i < NSUBS; i++)
        vg_subs_remove_all(s, &subs[i]); /* the window's rest */
    size_t after = heap_in_use();
    assert_false(bad);
    /* Exact under ASan's allocator counter; glibc's figure also moves with its own bookkeeping,
     * so allow a few KiB there.  A leak per operation would show as megabytes. */
#ifdef HEAP_EXACT
    assert_int_equal(after, before);
#else
    assert_true(after <= before + 16 * 1024);
#endif

    assert_int_equal(match(s, live, 2, "live.x").calls, 2);
    assert_int_equal(match(s, live, 2, "churn.4").calls, 0);
    assert_int_equal(match(s, live, 2, "churn.99997.a.x1").calls, 0);
    assert_int_equal(match(s, live, 2, "a.3.b").calls, 0);
    vg_subs_remove_all(s, &live[0]);
    vg_subs_remove_all(s, &live[1]);
    vg_subs_free(s);
#ifdef HAVE_ASAN
    assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
#endif
}

static void count_hit(vg_subscriber_t *sub, void *arg)
{
    (void)sub;
    ++*(size_t *)arg;
}

static void test_many_subscribers(void **state)
{
    (void)state;
    enum { N = 10000 };
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t *subs = vg_malloc(N * sizeof(*subs));
    char name[64];
    for (size_t i = 0; i < N; i++) {
        vg_subscriber_init(&subs[i], NULL);
        snprintf(name, sizeof(name), "room.%zu", i % 100);
        add(s, &subs[i], name);
        add(s, &subs[i], "all.*");
        if (i % 2 == 0)
            add(s, &subs[i], "room.>"); /* overlaps the exact one */
        if (i % 5 == 0)
            add(s, &subs[i], ">");
    }
    size_t n = 0;
    vg_subs_match(s, "room.7", 6, count_hit, &n);
    /* every even subscriber (room.>), the odd ones with ">" (i%10==5: 1000), and those in
     * room 7 (i%100==7: 100 of them, all odd and none a multiple of 5) */
    assert_int_equal(n, N / 2 + N / 10 + 100);
    n = 0;
    vg_subs_match(s, "all.x", 5, count_hit, &n);
    assert_int_equal(n, N);
    n = 0;
    vg_subs_match(s, "other", 5, count_hit, &n);
    assert_int_equal(n, N / 5);
    for (size_t i = 0; i < N; i++)
        vg_subs_remove_all(s, &subs[i]);
    n = 0;
    vg_subs_match(s, "all.x", 5, count_hit, &n);
    assert_int_equal(n, 0);
    vg_free(subs);
    vg_subs_free(s);
}

/* A subscriber may sit in two indexes of one thread: stamps must not collide. */
static void test_two_indexes(void **state)
{
    (void)state;
    vg_subs_t *a = vg_subs_new(), *b = vg_subs_new();
    vg_subscriber_t subs[2];
    init_subs(subs, 2);
    add(a, &subs[0], "x");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(match(a, subs, 2, "x").calls, 1);
        assert_int_equal(match(b, subs, 2, "x").calls, 0);
    }
    add(b, &subs[1], "x");
    add(a, &subs[1], "x");
    for (int i = 0; i < 3; i++) {
        hits_t h = match(a, subs, 2, "x");
        assert_int_equal(h.calls, 2);
        assert_int_equal(h.counts[1], 1);
        h = match(b, subs, 2, "x");
        assert_int_equal(h.calls, 1);
        assert_int_equal(h.counts[1], 1);
    }
    vg_subs_remove_all(a, &subs[0]);
    /* subs[1]'s list holds entries of both indexes, so it is emptied one index at a time. */
    assert_int_equal(vg_subs_remove(a, &subs[1], "x", 1), 1);
    assert_int_equal(vg_subs_remove(b, &subs[1], "x", 1), 1);
    assert_int_equal(vg_subscriber_count(&subs[1]), 0);
    vg_subs_free(a);
    vg_subs_free(b);
}

static void test_invalid_channel(void **state)
{
    (void)state;
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t sub;
    init_subs(&sub, 1);
    add(s, &sub, ">");
    add(s, &sub, "a");
    char big[VG_CHANNEL_MAX_LEN + 1];
    memset(big, '.', sizeof(big));
    size_t n = 0;
    vg_subs_match(s, big, sizeof(big), count_hit, &n);
    vg_subs_match(s, big, VG_CHANNEL_MAX_LEN, count_hit, &n); /* 201 empty segments */
    vg_subs_match(s, "", 0, count_hit, &n);
    assert_int_equal(n, 0);
    assert_int_equal(vg_subs_remove(s, &sub, big, sizeof(big)), 0);
    vg_subs_remove_all(s, &sub);
    vg_subs_free(s);
}

/* Random subscriptions from a small alphabet, random removals, and every match compared with
 * a brute-force scan that asks vg_channel_match about each subscription. */
static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void random_channel(char *out, int patterns)
{
    static const char *const lits[] = {"a", "b", "c", "ab"};
    int nseg = 1 + (int)rnd(4);
    out[0] = '\0';
    for (int i = 0; i < nseg; i++) {
        if (i)
            strcat(out, ".");
        uint32_t r = rnd(10);
        if (patterns && r == 0)
            strcat(out, "*");
        else if (patterns && r == 1 && i == nseg - 1)
            strcat(out, ">");
        else
            strcat(out, lits[rnd(4)]);
    }
}

typedef struct model_s {
    char pats[8][16];
    int n;
} model_t;

static void test_random_vs_brute_force(void **state)
{
    (void)state;
    enum { NSUBS = 40 };
    vg_subs_t *s = vg_subs_new();
    vg_subscriber_t subs[NSUBS];
    model_t model[NSUBS];
    init_subs(subs, NSUBS);
    memset(model, 0, sizeof(model));
    char p[64];
    for (int step = 0; step < 20000; step++) {
        size_t k = rnd(NSUBS);
        model_t *m = &model[k];
        uint32_t op = rnd(10);
        if (op < 4) {
            random_channel(p, 1);
            int have = 0;
            for (int i = 0; i < m->n; i++)
                have |= strcmp(m->pats[i], p) == 0;
            if (!have && m->n == 8)
                continue;
            assert_int_equal(add(s, &subs[k], p), !have);
            if (!have)
                strcpy(m->pats[m->n++], p);
        } else if (op < 7 && m->n > 0) {
            int i = (int)rnd((uint32_t)m->n);
            assert_int_equal(del(s, &subs[k], m->pats[i]), 1);
            memmove(m->pats[i], m->pats[i + 1], (size_t)(m->n - i - 1) * sizeof(m->pats[0]));
            m->n--;
        } else if (op == 7 && rnd(20) == 0) {
            vg_subs_remove_all(s, &subs[k]);
            m->n = 0;
        } else {
            random_channel(p, 0);
            hits_t h = match(s, subs, NSUBS, p);
            for (size_t j = 0; j < NSUBS; j++) {
                size_t want = 0;
                for (int i = 0; i < model[j].n; i++)
                    if (vg_channel_match(model[j].pats[i], strlen(model[j].pats[i]), p, strlen(p)))
                        want = 1;
                if (h.counts[j] != want)
                    fail_msg("step %d channel %s subscriber %zu: %zu calls, want %zu", step, p, j,
                             h.counts[j], want);
            }
        }
        assert_int_equal(vg_subscriber_count(&subs[k]), (size_t)m->n);
    }
    for (size_t i = 0; i < NSUBS; i++)
        vg_subs_remove_all(s, &subs[i]);
    vg_subs_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_duplicate_add),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_remove_all),
        cmocka_unit_test(test_each_order),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_many_subscribers),
        cmocka_unit_test(test_two_indexes),
        cmocka_unit_test(test_invalid_channel),
        cmocka_unit_test(test_random_vs_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
