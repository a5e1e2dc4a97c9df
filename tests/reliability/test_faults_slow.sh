#!/bin/bash
# A slow backing (bufiofs-fault, 100 ms added to every read, write, flush and
# discard): writes, fsync, cold reads, parallel readers, discards and the final
# write-back all complete with the right data, the control directory answers
# while backing I/O waits, and nothing hangs (every step under a timeout).
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head sync truncate timeout fallocate
use_fault_daemon

fault_files 32M $((4 << 20))
cp "$BACKING" "$TMP/expected"
start_fg "$BACKING" "$MNT" -o writeback_ratio=1000,dirty_expire_seconds=0
inject "$MNT" "op=all delay_ms=100"

log "write 4M and fsync through a 100 ms backing"
timeout 60 dd if="$DATA" of="$D" bs=256k conv=notrunc,fsync status=none || fail "write + fsync failed"
dd if="$DATA" of="$TMP/expected" bs=256k conv=notrunc status=none
same_region "$BACKING" 0 $((4 << 20)) "$DATA" || fail "the backing lacks the data after fsync"

log "cold reads in parallel; the control directory answers meanwhile"
echo 1 >"$MNT/control/$C/drop_caches"
pids=()
for i in 0 1 2 3; do
	timeout 60 dd if="$D" of="$TMP/part$i" bs=64k skip=$((i * 16)) count=16 status=none &
	pids+=($!)
done
reading() { [ "$(timeout 10 cat "$MNT/control/$C/buffers_reading")" -gt 0 ]; }
wait_for 20 "backing reads in flight" reading
timeout 10 cat "$MNT/control/$C/stats" >/dev/null || fail "stats did not answer during slow reads"
timeout 10 cat "$MNT/control/metrics" >/dev/null || fail "metrics did not answer during slow reads"
for i in 0 1 2 3; do
	wait "${pids[$i]}" || fail "slow reader $i failed"
	cmp "$TMP/part$i" <(region "$DATA" $((i << 20)) $((1 << 20))) || fail "reader $i read wrong data"
done
[ "$(ctl "$MNT" $C/read_errors)" -eq 0 ] || fail "read_errors on a slow backing"

log "a discard and a partial write wait for the backing and are right"
timeout 60 fallocate -p -o $((1 << 20)) -l $((256 << 10)) "$D" || fail "punch hole failed"
dd if=/dev/zero of="$TMP/expected" bs=64k seek=16 count=4 conv=notrunc status=none
timeout 60 dd if="$DATA" of="$D" bs=512 seek=$((3 * 2048 + 3)) count=5 conv=notrunc status=none ||
	fail "partial write failed"
dd if="$DATA" of="$TMP/expected" bs=512 seek=$((3 * 2048 + 3)) count=5 conv=notrunc status=none
# 1M requests: each reads its missing blocks in one batch (100 ms), not one by one
timeout 60 cmp <(dd if="$D" bs=1M count=8 status=none) <(head -c $((8 << 20)) "$TMP/expected") ||
	fail "the device reads wrong after discard and partial write"

log "stopping with 2M dirty on the slow backing: the final write-back completes"
timeout 60 dd if="$DATA" of="$D" bs=256k seek=32 count=8 conv=notrunc status=none ||
	fail "write failed"
dd if="$DATA" of="$TMP/expected" bs=256k seek=32 count=8 conv=notrunc status=none
[ "$(ctl "$MNT" $C/write_errors)" -eq 0 ] || fail "write_errors on a slow backing"
kill -TERM "$DAEMON_PID"
timeout 120 tail --pid="$DAEMON_PID" -f /dev/null || fail "the daemon did not stop within 120 s"
wait_rc "$DAEMON_PID"
[ "$RC" -eq 0 ] || fail "exit status $RC after the slow final write-back"
cmp "$BACKING" "$TMP/expected" || fail "the backing differs after the final write-back"
log "ok"
