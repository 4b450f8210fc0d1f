#!/usr/bin/env bash
# Coverage-guided fuzzing of the loader's on-machine parsers (cargo-fuzz + libFuzzer, nightly
# toolchain; the fuzz/ crate is a workspace of its own). Not part of scripts/test.sh.
#
#   scripts/fuzz.sh --list             the targets
#   scripts/fuzz.sh TARGET SECONDS     run TARGET for SECONDS on one core; extra arguments go to
#                                      libFuzzer (e.g. -runs=1000000)
#
# Seeds: fuzz/seeds/TARGET (committed) and fuzz/corpus/TARGET (what the run finds, plus the test
# kernels, made by fuzz/seeds.py --large). A crash, hang (-timeout=10 s) or out-of-memory
# (-rss_limit_mb=512) stops the run and leaves its input in fuzz/artifacts/TARGET/.
# Needs: rustup toolchain nightly, `cargo install cargo-fuzz`, scripts/setup.sh --no-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=$(sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hvboot-fuzz$')
if [ "${1:-}" = "--list" ]; then
    echo "$targets"
    exit 0
fi
if [ $# -lt 2 ] || ! grep -qx "$1" <<<"$targets"; then
    echo "usage: scripts/fuzz.sh --list | TARGET SECONDS [libFuzzer options]" >&2
    echo "targets: $(echo $targets)" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
if [ ! -d fuzz/corpus/elf ]; then
    .venv/bin/python fuzz/seeds.py --large
fi
mkdir -p "fuzz/corpus/$target"
exec cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=512 -print_final_stats=1 "$@"
