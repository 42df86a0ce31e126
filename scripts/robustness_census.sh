#!/usr/bin/env bash
# The robustness census: reruns every category of bad input, signal and
# kill from tests/robustness.rs and tests/guards.rs (shard counts and shard
# records, training memory and point errors, training failure paths,
# messages) and prints one line per category with the
# inputs tried and the panics, hangs, aborts and torn folders (all must be 0;
# the tests fail otherwise).
#
#   scripts/robustness_census.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test robustness -- --nocapture --test-threads=1 2>&1 |
    tee /tmp/quantdepth-census.log | grep -E '^(census|fuzzed|kill moments)|^test result'
cargo test --release --test guards -- --nocapture --test-threads=1 2>&1 |
    tee -a /tmp/quantdepth-census.log | grep -E '^census|^test result'
