#!/usr/bin/env bash
# The robustness census: reruns every category of bad input, signal and
# kill from tests/robustness.rs and tests/guards.rs (shard counts and shard
# records, training memory and point errors, training failure paths,
# messages), and the filesystem categories of tests/fs_safety.rs (symlinked
# plots/ and points/, slurm --out over users' files and links, FIFOs and
# /dev/zero where files are read, gzip bombs, concurrent resumes, and the
# 200-case symlink-and-FIFO fuzz of resume and merge), and prints one line
# per category with the inputs tried and the panics, hangs, aborts, torn
# folders and writes outside the results folder (all must be 0; the tests
# fail otherwise).
#
#   scripts/robustness_census.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for t in robustness guards fs_safety; do
    cargo test --release --test "$t" -- --nocapture --test-threads=1 2>&1 |
        tee "/tmp/quantdepth-census-$t.log" |
        # A test's first line follows libtest's "test NAME ... " on its line.
        sed -E 's/^test [^ ]+ \.\.\. //' |
        grep -E '^(census|fuzzed|kill moments|concurrent resumes)|^test result'
done
