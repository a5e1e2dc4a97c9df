#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine as root: dependencies,
# a -Werror build, unit tests plain, under ASan+UBSan and under TSan, then the
# integration tests (real FUSE mounts, loop devices, mkfs, fio), the
# reliability suite and a minute of fuzzing per libFuzzer harness
# (BUFIO_SOAK=1: ten).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ "${BUFIO_SKIP_DEPS:-}" = 1 ] || scripts/deps.sh

step() { printf '\n=== %s ===\n' "$*"; }

step "build (plain)"
scripts/build.sh build
step "unit tests (plain)"
ctest --test-dir build -L unit --output-on-failure -j2

step "build (ASan+UBSan)"
scripts/build.sh build-asan address
step "unit tests (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ctest --test-dir build-asan -L unit --output-on-failure -j2

step "build (TSan)"
scripts/build.sh build-tsan thread
step "unit tests (TSan)"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	ctest --test-dir build-tsan -L unit --output-on-failure -j2

# Both FUSE transports: /dev/fuse reads (the fuse module's enable_uring=N,
# the kernel's default) and io_uring (Y). lib.sh sets the switch for each
# test and restores it.
if ctest --test-dir build -N -L integration | grep -q 'Total Tests: [1-9]'; then
	for uring in N Y; do
		step "integration tests (enable_uring=$uring)"
		BUFIOFS_TEST_URING=$uring ctest --test-dir build -L integration --output-on-failure
	done
fi
if ctest --test-dir build-asan -N -L reliability | grep -q 'Total Tests: [1-9]'; then
	for uring in N Y; do
		step "reliability tests (daemon under ASan+UBSan, enable_uring=$uring)"
		# RSS bounds are checked on the plain daemon: under ASan RSS means nothing.
		BUFIOFS_TEST_URING=$uring BUFIOFS_PLAIN="$top/build/src/daemon/bufiofs" \
			ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			ctest --test-dir build-asan -L reliability --output-on-failure
	done
fi
step "build (clang, libFuzzer harnesses)"
CC=clang cmake -S "$top" -B "$top/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUFIO_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_ctl_value fuzz_config
fuzz_seconds=60
[ "${BUFIO_SOAK:-}" = 1 ] && fuzz_seconds=600
step "fuzzing: $fuzz_seconds s per harness"
tests/fuzz/run.sh build-fuzz "$fuzz_seconds"
step "all tests passed"
