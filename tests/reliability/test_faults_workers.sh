#!/bin/bash
# The FUSE worker pool over a slow backing (bufiofs-fault, 3 s added to every
# read): with fuse_running=1 only one worker runs while none waits, yet each
# worker that waits for the backing lets a parked one in, so 7 cold readers
# get 7 backing reads in flight and the 8th worker still answers the control
# directory. fuse_threads sets the number of workers. Data stays right and
# the daemon stops cleanly with workers parked.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp timeout
use_fault_daemon

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

log "hits with one worker running, then a clean stop with the others parked"
inject "$MNT" clear
timeout 60 cmp <(dd if="$D" bs=1M count=8 status=none) "$DATA" ||
	fail "the device reads wrong through one running worker"
timeout 60 cmp <(dd if="$D" bs=1M count=8 status=none) "$DATA" ||
	fail "the device reads wrong from the cache"
stop_term "$DAEMON_PID"
log "ok"
