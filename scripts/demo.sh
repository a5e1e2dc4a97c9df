#!/usr/bin/env bash
# The one-command start, as root on a fresh Debian machine: install the
# dependencies, build, and serve the sparse 1 GiB demo image at
# ${BUFIOFS_DEMO_MNT:-/mnt/bufiofs} (in the background), then show it in use.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mnt=${BUFIOFS_DEMO_MNT:-/mnt/bufiofs}
[ "${BUFIO_SKIP_DEPS:-}" = 1 ] || scripts/deps.sh
scripts/build.sh build >/dev/null
bin=$top/build/src/daemon/bufiofs

if grep -q " $mnt fuse" /proc/mounts; then
	echo "bufiofs already serves $mnt"
else
	"$bin" --demo "$mnt"
fi
echo
echo "== $mnt"
ls -l "$mnt" "$mnt/control/disk" | head -20
echo
echo "== a quick fio job (4 KiB random read/write, crc32c verify) against $mnt/disk"
if command -v fio >/dev/null; then
	fio --name=demo --filename="$mnt/disk" --size=64M --bs=4k --rw=randrw \
		--ioengine=psync --verify=crc32c --do_verify=1 --verify_state_save=0 --runtime=5 --time_based=0 \
		--output-format=terse --terse-version=3 >/dev/null && echo "fio: verified OK"
fi
echo
echo "== $mnt/control/disk/stats"
cat "$mnt/control/disk/stats"
cat <<EOT

bufiofs is serving $mnt/disk. Try:
  losetup -f --show $mnt/disk            # then mkfs.ext4 /dev/loopN and mount it
  cat $mnt/control/disk/stats
  echo 64M > $mnt/control/max_cache_size_bytes
  echo 1 > $mnt/control/disk/flush
Stop it (dirty data is written back first):  fusermount3 -u $mnt
EOT
