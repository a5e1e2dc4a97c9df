/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Unit tests of the libbufio client basics: creation and its block-size rules,
 * the accessors, sector offsets, callbacks, read/get/new and their errors.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include <bufio/bufio.h>
#include "backend/be_fault.h"
#include "backend/be_memory.h"
#include "helpers.h"

/*---------------------------------------------------------------- create */

static void try_block_size(unsigned align, unsigned bs, int want_ok)
{
	struct bufio_backend *m = be_memory_create(16 * MIB, align);
	ck_assert_ptr_nonnull(m);
	errno = 0;
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	if (want_ok) {
		ck_assert_msg(c != NULL, "block size %u (align %u) refused: %s", bs, align,
		              strerror(errno));
		ck_assert_uint_eq(bufio_get_block_size(c), bs);
		ck_assert_uint_eq(bufio_get_device_size(c), 16 * MIB / bs);
		ck_assert_ptr_eq(bufio_get_backend(c), m);
		bufio_client_destroy(c);
	} else {
		ck_assert_msg(c == NULL, "block size %u (align %u) accepted", bs, align);
		ck_assert_int_eq(errno, EINVAL);
	}
	bufio_backend_close(m);
}

START_TEST(test_create_block_sizes)
{
	reset_globals();
	try_block_size(1, 512, 1);
	try_block_size(1, 4096, 1);
	try_block_size(1, 3 * 512, 1);
	try_block_size(512, 3 * 512, 1);
	try_block_size(1, 7 * 512, 1);
	try_block_size(4096, 3 * 4096, 1);
	try_block_size(1, 8 * MIB, 1);
	try_block_size(1, 0, 0);
	try_block_size(1, 100, 0);
	try_block_size(1, 513, 0);
	try_block_size(1, 4095, 0);
	/* not a multiple of the backend alignment */
	try_block_size(4096, 512, 0);
	try_block_size(4096, 3 * 512, 0);
	try_block_size(1024, 1536, 0);
	/* beyond the maximum */
	try_block_size(1, BUFIO_MAX_BLOCK_SIZE + 512, 0);
}
END_TEST

START_TEST(test_big_block_roundtrip)
{
	/* 8 MiB blocks work end to end: read, modify, write back. */
	reset_globals();
	const unsigned bs = 8 * MIB;
	struct bufio_backend *m = mem_with_pattern(3, bs, 4096, 5);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(bufio_get_device_size(c), 3);
	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 1, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 1, 5));
	fill_pattern(p, bs, 1, 6);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	unsigned char *d = be_memory_data(m);
	ck_assert(check_pattern(d + bs, bs, 1, 6));
	ck_assert(check_pattern(d, bs, 0, 5));
	ck_assert(check_pattern(d + (size_t)2 * bs, bs, 2, 5));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_device_size_rounds_down)
{
	reset_globals();
	struct bufio_backend *m = be_memory_create(10 * 4096 + 2048, 1);
	ck_assert_ptr_nonnull(m);
	struct bufio_client *c = bufio_client_create(m, 4096, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(bufio_get_device_size(c), 10);
	struct bufio_buffer *b;
	errno = 0;
	ck_assert_ptr_null(bufio_read(c, 10, &b));
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_ptr_nonnull(bufio_read(c, 9, &b));
	bufio_release(b);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- accessors */

START_TEST(test_accessors_and_aux)
{
	reset_globals();
	const unsigned bs = 4096, aux = 200;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 1);
	struct bufio_client *c = bufio_client_create(m, bs, 2, aux, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_eq(bufio_get_backend(c), m);
	ck_assert_uint_eq(bufio_get_block_size(c), bs);
	ck_assert_uint_eq(bufio_get_device_size(c), 64);

	struct bufio_buffer *b1, *b2;
	void *p1 = bufio_read(c, 7, &b1);
	void *p2 = bufio_read(c, 8, &b2);
	ck_assert_ptr_nonnull(p1);
	ck_assert_ptr_nonnull(p2);
	ck_assert_ptr_eq(bufio_get_block_data(b1), p1);
	ck_assert_ptr_eq(bufio_get_block_data(b2), p2);
	ck_assert_uint_eq(bufio_get_block_number(b1), 7);
	ck_assert_uint_eq(bufio_get_block_number(b2), 8);
	ck_assert_ptr_eq(bufio_get_client(b1), c);
	ck_assert_ptr_eq(bufio_get_client(b2), c);

	/* aux data: aux_size bytes each, distinct, not overlapping the block data */
	unsigned char *a1 = bufio_get_aux_data(b1), *a2 = bufio_get_aux_data(b2);
	ck_assert_ptr_nonnull(a1);
	ck_assert_ptr_nonnull(a2);
	memset(a1, 0xa1, aux);
	memset(a2, 0xa2, aux);
	for (unsigned i = 0; i < aux; i++) {
		ck_assert_uint_eq(a1[i], 0xa1);
		ck_assert_uint_eq(a2[i], 0xa2);
	}
	ck_assert(check_pattern(p1, bs, 7, 1));
	ck_assert(check_pattern(p2, bs, 8, 1));

	/* a second hold on a cached block returns the same buffer */
	struct bufio_buffer *b3;
	ck_assert_ptr_eq(bufio_get(c, 7, &b3), p1);
	ck_assert_ptr_eq(b3, b1);
	ck_assert_ptr_eq(bufio_get_aux_data(b3), a1);
	bufio_release(b3);
	bufio_release(b1);
	bufio_release(b2);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_block_data_alignment)
{
	/* Block data must satisfy the backend alignment (O_DIRECT-like). */
	reset_globals();
	struct bufio_backend *m = mem_with_pattern(16, 4096, 4096, 3);
	struct bufio_client *c = bufio_client_create(m, 4096, 1, 24, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	for (uint64_t i = 0; i < 16; i++) {
		struct bufio_buffer *b;
		void *p = bufio_read(c, i, &b);
		ck_assert_msg(p != NULL, "read of block %llu on a 4K-aligned backend: %s",
		              (unsigned long long)i, strerror(errno));
		ck_assert_uint_eq((uintptr_t)p % 4096, 0);
		ck_assert(check_pattern(p, 4096, i, 3));
		bufio_release(b);
	}
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- sector offset */

START_TEST(test_sector_offset)
{
	reset_globals();
	const unsigned bs = 4096;
	/* A pattern per 512-byte sector so that any shift shows. */
	struct bufio_backend *m = mem_with_pattern((uint64_t)64 * 8, 512, 512, 9);
	unsigned char *d = be_memory_data(m);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(bufio_get_device_size(c), 64);
	bufio_set_sector_offset(c, 3);
	/* (64 * 4096 - 3 * 512) / 4096 */
	ck_assert_uint_eq(bufio_get_device_size(c), 63);

	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 0, &b);
	ck_assert_ptr_nonnull(p);
	for (unsigned s = 0; s < 8; s++)
		ck_assert_msg(check_pattern(p + (size_t)s * 512, 512, 3 + s, 9),
		              "block 0 sector %u is not backend sector %u", s, 3 + s);
	bufio_release(b);
	p = bufio_read(c, 62, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, 512, 62 * 8 + 3, 9));
	/* write lands shifted too */
	memset(p, 0x5a, bs);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	errno = 0;
	ck_assert_ptr_null(bufio_read(c, 63, &b));
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	uint64_t off = 62ull * bs + 3ull * 512;
	for (unsigned i = 0; i < bs; i++)
		ck_assert_uint_eq(d[off + i], 0x5a);
	ck_assert(check_pattern(d + off - 512, 512, 62 * 8 + 2, 9));
	ck_assert(check_pattern(d + off + bs, 512, 63 * 8 + 3, 9));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- callbacks */

static int alloc_calls, write_calls;
static uint64_t alloc_last_block = UINT64_MAX, write_last_block = UINT64_MAX;

/* Called for a buffer given to a new block, which it can already see. */
static void on_alloc(struct bufio_buffer *b)
{
	__atomic_add_fetch(&alloc_calls, 1, __ATOMIC_SEQ_CST);
	alloc_last_block = bufio_get_block_number(b);
	/* the aux data is ours to initialise here */
	memset(bufio_get_aux_data(b), 0x11, 16);
}

static void on_write(struct bufio_buffer *b)
{
	__atomic_add_fetch(&write_calls, 1, __ATOMIC_SEQ_CST);
	write_last_block = bufio_get_block_number(b);
	/*
	 * Like dm-persistent-data's checksum: the callback stamps the block just
	 * before it goes out, and the stamp must be what reaches the backend.
	 */
	unsigned char *p = bufio_get_block_data(b);
	uint64_t stamp = 0xC0FFEE00ull + write_last_block;
	memcpy(p, &stamp, sizeof(stamp));
}

START_TEST(test_callbacks)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(32, bs, 512, 4);
	unsigned char *d = be_memory_data(m);
	alloc_calls = write_calls = 0;
	struct bufio_client *c = bufio_client_create(m, bs, 1, 16, on_alloc, on_write);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 1000), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	int a0 = alloc_calls;

	struct bufio_buffer *b;
	unsigned char *p = bufio_read(c, 5, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(alloc_calls, a0 + 1);
	ck_assert_uint_eq(alloc_last_block, 5);
	unsigned char *aux = bufio_get_aux_data(b);
	ck_assert_uint_eq(aux[0], 0x11);
	ck_assert_uint_eq(aux[15], 0x11);
	bufio_release(b);

	/* a hit allocates nothing */
	ck_assert_ptr_nonnull(bufio_read(c, 5, &b));
	bufio_release(b);
	ck_assert_ptr_nonnull(bufio_get(c, 5, &b));
	bufio_release(b);
	ck_assert_int_eq(alloc_calls, a0 + 1);

	/* new allocates too */
	p = bufio_new(c, 9, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(alloc_calls, a0 + 2);
	ck_assert_uint_eq(alloc_last_block, 9);
	memset(p, 0x77, bs);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_int_eq(write_calls, 0);

	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_int_eq(write_calls, 1);
	ck_assert_uint_eq(write_last_block, 9);
	uint64_t stamp;
	memcpy(&stamp, d + (size_t)9 * bs, sizeof(stamp));
	ck_assert_uint_eq(stamp, 0xC0FFEE00ull + 9);
	for (unsigned i = sizeof(stamp); i < bs; i++)
		ck_assert_uint_eq(d[9 * bs + i], 0x77);

	/* clean buffers are not written, so no callback */
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_int_eq(write_calls, 1);

	/* once per write: dirty it again */
	ck_assert_ptr_nonnull(bufio_read(c, 5, &b));
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert_int_eq(write_calls, 2);
	ck_assert_uint_eq(write_last_block, 5);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

/*---------------------------------------------------------------- read/get/new */

START_TEST(test_read_get_new)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(128, bs, 512, 21);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	struct bufio_buffer *b;

	/* get of an absent block */
	errno = 0;
	ck_assert_ptr_null(bufio_get(c, 3, &b));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 0);

	/* read returns backend data, then get finds it */
	unsigned char *p = bufio_read(c, 3, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 3, 21));
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);
	bufio_release(b);
	p = bufio_get(c, 3, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 3, 21));
	bufio_release(b);
	/* and read hits without I/O */
	ck_assert_ptr_nonnull(bufio_read(c, 3, &b));
	bufio_release(b);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);

	/* new: no read at all */
	p = bufio_new(c, 4, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);
	fill_pattern(p, bs, 4, 99);
	bufio_mark_buffer_dirty(b);
	bufio_release(b);
	p = bufio_read(c, 4, &b);
	ck_assert(check_pattern(p, bs, 4, 99));
	bufio_release(b);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);

	/* new on a cached block returns its current contents */
	p = bufio_new(c, 3, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 3, 21));
	bufio_release(b);

	/* beyond the end */
	errno = 0;
	ck_assert_ptr_null(bufio_read(c, 128, &b));
	ck_assert_int_eq(errno, ERANGE);
	errno = 0;
	ck_assert_ptr_null(bufio_read(c, UINT64_MAX, &b));
	ck_assert_int_eq(errno, ERANGE);
	errno = 0;
	ck_assert_ptr_null(bufio_new(c, 128, &b));
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_ptr_null(bufio_get(c, 128, &b));
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), 1);
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_WRITE), 0);

	ck_assert_int_eq(bufio_write_dirty_buffers(c), 0);
	ck_assert(check_pattern((unsigned char *)be_memory_data(m) + (size_t)4 * bs, bs, 4, 99));
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_prefetch)
{
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(256, bs, 512, 8);
	struct bufio_client *c = bufio_client_create(m, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	struct bufio_buffer *b;

	ck_assert_ptr_nonnull(bufio_read(c, 12, &b));
	bufio_release(b);
	struct be_counts k0, k1;
	be_memory_counts(m, &k0);
	bufio_prefetch(c, 10, 8); /* 10..17, 12 already cached */
	ck_assert(WAIT_UNTIL(mem_ops(m, BUFIO_OP_READ) >= k0.ops[BUFIO_OP_READ] + 7, 10));
	ck_assert(WAIT_UNTIL(({
		                     struct bufio_stats s_;
		                     bufio_get_stats(c, &s_);
		                     s_.buffers_reading == 0;
	                     }),
	                     10));
	be_memory_counts(m, &k1);
	ck_assert_uint_eq(k1.ops[BUFIO_OP_READ] - k0.ops[BUFIO_OP_READ], 7);
	ck_assert_uint_eq(k1.batches - k0.batches, 1);
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	ck_assert_uint_eq(st.prefetches, 7);
	bufio_clear_stats(c);
	for (int pass = 0; pass < 2; pass++) {
		for (uint64_t i = 10; i < 18; i++) {
			unsigned char *p = pass ? bufio_read(c, i, &b) : bufio_get(c, i, &b);
			ck_assert_msg(p != NULL, "prefetched block %llu not cached",
			              (unsigned long long)i);
			ck_assert(check_pattern(p, bs, i, 8));
			bufio_release(b);
		}
		/* the first use of a prefetched block is its miss; then hits */
		bufio_get_stats(c, &st);
		ck_assert_uint_eq(st.misses, 7);
		ck_assert_uint_eq(st.hits, pass ? 9 : 1);
	}
	/* prefetching cached blocks does nothing; past the end stops at the end */
	bufio_prefetch(c, 10, 8);
	bufio_prefetch(c, 1000, 4);
	bufio_prefetch(c, 20, 0);
	bufio_prefetch(c, 250, 100);
	ck_assert(WAIT_UNTIL(mem_ops(m, BUFIO_OP_READ) >= k1.ops[BUFIO_OP_READ] + 6, 10));
	for (uint64_t i = 250; i < 256; i++) {
		unsigned char *p = bufio_read(c, i, &b);
		ck_assert_ptr_nonnull(p);
		ck_assert(check_pattern(p, bs, i, 8));
		bufio_release(b);
	}
	ck_assert_uint_eq(mem_ops(m, BUFIO_OP_READ), k1.ops[BUFIO_OP_READ] + 6);
	bufio_client_destroy(c);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_get_does_not_wait_for_read)
{
	/* A block whose read is in flight is "absent" for bufio_get. */
	reset_globals();
	const unsigned bs = 4096;
	struct bufio_backend *m = mem_with_pattern(64, bs, 512, 31);
	struct bufio_backend *f = be_fault_create(m, false);
	ck_assert_ptr_nonnull(f);
	struct bufio_client *c = bufio_client_create(f, bs, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);

	be_fault_hold(f, 1u << BUFIO_OP_READ);
	bufio_prefetch(c, 6, 1);
	ck_assert(WAIT_UNTIL(be_fault_held(f) == 1, 10));
	struct bufio_stats st;
	bufio_get_stats(c, &st);
	ck_assert_uint_eq(st.buffers_reading, 1);
	struct bufio_buffer *b;
	errno = 0;
	ck_assert_ptr_null(bufio_get(c, 6, &b));
	ck_assert_int_eq(errno, ENOENT);
	be_fault_release(f);

	/* read waits for the prefetch's read rather than issuing another */
	unsigned char *p = bufio_read(c, 6, &b);
	ck_assert_ptr_nonnull(p);
	ck_assert(check_pattern(p, bs, 6, 31));
	bufio_release(b);
	struct be_counts k;
	be_fault_counts(f, &k);
	ck_assert_uint_eq(k.ops[BUFIO_OP_READ], 1);
	bufio_get_stats(c, &st);
	ck_assert_uint_eq(st.buffers_reading, 0);
	bufio_client_destroy(c);
	bufio_backend_close(f);
	bufio_backend_close(m);
}
END_TEST

START_TEST(test_setters)
{
	reset_globals();
	struct bufio_backend *m = be_memory_create(MIB, 512);
	struct bufio_client *c = bufio_client_create(m, 4096, 1, 0, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(bufio_get_writeback_ratio(c), 3);
	ck_assert_uint_eq(bufio_get_dirty_expire(c), 30);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 0), 0);
	ck_assert_uint_eq(bufio_get_writeback_ratio(c), 0);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 1000), 0);
	ck_assert_uint_eq(bufio_get_writeback_ratio(c), 1000);
	ck_assert_int_eq(bufio_set_writeback_ratio(c, 1001), -EINVAL);
	ck_assert_uint_eq(bufio_get_writeback_ratio(c), 1000);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 0), 0);
	ck_assert_uint_eq(bufio_get_dirty_expire(c), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 86400), 0);
	ck_assert_int_eq(bufio_set_dirty_expire(c, 86401), -EINVAL);
	ck_assert_uint_eq(bufio_get_dirty_expire(c), 86400);

	ck_assert_int_eq(bufio_set_max_age(7), 0);
	ck_assert_uint_eq(bufio_get_max_age(), 7);
	ck_assert_int_eq(bufio_set_max_age(300), 0);
	ck_assert_int_eq(bufio_set_retain_bytes(12345), 0);
	ck_assert_uint_eq(bufio_get_retain_bytes(), 12345);
	ck_assert_int_eq(bufio_set_retain_bytes((uint64_t)256 * 1024), 0);
	ck_assert_int_eq(bufio_set_max_cache_size(3 * MIB), 0);
	ck_assert_uint_eq(bufio_get_max_cache_size(), 3 * MIB);
	ck_assert_uint_eq(bufio_get_effective_cache_size(), 3 * MIB);
	bufio_client_destroy(c);
	bufio_backend_close(m);
	reset_globals();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("core_basic");
	TCase *t = tcase_create("basic");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, test_create_block_sizes);
	tcase_add_test(t, test_big_block_roundtrip);
	tcase_add_test(t, test_device_size_rounds_down);
	tcase_add_test(t, test_accessors_and_aux);
	tcase_add_test(t, test_block_data_alignment);
	tcase_add_test(t, test_sector_offset);
	tcase_add_test(t, test_callbacks);
	tcase_add_test(t, test_read_get_new);
	tcase_add_test(t, test_prefetch);
	tcase_add_test(t, test_get_does_not_wait_for_read);
	tcase_add_test(t, test_setters);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
