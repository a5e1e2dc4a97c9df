#!/usr/bin/env bash
# Sequential read-ahead: a sequential reader gets blocks beyond its requests
# read in the background (counted as prefetches, first use a miss), the window
# ramps up from small requests, random readers get none, read_ahead_kb=0 turns
# it off, and the data read is the backing's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_fuse
need_tools dd cmp

img=$TMP/backing.img
mnt=$TMP/mnt
dd if=/dev/urandom of="$img" bs=1M count=64 status=none
start_fg "$img" "$mnt" -o max_cache_size_bytes=128M
dev=$mnt/disk
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$mnt/control/disk/stats"; }

[ "$(ctl "$mnt" disk/read_ahead_kb)" = 4096 ] || fail "read_ahead_kb default is not 4096"

log "sequential 1 MiB reads prefetch beyond what was asked"
dd if="$dev" of="$TMP/seq" bs=1M count=8 iflag=direct status=none
cmp "$TMP/seq" <(head -c 8M "$img") || fail "sequential read returned wrong data"
pf=$(stat_of prefetches)
# 8 requests of 256 blocks each prefetch their own blocks (2048); read-ahead adds more.
[ "$pf" -gt 2048 ] || fail "no read-ahead: $pf prefetched blocks for 2048 requested"
[ "$(stat_of hits)" -eq 0 ] || fail "first use of read-ahead blocks counted as hits"

log "two adjacent small reads ramp up from a small window"
echo 1 >"$mnt/control/disk/drop_caches"
echo 1 >"$mnt/control/disk/clear_stats"
dd if="$dev" of=/dev/null bs=4k skip=4096 count=2 iflag=direct status=none
pf=$(stat_of prefetches)
[ "$pf" -ge 1 ] && [ "$pf" -le 4 ] || fail "adjacent 4 KiB reads prefetched $pf blocks (want 1..4)"

log "random reads get none"
echo 1 >"$mnt/control/disk/clear_stats"
for off in 9000 1234 7777 3000 12000 5; do
	dd if="$dev" of=/dev/null bs=4k skip=$off count=1 iflag=direct status=none
done
[ "$(stat_of prefetches)" -eq 0 ] || fail "random reads triggered read-ahead"

log "read_ahead_kb=0 turns it off"
echo 0 >"$mnt/control/disk/read_ahead_kb"
echo 1 >"$mnt/control/disk/drop_caches"
echo 1 >"$mnt/control/disk/clear_stats"
dd if="$dev" of="$TMP/seq2" bs=1M skip=16 count=8 iflag=direct status=none
cmp "$TMP/seq2" <(tail -c +$((16 * 1048576 + 1)) "$img" | head -c 8M) || fail "wrong data without read-ahead"
[ "$(stat_of prefetches)" -eq 2048 ] || fail "read_ahead_kb=0 still prefetched $(stat_of prefetches) blocks"
case "$(write_err "$mnt/control/disk/read_ahead_kb" 70000)" in
*"Invalid argument"*) ;;
*) fail "read_ahead_kb accepted 70000 (max 65536)" ;;
esac
[ "$(ctl "$mnt" disk/read_ahead_kb)" = 0 ] || fail "a rejected read_ahead_kb changed the value"

stop_term "$DAEMON_PID"
log "ok"
