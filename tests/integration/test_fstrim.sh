#!/bin/bash
# fstrim on ext4 on a loop device on the FUSE file punches holes in the
# backing: discard travels loop -> fallocate(PUNCH_HOLE) -> bufio discard.
# Also fallocate ZERO_RANGE / PUNCH_HOLE directly on the FUSE file.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_loop
need_tools mkfs.ext4 fstrim fallocate du cmp

BACKING=$TMP/backing.img
MNT=$TMP/fuse
FS=$TMP/ext4
truncate -s 512M "$BACKING"
mkdir -p "$FS"
start_fg "$BACKING" "$MNT"

# Allocated KiB of the backing file.
used_kib() {
	du -k "$BACKING" | cut -f1
}

log "mkfs.ext4 (no discard), fill, delete, fstrim"
attach_loop "$MNT/disk"
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0 "$LOOP"
mount "$LOOP" "$FS"
FS_MOUNTS+=("$FS")
head -c 200M /dev/urandom >"$FS/big"
sync
echo 1 >"$MNT/control/disk/flush"
full=$(used_kib)
[ "$full" -gt $((190 * 1024)) ] || fail "backing uses only $full KiB after writing 200 MiB"
rm "$FS/big"
sync
fstrim -v "$FS" >"$TMP/fstrim.log" || { cat "$TMP/fstrim.log"; fail "fstrim"; }
echo 1 >"$MNT/control/disk/flush"
after=$(used_kib)
log "backing used: $full KiB before, $after KiB after fstrim"
[ "$after" -lt $((full - 150 * 1024)) ] || fail "fstrim freed too little: $full -> $after KiB"
[ "$(ctl "$MNT" disk/discards)" -gt 0 ] || fail "no discards counted"
umount "$FS"
e2fsck -fn "$LOOP" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "e2fsck after fstrim"; }
detach_loop "$LOOP"

log "fallocate on the FUSE file: zero range and punch hole, edges included"
head -c 8M /dev/urandom >"$TMP/ref"
dd if="$TMP/ref" of="$MNT/disk" bs=1M conv=notrunc status=none
# Unaligned ranges: partial blocks at both ends are zeroed in the cache.
fallocate -z -o 1000 -l 100000 "$MNT/disk"
fallocate -p -o 300000 -l 3000000 "$MNT/disk"
dd if=/dev/zero of="$TMP/ref" bs=1 seek=1000 count=100000 conv=notrunc status=none
dd if=/dev/zero of="$TMP/ref" bs=1000 seek=300 count=3000 conv=notrunc status=none
cmp -n $((8 << 20)) "$TMP/ref" "$MNT/disk" || fail "FUSE file differs after fallocate"
echo 1 >"$MNT/control/disk/drop_caches"
cmp -n $((8 << 20)) "$TMP/ref" "$MNT/disk" || fail "FUSE file differs after fallocate (cold cache)"
expect_errno "Operation not supported" fallocate -o 0 -l 4096 "$MNT/disk"
stop_term "$DAEMON_PID"
cmp -n $((8 << 20)) "$TMP/ref" "$BACKING" || fail "backing differs after fallocate"
log "ok"
