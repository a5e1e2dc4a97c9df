#!/bin/bash
# Load soak: fio with crc32c verification straight on the FUSE file and then
# through ext4 on a loop device on it, with the cache at 1% of the working
# set, while another process keeps changing the tunables (cache size up and
# down, cache_mode, drop_caches, flush). No verify error, a clean e2fsck, the
# data on the backing after stop, no sanitizer report and exit 0 on SIGTERM.
# BUFIO_SOAK=1 makes every round much larger.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/load_lib.sh"
need_fuse
need_loop
need_tools fio mkfs.ext4 e2fsck timeout
URING=$(uring_engine)

# Per fio job, MiB: 8 jobs on the raw file, 4 files in ext4.
RAW_JOB=$(soak_scale 24 512)
EXT_JOB=$(soak_scale 24 512)
RAW_WS=$((8 * RAW_JOB * MIB))
EXT_WS=$((4 * EXT_JOB * MIB))

BACKING=$TMP/backing.img
MNT=$TMP/fuse
FS=$TMP/ext4

log "raw FUSE file: working set $((RAW_WS / MIB)) MiB, cache $((RAW_WS / 100)) bytes"
truncate -s $((RAW_WS + 64 * MIB)) "$BACKING"
CACHE=$((RAW_WS / 100))
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=$CACHE
churn_start "$MNT" disk "$((CACHE / 4)) $((CACHE / 2)) $CACHE $((CACHE * 4))"

# Round 1: four writers on set A. Round 2: set A read back and verified
# (verify_only) while four other writers fill set B.
A=0 B=$((4 * RAW_JOB * MIB))
fio_round raw-1 "$(raw_global "$MNT/disk" "$RAW_JOB")
$(raw_writers a "$RAW_JOB" $A 100)"
VERIFIED=$((VERIFIED + 4 * RAW_JOB * MIB))
fio_round raw-2 "$(raw_global "$MNT/disk" "$RAW_JOB")
$(raw_writers a "$RAW_JOB" $A 100 verify_only=1)
$(raw_writers b "$RAW_JOB" $B 200)"
VERIFIED=$((VERIFIED + 8 * RAW_JOB * MIB))
churn_stop "$MNT" disk $CACHE
stop_daemon
log "peak RSS $((HWM_KIB / 1024)) MiB (ASan: bounded by test_load_rss.sh on the plain daemon)"

log "the backing holds both sets after stop"
fio_round raw-backing "$(raw_global "$BACKING" "$RAW_JOB")
$(raw_writers a "$RAW_JOB" $A 100 verify_only=1)
$(raw_writers b "$RAW_JOB" $B 200 verify_only=1)"
VERIFIED=$((VERIFIED + 8 * RAW_JOB * MIB))

log "ext4 on a loop device on the FUSE file: working set $((EXT_WS / MIB)) MiB"
rm -f "$BACKING"
truncate -s $((EXT_WS * 2 + 256 * MIB)) "$BACKING"
CACHE=$((EXT_WS / 100))
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=$CACHE
attach_loop "$MNT/disk"
mkfs.ext4 -q -F "$LOOP"
mkdir -p "$FS"
mount "$LOOP" "$FS"
FS_MOUNTS+=("$FS")

# Four files in ext4: buffered psync with an fsync every 16 writes, random
# buffered 4k with fdatasync, random libaio direct, sequential io_uring direct.
ext_jobs() {
	printf '[global]\ndirectory=%s\nsize=%s\nverify=crc32c\nverify_fatal=1\ndo_verify=1\nend_fsync=1\n' \
		"$FS" "$((EXT_JOB * MIB))"
	fio_job e-seq-psync rw=write ioengine=psync bs=64k fsync=16 randseed=300 "$@"
	fio_job e-rand-psync rw=randwrite ioengine=psync bs=4k fdatasync=64 randseed=301 "$@"
	fio_job e-rand-libaio rw=randwrite ioengine=libaio direct=1 iodepth=16 \
		bsrange=4k-128k randseed=302 "$@"
	fio_job "e-seq-$URING" rw=write ioengine="$URING" direct=1 iodepth=4 bs=256k \
		randseed=303 "$@"
}

churn_start "$MNT" disk "$((CACHE / 4)) $((CACHE / 2)) $CACHE $((CACHE * 4))"
fio_round ext4-write "$(ext_jobs)"
VERIFIED=$((VERIFIED + EXT_WS))
log "remount (cold page cache) and verify while the churn goes on"
umount "$FS"
mount "$LOOP" "$FS"
fio_round ext4-verify "$(ext_jobs verify_only=1)"
VERIFIED=$((VERIFIED + EXT_WS))
churn_stop "$MNT" disk $CACHE
umount "$FS"
e2fsck -fn "$LOOP" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck on the loop device"; }
detach_loop "$LOOP"
stop_daemon
log "peak RSS $((HWM_KIB / 1024)) MiB (ASan: bounded by test_load_rss.sh on the plain daemon)"
e2fsck -fn "$BACKING" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck on the backing"; }

log "ok: $((VERIFIED / MIB)) MiB verified"
