#!/bin/bash
# ext4 on a loop device on the bufiofs file, under a metadata-heavy workload
# (fschurn: small files created, renamed, linked, truncated, deleted,
# directories made and removed, and now and then a file made durable with
# fsync of the file and its directory, its checksum logged only then), and
# kill -9 of the daemon in the middle. Then: ext4 unmounted (it has seen I/O
# errors), loop device detached, dead FUSE mount cleared, daemon restarted
# with other settings, ext4 mounted again (journal replay) and unmounted:
# e2fsck -fn must find nothing to fix and every fsynced file must be intact.
# 3 rounds (BUFIO_SOAK=1: 30; BUFIO_ITERATIONS=N), BUFIO_SEED replays one.
set -euo pipefail
source "$(dirname "$0")/crash_lib.sh"
need_fuse
need_loop
need_crash_tools
need_tools mkfs.ext4 e2fsck

ROUNDS=$(iterations 3 30)
BACKING=$TMP/backing.img
MNT=$TMP/fuse
FS=$TMP/ext4
KEPT=$TMP/kept.log # "K name size checksum" after fsync of file and directory
mkdir -p "$FS"
truncate -s 256M "$BACKING"
log "seed $SEED (BUFIO_SEED=$SEED replays), $ROUNDS rounds"

# serve: the daemon with random settings and a loop device on its file.
serve() {
	random_opts
	start_fg "$BACKING" "$MNT" -o "$DAEMON_OPTS"
	attach_loop "$MNT/disk"
}

# mount_fs WHY: half the time with online discard (punches under the cache).
mount_fs() {
	MOUNT_OPTS=$(pick defaults discard)
	mount -o "$MOUNT_OPTS" "$LOOP" "$FS" || fail "cannot mount ext4 ($1)"
	FS_MOUNTS+=("$FS")
}

# umount_fs: ext4 has seen I/O errors; a lazy unmount if it will not go.
umount_fs() {
	timeout 60 umount "$FS" 2>/dev/null || umount -l "$FS"
	FS_MOUNTS=()
}

fsck_clean() {
	e2fsck -fn "$1" >"$TMP/fsck.log" 2>&1 ||
		{ cat "$TMP/fsck.log"; fail "e2fsck found errors ($2)"; }
}

serve
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
total=0
for ((round = 1; round <= ROUNDS; round++)); do
	mount_fs "round $round"
	"$FSCHURN" run "$FS" "$KEPT" --gen "$round" --seed "$RANDOM$RANDOM" --seconds 120 \
		>"$TMP/churn.out" 2>&1 &
	cpid=$!
	PIDS+=("$cpid")
	delay=$((1000 + RANDOM % 3000))
	sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
	kill -0 "$cpid" 2>/dev/null || { cat "$TMP/churn.out"; fail "fschurn ended before the kill"; }
	kill9 "$DAEMON_PID"
	wait_gone "$cpid" 60 "fschurn"
	cat "$TMP/churn.out"
	grep -q 'stopped by the deadline' "$TMP/churn.out" && fail "fschurn was not interrupted"
	grep -q '^fschurn: ' "$TMP/churn.out" || fail "fschurn failed"
	log "round $round: $DAEMON_OPTS, mount -o $MOUNT_OPTS, killed after $delay ms"

	umount_fs
	detach_loop "$LOOP"
	clear_dead_mount "$MNT"

	serve
	mount_fs "journal replay after round $round" # replays the journal
	out=$("$FSCHURN" verify "$FS" "$KEPT" --update) ||
		{ echo "$out"; fail "fsynced files lost or damaged after round $round"; }
	echo "$out" | grep '^fsverify:'
	total=$((total + $(echo "$out" | sed -n 's/^VERIFIED_BYTES=//p')))
	if [ "$round" -eq "$ROUNDS" ]; then
		log "the check can fail: one byte appended to a kept file is caught"
		name=$(sed -n 's/^K \(g[^ ]*\) .*/\1/p' "$KEPT" | tail -n 1)
		printf x >>"$FS/keep/$name"
		"$FSCHURN" verify "$FS" "$KEPT" >"$TMP/neg.out" &&
			fail "a changed kept file passed verification"
		grep -q "FAIL .*/$name: fsynced" "$TMP/neg.out" || { cat "$TMP/neg.out"; fail "not caught"; }
	fi
	umount "$FS"
	FS_MOUNTS=()
	fsck_clean "$LOOP" "after round $round"
done

log "clean stop: the backing alone holds a clean file system"
detach_loop "$LOOP"
stop_term "$DAEMON_PID"
fsck_clean "$BACKING" "on the backing"
check_daemon_log
files=$(grep -c '^K g' "$KEPT" || true)
[ "$files" -gt 0 ] || fail "no file was ever made durable before a kill"
log "ok: $ROUNDS kills; $files fsynced files kept, $total bytes verified in all"
echo "RESULT crash_ext4 rounds=$ROUNDS verified_bytes=$total failures=0"
