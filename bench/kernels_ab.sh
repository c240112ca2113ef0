#!/usr/bin/env bash
# effcnn's kernels against burn's own ops (EFFCNN_KERNELS=burn), same binary, same run,
# interleaved: eval latency of two ImageNet models (1 thread) and one training epoch of the
# three CIFAR nets (2 threads). Prints one markdown table; raw output in OUT.
#
#   bench/kernels_ab.sh [OUT]      (default OUT: bench/out/kernels-<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/kernels-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
EFFCNN=${EFFCNN:-target/debug/effcnn}
echo "| workload | burn's ops | effcnn kernels | speed-up |"
echo "|---|---:|---:|---:|"
for m in mobilenet_v2 efficientnet_b0; do
  for b in 1 8; do
    for k in burn effcnn; do
      EFFCNN_KERNELS=$k "$EFFCNN" bench "$m" \
        --batch "$b" --threads 1 --format json > "$OUT/bench_${m}_b${b}_$k.json"
    done
    python3 - "$OUT/bench_${m}_b${b}_burn.json" "$OUT/bench_${m}_b${b}_effcnn.json" "$m" "$b" <<'PY'
import json, sys
a, b = (json.load(open(p))[0]["median_ms"] for p in sys.argv[1:3])
print(f"| {sys.argv[3]} eval, batch {sys.argv[4]}, 1 thread (ms) | {a:.1f} | {b:.1f} | {a / b:.2f}× |")
PY
  done
done
for m in plain_cnn dwsep_cnn mobilenet_v2; do
  n=2560; [ "$m" = mobilenet_v2 ] && n=512
  for k in burn effcnn; do
    EFFCNN_KERNELS=$k "$EFFCNN" train "$m" \
      --profile cifar --data "synthetic:$n:256" --epochs 1 --batch-size 128 --no-augment \
      --threads 2 --out "$OUT/train_${m}_$k" --overwrite --progress quiet >/dev/null 2>&1
  done
  python3 - "$OUT/train_${m}_burn/summary.json" "$OUT/train_${m}_effcnn/summary.json" "$m" <<'PY'
import json, sys
a, b = (json.load(open(p))["img_per_s"] for p in sys.argv[1:3])
print(f"| {sys.argv[3]} training, batch 128, 2 threads (img/s) | {a:.1f} | {b:.1f} | {b / a:.2f}× |")
PY
done
