#!/bin/bash
# The fixed namespace answers with proper errors: truncate, unlink, rename,
# mkdir, create, chmod; writes past the end get ENOSPC; the readonly option
# gives EROFS; bad command lines and configs stop the start with a message.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_tools truncate dd

BACKING=$TMP/backing.img
MNT=$TMP/fuse
SIZE=$((16 << 20))
truncate -s $SIZE "$BACKING"
start_fg "$BACKING" "$MNT"
D=$MNT/disk

log "the namespace cannot change"
expect_errno "Invalid argument" truncate -s 1M "$D"
truncate -s $SIZE "$D" || fail "truncate to the current size must succeed"
expect_errno "Invalid argument" sh -c "echo x > '$D'"
expect_errno "Operation not permitted" rm -f "$D"
expect_errno "Operation not permitted" mv "$D" "$MNT/other"
expect_errno "Operation not permitted" mkdir "$MNT/dir"
expect_errno "Operation not permitted" mkdir "$MNT/control/dir"
expect_errno "Operation not permitted" touch "$MNT/newfile"
expect_errno "Operation not permitted" ln -s disk "$MNT/link"
expect_errno "Operation not permitted" chmod 600 "$D"
expect_errno "Operation not permitted" chmod 666 "$MNT/control/max_age_seconds"
expect_errno "Operation not permitted" chown nobody "$D"
expect_errno "Operation not permitted" rm -f "$MNT/control/max_age_seconds"
expect_errno "No such file or directory" cat "$MNT/nonexistent"
touch "$D" || fail "touch (timestamps) on the device file must succeed"

log "writes past the end: ENOSPC; the last bytes: short write"
expect_errno "No space left on device" dd if=/dev/zero of="$D" bs=4096 seek=$((SIZE / 4096)) count=1 conv=notrunc status=none
dd if=/dev/zero of="$D" bs=4096 seek=$((SIZE / 4096 - 1)) count=2 conv=notrunc status=none 2>"$TMP/dd.err" &&
	fail "a write crossing the end must end in ENOSPC"
grep -q "No space left on device" "$TMP/dd.err" || fail "crossing the end: $(cat "$TMP/dd.err")"
[ "$(dd if="$D" bs=4096 skip=$((SIZE / 4096)) status=none | wc -c)" -eq 0 ] || fail "read past the end returned data"

log "backing errors reach the caller: EIO on a read and on a partial write's read"
# Shrinking the backing behind the daemon's back makes its reads fail.
truncate -s 8M "$BACKING"
echo 1 >"$MNT/control/disk/drop_caches"
expect_errno "Input/output error" dd if="$D" of=/dev/null bs=4096 skip=3072 count=1 status=none
expect_errno "Input/output error" dd if=/dev/zero of="$D" bs=512 seek=24576 count=1 conv=notrunc status=none
[ "$(ctl "$MNT" disk/read_errors)" -gt 0 ] || fail "read_errors not counted"
truncate -s $SIZE "$BACKING"
dd if="$D" of=/dev/null bs=4096 skip=3072 count=1 status=none || fail "a failed read was cached"
stop_term "$DAEMON_PID"

log "write-back errors reach fsync and the exit status: ENOSPC from a full backing"
SMALL=$TMP/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=8M tmpfs "$SMALL"
FS_MOUNTS+=("$SMALL")
truncate -s 32M "$SMALL/sparse.img"
start_fg "$SMALL/sparse.img" "$TMP/fuse2" -o writeback_ratio=1000,dirty_expire_seconds=0
expect_errno "No space left on device" \
	dd if=/dev/urandom of="$TMP/fuse2/disk" bs=1M count=16 conv=notrunc,fsync status=none
kill -TERM "$DAEMON_PID"
wait_rc "$DAEMON_PID"
[ "$RC" -ne 0 ] || fail "exit status 0 although the final write-back failed"
grep -q "final write-back" "$TMP/daemon.log" || fail "the failed final write-back was not logged"
umount "$SMALL"

log "readonly: EROFS"
start_fg "$BACKING" "$MNT" -o readonly
cat "$D" >/dev/null || fail "readonly device must be readable"
expect_errno "Read-only file system" dd if=/dev/zero of="$D" bs=4096 count=1 conv=notrunc status=none
expect_errno "Read-only file system" fallocate -p -o 0 -l 4096 "$D"
err=$(write_err "$MNT/control/disk/cache_mode" writethrough)
[ -z "$err" ] || fail "cache_mode on a readonly device: $err"
stop_term "$DAEMON_PID"

log "bad command lines and configs: message and nonzero exit, nothing mounted"
bad_start() {
	local rc=0
	timeout 20 "$BUFIOFS" -f "$@" >"$TMP/bad.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "'bufiofs $*' exited $rc"
	[ -s "$TMP/bad.log" ] || fail "'bufiofs $*' printed no message"
	mountpoint -q "$MNT" && fail "'bufiofs $*' mounted"
	return 0
}
bad_start "$TMP/missing.img" "$MNT"
bad_start -o max_cache_size_bytes=lots "$BACKING" "$MNT"
bad_start -o block_size=1000 "$BACKING" "$MNT"
bad_start "$BACKING" "$TMP/no-such-dir"
printf 'devices = ( { backing = "%s"; typo_key = 1; } );\n' "$BACKING" >"$TMP/bad.conf"
bad_start -c "$TMP/bad.conf" "$MNT"
grep -q "bad.conf:1" "$TMP/bad.log" || fail "config error without FILE:LINE: $(cat "$TMP/bad.log")"
log "ok"
