/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Sequential read-ahead for the device file. A reader that asks for the
 * bytes right after its previous request gets the next read_ahead_kb read
 * into the cache in the background, so the backing's latency overlaps with
 * the FUSE transfer of what it already has, as the kernel's read-ahead does
 * for buffered files (O_DIRECT readers and loop devices get none from the
 * kernel, and FUSE direct_io sends every request to us).
 *
 * The window starts at four times the request and doubles while the reader
 * stays sequential, up to read_ahead_kb, so two adjacent small reads (file
 * system metadata) cost a few blocks, not megabytes. One stream per device:
 * interleaved sequential streams look random and get no read-ahead, which
 * costs nothing but the missed overlap.
 */
#include <stdatomic.h>

#include "fuse/fs.h"

void fs_read_ahead(struct fs_device *dev, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	uint64_t max = (uint64_t)atomic_load(&dev->read_ahead_kb) * 1024;
	uint64_t prev = atomic_exchange(&dev->ra_next, end);
	uint64_t win, cur, base, want, cap;
	unsigned bs = dev->spec.block_size;

	if (!max || off != prev) {
		/* off, or not sequential; random reads leave the line unwritten */
		if (atomic_load(&dev->ra_win))
			atomic_store(&dev->ra_win, 0);
		return;
	}
	win = atomic_load(&dev->ra_win);
	win = win ? win * 2 : len * 4;
	win = win < max ? win : max;
	/* Never more than an eighth of the cache: read-ahead must not evict
	 * what it is reading ahead of, nor push a small cache over budget. */
	cap = bufio_get_effective_cache_size() / 8;
	win = win < cap ? win : cap;
	atomic_store(&dev->ra_win, win);
	if (end >= dev->size)
		return;
	cur = atomic_load(&dev->ra_until);
	/* What this stream already has ahead of it; a mark further on is stale. */
	base = cur > end && cur <= end + win ? cur : end;
	/* Top up once half the window is consumed: fewer, larger batches. */
	if (base - end >= win / 2)
		return;
	want = end + win < dev->size ? end + win : dev->size;
	/* Another reader of the same stream may have just done it. */
	if (!atomic_compare_exchange_strong(&dev->ra_until, &cur, want))
		return;
	bufio_prefetch(dev->client, base / bs, (unsigned)((want + bs - 1) / bs - base / bs));
}
