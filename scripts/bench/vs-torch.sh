#!/usr/bin/env bash
# driftui's training benchmark against PyTorch on the same work, alternating
# the two (A B A B ...) on the same CPUs, on SmolLM2-135M.
#
#   scripts/bench/vs-torch.sh CONFIG ROUNDS CPUS BENCH_BIN TORCH_BASELINE [--random]
#
#   CONFIG           full:1:128 | full:4:256 | lora:1:128 | lora:4:256 |
#                    score:B:LEN (no-grad scoring of N=64 sequences of LEN
#                    targets in batches of B, e.g. score:8:40; N=$SCORE_N)
#   ROUNDS           how many A B pairs
#   CPUS             taskset list, e.g. 0,1 (both get RAYON/torch threads = its count)
#   BENCH_BIN        target/release/examples/bench_smollm2
#   TORCH_BASELINE   ../shared/bench/torch_baseline.py
#   --random         SmolLM2-shaped random weights on both sides (no GGUF needed)
#
# Prints each run's RESULT line and peak RSS (GNU time's, or the program's own).
# VARIANTS="CANDLE_NUM_THREADS=1|CANDLE_NUM_THREADS=2" runs driftui once per
# variant (environment assignments) in each round, before PyTorch.
# ISA=avx2 limits both sides to AVX2 on an AVX-512 machine: PyTorch through
# ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA, driftui
# by BENCH_BIN built with `--no-default-features` (no AVX-512 kernels; the
# script refuses another) and MKL_ENABLE_INSTRUCTIONS for its MKL variant.
# The same cores and caches, the instructions of an AVX2 machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
cfg=$1 rounds=$2 cpus=$3 bin=$4 baseline=$5 random=${6:-}
IFS=: read -r mode batch seq <<<"$cfg"
threads=$(awk -F, '{print NF}' <<<"$cpus")
gguf=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
py=${PYTHON:-python3}
steps=${STEPS:-4}
score_n=()
[[ "$mode" == score ]] && score_n=(--n "${SCORE_N:-64}")
timer=()
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f "peak_rss_kib=%M")

isa_env=()
if [[ "${ISA:-}" == avx2 ]]; then
    isa_env=(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2)
    if ! "$bin" --mode kernels 2>&1 | grep -q "kernels: AVX2"; then
        echo "ISA=avx2: $bin runs AVX-512 kernels; build it with --no-default-features" >&2
        exit 2
    fi
elif [[ -n "${ISA:-}" ]]; then
    echo "ISA=$ISA: only avx2 is known" >&2
    exit 2
fi
env "${isa_env[@]}" "$py" -c 'import torch; print("torch kernels:", torch.backends.cpu.get_cpu_capability())'

driftui() {
    local extra=()
    [[ -n "$random" ]] && extra=(--random) || extra=(--gguf "$gguf")
    RAYON_NUM_THREADS=$threads taskset -c "$cpus" "${timer[@]}" env "${isa_env[@]}" $variant "$bin" \
        --mode "$mode" --batch "$batch" --seq "$seq" --steps "$steps" "${score_n[@]}" "${extra[@]}" "$@" 2>&1
}
torch() {
    local torch_mode=train-$mode
    [[ "$mode" == score ]] && torch_mode=score
    if [[ -n "$random" ]]; then
        taskset -c "$cpus" "${timer[@]}" env "${isa_env[@]}" "$py" scripts/reference/torch_random_smollm2.py "$baseline" \
            --mode "$torch_mode" --batch "$batch" --seq "$seq" --steps "$steps" "${score_n[@]}" --threads "$threads" 2>&1
    else
        taskset -c "$cpus" "${timer[@]}" env "${isa_env[@]}" "$py" "$baseline" --gguf "$gguf" \
            --mode "$torch_mode" --batch "$batch" --seq "$seq" --steps "$steps" "${score_n[@]}" --threads "$threads" 2>&1
    fi
}
IFS='|' read -r -a variants <<<"${VARIANTS:-X=1}"
for r in $(seq 1 "$rounds"); do
    for variant in "${variants[@]}"; do
        echo "## $cfg round $r driftui $variant (load: $(cut -d' ' -f1-3 /proc/loadavg))"
        driftui | grep -E "RESULT|peak_rss|step 0:|kernels:"
    done
    echo "## $cfg round $r torch (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    torch | grep -E "RESULT|peak_rss|step 0:|Error|error"
done
if [[ -n "${UNFUSED:-}" ]]; then
    variant=${variants[0]}
    echo "## $cfg driftui --fused off $variant"
    driftui --fused off | grep -E "RESULT|peak_rss"
fi
