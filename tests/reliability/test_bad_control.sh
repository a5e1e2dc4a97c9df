#!/bin/bash
# Bad input to the control files, global and per device: blank, garbage,
# signs, overflowing numbers, 1 MiB, NUL and 0xff bytes, and 16 writers
# hammering the same and different files with valid and invalid values while
# data flows. Every bad write fails with EINVAL (EACCES on read-only files)
# and changes nothing; afterwards the data is intact, every tunable holds a
# value that was written, and SIGTERM ends the daemon with status 0.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
need_fuse
need_tools cmp dd head find stat
FSOP=${2:?usage: $0 BUFIOFS BUILD_DIR}/tests/reliability/fsop
[ -x "$FSOP" ] || fail "$FSOP is not built"
# How long the writers hammer: seconds (BUFIO_SOAK=1: five minutes).
HAMMER=${BUFIO_HAMMER_SECONDS:-15}
[ "${BUFIO_SOAK:-}" = 1 ] && HAMMER=${BUFIO_HAMMER_SECONDS:-300}

BACKING=$TMP/backing.img
MNT=$TMP/fuse
C=$MNT/control
SIZE=$((16 << 20))
head -c $SIZE /dev/urandom >"$TMP/expect"
cp "$TMP/expect" "$BACKING"
start_fg "$BACKING" "$MNT"
D=$MNT/disk

# fsop_write FILE DATA: one write(2) of DATA (printf %b escapes: \0, \xff);
# prints fsop's answer ("ok N" or the strerror text).
fsop_write() {
	printf '%b' "$2" | "$FSOP" write "$1" || true
}

mapfile -t RW < <(find "$C" -type f -perm 0644 | sort)
mapfile -t ACTIONS < <(find "$C" -type f -perm 0200 | sort)
mapfile -t RO < <(find "$C" -type f -perm 0444 | sort)
[ "${#RW[@]}" -ge 7 ] && [ "${#ACTIONS[@]}" -ge 3 ] && [ "${#RO[@]}" -ge 20 ] ||
	fail "unexpected control files: ${#RW[@]} rw, ${#ACTIONS[@]} actions, ${#RO[@]} ro"

# Invalid for every writable file (tunables and actions alike).
BIG=$(head -c $((1 << 20)) /dev/zero | tr '\0' 1)
PAD=$(head -c 5000 /dev/zero | tr '\0' ' ')
BAD=(
	'\n' '   ' '\t\r\n\v\f'
	'-1' '-0' '+5' '0x10' '1e3' '1.5' '5 5' '5,5' '1_000' '٣' '½'
	18446744073709551616 18446744073709551615 99999999999999999999
	340282366920938463463374607431768211456 16777216T 17179869184G 16384P 1KK
	'\0' '1\0' '\0001' '1\0001' '\xff' '\xff\xfe1' '1\xff' '\x80\n'
	writebackX WRITEBACK 'write back' '1 writeback'
	"$BIG" "${PAD}1" "1${PAD}" "$(printf '%065d' 1)"
)
# Invalid for the actions in particular (only "1" triggers one).
BAD_ACTION=(0 2 11 01 yes true '1 1' '1\n1')

log "bad writes to the ${#RW[@]} tunables: EINVAL, value unchanged"
for f in "${RW[@]}"; do
	before=$(cat "$f")
	for bad in "${BAD[@]}"; do
		got=$(fsop_write "$f" "$bad")
		[ "$got" = "Invalid argument" ] || fail "${f#"$C"/} <- '${bad:0:40}': '$got', want EINVAL"
	done
	[ "$(cat "$f")" = "$before" ] || fail "${f#"$C"/} changed to '$(cat "$f")' after bad writes"
	# A zero-length write never reaches the daemon: it succeeds and changes nothing.
	got=$("$FSOP" write "$f" </dev/null) || fail "an empty write to ${f#"$C"/}: $got"
	[ "$got" = "ok 0" ] || fail "an empty write to ${f#"$C"/}: '$got'"
	[ "$(cat "$f")" = "$before" ] || fail "${f#"$C"/} changed after an empty write"
done

log "bad writes to the ${#ACTIONS[@]} actions: EINVAL, nothing triggered"
# Cached clean and dirty buffers and counted hits: drop_caches, flush and
# clear_stats would each change the stats. No write-back meanwhile.
echo 0 >"$C/disk/dirty_expire_seconds"
echo 1000 >"$C/disk/writeback_ratio"
dd if="$D" of=/dev/null bs=64K count=16 status=none
dd if="$D" of=/dev/null bs=64K count=16 status=none
# Closing a written file writes back: a writer holds it open for the dirty block.
printf 'x%.0s' {1..4096} | dd of="$TMP/expect" bs=4096 seek=1024 conv=notrunc status=none
printf 'x%.0s' {1..4096} | FSOP_HOLD=1 "$FSOP" write "$D" $((1024 * 4096)) >"$TMP/hold.out" &
HOLDER=$!
PIDS+=("$HOLDER")
for ((i = 0; i < 100; i++)); do [ -s "$TMP/hold.out" ] && break; sleep 0.1; done
[ "$(cat "$TMP/hold.out")" = "ok 4096" ] || fail "the held write: $(cat "$TMP/hold.out")"
stats_before=$(cat "$C/disk/stats")
grep -q '^buffers_dirty [1-9]' <<<"$stats_before" || fail "no dirty buffers to protect"
grep -q '^hits [1-9]' <<<"$stats_before" || fail "no hits to protect"
for f in "${ACTIONS[@]}"; do
	for bad in "${BAD[@]}" "${BAD_ACTION[@]}"; do
		got=$(fsop_write "$f" "$bad")
		[ "$got" = "Invalid argument" ] || fail "${f#"$C"/} <- '${bad:0:40}': '$got', want EINVAL"
	done
	got=$("$FSOP" write "$f" </dev/null) || fail "an empty write to ${f#"$C"/}: $got"
done
[ "$(cat "$C/disk/stats")" = "$stats_before" ] || {
	diff <(echo "$stats_before") "$C/disk/stats" >&2 || true
	fail "a rejected action changed the stats"
}

log "the ${#RO[@]} read-only files: EACCES for writers, values unchanged"
declare -A STATIC=()
for f in block_size device_size_bytes backing io_engine pressure_source; do
	for p in "$C/$f" "$C/disk/$f"; do
		[ -e "$p" ] && STATIC[$p]=$(cat "$p")
	done
done
[ "${#STATIC[@]}" -eq 5 ] || fail "read-only files to check: ${!STATIC[*]}"
for f in "${RO[@]}"; do
	for bad in 1 0 '' writeback "$BIG"; do
		got=$(fsop_write "$f" "$bad")
		[ "$got" = "open: Permission denied" ] || fail "${f#"$C"/} <- '${bad:0:20}': '$got'"
	done
	got=$("$FSOP" open "$f" rdwr) && fail "${f#"$C"/} opened read-write"
	[ "$got" = "Permission denied" ] || fail "${f#"$C"/} O_RDWR: '$got'"
done
for p in "${!STATIC[@]}"; do
	[ "$(cat "$p")" = "${STATIC[$p]}" ] || fail "${p#"$C"/} changed to '$(cat "$p")'"
done
for f in "${ACTIONS[@]}"; do
	got=$("$FSOP" open "$f" rdonly) && fail "${f#"$C"/} (write-only) opened for reading"
	[ "$got" = "Permission denied" ] || fail "${f#"$C"/} O_RDONLY: '$got'"
done

log "good writes still work: at an offset, with blanks around, as the last of a run of bad ones"
got=$(printf ' 77\n' | "$FSOP" write "$C/max_age_seconds" $((1 << 40)))
[ "$got" = "ok 4" ] || fail "max_age_seconds at offset 1 TiB: '$got'"
[ "$(cat "$C/max_age_seconds")" = 77 ] || fail "max_age_seconds reads '$(cat "$C/max_age_seconds")'"
got=$(printf '\t 2M \n' | "$FSOP" write "$C/retain_bytes")
[ "$(cat "$C/retain_bytes")" = $((2 << 20)) ] || fail "retain_bytes <- '2M': $got"
echo 1 >"$C/disk/flush"
kill "$HOLDER"
wait "$HOLDER" || true
grep -q '^buffers_dirty 0$' "$C/disk/stats" || fail "flush left dirty buffers"
cmp "$D" "$TMP/expect" || fail "data differs after the bad writes"

log "$HAMMER s of 16 writers on the same and different files, data flowing"
# Valid values per file; every writer also throws invalid ones at them.
declare -A GOOD=(
	[max_cache_size_bytes]="0 1048576 4194304 67108864" [max_age_seconds]="0 1 300"
	[retain_bytes]="0 262144 1048576" [peak_allocated_bytes]="0"
	[disk/cache_mode]="writeback writethrough none" [disk/writeback_ratio]="0 3 1000"
	[disk/dirty_expire_seconds]="0 1 30" [disk/read_ahead_kb]="0 128 4096"
	[disk/max_write_failures]="0 5 1000" [disk/mode]=write # read-only would stop the data
	[disk/flush]=1 [disk/drop_caches]=1 [disk/clear_stats]=1
)
for f in "${RW[@]}" "${ACTIONS[@]}"; do
	[ -n "${GOOD[${f#"$C"/}]:-}" ] || fail "writable ${f#"$C"/} has no values to hammer with"
done
NAMES=("${!GOOD[@]}")
# Not read back: actions are write-only, the peak moves by itself.
declare -A ACTION_OR_PEAK=([disk/flush]=1 [disk/drop_caches]=1 [disk/clear_stats]=1
	[peak_allocated_bytes]=1)
INVALID=(-1 abc 18446744073709551616 99999999999999999999 1.5 ' ' nonE 0x1 1KB2 $'\x01')
# A region of new data, rewritten (identically) and checked by one worker.
head -c $((4 << 20)) /dev/urandom >"$TMP/new"
dd if="$TMP/new" of="$TMP/expect" bs=1M seek=4 conv=notrunc status=none
dd if="$TMP/new" of="$D" bs=1M seek=4 conv=notrunc status=none

hammer() { # ID: writes and reads control files until the deadline
	local id=$1 ok=0 bad=0 f v vals
	RANDOM=$((id * 7919))
	while ((SECONDS < END)); do
		# Writers 0-3 all pound on cache_mode; the rest pick any file.
		if ((id < 4 && RANDOM % 2)); then f=disk/cache_mode; else f=${NAMES[RANDOM % ${#NAMES[@]}]}; fi
		if ((RANDOM % 3)); then
			read -r -a vals <<<"${GOOD[$f]}"
			v=${vals[RANDOM % ${#vals[@]}]}
		else
			v=${INVALID[RANDOM % ${#INVALID[@]}]}
		fi
		if printf '%s' "$v" 2>/dev/null >"$C/$f"; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
		f=${NAMES[RANDOM % ${#NAMES[@]}]}
		read -r _ 2>/dev/null <"$C/$f" || true
		read -r _ <"$C/metrics" || true
	done
	echo "$ok $bad" >"$TMP/hammer.$id"
}
data_worker() { # rewrites the new region piecewise and checks all of it each round
	local round=0 i
	while ((SECONDS < END)); do
		for ((i = 0; i < 4; i++)); do
			dd if="$TMP/new" of="$D" bs=256K seek=$((16 + round % 16)) skip=$((round % 16)) \
				count=1 conv=notrunc status=none 2>>"$TMP/data.err" || echo "write failed" >>"$TMP/data.err"
			round=$((round + 1))
		done
		if ! dd if="$D" bs=1M skip=4 count=4 status=none 2>>"$TMP/data.err" | cmp -s - "$TMP/new"; then
			echo "round $round: the region reads back wrong" >>"$TMP/data.err"
		fi
		dd if="$D" of=/dev/null bs=1M status=none 2>>"$TMP/data.err" || echo "read failed" >>"$TMP/data.err"
	done
	echo "$round" >"$TMP/data.rounds"
}
END=$((SECONDS + HAMMER))
WORKERS=()
for ((w = 0; w < 16; w++)); do
	hammer "$w" &
	WORKERS+=($!)
done
data_worker &
WORKERS+=($!)
PIDS+=("${WORKERS[@]}")
for p in "${WORKERS[@]}"; do
	wait "$p" || fail "a hammer worker failed"
done
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died under the hammer"
[ ! -s "$TMP/data.err" ] || fail "data worker: $(head -5 "$TMP/data.err")"
[ "$(cat "$TMP/data.rounds")" -gt 0 ] || fail "the data worker did no round"
total_ok=0 total_bad=0
for ((w = 0; w < 16; w++)); do
	read -r ok bad <"$TMP/hammer.$w"
	total_ok=$((total_ok + ok)) total_bad=$((total_bad + bad))
done
log "$total_ok good and $total_bad refused writes, $(cat "$TMP/data.rounds") data rounds"
[ "$total_ok" -gt 100 ] && [ "$total_bad" -gt 30 ] || fail "the hammer did too little"

log "after the hammer: each tunable holds a value that was written, data intact"
for f in "${NAMES[@]}"; do
	[ -n "${ACTION_OR_PEAK[$f]:-}" ] && continue
	got=$(cat "$C/$f")
	case " ${GOOD[$f]} " in
	*" $got "*) ;;
	*) fail "$f reads '$got', not one of the values written: ${GOOD[$f]}" ;;
	esac
done
mapfile -t READABLE < <(find "$C" -type f -perm /0444)
for f in "${READABLE[@]}"; do cat "$f" >/dev/null || fail "cannot read $f"; done
cmp "$D" "$TMP/expect" || fail "the device reads wrong after the hammer"
echo writeback >"$C/disk/cache_mode"
echo 1 >"$C/disk/drop_caches"
cmp "$D" "$TMP/expect" || fail "the device reads wrong from the backing"

log "SIGTERM: exit 0, everything on the backing"
stop_term "$DAEMON_PID"
cmp "$BACKING" "$TMP/expect" || fail "the backing differs after the stop"
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error' "$TMP/daemon.log" >&2; then
	fail "sanitizer report in the daemon log"
fi
log "ok"
