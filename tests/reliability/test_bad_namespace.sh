#!/bin/bash
# The fixed namespace against every call that would change it, on every kind
# of node (root, control/, control/disk/, the device file, control files, a
# name that does not exist): create, O_EXCL, O_TRUNC, O_TMPFILE, mknod of each
# type, mkdir, rmdir, unlink, rename (plain, across mounts, NOREPLACE,
# EXCHANGE), link, symlink, truncate and ftruncate to other sizes, chmod,
# chown, the four xattr calls, fallocate modes, writes and reads past the end.
# Each gets its proper errno (the exact strerror text), and afterwards the
# data, the control files and a clean stop are as before.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
need_fuse
need_tools cmp dd head stat
FSOP=${2:?usage: $0 BUFIOFS BUILD_DIR}/tests/reliability/fsop
[ -x "$FSOP" ] || fail "$FSOP is not built"

BACKING=$TMP/backing.img
MNT=$TMP/fuse
SIZE=$((16 << 20))
head -c $SIZE /dev/urandom >"$TMP/expect"
cp "$TMP/expect" "$BACKING"
start_fg "$BACKING" "$MNT"
R=$MNT
CD=$MNT/control
DD=$MNT/control/disk
DF=$MNT/disk
GC=$CD/max_age_seconds
DC=$DD/cache_mode
RO=$DD/hits
AC=$DD/flush
NX=$MNT/nonexistent
OUT=$TMP/out # another file system, for cross-device calls
mkdir -p "$OUT"
: >"$OUT/file"
CALLS=0

# op WANT ARGS...: fsop ARGS answers exactly WANT ("ok", "ok N" or a strerror text).
op() {
	local want=$1 got
	shift
	CALLS=$((CALLS + 1))
	got=$("$FSOP" "$@" 2>&1) || true
	[ "$got" = "$want" ] || fail "$*: got '$got', want '$want'"
}

EPERM="Operation not permitted"
ENOENT="No such file or directory"
EEXIST="File exists"
EINVAL="Invalid argument"
EISDIR="Is a directory"
ENOTDIR="Not a directory"
EACCES="Permission denied"
ENOTSUP="Operation not supported"
ENOSPC="No space left on device"
EXDEV="Invalid cross-device link"
EBUSY="Device or resource busy"

log "creating: files, O_EXCL, O_TMPFILE, nodes of every type, directories, links"
for dir in "$R" "$CD" "$DD"; do
	op "$EPERM" open "$dir/new" wronly,creat
	op "$EPERM" open "$dir/new" rdwr,creat,excl
	op "$ENOTSUP" open "$dir" rdwr,tmpfile
	for type in reg fifo chr blk sock; do
		op "$EPERM" mknod "$dir/node" "$type"
	done
	op "$EPERM" mkdir "$dir/sub"
	op "$EPERM" symlink disk "$dir/link"
	op "$EPERM" link "$DF" "$dir/hard"
done
for f in "$DF" "$GC" "$RO" "$CD"; do
	op "$EEXIST" open "$f" rdwr,creat,excl
	op "$EEXIST" mknod "$f" reg
	op "$EEXIST" symlink disk "$f"
	op "$EEXIST" link "$DF" "$f"
done
op "$EEXIST" mkdir "$CD"
op "$EEXIST" mkdir "$DD"
op "$EEXIST" mkdir "$DF"
op "$EPERM" link "$CD" "$R/dirlink" # no hard links to directories
op "$EXDEV" link "$DF" "$OUT/hard"
op ok open "$DF" rdwr,creat # the existing file is simply opened

log "removing and renaming"
for f in "$DF" "$GC" "$DC" "$RO" "$AC"; do
	op "$EPERM" unlink "$f"
	op "$ENOTDIR" rmdir "$f"
	op "$EPERM" rename "$f" "$R/renamed"
	op "$EPERM" rename "$f" "$(dirname "$f")/renamed"
	op "$EXDEV" rename "$f" "$OUT/renamed"
	op "$EEXIST" rename "$f" "$CD" noreplace
done
for d in "$CD" "$DD"; do
	op "$EPERM" rmdir "$d"
	op "$EISDIR" unlink "$d"
	op "$EPERM" rename "$d" "$R/renamed"
done
op "$EBUSY" rmdir "$R"
op "$EPERM" rename "$DF" "$CD" exchange
op "$EPERM" rename "$GC" "$DC" exchange
op "$EPERM" rename "$GC" "$CD/max_cache_size_bytes"
op "$EXDEV" rename "$OUT/file" "$R/moved"
for f in "$NX" "$CD/nonexistent" "$DD/nonexistent"; do
	op "$ENOENT" unlink "$f"
	op "$ENOENT" rmdir "$f"
	op "$ENOENT" rename "$f" "$R/renamed"
	op "$ENOENT" open "$f" rdonly
	op "$ENOENT" link "$f" "$R/renamed"
done
op "File name too long" open "$R/$(printf 'n%.0s' {1..256})" rdonly

log "sizes: truncate, ftruncate and O_TRUNC change nothing"
for size in 0 1 4096 $((SIZE - 4096)) $((SIZE - 1)) $((SIZE + 1)) $((SIZE + 4096)) $((1 << 40)); do
	op "$EINVAL" truncate "$DF" "$size"
	op "$EINVAL" ftruncate "$DF" "$size"
done
op "$EINVAL" truncate "$DF" -1
op ok truncate "$DF" "$SIZE"
op ok ftruncate "$DF" "$SIZE"
op "$EINVAL" open "$DF" wronly,trunc
op "$EINVAL" open "$DF" rdwr,trunc
[ "$(stat -c %s "$DF")" = "$SIZE" ] || fail "the device file's size changed"
before=$(cat "$GC")
for f in "$GC" "$DC"; do
	op ok open "$f" wronly,trunc # a control file is empty before a write: a no-op
	op ok truncate "$f" 0
	op "$EINVAL" truncate "$f" 1
	op "$EINVAL" truncate "$f" 4096
done
[ "$(cat "$GC")" = "$before" ] || fail "O_TRUNC or truncate changed $GC"
op "$EACCES" open "$RO" wronly,trunc
op "$EACCES" open "$AC" rdonly
op "$EISDIR" truncate "$CD" 0
op "$EISDIR" open "$CD" wronly
op "$EISDIR" open "$R" rdwr
op "$ENOTDIR" open "$DF" rdonly,directory
op "$ENOTDIR" open "$GC" rdonly,directory

log "ownership and mode"
for f in "$DF" "$GC" "$RO" "$AC" "$CD" "$DD" "$R"; do
	mode=$(stat -c %a "$f")
	op "$EPERM" chmod "$f" 0777
	op "$EPERM" chmod "$f" "$mode" # not even to the same mode
	op "$EPERM" chown "$f" 65534 65534
	op "$EPERM" chown "$f" 0 65534
	op ok chown "$f" -1 -1
	op ok utimens "$f" # timestamps are accepted and ignored
	[ "$(stat -c %a "$f")" = "$mode" ] || fail "the mode of $f changed"
	[ "$(stat -c %u:%g "$f")" = 0:0 ] || fail "the owner of $f changed"
done

log "extended attributes: not supported, on every node"
for f in "$DF" "$GC" "$RO" "$CD" "$DD" "$R"; do
	op "$ENOTSUP" setxattr "$f" user.test value
	op "$ENOTSUP" getxattr "$f" user.test
	op "$ENOTSUP" listxattr "$f"
	op "$ENOTSUP" removexattr "$f" user.test
	op "$ENOTSUP" getxattr "$f" security.selinux
	op "$ENOTSUP" setxattr "$f" trusted.test value
done
op "$ENOTSUP" fsetxattr "$DF" user.test value

log "fallocate: only punch and zero inside the device; nothing on control files"
for mode in alloc keep collapse insert; do
	op "$ENOTSUP" fallocate "$DF" "$mode" 0 4096
done
op "$ENOSPC" fallocate "$DF" zero $((SIZE - 4096)) 8192
op "$EINVAL" fallocate "$DF" punch 0 0
op ok fallocate "$DF" punch "$SIZE" 4096 # wholly past the end: nothing to do
for mode in alloc punch zero; do
	op "$ENOTSUP" fallocate "$GC" "$mode" 0 4096
done

log "past the end: ENOSPC for writes, EOF for reads, a short write across it"
op "$ENOSPC" pwrite "$DF" "$SIZE" 1
op "$ENOSPC" pwrite "$DF" $((SIZE + 4096)) 4096
op "$ENOSPC" pwrite "$DF" $((1 << 62)) 512
op "$EINVAL" pwrite "$DF" -4096 4096
op "ok 0" pread "$DF" "$SIZE" 4096
op "ok 0" pread "$DF" $((1 << 62)) 4096
op "ok 100" pread "$DF" $((SIZE - 100)) 4096
printf 'y%.0s' {1..4096} | dd of="$TMP/expect" bs=4096 seek=$((SIZE / 4096 - 1)) conv=notrunc status=none
got=$(printf 'y%.0s' {1..8192} | "$FSOP" write "$DF" $((SIZE - 4096)))
[ "$got" = "ok 4096" ] || fail "a write across the end: '$got', want a short write of 4096"
op "ok 0" pwrite "$DF" "$SIZE" 0

log "$CALLS calls answered; data, control files and stop intact"
cmp "$DF" "$TMP/expect" || fail "the device reads wrong"
echo 1 >"$DD/drop_caches"
cmp "$DF" "$TMP/expect" || fail "the device reads wrong from the backing"
mapfile -t READABLE < <(find "$CD" -type f -perm /0444)
for f in "${READABLE[@]}"; do cat "$f" >/dev/null || fail "cannot read $f"; done
[ "$(find "$MNT" | wc -l)" = "$(($(find "$CD" -mindepth 1 | wc -l) + 3))" ] ||
	fail "the namespace changed: $(find "$MNT" | head -50)"
[ "$(ls "$R")" = "$(printf 'control\ndisk')" ] || fail "the root lists: $(ls "$R")"
stop_term "$DAEMON_PID"
cmp "$BACKING" "$TMP/expect" || fail "the backing differs after the stop"
log "ok"
