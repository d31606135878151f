/*
 * Tests of the log-linear histogram (src/cli/histogram.c) through its interface: values below 64
 * are exact; any other value's bucket middle is within 1/64 of it, at every magnitude up to
 * UINT64_MAX; a quantile never exceeds the maximum; quantiles of random samples match the sorted
 * samples' within that bound; merging equals adding every sample to one histogram.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/histogram.h"
#include "util/alloc.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Spread over every magnitude: a random value of a random bit length (1..64). */
static uint64_t rnd_magnitude(void)
{
    unsigned bits = 1 + (unsigned)(rnd() % 64);
    return bits == 64 ? rnd() : rnd() & ((1ull << bits) - 1);
}

static vg_hist_t *hist_new(void)
{
    return vg_calloc(1, sizeof(vg_hist_t));
}

/* What the histogram may answer for a sample v: v itself below 64, else within v/64. */
static void assert_close(double got, uint64_t v)
{
    if (v < 64) {
        assert_true(got == (double)v);
        return;
    }
    double err = fabs(got - (double)v), bound = (double)v / 64 * (1 + 1e-12);
    if (err > bound)
        fail_msg("value %llu reported as %.17g (error %.6g, bound %.6g)", (unsigned long long)v,
                 got, err, bound);
}

/* The middle of v's bucket: v as the smallest of two samples, the other far above it so the
 * maximum does not clip the answer. */
static double bucket_middle(uint64_t v)
{
    vg_hist_t *h = hist_new();
    vg_hist_add(h, v);
    vg_hist_add(h, UINT64_MAX);
    double mid = vg_hist_quantile(h, 0.5);
    vg_free(h);
    return mid;
}

static void test_empty(void **state)
{
    (void)state;
    vg_hist_t *h = hist_new(), *other = hist_new();
    assert_true(vg_hist_quantile(h, 0) == 0);
    assert_true(vg_hist_quantile(h, 0.5) == 0);
    assert_true(vg_hist_quantile(h, 1) == 0);
    vg_hist_merge(h, other);
    assert_int_equal(h->total, 0);
    assert_int_equal(h->max, 0);
    assert_true(vg_hist_quantile(h, 0.99) == 0);
    vg_free(h);
    vg_free(other);
}

static void test_small_values_are_exact(void **state)
{
    (void)state;
    vg_hist_t *h = hist_new();
    for (uint64_t v = 0; v < 64; v++)
        vg_hist_add(h, v);
    assert_int_equal(h->total, 64);
    assert_int_equal(h->max, 63);
    /* rank ceil(q * 64), at least 1: the sample of rank k is k - 1 */
    assert_true(vg_hist_quantile(h, 0) == 0);
    assert_true(vg_hist_quantile(h, 1.0 / 64) == 0);
    assert_true(vg_hist_quantile(h, 0.5) == 31);
    assert_true(vg_hist_quantile(h, 0.51) == 32);
    assert_true(vg_hist_quantile(h, 0.9) == 57);
    assert_true(vg_hist_quantile(h, 1) == 63);
    vg_free(h);
}

static void test_bucket_error_at_every_magnitude(void **state)
{
    (void)state;
    /* Both sides of every power of two, where the bucket width changes. */
    for (unsigned bit = 0; bit < 64; bit++) {
        uint64_t p = 1ull << bit;
        assert_close(bucket_middle(p), p);
        assert_close(bucket_middle(p - 1), p - 1);
        assert_close(bucket_middle(p + 1), p + 1);
    }
    /* The last bucket, whose end is 2^64 (its middle was once computed through that end). */
    assert_close(bucket_middle(UINT64_MAX - 1), UINT64_MAX - 1);
    assert_close(bucket_middle(63ull << 58), 63ull << 58);
    for (int i = 0; i < 20000; i++) {
        uint64_t v = rnd_magnitude();
        assert_close(bucket_middle(v), v);
    }
    /* Larger values never land in a lower bucket. */
    double prev = -1;
    for (uint64_t v = 0; v < 5000000; v += 1 + v / 50) {
        double mid = bucket_middle(v);
        assert_true(mid >= prev);
        prev = mid;
    }
}

static void test_never_above_max(void **state)
{
    (void)state;
    vg_hist_t *h = hist_new();
    vg_hist_add(h, 100); /* bucket [100, 102): its middle, 101, is above every sample */
    assert_int_equal(h->max, 100);
    assert_true(vg_hist_quantile(h, 0.5) == 100);
    assert_true(vg_hist_quantile(h, 1) == 100);
    vg_hist_add(h, 64); /* bucket [64, 66) */
    assert_true(vg_hist_quantile(h, 0.5) == 65);
    assert_true(vg_hist_quantile(h, 1) == 100);
    vg_hist_add(h, UINT64_MAX);
    assert_int_equal(h->max, UINT64_MAX);
    assert_true(vg_hist_quantile(h, 1) <= (double)UINT64_MAX);
    assert_close(vg_hist_quantile(h, 1), UINT64_MAX);
    vg_free(h);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_quantiles_match_sorted_samples(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *v = vg_malloc(N * sizeof(*v));
    vg_hist_t *h = hist_new();
    for (size_t i = 0; i < N; i++) {
        /* latencies from 1 us to about 1 s, plus a few outliers of any size */
        v[i] = i % 1000 == 0 ? rnd_magnitude() : 1000 + rnd() % (1ull << (10 + i % 20));
        vg_hist_add(h, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    assert_int_equal(h->total, N);
    assert_int_equal(h->max, v[N - 1]);
    static const double qs[] = {0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1};
    double prev = 0;
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        uint64_t rank = (uint64_t)ceil(qs[i] * N);
        if (rank < 1)
            rank = 1;
        double got = vg_hist_quantile(h, qs[i]);
        assert_close(got, v[rank - 1]);
        assert_true(got >= prev);
        assert_true(got <= (double)h->max);
        prev = got;
    }
    vg_free(h);
    vg_free(v);
}

static void test_merge_equals_adding_everything(void **state)
{
    (void)state;
    vg_hist_t *all = hist_new(), *merged = hist_new(), *part[4];
    for (int i = 0; i < 4; i++)
        part[i] = hist_new();
    for (int i = 0; i < 50000; i++) {
        uint64_t x = rnd_magnitude();
        vg_hist_add(all, x);
        vg_hist_add(part[rnd() % 4], x);
    }
    vg_hist_t *copy = hist_new();
    memcpy(copy, part[0], sizeof(*copy));
    for (int i = 0; i < 4; i++)
        vg_hist_merge(merged, part[i]);
    assert_memory_equal(copy, part[0], sizeof(*copy)); /* the source is unchanged */
    assert_memory_equal(merged, all, sizeof(*all));
    assert_int_equal(merged->total, 50000);
    for (int i = 0; i < 4; i++)
        vg_free(part[i]);
    vg_free(copy);
    vg_free(merged);
    vg_free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_bucket_error_at_every_magnitude),
        cmocka_unit_test(test_never_above_max),
        cmocka_unit_test(test_quantiles_match_sorted_samples),
        cmocka_unit_test(test_merge_equals_adding_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
