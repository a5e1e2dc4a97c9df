#!/bin/bash
# The FUSE worker pool over a slow backing (bufiofs-fault, 3 s added to every
# read): with fuse_running=1 only one worker runs while none waits, yet each
# worker that waits for the backing lets a parked one in, so 7 cold readers
# get 7 backing reads in flight and the 8th worker still answers the control
# directory. A worker stuck outside libbufio's waits (a stall in the fault
# backend's submit, as memory reclaim would) does not stop the others: the
# watcher lets a parked worker in. fuse_threads sets the number of workers.
# Data stays right and the daemon stops cleanly with workers parked.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp timeout
use_fault_daemon
# The pool under test serves /dev/fuse; over io_uring the ring's own threads
# would take the requests instead (CI runs the suite both ways).
URING_OPTS=(-o fuse_uring=no)

# fuse_workers PID: how many FUSE worker threads the daemon runs.
fuse_workers() {
	cat /proc/"$1"/task/*/comm | grep -c '^bufiofs-fuse$' || true
}

fault_files 64M $((8 << 20))
dd if="$DATA" of="$BACKING" bs=1M conv=notrunc status=none

log "fuse_threads=5: five workers"
start_fg "$BACKING" "$MNT" -o fuse_threads=5
[ "$(fuse_workers "$DAEMON_PID")" -eq 5 ] ||
	fail "fuse_threads=5 runs $(fuse_workers "$DAEMON_PID") workers"
stop_term "$DAEMON_PID"

log "fuse_running=1: 7 cold readers of a 3 s backing all reach the backing"
start_fg "$BACKING" "$MNT" -o fuse_running=1
[ "$(fuse_workers "$DAEMON_PID")" -eq 8 ] ||
	fail "the default runs $(fuse_workers "$DAEMON_PID") workers, not 8"
inject "$MNT" "op=read delay_ms=3000"
pids=()
for i in 0 1 2 3 4 5 6; do
	timeout 60 dd if="$D" of="$TMP/part$i" bs=4k skip=$((i * 256)) count=1 status=none &
	pids+=($!)
done
reading() { [ "$(timeout 10 cat "$MNT/control/$C/buffers_reading")" -ge 7 ]; }
wait_for 20 "7 backing reads in flight with one worker running" reading
for i in 0 1 2 3 4 5 6; do
	wait "${pids[$i]}" || fail "slow reader $i failed"
	cmp "$TMP/part$i" <(region "$DATA" $((i << 20)) 4096) || fail "reader $i read wrong data"
done

log "fuse_running=1: the running worker stuck outside the cache's waits"
inject "$MNT" clear
reads() { timeout 5 cat "$MNT/control/$C/fault_inject" | awk '$1 == "read" {print $2}'; }
before=$(reads)
inject "$MNT" "op=read start=32M end=33M stall_ms=15000"
timeout 60 dd if="$D" of="$TMP/stuck" bs=4k skip=$((32 * 256)) count=1 status=none &
stuck=$!
# Served while the stuck read is submitted and its worker still stalls:
# only a worker let in by the watcher can answer.
answered() { [ "$(reads)" = $((before + 1)) ] && kill -0 "$stuck" 2>/dev/null; }
wait_for 12 "the control directory answering while the running worker is stuck" answered
# Not one request per rescue: 20 cold reads, one request each, all served
# while the stall lasts.
for j in $(seq 0 19); do
	timeout 10 dd if="$D" of="$TMP/other" bs=4k skip=$((40 * 256 + j * 16)) count=1 status=none ||
		fail "cold read $j waited for the stuck worker"
	cmp "$TMP/other" <(region "$BACKING" $(((40 << 20) + j * 65536)) 4096) ||
		fail "cold read $j read wrong data"
done
kill -0 "$stuck" 2>/dev/null || fail "the stall ended before the other reads were served"
wait "$stuck" || fail "the stuck read failed"
cmp "$TMP/stuck" <(region "$BACKING" $((32 << 20)) 4096) || fail "the stuck read read wrong data"
log_has "stuck for over 1 s outside the cache's waits" || fail "the stuck worker was not logged"

log "hits with one worker running, then a clean stop with the others parked"
inject "$MNT" clear
timeout 60 cmp <(dd if="$D" bs=1M count=8 status=none) "$DATA" ||
	fail "the device reads wrong through one running worker"
timeout 60 cmp <(dd if="$D" bs=1M count=8 status=none) "$DATA" ||
	fail "the device reads wrong from the cache"
stop_term "$DAEMON_PID"
log "ok"
