#!/usr/bin/env bash
# bufiofs against its peers, side by side in one run: the same fio jobs
# (bench/compare.fio) and an ext4 untar, interleaved system after system in
# every round, against the raw backing (O_DIRECT), a FUSE ceiling, bufiofs hot
# and cold, qemu-storage-daemon's FUSE export and nbdfuse over nbdkit's cache
# filter. Prints a markdown table of the medians and a PASS/MISS line per
# target. Root on Debian; installs what it needs. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
PY=${PYTHON:-python3}
HELPER=$here/compare.py
JOBFILE=$here/compare.fio

ALL_JOBS="randread-qd1 randread-qd32 randwrite-qd1 randwrite-qd32 seqread-1m seqwrite-1m zipf-read fs-untar scale sparse"
ALL_SYSTEMS="raw ceiling bufiofs-hot bufiofs-cold qsd-direct qsd-buffered nbd"

usage() {
	cat <<EOF
Usage: $0 [options]
  --size SIZE        backing image of random data (default 1G; K/M/G suffixes)
  --rounds N         rounds, the median is reported (default 3)
  --runtime S        seconds per fio job (default 10)
  --only JOB,...     jobs to run (default all): $ALL_JOBS
  --systems SYS,...  systems to run (default all): $ALL_SYSTEMS
  --quick            smoke test: 64M, 1 round, 2 s, scale 16M vs 256M
  --out FILE.md      where the table goes (default ./compare-DATE.md; the raw
                     results go next to it as FILE.jsonl)
  --bufiofs PATH     the daemon to measure (default: build $top/build-release)
  --dir DIR          scratch directory on a disk file system (default /var/tmp)
  --qsd-aio MODE     qemu-storage-daemon aio= (default io_uring)
  --nbd-connections N  nbdfuse multi-conn connections (default 4)
  --fuse-uring Y|N   Y: bufiofs (hot, cold, ceiling) serves over io_uring
                     (fuse_uring=yes, the fuse module's enable_uring on for
                     the run and restored after); default N: the switch
                     off (the kernel's default), so bufiofs reads /dev/fuse.
                     The peers' libfuse 3.14 cannot use it.
EOF
}

die() {
	echo "compare.sh: $*" >&2
	exit 1
}

size="" rounds="" runtime="" only="" systems="" out="" quick=0
bufiofs=${BUFIOFS:-} parent=${BENCH_DIR:-/var/tmp} qsd_aio=io_uring nbd_conns=4
scale_small="" scale_big="" sparse_big=16T fuse_uring=N
while [ $# -gt 0 ]; do
	case $1 in
	--size) size=${2:?}; shift ;;
	--rounds) rounds=${2:?}; shift ;;
	--runtime) runtime=${2:?}; shift ;;
	--only) only=${2:?}; shift ;;
	--systems) systems=${2:?}; shift ;;
	--quick) quick=1 ;;
	--out) out=${2:?}; shift ;;
	--bufiofs) bufiofs=${2:?}; shift ;;
	--dir) parent=${2:?}; shift ;;
	--qsd-aio) qsd_aio=${2:?}; shift ;;
	--nbd-connections) nbd_conns=${2:?}; shift ;;
	--fuse-uring) fuse_uring=${2:?}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
	shift
done
if [ "$quick" = 1 ]; then
	: "${size:=64M}" "${rounds:=1}" "${runtime:=2}" "${scale_small:=16M}" "${scale_big:=256M}"
fi
: "${size:=1G}" "${rounds:=3}" "${runtime:=10}" "${scale_small:=64M}" "${scale_big:=4G}"
only=${only:-$ALL_JOBS} systems=${systems:-$ALL_SYSTEMS}
only=${only//,/ } systems=${systems//,/ }
for j in $only; do [[ " $ALL_JOBS " == *" $j "* ]] || die "unknown job '$j' (jobs: $ALL_JOBS)"; done
for s in $systems; do [[ " $ALL_SYSTEMS " == *" $s "* ]] || die "unknown system '$s' (systems: $ALL_SYSTEMS)"; done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds takes a positive number"
[[ $runtime =~ ^[1-9][0-9]*$ ]] || die "--runtime takes a positive number of seconds"
[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, loop devices, apt-get)"
[ -c /dev/fuse ] || die "/dev/fuse is missing"

bytes() { numfmt --from=iec "${1%iB}" 2>/dev/null || die "not a size: $1"; }
MIB=$((1 << 20))
size_b=$(bytes "$size")
if [ $((size_b % MIB)) -ne 0 ] || [ "$size_b" -lt $((16 * MIB)) ]; then
	die "--size must be a whole number of MiB, at least 16M"
fi
scale_small_b=$(bytes "$scale_small") scale_big_b=$(bytes "$scale_big") sparse_big_b=$(bytes "$sparse_big")
hot_budget=$((size_b + size_b / 8)) # the working set fits
cold_budget=$((size_b / 4))          # the working set is 4x the cache
zipf_budget=$((size_b / 10))
ceiling_budget=$((64 * MIB)) # cache_mode=none: the budget is not used

has() { [[ " $2 " == *" $1 "* ]]; }
fio_jobs=""
for j in $only; do case $j in scale | sparse) ;; *) fio_jobs+=" $j" ;; esac; done

#---- dependencies ------------------------------------------------------------

install_deps() {
	local pkgs=()
	want() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
	want fio fio
	want "$PY" python3
	want fusermount3 fuse3
	want losetup mount
	want mkfs.ext4 e2fsprogs
	want blockdev util-linux
	want tar tar
	want timeout coreutils
	want pkill procps
	if has qsd-direct "$systems" || has qsd-buffered "$systems"; then
		want qemu-storage-daemon qemu-system-common
	fi
	if has nbd "$systems"; then
		want nbdkit nbdkit
		want nbdfuse libnbd-bin
	fi
	if [ ${#pkgs[@]} -gt 0 ]; then
		echo "installing: ${pkgs[*]}" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	fi
}

build_bufiofs() {
	if [ -n "$bufiofs" ]; then
		bufiofs=$(realpath "$bufiofs")
		[ -x "$bufiofs" ] || die "$bufiofs is not an executable"
		return
	fi
	if ! command -v cmake >/dev/null || ! pkg-config --exists fuse3 liburing libconfig 2>/dev/null; then
		"$top/scripts/deps.sh"
	fi
	echo "building bufiofs (Release) in $top/build-release" >&2
	cmake -S "$top" -B "$top/build-release" -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build "$top/build-release" -j"$(nproc)" --target bufiofs >/dev/null
	bufiofs=$top/build-release/src/daemon/bufiofs
}

install_deps
build_bufiofs
modprobe loop 2>/dev/null || true
modprobe fuse 2>/dev/null || true

#---- scratch, cleanup ----------------------------------------------------------

work=$(mktemp -d "$parent/bufiofs-compare.XXXXXX")
mkdir -p "$work/logs"
results=$work/results.jsonl
: >"$results"
img=$work/backing.img
TMPFS=()

# PID is running (not gone, not a zombie waiting to be reaped).
alive() {
	local s
	s=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	s=${s##*) }
	[ "${s%% *}" != Z ]
}

# When PID started (field 22 of stat(5)): tells it from a later one that
# reuses the number.
starttime() {
	local s
	s=$(cat /proc/"$1"/stat 2>/dev/null) || return 0
	s=${s##*) }
	read -ra s <<<"$s"
	echo "${s[19]}"
}

# Each measurement runs in a subshell; whatever it starts is written to
# $work/undo as it starts ("pid PID STARTTIME", "fuse PATH", "loop DEV FILE",
# "fs PATH"), and the main shell undoes it, newest first, after the
# measurement, whether it ended well, failed, or was interrupted. Each undo
# checks that the thing is still ours, so undoing twice is harmless.
track() { echo "$*" >>"$work/undo"; }
undo_all() {
	local kind a b n
	[ -s "$work/undo" ] || return 0
	while read -r kind a b; do
		case $kind in
		fs) if mountpoint -q "$a"; then umount "$a" || umount -l "$a"; fi ;;
		fuse) if mountpoint -q "$a"; then fusermount3 -u "$a" 2>/dev/null || umount -l "$a"; fi ;;
		loop) if [ "$(losetup -n -O BACK-FILE "$a" 2>/dev/null)" = "$b" ]; then losetup -d "$a"; fi ;;
		pid)
			if [ "$(starttime "$a")" != "$b" ] || ! alive "$a"; then continue; fi
			kill -TERM "$a"
			for ((n = 0; n < 600; n++)); do alive "$a" || break; sleep 0.1; done
			if alive "$a"; then kill -KILL "$a"; fi
			;;
		esac
	done < <(tac "$work/undo")
	: >"$work/undo"
}

CHILD=""
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_SAVED=""
cleanup() {
	local rc=$? t
	set +e
	if [ -n "$CHILD" ]; then
		pkill -TERM -P "$CHILD" # what it runs in the foreground (fio, tar, ...)
		kill -KILL "$CHILD" 2>/dev/null
	fi
	undo_all
	[ -z "$URING_SAVED" ] || echo "$URING_SAVED" >"$URING_PARAM"
	for t in "${TMPFS[@]}"; do mountpoint -q "$t" && umount "$t"; done
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

case $fuse_uring in
Y | N)
	[ -w "$URING_PARAM" ] || die "--fuse-uring $fuse_uring: this kernel has no $URING_PARAM"
	URING_SAVED=$(cat "$URING_PARAM")
	echo "$fuse_uring" >"$URING_PARAM"
	;;
*) die "--fuse-uring: Y or N" ;;
esac

#---- the systems -------------------------------------------------------------

# Drop the backing's pages from the page cache (dirty ones are written first),
# or read it all in.
backing_cold() { dd if=/dev/null of="$1" oflag=nocache conv=notrunc,fdatasync count=0 status=none; }
backing_hot() { cat "$1" >/dev/null; }

# wait_for TEST PID: until TEST succeeds (10 s), or fail when PID is gone.
wait_for() {
	local n
	for ((n = 0; n < 1000; n++)); do
		eval "$1" && return 0
		alive "$2" || fail "the daemon exited before '$1' (see its log below)"
		sleep 0.01
	done
	fail "'$1' did not become true within 10 s"
}

fail() {
	echo "$*" >"$work/err"
	exit 1
}

# 1 if PID has FILE open with O_DIRECT (fdinfo flags are octal), else 0.
fd_direct() {
	local fd flags
	for fd in /proc/"$1"/fd/*; do
		[ "$(readlink "$fd")" = "$2" ] || continue
		flags=$(awk '/^flags:/ {print $2}' /proc/"$1"/fdinfo/"${fd##*/}")
		if (((8#$flags & 8#40000) != 0)); then
			echo 1
			return
		fi
	done
	echo 0
}

# started PID: a daemon of the system under test; mounted PATH: its mount.
DPIDS=() FUSE_MOUNTS=()
started() {
	DPIDS+=("$1")
	track pid "$1" "$(starttime "$1")"
}
mounted() {
	FUSE_MOUNTS+=("$1")
	track fuse "$1"
}

# start_bufiofs BACKING MNT OPTIONS: sets DEV, CTL, DPIDS.
start_bufiofs() {
	mkdir -p "$2"
	local opts=$3
	[ "$fuse_uring" = N ] || opts+=,fuse_uring=yes
	"$bufiofs" -f -o "$opts" "$1" "$2" >>"$work/logs/bufiofs.log" 2>&1 &
	started $!
	mounted "$2"
	wait_for "[ -d '$2/control' ]" "${DPIDS[0]}"
	DEV=$2/disk CTL=$2/control/disk
}

# start_system SYSTEM BUDGET: mount SYSTEM over the backing; sets DEV (the
# file fio uses), DPIDS (its daemons) and CTL (bufiofs's control directory).
start_system() {
	local sys=$1 budget=$2 m=$work/mnt-$1 want
	CTL=""
	case $sys in
	raw) DEV=$img ;;
	ceiling) start_bufiofs "$img" "$m" "max_cache_size_bytes=$budget,cache_mode=none,direct=no" ;;
	bufiofs-*) start_bufiofs "$img" "$m" "max_cache_size_bytes=$budget,direct=yes" ;;
	qsd-*)
		local direct=on
		[ "$sys" = qsd-buffered ] && direct=off
		DEV=$work/qsd-export
		touch "$DEV"
		qemu-storage-daemon \
			--blockdev "driver=file,node-name=f0,filename=$img,cache.direct=$direct,aio=$qsd_aio" \
			--export "type=fuse,id=e0,node-name=f0,mountpoint=$DEV,writable=on" \
			>>"$work/logs/qsd.log" 2>&1 &
		started $!
		mounted "$DEV"
		wait_for "mountpoint -q '$DEV'" "${DPIDS[0]}"
		;;
	nbd)
		local sock=$work/nbd.sock
		mkdir -p "$work/nbd-cache" "$m"
		rm -f "$sock"
		# The cache filter keeps its cache in a file under TMPDIR, in 4 KiB
		# blocks like bufiofs, and caches reads as well as writes.
		TMPDIR=$work/nbd-cache nbdkit -f -U "$sock" --filter=cache file "$img" \
			cache=writeback cache-max-size="$budget" cache-min-block-size=4096 \
			cache-on-read=true >>"$work/logs/nbdkit.log" 2>&1 &
		started $!
		wait_for "[ -S '$sock' ]" "${DPIDS[0]}"
		nbdfuse -C "$nbd_conns" "$m" --unix "$sock" >>"$work/logs/nbdfuse.log" 2>&1 &
		started $!
		mounted "$m"
		wait_for "mountpoint -q '$m'" "${DPIDS[1]}"
		DEV=$m/nbd
		;;
	esac
	# bufiofs must really open the backing as asked (O_DIRECT or buffered).
	case $sys in ceiling) want=0 ;; bufiofs-*) want=1 ;; *) want="" ;; esac
	if [ -n "$want" ] && [ "$(fd_direct "${DPIDS[0]}" "$img")" != "$want" ]; then
		fail "$sys: the backing is not opened with O_DIRECT=$want"
	fi
}

# stop_system: unmount, then wait for every daemon (bufiofs writes back first).
stop_system() {
	local m p n
	for m in "${FUSE_MOUNTS[@]}"; do
		case $m in */qsd-export) ;; *) mountpoint -q "$m" && fusermount3 -u "$m" ;; esac
	done
	for p in "${DPIDS[@]}"; do
		if alive "$p"; then
			case $(cat /proc/"$p"/comm 2>/dev/null) in qemu-storage-d* | nbdkit) kill -TERM "$p" ;; esac
			for ((n = 0; n < 1200; n++)); do alive "$p" || break; sleep 0.1; done
			alive "$p" && fail "daemon $p did not exit within 120 s of the unmount"
		fi
		wait "$p" 2>/dev/null || true
	done
	FUSE_MOUNTS=() DPIDS=()
}

CLK_TCK=$(getconf CLK_TCK)
# CPU seconds (utime + stime, every thread) of the daemons in DPIDS so far.
cpu_ticks() {
	local p t=0 f
	for p in "${DPIDS[@]}"; do
		f=$(cat /proc/"$p"/stat) || continue
		f=${f##*) }
		read -ra f <<<"$f"
		t=$((t + f[11] + f[12])) # fields 14 and 15 of stat(5)
	done
	echo "$t"
}
cpu_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", t / hz}'; }

# Peak RSS in KiB (VmHWM), summed over the daemons in DPIDS.
hwm_kb() {
	local p t=0 v
	for p in "${DPIDS[@]}"; do
		v=$(awk '/^VmHWM:/ {print $2}' /proc/"$p"/status)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# The cache budget of SYSTEM for JOB (0: no cache of its own).
budget_of() {
	case $1 in
	ceiling) echo "$ceiling_budget" ;;
	bufiofs-hot | nbd) [ "$2" = zipf-read ] && echo "$zipf_budget" || echo "$hot_budget" ;;
	bufiofs-cold) [ "$2" = zipf-read ] && echo "$zipf_budget" || echo "$cold_budget" ;;
	*) echo 0 ;;
	esac
}

#---- one measurement -----------------------------------------------------------

# run_fio SECTION SIZE JSON [FIO-ARGS...]: one job of compare.fio on DEV.
# The zipf job runs ZIPF_FACTOR times longer: in one runtime a 2-CPU VM makes
# 200-400k requests, whose ~20k distinct blocks fit in the 10% cache, so
# nothing is evicted and bufiofs and the exact LRU tie trivially.
ZIPF_FACTOR=4

run_fio() {
	local section=$1 bytes=$2 json=$3 pid rt=$runtime
	shift 3
	[ "$section" = zipf-read ] && rt=$((runtime * ZIPF_FACTOR))
	BENCH_FILE=$DEV BENCH_SIZE=$bytes BENCH_RUNTIME=$rt timeout $((rt * 3 + 300)) \
		fio --section="$section" --output-format=json --output="$json" "$@" "$JOBFILE" \
		>"$work/logs/fio.err" 2>&1 &
	pid=$!
	track pid "$pid" "$(starttime "$pid")"
	wait "$pid" || fail "fio $section failed: $(tail -n 3 "$work/logs/fio.err")"
}

# measure ROUND JOB SYSTEM: prepare, start, warm, run, record, stop.
measure() {
	local round=$1 job=$2 sys=$3 budget c0 c1 extra=() json=$work/fio.json
	budget=$(budget_of "$sys" "$job")
	# The page cache under the system: a hot one for the FUSE ceiling and for
	# qemu's buffered export (its cache), cold for everything else.
	case $sys:$job in
	ceiling:* | qsd-buffered:[!z]*) backing_hot "$img" ;;
	*) backing_cold "$img" ;;
	esac
	start_system "$sys" "$budget"
	# Hot systems see every block once before a read job.
	case $sys:$job in
	bufiofs-hot:*read* | nbd:*read*)
		[ "$job" = zipf-read ] || dd if="$DEV" of=/dev/null bs=1M iflag=direct status=none
		;;
	esac
	if [ -n "$CTL" ]; then echo 1 >"$CTL/clear_stats"; fi
	if [ "$job" = fs-untar ]; then
		untar # sets c0, c1 around what it times
		extra+=(iops="$(awk -v n="$tree_files" -v t="$elapsed" 'BEGIN {print n / t}')"
			bw="$(awk -v n="$tree_bytes" -v t="$elapsed" 'BEGIN {print n / t}')"
			bytes="$tree_bytes" elapsed="$elapsed" loop_dio="$loop_dio")
	else
		local iolog=()
		if [ "$job" = zipf-read ]; then
			# fio appends to an existing iolog: without this the LRU ran
			# on every earlier system's trace too (same seed, so a warm
			# cache) against bufiofs's one cold run.
			rm -f "$work/zipf.iolog"
			iolog=(--write_iolog="$work/zipf.iolog")
		fi
		c0=$(cpu_ticks)
		run_fio "$job" "$size_b" "$json" "${iolog[@]}"
		c1=$(cpu_ticks)
		extra+=(--fio "$json")
		if [ "$job:$sys" = zipf-read:bufiofs-cold ] || [ "$job:$sys" = zipf-read:bufiofs-hot ]; then
			# An exact LRU of the budget in blocks on the same trace; and,
			# to tell policy from size, one of what bufiofs holds at the end.
			local bs
			bs=$(cat "$CTL/block_size")
			extra+=(--iolog "$work/zipf.iolog" --block-size "$bs" --cap-blocks $((budget / bs))
				--resident-blocks $(($(cat "$CTL/bytes_cached") / bs)))
		fi
	fi
	if [ -n "$CTL" ]; then
		extra+=(hits="$(cat "$CTL/hits")" misses="$(cat "$CTL/misses")")
	fi
	if [ ${#DPIDS[@]} -gt 0 ]; then
		extra+=(rss_kb="$(hwm_kb)" cpu_s="$(cpu_seconds $((c1 - c0)))")
	fi
	stop_system
	"$PY" "$HELPER" record "$results" --print kind=job ok=1 round="$round" job="$job" \
		system="$sys" budget="$budget" "${extra[@]}"
}

# ext4 on a loop device over DEV: untar the tree and syncfs, timed (elapsed).
# The loop device does direct I/O on DEV when that gives a file system that
# checks clean; qemu-storage-daemon 7.2's FUSE export does not (O_DIRECT
# writes from the loop driver leave a corrupt journal), so it falls back to a
# buffered loop device there (loop_dio=0 in the results).
untar() {
	local loop="" fs=$work/fs t0 t1 dio
	for dio in on off; do
		loop=$(losetup -f --show --direct-io=$dio "$DEV")
		track loop "$loop" "$DEV"
		mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$loop"
		blockdev --flushbufs "$loop" # check what reached DEV, not the page cache
		e2fsck -fn "$loop" >/dev/null 2>&1 && break
		echo "$sys: ext4 through a loop device with direct-io=$dio does not check clean" >&2
		losetup -d "$loop"
		loop=""
	done
	[ -n "$loop" ] || fail "$sys: mkfs.ext4 through a loop device never checks clean"
	loop_dio=$(losetup -n -O DIO "$loop" | tr -d ' ')
	mkdir -p "$fs"
	mount -o noatime "$loop" "$fs"
	track fs "$fs"
	c0=$(cpu_ticks)
	t0=$(date +%s%N)
	tar -xf "$work/tree.tar" -C "$fs"
	sync -f "$fs"
	t1=$(date +%s%N)
	c1=$(cpu_ticks)
	elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
	umount "$fs"
	losetup -d "$loop"
}

# scale ROUND BUDGET: hot 4 KiB random reads over 90% of a BUDGET cache.
scale() {
	local round=$1 budget=$2 ws c0 c1 json=$work/fio.json
	ws=$((budget * 9 / 10 / MIB * MIB))
	start_bufiofs "$work/scale.img" "$work/mnt-scale" "max_cache_size_bytes=$budget,direct=yes"
	dd if="$DEV" of=/dev/null bs=1M count=$((ws / MIB)) iflag=direct status=none
	echo 1 >"$CTL/clear_stats"
	c0=$(cpu_ticks)
	run_fio randread-qd1 "$ws" "$json"
	c1=$(cpu_ticks)
	local extra=(hits="$(cat "$CTL/hits")" misses="$(cat "$CTL/misses")" rss_kb="$(hwm_kb)"
		cpu_s="$(cpu_seconds $((c1 - c0)))")
	stop_system
	"$PY" "$HELPER" record "$results" --print kind=scale ok=1 round="$round" \
		job=randread-qd1 budget="$budget" working_set="$ws" --fio "$json" "${extra[@]}"
}

# sparse ROUND FILE: time to mount a sparse backing and the daemon's RSS.
sparse() {
	local round=$1 file=$2 dsize t0 t1 m=$work/mnt-sparse budget=$((64 * MIB))
	dsize=$(stat -c %s "$file")
	t0=$(date +%s%N)
	start_bufiofs "$file" "$m" "max_cache_size_bytes=$budget"
	t1=$(date +%s%N)
	[ "$(stat -c %s "$DEV")" = "$dsize" ] || fail "$DEV does not show $dsize bytes"
	# Touch both ends: the device really is that large.
	dd if="$DEV" of=/dev/null bs=1M count=1 iflag=direct status=none
	dd if="$DEV" of=/dev/null bs=1M count=1 skip=$((dsize / MIB - 1)) iflag=direct status=none
	local rss
	rss=$(hwm_kb)
	stop_system
	"$PY" "$HELPER" record "$results" --print kind=sparse ok=1 round="$round" device="$dsize" \
		budget="$budget" rss_kb="$rss" \
		mount_s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", (b - a) / 1e9}')"
}

# run FUNCTION ROUND ARGS...: one measurement (measure, scale or sparse) in a
# subshell, then undo whatever it left; a failure is recorded (and shown) and
# the benchmark goes on. The subshell runs in the background so that Ctrl-C
# reaches the main shell's trap at once.
run() {
	local rc=0 kind=$1 err
	rm -f "$work/err"
	(
		trap - EXIT INT TERM
		set -e
		"$@"
	) &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=""
	undo_all
	if [ "$rc" -ne 0 ]; then
		err="exit status $rc"
		[ -s "$work/err" ] && err=$(cat "$work/err")
		echo "FAILED: $* : $err" >&2
		tail -n 5 "$work"/logs/*.log 2>/dev/null | sed 's/^/    /' >&2
		if [ "$kind" = measure ]; then
			"$PY" "$HELPER" record "$results" kind=job ok=0 round="$2" job="$3" system="$4" \
				err="$err"
		else
			"$PY" "$HELPER" record "$results" kind="$kind" ok=0 round="$2" what="$3" err="$err"
		fi
	fi
}

#---- inputs ------------------------------------------------------------------

echo "scratch: $work; backing: $size of random data" >&2
dd if=/dev/urandom of="$img" bs=1M count=$((size_b / MIB)) status=none
dd if="$img" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null ||
	die "$parent does not support O_DIRECT (use --dir on a disk file system)"

tree_files=0 tree_bytes=0
if has fs-untar "$only"; then
	tree_files=$((size_b / 65536))
	tree_bytes=$("$PY" "$HELPER" tree "$work/tree" "$tree_files" 1)
	tar -cf "$work/tree.tar" -C "$work/tree" .
	rm -rf "$work/tree"
	echo "fs-untar: $tree_files files, $((tree_bytes / 1024)) KiB" >&2
fi
if has scale "$only"; then
	truncate -s "$scale_big_b" "$work/scale.img"
fi
if has sparse "$only"; then
	# tmpfs: ext4 cannot hold a 16 TiB file; bufiofs falls back to buffered I/O.
	mkdir -p "$work/sparse"
	mount -t tmpfs -o size=16m,mode=0700 bufiofs-bench "$work/sparse"
	TMPFS+=("$work/sparse")
	truncate -s 1G "$work/sparse/small.img"
	truncate -s "$sparse_big_b" "$work/sparse/big.img"
fi

#---- the rounds --------------------------------------------------------------

for ((round = 1; round <= rounds; round++)); do
	echo "=== round $round of $rounds" >&2
	for job in $fio_jobs; do
		for sys in $systems; do
			# With the cache at 10% bufiofs-hot and -cold are the same system.
			[ "$job:$sys" = zipf-read:bufiofs-hot ] && has bufiofs-cold "$systems" && continue
			run measure "$round" "$job" "$sys"
		done
	done
	if has scale "$only"; then
		# Two pairs a round: at QD1 single runs on this VM scatter by +-15%.
		for _ in 1 2; do
			run scale "$round" "$scale_small_b"
			run scale "$round" "$scale_big_b"
		done
	fi
	if has sparse "$only"; then
		run sparse "$round" "$work/sparse/small.img"
		run sparse "$round" "$work/sparse/big.img"
	fi
done

#---- the report --------------------------------------------------------------

[ -n "$out" ] || out=$PWD/compare-$(date +%Y%m%d-%H%M%S).md
cp "$results" "${out%.md}.jsonl"
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
# How an idle CPU wakes decides QD1 latency on a VM: without guest halt polling
# every wake of a halted vCPU costs ~15 us here (bench/README.md, "QD1 and idle").
idle_config() {
	local drv poll
	drv=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null) || drv=unknown
	poll=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null) || poll=n/a
	echo "cpuidle driver $drv, guest_halt_poll_ns $poll"
}
# Each bufiofs start logs the transport it serves through: one count per
# distinct line, so a run where some daemons fell back to /dev/fuse shows it.
transport_lines() {
	grep -o 'FUSE requests [a-z/ ]*' "$work/logs/bufiofs.log" | sed 's/ *$//' | sort | uniq -c |
		sed 's/^ *\([0-9]*\) \(.*\)/\1 daemon starts logged "\2"/' | paste -sd ';' -
}
version() {
	local v
	v=$("$@" 2>/dev/null) || v="$1 not installed"
	echo "${v%%$'\n'*}"
}
"$PY" "$HELPER" report "$results" "$out" \
	"date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
	"machine=$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)" \
	"backing=$size of random data on $(df --output=fstype "$work" | tail -n 1) ($(df --output=source "$work" | tail -n 1))" \
	"rounds=$rounds, $runtime s per fio job ($((runtime * ZIPF_FACTOR)) s for zipf-read)" \
	"caches=bufiofs-hot and nbd $(mib "$hot_budget"), bufiofs-cold $(mib "$cold_budget"), zipf-read $(mib "$zipf_budget"); nbdkit cache-min-block-size=4096, cache-on-read, nbdfuse -C $nbd_conns; qemu aio=$qsd_aio" \
	"bufiofs=$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown) ($bufiofs)" \
	"fuse=enable_uring=$fuse_uring; $(transport_lines)" \
	"idle=$(idle_config)" \
	"peers=$(version qemu-storage-daemon --version), $(version nbdkit --version), $(version nbdfuse --version), $(version fio --version)"
echo "report: $out (raw results: ${out%.md}.jsonl)" >&2
