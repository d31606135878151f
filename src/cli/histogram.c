/*
 * The log-linear histogram (histogram.h): bucket layout, recording, merging and quantiles.
 *
 * It lives in its own module because it is the one part of the benchmark whose arithmetic can be
 * checked without a server (tests/unit/test-histogram.c), and because nothing in it is about
 * WebSockets.
 */
#include <math.h>

#include "cli/histogram.h"

/* Index = shift * 32 + (v >> shift) with shift = max(0, msb(v) - 5): the top six bits of v pick
 * the bucket within its power of two.  Values below 64 are their own index. */
static unsigned bucket_index(uint64_t v)
{
    if (v < (1u << (VG_HIST_SUB_BITS + 1)))
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - VG_HIST_SUB_BITS;
    unsigned idx = (shift << VG_HIST_SUB_BITS) + (unsigned)(v >> shift);
    return idx < VG_HIST_BUCKETS ? idx : VG_HIST_BUCKETS - 1;
}

/* The middle of bucket idx (its lowest value for the exact buckets): the bucket starts at
 * m << shift and is 1 << shift wide.  Its end, (m + 1) << shift, is not computed because it is
 * 2^64 for the last bucket.  Every term is exact in a double (a few significant bits each). */
static double bucket_value(unsigned idx)
{
    if (idx < (1u << (VG_HIST_SUB_BITS + 1)))
        return idx;
    unsigned shift = (idx >> VG_HIST_SUB_BITS) - 1;
    uint64_t m = idx - (shift << VG_HIST_SUB_BITS);
    return (double)(m << shift) + (double)(1ull << shift) / 2.0;
}

void vg_hist_add(vg_hist_t *h, uint64_t v)
{
    h->count[bucket_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

void vg_hist_merge(vg_hist_t *into, const vg_hist_t *h)
{
    for (unsigned i = 0; i < VG_HIST_BUCKETS; i++)
        into->count[i] += h->count[i];
    into->total += h->total;
    if (h->max > into->max)
        into->max = h->max;
}

double vg_hist_quantile(const vg_hist_t *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total), seen = 0;
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < VG_HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double v = bucket_value(i);
            return v < (double)h->max ? v : (double)h->max;
        }
    }
    return (double)h->max;
}
