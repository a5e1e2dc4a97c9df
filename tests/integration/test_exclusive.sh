#!/bin/bash
# Two write-back caches on one backing would corrupt it: a second bufiofs on
# the same backing must refuse to start, with a message and a nonzero exit,
# in the foreground and daemonized, and leave the first one serving.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse

BACKING=$TMP/backing.img
MNT=$TMP/fuse
MNT2=$TMP/fuse2
truncate -s 16M "$BACKING"
start_fg "$BACKING" "$MNT"
mkdir -p "$MNT2"

for mode in -f daemonized; do
	log "second instance ($mode) is refused"
	args=()
	[ "$mode" = -f ] && args=(-f)
	rc=0
	timeout 20 "$BUFIOFS" "${args[@]}" "$BACKING" "$MNT2" >"$TMP/second.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "second bufiofs ($mode) started on a served backing"
	[ "$rc" -ne 124 ] || fail "second bufiofs ($mode) hung"
	grep -q "already served" "$TMP/second.log" || { cat "$TMP/second.log"; fail "no clear message"; }
	mountpoint -q "$MNT2" && fail "second bufiofs mounted $MNT2"
done

log "the same file through another path is refused too"
ln -s "$BACKING" "$TMP/alias.img"
rc=0
"$BUFIOFS" -f "$TMP/alias.img" "$MNT2" >"$TMP/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "second bufiofs started through a symlink"

log "the first instance still serves"
echo data | dd of="$MNT/disk" conv=notrunc status=none
[ "$(head -c 4 "$MNT/disk")" = data ] || fail "first instance broken"
stop_term "$DAEMON_PID"

log "after it stops, the backing can be served again"
start_fg "$BACKING" "$MNT2"
stop_term "$DAEMON_PID"
log "ok"
