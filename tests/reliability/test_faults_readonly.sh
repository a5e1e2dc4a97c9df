#!/bin/bash
# A persistently failing backing turns the device read-only (bufiofs-fault):
# after max_write_failures failed write-back attempts control/disk/mode reads
# read-only and the log says so; reads are served, nothing loops, and the
# background retry still writes the data once the fault clears; writes and
# fallocate fail with EROFS, fsync fails with EIO while the dirty data cannot
# be written; echo write > mode fails with EIO (mode unchanged) while the
# backing fails and returns the device to normal once it works.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head sync truncate fallocate
use_fault_daemon

fault_files 16M
MODE=$MNT/control/$C/mode
A=$TMP/a
B=$TMP/b
head -c $((256 << 10)) /dev/urandom >"$A"
head -c $((256 << 10)) /dev/urandom >"$B"
# Ratio 0: background write-back starts at once, and its retries alone
# reach the limit.
start_fg "$BACKING" "$MNT" -o max_write_failures=2,writeback_ratio=0,dirty_expire_seconds=0
[ "$(cat "$MODE")" = write ] || fail "mode: $(cat "$MODE"), want write"

log "background write-back fails twice: read-only"
inject "$MNT" "op=write error=EIO"
dd if="$A" of="$D" bs=64k conv=notrunc status=none 2>/dev/null || true # close: EIO
wait_for 30 "read-only mode after 2 failed attempts" is_ctl "$MNT" $C/mode read-only
log_has "disk: now read-only after 2 consecutive failed write-back attempts" ||
	fail "no log line for the switch to read-only"
[ "$(ctl "$MNT" $C/write_failures)" -ge 2 ] || fail "write_failures: $(ctl "$MNT" $C/write_failures)"

log "read-only: reads are served, nothing loops"
same_region "$D" 0 $((256 << 10)) "$A" || fail "the dirty data does not read back"
same_region "$D" $((4 << 20)) $((256 << 10)) <(head -c $((256 << 10)) /dev/zero) ||
	fail "an uncached region does not read back"
expect_errno "Invalid argument" bash -c "printf bogus > '$MODE'"
w0=$(ctl "$MNT" $C/writes)
sleep 2
w1=$(ctl "$MNT" $C/writes)
[ $((w1 - w0)) -le 128 ] || fail "$((w1 - w0)) writes in 2 s while failing: retried in a loop"
[ "$(ctl "$MNT" $C/buffers_dirty)" -eq 64 ] || fail "dirty: $(ctl "$MNT" $C/buffers_dirty), want 64"

log "the fault clears: the background retry writes the data; the mode stays"
inject "$MNT" clear
wait_for 40 "dirty data written back in read-only mode" is_ctl "$MNT" $C/buffers_dirty 0
same_region "$BACKING" 0 $((256 << 10)) "$A" || fail "backing lacks the data"
[ "$(cat "$MODE")" = read-only ] || fail "left read-only mode without being asked"
[ "$(ctl "$MNT" $C/write_failures)" -eq 0 ] || fail "write_failures not reset"
echo write >"$MODE" || fail "echo write > mode failed with a working backing"
[ "$(cat "$MODE")" = write ] || fail "mode: $(cat "$MODE"), want write"
log_has "disk: back in write mode" || fail "no log line for the way back"

log "fsync failures count too; in read-only mode fsync and echo write fail with EIO"
echo 1000 >"$MNT/control/$C/writeback_ratio" # only fsync writes now
inject "$MNT" "op=write error=EIO"
# the write is cached; the fsync of its close fails
expect_errno "Input/output error" dd if="$B" of="$D" bs=64k seek=64 conv=notrunc status=none
expect_errno "Input/output error" sync "$D"
[ "$(cat "$MODE")" = read-only ] || fail "two failed fsyncs did not make it read-only"
expect_errno "Read-only file system" dd if="$A" of="$D" bs=64k seek=64 conv=notrunc status=none
expect_errno "Read-only file system" fallocate -p -o 0 -l 4096 "$D"
expect_errno "Read-only file system" fallocate -z -o 8192 -l 4096 "$D"
expect_errno "Input/output error" sync "$D"
expect_errno "Input/output error" bash -c "echo write > '$MODE'"
[ "$(cat "$MODE")" = read-only ] || fail "a failed echo write changed the mode"
same_region "$D" $((4 << 20)) $((256 << 10)) "$B" || fail "the dirty data does not read back"
same_region "$BACKING" $((4 << 20)) $((256 << 10)) <(head -c $((256 << 10)) /dev/zero) ||
	fail "a failed write reached the backing"

log "echo write > mode writes it all back once the backing works"
inject "$MNT" clear
echo write >"$MODE" || fail "echo write > mode failed after the fault cleared"
[ "$(cat "$MODE")" = write ] || fail "mode: $(cat "$MODE"), want write"
[ "$(ctl "$MNT" $C/buffers_dirty)" -eq 0 ] || fail "dirty data left after echo write"
same_region "$BACKING" $((4 << 20)) $((256 << 10)) "$B" || fail "backing lacks the data"
dd if="$A" of="$D" bs=64k seek=128 conv=notrunc,fsync status=none || fail "write after recovery"

log "the admin can also choose read-only"
echo read-only >"$MODE"
expect_errno "Read-only file system" dd if="$A" of="$D" bs=4k count=1 conv=notrunc status=none
log_has "disk: now read-only on request" || fail "no log line for the requested switch"
echo write >"$MODE"
stop_term "$DAEMON_PID"
same_region "$BACKING" $((8 << 20)) $((256 << 10)) "$A" || fail "backing lacks the last data"
log "ok"
