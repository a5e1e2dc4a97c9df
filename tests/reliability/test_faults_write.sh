#!/bin/bash
# Write EIO during write-back (bufiofs-fault): fsync and close fail with EIO,
# the data stays dirty (reads see it, the backing does not), write_errors and
# write_failures count it and the log says so; over the memory budget the
# failing write-back is not retried in a loop; once the fault clears the
# background retry writes it without any fsync.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head sync truncate
use_fault_daemon

fault_files 16M $((1 << 20))
# A 512K budget for 1M of dirty data: over budget, the case that used to
# retry failing writes in a loop. No age or ratio write-back: only the retry.
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=512K,writeback_ratio=1000 \
	-o dirty_expire_seconds=0,max_write_failures=0

log "writes fail at write-back: close and fsync report EIO"
inject "$MNT" "op=write error=EIO"
expect_errno "Input/output error" dd if="$DATA" of="$D" bs=64k seek=32 conv=notrunc status=none
expect_errno "Input/output error" sync "$D"
[ "$(ctl "$MNT" $C/buffers_dirty)" -eq 256 ] || fail "dirty: $(ctl "$MNT" $C/buffers_dirty), want 256"
[ "$(ctl "$MNT" $C/write_errors)" -ge 256 ] || fail "write_errors: $(ctl "$MNT" $C/write_errors)"
[ "$(ctl "$MNT" $C/write_failures)" -ge 2 ] || fail "write_failures: $(ctl "$MNT" $C/write_failures)"
grep -q "^write_errors [1-9]" "$MNT/control/$C/stats" || fail "stats lacks write_errors"
grep -q 'bufio_write_errors_total{device="disk"} [1-9]' "$MNT/control/metrics" ||
	fail "metrics lack write_errors"
log_has "disk: write-back to $BACKING failed: Input/output error" || fail "no log line for the failure"
[ "$(ctl "$MNT" $C/mode)" = write ] || fail "max_write_failures=0 but the mode changed"

log "the data stays dirty: reads see it, the backing does not"
same_region "$D" $((2 << 20)) $((1 << 20)) "$DATA" || fail "the written data does not read back"
same_region "$BACKING" $((2 << 20)) $((1 << 20)) <(head -c $((1 << 20)) /dev/zero) ||
	fail "a failed write reached the backing"

log "no write-back loop while it fails"
w0=$(ctl "$MNT" $C/writes)
sleep 3
w1=$(ctl "$MNT" $C/writes)
# The backoff allows a retry pass or two of 256 writes here; a loop, millions.
[ $((w1 - w0)) -le 768 ] || fail "$((w1 - w0)) writes in 3 s while failing: retried in a loop"

log "the fault clears: the background retry writes the data, no fsync needed"
inject "$MNT" clear
wait_for 40 "dirty data written back after the fault cleared" is_ctl "$MNT" $C/buffers_dirty 0
same_region "$BACKING" $((2 << 20)) $((1 << 20)) "$DATA" || fail "backing lacks the data"
[ "$(ctl "$MNT" $C/write_failures)" -eq 0 ] || fail "write_failures not reset by a success"
log_has "disk: write-back to $BACKING works again" || fail "no log line for the recovery"

log "stopping: exit 0, the failures met before the retry lost nothing"
stop_term "$DAEMON_PID"
! log_has "final write-back" || fail "the final write-back was reported as failed"
same_region "$BACKING" $((2 << 20)) $((1 << 20)) "$DATA" || fail "backing lacks the data after exit"
log "ok"
