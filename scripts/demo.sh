#!/usr/bin/env bash
# `make demo`: installs what is missing, builds the plain test kernel and toa.ko, boots the VM, loads toa
# and plays the load balancer: for each scenario, what the server sees, then /proc/net/toa_stats.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
# shellcheck source=scripts/env.sh
. "$here/env.sh"
bash "$here/setup-toolchain.sh"
kdir=$(bash "$here/build-kernel.sh" plain | tail -1)
ko=$(bash "$here/build-module.sh" "$kdir" | tail -1)
cargo build --release -q -p toa-vmtest
exec bash "$here/vm-run.sh" "$kdir" "$ko" -- "$top/target/release/toa-vmtest" demo
