#!/usr/bin/env bash
# One benchmark run of effcnn against its peers on this machine:
#   1. `effcnn bench` (eval-mode latency) of the four ImageNet models at batch 1 and 8, 1 and 2
#      threads, and a per-layer profile of mobilenet_v2;
#   2. bench/peers.py: PyTorch eager, PyTorch channels_last, ONNX Runtime on torchvision's ONNX
#      export and ONNX Runtime on effcnn's own export (`effcnn export`, its logits checked against
#      effcnn's: a mismatch fails the run), same models, batches, threads and timing method;
#   3. a large SGEMM (2048² float32, 1 thread, numpy and torch) as the machine's peak;
#   4. training throughput: `effcnn train … --data synthetic:N:M --epochs 1` against
#      bench/train_peer.py with the same batch size and recipe, run twice per model (contiguous
#      and channels_last; the summary compares effcnn with the faster of the two);
# then prints one markdown summary (bench/summarize.py) and keeps every raw file in OUT.
#
#   bench/run.sh [OUT]            (default OUT: bench/out/<date>)
#
# Environment knobs (defaults in brackets): EFFCNN [target/debug/effcnn, built here],
# MODELS [the four], BATCH [1,8], THREADS ["1 2"],
# TRAIN_MODELS ["plain_cnn dwsep_cnn resnet20 se_resnet20 mobilenet_v2 shufflenet_v2_x1_0"],
# TRAIN_THREADS [2], TRAIN_BATCH [128], TRAIN_N / TRAIN_TEST_N [2560 / 256 images; per model
# TRAIN_N_<model>, e.g. TRAIN_N_mobilenet_v2=640], PROFILE_MODEL [mobilenet_v2],
# SKIP_BUILD [unset], TRAIN_ONLY [unset: set, the training part and the SGEMM peak only].
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
EFFCNN=${EFFCNN:-target/debug/effcnn}
MODELS=${MODELS:-"mobilenet_v2 shufflenet_v2_x1_0 efficientnet_b0 mobilenet_v3_large"}
BATCH=${BATCH:-1,8}
THREADS=${THREADS:-"1 2"}
TRAIN_MODELS=${TRAIN_MODELS:-"plain_cnn dwsep_cnn resnet20 se_resnet20 mobilenet_v2 shufflenet_v2_x1_0"}
TRAIN_THREADS=${TRAIN_THREADS:-2}
TRAIN_BATCH=${TRAIN_BATCH:-128}
TRAIN_N=${TRAIN_N:-2560}
TRAIN_TEST_N=${TRAIN_TEST_N:-256}
PROFILE_MODEL=${PROFILE_MODEL:-mobilenet_v2}
# The peers run numpy/torch: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set on some machines for
# old OpenBLAS builds) slow a current numpy, so they are unset together, for the peers only.
PEER_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
models_csv=$(echo $MODELS | tr ' ' ',')
threads_csv=$(echo $THREADS | tr ' ' ',')

if [ -z "${SKIP_BUILD:-}" ]; then
  log "cargo build -p effcnn"
  cargo build -p effcnn >&2
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores" \
       "(family $(grep -m1 'cpu family' /proc/cpuinfo | awk '{print $NF}')," \
       "model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | awk '{print $NF}'))"
  echo "effcnn: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (+ uncommitted changes)'), burn 0.22.1, $EFFCNN"
  "${PEER_ENV[@]}" python3 -c 'import importlib.util as u, torch, numpy; ort = __import__("onnxruntime").__version__ if u.find_spec("onnxruntime") else "not installed"; print(f"torch {torch.__version__} (cpu capability {torch.backends.cpu.get_cpu_capability()}), onnxruntime {ort}, numpy {numpy.__version__}")'
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/env.txt"
cat "$OUT/env.txt" >&2

if [ -z "${TRAIN_ONLY:-}" ]; then
for t in $THREADS; do
  log "effcnn bench $MODELS --batch $BATCH --threads $t"
  "$EFFCNN" bench $MODELS --batch "$BATCH" --threads "$t" --format json > "$OUT/effcnn_t$t.json"
done
log "effcnn bench $PROFILE_MODEL --per-layer"
"$EFFCNN" bench "$PROFILE_MODEL" --batch "$BATCH" --threads 1 --per-layer --top 10 --format md \
  > "$OUT/per_layer_$PROFILE_MODEL.md"
"$EFFCNN" bench "$PROFILE_MODEL" --batch 1 --threads 1 --per-layer --format json \
  > "$OUT/per_layer_$PROFILE_MODEL.json"
echo "load after effcnn bench: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"

log "peers (PyTorch eager, channels_last, ONNX Runtime on torchvision's and on effcnn's export)"
"${PEER_ENV[@]}" python3 bench/peers.py --models "$models_csv" --batch "$BATCH" \
  --threads "$threads_csv" --onnx-dir "$OUT/onnx" --effcnn "$EFFCNN" > "$OUT/peers.json"
echo "load after peers: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"
fi

log "SGEMM peak (2048² float32, 1 thread)"
"${PEER_ENV[@]}" python3 - > "$OUT/sgemm.json" <<'PY'
import json, time
import numpy as np, torch
from threadpoolctl import threadpool_info, threadpool_limits

n = 2048
def best(f, reps=10):
    f(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return 2 * n**3 / min(ts) / 1e9
a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
with threadpool_limits(1):
    np_gflops = best(lambda: a @ b)
    info = [{k: d.get(k) for k in ("internal_api", "version", "architecture")} for d in threadpool_info()]
torch.set_num_threads(1)
ta, tb = torch.from_numpy(a), torch.from_numpy(b)
torch_gflops = best(lambda: torch.mm(ta, tb))
peak = max(np_gflops, torch_gflops)
print(json.dumps({"numpy_gflops": round(np_gflops, 2), "torch_gflops": round(torch_gflops, 2),
                  "peak_gflops": round(peak, 2), "peak_gmacs": round(peak / 2, 2),
                  "blas": info}, indent=1))
PY
cat "$OUT/sgemm.json" >&2

for m in $TRAIN_MODELS; do
  var="TRAIN_N_$m"; n=${!var:-$TRAIN_N}
  steps=$((n / TRAIN_BATCH))
  # Two epochs of n images: the summary reads the second (the first compiles the step and
  # touches its buffers first, as the peer's warm-up step does).
  log "effcnn train $m --data synthetic:$n:$TRAIN_TEST_N --epochs 2 --threads $TRAIN_THREADS"
  /usr/bin/time -f '{"cpu_s": %U, "sys_s": %S, "wall_s": %e}' -o "$OUT/train_${m}_time.json" \
    "$EFFCNN" train "$m" --profile cifar --data "synthetic:$n:$TRAIN_TEST_N" --epochs 2 \
      --batch-size "$TRAIN_BATCH" --no-augment --threads "$TRAIN_THREADS" \
      --out "$OUT/train_$m" --overwrite --progress quiet >&2
  for fmt in contiguous channels_last; do
    case $fmt in channels_last) suffix=_cl ;; *) suffix="" ;; esac
    log "train_peer.py --model $m --steps $steps --memory-format $fmt"
    "${PEER_ENV[@]}" python3 bench/train_peer.py --model "$m" --effcnn "$EFFCNN" \
      --batch-size "$TRAIN_BATCH" --threads "$TRAIN_THREADS" --steps "$steps" --warmup-steps 1 \
      --memory-format "$fmt" > "$OUT/train_peer_${m}${suffix}.json"
  done
done
echo "load after training: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/env.txt"

python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
