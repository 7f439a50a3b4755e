#!/usr/bin/env bash
# Fuzzes what `drillbook validate` and `plan` run — the loader, the validator and the planner
# (src/fuzzing.rs) — with cargo-fuzz (libFuzzer, nightly), for RUNS executions (default one
# million), then minimizes the corpus kept in the repo (fuzz/corpus/validate), which the tests
# replay (tests/fuzz_corpus.rs). A finding is a panic, an input that takes over 10 s, or a
# process over 512 MiB (inputs are at most 64 KiB): libFuzzer stops and saves it in
# fuzz/artifacts/validate/.
#
# The target is built without a sanitizer by default (FUZZ_SANITIZER=address to add one): the
# code fuzzed is safe Rust (the unsafe blocks are in process and network code it never reaches),
# where AddressSanitizer finds nothing a panic would not, and it slows every execution.
# libFuzzer's own RSS limit still bounds memory.
#
#   bash bench/fuzz.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Work on a copy: libFuzzer adds every new input it finds; `cmin` keeps the smallest set that
# covers the same paths, which is what the repo keeps.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp fuzz/corpus/validate/* "$work"/
started=$(date +%s)
cargo +nightly fuzz run --sanitizer "${FUZZ_SANITIZER:-none}" validate "$work" -- \
  -runs="$runs" -max_len=65536 -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
  2>&1 | tee "$work.log" | grep -E "^#[0-9]+ *(INITED|DONE)|stat::|ERROR|panicked" || true
echo "fuzz: $runs runs in $(( $(date +%s) - started )) s"
if grep -q "ERROR\|panicked" "$work.log"; then
  echo "fuzz: a finding; see fuzz/artifacts/validate/" >&2
  exit 1
fi
cargo +nightly fuzz cmin --sanitizer "${FUZZ_SANITIZER:-none}" validate "$work" 2>&1 | tail -1
rm -f fuzz/corpus/validate/*
cp "$work"/* fuzz/corpus/validate/
echo "fuzz: corpus kept: $(ls fuzz/corpus/validate | wc -l) inputs"
