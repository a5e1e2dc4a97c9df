/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of libbufio's dirty data: partial ranges and their 4 KiB
 * widening, write-back ratio and batching, write_dirty_buffers, write_buffer,
 * release_move, and destroy writing back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

/*---------------------------------------------------------------- partial */

/*
 * Block @blk of size @bs: cache contents become pattern (blk, 2) everywhere,
 * the dirty ranges are marked, and after write-back the backend must hold
 * the new pattern exactly on [wstart, wend) and the old one elsewhere.
 */
static void partial_case(unsigned bs, unsigned align, uint64_t blk, const unsigned (*ranges)[2],
                         unsigned nranges, unsigned wstart, unsigned wend)
{
	reset_globals();
	const uint64_t blocks = blk + 3; /* the last one is the quiet client's */
	struct bufio_backend *m = mem_with_pattern(blocks, bs, align, 1);
	unsigned char *d = be_memory_data(m);
	unsigned char *want = malloc(bs);
	ck_assert_ptr_nonnull(want);
	struct bufio_client *c = quiet_client(m, bs);

	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, blk, &b);
	ck_assert_ptr_nonnull(p);
	fill_pattern(p, bs, blk, 2);
	memcpy(want, p, bs);
	for (unsigned i = 0; i < nranges; i++)
		bufio_mark_partial_buffer_dirty(b, ranges[i][0], ranges[i][1]);
	bufio_release(b);
	ck_assert_uint_eq(stats(c).buffers_dirty, 1);

	struct be_counts k0, k1;
	be_memory_counts(m, &k0);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	be_memory_counts(m, &k1);
	ck_assert_uint_eq(k1.ops[BUFIO_OP_WRITE] - k0.ops[BUFIO_OP_WRITE], 1);
	ck_assert_uint_eq(k1.bytes[BUFIO_OP_WRITE] - k0.bytes[BUFIO_OP_WRITE], wend - wstart);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.write_bytes, wend - wstart);
	ck_assert_uint_eq(st.buffers_dirty, 0);

	unsigned char *old = malloc(bs);
	fill_pattern(old, bs, blk, 1);
	const unsigned char *disk = d + blk * bs;
	ck_assert_msg(memcmp(disk, old, wstart) == 0, "bytes before the written range changed");
	ck_assert_msg(memcmp(disk + wstart, want + wstart, wend - wstart) == 0,
	              "the written range [%u, %u) is not the cache contents", wstart, wend);
	ck_assert_msg(memcmp(disk + wend, old + wend, bs - wend) == 0,
	              "bytes after the written range changed");
	/* neighbours untouched */
	ck_assert(check_pattern(d + (blk - 1) * bs, bs, blk - 1, 1));
	ck_assert(check_pattern(d + (blk + 1) * bs, bs, blk + 1, 1));
	free(old);
	free(want);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}

START_TEST(test_partial_64k)
{
	const unsigned r[][2] = {{100, 200}};
	partial_case(64 * 1024, 512, 3, r, 1, 0, 4096);
}
END_TEST

START_TEST(test_partial_middle)
{
	const unsigned r[][2] = {{20000, 20001}};
	partial_case(64 * 1024, 4096, 2, r, 1, 16384, 20480);
}
END_TEST

START_TEST(test_partial_union)
{
	/* the union's extent: [100, 9100) -> [0, 12288) */
	const unsigned r[][2] = {{9000, 9100}, {100, 200}, {5000, 5001}};
	partial_case(64 * 1024, 512, 1, r, 3, 0, 12288);
}
END_TEST

START_TEST(test_partial_last_byte)
{
	const unsigned r[][2] = {{65535, 65536}};
	partial_case(64 * 1024, 512, 1, r, 1, 61440, 65536);
}
END_TEST

START_TEST(test_partial_clipped_6k)
{
	/* 6 KiB blocks: [5000, 5100) widens to [4096, 8192), clipped to 6144 */
	const unsigned r[][2] = {{5000, 5100}};
	partial_case(6144, 512, 3, r, 1, 4096, 6144);
}
END_TEST

START_TEST(test_partial_clipped_1536)
{
	const unsigned r[][2] = {{100, 200}};
	partial_case(1536, 512, 5, r, 1, 0, 1536);
}
END_TEST

START_TEST(test_partial_then_full)
{
	/* a full mark after a partial one covers the whole block */
	const unsigned r[][2] = {{100, 200}, {0, 64 * 1024}};
	partial_case(64 * 1024, 512, 1, r, 2, 0, 64 * 1024);
}
END_TEST

START_TEST(test_partial_ranges_reset_after_write)
{
	/* after a write-back the next dirty range starts afresh */
	reset_globals();
	const unsigned bs = 64 * 1024;
	struct bufio_backend *m = mem_with_pattern(4, bs, 512, 1);
	struct bufio_client *c = quiet_client(m, bs);
	struct bufio_buffer *b;
	ck_assert_ptr_nonnull(bufio_read(c, 1, &b));
	bufio_mark_partial_buffer_dirty(b, 0, 10);
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_ptr_nonnull(bufio_read(c, 1, &b));
	bufio_mark_partial_buffer_dirty(b, 60000, 60010);
	bufio_release(b);
	struct be_counts k0, k1;
	be_memory_counts(m, &k0);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	be_memory_counts(m, &k1);
	ck_assert_uint_eq(k1.bytes[BUFIO_OP_WRITE] - k0.bytes[BUFIO_OP_WRITE], 4096);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- write_dirty_buffers */

START_TEST(test_write_dirty_one_batch)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(256, bs, 512, 1);
	struct bufio_client *c = quiet_client(m, bs);
	for (uint64_t i = 0; i < 64; i++)
		dirty_block(c, i * 3, 7);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.buffers_dirty, 64);
	ck_assert_uint_eq(st.writes, 0);
	struct be_counts k0, k1;
	be_memory_counts(m, &k0);
	ck_assert_uint_eq(k0.ops[BUFIO_OP_WRITE], 0);
	bufio_write_dirty_buffers_async(c);
	ck_assert(WAIT_UNTIL(stats(c).buffers_dirty == 0 && stats(c).buffers_writing == 0, 10));
	be_memory_counts(m, &k1);
	ck_assert_uint_eq(k1.ops[BUFIO_OP_WRITE], 64);
	ck_assert_uint_eq(k1.bytes[BUFIO_OP_WRITE], (uint64_t)64 * bs);
	ck_assert_msg(k1.batches - k0.batches == 1, "64 writes went out in %llu batches",
	              (unsigned long long)(k1.batches - k0.batches));
	/* async is not a flush */
	ck_assert_uint_eq(k1.ops[BUFIO_OP_FLUSH], 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 64; i++)
		ck_assert(check_pattern(d + i * 3 * bs, bs, i * 3, 7));
	ck_assert(check_pattern(d + bs, bs, 1, 1));

	/* nothing dirty: write_dirty_buffers only flushes */
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	struct be_counts k2;
	be_memory_counts(m, &k2);
	ck_assert_uint_eq(k2.ops[BUFIO_OP_WRITE], 64);
	ck_assert_uint_eq(k2.ops[BUFIO_OP_FLUSH], 1);
	ck_assert_uint_eq(stats(c).flushes, 1);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_write_dirty_waits_and_flushes)
{
	/* With slow asynchronous writes the data is on the device when it returns. */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	struct bufio_backend *f = be_fault_create(m, false);
	struct be_fault_rule r = {.ops = (1u << BUFIO_OP_WRITE) | (1u << BUFIO_OP_FLUSH),
	                          .delay_us = 30000};
	ck_assert_int_ge(be_fault_add_rule(f, &r), 0);
	struct bufio_client *c = quiet_client(f, bs);
	for (uint64_t i = 0; i < 16; i++)
		dirty_block(c, i, 8);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	struct be_counts k;
	be_memory_counts(m, &k);
	/* the lower device has completed every write and the flush */
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 16);
	ck_assert_uint_ge(k.ops[BUFIO_OP_FLUSH], 1);
	for (uint64_t i = 0; i < 16; i++)
		ck_assert_msg(check_pattern(d + i * bs, bs, i, 8), "block %llu not written yet",
		              (unsigned long long)i);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.buffers_dirty, 0);
	ck_assert_uint_eq(st.buffers_writing, 0);
	ck_assert_uint_eq(st.buffers_clean, 16 + 1);
	ck_assert_uint_eq(st.writes, 16);
	ck_assert_uint_eq(st.write_bytes, (uint64_t)16 * bs);
	ck_assert_uint_ge(st.flushes, 1);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_write_buffer)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(16, bs, 512, 1);
	struct bufio_backend *f = be_fault_create(m, false);
	struct bufio_client *c = quiet_client(f, bs);
	unsigned char *d = be_memory_data(m);
	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 2, &b);
	ck_assert_ptr_nonnull(p);
	memset(p + 4000, 0xee, 10);
	bufio_mark_partial_buffer_dirty(b, 4000, 4010);
	ck_assert_int_eq(bufio_write_buffer(b), 0);
	/* written now, while still held; not a flush */
	ck_assert_uint_eq(d[2 * bs + 4005], 0xee);
	struct be_counts k;
	be_fault_counts(f, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 1);
	ck_assert_uint_eq(k.ops[BUFIO_OP_FLUSH], 0);
	ck_assert_uint_eq(stats(c).buffers_dirty, 0);
	/* a clean buffer: nothing to write */
	ck_assert_int_eq(bufio_write_buffer(b), 0);

	/* failure: -errno and the buffer stays dirty */
	struct be_fault_rule r = {.ops = 1u << BUFIO_OP_WRITE, .error = -ENOSPC};
	ck_assert_int_ge(be_fault_add_rule(f, &r), 0);
	memset(p, 0xdd, 10);
	bufio_mark_partial_buffer_dirty(b, 0, 10);
	ck_assert_int_eq(bufio_write_buffer(b), -ENOSPC);
	ck_assert_uint_eq(stats(c).buffers_dirty, 1);
	ck_assert_uint_ge(stats(c).write_errors, 1);
	ck_assert_uint_ne(d[(size_t)2 * bs], 0xdd);
	be_fault_clear_rules(f);
	ck_assert_int_eq(bufio_write_buffer(b), 0);
	ck_assert_uint_eq(d[(size_t)2 * bs], 0xdd);
	ck_assert_uint_eq(stats(c).buffers_dirty, 0);
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- write-back ratio */

START_TEST(test_mark_many)
{
	/* bufio_mark_buffers_dirty marks every buffer, whole, like one by one */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	struct bufio_client *c = quiet_client(m, bs);
	struct bufio_buffer *bufs[16];
	for (unsigned i = 0; i < 16; i++) {
		void *p = bufio_new(c, 20 + i, &bufs[i]);
		ck_assert_ptr_nonnull(p);
		fill_pattern(p, bs, 20 + i, 9);
	}
	bufio_mark_buffers_dirty(bufs, 16);
	bufio_mark_buffers_dirty(bufs, 0);
	ck_assert_uint_eq(stats(c).buffers_dirty, 16);
	for (unsigned i = 0; i < 16; i++)
		bufio_release(bufs[i]);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_uint_eq(stats(c).buffers_dirty, 0);
	unsigned char *d = be_memory_data(m);
	for (unsigned i = 0; i < 16; i++)
		ck_assert(check_pattern(d + (size_t)(20 + i) * bs, bs, 20 + i, 9));
	ck_assert(check_pattern(d + (size_t)36 * bs, bs, 36, 1));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_new_adopt)
{
	/*
	 * bufio_new_adopt: an uncached block takes the caller's memory (no
	 * copy) and the caller gets other block memory back; a cached block
	 * leaves the caller's memory alone and is filled by copying.
	 */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	struct bufio_client *c = quiet_client(m, bs);
	struct bufio_buffer *b;
	void *mem = bufio_alloc_block_data(c);
	ck_assert_ptr_nonnull(mem);
	void *mine = mem;
	fill_pattern(mine, bs, 5, 7);
	void *p = bufio_new_adopt(c, 5, &mem, &b);
	ck_assert_ptr_eq(p, mine);
	ck_assert_ptr_nonnull(mem);
	ck_assert_ptr_ne(mem, mine);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);

	/* Block 9 cached: the caller copies, its memory stays its own. */
	ck_assert_ptr_nonnull(bufio_read(c, 9, &b));
	bufio_release(b);
	mine = mem;
	fill_pattern(mine, bs, 9, 7);
	p = bufio_new_adopt(c, 9, &mem, &b);
	ck_assert_ptr_ne(p, mine);
	ck_assert_ptr_eq(mem, mine);
	memcpy(p, mine, bs);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_ptr_null(bufio_new_adopt(c, 64, &mem, &b));
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_ptr_eq(mem, mine);

	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	ck_assert(check_pattern(d + (size_t)5 * bs, bs, 5, 7));
	ck_assert(check_pattern(d + (size_t)9 * bs, bs, 9, 7));
	ck_assert(check_pattern(d + (size_t)6 * bs, bs, 6, 1));
	bufio_free_block_data(c, mem);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_new_adopt_over_budget)
{
	/*
	 * At a budget of 32 blocks, 256 adopted writes recycle buffers: the
	 * memory handed back is a reused buffer's or a fresh one's, and every
	 * block must still reach the backend intact.
	 */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(256, bs, 512, 1);
	struct bufio_client *c = quiet_client(m, bs);
	ck_assert_int_eq(bufio_set_max_cache_size((uint64_t)32 * (bs + 512)), 0);
	void *mem = bufio_alloc_block_data(c);
	ck_assert_ptr_nonnull(mem);
	for (unsigned i = 0; i < 256; i++) {
		struct bufio_buffer *b;
		void *mine = mem;
		fill_pattern(mine, bs, i, 3);
		void *p = bufio_new_adopt(c, i, &mem, &b);
		ck_assert_ptr_nonnull(p);
		if (p != mine)
			memcpy(p, mine, bs);
		bufio_mark_buffer_dirty(b);
		bufio_release(b);
	}
	/* Over the budget every buffer was recycled: reused by the writer, or
	 * evicted by the worker's budget check first (timing decides which). */
	ck_assert_uint_gt(stats(c).evict_reuse + stats(c).evict_budget, 0);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (unsigned i = 0; i < 256; i++)
		ck_assert(check_pattern(d + (size_t)i * bs, bs, i, 3));
	bufio_free_block_data(c, mem);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_writeback_at_budget)
{
	/*
	 * With the cache at its budget, write-back does not wait for the ratio:
	 * 16 dirty against 240 clean (far below 3x) are written once they are
	 * 1/64 of the cache, so new blocks find clean buffers to reuse.
	 */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(1024, bs, 512, 1);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	read_range(c, 512, 256, 1);
	ck_assert_int_eq(bufio_set_max_cache_size(bufio_get_current_allocated()), 0);
	for (uint64_t i = 0; i < 16; i++)
		dirty_block(c, i, 5);
	ck_assert_msg(WAIT_UNTIL(stats(c).writebacks > 0, 10),
	              "no write-back at the budget with %llu dirty, %llu clean",
	              (unsigned long long)stats(c).buffers_dirty,
	              (unsigned long long)stats(c).buffers_clean);
	/*
	 * What is left is below the 1/64 that starts a write (by age later),
	 * unless the worker's budget check (every 100 ms) found the cache a
	 * block over and shrank it below the low watermark: then the ratio
	 * alone decides again, also correct.
	 */
	uint64_t budget = bufio_get_max_cache_size();
	ck_assert_msg(
	    WAIT_UNTIL(stats(c).buffers_dirty <
	                       (stats(c).buffers_clean + stats(c).buffers_dirty) / 64 ||
	                   bufio_get_current_allocated() < budget - budget / 16, /* low watermark */
	               10),
	    "%llu dirty, %llu clean left at the budget", (unsigned long long)stats(c).buffers_dirty,
	    (unsigned long long)stats(c).buffers_clean);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 16; i++)
		ck_assert(check_pattern(d + i * bs, bs, i, 5));

	/* below the low watermark the ratio alone decides again */
	ck_assert_int_eq(bufio_set_max_cache_size(64ull << 20), 0);
	for (uint64_t i = 16; i < 32; i++)
		dirty_block(c, i, 5);
	usleep(300 * 1000);
	ck_assert_uint_eq(stats(c).buffers_dirty, 16);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

START_TEST(test_writeback_ratio_background)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = be_memory_create((uint64_t)1024 * bs, 512);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(bufio_get_writeback_ratio(c), 3);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	struct bufio_buffer *b;
	for (uint64_t i = 0; i < 8; i++) {
		ck_assert_ptr_nonnull(bufio_read(c, 1000 + i, &b));
		bufio_release(b);
	}
	/* 24 dirty against 8 clean: not above the ratio, nothing written */
	for (uint64_t i = 0; i < 24; i++)
		dirty_block(c, i, 3);
	struct bufio_stats st = stats(c);
	ck_assert_uint_eq(st.buffers_dirty, 24);
	ck_assert_uint_eq(st.writes, 0);
	/* beyond it, background write-back starts by itself */
	for (uint64_t i = 24; i < 64; i++)
		dirty_block(c, i, 3);
	ck_assert_msg(WAIT_UNTIL(stats(c).writebacks > 0, 10),
	              "no background write-back with dirty %llu > 3 x clean",
	              (unsigned long long)stats(c).buffers_dirty);
	/* it brings dirty back to at most ratio x clean */
	ck_assert(WAIT_UNTIL(({
		                     struct bufio_stats s_ = stats(c);
		                     s_.buffers_writing == 0 &&
		                         s_.buffers_dirty <= 3 * s_.buffers_clean;
	                     }),
	                     10));
	st = stats(c);
	ck_assert_uint_eq(st.writes, st.writebacks);
	struct be_counts k;
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], st.writes);
	/* gathered, not one submission per buffer */
	ck_assert_uint_lt(k.batches - 8, k.ops[BUFIO_OP_WRITE]);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 64; i++)
		ck_assert(check_pattern(d + i * bs, bs, i, 3));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_writeback_ratio_zero)
{
	/* ratio 0: anything dirty is written back soon, without a call */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = be_memory_create((uint64_t)64 * bs, 512);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 0), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	struct bufio_buffer *b;
	for (uint64_t i = 0; i < 4; i++) {
		ck_assert_ptr_nonnull(bufio_read(c, 10 + i, &b));
		bufio_release(b);
	}
	dirty_block(c, 1, 4);
	ck_assert(WAIT_UNTIL(stats(c).buffers_dirty == 0 && stats(c).buffers_writing == 0, 10));
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + bs, bs, 1, 4));
	ck_assert_uint_ge(stats(c).writebacks, 1);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_dirty_expire)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = be_memory_create((uint64_t)64 * bs, 512);
	struct bufio_client *c = quiet_client(m, bs);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 1), 0);
	dirty_block(c, 5, 5);
	sleep(2);
	usleep(200 * 1000);
	bufio_run_cleanup();
	ck_assert(WAIT_UNTIL(stats(c).buffers_dirty == 0 && stats(c).buffers_writing == 0, 10));
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)5 * bs, bs, 5, 5));
	/* still cached, clean */
	struct bufio_buffer *b;
	ck_assert_ptr_nonnull(bufio_get(c, 5, &b));
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- release_move */

/* bufio_new block @from with pattern (@from, @seed), mark it dirty, release_move it to @to. */
static void move_new_dirty(struct bufio_client *c, uint64_t from, uint64_t to, uint32_t seed)
{
	struct bufio_buffer *b;
	void *p = bufio_new(c, from, &b);
	ck_assert_ptr_nonnull(p);
	fill_pattern(p, bufio_get_block_size(c), from, seed);
	bufio_mark_buffer_dirty(b);
	bufio_release_move(b, to);
}

START_TEST(test_release_move)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	unsigned char *d = be_memory_data(m);
	struct bufio_client *c = quiet_client(m, bs);
	struct bufio_buffer *b;

	/* onto an uncached block */
	unsigned char *p = bufio_read(c, 2, &b);
	ck_assert_ptr_nonnull(p);
	bufio_release_move(b, 10);
	errno = 0;
	ck_assert_ptr_null(bufio_get(c, 2, &b));
	ck_assert_int_eq(errno, ENOENT);
	p = bufio_get(c, 10, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 2, 1));
	ck_assert_uint_eq(bufio_get_block_number(b), 10);
	bufio_release(b);
	ck_assert_uint_eq(stats(c).buffers_dirty, 1);

	/* onto a cached block: its copy is replaced */
	p = bufio_read(c, 20, &b);
	ck_assert(check_pattern(p, bs, 20, 1));
	bufio_release(b);
	move_new_dirty(c, 3, 20, 9);
	p = bufio_get(c, 20, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 3, 9));
	bufio_release(b);
	ck_assert_ptr_null(bufio_get(c, 3, &b));

	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern(d + (size_t)10 * bs, bs, 2, 1));
	ck_assert(check_pattern(d + (size_t)20 * bs, bs, 3, 9));
	ck_assert(check_pattern(d + (size_t)2 * bs, bs, 2, 1));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_release_move_dirty_leaves_old_block)
{
	/*
	 * bufio.h: "The old block's cached copy is gone; what the backend
	 * holds there is unchanged." (dm-bufio instead writes the dirty data
	 * to the old block first.)
	 */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	unsigned char *d = be_memory_data(m);
	struct bufio_client *c = quiet_client(m, bs);
	move_new_dirty(c, 3, 20, 9);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern(d + (size_t)20 * bs, bs, 3, 9));
	ck_assert_msg(check_pattern(d + (size_t)3 * bs, bs, 3, 1),
	              "release_move wrote the moved data to the old block too");
	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 3, &b);
	ck_assert(check_pattern(p, bs, 3, 1));
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/* Opens the fault gate a little later, from another thread. */
static void *release_gate_later(void *f)
{
	usleep(100 * 1000);
	be_fault_release(f);
	return NULL;
}

START_TEST(test_release_move_waits_for_read)
{
	/* moving onto a block whose read is in flight waits for it */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	struct bufio_backend *f = be_fault_create(m, false);
	struct bufio_client *c = quiet_client(f, bs);
	struct bufio_buffer *b;
	unsigned char *p = bufio_new(c, 1, &b);
	fill_pattern(p, bs, 1, 6);
	bufio_mark_buffer_dirty(b);
	be_fault_hold(f, 1u << BUFIO_OP_READ);
	bufio_prefetch(c, 30, 1);
	ck_assert(WAIT_UNTIL(be_fault_held(f) == 1, 10));
	pthread_t tid;
	ck_assert_int_eq(pthread_create(&tid, NULL, release_gate_later, f), 0);
	bufio_release_move(b, 30);
	pthread_join(tid, NULL);
	p = bufio_get(c, 30, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 1, 6));
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)30 * bs, bs, 1, 6));
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- destroy */

START_TEST(test_destroy_writes_back)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = be_memory_create((uint64_t)64 * bs, 512);
	struct bufio_client *c = quiet_client(m, bs);
	for (uint64_t i = 0; i < 10; i++)
		dirty_block(c, i * 5, 11);
	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 62, &b);
	memset(p + 10, 0x42, 5);
	bufio_mark_partial_buffer_dirty(b, 10, 15);
	bufio_release(b);
	ck_assert_uint_eq(stats(c).buffers_dirty, 11);
	bufio_client_destroy(c);
	unsigned char *d = be_memory_data(m);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert(check_pattern(d + i * 5 * bs, bs, i * 5, 11));
	ck_assert_uint_eq(d[62 * bs + 12], 0x42);
	ck_assert_uint_eq(d[62 * bs + 9], 0);
	struct be_counts k;
	be_memory_counts(m, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_WRITE], 11);
	ck_assert_uint_ge(k.ops[BUFIO_OP_FLUSH], 1);
	bufio_backend_close(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_dirty");
	TCase *t = tcase_create("dirty");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_partial_64k);
	tcase_add_test(t, test_partial_middle);
	tcase_add_test(t, test_partial_union);
	tcase_add_test(t, test_partial_last_byte);
	tcase_add_test(t, test_partial_clipped_6k);
	tcase_add_test(t, test_partial_clipped_1536);
	tcase_add_test(t, test_partial_then_full);
	tcase_add_test(t, test_partial_ranges_reset_after_write);
	tcase_add_test(t, test_write_dirty_one_batch);
	tcase_add_test(t, test_write_dirty_waits_and_flushes);
	tcase_add_test(t, test_write_buffer);
	tcase_add_test(t, test_mark_many);
	tcase_add_test(t, test_new_adopt);
	tcase_add_test(t, test_new_adopt_over_budget);
	tcase_add_test(t, test_writeback_at_budget);
	tcase_add_test(t, test_writeback_ratio_background);
	tcase_add_test(t, test_writeback_ratio_zero);
	tcase_add_test(t, test_dirty_expire);
	tcase_add_test(t, test_release_move);
	tcase_add_test(t, test_release_move_dirty_leaves_old_block);
	tcase_add_test(t, test_release_move_waits_for_read);
	tcase_add_test(t, test_destroy_writes_back);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
