#!/bin/bash
# kill -9 of the daemon during a random-write workload, again and again: every
# write an fsync acknowledged before the kill (in write-through mode: every
# completed write) reads back intact after the restart, and every sector
# holds either its initial pattern, a real record of that very sector or the
# zeroes of a hole punched there (some rounds mix in punches and zeroed
# ranges), never older than what was acknowledged or read back before. Each round picks
# a new block size, cache mode, engine and O_DIRECT setting, with a cache
# much smaller than the device so write-back and eviction never stop.
# 20 rounds (BUFIO_SOAK=1: 200; BUFIO_ITERATIONS=N), BUFIO_SEED replays one.
set -euo pipefail
source "$(dirname "$0")/crash_lib.sh"
need_fuse
need_crash_tools

ROUNDS=$(iterations 20 200)
BACKING=$TMP/backing.img
MNT=$TMP/fuse
STATE=$TMP/state # per sector: the stamp read back after the last crash
SIZE=32M
log "seed $SEED (BUFIO_SEED=$SEED replays), $ROUNDS rounds, device $SIZE"

"$CRASHWRITER" init "$BACKING" "$SIZE"

start_random() {
	random_opts
	start_fg "$BACKING" "$MNT" -o "$DAEMON_OPTS"
}

# verify LOG...: the device through a fresh daemon; records what it found.
verify() {
	local args=() l out
	for l in "$@"; do
		args+=(--log "$l")
	done
	out=$("$CRASHWRITER" verify "$MNT/disk" --state "$STATE" --update "${args[@]}") ||
		{ echo "$out"; fail "verification after the restart failed ($DAEMON_OPTS)"; }
	echo "$out" | grep '^verify:'
	VERIFIED=$(echo "$out" | sed -n 's/^VERIFIED_BYTES=//p')
}

start_random
verify
total_verified=0 total_acked=0
for ((round = 1; round <= ROUNDS; round++)); do
	wlog=$TMP/writes.$round
	ack=()
	[ "$CACHE_MODE" = writethrough ] && ack=(--ack-writes)
	"$CRASHWRITER" write "$MNT/disk" "$wlog" --gen "$round" --seed "$RANDOM$RANDOM" \
		--threads $((1 + RANDOM % 4)) --max-sectors $((1 + RANDOM % 32)) \
		--sync-every $((1 + RANDOM % 16)) --punch-pct "$(pick 0 0 5 15)" --seconds 120 \
		"${ack[@]}" >"$TMP/writer.out" 2>&1 &
	wpid=$!
	PIDS+=("$wpid")
	# The kill lands a random time after the first write was issued.
	for ((n = 0; n < 1500; n++)); do
		[ -s "$wlog" ] && break
		kill -0 "$wpid" 2>/dev/null || { cat "$TMP/writer.out"; fail "the writer failed"; }
		sleep 0.02
	done
	[ -s "$wlog" ] || fail "the writer issued no write within 30 s"
	delay=$((RANDOM % 2000))
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	kill -0 "$wpid" 2>/dev/null || { cat "$TMP/writer.out"; fail "the writer ended before the kill"; }
	kill9 "$DAEMON_PID"
	wait_gone "$wpid" 30 "the writer"
	grep -q 'stopped by the deadline' "$TMP/writer.out" && fail "the writer was not interrupted"
	grep -q '^ACKED_BYTES=' "$TMP/writer.out" || { cat "$TMP/writer.out"; fail "the writer failed"; }
	acked=$(sed -n 's/^ACKED_BYTES=//p' "$TMP/writer.out")
	writes=$(grep -c '^[WZ] ' "$wlog" || true)
	log "round $round: $DAEMON_OPTS, killed ${delay} ms into the writes: $writes issued," \
		"$acked bytes acknowledged"
	clear_dead_mount "$MNT"
	# An early image of the device, for the check that must fail below.
	[ "$round" -eq 1 ] && cp "$BACKING" "$TMP/old.img"
	start_random # the next round's settings read this round's data back
	verify "$wlog"
	total_verified=$((total_verified + VERIFIED))
	total_acked=$((total_acked + acked))
	rm -f "$wlog"
done

log "clean stop: the backing itself holds exactly what was read back"
stop_term "$DAEMON_PID"
"$CRASHWRITER" verify "$BACKING" --state "$STATE" | grep '^verify:' ||
	fail "the backing differs from what the daemon read back"
check_daemon_log

log "the check can fail: a misplaced, a stale and a zeroed sector are caught"
# bad_copy WANT DD-ARGS...: a copy of the backing with one sector changed.
bad_copy() {
	local want=$1
	shift
	cp "$BACKING" "$TMP/bad.img"
	dd of="$TMP/bad.img" bs=4096 count=1 conv=notrunc status=none "$@"
	if "$CRASHWRITER" verify "$TMP/bad.img" --state "$STATE" >"$TMP/neg.out"; then
		fail "a changed sector passed verification ($*)"
	fi
	grep -q "$want" "$TMP/neg.out" || { cat "$TMP/neg.out"; fail "not diagnosed: $want"; }
}
# zero IMG S: is sector S of IMG all zeroes (punched)?
zero() {
	cmp -s -n 4096 -i $(($2 * 4096)):0 "$1" /dev/zero
}
for ((a = 10; a < 8192; a++)); do # two sectors with records
	zero "$BACKING" "$a" || break
done
for ((b = a + 1; b < 8192; b++)); do
	zero "$BACKING" "$b" || break
done
bad_copy "holds the data of sector $a" if="$BACKING" skip="$a" seek="$b"
bad_copy 'all zeroes' if=/dev/zero seek="$a"
for ((s = 30; s < 8192; s++)); do # a sector rewritten since round 1
	zero "$BACKING" "$s" || zero "$TMP/old.img" "$s" ||
		cmp -s -i $((s * 4096)) -n 4096 "$TMP/old.img" "$BACKING" || break
done
bad_copy 'older than' if="$TMP/old.img" skip="$s" seek="$s"

[ "$total_acked" -gt 0 ] || fail "no write was ever acknowledged before a kill"
log "ok: $ROUNDS kills during writes; $total_acked bytes acknowledged," \
	"$total_verified bytes verified"
echo "RESULT crash_random_write rounds=$ROUNDS verified_bytes=$total_verified failures=0"
