#!/bin/bash
# Writes of every shape land where they belong, in every cache mode. The
# workers read a write's data straight into block memory and the cache
# adopts whole uncached blocks instead of copying (src/fuse/rx.c), so this
# mixes aligned and unaligned offsets, writes shorter and longer than a
# request, blocks cached (copied into) and not (adopted), a cache far smaller
# than the data, and control-file writes in between. Every write is applied
# to a model file too; device, then backing, must equal the model.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_fuse
need_tools cmp python3

BACKING=$TMP/backing.img
MODEL=$TMP/model.img
MNT=$TMP/fuse
head -c 24M /dev/urandom >"$BACKING"
cp "$BACKING" "$MODEL"
start_fg "$BACKING" "$MNT" -o max_cache_size_bytes=2M

# writes SEED: one round of writes through the device file and into the model.
writes() {
	python3 - "$MNT/disk" "$MODEL" "$1" <<'PY'
import os, random, sys
dev, model, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
size = os.path.getsize(model)
d = os.open(dev, os.O_WRONLY)
m = os.open(model, os.O_WRONLY)
shapes = [(0, 1 << 20), (3 * 4096, 5000), (1000, 3 << 20), (4095, 1), (4096 * 7, 4096 * 256),
          ((1 << 20) + 512, 4096 * 3), (size - 4096, 4096), (size - 100, 100), (8 << 20, 4 << 20)]
shapes += [(rng.randrange(size - (2 << 20)), rng.choice([1, 511, 4096, 8191, 65536, 1 << 20, 1234567]))
           for _ in range(40)]
# Last, so nothing overwrites them: the second of each pair rewrites blocks
# still cached, which are copied into, not adopted.
shapes += [(4096 * 9, 4096 * 64), (4096 * 9, 4096 * 64), (5 << 20, 1 << 20), (5 << 20, 1 << 20)]
for off, n in shapes:
    data = rng.randbytes(n)
    if os.pwrite(d, data, off) != n:
        sys.exit("short write at %d" % off)
    os.pwrite(m, data, off)
os.close(d)
os.close(m)
PY
}

seed=1
for mode in writeback writethrough none writeback; do
	log "cache_mode $mode: writes of every shape, twice over the same places"
	echo "$mode" >"$MNT/control/disk/cache_mode"
	writes $seed
	# A control write between data writes goes the gathered way.
	echo 4 >"$MNT/control/disk/writeback_ratio"
	writes $seed # same offsets again: now many blocks are cached
	writes $((seed + 100))
	cmp "$MODEL" "$MNT/disk" || fail "the device reads back wrong after cache_mode $mode"
	seed=$((seed + 1))
done

log "after a cold start of the cache, and on the backing after a stop"
echo 1 >"$MNT/control/disk/drop_caches"
cmp "$MODEL" "$MNT/disk" || fail "the device reads back wrong with a cold cache"
stop_term "$DAEMON_PID"
cmp "$MODEL" "$BACKING" || fail "the backing differs from what was written"
log "ok"
