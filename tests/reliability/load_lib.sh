# Helpers of the load and memory-pressure tests (sourced after
# ../integration/lib.sh): a tunables churner, fio rounds with crc32c
# verification, sanitizer-log checks and memory readings of the daemon.
# shellcheck shell=bash

# BUFIO_SOAK=1: long soaks (minutes instead of seconds). soak_scale N M:
# N in CI, M when soaking.
soak_scale() {
	if [ "${BUFIO_SOAK:-}" = 1 ]; then echo "$2"; else echo "$1"; fi
}

MIB=$((1024 * 1024))
VERIFIED=0 # bytes fio read back and verified, summed over the test

# fio_round NAME JOBFILE-BODY: run one fio invocation from a job file (global
# section + jobs, built by the caller) in $TMP; every job must end with
# err=0 within FIO_DEADLINE seconds (a deadlock hits it). Verify state stays
# in $TMP (fio writes it to its working directory). On failure, the command
# in FIO_FAIL_HOOK (if set) runs first with "fio NAME": it may explain.
FIO_DEADLINE=$(soak_scale 900 14400)
fio_round() {
	local name=$1 body=$2 rc=0
	printf '%s\n' "$body" >"$TMP/$name.fio"
	log "fio $name"
	(cd "$TMP" && timeout "$FIO_DEADLINE" fio --output="$TMP/$name.out" "$TMP/$name.fio") || rc=$?
	if [ "$rc" -ne 0 ] || ! grep -q 'err= 0' "$TMP/$name.out" || grep -q 'err= [1-9]' "$TMP/$name.out"; then
		[ -z "${FIO_FAIL_HOOK:-}" ] || $FIO_FAIL_HOOK "fio $name"
		tail -n 60 "$TMP/$name.out" >&2
		[ "$rc" -ne 124 ] || fail "fio $name did not finish within $FIO_DEADLINE s (deadlock?)"
		fail "fio $name failed (exit $rc)"
	fi
}

# fio_job NAME KEY=VALUE...: one job section.
fio_job() {
	local name=$1
	shift
	printf '[%s]\n' "$name"
	printf '%s\n' "$@"
}

# raw_global FILE JOB-MIB [LINE...]: the [global] section of a round on a
# raw file: JOB-MIB per job, crc32c verification, fatal on the first error;
# LINEs (key=value) added.
raw_global() {
	printf '[global]\nfilename=%s\nsize=%s\nverify=crc32c\nverify_fatal=1\ndo_verify=1\n' \
		"$1" $(($2 * MIB))
	shift 2
	[ "$#" -eq 0 ] || printf '%s\n' "$@"
}

# raw_writers SET JOB-MIB OFFSET SEED [KEY=VALUE...]: four writers on
# consecutive JOB-MIB regions from OFFSET: sequential psync (128k), random
# psync (4k), random libaio O_DIRECT of mixed sizes (4k-1m) and sequential
# $URING O_DIRECT (1m). KEY=VALUE go into every job (verify_only=1: read the
# regions back and verify them).
raw_writers() {
	local set=$1 sz=$(($2 * MIB)) off=$3 seed=$4
	shift 4
	fio_job "$set-seq-psync" rw=write ioengine=psync bs=128k \
		offset=$off randseed=$seed "$@"
	fio_job "$set-rand-psync" rw=randwrite ioengine=psync bs=4k \
		offset=$((off + sz)) randseed=$((seed + 1)) "$@"
	fio_job "$set-rand-libaio" rw=randwrite ioengine=libaio direct=1 iodepth=16 \
		bsrange=4k-1m offset=$((off + 2 * sz)) randseed=$((seed + 2)) "$@"
	fio_job "$set-seq-$URING" rw=write ioengine="$URING" direct=1 iodepth=8 bs=1m \
		offset=$((off + 3 * sz)) randseed=$((seed + 3)) "$@"
}

# Which direct-I/O engines fio has here; io_uring may be refused by the kernel
# (sysctl) or missing from fio: then libaio runs its jobs.
uring_engine() {
	if fio --name=probe --filename="$TMP/probe" --size=4k --rw=read --ioengine=io_uring \
		--direct=1 --output=/dev/null >/dev/null 2>&1; then
		echo io_uring
	else
		echo libaio
	fi
	rm -f "$TMP/probe"
}

# churn_start MNT DEV SIZES [ACTIONS]: a background process that keeps
# changing the tunables while I/O runs, picking at random among ACTIONS
# (default: all of them): "size" sets max_cache_size_bytes to one of SIZES
# (bytes, space separated), "mode" sets cache_mode to writeback, writethrough
# or none, "drop" writes drop_caches and "flush" writes flush. Every write
# must succeed; a failure is recorded in $TMP/churn.fail and ends the
# churner. Sets CHURN_PID.
churn_start() {
	local mnt=$1 dev=$2 sizes=$3 actions=${4:-size size mode drop flush}
	: >"$TMP/churn.ops"
	rm -f "$TMP/churn.fail" "$TMP/churn.stop"
	(
		set +e
		# shellcheck disable=SC2206
		local -a sz=($sizes) act=($actions) modes=(writeback writethrough none writeback)
		local n=0 f v out
		while [ ! -e "$TMP/churn.stop" ]; do
			case ${act[RANDOM % ${#act[@]}]} in
			size) f=max_cache_size_bytes v=${sz[RANDOM % ${#sz[@]}]} ;;
			mode) f=$dev/cache_mode v=${modes[RANDOM % ${#modes[@]}]} ;;
			drop) f=$dev/drop_caches v=1 ;;
			flush) f=$dev/flush v=1 ;;
			esac
			out=$(write_err "$mnt/control/$f" "$v")
			if [ -n "$out" ]; then
				echo "writing $v to control/$f: $out" >"$TMP/churn.fail"
				exit 1
			fi
			n=$((n + 1))
			echo "$n" >"$TMP/churn.ops"
			sleep 0.$((RANDOM % 3))
		done
	) &
	CHURN_PID=$!
	PIDS+=("$CHURN_PID")
}

# churn_stop MNT DEV SIZE: stop the churner, fail if it saw an error, then put
# the tunables back to writeback and SIZE.
churn_stop() {
	local mnt=$1 dev=$2 size=$3
	touch "$TMP/churn.stop"
	wait "$CHURN_PID" || true
	[ ! -e "$TMP/churn.fail" ] || fail "tunables churn: $(cat "$TMP/churn.fail")"
	CHURN_OPS=$(cat "$TMP/churn.ops")
	[ "${CHURN_OPS:-0}" -gt 0 ] || fail "the tunables churner did nothing"
	log "churner: $CHURN_OPS tunable changes"
	echo writeback >"$mnt/control/$dev/cache_mode"
	echo "$size" >"$mnt/control/max_cache_size_bytes"
}

# check_sanitizers LOG: no AddressSanitizer, LeakSanitizer or UBSan report.
check_sanitizers() {
	if grep -E -q 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: .*Sanitizer' "$1"; then
		grep -E -A 30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: .*Sanitizer' "$1" | head -n 80 >&2
		fail "sanitizer report in $1"
	fi
}

# stop_daemon: the daemon (DAEMON_PID) must still be alive after the load;
# its peak RSS goes to HWM_KIB, then SIGTERM with a control file held open
# (the kernel sends no RELEASE for it: nothing may leak), exit status 0 and a
# log without sanitizer reports.
stop_daemon() {
	kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died under load"
	HWM_KIB=$(vm_kib "$DAEMON_PID" VmHWM)
	exec 7<"$MNT/control/disk/stats"
	stop_term "$DAEMON_PID"
	exec 7<&-
	check_sanitizers "$TMP/daemon.log"
}

# vm_kib PID FIELD: a /proc/PID/status field in KiB (VmHWM, VmRSS).
vm_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
