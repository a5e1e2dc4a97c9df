#!/bin/bash
# fio with crc32c verification against the FUSE file, through psync,
# libaio (O_DIRECT) and io_uring, with a cache far smaller than the data;
# then the same data must be on the backing after the daemon stops.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_tools fio cmp
cd "$TMP" # fio leaves verify state files in the working directory

BACKING=$TMP/backing.img
MNT=$TMP/fuse
truncate -s 256M "$BACKING"
# 4 MiB of cache for 64-192 MiB of I/O per job.
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=4M

# run_fio NAME OFFSET FIO-ARGS...: write 64 MiB and read it back verified.
run_fio() {
	local name=$1 offset=$2
	shift 2
	fio_verify "$name" "$offset" 64M "$@"
}

run_fio psync 0 --ioengine=psync --bs=4k
run_fio psync-odd 64M --ioengine=psync --bs=3k --numjobs=1
run_fio libaio 128M --ioengine=libaio --direct=1 --iodepth=32 --bsrange=4k-256k
run_fio io_uring 192M --ioengine=io_uring --direct=1 --iodepth=32 --bs=64k

log "verify everything again with a cold cache"
echo 1 >"$MNT/control/disk/drop_caches"
fio --name=psync --filename="$MNT/disk" --offset=0 --size=64M --rw=randwrite --bs=4k \
	--verify=crc32c --verify_only --randrepeat=1 --output="$TMP/fio-reverify.log" ||
	{ cat "$TMP/fio-reverify.log"; fail "re-verify"; }

log "writethrough and none modes"
echo writethrough >"$MNT/control/disk/cache_mode"
run_fio wt 0 --ioengine=psync --bs=16k --size=16M
echo none >"$MNT/control/disk/cache_mode"
run_fio none 32M --ioengine=io_uring --direct=1 --iodepth=8 --bs=8k --size=16M
echo writeback >"$MNT/control/disk/cache_mode"
run_fio wb-again 0 --ioengine=psync --bs=16k --size=16M

log "the backing matches the FUSE file after stop"
sha256sum <"$MNT/disk" >"$TMP/fuse.sum"
stop_term "$DAEMON_PID"
sha256sum <"$BACKING" >"$TMP/backing.sum"
cmp "$TMP/fuse.sum" "$TMP/backing.sum" || fail "backing differs from what the FUSE file showed"
log "ok"
