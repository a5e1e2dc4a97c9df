#!/usr/bin/env bash
# Fuzz each harness of tests/fuzz for SECONDS (default 60): run.sh BUILD_DIR
# [SECONDS]. Starts from the seed corpus in the repo, works in a scratch copy
# (the repo's corpus is not changed), and fails on any crash, leak, timeout
# or broken check; the input that did it is kept and its path printed.
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [SECONDS]}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/bufiofs-fuzz.XXXXXX")
status=0
for name in ctl_value config; do
	bin=$build/tests/fuzz/fuzz_$name
	[ -x "$bin" ] || { echo "run.sh: $bin is not built (-DBUFIO_FUZZ=ON, CC=clang)" >&2; exit 1; }
	mkdir -p "$work/$name/corpus" "$work/$name/crash"
	cp "$here/corpus/$name"/* "$work/$name/corpus/"
	echo "--- fuzz_$name: $seconds s"
	# stdin from /dev/null: an input naming /dev/stdin must not wait for a terminal.
	# TMPDIR: the harness's scratch files, left behind by a crash, go with the rest.
	if ! TMPDIR="$work/$name" ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		LSAN_OPTIONS=suppressions=$here/lsan.supp \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-dict="$here/$name.dict" -artifact_prefix="$work/$name/crash/" -print_final_stats=1 \
		"$work/$name/corpus" </dev/null >"$work/$name/log" 2>&1; then
		tail -n 60 "$work/$name/log" >&2
		echo "FAIL: fuzz_$name: the input is in $work/$name/crash/" >&2
		status=1
		continue
	fi
	grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$name/log" || true
done
[ "$status" -ne 0 ] || rm -rf "$work"
exit "$status"
