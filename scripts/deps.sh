#!/usr/bin/env bash
# Install what bufiofs needs to build and test on Debian/Ubuntu (run as root).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: run as root (apt-get install)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential cmake pkg-config ca-certificates \
	libfuse3-dev fuse3 liburing-dev libconfig-dev check libsystemd-dev \
	fio e2fsprogs util-linux kmod procps \
	nbdkit libnbd-bin clang libclang-rt-14-dev >/dev/null
