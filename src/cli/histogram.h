/*
 * A log-linear histogram: quantiles of any number of samples in fixed memory (16 KiB), for the
 * latencies `vigil bench fanout` measures (in nanoseconds, but any unsigned 64-bit value works).
 *
 * Values below 64 have one bucket each; above, each power of two is split into 32 equal buckets,
 * so a bucket is never wider than 1/32 of the values in it (under 3.2%).  A quantile is reported
 * as the middle of its bucket, which is within 1/64 (1.6%) of the sample it stands for.
 * Histograms merge by adding their buckets, so each thread keeps its own and they are merged
 * once at the end.
 *
 * Not thread-safe: one writer at a time, and read it only once the writer is done.
 */
#ifndef VG_CLI_HISTOGRAM_H
#define VG_CLI_HISTOGRAM_H

#include <stdint.h>

#define VG_HIST_SUB_BITS 5 /* 2^5 = 32 buckets per power of two */
#define VG_HIST_BUCKETS  (64 * 32)

/* All zero (calloc, memset, `= {0}`) is an empty histogram; there is nothing to dispose. */
typedef struct vg_hist_s {
    uint64_t count[VG_HIST_BUCKETS]; /* samples per bucket */
    uint64_t total;                  /* samples added */
    uint64_t max;                    /* the largest sample, exactly; 0 when empty */
} vg_hist_t;

/* Records one sample. */
void vg_hist_add(vg_hist_t *h, uint64_t v);
/* Adds every sample of h to into (h is unchanged). */
void vg_hist_merge(vg_hist_t *into, const vg_hist_t *h);
/* The value below which a fraction q (0..1) of the samples fall: the middle of the bucket that
 * holds the sample of rank ceil(q * total) (at least 1), but never above the maximum.  0 when the
 * histogram is empty. */
double vg_hist_quantile(const vg_hist_t *h, double q);

#endif
