#!/bin/bash
# A second bufiofs on a backing that a first one serves under fio load
# (tests/integration/test_exclusive.sh covers the idle case): it must refuse
# at once with a clear message and a nonzero exit, in the foreground,
# daemonized and through another path, while the first one keeps serving:
# fio's crc32c verification passes, the data reaches the backing, and the
# first daemon exits 0 without a sanitizer report.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/load_lib.sh"
need_fuse
need_tools fio timeout
URING=$(uring_engine)

BACKING=$TMP/backing.img
MNT=$TMP/fuse
MNT2=$TMP/fuse2
# Rate-limited writers (1 MiB/s each): the load lasts at least JOB seconds,
# however fast the machine; the attempts repeat until it ends.
JOB=$(soak_scale 16 600) # MiB per writer
truncate -s $((4 * JOB * MIB)) "$BACKING"
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=$((JOB * MIB / 25))
mkdir -p "$MNT2"

log "fio load on the first daemon"
(fio_round load "$(raw_global "$MNT/disk" "$JOB" rate=,1m)
$(raw_writers l "$JOB" 0 1)") &
FIO_PID=$!
PIDS+=("$FIO_PID")
sleep 3 # every writer under way

attempt() {
	local what=$1 rc=0
	shift
	[ "$ROUNDS" -gt 0 ] || log "second instance ($what) while the first is loaded"
	# The first round must see the load; later ones may race with its end.
	[ "$ROUNDS" -gt 0 ] || kill -0 "$FIO_PID" 2>/dev/null ||
		fail "the fio load ended before the attempt ($what)"
	timeout 60 "$BUFIOFS" "$@" "$MNT2" >"$TMP/second.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "second bufiofs ($what) started on a served backing"
	[ "$rc" -ne 124 ] || fail "second bufiofs ($what) hung"
	grep -q "already served" "$TMP/second.log" ||
		{ cat "$TMP/second.log"; fail "second bufiofs ($what): no clear message"; }
	mountpoint -q "$MNT2" && fail "second bufiofs ($what) mounted $MNT2"
	check_sanitizers "$TMP/second.log"
	kill -0 "$DAEMON_PID" 2>/dev/null || fail "the first daemon died after the attempt ($what)"
}
ln -s "$BACKING" "$TMP/alias.img"
ROUNDS=0
while kill -0 "$FIO_PID" 2>/dev/null; do
	attempt foreground -f "$BACKING"
	attempt daemonized "$BACKING"
	attempt "through a symlink" -f "$TMP/alias.img"
	attempt "with a write-back cache of its own" -f -o max_cache_size_bytes=64M "$BACKING"
	ROUNDS=$((ROUNDS + 1))
	sleep 0.5
done
log "$ROUNDS rounds of attempts under load"

log "the first instance's load finishes verified"
wait "$FIO_PID" || fail "fio under load failed (see above)"
VERIFIED=$((4 * JOB * MIB))
stop_daemon
fio_round backing "$(raw_global "$BACKING" "$JOB")
$(raw_writers l "$JOB" 0 1 verify_only=1)"
VERIFIED=$((VERIFIED + 4 * JOB * MIB))
log "ok: $((VERIFIED / MIB)) MiB verified"
