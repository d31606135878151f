/*
 * Tests of the SQLite store (src/store/sqlite.c through store.h): every operation,
 * persistence across close and reopen, creation and migration (missing dir, empty file, a
 * schema from the future), failures with a clear message (corrupt file, a data dir that is a
 * file, a second server on the same dir), ack semantics across users, expiry and the
 * per-channel cap, ordering and paging, a batch of 10000 appends in one transaction, and calls
 * from several threads at once.
 *
 * Each test works in its own directory under /tmp, removed afterwards.  The database is also
 * opened directly with SQLite (after the store is closed) to check what is on disk.
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

#define NOW   1700000000000LL
#define HOUR  3600000LL
#define NEVER INT64_MAX

/* ---- fixtures ------------------------------------------------------------------------------- */

typedef struct fx_s {
    char dir[64];   /* the temporary root, removed afterwards */
    char data[128]; /* the data dir inside it */
    char db[160];   /* data/vigil.db */
    vg_store_t *s;
} fx_t;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static vg_store_t *open_ok(const char *dir)
{
    char err[256] = "";
    vg_store_t *s = NULL;
    int rc = vg_store_sqlite_open(dir, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("open %s: %s", dir, err);
    assert_non_null(s);
    return s;
}

/* Opening must fail with a message that contains `want` and the path `path`. */
static void open_fails(const char *dir, const char *want, const char *path)
{
    char err[512] = "";
    vg_store_t *s = NULL;
    int rc = vg_store_sqlite_open(dir, &s, err, sizeof(err));
    assert_int_equal(rc, VG_ESTORE);
    assert_null(s);
    if (strstr(err, want) == NULL || strstr(err, path) == NULL)
        fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err, want, path);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vigil-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->data, sizeof(f->data), "%s/data/sub", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/vigil.db", f->data);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    vg_store_free(f->s);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void reopen(fx_t *f)
{
    vg_store_free(f->s);
    f->s = open_ok(f->data);
}

/* Runs one query on the closed store's file and returns the first column of the first row. */
static int64_t raw_int(const char *db, const char *query)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, query, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", query, sqlite3_errmsg(h));
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* ---- collecting listings -------------------------------------------------------------------- */

#define MAXROWS 16

typedef struct rows_s {
    size_t n;
    char id[MAXROWS][32];
    char channel[MAXROWS][64];
    int64_t seq[MAXROWS];
    size_t stop_after; /* 0: never stop */
} rows_t;

static int on_ack_row(const vg_store_ack_msg_t *m, void *arg)
{
    rows_t *r = arg;
    if (r->n < MAXROWS) {
        snprintf(r->id[r->n], sizeof(r->id[0]), "%s", m->id);
        snprintf(r->channel[r->n], sizeof(r->channel[0]), "%s", m->channel);
        r->seq[r->n] = m->seq;
    }
    r->n++;
    return r->stop_after != 0 && r->n >= r->stop_after;
}

/* The ids pending for `user` on `patterns` (a NULL-terminated list), joined with ','. */
static char *pending(vg_store_t *s, const char *user, int64_t now, const char *const *patterns)
{
    static char out[512];
    size_t np = 0;
    while (patterns[np] != NULL)
        np++;
    rows_t r = {0};
    int rc = vg_store_ack_pending(s, user, patterns, np, now, 0, 0, on_ack_row, &r);
    assert_int_equal(rc, (int)r.n);
    out[0] = '\0';
    for (size_t i = 0; i < r.n && i < MAXROWS; i++) {
        if (i)
            strcat(out, ",");
        strcat(out, r.id[i]);
    }
    return out;
}

static const char *const ALERTS[] = {"alerts.>", NULL};

static vg_store_ack_msg_t msg(const char *channel, const char *id, int64_t published,
                              int64_t expires)
{
    static char data[MAXROWS * 4][64];
    static size_t k;
    char *d = data[k++ % (MAXROWS * 4)];
    snprintf(d, 64, "{\"id\":\"%s\",\"text\":\"caf\xc3\xa9\"}", id);
    return (vg_store_ack_msg_t){.channel = channel,
                                .id = id,
                                .type = "alert",
                                .data = d,
                                .data_len = strlen(d),
                                .published_ms = published,
                                .expires_ms = expires};
}

static int append1(vg_store_t *s, const char *channel, const char *id, int64_t expires)
{
    vg_store_ack_msg_t m = msg(channel, id, NOW, expires);
    return vg_store_ack_append(s, &m, 1, 0);
}

/* ---- open, create, migrate, fail ------------------------------------------------------------ */

static void test_create_and_reopen(void **state)
{
    fx_t *f = *state;
    /* data/sub does not exist yet: created with its parent. */
    f->s = open_ok(f->data);
    struct stat sb;
    assert_int_equal(stat(f->db, &sb), 0);
    assert_int_equal(append1(f->s, "alerts.a", "m1", NEVER), 1);
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM schema_version"), 1);
    f->s = open_ok(f->data);
    assert_string_equal(pending(f->s, "u", NOW, ALERTS), "m1");
}

static void test_wal_and_sync(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    assert_string_equal(f->s->type->name, "sqlite");
    assert_int_equal(append1(f->s, "alerts.a", "m1", NEVER), 1);
    /* While the store is open the WAL file exists next to the database. */
    char wal[200];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    vg_store_free(f->s);
    f->s = NULL;
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
}

static void test_migrate_empty_file(void **state)
{
    fx_t *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", f->data);
    assert_int_equal(system(cmd), 0);
    write_file(f->db, "", 0);
    f->s = open_ok(f->data);
    assert_int_equal(vg_store_state_put(f->s, "doc", "{}", 2, 1), 0);
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM state_docs"), 1);
}

static void test_migrate_preexisting_db(void **state)
{
    /* A SQLite file without our tables (version 0): migrated, its other tables untouched. */
    fx_t *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", f->data);
    assert_int_equal(system(cmd), 0);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, "CREATE TABLE other(x); INSERT INTO other VALUES(7);", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(h);
    f->s = open_ok(f->data);
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(raw_int(f->db, "SELECT x FROM other"), 7);
    /* Opening again applies nothing more. */
    f->s = open_ok(f->data);
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM schema_version"), 1);
}

static void test_future_schema_refused(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "UPDATE schema_version SET version = 99 RETURNING version"),
                     99);
    open_fails(f->data, "schema version 99 is newer", f->db);
}

static void test_corrupt_file(void **state)
{
    fx_t *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", f->data);
    assert_int_equal(system(cmd), 0);
    /* Garbage from the first byte. */
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 131 + 7);
    write_file(f->db, junk, sizeof(junk));
    open_fails(f->data, "file is not a database (corrupt, or not a vigil store)", f->db);

    /* A valid database whose pages after the header were overwritten. */
    char wal[200], shm[200];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    snprintf(shm, sizeof(shm), "%s-shm", f->db);
    unlink(f->db);
    unlink(wal);
    unlink(shm);
    f->s = open_ok(f->data);
    for (int i = 0; i < 200; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%d", i);
        assert_int_equal(append1(f->s, "alerts.a", id, NEVER), 1);
    }
    vg_store_free(f->s);
    f->s = NULL;
    int fd = open(f->db, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 100), (ssize_t)sizeof(junk));
    close(fd);
    char err[512] = "";
    vg_store_t *s = NULL;
    assert_int_equal(vg_store_sqlite_open(f->data, &s, err, sizeof(err)), VG_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err, f->db));
    assert_non_null(strstr(err, "corrupt"));
}

static void test_unusable_data_dir(void **state)
{
    fx_t *f = *state;
    /* We run as root, so permissions do not stop us: use paths that cannot be directories. */
    char file[128], below[160];
    snprintf(file, sizeof(file), "%s/plain-file", f->dir);
    write_file(file, "x", 1);
    open_fails(file, "not a directory", file);
    snprintf(below, sizeof(below), "%s/plain-file/data", f->dir);
    open_fails(below, "Not a directory", below);

    /* vigil.db itself is a directory. */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", f->db);
    assert_int_equal(system(cmd), 0);
    open_fails(f->data, "unable to open database file", f->db);

    /* An empty path. */
    char err[64];
    vg_store_t *s = NULL;
    assert_int_equal(vg_store_sqlite_open("", &s, err, sizeof(err)), VG_EINVAL);
    assert_null(s);
}

static void test_second_open_refused(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    char lock[160];
    snprintf(lock, sizeof(lock), "%s/vigil.lock", f->data);
    open_fails(f->data, "in use by another vigil process", lock);
    vg_store_free(f->s);
    f->s = open_ok(f->data); /* released on close */
}

/* ---- acknowledged delivery ------------------------------------------------------------------ */

static void test_ack_semantics(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    vg_store_ack_msg_t batch[3] = {msg("alerts.a", "m1", NOW, NEVER),
                                   msg("alerts.b", "m2", NOW + 1, NEVER),
                                   msg("alerts.a", "m3", NOW + 2, NEVER)};
    assert_int_equal(vg_store_ack_append(f->s, batch, 3, 0), 3);

    assert_string_equal(pending(f->s, "alice", NOW, ALERTS), "m1,m2,m3");
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "m1,m2,m3");

    /* alice acks m2 from one connection: gone for alice everywhere, bob still has it. */
    assert_int_equal(vg_store_ack(f->s, "alice", "m2"), 1);
    assert_string_equal(pending(f->s, "alice", NOW, ALERTS), "m1,m3");
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "m1,m2,m3");
    /* Idempotent; unknown ids are not recorded. */
    assert_int_equal(vg_store_ack(f->s, "alice", "m2"), 0);
    assert_int_equal(vg_store_ack(f->s, "alice", "nope"), 0);
    assert_int_equal(vg_store_ack(f->s, "bob", "m3"), 1);

    /* The payload comes back byte for byte. */
    rows_t r = {0};
    const char *one[] = {"alerts.a"};
    assert_int_equal(vg_store_ack_pending(f->s, "alice", one, 1, NOW, 0, 1, on_ack_row, &r), 1);
    assert_string_equal(r.id[0], "m1");
    assert_string_equal(r.channel[0], "alerts.a");

    /* Acks survive a restart. */
    reopen(f);
    assert_string_equal(pending(f->s, "alice", NOW, ALERTS), "m1,m3");
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "m1,m2");
    assert_string_equal(pending(f->s, "carol", NOW, ALERTS), "m1,m2,m3");
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ack_acks"), 2);
}

typedef struct check_msg_s {
    int seen;
} check_msg_t;

static int on_check_fields(const vg_store_ack_msg_t *m, void *arg)
{
    check_msg_t *c = arg;
    c->seen++;
    assert_string_equal(m->id, "f1");
    assert_string_equal(m->channel, "alerts.x");
    assert_string_equal(m->type, "alert");
    assert_int_equal(m->data_len, strlen("{\"id\":\"f1\",\"text\":\"caf\xc3\xa9\"}"));
    assert_memory_equal(m->data, "{\"id\":\"f1\",\"text\":\"caf\xc3\xa9\"}", m->data_len);
    assert_int_equal(m->published_ms, NOW);
    assert_int_equal(m->expires_ms, NOW + HOUR);
    assert_true(m->seq > 0);
    return 0;
}

static void test_ack_fields_and_null_type(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    vg_store_ack_msg_t m = msg("alerts.x", "f1", NOW, NOW + HOUR);
    assert_int_equal(vg_store_ack_append(f->s, &m, 1, 0), 1);
    check_msg_t c = {0};
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 0, on_check_fields, &c), 1);
    assert_int_equal(c.seen, 1);
    /* type may be NULL; a NULL callback just counts. */
    m = msg("alerts.x", "f2", NOW, NEVER);
    m.type = NULL;
    assert_int_equal(vg_store_ack_append(f->s, &m, 1, 0), 1);
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 0, NULL, NULL), 2);
    /* Invalid arguments change nothing. */
    m.id = NULL;
    assert_int_equal(vg_store_ack_append(f->s, &m, 1, 0), VG_EINVAL);
    assert_int_equal(vg_store_ack(f->s, NULL, "f1"), VG_EINVAL);
    assert_int_equal(vg_store_ack_pending(f->s, NULL, ALERTS, 1, NOW, 0, 0, NULL, NULL), VG_EINVAL);
    assert_int_equal(vg_store_ack_append(f->s, NULL, 0, 0), 0);
}

static void test_ack_patterns(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    assert_int_equal(append1(f->s, "alerts.user.42", "a", NEVER), 1);
    assert_int_equal(append1(f->s, "alerts.user.7", "b", NEVER), 1);
    assert_int_equal(append1(f->s, "alerts.global", "c", NEVER), 1);
    assert_int_equal(append1(f->s, "alerts.user.42.deep", "d", NEVER), 1);
    assert_int_equal(append1(f->s, "other", "e", NEVER), 1);

    const char *const p1[] = {"alerts.user.*", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p1), "a,b");
    const char *const p2[] = {"alerts.user.42", "alerts.global", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p2), "a,c");
    const char *const p3[] = {"alerts.user.>", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p3), "a,b,d");
    const char *const p4[] = {">", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p4), "a,b,c,d,e");
    const char *const p5[] = {"nothing.here", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p5), "");
    const char *const p6[] = {NULL};
    assert_string_equal(pending(f->s, "u", NOW, p6), "");
    /* Overlapping patterns list each message once. */
    const char *const p7[] = {"alerts.>", "alerts.user.*", "alerts.user.42", NULL};
    assert_string_equal(pending(f->s, "u", NOW, p7), "a,b,c,d");
}

static void test_ack_order_and_paging(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    /* Interleaved channels, published out of time order: listed in append (commit) order. */
    static const char *const chans[] = {"alerts.b", "alerts.a", "alerts.c"};
    char ids[12][8];
    for (int i = 0; i < 12; i++) {
        snprintf(ids[i], sizeof(ids[i]), "o%02d", i);
        vg_store_ack_msg_t m = msg(chans[i % 3], ids[i], NOW - i, NEVER);
        assert_int_equal(vg_store_ack_append(f->s, &m, 1, 0), 1);
    }
    assert_string_equal(pending(f->s, "u", NOW, ALERTS),
                        "o00,o01,o02,o03,o04,o05,o06,o07,o08,o09,o10,o11");
    /* Pages of 5 by after_seq. */
    int64_t after = 0;
    char got[256] = "";
    for (int page = 0; page < 4; page++) {
        rows_t r = {0};
        int n = vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, after, 5, on_ack_row, &r);
        assert_int_equal(n, page < 2 ? 5 : page == 2 ? 2 : 0);
        for (size_t i = 0; i < r.n; i++) {
            if (i > 0)
                assert_true(r.seq[i] > r.seq[i - 1]);
            strcat(got, r.id[i]);
        }
        if (r.n)
            after = r.seq[r.n - 1];
    }
    assert_string_equal(got, "o00o01o02o03o04o05o06o07o08o09o10o11");
    /* A callback may stop the listing. */
    rows_t r = {.stop_after = 3};
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 0, on_ack_row, &r), 3);
    /* A duplicate id is skipped, so a retried publish does not deliver twice. */
    vg_store_ack_msg_t dup[2] = {msg("alerts.a", "o03", NOW, NEVER),
                                 msg("alerts.a", "new", NOW, NEVER)};
    assert_int_equal(vg_store_ack_append(f->s, dup, 2, 0), 1);
    assert_string_equal(pending(f->s, "u", NOW, ALERTS),
                        "o00,o01,o02,o03,o04,o05,o06,o07,o08,o09,o10,o11,new");
}

static void test_ack_expiry_and_cap(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    assert_int_equal(append1(f->s, "alerts.a", "short", NOW + 10), 1);
    assert_int_equal(append1(f->s, "alerts.a", "long", NOW + HOUR), 1);
    assert_int_equal(vg_store_ack(f->s, "alice", "short"), 1);
    /* Expired messages are not listed even before a prune. */
    assert_string_equal(pending(f->s, "bob", NOW + 9, ALERTS), "short,long");
    assert_string_equal(pending(f->s, "bob", NOW + 10, ALERTS), "long");
    assert_int_equal(vg_store_ack_prune(f->s, NOW + 10, 0), 1);
    assert_int_equal(vg_store_ack_prune(f->s, NOW + 10, 0), 0);
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "long");

    /* The cap on append: at most 3 per channel, the oldest dropped; other channels untouched. */
    char id[16];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        vg_store_ack_msg_t m = msg("alerts.capped", id, NOW, NEVER);
        assert_int_equal(vg_store_ack_append(f->s, &m, 1, 3), 1);
    }
    assert_int_equal(vg_store_ack(f->s, "alice", "c4"), 1);
    const char *const capped[] = {"alerts.capped", NULL};
    assert_string_equal(pending(f->s, "bob", NOW, capped), "c2,c3,c4");
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "long,c2,c3,c4");
    /* A batch larger than the cap keeps its newest. */
    vg_store_ack_msg_t b[4] = {msg("alerts.b", "b0", NOW, NEVER), msg("alerts.b", "b1", NOW, NEVER),
                               msg("alerts.a", "a9", NOW, NEVER),
                               msg("alerts.b", "b2", NOW, NEVER)};
    assert_int_equal(vg_store_ack_append(f->s, b, 4, 2), 4);
    const char *const bb[] = {"alerts.b", NULL};
    assert_string_equal(pending(f->s, "bob", NOW, bb), "b1,b2");

    /* The cap on prune (a lowered --ack-max): per channel, with the acks of what it drops. */
    assert_int_equal(vg_store_ack_prune(f->s, NOW, 1), 2 + 1 + 1);
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "c4,a9,b2");
    assert_string_equal(pending(f->s, "alice", NOW, ALERTS), "a9,b2");
    /* Everything expires: channels are forgotten, acks removed with their messages. */
    assert_int_equal(vg_store_ack_prune(f->s, NEVER, 0), 3);
    assert_string_equal(pending(f->s, "bob", NOW, ALERTS), "");
    vg_store_free(f->s);
    f->s = NULL;
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ack_acks"), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ack_channels"), 0);
}

static void test_ack_batch_10000(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    enum { N = 10000 };
    vg_store_ack_msg_t *m = vg_malloc(N * sizeof(*m));
    char(*ids)[16] = vg_malloc(N * sizeof(*ids));
    static const char data[] = "{\"severity\":\"high\",\"camera\":\"cam-1\"}";
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "id-%05d", i);
        m[i] = (vg_store_ack_msg_t){.channel = i % 2 ? "alerts.odd" : "alerts.even",
                                    .id = ids[i],
                                    .type = "alert",
                                    .data = data,
                                    .data_len = sizeof(data) - 1,
                                    .published_ms = NOW + i,
                                    .expires_ms = NEVER};
    }
    uint64_t t0 = vg_mono_ns();
    assert_int_equal(vg_store_ack_append(f->s, m, N, 10000), N);
    uint64_t t1 = vg_mono_ns();
    print_message("10000 appends in one transaction: %.1f ms\n", (double)(t1 - t0) / 1e6);
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 0, NULL, NULL), N);
    /* Oldest first across both channels. */
    rows_t r = {0};
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 3, on_ack_row, &r), 3);
    assert_string_equal(r.id[0], "id-00000");
    assert_string_equal(r.id[1], "id-00001");
    assert_string_equal(r.id[2], "id-00002");
    /* All of it survives a reopen; the cap holds per channel. */
    reopen(f);
    const char *const odd[] = {"alerts.odd"};
    assert_int_equal(vg_store_ack_pending(f->s, "u", odd, 1, NOW, 0, 0, NULL, NULL), N / 2);
    assert_int_equal(vg_store_ack_prune(f->s, NOW, 1000), N - 2000);
    assert_int_equal(vg_store_ack_pending(f->s, "u", odd, 1, NOW, 0, 0, NULL, NULL), 1000);
    vg_free(m);
    vg_free(ids);
}

/* ---- history -------------------------------------------------------------------------------- */

typedef struct hrows_s {
    size_t n;
    uint64_t off[64];
    char epoch[64][VG_STORE_EPOCH_SIZE];
    char text[64][32];
} hrows_t;

static int on_hist_row(const vg_store_hist_msg_t *m, void *arg)
{
    hrows_t *h = arg;
    if (h->n < 64) {
        h->off[h->n] = m->offset;
        snprintf(h->epoch[h->n], VG_STORE_EPOCH_SIZE, "%s", m->epoch);
        snprintf(h->text[h->n], sizeof(h->text[0]), "%.*s", (int)m->len, m->text);
    }
    h->n++;
    return 0;
}

static hrows_t hist(vg_store_t *s, const char *channel, uint64_t after, size_t limit)
{
    hrows_t h = {0};
    int rc = vg_store_hist_read(s, channel, after, limit, on_hist_row, &h);
    assert_int_equal(rc, (int)h.n);
    return h;
}

static void hist_append_range(vg_store_t *s, const char *channel, const char *epoch, uint64_t from,
                              uint64_t to, int64_t t0)
{
    vg_store_hist_msg_t m[64];
    static char text[64][32];
    size_t n = 0;
    for (uint64_t o = from; o <= to; o++, n++) {
        snprintf(text[n], sizeof(text[n]), "{\"o\":%llu}", (unsigned long long)o);
        m[n] = (vg_store_hist_msg_t){.channel = channel,
                                     .offset = o,
                                     .epoch = epoch,
                                     .time_ms = t0 + (int64_t)o,
                                     .text = text[n],
                                     .len = strlen(text[n])};
    }
    assert_int_equal(vg_store_hist_append(s, m, n), (int)n);
}

typedef struct chans_s {
    size_t n;
    char line[8][96];
} chans_t;

static int on_hist_channel(const char *channel, uint64_t last, const char *epoch, void *arg)
{
    chans_t *c = arg;
    if (c->n < 8)
        snprintf(c->line[c->n], sizeof(c->line[0]), "%s:%llu:%s", channel, (unsigned long long)last,
                 epoch);
    c->n++;
    return 0;
}

static void test_history(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    uint64_t last;
    char epoch[VG_STORE_EPOCH_SIZE];
    assert_int_equal(vg_store_hist_last(f->s, "cams.1", &last, epoch), 0);
    assert_int_equal(last, 0);

    hist_append_range(f->s, "cams.1", "00000000000000e1", 1, 10, NOW);
    hist_append_range(f->s, "cams.2", "00000000000000e2", 1, 3, NOW);
    hrows_t h = hist(f->s, "cams.1", 0, 0);
    assert_int_equal(h.n, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(h.off[i], i + 1);
    assert_string_equal(h.text[4], "{\"o\":5}");
    assert_string_equal(h.epoch[4], "00000000000000e1");
    h = hist(f->s, "cams.1", 6, 0);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.off[0], 7);
    h = hist(f->s, "cams.1", 2, 3);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.off[2], 5);
    assert_int_equal(hist(f->s, "cams.1", 10, 0).n, 0);
    assert_int_equal(hist(f->s, "nope", 0, 0).n, 0);

    assert_int_equal(vg_store_hist_last(f->s, "cams.1", &last, epoch), 1);
    assert_int_equal(last, 10);
    assert_string_equal(epoch, "00000000000000e1");

    /* Persistence. */
    reopen(f);
    chans_t c = {0};
    assert_int_equal(vg_store_hist_channels(f->s, on_hist_channel, &c), 2);
    assert_string_equal(c.line[0], "cams.1:10:00000000000000e1");
    assert_string_equal(c.line[1], "cams.2:3:00000000000000e2");

    /* Trim to the last 4: 7..10 remain. */
    assert_int_equal(vg_store_hist_trim(f->s, "cams.1", 4, 0), 6);
    h = hist(f->s, "cams.1", 0, 0);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.off[0], 7);
    assert_int_equal(hist(f->s, "cams.2", 0, 0).n, 3);
    /* Trim by age, every channel: time_ms = NOW + offset, so "older than NOW+9" drops 7, 8 and
     * cams.2 entirely; the channels' last offsets stay. */
    assert_int_equal(vg_store_hist_trim(f->s, NULL, 0, NOW + 9), 2 + 3);
    h = hist(f->s, "cams.1", 0, 0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.off[0], 9);
    assert_int_equal(vg_store_hist_last(f->s, "cams.2", &last, epoch), 1);
    assert_int_equal(last, 3);
    /* Trim by count across every channel. */
    hist_append_range(f->s, "cams.2", "00000000000000e2", 4, 8, NOW);
    assert_int_equal(vg_store_hist_trim(f->s, NULL, 1, 0), 1 + 4);
    assert_int_equal(hist(f->s, "cams.1", 0, 0).off[0], 10);
    assert_int_equal(hist(f->s, "cams.2", 0, 0).off[0], 8);

    /* Continuing after a restart keeps the epoch; rewriting an offset replaces it. */
    hist_append_range(f->s, "cams.1", "00000000000000e1", 10, 12, NOW);
    h = hist(f->s, "cams.1", 0, 0);
    assert_int_equal(h.n, 3);
    assert_int_equal(vg_store_hist_last(f->s, "cams.1", &last, epoch), 1);
    assert_int_equal(last, 12);

    /* A new epoch restarts offsets and drops the old epoch's messages. */
    hist_append_range(f->s, "cams.1", "00000000000000f0", 1, 2, NOW);
    h = hist(f->s, "cams.1", 0, 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.epoch[0], "00000000000000f0");
    assert_string_equal(h.epoch[1], "00000000000000f0");
    assert_int_equal(vg_store_hist_last(f->s, "cams.1", &last, epoch), 1);
    assert_int_equal(last, 2);
    assert_string_equal(epoch, "00000000000000f0");

    /* Drop forgets everything. */
    assert_int_equal(vg_store_hist_drop(f->s, "cams.1"), 1);
    assert_int_equal(vg_store_hist_drop(f->s, "cams.1"), 0);
    assert_int_equal(vg_store_hist_last(f->s, "cams.1", &last, epoch), 0);
    assert_int_equal(hist(f->s, "cams.1", 0, 0).n, 0);
    assert_int_equal(vg_store_hist_channels(f->s, NULL, NULL), 1);

    /* Invalid messages are refused, nothing of the batch stored. */
    char long_epoch[VG_STORE_EPOCH_SIZE + 1];
    memset(long_epoch, 'e', VG_STORE_EPOCH_SIZE);
    long_epoch[VG_STORE_EPOCH_SIZE] = '\0';
    vg_store_hist_msg_t bad[2] = {
        {.channel = "x", .offset = 1, .epoch = "e", .time_ms = NOW, .text = "{}", .len = 2},
        {.channel = "x", .offset = 2, .epoch = long_epoch, .time_ms = NOW, .text = "{}", .len = 2},
    };
    assert_int_equal(vg_store_hist_append(f->s, bad, 2), VG_EINVAL);
    bad[1].epoch = "e";
    bad[1].offset = 0;
    assert_int_equal(vg_store_hist_append(f->s, bad, 2), VG_EINVAL);
    assert_int_equal(hist(f->s, "x", 0, 0).n, 0);
    /* Binary-safe text. */
    vg_store_hist_msg_t bin = {
        .channel = "x", .offset = 1, .epoch = "e", .time_ms = NOW, .text = "a\0b", .len = 3};
    assert_int_equal(vg_store_hist_append(f->s, &bin, 1), 1);
    h = hist(f->s, "x", 0, 0);
    assert_int_equal(h.n, 1);
}

/* ---- state documents ------------------------------------------------------------------------ */

typedef struct names_s {
    char all[256];
} names_t;

static int on_name(const char *name, uint64_t version, void *arg)
{
    names_t *n = arg;
    char one[64];
    snprintf(one, sizeof(one), "%s%s@%llu", n->all[0] ? "," : "", name,
             (unsigned long long)version);
    strcat(n->all, one);
    return 0;
}

static void test_state(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    char *json = (char *)1;
    size_t len = 99;
    uint64_t version = 99;
    assert_int_equal(vg_store_state_get(f->s, "stats", &json, &len, &version), 0);
    assert_null(json);
    assert_int_equal(len, 0);

    const char *doc = "{\"users\":12,\"name\":\"caf\xc3\xa9\"}";
    assert_int_equal(vg_store_state_put(f->s, "stats", doc, strlen(doc), 1), 0);
    assert_int_equal(vg_store_state_put(f->s, "cams", "[]", 2, 7), 0);
    assert_int_equal(vg_store_state_get(f->s, "stats", &json, &len, &version), 1);
    assert_string_equal(json, doc);
    assert_int_equal(len, strlen(doc));
    assert_int_equal(version, 1);
    vg_free(json);

    /* Replace. */
    assert_int_equal(vg_store_state_put(f->s, "stats", "{\"users\":13}", 12, 2), 0);
    reopen(f);
    assert_int_equal(vg_store_state_get(f->s, "stats", &json, &len, &version), 1);
    assert_string_equal(json, "{\"users\":13}");
    assert_int_equal(version, 2);
    vg_free(json);

    names_t n = {{0}};
    assert_int_equal(vg_store_state_list(f->s, on_name, &n), 2);
    assert_string_equal(n.all, "cams@7,stats@2");

    assert_int_equal(vg_store_state_delete(f->s, "stats"), 1);
    assert_int_equal(vg_store_state_delete(f->s, "stats"), 0);
    assert_int_equal(vg_store_state_get(f->s, "stats", &json, &len, &version), 0);
    reopen(f);
    memset(&n, 0, sizeof(n));
    assert_int_equal(vg_store_state_list(f->s, on_name, &n), 1);
    assert_string_equal(n.all, "cams@7");
    assert_int_equal(vg_store_state_put(f->s, NULL, "{}", 2, 1), VG_EINVAL);
}

/* ---- threads -------------------------------------------------------------------------------- */

typedef struct worker_s {
    vg_store_t *s;
    int k;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 50; i++) {
        char id[32], name[32];
        snprintf(id, sizeof(id), "w%d-%d", w->k, i);
        /* (not msg(): its buffers are shared) */
        vg_store_ack_msg_t m = {.channel = "alerts.t",
                                .id = id,
                                .data = "{}",
                                .data_len = 2,
                                .published_ms = NOW,
                                .expires_ms = NEVER};
        if (vg_store_ack_append(w->s, &m, 1, 0) != 1)
            return (void *)1;
        if (vg_store_ack(w->s, "u", id) != 1)
            return (void *)2;
        snprintf(name, sizeof(name), "doc%d", w->k);
        if (vg_store_state_put(w->s, name, "{}", 2, (uint64_t)i) != 0)
            return (void *)3;
        if (vg_store_ack_pending(w->s, "v", ALERTS, 1, NOW, 0, 0, NULL, NULL) < i + 1)
            return (void *)4;
    }
    return NULL;
}

static void test_threads(void **state)
{
    fx_t *f = *state;
    f->s = open_ok(f->data);
    pthread_t t[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){f->s, i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    assert_int_equal(vg_store_ack_pending(f->s, "v", ALERTS, 1, NOW, 0, 0, NULL, NULL), 200);
    assert_int_equal(vg_store_ack_pending(f->s, "u", ALERTS, 1, NOW, 0, 0, NULL, NULL), 0);
    assert_int_equal(vg_store_state_list(f->s, NULL, NULL), 4);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_and_reopen),
        T(test_wal_and_sync),
        T(test_migrate_empty_file),
        T(test_migrate_preexisting_db),
        T(test_future_schema_refused),
        T(test_corrupt_file),
        T(test_unusable_data_dir),
        T(test_second_open_refused),
        T(test_ack_semantics),
        T(test_ack_fields_and_null_type),
        T(test_ack_patterns),
        T(test_ack_order_and_paging),
        T(test_ack_expiry_and_cap),
        T(test_ack_batch_10000),
        T(test_history),
        T(test_state),
        T(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
