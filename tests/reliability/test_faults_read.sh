#!/bin/bash
# Read EIO on some blocks of the backing (bufiofs-fault): those reads fail with
# EIO through the FUSE file, every other block reads right, cached blocks are
# still served, a partial write needing a failing read fails without leaving
# anything dirty, and nothing bad is cached: once the fault clears every block
# reads back right.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head
use_fault_daemon

BACKING=$TMP/backing.img
MNT=$TMP/fuse
D=$MNT/disk
K=4096
head -c $((8 << 20)) /dev/urandom >"$BACKING"
cp "$BACKING" "$TMP/expected"
start_fg "$BACKING" "$MNT" -o writeback_ratio=1000,dirty_expire_seconds=0

log "block 260 is cached before the fault"
same_region "$D" $((260 * K)) $K <(region "$BACKING" $((260 * K)) $K) || fail "block 260 reads wrong"

log "reads of blocks 256..271 fail with EIO"
inject "$MNT" "op=read start=1M end=$((1024 + 64))K error=EIO"
hits0=$(ctl "$MNT" disk/hits)
for blk in 256 263 271; do
	expect_errno "Input/output error" dd if="$D" of=/dev/null bs=4k skip=$blk count=1 status=none
done
# one request over good and bad blocks fails as a whole
expect_errno "Input/output error" dd if="$D" of=/dev/null bs=8k skip=127 count=2 status=none
expect_errno "Input/output error" dd if="$D" of=/dev/null bs=1M skip=1 count=1 status=none
[ "$(ctl "$MNT" disk/read_errors)" -ge 4 ] || fail "read_errors: $(ctl "$MNT" disk/read_errors)"
grep -q "^injected [1-9]" "$MNT/control/disk/fault_inject" || fail "no read was failed by the rule"

log "every other block reads right; the cached block 260 is still served"
same_region "$D" $((255 * K)) $K <(region "$BACKING" $((255 * K)) $K) || fail "block 255 reads wrong"
same_region "$D" $((272 * K)) $((64 * K)) <(region "$BACKING" $((272 * K)) $((64 * K))) ||
	fail "blocks 272.. read wrong"
same_region "$D" 0 $((256 * K)) "$BACKING" || fail "blocks 0..255 read wrong"
same_region "$D" $((260 * K)) $K <(region "$BACKING" $((260 * K)) $K) ||
	fail "cached block 260 was not served while its backing fails"
[ "$(ctl "$MNT" disk/hits)" -gt "$hits0" ] || fail "no hit counted for the cached block"

log "a partial write into a failing block fails with EIO and dirties nothing"
expect_errno "Input/output error" \
	dd if=/dev/zero of="$D" bs=512 seek=$((257 * 8 + 1)) count=1 conv=notrunc status=none
[ "$(ctl "$MNT" disk/buffers_dirty)" -eq 0 ] || fail "a failed read-modify-write left dirty data"

log "a whole-block write needs no read: it works and reads back"
head -c $K /dev/urandom >"$TMP/block"
dd if="$TMP/block" of="$D" bs=4k seek=258 conv=notrunc status=none || fail "whole-block write failed"
dd if="$TMP/block" of="$TMP/expected" bs=4k seek=258 conv=notrunc status=none
same_region "$D" $((258 * K)) $K "$TMP/block" || fail "block 258 does not read back"
same_region "$BACKING" $((258 * K)) $K "$TMP/block" || fail "block 258 was not written back on close"

log "the fault clears: every block reads right, nothing bad was cached"
inject "$MNT" clear
for blk in 256 257 263 271; do
	same_region "$D" $((blk * K)) $K <(region "$TMP/expected" $((blk * K)) $K) ||
		fail "block $blk reads wrong after the fault cleared"
done
echo 1 >"$MNT/control/disk/drop_caches"
cmp "$D" "$TMP/expected" || fail "the device differs from the backing after the fault"
[ "$(ctl "$MNT" disk/write_errors)" -eq 0 ] || fail "read faults counted as write errors"
stop_term "$DAEMON_PID"
cmp "$BACKING" "$TMP/expected" || fail "backing changed by read faults"
log "ok"
