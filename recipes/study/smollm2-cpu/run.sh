#!/usr/bin/env bash
# The CPU study: value-gap DPO vs SimPO vs KTO vs PPO on SmolLM2-135M-Instruct,
# from the same start, with the same data, steps, rate and probes; then
# `driftui report` on each arm and across them (compare.md: topics ×
# algorithms, each drift with its 95% interval and drift time).
#
#   recipes/study/smollm2-cpu/run.sh [OUT]      # default OUT: runs/study-smollm2-cpu
#
# Needs the model file (scripts/fetch-smollm2.sh) and a driftui binary
# (DRIFTUI=path, else target/release/driftui, else driftui on PATH).
# Measured 2026-12-02, 2 cores of an AVX-512 AMD EPYC: the DPO arm 6 min
# 23 s and the PPO arm 12:58 on quiet cores; SimPO 7:12 and KTO 12:50
# while builds shared the cores (recipes/study/README.md has the table).
# Wall and CPU seconds of each arm go to OUT/times.txt; each arm's log to
# OUT/ARM.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/runs/study-smollm2-cpu}
bin=${DRIFTUI:-}
if [ -z "$bin" ]; then
  if [ -x "$root/target/release/driftui" ]; then bin=$root/target/release/driftui; else bin=driftui; fi
fi
mkdir -p "$out"
: > "$out/times.txt"
TIMEFORMAT='%R %U %S'
for alg in dpo simpo kto ppo; do
  rm -rf "${out:?}/$alg"
  # An arm that fails stops the study, with the end of its log.
  if ! t=$( { time "$bin" train "$here/$alg.toml" --headless --output "$out/$alg" >"$out/$alg.log" 2>&1; } 2>&1 ); then
    echo "run.sh: the $alg arm failed; the end of $out/$alg.log:" >&2
    tail -n 20 "$out/$alg.log" >&2
    exit 1
  fi
  read -r wall user sys <<<"$t"
  echo "$alg wall_s=$wall cpu_s=$(awk "BEGIN{print $user + $sys}")" | tee -a "$out/times.txt"
done
"$bin" report "$out/dpo" "$out/simpo" "$out/kto" "$out/ppo" --out "$out"
