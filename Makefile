# SPDX-License-Identifier: GPL-2.0
#
# toa.ko, out of tree.
#
#   make                 build toa.ko against KDIR (default: the running kernel's build tree)
#   make install         install it (modules_install + depmod) into the running kernel's tree
#   make fmt | clippy | rust-analyzer
#   make demo            set up everything, boot the demo VM, show toa at work (KERNEL=7.2: on Linux 7.2)
#   make check           every test: host unit tests, fuzzing (30 s per parser), VM integration tests, packaging
#                        on the test kernels (KERNELS="6.12-debug 7.2-plain arm64-6.12-plain" by default)
#   make fuzz            fuzz the parsers for FUZZ_SECONDS per target
#   make bench           what toa costs, as ratios against the same kernel without it (KERNEL=7.2 too)
#
# A Rust module must be built with the rustc that built its kernel and, for a clang-built kernel, with
# LLVM=1: both are detected from KDIR's .config (override with RUSTC=... LLVM=...).

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= $(if $(shell grep -s '^CONFIG_CC_IS_CLANG=y' $(KDIR)/.config),1,)
# A kernel built for arm64 on another host architecture (a cross build, scripts/build-kernel.sh arm64-...):
# Kbuild needs ARCH=arm64 (clang and rustc cross-compile by themselves).
ARCH ?= $(if $(shell grep -s '^CONFIG_ARM64=y' $(KDIR)/.config),arm64,)
LLVM_BIN ?= $(firstword $(wildcard /usr/lib/llvm-19/bin /usr/lib/llvm-18/bin))
KRUSTC = $(or $(RUSTC),$(shell $(CURDIR)/scripts/kernel-rustc.sh $(KDIR)))
# toa needs Linux 6.12 or newer (LINUX_VERSION_CODE 6.12.0 = 396288); older kernels' `kernel` crate lacks
# what it uses. Read from the tree's generated version header, so the check also works on a headers-only tree.
KVERSION_CODE = $(shell sed -n 's/^\#define LINUX_VERSION_CODE //p' $(KDIR)/include/generated/uapi/linux/version.h 2>/dev/null)
export PATH := $(if $(LLVM),$(LLVM_BIN):)$(PATH)

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) $(if $(ARCH),ARCH=$(ARCH)) $(if $(LLVM),LLVM=$(LLVM)) RUSTC=$(KRUSTC)

.PHONY: all modules kernel-version clean install install-src deb fmt fmt-check clippy rust-analyzer setup demo check test-unit fuzz bench

all modules: kernel-version
	@test -n "$(KRUSTC)" || { echo "toa: no rustc for $(KDIR) (see above)"; exit 1; }
	$(KMAKE) modules

kernel-version:
	@test -z "$(KVERSION_CODE)" || test $(KVERSION_CODE) -ge 396288 || { echo "toa: $(KDIR) is Linux" \
		"$$(($(KVERSION_CODE) >> 16)).$$(($(KVERSION_CODE) >> 8 & 255)): toa needs Linux 6.12 or newer"; exit 1; }

clean:
	$(KMAKE) clean
	rm -f rust-project.json

VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(CURDIR)/dkms.conf)
KVER ?= $(shell $(MAKE) -s -C $(KDIR) kernelrelease 2>/dev/null)

# Installs toa.ko into the kernel's module tree (updates/), runs depmod, and installs the boot-time
# files: /etc/modules-load.d/toa.conf (load at boot) and, if absent, a commented /etc/modprobe.d/toa.conf.
install: all
	$(KMAKE) modules_install
	depmod -a $(KVER)
	install -D -m 0644 packaging/toa-modules-load.conf $(DESTDIR)/etc/modules-load.d/toa.conf
	test -e $(DESTDIR)/etc/modprobe.d/toa.conf || \
		install -D -m 0644 packaging/toa-modprobe.conf $(DESTDIR)/etc/modprobe.d/toa.conf

# The module's source tree as DKMS wants it: $(DESTDIR)/usr/src/toa-$(VERSION) (used by debian/rules).
SRC_FILES = Kbuild Makefile dkms.conf src/Kbuild $(filter-out src/toa_offsets.rs,$(wildcard src/*.rs src/*/*.rs src/*.c src/*.h)) \
	scripts/kernel-rustc.sh include/toa.h include/uoa.h packaging/toa-modules-load.conf packaging/toa-modprobe.conf
install-src:
	for f in $(SRC_FILES); do install -D -m 0644 $$f $(DESTDIR)/usr/src/toa-$(VERSION)/$$f; done
	chmod 0755 $(DESTDIR)/usr/src/toa-$(VERSION)/scripts/kernel-rustc.sh

# The toa-dkms Debian package, built with Debian's tooling (dh-dkms) into target/deb/.
deb:
	rm -rf target/deb && mkdir -p target/deb/src
	git archive HEAD | tar -x -C target/deb/src
	cd target/deb/src && dpkg-buildpackage -us -uc -b
	ls target/deb/*.deb

# Formatting: the kernel's rustfmt rules for the module, cargo fmt for the host crates.
RUSTFMT ?= rustfmt
fmt:
	$(RUSTFMT) --edition 2021 --config-path $(CURDIR)/.rustfmt.toml src/toa_main.rs
	cargo fmt --all

fmt-check:
	$(RUSTFMT) --edition 2021 --config-path $(CURDIR)/.rustfmt.toml --check src/toa_main.rs
	cargo fmt --all --check

# Clippy with the kernel's lint set (CLIPPY=1); any warning fails. Touching the crate root makes Kbuild
# run the Rust compiler again (no `make clean`: Kbuild's clean would also sweep cargo's target/).
clippy:
	@test -n "$(KRUSTC)" || exit 1
	touch src/toa_main.rs
	$(KMAKE) CLIPPY=1 CLIPPY_DRIVER=$(dir $(KRUSTC))clippy-driver modules 2>&1 | tee .clippy.log
	@! grep -q '^warning' .clippy.log || { echo "clippy: warnings above"; rm -f .clippy.log; exit 1; }
	@rm -f .clippy.log
	cargo clippy --workspace --all-targets -- -D warnings

# rust-project.json for this module. Linux 6.12's `make M=... rust-analyzer` descends into the wrong
# directory for external modules, so the kernel's own generator is called directly, with the arguments
# rust/Makefile would give it (core edition 2024 for rustc >= 1.87).
KSRC = $(realpath $(or $(wildcard $(KDIR)/source),$(KDIR)))
KSYSROOT = $(shell $(KRUSTC) --print sysroot)
rust-analyzer:
	python3 $(KSRC)/scripts/generate_rust_analyzer.py --cfgs='core=--cfg no_fp_fmt_parse' \
		$(if $(filter 1.8[7-9].% 1.9%,$(word 2,$(shell $(KRUSTC) --version))),2024,2021) \
		$(KSRC) $(realpath $(KDIR)) $(KSYSROOT) $(KSYSROOT)/lib/rustlib/src/rust/library \
		$(CURDIR) > rust-project.json

setup:
	bash scripts/setup-toolchain.sh

test-unit:
	cargo test --workspace

demo:
	bash scripts/demo.sh

check:
	bash scripts/check.sh

bench:
	bash scripts/bench.sh

# Fuzz every parser for FUZZ_SECONDS each (default 600).
FUZZ_SECONDS ?= 600
fuzz:
	bash scripts/setup-toolchain.sh
	bash scripts/fuzz.sh $(FUZZ_SECONDS)
