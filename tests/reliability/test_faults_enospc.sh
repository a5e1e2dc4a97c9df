#!/bin/bash
# ENOSPC from a real full file system (the production daemon): a sparse
# backing on a small tmpfs fills up. fsync fails with ENOSPC, the data that did
# not fit stays dirty and reads back, the device turns read-only after
# max_write_failures failed attempts, echo write > mode fails with ENOSPC while
# the file system is full; once space is freed it writes everything back and
# the backing holds every byte. Nothing hangs (each step under a timeout).
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/faults_lib.sh"
need_fuse
need_tools dd cmp head sync truncate timeout mount umount
[ "$(id -u)" -eq 0 ] || skip "must run as root (tmpfs mount)"

SMALL=$TMP/small
MNT=$TMP/fuse
D=$MNT/disk
C=disk
MODE=$MNT/control/$C/mode
DATA=$TMP/data
mkdir -p "$SMALL"
mount -t tmpfs -o size=12M tmpfs "$SMALL"
FS_MOUNTS+=("$SMALL")
head -c $((6 << 20)) /dev/zero >"$SMALL/filler" # leaves about 6M
BACKING=$SMALL/sparse.img
truncate -s 64M "$BACKING"
head -c $((8 << 20)) /dev/urandom >"$DATA"
start_fg "$BACKING" "$MNT" -o max_write_failures=2,writeback_ratio=1000 \
	-o dirty_expire_seconds=0,max_cache_size_bytes=64M

log "8M into 6M of space: close and fsync fail with ENOSPC"
expect_errno "No space left on device" \
	timeout 60 dd if="$DATA" of="$D" bs=1M conv=notrunc status=none
[ "$(ctl "$MNT" $C/buffers_dirty)" -gt 0 ] || fail "nothing left dirty although the space ran out"
[ "$(ctl "$MNT" $C/write_errors)" -gt 0 ] || fail "write_errors: $(ctl "$MNT" $C/write_errors)"
log_has "No space left on device" || fail "no log line for ENOSPC"
expect_errno "No space left on device" timeout 60 sync "$D"
[ "$(cat "$MODE")" = read-only ] || fail "mode: $(cat "$MODE") after 2 failed attempts"
log_has "disk: now read-only after 2 consecutive failed write-back attempts" ||
	fail "no log line for the switch to read-only"

log "read-only on a full backing: all data reads back, writes fail with EROFS"
timeout 60 cmp <(head -c $((8 << 20)) "$D") "$DATA" || fail "the data does not read back"
expect_errno "Read-only file system" dd if="$DATA" of="$D" bs=4k count=1 conv=notrunc status=none
expect_errno "No space left on device" timeout 60 bash -c "echo write > '$MODE'"
[ "$(cat "$MODE")" = read-only ] || fail "a failed echo write changed the mode"

log "space is freed: echo write > mode writes everything back"
rm "$SMALL/filler"
timeout 60 bash -c "echo write > '$MODE'" || fail "echo write > mode failed with free space"
[ "$(cat "$MODE")" = write ] || fail "mode: $(cat "$MODE"), want write"
[ "$(ctl "$MNT" $C/buffers_dirty)" -eq 0 ] || fail "dirty data left"
timeout 60 cmp <(head -c $((8 << 20)) "$BACKING") "$DATA" || fail "the backing lacks data"
stop_term "$DAEMON_PID"
timeout 60 cmp <(head -c $((8 << 20)) "$BACKING") "$DATA" || fail "the backing lacks data after exit"
log "ok"
