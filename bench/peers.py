#!/usr/bin/env python3
"""Inference-latency peers of `effcnn bench`: PyTorch eager (NCHW), PyTorch channels_last,
ONNX Runtime (CPU) on ONNX exported from the same torchvision models, and ONNX Runtime on
effcnn's own export (`effcnn export`) of the very weights effcnn runs.

Timing follows `effcnn bench` exactly: `--warmup` untimed runs, then timed runs until at least
`--runs` runs and `--min-seconds` seconds (at most 10,000 runs); each run is one forward pass on
a fixed input (the same deterministic values effcnn uses) whose logits are read back to host
memory; the median and p90 use effcnn's definitions. Weights are random (torchvision's
initialisation): they do not change the speed.

    python3 bench/peers.py --models mobilenet_v2,efficientnet_b0 --batch 1,8 --threads 1,2

prints a JSON list of {framework, model, batch, threads, median_ms, p90_ms, img_per_s, runs}.

`ort_effcnn` (ONNX Runtime on effcnn's export) needs only onnxruntime, onnx and numpy (no torch):

    python3 bench/peers.py --frameworks ort_effcnn --effcnn target/debug/effcnn \
        --models mobilenet_v2 --batch 1

For each model and batch it runs `effcnn export MODEL --batch B` (random weights, effcnn's
default seed, the weights `effcnn bench` times; or `--weights W`), checks the file with
`onnx.checker` (full check, shape inference included), and takes effcnn's logits on the same
input from `effcnn predict` with the same weights: without `--weights`, the initializers of the
exported file itself, saved as .safetensors (so the weights also round-trip through the ONNX
file). ONNX Runtime's logits must match effcnn's within relative L2 `--max-rel-l2` (1e-4), or
the benchmark fails; the error is reported as `logits_rel_l2`.
"""

import argparse
import copy
import json
import math
import os
import sys
import tempfile
import time

import shutil
import subprocess

try:
    import numpy as np
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("peers.py needs numpy: pip install -r bench/requirements.txt")

MODELS = ["mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0", "mobilenet_v3_large"]
FRAMEWORKS = ["pytorch", "pytorch_cl", "ort", "ort_effcnn"]
# The frameworks that run torchvision's models (and so need torch).
TORCH_FRAMEWORKS = ["pytorch", "pytorch_cl", "ort"]


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


def input_array(b, r=224):
    """effcnn bench's input: value i of the flattened tensor is (i % 255) / 127.5 - 1."""
    n = b * 3 * r * r
    return ((np.arange(n) % 255).astype(np.float32) / 127.5 - 1.0).reshape(b, 3, r, r)


def rel_l2(got, want):
    """‖got − want‖ / ‖want‖ (effcnn's parity measure), in float64."""
    got, want = np.asarray(got, np.float64).ravel(), np.asarray(want, np.float64).ravel()
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def effcnn_run(binary, args):
    """Run the effcnn binary; its stdout, or exit with its error."""
    r = subprocess.run([binary] + args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"effcnn {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def effcnn_export(binary, name, b, folder, weights):
    """`effcnn export` of one model and batch, checked by onnx.checker. Returns the .onnx path,
    the weights effcnn's reference run uses, and the resolution recorded in the file."""
    import onnx
    import onnx.numpy_helper

    path = os.path.join(folder, f"{name}_effcnn_b{b}.onnx")
    args = ["export", name, "--onnx", path, "--batch", str(b)]
    if weights:
        args += ["--weights", weights]
    effcnn_run(binary, args)
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    resolution = int(meta["effcnn.resolution"])
    if not weights:
        # The exported initializers are the model's own tensors under effcnn's parameter paths
        # (PyTorch shapes); the shape/index constants of Reshape, Slice and Clip are left out.
        from safetensors.numpy import save_file
        tensors = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer
                   if t.data_type == onnx.TensorProto.FLOAT and not t.name.startswith("effcnn.")}
        weights = os.path.join(folder, f"{name}_effcnn_b{b}.safetensors")
        save_file(tensors, weights)
    return path, weights, resolution


def effcnn_logits(binary, name, weights, xn, folder):
    """effcnn's logits for the batch `xn` (`effcnn predict` on a .npy input)."""
    npy = os.path.join(folder, f"input_{name}_b{xn.shape[0]}.npy")
    np.save(npy, xn)
    out = json.loads(effcnn_run(binary, ["predict", name, "--weights", weights, npy,
                                         "--topk", "1", "--format", "json"]))
    return np.array([row["logits"] for row in out], dtype=np.float32)


def ort_session(ort, path, t):
    so = ort.SessionOptions()
    so.intra_op_num_threads = t
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


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
                   help="comma-separated: pytorch (eager NCHW), pytorch_cl (channels_last), ort "
                        "(torchvision's ONNX export), ort_effcnn (effcnn's ONNX export)")
    default_bin = "target/debug/effcnn" if os.path.exists("target/debug/effcnn") else None
    p.add_argument("--effcnn", default=default_bin or shutil.which("effcnn"),
                   help="effcnn binary (for ort_effcnn)")
    p.add_argument("--weights", help="ort_effcnn: weights to export (default: effcnn's random "
                                     "initialisation); one --models entry")
    p.add_argument("--max-rel-l2", type=float, default=1e-4,
                   help="ort_effcnn: largest accepted relative L2 error of ORT against effcnn")
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
    use_torch = any(f in TORCH_FRAMEWORKS for f in fws)
    if use_torch:
        try:
            global torch
            import torch
            import torchvision
        except ImportError:  # pragma: no cover - reported to the user
            sys.exit("the pytorch, pytorch_cl and ort peers need torch and torchvision: "
                     "pip install -r bench/requirements.txt")
        torch.set_num_interop_threads(1)
        torch.manual_seed(0)
    if "ort" in fws or "ort_effcnn" in fws:
        import onnxruntime as ort
    if "ort_effcnn" in fws:
        if not a.effcnn:
            sys.exit("ort_effcnn needs the effcnn binary: --effcnn PATH (cargo build -p effcnn)")
        if a.weights and len(models) != 1:
            sys.exit("--weights goes with exactly one --models entry")
    onnx_dir = a.onnx_dir or tempfile.mkdtemp(prefix="effcnn-peers-")
    os.makedirs(onnx_dir, exist_ok=True)

    results = []
    for name in models:
        if use_torch:
            model = getattr(torchvision.models, name)(weights=None).eval()
            # .to(memory_format=...) converts a module in place: keep a separate copy.
            model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        for b in batches:
            xn = input_array(b)
            x = torch.from_numpy(xn) if use_torch else None
            onnx_path = export_onnx(model, name, b, onnx_dir) if "ort" in fws else None
            effcnn_check = None
            if "ort_effcnn" in fws:
                eff_path, eff_weights, r = effcnn_export(a.effcnn, name, b, onnx_dir, a.weights)
                xe = input_array(b, r)
                want = effcnn_logits(a.effcnn, name, eff_weights, xe, onnx_dir)
                got = ort_session(ort, eff_path, 1).run(None, {"input": xe})[0]
                err = rel_l2(got, want)
                print(f"ort_effcnn {name:20s} b{b}: ORT vs effcnn logits rel-L2 {err:.2e}",
                      file=sys.stderr)
                if not got.shape == want.shape or not err <= a.max_rel_l2:
                    sys.exit(f"ort_effcnn {name} b{b}: ONNX Runtime's logits on effcnn's export "
                             f"differ from effcnn's: rel-L2 {err:.3e} > {a.max_rel_l2:g} "
                             f"(shapes {got.shape} vs {want.shape})")
                effcnn_check = (eff_path, xe, err)
            for t in threads:
                if use_torch:
                    torch.set_num_threads(t)
                for fw in fws:
                    extra = {}
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
                    elif fw == "ort":
                        sess = ort_session(ort, onnx_path, t)

                        def run(s=sess, xn=xn):
                            s.run(None, {"x": xn})
                        label = f"onnxruntime {ort.__version__}"
                    else:
                        eff_path, xe, err = effcnn_check
                        sess = ort_session(ort, eff_path, t)

                        def run(s=sess, xe=xe):
                            s.run(None, {"input": xe})
                        label = f"onnxruntime {ort.__version__} on effcnn's export"
                        extra = {"logits_rel_l2": float(f"{err:.3e}")}
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
                        **extra,
                    })
                    print(f"{fw:10s} {name:20s} b{b} t{t}: {med:8.2f} ms", file=sys.stderr)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
