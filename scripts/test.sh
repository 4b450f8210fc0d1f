#!/usr/bin/env bash
# The whole test suite: set-up (no demo), lint, types, Rust unit tests, Python tests incl. boots.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-demo
echo "test: ruff"
py_dirs=(src tests)
[ -d bench ] && py_dirs+=(bench)
.venv/bin/ruff check "${py_dirs[@]}"
.venv/bin/ruff format --check "${py_dirs[@]}"
echo "test: mypy --strict"
.venv/bin/mypy --strict src/hvboot
echo "test: generated protocol files"
.venv/bin/hvboot gen-protocol --check
echo "test: generated settings reference"
.venv/bin/hvboot gen-docs --check
echo "test: cargo fmt --check (the main workspace)"
cargo fmt --all --check
echo "test: cargo test (loader core, kernel API, checker)"
cargo test --quiet -p hvboot-loader-core -p hvboot-api -p hvboot-check
echo "test: pytest"
.venv/bin/python -m pytest -q -n 2 "$@"
