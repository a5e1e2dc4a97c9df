#!/bin/bash
# The control directory: every file reads, every tunable can be set and reads
# back, bad values fail with EINVAL and change nothing, read-only files fail
# with EACCES, and the flush / drop_caches / clear_stats actions do their job.
# Also SIGHUP re-reading the config's tunables.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_loop
need_tools cmp dd

BACKING=$TMP/backing.img
MNT=$TMP/fuse
CONF=$TMP/bufiofs.conf
truncate -s 64M "$BACKING"
cat >"$CONF" <<CONF
max_age_seconds = 100;
devices = ( { name = "disk"; backing = "$BACKING"; } );
CONF
start_conf "$CONF" "$MNT"
C=$MNT/control
mapfile -t FILES < <(find "$C" -type f | sort)
[ "${#FILES[@]}" -gt 20 ] || fail "only ${#FILES[@]} control files"

log "every file reads and ends with a newline"
for f in "${FILES[@]}"; do
	mode=$(stat -c %a "$f")
	[ "$mode" = 200 ] && continue # actions are write-only
	val=$(cat "$f") || fail "cannot read $f"
	[ -n "$val" ] || fail "$f is empty"
	[ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" = '\n' ] || fail "$f does not end with a newline"
done
grep -q '^hits ' "$C/disk/stats" || fail "stats has no hits line"
grep -q '^hit_ratio ' "$C/disk/stats" || fail "stats has no hit_ratio"
grep -q '^# TYPE ' "$C/metrics" || fail "metrics is not in the Prometheus text format"
[ "$(ctl "$MNT" disk/device_size_bytes)" = $((64 << 20)) ] || fail "device_size_bytes"
[ "$(ctl "$MNT" disk/backing)" = "$BACKING" ] || fail "backing"

# Valid value, what reads back, and invalid values for every rw file. A
# tunable added to the registry without a line here fails the test.
declare -A VALID=(
	[max_cache_size_bytes]="  32M \n|33554432" [max_age_seconds]="120|120"
	[retain_bytes]="1M|1048576" [peak_allocated_bytes]="0|"
	[disk/cache_mode]="writethrough|writethrough" [disk/writeback_ratio]="10|10"
	[disk/dirty_expire_seconds]="5|5" [disk/read_ahead_kb]="512|512"
	[disk/max_write_failures]="3|3" [disk/mode]="read-only|read-only"
)
declare -A INVALID=(
	[max_cache_size_bytes]="abc 12Q -5 99999999999999999999999 1.5G"
	[max_age_seconds]="2592001 x -1" [retain_bytes]="1X 2048T"
	[peak_allocated_bytes]="5 abc" [disk/cache_mode]="bogus 7 write"
	[disk/writeback_ratio]="1001 -1 ten" [disk/dirty_expire_seconds]="86401 1e3"
	[disk/read_ahead_kb]="65537 -4 4k"
	[disk/max_write_failures]="1001 -1 x" [disk/mode]="readonly 1 bogus"
)

log "set every tunable, read it back; invalid values get EINVAL"
for f in "${FILES[@]}"; do
	[ "$(stat -c %a "$f")" = 644 ] || continue
	name=${f#"$C"/}
	[ -n "${VALID[$name]:-}" ] || fail "rw control file $name has no test values"
	for bad in ${INVALID[$name]}; do
		before=$(cat "$f")
		err=$(write_err "$f" "$bad")
		case "$err" in *"Invalid argument"*) ;; *) fail "$name <- '$bad': '$err', want EINVAL" ;; esac
		[ "$(cat "$f")" = "$before" ] || fail "$name changed after the invalid '$bad'"
	done
	in=${VALID[$name]%%|*}
	want=${VALID[$name]#*|}
	err=$(write_err "$f" "$(printf '%b' "$in")")
	[ -z "$err" ] || fail "$name <- '$in': $err"
	[ -z "$want" ] || [ "$(cat "$f")" = "$want" ] || fail "$name reads '$(cat "$f")', want '$want'"
done
echo writeback >"$C/disk/cache_mode"
echo write >"$C/disk/mode"
echo 0 >"$C/max_cache_size_bytes"

log "read-only files refuse writes with EACCES, actions refuse reads"
for f in "${FILES[@]}"; do
	case "$(stat -c %a "$f")" in
	444)
		before=$(cat "$f")
		err=$(write_err "$f" 1)
		case "$err" in *"Permission denied"*) ;; *) fail "write to ${f#"$C"/}: '$err', want EACCES" ;; esac
		;;
	200)
		expect_errno "Permission denied" cat "$f"
		err=$(write_err "$f" 2)
		case "$err" in *"Invalid argument"*) ;; *) fail "${f#"$C"/} <- 2: '$err', want EINVAL" ;; esac
		;;
	esac
done

log "flush writes back every dirty buffer; the backing matches"
# Through a loop device the file stays open (a close would flush by itself).
echo 1000 >"$C/disk/writeback_ratio"
echo 0 >"$C/disk/dirty_expire_seconds"
attach_loop "$MNT/disk"
head -c 16M /dev/urandom >"$TMP/ref"
dd if="$TMP/ref" of="$LOOP" bs=1M oflag=direct status=none
[ "$(ctl "$MNT" disk/buffers_dirty)" -gt 0 ] || fail "nothing dirty after writing through the loop device"
cmp -n $((16 << 20)) "$TMP/ref" "$BACKING" >/dev/null 2>&1 && fail "the backing already has the data: test proves nothing"
echo 1 >"$C/disk/flush"
[ "$(ctl "$MNT" disk/buffers_dirty)" -eq 0 ] || fail "buffers_dirty is $(ctl "$MNT" disk/buffers_dirty) after flush"
cmp -n $((16 << 20)) "$TMP/ref" "$BACKING" || fail "backing differs after flush"
[ "$(ctl "$MNT" disk/flushes)" -gt 0 ] || fail "flushes not counted"
detach_loop "$LOOP"

log "drop_caches forgets clean buffers; clear_stats zeroes counters"
cat "$MNT/disk" >/dev/null
[ "$(ctl "$MNT" disk/buffers_clean)" -gt 0 ] || fail "nothing cached after reading"
echo 1 >"$C/disk/drop_caches"
[ "$(ctl "$MNT" disk/buffers_clean)" -eq 0 ] || fail "buffers_clean $(ctl "$MNT" disk/buffers_clean) after drop_caches"
[ "$(ctl "$MNT" disk/hits)" -gt 0 ] || [ "$(ctl "$MNT" disk/misses)" -gt 0 ] || fail "no lookups counted"
echo 1 >"$C/disk/clear_stats"
for s in hits misses reads writes read_bytes write_bytes flushes; do
	[ "$(ctl "$MNT" "disk/$s")" -eq 0 ] || fail "$s is $(ctl "$MNT" "disk/$s") after clear_stats"
done

log "SIGHUP re-reads the config's tunables"
[ "$(ctl "$MNT" max_age_seconds)" = 120 ] || fail "max_age_seconds changed unexpectedly"
sed -i 's/max_age_seconds = 100;/max_age_seconds = 200;/' "$CONF"
kill -HUP "$DAEMON_PID"
for ((n = 0; n < 50; n++)); do
	[ "$(ctl "$MNT" max_age_seconds)" = 200 ] && break
	sleep 0.1
done
[ "$(ctl "$MNT" max_age_seconds)" = 200 ] || fail "SIGHUP did not apply max_age_seconds = 200"
echo "max_age_seconds = oops;" >>"$CONF"
kill -HUP "$DAEMON_PID"
sleep 0.5
kill -0 "$DAEMON_PID" || fail "a bad config on SIGHUP killed the daemon"
[ "$(ctl "$MNT" max_age_seconds)" = 200 ] || fail "a bad config on SIGHUP changed a tunable"

stop_term "$DAEMON_PID"
log "ok"
