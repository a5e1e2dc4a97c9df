#!/bin/bash
# Clean shutdown persists everything: data still dirty in the cache (held
# open by a loop device, never fsynced) reaches the backing on SIGTERM and on
# unmount, in the foreground and daemonized. Also --demo's image.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_loop
need_tools cmp dd stat

BACKING=$TMP/backing.img
MNT=$TMP/fuse
truncate -s 64M "$BACKING"
# Keep written data dirty: no background write-back by ratio or age.
HOLD=(-o writeback_ratio=1000,dirty_expire_seconds=0)

# dirty_write REF: write 16 MiB of new data through a loop device (which
# keeps the file open, so no close-time flush) and check it is still dirty.
dirty_write() {
	head -c 16M /dev/urandom >"$1"
	attach_loop "$MNT/disk"
	dd if="$1" of="$LOOP" bs=1M oflag=direct status=none
	[ "$(ctl "$MNT" disk/buffers_dirty)" -gt 0 ] || fail "no dirty buffers before the stop"
	! cmp -s -n $((16 << 20)) "$1" "$BACKING" || fail "data reached the backing early"
}

log "SIGTERM with dirty buffers"
start_fg "$BACKING" "$MNT" "${HOLD[@]}"
dirty_write "$TMP/ref1"
stop_term "$DAEMON_PID"
detach_loop "$LOOP" 2>/dev/null || true
mountpoint -q "$MNT" && fail "still mounted after SIGTERM"
cmp -n $((16 << 20)) "$TMP/ref1" "$BACKING" || fail "backing lacks data after SIGTERM"

log "fusermount3 -u with dirty buffers (lazy while the loop device holds it)"
start_fg "$BACKING" "$MNT" "${HOLD[@]}"
dirty_write "$TMP/ref2"
fusermount3 -u -z "$MNT"
detach_loop "$LOOP"
wait_rc "$DAEMON_PID"
[ "$RC" -eq 0 ] || fail "bufiofs exited with $RC after unmount"
cmp -n $((16 << 20)) "$TMP/ref2" "$BACKING" || fail "backing lacks data after unmount"

log "daemonized: start returns 0 once mounted; fusermount3 -u stops it"
"$BUFIOFS" "${HOLD[@]}" "$BACKING" "$MNT" >>"$TMP/daemon.log" 2>&1 || fail "daemonized start failed"
FUSE_MOUNTS+=("$MNT")
mountpoint -q "$MNT" || fail "not mounted when the launcher returned"
pid=$(pgrep -f -n "^$BUFIOFS .*$BACKING") || fail "cannot find the daemon"
PIDS+=("$pid")
head -c 8M /dev/urandom >"$TMP/ref3"
dd if="$TMP/ref3" of="$MNT/disk" bs=64k seek=10 conv=notrunc status=none
fusermount3 -u "$MNT"
for ((n = 0; n < 100; n++)); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "daemon still running 10 s after unmount"
cmp -n $((8 << 20)) "$TMP/ref3" "$BACKING" 0 $((640 << 10)) || fail "backing lacks data (daemonized)"

log "--demo creates a sparse 1 GiB image in \$STATE_DIRECTORY and serves it"
mkdir -p "$MNT"
STATE_DIRECTORY=$TMP/state "$BUFIOFS" --demo -f "$MNT" >>"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
wait_mounted "$MNT" "$DAEMON_PID"
[ "$(stat -c %s "$TMP/state/demo.img")" -eq $((1 << 30)) ] || fail "demo image is not 1 GiB"
[ "$(stat -c %s "$MNT/disk")" -eq $((1 << 30)) ] || fail "demo disk is not 1 GiB"
[ "$(du -k "$TMP/state/demo.img" | cut -f1)" -lt 1024 ] || fail "demo image is not sparse"
echo hello | dd of="$MNT/disk" conv=notrunc status=none
stop_term "$DAEMON_PID"
[ "$(head -c 6 "$TMP/state/demo.img")" = hello ] || fail "demo data not persisted"
log "ok"
