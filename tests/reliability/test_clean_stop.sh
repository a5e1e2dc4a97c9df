#!/bin/bash
# A clean stop never loses dirty data. With a cache large enough to hold it
# all and no write-back by ratio or age, a known pattern is written without
# fsync (in shuffled pieces of any size and alignment, so most blocks are
# partly dirty), then the daemon is stopped by SIGTERM, SIGINT, fusermount3 -u
# or umount; the backing must then equal the expected image byte for byte.
# Last, SIGTERM/SIGINT land in the middle of a random-write workload: every
# write the daemon completed before it stopped must be on the backing.
set -euo pipefail
source "$(dirname "$0")/crash_lib.sh"
need_fuse
need_loop
need_crash_tools
need_tools cmp dd

ROUNDS=$(iterations 4 40)
BACKING=$TMP/backing.img
EXPECT=$TMP/expect.img
MNT=$TMP/fuse
SIZE=64M
HOLD=max_cache_size_bytes=256M,writeback_ratio=1000,dirty_expire_seconds=0
log "seed $SEED (BUFIO_SEED=$SEED replays)"
"$CRASHWRITER" init "$BACKING" "$SIZE"
cp "$BACKING" "$EXPECT"
verified=0

# serve BS: a daemon holding the whole device in its cache, clean, so that
# write-back by ratio (dirty > clean * writeback_ratio) cannot start.
serve() {
	start_fg "$BACKING" "$MNT" -o "$HOLD,block_size=$1"
	cat "$MNT/disk" >/dev/null # read-only: its close writes nothing back
	BS=$1
}

# check_dirty REF OFF: the whole pattern is in the cache, none on the backing.
check_dirty() {
	local dirty len
	len=$(stat -c %s "$1")
	dirty=$(ctl "$MNT" disk/buffers_dirty)
	[ "$dirty" -ge $((len / BS)) ] ||
		fail "$dirty dirty $BS-byte buffers for $len bytes before the stop: not all dirty"
	[ "$(ctl "$MNT" disk/writes)" -eq 0 ] || fail "write-back started before the stop"
	log "$dirty dirty buffers"
}

# new_pattern LEN OFF: REF gets LEN random bytes, EXPECT has them at OFF.
new_pattern() {
	REF=$TMP/ref
	head -c "$1" /dev/urandom >"$REF"
	dd if="$REF" of="$EXPECT" bs=1M seek="$2" oflag=seek_bytes conv=notrunc status=none
}

check_backing() {
	cmp "$EXPECT" "$BACKING" || fail "the backing differs from what was written ($1)"
	verified=$((verified + $(stat -c %s "$REF")))
	log "$1: backing equals the expected image"
}

# By signal, the writer still holding the device file open (its close would
# write back by itself): SIGTERM and SIGINT, small and large blocks.
for case in TERM:4096 INT:65536 TERM:65536 INT:4096; do # SIGNAL:BLOCK_SIZE
	sig=${case%%:*} bs=${case#*:}
	off=$((RANDOM * 1000 + RANDOM % 4096))
	log "SIG$sig, $bs-byte blocks, 12 MiB at byte $off"
	new_pattern 12M "$off"
	serve "$bs"
	out=$TMP/scatter.$sig.$bs # a fresh file: no earlier case's line to find
	"$CRASHWRITER" scatter "$MNT/disk" "$REF" "$off" --seed "$RANDOM" --hold >"$out" &
	holder=$!
	PIDS+=("$holder")
	for ((n = 0; n < 600; n++)); do
		grep -q '^scatter:' "$out" 2>/dev/null && break
		kill -0 "$holder" 2>/dev/null || { cat "$out"; fail "scatter failed"; }
		sleep 0.1
	done
	grep -q '^scatter:' "$out" || fail "scatter did not finish within 60 s"
	check_dirty "$REF" "$off"
	kill "-$sig" "$DAEMON_PID"
	wait_rc "$DAEMON_PID"
	[ "$RC" -eq 0 ] || fail "bufiofs exited with $RC after SIG$sig"
	kill -KILL "$holder"
	wait "$holder" 2>/dev/null || true
	clear_dead_mount "$MNT" # the held file kept it alive: nothing to write
	check_backing "SIG$sig"
done

# By unmount: written through a loop device, which is then detached (its
# last close sends no flush), so nothing holds the mount and data is dirty.
for how in "fusermount3 -u" umount; do
	off=$(((RANDOM % 32) * 1024 * 1024 + (RANDOM % 8) * 512))
	log "$how, 16 MiB at byte $off through a loop device"
	new_pattern 16M "$off"
	serve "$(pick 4096 16384 65536)"
	attach_loop "$MNT/disk"
	"$CRASHWRITER" scatter "$LOOP" "$REF" "$off" --seed "$RANDOM" --max-piece 65536 >/dev/null
	detach_loop "$LOOP"
	check_dirty "$REF" "$off"
	$how "$MNT"
	wait_rc "$DAEMON_PID"
	[ "$RC" -eq 0 ] || fail "bufiofs exited with $RC after $how"
	check_backing "$how"
done

# Under load: every write completed before the signal must be on the backing.
STATE=$TMP/state # none yet: every sector holds the initial pattern
"$CRASHWRITER" init "$BACKING" "$SIZE"
acked_total=0
for ((round = 1; round <= ROUNDS; round++)); do
	sig=$([ $((round % 2)) -eq 1 ] && echo TERM || echo INT)
	bs=$(pick 4096 16384 65536)
	start_fg "$BACKING" "$MNT" -o "$HOLD,block_size=$bs,io_engine=$(pick io_uring threads)"
	"$CRASHWRITER" write "$MNT/disk" "$TMP/w.$round" --gen "$round" --seed "$RANDOM" \
		--threads 4 --max-sectors 64 --sync-every 0 --seconds 120 --ack-writes \
		>"$TMP/writer.out" 2>&1 &
	wpid=$!
	PIDS+=("$wpid")
	sleep "0.$((3 + RANDOM % 7))"
	kill -0 "$wpid" 2>/dev/null || { cat "$TMP/writer.out"; fail "the writer ended early"; }
	dirty=$(ctl "$MNT" disk/buffers_dirty)
	kill "-$sig" "$DAEMON_PID"
	wait_rc "$DAEMON_PID"
	[ "$RC" -eq 0 ] || fail "bufiofs exited with $RC after SIG$sig under load"
	wait_gone "$wpid" 30 "the writer"
	clear_dead_mount "$MNT"
	acked=$(sed -n 's/^ACKED_BYTES=//p' "$TMP/writer.out")
	out=$("$CRASHWRITER" verify "$BACKING" --state "$STATE" --update --log "$TMP/w.$round") ||
		{ echo "$out"; fail "SIG$sig under load ($bs-byte blocks) lost completed writes"; }
	log "round $round: SIG$sig with $dirty dirty buffers, $bs-byte blocks: $acked bytes" \
		"completed, all on the backing"
	acked_total=$((acked_total + acked))
	verified=$((verified + $(echo "$out" | sed -n 's/^VERIFIED_BYTES=//p')))
done
[ "$acked_total" -gt 0 ] || fail "no write completed before a stop"
check_daemon_log
log "ok: 6 stops with a pattern, $ROUNDS under load; $verified bytes verified"
echo "RESULT clean_stop rounds=$((6 + ROUNDS)) verified_bytes=$verified failures=0"
