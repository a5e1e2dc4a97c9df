#!/bin/bash
# ext4 on a loop device on the FUSE file: mkfs, mount, write and checksum
# files, e2fsck clean, then restart the daemon and find every file intact.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_loop
need_tools mkfs.ext4 e2fsck sha256sum

BACKING=$TMP/backing.img
MNT=$TMP/fuse
FS=$TMP/ext4
truncate -s 512M "$BACKING"
mkdir -p "$FS"

log "serve, mkfs.ext4, write files"
# A cache smaller than the data written: eviction and write-back under load.
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=16M
attach_loop "$MNT/disk"
mkfs.ext4 -q -F "$LOOP"
mount "$LOOP" "$FS"
FS_MOUNTS+=("$FS")
mkdir -p "$FS/dir/sub"
for i in $(seq 1 12); do
	head -c $((i * 1024 * 1024 + i * 777)) /dev/urandom >"$FS/dir/file$i"
done
for i in $(seq 1 200); do
	echo "small file $i $RANDOM" >"$FS/dir/sub/s$i"
done
(cd "$FS" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$TMP/sums"
sync
umount "$FS"

log "e2fsck on the live device"
e2fsck -fn "$LOOP" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck found errors"; }
detach_loop "$LOOP"

log "stop (SIGTERM), restart, verify"
stop_term "$DAEMON_PID"
start_fg "$BACKING" "$MNT"
attach_loop "$MNT/disk"
mount "$LOOP" "$FS"
(cd "$FS" && sha256sum --quiet -c "$TMP/sums") || fail "checksums differ after restart"
umount "$FS"
e2fsck -fn "$LOOP" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck after restart"; }
detach_loop "$LOOP"
stop_term "$DAEMON_PID"

log "the backing alone holds a clean file system"
e2fsck -fn "$BACKING" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck on the backing"; }
log "ok"
