#!/usr/bin/env bash
# `make demo`: installs what is missing, builds the plain test kernel and toa.ko, boots the VM, loads toa
# and plays the load balancer: for each scenario, what the server sees, then /proc/net/toa_stats.
# KERNEL=7.2 (or any [SERIES-]VARIANT of build-kernel.sh) picks the kernel, ARCH=arm64 the arm64 build of
# it (cross-built, under qemu-system-aarch64); the default is 6.12's plain kernel on the host's x86_64.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
toa_prepare "$(toa_kernel "${KERNEL:-}" plain "${ARCH:-}")"
exec bash "$here/vm-run.sh" "$kdir" "$ko" -- "$vmtest" demo
