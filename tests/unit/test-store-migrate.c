/*
 * The SQLite store's upgrade from schema version 1 (ack messages without envelope fields) to
 * version 2 (their envelope fields kept, so a replayed VisionGuard alert has the live one's
 * stream_id and frame): an old database is migrated in place on open, keeps its rows, and from
 * then on stores and returns the envelope fields.
 *
 * The version 1 database is built here with the schema that vigil wrote then, as an operator's
 * data dir would hold it.
 */
#include <ftw.h>
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
#include "util/error.h"

#define NOW   1700000000000LL
#define NEVER INT64_MAX

/* Schema version 1, as vigil created it (the ack tables; the others do not matter here). */
static const char V1_SCHEMA[] =
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "INSERT INTO schema_version(version) VALUES(1);"
    "CREATE TABLE ack_msgs(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
    "  channel TEXT NOT NULL, type TEXT, data TEXT NOT NULL, published_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL);"
    "CREATE INDEX ack_msgs_channel ON ack_msgs(channel, seq);"
    "CREATE INDEX ack_msgs_expires ON ack_msgs(expires_ms);"
    "CREATE TABLE ack_channels(channel TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TRIGGER ack_msgs_count_ins AFTER INSERT ON ack_msgs BEGIN"
    "  INSERT INTO ack_channels(channel, n) VALUES(new.channel, 1)"
    "  ON CONFLICT(channel) DO UPDATE SET n = n + 1;"
    "END;"
    "CREATE TRIGGER ack_msgs_count_del AFTER DELETE ON ack_msgs BEGIN"
    "  UPDATE ack_channels SET n = n - 1 WHERE channel = old.channel;"
    "END;"
    "CREATE TABLE ack_acks(user TEXT NOT NULL,"
    "  msg_seq INTEGER NOT NULL REFERENCES ack_msgs(seq) ON DELETE CASCADE,"
    "  PRIMARY KEY(user, msg_seq)) WITHOUT ROWID;"
    "CREATE INDEX ack_acks_msg ON ack_acks(msg_seq);"
    "CREATE TABLE hist_channels(channel TEXT PRIMARY KEY, epoch TEXT NOT NULL,"
    "  last_offset INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE hist_msgs(channel TEXT NOT NULL, off INTEGER NOT NULL, epoch TEXT NOT NULL,"
    "  time_ms INTEGER NOT NULL, body BLOB NOT NULL, UNIQUE(channel, off));"
    "CREATE INDEX hist_msgs_time ON hist_msgs(time_ms);"
    "CREATE TABLE state_docs(name TEXT PRIMARY KEY, body TEXT NOT NULL,"
    "  version INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    /* One alert stored by that vigil and acked by bob. */
    "INSERT INTO ack_msgs(id, channel, type, data, published_ms, expires_ms)"
    "  VALUES('old-1', 'anomalies.alice', 'anomaly_detected', '{\"person_id\":1}',"
    "  1700000000000, 9000000000000);"
    "INSERT INTO ack_acks(user, msg_seq) VALUES('bob', 1);";

typedef struct fx_s {
    char dir[64];
    char db[128];
    vg_store_t *s;
} fx_t;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vigil-test-migrate-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/vigil.db", f->dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->db, &h), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(h, V1_SCHEMA, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("v1 schema: %s", err);
    sqlite3_close(h);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    vg_store_free(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void open_store(fx_t *f)
{
    char err[256] = "";
    vg_store_free(f->s);
    f->s = NULL;
    if (vg_store_sqlite_open(f->dir, &f->s, err, sizeof(err)) != 0)
        fail_msg("open %s: %s", f->dir, err);
}

static void close_store(fx_t *f)
{
    vg_store_free(f->s);
    f->s = NULL;
}

static int64_t raw_int(const char *db, const char *query)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, query, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", query, sqlite3_errmsg(h));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* What a listing returned: "id:data:extra|..." (extra "-" for none). */
typedef struct seen_s {
    char text[1024];
} seen_t;

static int on_msg(const vg_store_ack_msg_t *m, void *arg)
{
    seen_t *seen = arg;
    size_t used = strlen(seen->text);
    snprintf(seen->text + used, sizeof(seen->text) - used, "%s%s:%.*s:%.*s", used ? "|" : "", m->id,
             (int)m->data_len, m->data, m->extra ? (int)m->extra_len : 1,
             m->extra ? m->extra : "-");
    return 0;
}

static const char *listing(vg_store_t *s, const char *user)
{
    static seen_t seen;
    const char *const patterns[] = {"anomalies.>"};
    seen.text[0] = '\0';
    assert_true(vg_store_ack_pending(s, user, patterns, 1, NOW, 0, 0, on_msg, &seen) >= 0);
    return seen.text;
}

static void test_version_1_is_upgraded_in_place(void **state)
{
    fx_t *f = *state;
    open_store(f);
    /* The old alert is still pending for alice, without envelope fields; bob's ack holds. */
    assert_string_equal(listing(f->s, "alice"), "old-1:{\"person_id\":1}:-");
    assert_string_equal(listing(f->s, "bob"), "");
    close_store(f);
    assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM ack_msgs WHERE extra IS NULL"), 1);
}

static void test_envelope_fields_round_trip(void **state)
{
    fx_t *f = *state;
    open_store(f);
    const char *extra = "{\"stream_id\":\"stream_456\",\"annotated_frame\":\"/9j/4AAQ\"}";
    vg_store_ack_msg_t m = {.channel = "anomalies.alice",
                            .id = "new-1",
                            .type = "anomaly_detected",
                            .data = "null",
                            .data_len = 4,
                            .extra = extra,
                            .extra_len = strlen(extra),
                            .published_ms = NOW,
                            .expires_ms = NEVER};
    assert_int_equal(vg_store_ack_append(f->s, &m, 1, 0), 1);
    /* A message without envelope fields stays without. */
    vg_store_ack_msg_t plain = {.channel = "anomalies.alice",
                                .id = "new-2",
                                .type = "anomaly_detected",
                                .data = "{}",
                                .data_len = 2,
                                .published_ms = NOW,
                                .expires_ms = NEVER};
    assert_int_equal(vg_store_ack_append(f->s, &plain, 1, 0), 1);
    /* They survive a close and reopen (no second migration). */
    open_store(f);
    char want[512];
    snprintf(want, sizeof(want), "old-1:{\"person_id\":1}:-|new-1:null:%s|new-2:{}:-", extra);
    assert_string_equal(listing(f->s, "alice"), want);
    close_store(f);
    assert_int_equal(raw_int(f->db, "SELECT version FROM schema_version"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_version_1_is_upgraded_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_fields_round_trip, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
