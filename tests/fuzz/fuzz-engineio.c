/*
 * libFuzzer driver for the Engine.IO / Socket.IO codec (src/proto/engineio.c).
 *
 * The input is read the three ways the server reads client bytes: as a long-polling payload
 * (packets split on 0x1e, binary ones in base64), as one WebSocket text frame, and, for every
 * Engine.IO message found, as a Socket.IO packet.  Invariants checked on the way:
 *   - a text packet re-encodes to exactly the bytes it came from;
 *   - the packets of a payload, written back with vg_eio_payload_append(_binary), read back the
 *     same (type, binary flag, bytes);
 *   - base64 of any bytes decodes back to them; a decoded binary packet is never longer than
 *     3/4 of its text;
 *   - a Socket.IO packet that decodes has a type 0-6, an id in [-1, 2^53), a namespace that is
 *     "/" or starts with '/' and holds no ',', and data valid for its type; encoded again
 *     (non-binary types) it decodes to the same type, namespace, id and JSON;
 *   - filling placeholders never crashes, whatever attachments are missing.
 *
 * CHECK aborts even in builds with NDEBUG, so libFuzzer sees every broken invariant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/engineio.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_PACKETS 256

typedef struct rec_s {
    int type, binary;
    vg_buf_t data;
} rec_t;

static void check_base64(const char *data, size_t len)
{
    vg_buf_t b = VG_BUF_INIT;
    vg_base64_append(&b, data, len, VG_BASE64_STD);
    CHECK(b.len == (len + 2) / 3 * 4);
    uint8_t *back = malloc(len + 4);
    CHECK(vg_base64_decode(b.base ? b.base : "", b.len, back, VG_BASE64_STD) == (long)len);
    CHECK(len == 0 || memcmp(back, data, len) == 0);
    free(back);
    vg_buf_dispose(&b);
}

static void check_sio_round_trip(const vg_sio_packet_t *p)
{
    if (p->type == VG_SIO_BINARY_EVENT || p->type == VG_SIO_BINARY_ACK)
        return; /* the server never encodes these */
    char nsp[300];
    snprintf(nsp, sizeof(nsp), "%.*s", (int)p->nsp.len, p->nsp.base);
    vg_buf_t b = VG_BUF_INIT;
    vg_sio_encode(&b, p->type, nsp, p->id, p->data);
    CHECK(b.len >= 2 && b.base[0] == '4');
    vg_sio_packet_t q;
    const char *err = NULL;
    /* a namespace made of digits would swallow the id when written back; skip those */
    int rc = vg_sio_decode(b.base + 1, b.len - 1, &q, &err);
    CHECK(rc == 0);
    CHECK(q.type == p->type);
    CHECK(q.id == p->id);
    CHECK(q.nsp.len == p->nsp.len && memcmp(q.nsp.base, p->nsp.base, p->nsp.len) == 0);
    CHECK((q.data == NULL) == (p->data == NULL));
    CHECK(q.data == NULL || json_equal(q.data, p->data));
    vg_sio_packet_dispose(&q);
    vg_buf_dispose(&b);
}

static void exercise_sio(const char *data, size_t len)
{
    vg_sio_packet_t p;
    const char *err = NULL;
    if (vg_sio_decode(data, len, &p, &err) != 0) {
        CHECK(err != NULL && p.data == NULL);
        return;
    }
    CHECK(p.type >= 0 && p.type <= 6);
    CHECK(p.id >= -1 && p.id <= VG_SIO_MAX_ID);
    CHECK(p.nsp.len >= 1 && p.nsp.base[0] == '/');
    CHECK(memchr(p.nsp.base, ',', p.nsp.len) == NULL);
    CHECK(p.attachments <= VG_SIO_MAX_ATTACHMENTS);
    if (p.type == VG_SIO_EVENT || p.type == VG_SIO_BINARY_EVENT)
        CHECK(json_is_array(p.data) && json_array_size(p.data) >= 1);
    check_sio_round_trip(&p);
    if (p.data != NULL) {
        vg_iov_t att[2] = {{data, len / 2}, {data + len / 2, len - len / 2}};
        int rc = vg_sio_fill_placeholders(p.data, att, (size_t)(len % 3));
        CHECK(rc == 0 || rc == VG_EINVAL);
    }
    vg_sio_packet_dispose(&p);
}

static size_t read_payload(const char *data, size_t len, rec_t *recs, int *error)
{
    vg_eio_reader_t r;
    vg_eio_packet_t p;
    const char *err = NULL;
    size_t n = 0;
    int rc;
    vg_eio_reader_init(&r, data, len);
    while ((rc = vg_eio_reader_next(&r, &p, &err)) == 1) {
        CHECK(p.type >= 0 && p.type <= 6);
        CHECK(!p.binary || p.type == VG_EIO_MESSAGE);
        CHECK(p.len <= len);
        if (n < MAX_PACKETS) {
            recs[n].type = p.type;
            recs[n].binary = p.binary;
            recs[n].data = VG_BUF_INIT;
            vg_buf_append(&recs[n].data, p.data, p.len);
            n++;
        }
        if (!p.binary) {
            /* a text packet is its type digit and its data, nothing changed */
            vg_buf_t again = VG_BUF_INIT;
            vg_eio_encode(&again, p.type, p.data, p.len);
            CHECK(again.len == p.len + 1 && memcmp(again.base + 1, p.data, p.len) == 0);
            vg_buf_dispose(&again);
        }
        if (p.type == VG_EIO_MESSAGE && !p.binary)
            exercise_sio(p.data, p.len);
    }
    CHECK(rc == 0 || (rc == VG_EINVAL && err != NULL));
    CHECK(vg_eio_reader_next(&r, &p, &err) == rc); /* sticky end or error */
    vg_eio_reader_dispose(&r);
    *error = rc != 0;
    return n;
}

/* Writes the packets back as a payload and reads them again. */
static void check_payload_round_trip(rec_t *recs, size_t n)
{
    vg_buf_t payload = VG_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].binary) {
            vg_eio_payload_append_binary(&payload, recs[i].data.base, recs[i].data.len);
        } else {
            vg_buf_t pkt = VG_BUF_INIT;
            vg_eio_encode(&pkt, recs[i].type, recs[i].data.base, recs[i].data.len);
            vg_eio_payload_append(&payload, pkt.base, pkt.len);
            vg_buf_dispose(&pkt);
        }
    }
    rec_t *again = calloc(MAX_PACKETS, sizeof(*again));
    int error = 0;
    size_t m = read_payload(payload.base ? payload.base : "", payload.len, again, &error);
    CHECK(!error && m == n);
    for (size_t i = 0; i < m; i++) {
        CHECK(again[i].type == recs[i].type && again[i].binary == recs[i].binary);
        CHECK(again[i].data.len == recs[i].data.len);
        CHECK(again[i].data.len == 0 ||
              memcmp(again[i].data.base, recs[i].data.base, again[i].data.len) == 0);
        vg_buf_dispose(&again[i].data);
    }
    free(again);
    vg_buf_dispose(&payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    static rec_t recs[MAX_PACKETS];
    int error = 0;
    size_t n = read_payload(text, size, recs, &error);
    /* Packets containing the separator cannot be written back into a payload unchanged: text
     * packets never contain it (they were split on it), binary ones are base64. */
    if (!error && n < MAX_PACKETS)
        check_payload_round_trip(recs, n);
    for (size_t i = 0; i < n; i++)
        vg_buf_dispose(&recs[i].data);

    /* The same bytes as one WebSocket text frame. */
    vg_eio_packet_t p;
    const char *err = NULL;
    if (vg_eio_decode(text, size, &p, &err) == 0 && p.type == VG_EIO_MESSAGE)
        exercise_sio(p.data, p.len);
    check_base64(text, size);
    return 0;
}
