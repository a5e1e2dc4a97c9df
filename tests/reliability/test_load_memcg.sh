#!/bin/bash
# Memory pressure: the daemon in a memory-limited cgroup (v1 or v2) serves
# ext4 on a loop device through heavy writes, first with the default budget
# (0 = 2% of the cgroup limit, which must follow the daemon into the cgroup),
# then with an explicit budget larger than the whole cgroup. No deadlock
# (everything within a generous timeout), no OOM kill, the daemon alive, the
# data verified by fio and e2fsck, exit 0 on SIGTERM without sanitizer report.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/load_lib.sh"
need_fuse
need_loop
need_tools fio mkfs.ext4 e2fsck timeout

LIMIT=$((192 * MIB))
FILES=$(soak_scale 4 16) # files per round, each half the cgroup limit
FILE=$((LIMIT / 2))

BACKING=$TMP/backing.img
MNT=$TMP/fuse
FS=$TMP/ext4
CG=
CG_HOME=

# A memory cgroup of our own: v2 if the unified hierarchy has the memory
# controller, else v1. Sets CG, CG_VER and CG_HOME (where we came from).
cg_create() {
	local name=bufiofs-$TEST_NAME-$$
	if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		CG_VER=2
		CG_HOME=/sys/fs/cgroup$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
		grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
			echo +memory >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null ||
			skip "cannot enable the memory controller in /sys/fs/cgroup"
		CG=/sys/fs/cgroup/$name
		mkdir "$CG" || skip "cannot create cgroup $CG"
		echo "$LIMIT" >"$CG/memory.max"
		[ ! -e "$CG/memory.swap.max" ] || echo 0 >"$CG/memory.swap.max"
	elif [ -w /sys/fs/cgroup/memory/memory.limit_in_bytes ] || [ -w /sys/fs/cgroup/memory/cgroup.procs ]; then
		CG_VER=1
		CG_HOME=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
		CG=/sys/fs/cgroup/memory/$name
		mkdir "$CG" || skip "cannot create cgroup $CG"
		echo "$LIMIT" >"$CG/memory.limit_in_bytes"
		[ ! -e "$CG/memory.memsw.limit_in_bytes" ] || echo "$LIMIT" >"$CG/memory.memsw.limit_in_bytes"
	else
		skip "no writable memory cgroup controller (v1 or v2) under /sys/fs/cgroup"
	fi
	log "cgroup v$CG_VER $CG, limit $((LIMIT / MIB)) MiB"
}

# Undo cg_create: send whatever still runs in it home, then remove it.
cg_remove() {
	local p
	[ -n "$CG" ] && [ -d "$CG" ] || return 0
	while read -r p; do
		echo "$p" >"$CG_HOME/cgroup.procs" 2>/dev/null
	done <"$CG/cgroup.procs"
	rmdir "$CG" 2>/dev/null || echo "warning: cannot remove cgroup $CG" >&2
}
trap 'rc=$?; set +e; cg_remove; (exit $rc); cleanup' EXIT
FIO_FAIL_HOOK=check_alive # an OOM kill explains a failed fio best

# OOM kills in our cgroup so far.
cg_oom_kills() {
	local f=$CG/memory.events
	[ "$CG_VER" = 2 ] || f=$CG/memory.oom_control
	awk '$1 == "oom_kill" { print $2; found = 1 } END { if (!found) print 0 }' "$f"
}

# Times the cgroup hit its limit (proof that the pressure was real).
cg_limit_hits() {
	if [ "$CG_VER" = 2 ]; then
		awk '$1 == "max" { print $2 }' "$CG/memory.events"
	else
		cat "$CG/memory.failcnt"
	fi
}

cg_peak() {
	if [ "$CG_VER" = 2 ]; then
		cat "$CG/memory.peak" 2>/dev/null || echo unknown
	else
		cat "$CG/memory.max_usage_in_bytes"
	fi
}

# check_alive WHAT: the daemon is alive, the cgroup saw no OOM kill, and the
# kernel log (where readable) names no OOM kill of it.
check_alive() {
	local kills
	kills=$(cg_oom_kills)
	[ "$kills" -eq 0 ] || fail "$1: $kills OOM kill(s) in the cgroup"
	kill -0 "$DAEMON_PID" 2>/dev/null || fail "$1: the daemon died"
	if dmesg >"$TMP/dmesg" 2>/dev/null; then
		if grep -E "Killed process $DAEMON_PID |oom-kill:.*task_memcg=/${CG##*/}" "$TMP/dmesg" >&2; then
			fail "$1: the kernel log reports an OOM kill of the daemon"
		fi
	fi
}

# ext4 files written with verification by buffered psync (fsync every
# 8 MiB) and direct libaio writers.
ext_global() {
	printf '[global]\ndirectory=%s\nsize=%s\nverify=crc32c\nverify_fatal=1\ndo_verify=1\nend_fsync=1\n' \
		"$FS" "$FILE"
}

ext_jobs() {
	local i
	for ((i = 0; i < FILES; i++)); do
		if ((i % 2)); then
			fio_job "$1-$i" rw=write ioengine=libaio direct=1 iodepth=16 bs=256k \
				randseed=$((i + 1)) "${@:2}"
		else
			fio_job "$1-$i" rw=write ioengine=psync bs=1m fsync=8 randseed=$((i + 1)) "${@:2}"
		fi
	done
}

# round NAME: heavy writes with verification.
round() {
	log "$1: $FILES files of $((FILE / MIB)) MiB, budget $(ctl "$MNT" effective_cache_size_bytes) bytes"
	fio_round "$1" "$(ext_global)
$(ext_jobs "$1")"
	check_alive "$1"
	VERIFIED=$((VERIFIED + FILES * FILE))
	log "$1: cgroup peak $(cg_peak) bytes, limit hit $(cg_limit_hits) times," \
		"daemon RSS $(vm_kib "$DAEMON_PID" VmRSS) KiB, cache peak $(ctl "$MNT" peak_allocated_bytes)"
}

cg_create
truncate -s $((3 * FILES * FILE + 512 * MIB)) "$BACKING"
# ASan keeps up to 256 MiB of freed memory in quarantine by default, more
# than the whole cgroup: an artifact of the instrumented daemon, kept small.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8" start_fg "$BACKING" "$MNT"
[ "$(ctl "$MNT" max_cache_size_bytes)" = 0 ] || fail "the default budget is not 0"
echo "$DAEMON_PID" >"$CG/cgroup.procs"
grep -qx "$DAEMON_PID" "$CG/cgroup.procs" || fail "the daemon did not move into $CG"

log "the default budget follows the daemon into the cgroup: 2% of its limit"
want=$((LIMIT / 100 * 2))
for ((n = 0; n < 300; n++)); do
	[ "$(ctl "$MNT" effective_cache_size_bytes)" = "$want" ] && break
	sleep 0.1
done
[ "$(ctl "$MNT" effective_cache_size_bytes)" = "$want" ] ||
	fail "effective_cache_size_bytes is $(ctl "$MNT" effective_cache_size_bytes), not 2% of the cgroup limit ($want)"

attach_loop "$MNT/disk"
mkfs.ext4 -q -F "$LOOP"
mkdir -p "$FS"
mount "$LOOP" "$FS"
FS_MOUNTS+=("$FS")
round default

log "an explicit budget larger than the cgroup"
echo $((4 * LIMIT)) >"$MNT/control/max_cache_size_bytes"
echo 0 >"$MNT/control/peak_allocated_bytes"
[ "$(ctl "$MNT" max_cache_size_bytes)" = $((4 * LIMIT)) ] || fail "max_cache_size_bytes not kept"
round too-large
eff=$(ctl "$MNT" effective_cache_size_bytes)
[ "$eff" -lt "$LIMIT" ] || fail "the budget in force ($eff) is not capped below the cgroup limit"
# The cap must not starve the cache either: it really used the room.
peak=$(ctl "$MNT" peak_allocated_bytes)
[ "$peak" -ge $((LIMIT / 4)) ] || fail "the cache peaked at $peak bytes, under a quarter of the cgroup"

log "a neighbour in the cgroup takes 64 MiB (tmpfs pages) while the writes go on"
# Pages of a tmpfs file are charged to the cgroup that wrote them and cannot
# be reclaimed without swap: the cap must make room by shrinking the cache.
mkdir -p "$TMP/shm"
mount -t tmpfs -o size=$((80 * MIB)) bufiofs-test "$TMP/shm"
FS_MOUNTS+=("$TMP/shm")
before=$(ctl "$MNT" effective_cache_size_bytes)
(
	echo "$BASHPID" >"$CG/cgroup.procs"
	for i in 0 1 2 3; do
		sleep 0.5
		dd if=/dev/zero of="$TMP/shm/hog" bs=1M count=16 seek=$((16 * i)) conv=notrunc status=none
	done
) &
HOG_PID=$!
PIDS+=("$HOG_PID")
round neighbour
wait "$HOG_PID" || fail "the neighbour could not take its memory"
[ "$(stat -c %s "$TMP/shm/hog")" -eq $((64 * MIB)) ] || fail "the neighbour's file is short"
# The cap (bufio.h): limit less other usage (the neighbour's 64 MiB at
# least) less limit / 8 + 16 MiB, less the 1/8 a writer may overshoot by.
# The background worker refreshes it at least every 5 s.
cap=$(((LIMIT - 64 * MIB - LIMIT / 8 - 16 * MIB) / 9 * 8))
for ((n = 0; n < 100; n++)); do
	after=$(ctl "$MNT" effective_cache_size_bytes)
	[ "$after" -gt "$cap" ] || break
	sleep 0.1
done
log "budget in force $before bytes before the neighbour, $after after (at most $cap)"
[ "$after" -le "$cap" ] || fail "the budget in force ($after) did not make room for the neighbour (cap $cap)"
check_alive neighbour
rm "$TMP/shm/hog"
umount "$TMP/shm"

log "verify every round again after a remount"
umount "$FS"
mount "$LOOP" "$FS"
fio_round reverify "$(ext_global)
$(ext_jobs default verify_only=1)
$(ext_jobs too-large verify_only=1)
$(ext_jobs neighbour verify_only=1)"
VERIFIED=$((VERIFIED + 3 * FILES * FILE))
check_alive reverify
umount "$FS"
e2fsck -fn "$LOOP" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck"; }
detach_loop "$LOOP"
stop_daemon
log "ok: $((VERIFIED / MIB)) MiB verified"
