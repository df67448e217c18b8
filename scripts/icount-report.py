#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Where the guest's instructions went, per function and per operation, with toa loaded and without:
the report of `scripts/profile.sh --icount`.

    icount-report.py SYSTEM_MAP OPS WITH WITHOUT [TOP]

WITH and WITHOUT are the block counts written by scripts/icount-plugin.c for the two runs; each has a
WITH.log (the run's output) whose "KSYM <address> <type> <name>" lines give the module's symbols (from
the guest's /proc/kallsyms). Kernel symbols come from SYSTEM_MAP (the guest boots with nokaslr). Every
count is divided by OPS, the operations the workload did; the boot and the workload's setup are in both
runs, about equal, and spread thin over that many operations.
"""
import bisect
import collections
import subprocess
import sys


def kernel_symbols(system_map):
    """(start address, name) of the kernel's text symbols."""
    syms = []
    with open(system_map) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2]))
    return syms


def per_function(counts, kernel_syms):
    """Instructions executed per function: each block is counted in the function it starts in. The
    module's symbols come from the run's log (its load address differs from run to run)."""
    syms = list(kernel_syms)
    with open(counts + ".log") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "KSYM" and parts[2] in "tT":
                syms.append((int(parts[1], 16), parts[3]))
    syms.sort()
    starts, names = [a for a, _ in syms], [n for _, n in syms]
    total = collections.Counter()
    with open(counts) as f:
        for line in f:
            vaddr, insns, executions = line.split()
            i = bisect.bisect_right(starts, int(vaddr, 16)) - 1
            total[names[i] if i >= 0 else "?"] += int(insns) * int(executions)
    return total


def demangle(names):
    """Rust symbols as paths (binutils' c++filt reads Rust's v0 mangling)."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                             check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return {n: n for n in names}
    return {n: d for n, d in zip(names, out)}


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    system_map, ops, with_toa, without = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 30
    kernel_syms = kernel_symbols(system_map)
    w, wo = per_function(with_toa, kernel_syms), per_function(without, kernel_syms)
    diff = {k: (w[k] - wo[k]) / ops for k in set(w) | set(wo)}
    # toa's own functions count whole; the kernel's only by their difference, which includes noise.
    shown = sorted(diff, key=lambda k: -abs(diff[k]))[:top]
    names = demangle(shown)
    print(f"instructions per operation ({ops:.0f} operations): with toa, without, difference")
    for k in shown:
        print(f"{w[k] / ops:10.1f} {wo[k] / ops:10.1f} {diff[k]:+9.1f}  {names[k]}")


if __name__ == "__main__":
    main()
