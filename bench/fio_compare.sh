#!/usr/bin/env bash
# fio through bufiofs against the same backing read directly, and (when
# installed) through qemu-storage-daemon's FUSE export as a peer. Prints a
# table of IOPS and MB/s; asserts nothing. Root, /dev/fuse and fio needed.
#   bench/fio_compare.sh BUILD_DIR [SIZE_MiB] [RUNTIME_S]
set -euo pipefail
build=$(realpath "${1:?usage: $0 BUILD_DIR [SIZE_MiB] [RUNTIME_S]}")
size=${2:-1024}
rt=${3:-5}
bin=$build/src/daemon/bufiofs
work=$(mktemp -d /var/tmp/bufiofs-bench.XXXXXX)
mnt=$work/mnt
qmnt=$work/qemu
cleanup() {
	set +e
	mountpoint -q "$mnt" && fusermount3 -u "$mnt"
	[ -n "${qpid:-}" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	mountpoint -q "$qmnt/disk" 2>/dev/null && fusermount3 -u "$qmnt/disk"
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt" "$qmnt"
img=$work/backing.img
# A real (non-sparse) image so reads hit the disk, not holes.
dd if=/dev/urandom of="$img" bs=1M count="$size" status=none

# job NAME FILE RW BS DEPTH ENGINE DIRECT [once]: time-based unless "once"
# (one pass over the file, so a cold read stays cold).
job() {
	local out timing=(--runtime="$rt" --time_based)
	[ "${8:-}" = once ] && timing=(--loops=1)
	out=$(fio --name="$1" --filename="$2" --rw="$3" --bs="$4" --iodepth="$5" \
		--ioengine="$6" --direct="$7" --size="${size}M" "${timing[@]}" \
		--group_reporting --output-format=json 2>/dev/null)
	python3 -c '
import json,sys
j=json.load(sys.stdin)["jobs"][0]
r=j["read"]; w=j["write"]
iops=r["iops"]+w["iops"]; bw=(r["bw_bytes"]+w["bw_bytes"])/1e6
print("%-34s %-10s %5s %10.0f IOPS %9.1f MB/s" % (sys.argv[1], sys.argv[2], sys.argv[3], iops, bw))
' "$1" "$3" "$4" <<<"$out"
}

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

echo "backing: ${size} MiB on $(df --output=source "$work" | tail -1), runtime ${rt}s per job"
printf '%-34s %-10s %5s %15s %14s\n' "target" "rw" "bs" "iops" "bandwidth"
drop
job "direct file (O_DIRECT, io_uring)" "$img" randread 4k 32 io_uring 1
job "direct file (O_DIRECT, io_uring)" "$img" read 1M 8 io_uring 1 once

"$bin" -o cache_mode=none,max_cache_size_bytes=2G "$img" "$mnt"
drop
job "bufiofs cache_mode=none" "$mnt/disk" randread 4k 32 io_uring 1
fusermount3 -u "$mnt"

"$bin" -o max_cache_size_bytes=$((size * 2))M "$img" "$mnt"
drop
job "bufiofs writeback, cold (one pass)" "$mnt/disk" read 1M 8 io_uring 1 once
job "bufiofs writeback, warm (hits)" "$mnt/disk" randread 4k 32 io_uring 1
job "bufiofs writeback, warm (hits)" "$mnt/disk" read 1M 8 io_uring 1
job "bufiofs writeback, writes" "$mnt/disk" randwrite 4k 32 io_uring 1
grep -E '^(hit_ratio|writes|reads) ' "$mnt/control/disk/stats" | tr '\n' ' '
echo
fusermount3 -u "$mnt"

if command -v qemu-storage-daemon >/dev/null; then
	touch "$qmnt/disk"
	qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$img",cache.direct=on \
		--export type=fuse,id=e,node-name=f,mountpoint="$qmnt/disk",writable=on &
	qpid=$!
	for _ in $(seq 50); do mountpoint -q "$qmnt/disk" && break; sleep 0.1; done
	drop
	job "qemu-storage-daemon FUSE export" "$qmnt/disk" randread 4k 32 io_uring 1
	job "qemu-storage-daemon FUSE export" "$qmnt/disk" read 1M 8 io_uring 1 once
else
	echo "(qemu-storage-daemon not installed: apt-get install qemu-system-common for the peer)"
fi
