#!/usr/bin/env python3
"""Markdown summary of one bench/run.sh folder: effcnn against PyTorch and ONNX Runtime
(latency ratios, share of the machine's SGEMM peak) and training throughput.

    python3 bench/summarize.py bench/out/<run>

Ratios are effcnn's time over the peer's (inference; < 1 means effcnn is faster) and effcnn's
img/s over the peer's (training; > 1 means effcnn is faster), each from the same run. The training
peer runs contiguous (train_peer_<model>.json) and channels_last (train_peer_<model>_cl.json);
the training ratio and target are against the faster of the two.
"""

import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def peer_line(path):
    """The JSON line bench/train_peer.py printed (its last line), or None if the file is absent."""
    if not os.path.exists(path):
        return None
    lines = open(path).read().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    eff = []
    for p in sorted(glob.glob(os.path.join(d, "effcnn_t*.json"))):
        eff += load(p)
    peers = load(os.path.join(d, "peers.json")) if os.path.exists(os.path.join(d, "peers.json")) else []
    sg = load(os.path.join(d, "sgemm.json")) if os.path.exists(os.path.join(d, "sgemm.json")) else None
    peak = sg["peak_gmacs"] if sg else None
    peer = {(r["framework"], r["model"], r["batch"], r["threads"]): r for r in peers}

    out = []
    if os.path.exists(os.path.join(d, "env.txt")):
        out += ["```", open(os.path.join(d, "env.txt")).read().rstrip(), "```", ""]
    if sg:
        out.append(f"SGEMM 2048² float32, 1 thread: numpy {sg['numpy_gflops']} GFLOP/s, torch "
                   f"{sg['torch_gflops']} GFLOP/s → peak {peak} GMAC/s per core "
                   f"(× threads for the 2-thread rows).")
        out.append("")
    out.append("| model | batch | thr | effcnn ms | PyTorch ms | PyTorch CL ms | ORT ms | "
               "effcnn/PyTorch | effcnn/PyTorch CL | effcnn/ORT | effcnn GMAC/s | effcnn % peak | ORT % peak |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    met = total = 0
    for r in sorted(eff, key=lambda r: (r["model"], r["batch"], r["threads"])):
        key = (r["model"], r["batch"], r["threads"])
        pt, cl, ort = (peer.get((f,) + key) for f in ("pytorch", "pytorch_cl", "ort"))
        ms = r["median_ms"]

        def f(x):
            return f"{x['median_ms']:.2f}" if x else "–"

        def ratio(x):
            return f"{ms / x['median_ms']:.2f}" if x else "–"

        share = lambda g: f"{100 * g / (peak * r['threads']):.1f}%" if peak else "–"
        ort_g = (r["macs"] * r["batch"] / (ort["median_ms"] / 1e3) / 1e9) if ort else None
        out.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {ms:.2f} | {f(pt)} | {f(cl)} | "
                   f"{f(ort)} | {ratio(pt)} | {ratio(cl)} | {ratio(ort)} | {r['gmacs_per_s']:.2f} | "
                   f"{share(r['gmacs_per_s'])} | {share(ort_g) if ort_g else '–'} |")
        if pt and ort:
            total += 1
            met += ms <= pt["median_ms"] and ms <= ort["median_ms"]
    out.append("")
    out.append(f"Inference target (effcnn ≤ PyTorch eager and ≤ ORT): met in {met} of {total} "
               "(model, batch, threads) cases.")
    out.append("")

    # ONNX Runtime on effcnn's own export of the same weights (peers.py ort_effcnn).
    own = [(r, peer.get(("ort_effcnn", r["model"], r["batch"], r["threads"]))) for r in eff]
    own = [(r, o) for r, o in own if o]
    if own:
        out.append("| model | batch | thr | effcnn ms | ORT on effcnn's export ms | effcnn/ORT | "
                   "ORT vs effcnn logits rel-L2 |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for r, o in sorted(own, key=lambda p: (p[0]["model"], p[0]["batch"], p[0]["threads"])):
            out.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['median_ms']:.2f} | "
                       f"{o['median_ms']:.2f} | {r['median_ms'] / o['median_ms']:.2f} | "
                       f"{o['logits_rel_l2']:.1e} |")
        out.append("")

    rows = []
    for s in sorted(glob.glob(os.path.join(d, "train_*", "summary.json"))):
        run = os.path.dirname(s)
        m = os.path.basename(run)[len("train_"):]
        es = load(s)
        # The last epoch's rate: the first one also compiles the training step and touches its
        # buffers for the first time (the peer's warm-up steps are excluded the same way).
        mp = os.path.join(run, "metrics.jsonl")
        if os.path.exists(mp):
            with open(mp) as f:
                lines = [json.loads(l) for l in f if l.strip()]
            if lines:
                es = dict(es, img_per_s=lines[-1]["img_per_s"])
        pr, pr_cl = (peer_line(os.path.join(d, f"train_peer_{m}{sfx}.json"))
                     for sfx in ("", "_cl"))
        # Images trained per CPU-second of the whole effcnn process (setup and the test pass
        # included, so a lower bound), from /usr/bin/time and the data spec synthetic:N:M.
        eff_cpu = None
        tp = os.path.join(d, f"train_{m}_time.json")
        cp = os.path.join(run, "config.json")
        if os.path.exists(tp) and os.path.exists(cp):
            cpu = load(tp)
            spec = str(load(cp).get("data", ""))
            parts = spec.split(":")
            if parts[0] == "synthetic" and len(parts) > 1 and parts[1].isdigit():
                epochs = int(load(cp).get("epochs", 1))
                eff_cpu = epochs * int(parts[1]) / max(cpu["cpu_s"] + cpu["sys_s"], 1e-9)
        rows.append((m, es, eff_cpu, pr, pr_cl))
    if rows:
        out.append("| model (CIFAR, batch 128) | thr | effcnn img/s | PyTorch img/s | "
                   "PyTorch CL img/s | effcnn/PyTorch best | effcnn img/CPU-s | "
                   "PyTorch best img/CPU-s | target |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for m, es, eff_cpu, pr, pr_cl in rows:
            # The faster of the two layouts (by wall-clock img/s) is the peer to beat.
            best = max((r for r in (pr, pr_cl) if r), key=lambda r: r["train_img_per_s"],
                       default=None)
            ratio = es["img_per_s"] / best["train_img_per_s"] if best else None
            tag = " (CL)" if best and best.get("memory_format") == "channels_last" else ""
            out.append(f"| {m} | {best['threads'] if best else '–'} | {es['img_per_s']:.1f} | "
                       f"{pr['train_img_per_s'] if pr else '–'} | "
                       f"{pr_cl['train_img_per_s'] if pr_cl else '–'} | "
                       f"{f'{ratio:.2f}{tag}' if ratio else '–'} | "
                       f"{f'{eff_cpu:.1f}' if eff_cpu else '–'} | "
                       f"{best['train_img_per_cpu_s'] if best else '–'} | "
                       f"{target_cell(m, ratio)} |")
        out.append("")
    print("\n".join(out))


# Training-speed targets against the faster PyTorch layout (effcnn / PyTorch best).
TARGETS = {"dwsep_cnn": 1.5, "mobilenet_v2": 1.5, "plain_cnn": 1.0, "resnet20": 1.0}


def target_cell(model, ratio):
    t = TARGETS.get(model)
    if t is None:
        return "–"
    return f"≥ {t}: {'met' if ratio and ratio >= t else 'not met'}"


if __name__ == "__main__":
    main()
