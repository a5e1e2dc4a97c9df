# Shared helpers for the bufiofs integration tests (sourced, not run):
# environment checks, a scratch directory, starting and stopping the daemon,
# and a cleanup trap that undoes every mount, loop device and process.
# shellcheck shell=bash

BUFIOFS=${1:?usage: $0 PATH/TO/bufiofs}
BUFIOFS=$(realpath "$BUFIOFS")
TEST_NAME=$(basename "$0" .sh)

# Exit 77 (CTest: skipped) unless CI=true, where a missing piece is a failure.
skip() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $TEST_NAME cannot run: $* (CI=true: not skipping)" >&2
		exit 1
	fi
	echo "SKIP: $TEST_NAME: $*" >&2
	exit 77
}

fail() {
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

log() {
	echo "--- $TEST_NAME: $*"
}

# need_tools TOOL...: every test states what it runs.
need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
	done
}

need_fuse() {
	[ "$(id -u)" -eq 0 ] || skip "must run as root"
	[ -c /dev/fuse ] || skip "/dev/fuse is missing"
	need_tools fusermount3 mountpoint
}

need_loop() {
	need_tools losetup
	[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true
	[ -e /dev/loop-control ] || skip "loop devices are not available (/dev/loop-control)"
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bufiofs-$TEST_NAME.XXXXXX")
FUSE_MOUNTS=()
FS_MOUNTS=()
LOOPS=()
PIDS=()

cleanup() {
	local rc=$? i
	set +e
	for ((i = ${#FS_MOUNTS[@]} - 1; i >= 0; i--)); do
		mountpoint -q "${FS_MOUNTS[i]}" && { umount "${FS_MOUNTS[i]}" || umount -l "${FS_MOUNTS[i]}"; }
	done
	for i in "${LOOPS[@]}"; do
		our_loop "$i" && losetup -d "$i" 2>/dev/null
	done
	for i in "${FUSE_MOUNTS[@]}"; do
		mountpoint -q "$i" && { fusermount3 -u "$i" 2>/dev/null || umount -l "$i"; }
	done
	for i in "${PIDS[@]}"; do
		kill_wait "$i"
	done
	[ -z "$URING_SAVED" ] || echo "$URING_SAVED" >"$URING_PARAM"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "$TMP/daemon.log" ]; then
		echo "--- daemon log:" >&2
		tail -n 40 "$TMP/daemon.log" >&2
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

# set_uring Y|N: the fuse module's switch for FUSE over io_uring, for the
# whole machine; the value found first is restored on exit.
URING_PARAM=/sys/module/fuse/parameters/enable_uring
URING_SAVED=
set_uring() {
	[ -w "$URING_PARAM" ] || skip "this kernel has no FUSE over io_uring ($URING_PARAM)"
	[ -n "$URING_SAVED" ] || URING_SAVED=$(cat "$URING_PARAM")
	echo "$1" >"$URING_PARAM"
}

# BUFIOFS_TEST_URING=Y runs a test's daemons over io_uring (the switch on
# and fuse_uring=yes; a test's own -o comes later and wins), N over
# /dev/fuse with the switch off: CI runs the suite both ways.
URING_OPTS=()
[ -z "${BUFIOFS_TEST_URING:-}" ] || set_uring "$BUFIOFS_TEST_URING"
[ "${BUFIOFS_TEST_URING:-}" != Y ] || URING_OPTS=(-o fuse_uring=yes)

# ours PID: is it still a process of this test (its command line names the
# scratch directory)? A PID reaped earlier may by now be anyone's: PIDs wrap.
ours() {
	{ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$TMP"
}

# our_loop DEV: is the loop device still attached to a file of this test?
our_loop() {
	losetup -nO BACK-FILE "$1" 2>/dev/null | grep -qF -- "$TMP"
}

# kill_wait PID: SIGTERM, then SIGKILL if it has not gone after 20 s.
kill_wait() {
	local pid=$1 n
	ours "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((n = 0; n < 200; n++)); do
		ours "$pid" || return 0
		sleep 0.1
	done
	ours "$pid" && kill -KILL "$pid" 2>/dev/null
}

# wait_mounted MNT [PID]: until MNT/control exists (the daemon is serving).
wait_mounted() {
	local mnt=$1 pid=${2:-} n
	for ((n = 0; n < 100; n++)); do
		if mountpoint -q "$mnt" && [ -d "$mnt/control" ]; then
			return 0
		fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			fail "bufiofs exited before mounting $mnt"
		fi
		sleep 0.1
	done
	fail "bufiofs did not mount $mnt within 10 s"
}

# start_daemon MNT ARGS...: bufiofs -f ARGS in the foreground (as a background
# job, so its exit status can be collected) until MNT is served; sets DAEMON_PID.
start_daemon() {
	local mnt=$1
	shift
	mkdir -p "$mnt"
	"$BUFIOFS" -f "${URING_OPTS[@]}" "$@" >>"$TMP/daemon.log" 2>&1 &
	DAEMON_PID=$!
	PIDS+=("$DAEMON_PID")
	FUSE_MOUNTS+=("$mnt")
	wait_mounted "$mnt" "$DAEMON_PID"
}

# start_fg BACKING MNT [bufiofs options...]: serve BACKING at MNT.
start_fg() {
	local backing=$1 mnt=$2
	shift 2
	start_daemon "$mnt" "$@" "$backing" "$mnt"
}

# start_conf CONF MNT [bufiofs options...]: serve the config CONF at MNT.
start_conf() {
	local conf=$1 mnt=$2
	shift 2
	start_daemon "$mnt" -c "$conf" "$@" "$mnt"
}

# stop_term PID: SIGTERM and wait; fails unless the daemon exits 0.
stop_term() {
	local pid=$1 rc=0
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || fail "bufiofs exited with status $rc after SIGTERM"
}

# wait_rc PID: wait for the daemon (our child) to exit; its status in RC.
wait_rc() {
	RC=0
	wait "$1" || RC=$?
}

# attach_loop FILE: sets LOOP to the new loop device.
attach_loop() {
	LOOP=$(losetup -f --show "$1")
	LOOPS+=("$LOOP")
}

# detach_loop DEV: detach and forget it (its number may go to anyone next).
detach_loop() {
	local i
	losetup -d "$1" || return
	for i in "${!LOOPS[@]}"; do
		[ "${LOOPS[i]}" != "$1" ] || unset 'LOOPS[i]'
	done
}

# ctl MNT PATH: the value of a control file.
ctl() {
	cat "$1/control/$2"
}

# write_err FILE VALUE: write VALUE with one write(2); prints the shell's
# error text ("" on success).
write_err() {
	local out
	out=$( { printf '%s' "$2" >"$1"; } 2>&1) || true
	echo "$out"
}

# expect_errno TEXT CMD...: CMD must fail with TEXT (strerror) in its message.
expect_errno() {
	local want=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "'$*' succeeded; expected: $want"
	fi
	case "$out" in
	*"$want"*) ;;
	*) fail "'$*' failed with '$out'; expected: $want" ;;
	esac
}

# fio_verify NAME OFFSET SIZE FIO-ARGS...: random writes with crc32c over
# SIZE bytes of $MNT/disk from OFFSET, read back and verified (run from $TMP:
# fio leaves verify state files in the working directory).
fio_verify() {
	local name=$1 offset=$2 size=$3
	shift 3
	log "fio $name"
	fio --name="$name" --filename="$MNT/disk" --offset="$offset" --size="$size" \
		--rw=randwrite --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--randrepeat=1 --norandommap=0 --output="$TMP/fio-$name.log" "$@" ||
		{ cat "$TMP/fio-$name.log"; fail "fio $name"; }
	grep -q "err= 0" "$TMP/fio-$name.log" || { cat "$TMP/fio-$name.log"; fail "fio $name reported errors"; }
}
