#!/usr/bin/env bash
# Cross-builds the programs the VM suite runs in an arm64 guest, into target/: toa-vmtest
# (target/aarch64-unknown-linux-gnu/release/toa-vmtest, rustup's aarch64-unknown-linux-gnu target linked
# with aarch64-linux-gnu-gcc), the C examples (aarch64-linux-gnu-gcc) and the Go example (GOARCH=arm64)
# in target/aarch64/. Needs gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (apt) and
# `rustup target add aarch64-unknown-linux-gnu`.
#
#   scripts/build-arm64-tests.sh     prints the `env ...` arguments for vm-run.sh's COMMAND last
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
cd "$top"
rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu ||
	rustup target add aarch64-unknown-linux-gnu >&2
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	nice -n 19 cargo build --release -q -p toa-vmtest --target aarch64-unknown-linux-gnu >&2
out=target/aarch64
mkdir -p "$out"
aarch64-linux-gnu-gcc -Wall -Wextra -Werror -I include -o "$out/toa_server" examples/toa_server.c
aarch64-linux-gnu-gcc -Wall -Wextra -Werror -I include -o "$out/uoa_server" examples/uoa_server.c
go_example=
if command -v go >/dev/null; then
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 GOTOOLCHAIN=local nice -n 19 go build -o "$out/uoa_lookup_go" examples/uoa_lookup.go
	go_example=$top/$out/uoa_lookup_go
fi
echo "env TOA_EXAMPLE=$top/$out/toa_server UOA_EXAMPLE=$top/$out/uoa_server UOA_GO_EXAMPLE=$go_example $top/target/aarch64-unknown-linux-gnu/release/toa-vmtest"
