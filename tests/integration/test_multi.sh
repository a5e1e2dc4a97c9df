#!/bin/bash
# Several devices from one config: each its own file and control directory
# with its own tunables and stats, one global budget shared by both, data
# kept apart, and a clean stop persisting both backings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_tools cmp dd

A=$TMP/a.img
B=$TMP/b.img
MNT=$TMP/fuse
CONF=$TMP/multi.conf
truncate -s 32M "$A"
truncate -s 48M "$B"
cat >"$CONF" <<CONF
max_cache_size_bytes = "64M";
devices = (
	{ name = "alpha"; backing = "$A"; block_size = 4096; writeback_ratio = 5; },
	{ name = "beta"; backing = "$B"; block_size = 8192; cache_mode = "writethrough"; }
);
CONF
start_conf "$CONF" "$MNT"

log "both device files, sized from their backings"
[ "$(stat -c %s "$MNT/alpha")" = $((32 << 20)) ] || fail "alpha has the wrong size"
[ "$(stat -c %s "$MNT/beta")" = $((48 << 20)) ] || fail "beta has the wrong size"
[ ! -e "$MNT/disk" ] || fail "a default 'disk' file appeared next to configured ones"

log "per-device settings from the config"
[ "$(ctl "$MNT" alpha/block_size)" = 4096 ] || fail "alpha block_size"
[ "$(ctl "$MNT" beta/block_size)" = 8192 ] || fail "beta block_size"
[ "$(ctl "$MNT" alpha/writeback_ratio)" = 5 ] || fail "alpha writeback_ratio"
[ "$(ctl "$MNT" beta/writeback_ratio)" = 3 ] || fail "beta writeback_ratio default"
[ "$(ctl "$MNT" alpha/cache_mode)" = writeback ] || fail "alpha cache_mode"
[ "$(ctl "$MNT" beta/cache_mode)" = writethrough ] || fail "beta cache_mode"
[ "$(ctl "$MNT" alpha/backing)" = "$A" ] || fail "alpha backing"
[ "$(ctl "$MNT" max_cache_size_bytes)" = $((64 << 20)) ] || fail "global budget"

log "data kept apart; a tunable changed on one device only"
head -c 8M /dev/urandom >"$TMP/ra"
head -c 8M /dev/urandom >"$TMP/rb"
dd if="$TMP/ra" of="$MNT/alpha" bs=1M conv=notrunc status=none
dd if="$TMP/rb" of="$MNT/beta" bs=1M seek=4 conv=notrunc status=none
echo 7 >"$MNT/control/beta/writeback_ratio"
[ "$(ctl "$MNT" alpha/writeback_ratio)" = 5 ] || fail "setting beta changed alpha"
cmp -n $((8 << 20)) "$TMP/ra" "$MNT/alpha" || fail "alpha reads back wrong"
cmp -i 0:$((4 << 20)) -n $((8 << 20)) "$TMP/rb" "$MNT/beta" || fail "beta reads back wrong"
# writethrough: beta's backing already has the data, before any flush
cmp -i 0:$((4 << 20)) -n $((8 << 20)) "$TMP/rb" "$B" || fail "beta (writethrough) backing lacks the data"
[ "$(ctl "$MNT" beta/buffers_dirty)" = 0 ] || fail "writethrough device has dirty buffers"

log "one global budget: the totals are the sum of both devices"
cur=$(ctl "$MNT" current_allocated_bytes)
ca=$(ctl "$MNT" alpha/bytes_cached)
cb=$(ctl "$MNT" beta/bytes_cached)
[ "$ca" -gt 0 ] && [ "$cb" -gt 0 ] || fail "a device caches nothing (alpha $ca, beta $cb)"
[ "$cur" -ge $((ca + cb)) ] || fail "current_allocated_bytes $cur < alpha $ca + beta $cb"
gd=$(ctl "$MNT" buffers_dirty)
[ "$gd" = "$(ctl "$MNT" alpha/buffers_dirty)" ] || fail "global dirty count is not the sum"
echo 16M >"$MNT/control/max_cache_size_bytes"
cur=$(ctl "$MNT" current_allocated_bytes)
[ "$cur" -le $((17 << 20)) ] || fail "lowering the shared budget left $cur bytes allocated"
cmp -n $((8 << 20)) "$TMP/ra" "$MNT/alpha" || fail "alpha data lost when the budget shrank"

log "clean stop persists both"
stop_term "$DAEMON_PID"
cmp -n $((8 << 20)) "$TMP/ra" "$A" || fail "alpha backing lacks its data after stop"
cmp -i 0:$((4 << 20)) -n $((8 << 20)) "$TMP/rb" "$B" || fail "beta backing lacks its data after stop"
log "ok"
