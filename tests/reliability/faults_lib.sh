# Shared by the test_faults_*.sh tests (sourced after integration/lib.sh):
# the bufiofs-fault test daemon, fault rules, waiting and small checks.
# shellcheck shell=bash

BUILD_DIR=${2:?usage: $0 PATH/TO/bufiofs BUILD_DIR}
# bufiofs built with BUFIOFS_FAULT_INJECT: control/DEVICE/fault_inject.
FAULT_BUFIOFS=$BUILD_DIR/tests/reliability/bufiofs-fault

# use_fault_daemon: start_fg runs bufiofs-fault from now on.
use_fault_daemon() {
	[ -x "$FAULT_BUFIOFS" ] || skip "$FAULT_BUFIOFS was not built"
	# shellcheck disable=SC2034 # start_fg (lib.sh) runs $BUFIOFS
	BUFIOFS=$(realpath "$FAULT_BUFIOFS")
}

# fault_files SIZE [DATA_BYTES]: a sparse backing of SIZE bytes; sets BACKING,
# MNT, D (the device file), C (its control directory's name) and DATA (a file
# of DATA_BYTES random bytes, when given).
fault_files() {
	BACKING=$TMP/backing.img
	MNT=$TMP/fuse
	D=$MNT/disk
	C=disk
	DATA=$TMP/data
	truncate -s "$1" "$BACKING"
	[ -z "${2:-}" ] || head -c "$2" /dev/urandom >"$DATA"
}

# inject MNT RULE: add a fault rule ("op=read start=1M end=2M error=EIO") or "clear".
inject() {
	printf '%s' "$2" >"$1/control/disk/fault_inject" || fail "fault rule '$2' refused"
}

# wait_for SECS DESCRIPTION CMD...: poll until CMD succeeds; fail after SECS.
wait_for() {
	local secs=$1 what=$2 n
	shift 2
	for ((n = 0; n < secs * 10; n++)); do
		"$@" && return 0
		sleep 0.1
	done
	fail "$what: not within $secs s"
}

# is_ctl MNT FILE VALUE: the control file reads VALUE.
is_ctl() {
	[ "$(ctl "$1" "$2")" = "$3" ]
}

# region FILE OFFSET LEN: LEN bytes at OFFSET (bytes; multiples of 4 KiB) on stdout.
region() {
	dd if="$1" bs=4k skip=$(($2 / 4096)) count=$(($3 / 4096)) status=none
}

# same_region FILE OFFSET LEN EXPECTED: FILE holds EXPECTED's first LEN bytes at OFFSET.
same_region() {
	cmp -s <(region "$1" "$2" "$3") <(head -c "$3" "$4")
}

# log_has TEXT: the daemon log contains TEXT.
log_has() {
	grep -qF -- "$1" "$TMP/daemon.log"
}
