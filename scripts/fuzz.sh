#!/usr/bin/env bash
# Runs each cargo-fuzz target for a given time: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
# (default 60 s, all targets). Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz wants a
# nightly toolchain; where only a stable one exists this runs it with RUSTC_BOOTSTRAP=1 and without
# a sanitizer (libFuzzer's coverage guidance still works; out-of-bounds reads are caught by Rust's
# own checks, and there is no unsafe code on these paths).
# A crash leaves its input in fuzz/artifacts/TARGET/; copy it to fuzz/regressions/TARGET/ with the
# fix so that `cargo test` (tests/integration/fuzz_corpus.rs) replays it for ever.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(checkpoint meta_graph tf_meta_graph tf_checkpoint safetensors idx csv graph_ops)
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzzing $t for ${secs}s"
  cargo "${toolchain[@]}" fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 2>&1 |
    tee "/tmp/fuzz-$t.log" | grep -E '^(stat::|==|INFO: Running|Done|#[0-9]+ *DONE)|panicked|ERROR|SUMMARY' || true
  grep -q 'Done [0-9]* runs' "/tmp/fuzz-$t.log" && continue
  # A crash always fails. A build that could not write its output (a full disk on a CI machine)
  # is reported and skipped: it says nothing about the code under test.
  if ! grep -qE 'panicked|deadly signal|SUMMARY: libFuzzer|Test unit written' "/tmp/fuzz-$t.log" &&
    grep -q 'No space left on device' "/tmp/fuzz-$t.log"; then
    echo "SKIPPED: fuzz target $t (no space left on device to build it)"
    continue
  fi
  tail -n 40 "/tmp/fuzz-$t.log"
  echo "fuzz target $t failed"
  exit 1
done
