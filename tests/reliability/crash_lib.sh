# Helpers for the crash-consistency tests (sourced after the test's
# arguments BUFIOFS BUILD_DIR): the workload tools, iteration counts and the
# random seed, random daemon settings, kill -9 and the clean-up of what a
# killed daemon leaves behind (a dead FUSE mount).
# shellcheck shell=bash

source "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

BUILD_DIR=${2:?usage: $0 PATH/TO/bufiofs BUILD_DIR}
TOOLS=$(realpath "$BUILD_DIR")/tests/reliability
CRASHWRITER=$TOOLS/crashwriter
FSCHURN=$TOOLS/fschurn

need_crash_tools() {
	local t
	for t in "$CRASHWRITER" "$FSCHURN"; do
		[ -x "$t" ] || skip "$t is not built (cmake --build $BUILD_DIR)"
	done
	need_tools findmnt timeout
}

# iterations CI SOAK: how many rounds (BUFIO_ITERATIONS overrides both).
iterations() {
	if [ -n "${BUFIO_ITERATIONS:-}" ]; then
		echo "$BUFIO_ITERATIONS"
	elif [ "${BUFIO_SOAK:-}" = 1 ]; then
		echo "$2"
	else
		echo "$1"
	fi
}

# One seed drives every random choice of the script; BUFIO_SEED replays a run.
SEED=${BUFIO_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
RANDOM=$SEED

# pick LIST...: one of the arguments at random.
pick() {
	local a=("$@")
	echo "${a[RANDOM % ${#a[@]}]}"
}

# Is PATH a mount point? findmnt reads the mount table and never stats the
# path, which fails with ENOTCONN on a dead FUSE mount.
is_mounted() {
	findmnt -rn --mountpoint "$1" >/dev/null 2>&1
}

# kill9 PID: the crash. The daemon must still have been alive (an ASan
# report or a crash of its own is a failure, not our kill).
kill9() {
	kill -0 "$1" 2>/dev/null || fail "bufiofs (pid $1) died before the kill"
	kill -KILL "$1"
	wait "$1" 2>/dev/null || true
}

# wait_gone PID SECONDS WHAT: a child must exit within SECONDS.
wait_gone() {
	local n
	for ((n = 0; n < $2 * 10; n++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && fail "$3 (pid $1) still running $2 s after the daemon died"
	wait "$1" 2>/dev/null || true
}

# clear_dead_mount MNT: unmount what a killed daemon left (ENOTCONN).
clear_dead_mount() {
	local n
	is_mounted "$1" || return 0
	fusermount3 -u "$1" 2>/dev/null || umount "$1" 2>/dev/null || umount -l "$1"
	for ((n = 0; n < 100; n++)); do
		is_mounted "$1" || return 0
		sleep 0.1
	done
	fail "the dead mount $1 is still there"
}

# random_opts: DAEMON_OPTS (an -o list) and CACHE_MODE for the next start:
# block size, cache mode, engine, O_DIRECT, a small cache so write-back
# and eviction run all the time, the write-back triggers, and now and then
# the kernel page cache in front.
random_opts() {
	local bs engine direct size expire ratio
	bs=$(pick 4096 16384 65536)
	CACHE_MODE=$(pick writeback writeback writethrough)
	engine=$(pick io_uring threads)
	direct=$(pick yes no)
	size=$(pick 512K 1M 2M)
	expire=$(pick 0 1 5)
	ratio=$(pick 0 1 3)
	DAEMON_OPTS="block_size=$bs,cache_mode=$CACHE_MODE,io_engine=$engine,direct=$direct"
	DAEMON_OPTS+=",max_cache_size_bytes=$size,dirty_expire_seconds=$expire,writeback_ratio=$ratio"
	[ $((RANDOM % 4)) -ne 0 ] || DAEMON_OPTS+=,kernel_cache
}

# No sanitizer report in the daemon log (the killed ones included).
check_daemon_log() {
	if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$TMP/daemon.log" >&2; then
		fail "sanitizer report in the daemon log"
	fi
}

# The clean-up trap, first unmounting dead FUSE mounts (lib.sh's trap only
# sees live ones).
crash_cleanup() {
	local rc=$? m
	set +e
	for m in "${FUSE_MOUNTS[@]}"; do
		is_mounted "$m" && ! mountpoint -q "$m" 2>/dev/null && umount -l "$m"
	done
	set_status() { return "$1"; }
	set_status "$rc"
	cleanup
}
trap crash_cleanup EXIT
