#!/bin/bash
# FUSE over io_uring (src/fuse/uring.c): the daemon uses it exactly when asked
# (fuse_uring=auto, the default, or yes) and allowed, says so, and
# serves everything through it (reads, writes of
# every size, control files, fsync) with the same results as /dev/fuse; a
# daemon killed with requests in flight leaves a mount that can be cleaned up
# and served again; fuse_uring=yes on a kernel that does not allow it stops
# start-up with a message that says how to enable it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_tools fio cmp
cd "$TMP" # fio leaves verify state files in the working directory
URING_OPTS=() # this test chooses the transport of each daemon itself

BACKING=$TMP/backing.img
MNT=$TMP/fuse
head -c 256M /dev/urandom >"$BACKING"
cp "$BACKING" "$TMP/orig.img"

RING_LINE="FUSE requests over io_uring"
DEV_LINE="FUSE requests come through /dev/fuse reads"

# log_since N: the daemon log from line N on.
log_since() {
	tail -n +"$1" "$TMP/daemon.log"
}

log_lines() {
	wc -l <"$TMP/daemon.log"
}

mkdir -p "$MNT"
: >"$TMP/daemon.log"

log "fuse_uring=yes refused while the fuse module does not allow it"
set_uring N
from=$(($(log_lines) + 1))
RC=0
"$BUFIOFS" -f -o fuse_uring=yes "$BACKING" "$MNT" >>"$TMP/daemon.log" 2>&1 || RC=$?
[ "$RC" -ne 0 ] || fail "fuse_uring=yes started although enable_uring is N"
log_since "$from" | grep -q "enable_uring" || fail "no hint at enable_uring in: $(log_since "$from")"
mountpoint -q "$MNT" && fail "a refused start left $MNT mounted"

log "fuse_uring=auto with the module switch off: /dev/fuse"
from=$(($(log_lines) + 1))
start_fg "$BACKING" "$MNT" -o fuse_uring=auto
log_since "$from" | grep -q "$DEV_LINE" || fail "auto did not report /dev/fuse with enable_uring=N"
cmp -n 1M "$MNT/disk" "$BACKING" || fail "read through /dev/fuse differs"
stop_term "$DAEMON_PID"

# transport_of OPTS LINE: a daemon started with -o OPTS logs LINE; then stopped.
transport_of() {
	local from=$(($(log_lines) + 1))
	start_fg "$BACKING" "$MNT" -o "$1"
	log_since "$from" | grep -q "$2" ||
		fail "-o $1 with enable_uring=$(cat "$URING_PARAM") did not log '$2': $(log_since "$from")"
	stop_term "$DAEMON_PID"
}

log "the default with the module switch off: /dev/fuse"
transport_of max_age_seconds=60 "$DEV_LINE"

log "fuse_uring=no with the module switch on: /dev/fuse; the default: io_uring"
set_uring Y
transport_of fuse_uring=no "$DEV_LINE"
transport_of max_age_seconds=60 "$RING_LINE"

log "fuse_uring=auto with the switch on: io_uring"
from=$(($(log_lines) + 1))
start_fg "$BACKING" "$MNT" -o fuse_uring=auto,max_cache_size_bytes=16M
log_since "$from" | grep -q "$RING_LINE" || fail "io_uring not used: $(log_since "$from")"
cmp "$MNT/disk" "$BACKING" || fail "a cold read over io_uring differs from the backing"

# Every request kind: lookups, getattr, reads of control files, writes to them.
[ "$(ctl "$MNT" max_cache_size_bytes)" = 16777216 ] || fail "control read over io_uring"
[ -z "$(write_err "$MNT/control/max_cache_size_bytes" 32M)" ] || fail "control write over io_uring"
[ "$(ctl "$MNT" max_cache_size_bytes)" = 33554432 ] || fail "control write did not apply"
case "$(write_err "$MNT/control/max_cache_size_bytes" nonsense)" in
*"Invalid argument"*) ;;
*) fail "a bad control write over io_uring did not fail with EINVAL" ;;
esac

# Deep queues on both CPUs' queues, odd sizes, writes up to 1 MiB (larger
# than a 4 KiB ring payload, as large as a request gets), a cache smaller
# than the data.
fio_verify qd32 0 32M --ioengine=libaio --direct=1 --iodepth=32 --numjobs=2 --bsrange=4k-1m \
	--offset_increment=32M
fio_verify odd 64M 32M --ioengine=psync --bs=3k --numjobs=1
fio_verify fsync 96M 32M --ioengine=psync --bs=64k --fsync=4

log "the device equals a model after mixed writes"
cp "$MNT/disk" "$TMP/model.img"
python3 - "$MNT/disk" "$TMP/model.img" <<'PY'
import os, random, sys
rng = random.Random(7)
d = os.open(sys.argv[1], os.O_WRONLY)
m = os.open(sys.argv[2], os.O_WRONLY)
size = os.path.getsize(sys.argv[2])
for _ in range(200):
    n = rng.choice([1, 100, 4096, 5000, 65536, 1 << 20, 3 << 20])
    off = rng.randrange(size - n)
    data = rng.randbytes(n)
    if os.pwrite(d, data, off) != n or os.pwrite(m, data, off) != n:
        sys.exit("short write")
os.fsync(d)
PY
cmp "$MNT/disk" "$TMP/model.img" || fail "device differs from the model over io_uring"
stop_term "$DAEMON_PID"
cmp "$BACKING" "$TMP/model.img" || fail "backing differs from the model after SIGTERM"

log "kill -9 with requests in flight, then clean up and serve again"
start_fg "$BACKING" "$MNT" -o fuse_uring=yes
fio --name=busy --filename="$MNT/disk" --rw=randread --bs=4k --size=256M --ioengine=libaio \
	--direct=1 --iodepth=32 --numjobs=2 --runtime=30 --time_based \
	--output="$TMP/fio-busy.log" >/dev/null 2>&1 &
FIO=$!
sleep 1
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
# fio's requests fail (the connection is gone) instead of hanging.
for ((n = 0; n < 100; n++)); do
	kill -0 "$FIO" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$FIO" 2>/dev/null && { kill -KILL "$FIO"; fail "fio hung after the daemon was killed"; }
wait "$FIO" 2>/dev/null || true
fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
from=$(($(log_lines) + 1))
start_fg "$BACKING" "$MNT" -o fuse_uring=yes
log_since "$from" | grep -q "$RING_LINE" || fail "the restarted daemon does not use io_uring"
cmp "$MNT/disk" "$TMP/model.img" || fail "data after kill -9 and restart differs"

# A ring thread answers its batch in order: it starts the backing reads of
# every READ in the batch first. With read-ahead off and 4 KiB blocks, only
# that prefetches; the blocks it read are then served as hits by cmp.
log "cold random reads in one batch are read from the backing together"
echo 0 >"$MNT/control/disk/read_ahead_kb"
echo 1 >"$MNT/control/disk/drop_caches"
echo 1 >"$MNT/control/disk/clear_stats"
fio --name=cold --filename="$MNT/disk" --rw=randread --bs=4k --size=256M --ioengine=libaio \
	--direct=1 --iodepth=32 --numjobs=2 --runtime=3 --time_based \
	--output="$TMP/fio-cold.log" >/dev/null 2>&1 || fail "cold random reads failed: $(cat "$TMP/fio-cold.log")"
[ "$(ctl "$MNT" disk/prefetches)" -gt 0 ] ||
	fail "no read of a batch was started ahead of its turn ($(ctl "$MNT" disk/misses) misses)"
cmp "$MNT/disk" "$TMP/model.img" || fail "blocks read ahead of their turn differ from the backing"
stop_term "$DAEMON_PID"

# Ring threads answer on their queue's CPU; one that sees a request of 64 KiB
# or more runs on any CPU, and goes back to its own after 50 ms of small ones.
# ring_spread: how many ring threads may run on more than one CPU.
ring_spread() {
	local t n=0
	for t in /proc/"$DAEMON_PID"/task/*; do
		[ "$(cat "$t/comm")" = bufiofs-ring ] || continue
		awk '/^Cpus_allowed_list/ { exit !($2 ~ /[-,]/) }' "$t/status" && n=$((n + 1))
	done
	echo "$n"
}
if [ "$(nproc)" -ge 2 ]; then
	log "ring threads leave their CPU for large requests and come back after small ones"
	start_fg "$BACKING" "$MNT" -o fuse_uring=yes
	[ "$(ring_spread)" -eq 0 ] || fail "$(ring_spread) ring threads are not on their queue's CPU at start"
	head -c 32M /dev/urandom >"$TMP/big"
	dd if="$TMP/big" of="$MNT/disk" bs=1M oflag=direct conv=notrunc status=none
	[ "$(ring_spread)" -gt 0 ] || fail "1 MiB writes left every ring thread on its queue's CPU"
	cmp -n 32M "$TMP/big" "$MNT/disk" || fail "1 MiB writes over the ring read back wrong"
	sleep 0.1
	# 32 requests on each CPU's queue keep each of its 32 entries busy.
	fio --name=small --filename="$MNT/disk" --rw=randread --bs=4k --size=256M --ioengine=libaio \
		--direct=1 --iodepth=32 --numjobs=2 --cpus_allowed=0,1 --cpus_allowed_policy=split \
		--runtime=2 --time_based --output="$TMP/fio-small.log" >/dev/null 2>&1 ||
		fail "small random reads failed: $(cat "$TMP/fio-small.log")"
	[ "$(ring_spread)" -eq 0 ] || fail "$(ring_spread) ring threads still run anywhere after 2 s of 4 KiB reads"
	stop_term "$DAEMON_PID"
fi
log "ok"
