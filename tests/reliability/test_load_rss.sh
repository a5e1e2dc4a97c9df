#!/bin/bash
# The cache budget bounds the daemon's memory: under fio load with tunables
# churn, peak RSS (VmHWM) <= max_cache_size_bytes * 1.03 + 32 MiB, with a
# budget of 1% of the working set and with a large budget that the working
# set overflows twice. RSS under ASan means nothing (shadow memory,
# quarantine), so this runs the plain daemon: $BUFIOFS_PLAIN (scripts/test.sh
# sets it), skipped without it unless CI=true.
set -euo pipefail
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/load_lib.sh"
need_fuse
need_tools fio timeout
[ -n "${BUFIOFS_PLAIN:-}" ] || skip "BUFIOFS_PLAIN (the daemon built without sanitizers) is not set"
[ -x "$BUFIOFS_PLAIN" ] || skip "BUFIOFS_PLAIN=$BUFIOFS_PLAIN is not an executable"
BUFIOFS=$(realpath "$BUFIOFS_PLAIN")
URING=$(uring_engine)

BACKING=$TMP/backing.img
MNT=$TMP/fuse

# rss_bound BUDGET: the bound in KiB.
rss_bound() {
	echo $(((${1} * 103 / 100 + 32 * MIB) / 1024))
}

# scenario NAME BUDGET JOB-MIB CHURN-SIZES CHURN-ACTIONS: serve, two rounds of writers (the
# second verifies the first's regions while it writes new ones) under churn,
# then the peak RSS against the bound for the largest budget churned to.
scenario() {
	local name=$1 budget=$2 job=$3 sizes=$4 b=$((4 * $3 * MIB)) s max=$2
	for s in $sizes; do
		[ "$s" -le "$max" ] || max=$s
	done
	log "$name: budget $budget bytes, working set $((8 * job)) MiB"
	rm -f "$BACKING"
	truncate -s $((8 * job * MIB)) "$BACKING"
	start_fg "$BACKING" "$MNT" -o max_cache_size_bytes="$budget"
	churn_start "$MNT" disk "$sizes" "$5"
	fio_round "$name-1" "$(raw_global "$MNT/disk" "$job")
$(raw_writers a "$job" 0 10)"
	fio_round "$name-2" "$(raw_global "$MNT/disk" "$job")
$(raw_writers a "$job" 0 10 verify_only=1)
$(raw_writers b "$job" $b 20)"
	VERIFIED=$((VERIFIED + 12 * job * MIB))
	churn_stop "$MNT" disk "$budget"
	local peak_alloc
	peak_alloc=$(ctl "$MNT" peak_allocated_bytes)
	stop_daemon
	log "$name: peak RSS $HWM_KIB KiB, bound $(rss_bound "$max") KiB" \
		"(budget up to $max bytes; cache peak $peak_alloc bytes)"
	[ "$HWM_KIB" -le "$(rss_bound "$max")" ] ||
		fail "$name: peak RSS $HWM_KIB KiB over the bound $(rss_bound "$max") KiB" \
			"(max_cache_size_bytes $max * 1.03 + 32 MiB; cache peak $peak_alloc bytes)"
}

# 1% of the working set, churned between a quarter and all of it.
JOB=$(soak_scale 32 256)
B1=$((8 * JOB * MIB / 100))
scenario small "$B1" "$JOB" "$((B1 / 4)) $((B1 / 2)) $B1" "size size mode drop flush"
# A large budget (the 1.03 factor matters) that the data overflows twice;
# no drop_caches or cache_mode none here, so the cache really fills up.
JOB=$(soak_scale 64 512)
B2=$((4 * JOB * MIB))
scenario large "$B2" "$JOB" "$((B2 * 3 / 4)) $B2 $B2" "size flush"

log "ok: $((VERIFIED / MIB)) MiB verified"
