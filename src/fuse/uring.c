/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * FUSE requests over io_uring (the kernel's fuse-over-io-uring, 6.14+).
 *
 * Why: with requests read from /dev/fuse, every request costs a wake-up of
 * a blocked reader, a read and a writev. At 64 hot 4 KiB reads in flight on
 * two CPUs, the daemon spent 38% of its time in the scheduler
 * (finish_task_switch, spin_unlock_irqrestore). Over io_uring a thread
 * holds several ring entries; one io_uring_enter commits every answer of a
 * batch and waits for the next requests, and the kernel queues a request
 * on the entry of the CPU it was issued on. A minimal server measured here
 * went from ~100k to ~280k IOPS; one entry per thread gained nothing, so
 * the batching is what matters.
 *
 * How it fits libfuse 3.14, which knows nothing of it:
 *  - Requests are still dispatched by libfuse (fuse_session_process_buf):
 *    a ring request is reassembled into the byte layout of a /dev/fuse read
 *    (header, per-opcode struct, payload). A WRITE to a device file is not
 *    copied: libfuse gets its 80-byte header and the write handler takes
 *    the data from the ring buffer (fs_rx_dispatch_write).
 *  - Replies go through the session's custom I/O (fuse_session_custom_io):
 *    a reply for the request this thread is dispatching is copied into the
 *    ring entry; anything else (replies to /dev/fuse requests, notifies)
 *    is written to /dev/fuse as before.
 *  - The INIT reply is where the daemon says it speaks io_uring
 *    (FUSE_OVER_IO_URING): libfuse's reply is amended on its way out, and
 *    only if every ring thread is already set up, because once the kernel
 *    has the flag it holds new requests until every CPU's queue has
 *    entries. If registering fails after that, a rejected REGISTER makes
 *    the kernel fall back to /dev/fuse (it clears the flag on any
 *    REGISTER error), so a failure costs speed, never a hang.
 *  - FORGET and INTERRUPT always come through /dev/fuse: the /dev/fuse
 *    workers stay.
 *
 * Every handler answers before it returns (no reply is deferred to another
 * thread), which is what lets a thread-local pointer name the entry a reply
 * belongs to. A handler that blocks on backing I/O holds up the other
 * entries of its thread, so each CPU's queue is served by several threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "fuse/fs.h"

/* The fuse-over-io-uring ABI (include/uapi/linux/fuse.h, protocol 7.42),
 * newer than the kernel headers this builds against. */
#define URING_INIT_FLAG            (1ULL << 41) /* FUSE_OVER_IO_URING */
#define URING_INIT_EXT             (1u << 30)   /* FUSE_INIT_EXT: flags2 is valid */
#define URING_CMD_REGISTER         1u
#define URING_CMD_COMMIT_AND_FETCH 2u
#define URING_PARAM                "/sys/module/fuse/parameters/enable_uring"

/* The kernel's layout, unused members included. */
struct uring_ent_in_out {
	// cppcheck-suppress unusedStructMember
	uint64_t flags;
	uint64_t commit_id;  /* echoed in the commit */
	uint32_t payload_sz; /* bytes valid in the payload, either way */
	// cppcheck-suppress unusedStructMember
	uint32_t padding;
	// cppcheck-suppress unusedStructMember
	uint64_t reserved;
};

/* iov[0] of a ring entry, shared with the kernel. */
struct uring_req_header {
	unsigned char in_out[128]; /* fuse_in_header, then fuse_out_header */
	unsigned char op_in[128];  /* the per-opcode struct (in_args[0]) */
	struct uring_ent_in_out ent;
};

/* The command in the second half of a 128-byte SQE. */
struct uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

/* Threads per CPU queue: about 8 in all, as many as /dev/fuse workers. */
#define URING_THREADS_TOTAL 8
/* Entries per thread: the batch one io_uring_enter can answer. */
#define URING_ENTRIES 8
/*
 * Requests are at most 256 KiB over the ring (the INIT reply says so): the
 * kernel wants every entry's payload buffer as large as the largest
 * request, and 64 entries of 1 MiB were 36 MiB of resident memory beyond
 * the cache budget under mixed writes. Streaming 1 MiB writes become four
 * requests, which the ring answers in batches anyway.
 */
#define URING_MAX_IO (256u << 10)
/*
 * Payload pages the entries may keep in all: past this, an entry that a
 * large request used gives back all but its first URING_KEEP bytes before
 * it is committed (when nobody else can be using it). 16 MiB is what 64
 * entries of 256 KiB can touch, so on a small machine it never triggers:
 * giving pages back and faulting them in again cost streaming writes a
 * third of their throughput (8 MiB cap: 1.0 against 1.48 GB/s). On a
 * machine with many CPUs (many entries) it bounds the memory at that cost.
 */
#define URING_RESIDENT_CAP (16u << 20)
#define URING_KEEP         (64u << 10)
/*
 * Answers wait for the end of their batch to be committed in one call,
 * unless the batch is slow: a request that blocked on the backing (a cold
 * read, a write throttled at the budget) must not hold up the answers
 * already made. Committing early after 20 us took streaming 1 MiB writes
 * from 1.2 to 1.45 GB/s; hot 4 KiB reads take a few us each and keep their
 * batches.
 */
#define URING_SLOW_NS 20000u
/*
 * Where a ring thread runs. Pinned to its queue's CPU, it answers on the
 * CPU that asked, where the caller waits: hot 4 KiB reads over the ring ran
 * at 83k IOPS at QD1 pinned against 15-40k with half the threads free, and
 * at 343-352k at QD32x2 against 236-243k with none pinned. But one stream's
 * requests all come from one CPU's queue, and pinned, its threads copy
 * 256 KiB per request on that CPU while the other idles: cold 1 MiB writes
 * 1975 and 2005 MB/s pinned against 2154 and 2269 spread. So a thread that
 * sees a request of URING_SPREAD bytes or more runs anywhere, and goes back
 * to its CPU once it has seen none for URING_REPIN_NS.
 */
#define URING_SPREAD   (64u << 10)
#define URING_REPIN_NS 50000000u

struct uring_ent {
	struct uring_req_header *hdr;
	char *payload;
	struct iovec iov[2];
	uint64_t unique; /* of the request being dispatched */
	size_t touched;  /* payload bytes that may be resident */
	bool answered;   /* the reply is in the entry */
};

struct uring_thread {
	struct fs_uring *u;
	unsigned qid;
	pthread_t tid;
	bool started;
	bool done; /* under fs_uring.lock: no more signals to this thread */
	bool ring_ok;
	bool spread;          /* running anywhere, not on its queue's CPU */
	uint64_t last_big_ns; /* when it last saw a request >= URING_SPREAD */
	struct io_uring ring;
	struct uring_ent ents[URING_ENTRIES];
	struct uring_req_header *hdrs;
	char *payloads;
	char *flat; /* a request reassembled for libfuse */
};

enum uring_phase {
	PH_SETUP, /* threads are preparing their rings */
	PH_WAIT,  /* waiting for the INIT reply */
	PH_GO,    /* INIT said io_uring: register and serve */
	PH_OFF,   /* INIT did not: the threads leave */
};

struct fs_uring {
	struct fs_ctx *ctx;
	struct fuse_session *se;
	int fd;
	unsigned nq;    /* the kernel's queues: one per possible CPU */
	unsigned per_q; /* threads per queue */
	size_t payload; /* bytes per entry's payload buffer */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum uring_phase phase;
	unsigned nsetup; /* threads done preparing */
	bool setup_failed;
	atomic_bool stop;
	/* The INIT request, 0 until seen (read by every reply, hence atomic). */
	_Atomic uint64_t init_unique;
	bool init_offered; /* the kernel offered FUSE_OVER_IO_URING */
	atomic_int error;
	atomic_size_t resident; /* sum of the entries' touched bytes */
	cpu_set_t anywhere;     /* the CPUs the daemon may run on */
	unsigned nthreads;
	struct uring_thread t[];
};

/* The entry whose request this thread is dispatching. */
static _Thread_local struct uring_ent *uring_current;

/*----------------------------------------------------------------
 * Whether the kernel allows it
 *--------------------------------------------------------------*/

bool fs_uring_kernel_enabled(void)
{
	char c = 'N';
	int fd = open(URING_PARAM, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = 'N';
	close(fd);
	return c == 'Y' || c == 'y' || c == '1';
}

/* The kernel makes one queue per possible CPU: "0-1", "0", "0-3,5". */
static unsigned possible_cpus(void)
{
	char buf[256] = "";
	unsigned max = 0;
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	for (char *p = buf; *p;) {
		char *end;
		unsigned long v;

		if (*p < '0' || *p > '9') { /* '-' or ',' between numbers */
			p++;
			continue;
		}
		v = strtoul(p, &end, 10);
		if (v > max && v < 65536)
			max = (unsigned)v;
		p = end;
	}
	return buf[0] ? max + 1 : (unsigned)sysconf(_SC_NPROCESSORS_CONF);
}

/*----------------------------------------------------------------
 * Set-up and tear-down of one thread's ring
 *--------------------------------------------------------------*/

static void thread_unprepare(struct uring_thread *t)
{
	if (t->ring_ok)
		io_uring_queue_exit(&t->ring);
	t->ring_ok = false;
	if (t->payloads)
		munmap(t->payloads, t->u->payload * URING_ENTRIES);
	if (t->flat)
		munmap(t->flat, t->u->payload + 4096);
	free(t->hdrs);
	t->payloads = t->flat = NULL;
	t->hdrs = NULL;
}

/* Newest io_uring set-up first: DEFER_TASKRUN runs the kernel's work for
 * us only when we wait, so it does not interrupt a batch being served. */
static int ring_init(struct io_uring *ring)
{
	static const unsigned flags[] = {
	    IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN,
	    IORING_SETUP_SQE128,
	};
	int err = -EINVAL;

	for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct io_uring_params p = {.flags = flags[i]};

		err = io_uring_queue_init_params(URING_ENTRIES * 2, ring, &p);
		if (err != -EINVAL)
			break;
	}
	return err;
}

static int thread_prepare(struct uring_thread *t)
{
	size_t pl = t->u->payload;
	int err;

	t->hdrs = aligned_alloc(64, URING_ENTRIES * sizeof(*t->hdrs));
	t->payloads = mmap(NULL, pl * URING_ENTRIES, PROT_READ | PROT_WRITE,
	                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	t->flat = mmap(NULL, pl + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->payloads == MAP_FAILED)
		t->payloads = NULL;
	if (t->flat == MAP_FAILED)
		t->flat = NULL;
	if (!t->hdrs || !t->payloads || !t->flat)
		return -ENOMEM;
	memset(t->hdrs, 0, URING_ENTRIES * sizeof(*t->hdrs));
	err = ring_init(&t->ring);
	if (err)
		return err;
	t->ring_ok = true;
	for (unsigned i = 0; i < URING_ENTRIES; i++) {
		struct uring_ent *e = &t->ents[i];

		*e = (struct uring_ent){.hdr = &t->hdrs[i], .payload = t->payloads + i * pl};
		e->iov[0] = (struct iovec){.iov_base = e->hdr, .iov_len = sizeof(*e->hdr)};
		e->iov[1] = (struct iovec){.iov_base = e->payload, .iov_len = pl};
	}
	return 0;
}

/*----------------------------------------------------------------
 * Commands to the kernel
 *--------------------------------------------------------------*/

static struct io_uring_sqe *cmd_sqe(struct uring_thread *t, unsigned op, unsigned idx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
	struct uring_cmd_req *req;

	if (!sqe) {
		/* Never more entries than half the SQ ring: flush and retry. */
		io_uring_submit(&t->ring);
		sqe = io_uring_get_sqe(&t->ring);
	}
	if (!sqe)
		return NULL;
	memset(sqe, 0, 2 * sizeof(*sqe)); /* a 128-byte SQE */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = t->u->fd;
	sqe->cmd_op = op;
	sqe->user_data = idx;
	req = (struct uring_cmd_req *)sqe->cmd;
	req->qid = (uint16_t)t->qid;
	return sqe;
}

static int queue_register(struct uring_thread *t, unsigned idx, uint16_t qid)
{
	struct io_uring_sqe *sqe = cmd_sqe(t, URING_CMD_REGISTER, idx);

	if (!sqe)
		return -EBUSY;
	((struct uring_cmd_req *)sqe->cmd)->qid = qid;
	sqe->addr = (uint64_t)(uintptr_t)t->ents[idx].iov;
	sqe->len = 2;
	return 0;
}

static int queue_commit(struct uring_thread *t, unsigned idx)
{
	struct io_uring_sqe *sqe = cmd_sqe(t, URING_CMD_COMMIT_AND_FETCH, idx);

	if (!sqe)
		return -EBUSY;
	((struct uring_cmd_req *)sqe->cmd)->commit_id = t->ents[idx].hdr->ent.commit_id;
	return 0;
}

/*----------------------------------------------------------------
 * Replies: the session's custom I/O
 *--------------------------------------------------------------*/

/* Copy @len bytes from @iov (@count parts) starting at byte @skip to @dst. */
static void iov_gather(const struct iovec *iov, int count, size_t skip, char *dst, size_t len)
{
	for (int i = 0; i < count && len; i++) {
		size_t n = iov[i].iov_len;

		if (skip >= n) {
			skip -= n;
			continue;
		}
		n -= skip;
		if (n > len)
			n = len;
		memcpy(dst, (const char *)iov[i].iov_base + skip, n);
		dst += n;
		len -= n;
		skip = 0;
	}
}

static size_t iov_total(const struct iovec *iov, int count)
{
	size_t n = 0;

	for (int i = 0; i < count; i++)
		n += iov[i].iov_len;
	return n;
}

/* The reply to the entry's request goes into the entry, for the commit;
 * @out is its header, already gathered from @iov. */
static ssize_t reply_into(struct fs_uring *u, struct uring_ent *e, struct fuse_out_header out,
                          const struct iovec *iov, int count, size_t total)
{
	size_t body = total - sizeof(out);

	if (body > u->payload) {
		fs_log(LOG_ERR, "a %zu-byte FUSE reply does not fit a ring entry; failing it",
		       body);
		out.error = -EIO;
		body = 0;
	}
	if (out.error)
		body = 0;
	iov_gather(iov, count, sizeof(out), e->payload, body);
	out.len = (uint32_t)(sizeof(out) + body);
	memcpy(e->hdr->in_out, &out, sizeof(out));
	e->hdr->ent.payload_sz = (uint32_t)body;
	e->answered = true;
	return (ssize_t)total;
}

static void set_phase(struct fs_uring *u, enum uring_phase ph)
{
	pthread_mutex_lock(&u->lock);
	u->phase = ph;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
}

/*
 * The INIT reply: say io_uring when the kernel offered it and every thread
 * is ready, and record the payload size the kernel will require.
 */
static ssize_t reply_init(struct fs_uring *u, int fd, const struct iovec *iov, int count,
                          size_t total)
{
	unsigned char msg[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)] = {0};
	struct fuse_init_out *o = (void *)(msg + sizeof(struct fuse_out_header));
	struct iovec one = {.iov_base = msg, .iov_len = total};
	bool go;
	ssize_t res;

	atomic_store(&u->init_unique, 0);
	if (total > sizeof(msg) || total < sizeof(struct fuse_out_header) + 40) {
		/* An error, or a layout we do not know: no io_uring. */
		set_phase(u, PH_OFF);
		return writev(fd, iov, count);
	}
	iov_gather(iov, count, 0, (char *)msg, total);
	pthread_mutex_lock(&u->lock);
	go = u->init_offered && !u->setup_failed && u->nsetup == u->nthreads &&
	     !atomic_load(&u->stop) && !((struct fuse_out_header *)msg)->error;
	pthread_mutex_unlock(&u->lock);
	if (go && (!(o->flags & FUSE_MAX_PAGES) || o->max_write < 4096)) {
		fs_log(LOG_WARNING,
		       "unexpected FUSE INIT reply (no max_pages); not using io_uring");
		go = false;
	}
	if (go) {
		/* Payload buffers as large as the largest request: see URING_MAX_IO. */
		if (o->max_write > u->payload)
			o->max_write = (uint32_t)u->payload;
		if ((size_t)o->max_pages * 4096 > u->payload)
			o->max_pages = (uint16_t)(u->payload / 4096);
		o->flags |= URING_INIT_EXT;
		o->flags2 |= (uint32_t)(URING_INIT_FLAG >> 32);
	}
	res = writev(fd, &one, 1);
	/* The kernel has processed INIT when the write returns. */
	set_phase(u, go && res >= 0 ? PH_GO : PH_OFF);
	if (go && res >= 0)
		fs_log(LOG_NOTICE,
		       "FUSE requests over io_uring: %u queues x %u threads x %u entries", u->nq,
		       u->per_q, URING_ENTRIES);
	if (!go)
		fs_log(LOG_NOTICE, "FUSE requests come through /dev/fuse reads (%s)",
		       !u->init_offered ? "the kernel did not offer io_uring"
		                        : "io_uring could not be set up");
	return res;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct fs_ctx *ctx = userdata;
	struct fs_uring *u = ctx->uring;
	struct uring_ent *e = uring_current;
	struct fuse_out_header out = {0};
	size_t total = iov_total(iov, count);
	uint64_t init;

	if (total < sizeof(out))
		return writev(fd, iov, count);
	iov_gather(iov, count, 0, (char *)&out, sizeof(out));
	if (e && out.unique == e->unique && !e->answered)
		return reply_into(u, e, out, iov, count, total);
	init = atomic_load_explicit(&u->init_unique, memory_order_relaxed);
	if (init && out.unique == init)
		return reply_init(u, fd, iov, count, total);
	return writev(fd, iov, count);
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static const struct fuse_custom_io uring_io = {.writev = io_writev, .read = io_read};

void fs_uring_init_request(struct fs_uring *u, const void *req, size_t len)
{
	const struct fuse_in_header *in = req;
	const struct fuse_init_in *ii = (const void *)(in + 1);

	if (len < sizeof(*in) + 40) /* up to flags2, protocol 7.36 */
		return;
	u->init_offered = (ii->flags & URING_INIT_EXT) && (ii->flags2 & (URING_INIT_FLAG >> 32));
	atomic_store(&u->init_unique, in->unique);
}

/*----------------------------------------------------------------
 * Serving
 *--------------------------------------------------------------*/

/* Hand the entry's request to libfuse, which answers into the entry. */
static void dispatch(struct uring_thread *t, struct uring_ent *e)
{
	struct fs_uring *u = t->u;
	struct fuse_in_header in;
	uint32_t pay = e->hdr->ent.payload_sz;
	size_t op_len;

	memcpy(&in, e->hdr->in_out, sizeof(in));
	e->unique = in.unique;
	e->answered = false;
	op_len = in.len - sizeof(in) - pay;
	if (in.len < sizeof(in) + pay || op_len > sizeof(e->hdr->op_in) || pay > u->payload) {
		fs_log(LOG_ERR, "malformed FUSE request from the ring (opcode %u, %u bytes)",
		       in.opcode, in.len);
	} else if (in.opcode == FUSE_WRITE && op_len == sizeof(struct fuse_write_in) &&
	           fs_rx_write_target(u->ctx, e->hdr->in_out, e->hdr->op_in, pay)) {
		unsigned char head[sizeof(in) + sizeof(struct fuse_write_in)];
		struct fs_src src = {.flat = e->payload};

		memcpy(head, &in, sizeof(in));
		memcpy(head + sizeof(in), e->hdr->op_in, op_len);
		uring_current = e;
		fs_rx_dispatch_write(u->se, head, &src);
	} else {
		struct fuse_buf buf = {.mem = t->flat, .size = in.len};

		memcpy(t->flat, &in, sizeof(in));
		memcpy(t->flat + sizeof(in), e->hdr->op_in, op_len);
		memcpy(t->flat + sizeof(in) + op_len, e->payload, pay);
		uring_current = e;
		fuse_session_process_buf(u->se, &buf);
	}
	uring_current = NULL;
	if (!e->answered) {
		/* Every request that reaches the ring expects an answer. */
		struct fuse_out_header out = {
		    .len = sizeof(out), .error = -EIO, .unique = in.unique};

		memcpy(e->hdr->in_out, &out, sizeof(out));
		e->hdr->ent.payload_sz = 0;
	}
}

static bool conn_gone(int res)
{
	return res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED || res == -ENODEV;
}

/*
 * Account the payload the entry's request and reply used, and give pages
 * back when the entries hold more than URING_RESIDENT_CAP. Only before the
 * commit: after it the kernel may be writing the next request there.
 */
static void trim_payload(struct fs_uring *u, struct uring_ent *e, size_t req_len)
{
	size_t used = req_len > e->hdr->ent.payload_sz ? req_len : e->hdr->ent.payload_sz;
	size_t keep = e->hdr->ent.payload_sz; /* the reply stays */
	size_t page = 4096;

	if (used > e->touched) {
		atomic_fetch_add(&u->resident, used - e->touched);
		e->touched = used;
	}
	if (keep < URING_KEEP)
		keep = URING_KEEP;
	keep = (keep + page - 1) / page * page;
	if (e->touched <= keep || atomic_load(&u->resident) <= URING_RESIDENT_CAP)
		return;
	if (madvise(e->payload + keep, e->touched - keep, MADV_DONTNEED) == 0) {
		atomic_fetch_sub(&u->resident, e->touched - keep);
		e->touched = keep;
	}
}

/* The device @e's request reads, with its fuse_read_in in @r; or NULL. */
static struct fs_device *read_target(const struct fs_uring *u, const struct uring_ent *e,
                                     struct fuse_read_in *r)
{
	struct fuse_in_header in;
	struct fs_node n;

	memcpy(&in, e->hdr->in_out, sizeof(in));
	if (in.opcode != FUSE_READ || in.len < sizeof(in) + sizeof(*r))
		return NULL;
	if (!fs_node_of(u->ctx, in.nodeid, &n) || n.kind != FS_K_DEVFILE)
		return NULL;
	memcpy(r, e->hdr->op_in, sizeof(*r));
	return u->ctx->devs[n.dev];
}

/* Adjacent READs of one batch, to be started as one read of the backing. */
struct read_run {
	struct fs_device *dev;
	uint64_t off, len;
};

static void run_start(struct read_run *run)
{
	if (run->dev)
		fs_dev_prefetch(run->dev, run->len, run->off);
	run->dev = NULL;
}

/* Add a READ to the run, or start the run and begin a new one with it. */
static void run_add(struct read_run *run, struct fs_device *dev, const struct fuse_read_in *r)
{
	if (run->dev == dev && r->offset == run->off + run->len) {
		run->len += r->size;
		return;
	}
	run_start(run);
	*run = (struct read_run){.dev = dev, .off = r->offset, .len = r->size};
}

/*
 * Look at the batch before serving it. A thread answers its batch in order,
 * so a cold read blocks the rest of the batch on the disk, one read after
 * another; over the ring a 1 MiB read is four requests, often in one batch.
 * Starting every READ's blocks first overlaps them (cold 1 MiB reads over
 * the ring: 1357 and 1542 MB/s without, 1852 and 1885 with), adjacent ones
 * as one read of the backing (1908 against 1996 MB/s, averages of 4). A
 * batch of one needs none: its read starts all its blocks itself. Returns
 * whether a request moves URING_SPREAD bytes or more.
 */
static bool look_ahead(struct uring_thread *t)
{
	struct io_uring_cqe *cqe;
	struct read_run run = {0};
	unsigned head, n = io_uring_cq_ready(&t->ring);
	bool big = false;

	io_uring_for_each_cqe(&t->ring, head, cqe)
	{
		const struct uring_ent *e = &t->ents[(unsigned)cqe->user_data];
		struct fuse_read_in r;
		struct fs_device *dev;

		if (cqe->res < 0)
			continue;
		if (e->hdr->ent.payload_sz >= URING_SPREAD)
			big = true;
		dev = read_target(t->u, e, &r);
		if (!dev)
			continue;
		if (r.size >= URING_SPREAD)
			big = true;
		if (n > 1)
			run_add(&run, dev, &r);
	}
	run_start(&run);
	return big;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin_to_queue_cpu(unsigned qid)
{
	cpu_set_t set;

	/* Requests are queued on the issuing CPU's queue: answering them on
	 * that CPU keeps the data in its cache. Not allowed there: run anywhere. */
	CPU_ZERO(&set);
	CPU_SET(qid, &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Run @t where its next requests are best answered: see URING_SPREAD. */
static void place(struct uring_thread *t, bool big, uint64_t now)
{
	if (big) {
		t->last_big_ns = now;
		if (!t->spread)
			(void)pthread_setaffinity_np(pthread_self(), sizeof(t->u->anywhere),
			                             &t->u->anywhere);
		t->spread = true;
	} else if (t->spread && now - t->last_big_ns >= URING_REPIN_NS) {
		pin_to_queue_cpu(t->qid);
		t->spread = false;
	}
}

/* Serve this batch of completions; false when every entry has ended. */
static bool serve_batch(struct uring_thread *t, unsigned *alive)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	uint64_t since = now_ns();

	place(t, look_ahead(t), since);

	io_uring_for_each_cqe(&t->ring, head, cqe)
	{
		unsigned idx = (unsigned)cqe->user_data;
		struct uring_ent *e = &t->ents[idx];
		size_t req_len;

		seen++;
		if (cqe->res < 0) {
			if (!conn_gone(cqe->res)) {
				int none = 0;

				fs_log(LOG_ERR, "FUSE ring queue %u: %s", t->qid,
				       strerror(-cqe->res));
				atomic_compare_exchange_strong(&t->u->error, &none, cqe->res);
			}
			(*alive)--;
			continue;
		}
		req_len = e->hdr->ent.payload_sz;
		dispatch(t, e);
		trim_payload(t->u, e, req_len);
		if (queue_commit(t, idx) != 0) {
			(*alive)--;
		}
		if (now_ns() - since > URING_SLOW_NS) {
			io_uring_submit(&t->ring);
			since = now_ns();
		}
	}
	io_uring_cq_advance(&t->ring, seen);
	return *alive > 0;
}

/*
 * Make the kernel give up on io_uring for this connection: it does so on a
 * failed REGISTER (an out-of-range queue), and sends requests through
 * /dev/fuse again.
 */
static void abandon(struct uring_thread *t)
{
	struct io_uring_cqe *cqe;

	if (queue_register(t, 0, UINT16_MAX) == 0 && io_uring_submit_and_wait(&t->ring, 1) >= 0 &&
	    io_uring_wait_cqe(&t->ring, &cqe) == 0)
		io_uring_cqe_seen(&t->ring, cqe);
}

static void serve(struct uring_thread *t)
{
	struct fs_uring *u = t->u;
	unsigned alive = URING_ENTRIES;
	int err = 0;

	for (unsigned i = 0; i < URING_ENTRIES && !err; i++)
		err = queue_register(t, i, (uint16_t)t->qid);
	if (!err) {
		int res = io_uring_submit(&t->ring);

		err = res < 0 ? res : 0;
	}
	if (err) {
		fs_log(LOG_ERR, "FUSE ring queue %u: cannot register: %s; back to /dev/fuse",
		       t->qid, strerror(-err));
		abandon(t);
		return;
	}
	while (!fuse_session_exited(u->se) && !atomic_load(&u->stop)) {
		int res = io_uring_submit_and_wait(&t->ring, 1);

		if (res < 0 && res != -EINTR && res != -EAGAIN && res != -EBUSY) {
			int none = 0;

			fs_log(LOG_ERR, "FUSE ring queue %u: %s", t->qid, strerror(-res));
			atomic_compare_exchange_strong(&u->error, &none, res);
			break;
		}
		if (!serve_batch(t, &alive))
			break;
	}
	/* Unmounted, or the session was told to end: so is every queue. */
	fuse_session_exit(u->se);
}

static void *thread_main(void *arg)
{
	struct uring_thread *t = arg;
	struct fs_uring *u = t->u;
	sigset_t usr1;
	bool go;
	int err;

	/* SIGUSR1 interrupts the wait so the thread sees the session end. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	pthread_setname_np(pthread_self(), "bufiofs-ring");
	pin_to_queue_cpu(t->qid);
	err = thread_prepare(t);
	pthread_mutex_lock(&u->lock);
	if (err) {
		u->setup_failed = true;
		fs_log(LOG_WARNING, "FUSE ring queue %u: cannot set up io_uring: %s", t->qid,
		       strerror(-err));
	}
	u->nsetup++;
	pthread_cond_broadcast(&u->cond);
	while (u->phase != PH_GO && u->phase != PH_OFF && !atomic_load(&u->stop))
		pthread_cond_wait(&u->cond, &u->lock);
	go = u->phase == PH_GO && !err && !atomic_load(&u->stop);
	pthread_mutex_unlock(&u->lock);
	if (go)
		serve(t);
	thread_unprepare(t);
	pthread_mutex_lock(&u->lock);
	t->done = true;
	pthread_mutex_unlock(&u->lock);
	return NULL;
}

/*----------------------------------------------------------------
 * Life cycle
 *--------------------------------------------------------------*/

struct fs_uring *fs_uring_new(struct fs_ctx *ctx)
{
	unsigned nq = possible_cpus();
	unsigned per_q;
	struct fs_uring *u;

	if (!nq || nq > UINT16_MAX)
		return NULL;
	per_q = nq >= URING_THREADS_TOTAL ? 1 : URING_THREADS_TOTAL / nq;
	u = calloc(1, sizeof(*u) + (size_t)nq * per_q * sizeof(u->t[0]));
	if (!u)
		return NULL;
	u->ctx = ctx;
	u->fd = -1;
	u->nq = nq;
	u->per_q = per_q;
	u->nthreads = nq * per_q;
	/* The kernel wants room for max(max_write, max_pages pages, 8 KiB). */
	u->payload = URING_MAX_IO;
	if (sched_getaffinity(0, sizeof(u->anywhere), &u->anywhere) != 0) {
		CPU_ZERO(&u->anywhere);
		for (unsigned i = 0; i < nq && i < CPU_SETSIZE; i++)
			CPU_SET(i, &u->anywhere);
	}
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	atomic_init(&u->error, 0);
	atomic_init(&u->resident, 0);
	atomic_init(&u->stop, false);
	atomic_init(&u->init_unique, 0);
	return u;
}

int fs_uring_attach(struct fs_uring *u, struct fuse_session *se)
{
	int fd = fuse_session_fd(se);
	int err = fuse_session_custom_io(se, &uring_io, fd);

	if (err)
		return err;
	u->se = se;
	u->fd = fd;
	return 0;
}

int fs_uring_start(struct fs_uring *u)
{
	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < u->nthreads; i++) {
		struct uring_thread *t = &u->t[i];
		int err;

		t->u = u;
		t->qid = i % u->nq;
		err = pthread_create(&t->tid, NULL, thread_main, t);
		if (err) {
			fs_log(LOG_WARNING, "cannot start FUSE ring thread %u: %s", i,
			       strerror(err));
			u->setup_failed = true;
			u->nthreads = i; /* INIT will not ask for io_uring */
			break;
		}
		t->started = true;
	}
	while (u->nsetup < u->nthreads)
		pthread_cond_wait(&u->cond, &u->lock);
	u->phase = PH_WAIT;
	pthread_mutex_unlock(&u->lock);
	return u->setup_failed ? -EIO : 0;
}

void fs_uring_interrupt(struct fs_uring *u)
{
	pthread_mutex_lock(&u->lock);
	atomic_store(&u->stop, true);
	pthread_cond_broadcast(&u->cond);
	for (unsigned i = 0; i < u->nthreads; i++)
		if (u->t[i].started && !u->t[i].done)
			pthread_kill(u->t[i].tid, SIGUSR1);
	pthread_mutex_unlock(&u->lock);
}

int fs_uring_join(struct fs_uring *u)
{
	for (unsigned i = 0; i < u->nthreads; i++)
		if (u->t[i].started)
			pthread_join(u->t[i].tid, NULL);
	return atomic_load(&u->error);
}

void fs_uring_free(struct fs_uring *u)
{
	if (!u)
		return;
	pthread_cond_destroy(&u->cond);
	pthread_mutex_destroy(&u->lock);
	free(u);
}
