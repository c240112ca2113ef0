#!/usr/bin/env python3
"""Inference-latency peers of `effcnn bench`: PyTorch eager (NCHW), PyTorch channels_last and
ONNX Runtime (CPU) on ONNX exported from the same torchvision models.

Timing follows `effcnn bench` exactly: `--warmup` untimed runs, then timed runs until at least
`--runs` runs and `--min-seconds` seconds (at most 10,000 runs); each run is one forward pass on
a fixed input (the same deterministic values effcnn uses) whose logits are read back to host
memory; the median and p90 use effcnn's definitions. Weights are random (torchvision's
initialisation): they do not change the speed.

    python3 bench/peers.py --models mobilenet_v2,efficientnet_b0 --batch 1,8 --threads 1,2

prints a JSON list of {framework, model, batch, threads, median_ms, p90_ms, img_per_s, runs}.
"""

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
    import torchvision
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("peers.py needs torch, torchvision and numpy: pip install -r bench/requirements.txt")

MODELS = ["mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0", "mobilenet_v3_large"]
FRAMEWORKS = ["pytorch", "pytorch_cl", "ort"]


def percentiles(times):
    """Median and p90 in ms, as effcnn's `percentiles`."""
    t = sorted(times)
    n = len(t)
    med = t[n // 2] if n % 2 == 1 else (t[n // 2 - 1] + t[n // 2]) / 2
    p90 = t[min(max(math.ceil(n * 0.9), 1), n) - 1]
    return med * 1e3, p90 * 1e3


def measure(run, warmup, runs, min_seconds):
    for _ in range(warmup):
        run()
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10_000:
            break
    med, p90 = percentiles(times)
    return med, p90, len(times)


def input_array(b):
    """effcnn bench's input: value i of the flattened tensor is (i % 255) / 127.5 - 1."""
    n = b * 3 * 224 * 224
    return ((np.arange(n) % 255).astype(np.float32) / 127.5 - 1.0).reshape(b, 3, 224, 224)


def export_onnx(model, name, b, folder):
    path = os.path.join(folder, f"{name}_b{b}.onnx")
    if not os.path.exists(path):
        x = torch.from_numpy(input_array(b))
        kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        with torch.no_grad():
            torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["logits"],
                              opset_version=17, **kw)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help="comma-separated: pytorch (eager NCHW), pytorch_cl (channels_last), ort")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--onnx-dir", help="where exported .onnx files are kept (default: a temp dir)")
    a = p.parse_args()

    models = [m for m in a.models.split(",") if m]
    batches = [int(b) for b in a.batch.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    fws = [f for f in a.frameworks.split(",") if f]
    for f in fws:
        if f not in FRAMEWORKS:
            sys.exit(f"unknown framework {f!r} (choose from {', '.join(FRAMEWORKS)})")
    if "ort" in fws:
        import onnxruntime as ort
    onnx_dir = a.onnx_dir or tempfile.mkdtemp(prefix="effcnn-peers-")
    os.makedirs(onnx_dir, exist_ok=True)

    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    results = []
    for name in models:
        model = getattr(torchvision.models, name)(weights=None).eval()
        # .to(memory_format=...) converts a module in place: keep a separate copy.
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        for b in batches:
            xn = input_array(b)
            x = torch.from_numpy(xn)
            onnx_path = export_onnx(model, name, b, onnx_dir) if "ort" in fws else None
            for t in threads:
                torch.set_num_threads(t)
                for fw in fws:
                    if fw == "pytorch":
                        def run(m=model, x=x):
                            with torch.inference_mode():
                                m(x).numpy()
                        label = f"pytorch {torch.__version__} eager"
                    elif fw == "pytorch_cl":
                        xcl = x.contiguous(memory_format=torch.channels_last)

                        def run(m=model_cl, x=xcl):
                            with torch.inference_mode():
                                m(x).numpy()
                        label = f"pytorch {torch.__version__} channels_last"
                    else:
                        so = ort.SessionOptions()
                        so.intra_op_num_threads = t
                        so.inter_op_num_threads = 1
                        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                        sess = ort.InferenceSession(onnx_path, so,
                                                    providers=["CPUExecutionProvider"])

                        def run(s=sess, xn=xn):
                            s.run(None, {"x": xn})
                        label = f"onnxruntime {ort.__version__}"
                    med, p90, n = measure(run, a.warmup, a.runs, a.min_seconds)
                    results.append({
                        "framework": fw,
                        "label": label,
                        "model": name,
                        "batch": b,
                        "threads": t,
                        "median_ms": round(med, 3),
                        "p90_ms": round(p90, 3),
                        "img_per_s": round(b / (med / 1e3), 2),
                        "runs": n,
                    })
                    print(f"{fw:10s} {name:20s} b{b} t{t}: {med:8.2f} ms", file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
