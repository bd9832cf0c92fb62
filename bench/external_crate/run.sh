#!/usr/bin/env bash
# A crate outside the workspace, set up only as the README says (path dependencies on
# flow-macros and flowc-runtime, flowc behind its feature `jit`): every flow of the snapshot
# corpus through `flow_file!`, the generated log_prob against the JIT's on the same rows.
# Run from anywhere: bash bench/external_crate/run.sh   (a fresh build: about 3 minutes)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
sed "s|@ROOT@|$root|g" "$root/bench/external_crate/Cargo.toml.in" > "$work/Cargo.toml"
sed "s|../../snapshots/corpus.flow|$root/snapshots/corpus.flow|" "$root/bench/external_crate/src/main.rs" > "$work/src/main.rs"
cd "$work"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$work/target}" cargo run --release
