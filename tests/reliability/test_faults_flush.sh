#!/bin/bash
# Flush failures of the backing (bufiofs-fault): fsync, close, the flush action
# and a cache mode switch that needs a flush fail with EIO and change nothing,
# while the writes themselves reach the backing and nothing stays dirty; flush
# errors do not count as failed write-back attempts (no read-only mode); a
# one-off flush failure is reported once; all works again once it clears.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head sync truncate
use_fault_daemon

fault_files 16M $((512 << 10))
start_fg "$BACKING" "$MNT" -o max_write_failures=1,writeback_ratio=1000,dirty_expire_seconds=0

log "every flush fails: fsync and close fail with EIO, the data still reaches the backing"
inject "$MNT" "op=flush error=EIO"
f0=$(ctl "$MNT" $C/flushes)
expect_errno "Input/output error" dd if="$DATA" of="$D" bs=64k conv=notrunc status=none
same_region "$BACKING" 0 $((512 << 10)) "$DATA" || fail "the written data is not on the backing"
[ "$(ctl "$MNT" $C/buffers_dirty)" -eq 0 ] || fail "dirty data left although every write succeeded"
expect_errno "Input/output error" sync "$D"
expect_errno "Input/output error" bash -c "echo 1 > '$MNT/control/$C/flush'"
[ "$(ctl "$MNT" $C/flushes)" -ge $((f0 + 3)) ] || fail "flushes: $(ctl "$MNT" $C/flushes)"

log "flush errors are no failed write-back attempts"
[ "$(ctl "$MNT" $C/write_failures)" -eq 0 ] || fail "write_failures: $(ctl "$MNT" $C/write_failures)"
[ "$(ctl "$MNT" $C/write_errors)" -eq 0 ] || fail "write_errors: $(ctl "$MNT" $C/write_errors)"
[ "$(ctl "$MNT" $C/mode)" = write ] || fail "a flush failure made the device read-only"

log "leaving writeback needs a flush: the switch fails with EIO and changes nothing"
expect_errno "Input/output error" bash -c "echo writethrough > '$MNT/control/$C/cache_mode'"
[ "$(ctl "$MNT" $C/cache_mode)" = writeback ] || fail "cache_mode changed by a failed switch"

log "a single failed flush is reported once"
inject "$MNT" clear
inject "$MNT" "op=flush error=EIO count=1"
expect_errno "Input/output error" sync "$D"
sync "$D" || fail "the flush failed again after the one-off fault"

log "the fault clears: fsync, flush and the mode switch work"
inject "$MNT" clear
dd if="$DATA" of="$D" bs=64k seek=16 conv=notrunc,fsync status=none || fail "write + fsync failed"
echo 1 >"$MNT/control/$C/flush" || fail "the flush action failed"
echo writethrough >"$MNT/control/$C/cache_mode" || fail "the cache mode switch failed"
[ "$(ctl "$MNT" $C/cache_mode)" = writethrough ] || fail "cache_mode did not change"
stop_term "$DAEMON_PID"
same_region "$BACKING" $((1 << 20)) $((512 << 10)) "$DATA" || fail "backing lacks the data"
log "ok"
