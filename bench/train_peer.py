#!/usr/bin/env python3
"""PyTorch peer of `effcnn train`: CPU training throughput with the same recipe.

`mobilenet_v2` is torchvision's model with effcnn's CIFAR profile applied (stem and first
24-channel block at stride 1, 10 classes), checked against `effcnn show mobilenet_v2 --profile
cifar` (parameter count and every conv's stride) when the effcnn binary is given. It builds
`dwsep_cnn` / `plain_cnn` from `effcnn show MODEL --profile cifar --format json` (every
conv is followed by BatchNorm + ReLU; a 2×2 max-pool sits wherever the spatial size halves
between two convs; global average pool and the linear classifier close the net) — or, without
the effcnn binary, from a mirror of crates/arch/src/zoo/study.rs — and checks that its
trainable-parameter count equals effcnn's. It then trains on random CIFAR-shaped batches with
effcnn's recipe (SGD, Nesterov momentum 0.9, dampening 0, weight decay 5e-4 with BatchNorm and
biases exempt, label smoothing as given) and prints one JSON line with the training and
evaluation throughput: images per wall-clock second, and training images per CPU-second of
the process (all threads), so runs at different thread counts or on a loaded machine compare.

    python3 bench/train_peer.py --model dwsep_cnn --batch-size 128 --threads 2 \
        --effcnn target/debug/effcnn

Compare with `effcnn train dwsep_cnn --data synthetic:2560:256 --epochs 1 --batch-size 128
--threads 2 ...` (its summary.json reports img_per_s) on the same machine; bench/run.sh does.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - reported to the user
    sys.exit("train_peer.py needs PyTorch: pip install torch")

WIDTHS = [16, 32, 64, 128]


def layers_from_effcnn(binary, model, width):
    cmd = [binary, "show", model, "--profile", "cifar", "--format", "json"]
    if width is not None:
        cmd += ["--width", str(width)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    return d["layers"], d["params"]


def layers_from_mirror(model, width):
    """The conv/linear rows `effcnn show` would print (study.rs at CIFAR resolution 32)."""
    w = 1.0 if width is None else width
    rows, cin, size = [], 3, 32
    for stage, base in enumerate(WIDTHS):
        c = max(1, round(base * w))
        for layer in range(2):
            shape_in = {"c": cin, "h": size, "w": size}
            if model == "dwsep_cnn" and (stage, layer) != (0, 0):
                rows.append({"op": "dwconv", "k": [3, 3], "stride": [1, 1], "groups": cin,
                             "in": [shape_in], "out": {"c": cin, "h": size, "w": size}})
                rows.append({"op": "pwconv", "k": [1, 1], "stride": [1, 1], "groups": 1,
                             "in": [{"c": cin, "h": size, "w": size}],
                             "out": {"c": c, "h": size, "w": size}})
            else:
                rows.append({"op": "conv", "k": [3, 3], "stride": [1, 1], "groups": 1,
                             "in": [shape_in], "out": {"c": c, "h": size, "w": size}})
            cin = c
        if stage + 1 < len(WIDTHS):
            size //= 2
    rows.append({"op": "linear", "in": [{"c": cin, "h": 1, "w": 1}],
                 "out": {"c": 10, "h": 1, "w": 1}})
    return rows, None


def mobilenet_v2_cifar(binary):
    """torchvision's MobileNetV2 with effcnn's CIFAR profile: stride 1 in the stem and in the
    first block of the 24-channel stage; checked against effcnn's layer table when possible."""
    import torchvision

    net = torchvision.models.mobilenet_v2(num_classes=10)
    net.features[0][0].stride = (1, 1)
    net.features[2].conv[1][0].stride = (1, 1)
    if binary:
        cmd = [binary, "show", "mobilenet_v2", "--profile", "cifar", "--format", "json"]
        d = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        want = [tuple(r["stride"]) for r in d["layers"] if r["op"] != "linear"]
        got = [m.stride for m in net.modules() if isinstance(m, nn.Conv2d)]
        if want != got:
            sys.exit(f"conv strides differ from effcnn's: {got} != {want}")
        return net, d["params"]
    return net, None


def build(rows):
    mods, prev_h = [], None
    for r in rows:
        cin, h = r["in"][0]["c"], r["in"][0]["h"]
        if r["op"] == "linear":
            mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, r["out"]["c"])]
            continue
        if r["op"] not in ("conv", "dwconv", "pwconv"):
            sys.exit(f"layer op {r['op']!r}: only plain conv stacks are mirrored")
        if prev_h is not None and h != prev_h:
            if h * 2 != prev_h:
                sys.exit(f"unexpected spatial change {prev_h} -> {h}")
            mods.append(nn.MaxPool2d(2, 2))
        k, s, g = r["k"][0], r["stride"][0], r["groups"]
        cout = r["out"]["c"]
        mods += [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False),
                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        prev_h = r["out"]["h"]
    net = nn.Sequential(*mods)
    for m in net.modules():  # torchvision's initialisation, as effcnn-nn does
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return net


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="dwsep_cnn", choices=["dwsep_cnn", "plain_cnn", "mobilenet_v2"])
    p.add_argument("--width", type=float)
    p.add_argument("--effcnn", default=shutil.which("effcnn"), help="effcnn binary")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.model == "mobilenet_v2":
        if a.width is not None:
            sys.exit("--width is not supported for mobilenet_v2")
        net, effcnn_params = mobilenet_v2_cifar(a.effcnn)
    elif a.effcnn:
        rows, effcnn_params = layers_from_effcnn(a.effcnn, a.model, a.width)
        net = build(rows)
    else:
        rows, effcnn_params = layers_from_mirror(a.model, a.width)
        net = build(rows)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if effcnn_params is not None and params != effcnn_params:
        sys.exit(f"parameter count {params} != effcnn's {effcnn_params}: structure mismatch")

    decay, no_decay = [], []
    for m in net.modules():
        for name, prm in m.named_parameters(recurse=False):
            (no_decay if isinstance(m, nn.BatchNorm2d) or name == "bias" else decay).append(prm)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True, dampening=0.0)
    bs = a.batch_size
    x = torch.randn(bs, 3, 32, 32)
    y = torch.randint(0, 10, (bs,))

    net.train()
    t = cpu = None
    for i in range(a.warmup_steps + a.steps):
        if i == a.warmup_steps:
            t = time.perf_counter()
            cpu = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, label_smoothing=a.label_smoothing)
        loss.backward()
        opt.step()
        loss.item()
    train_ips = a.steps * bs / (time.perf_counter() - t)
    train_ipcs = a.steps * bs / max(time.process_time() - cpu, 1e-9)

    net.eval()
    with torch.no_grad():
        for _ in range(2):
            net(x)
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x).argmax(1)
        eval_ips = a.steps * bs / (time.perf_counter() - t)

    print(json.dumps({
        "framework": f"pytorch {torch.__version__}",
        "model": a.model,
        "params": params,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        "train_img_per_s": round(train_ips, 1),
        "train_img_per_cpu_s": round(train_ipcs, 1),
        "eval_img_per_s": round(eval_ips, 1),
    }))


if __name__ == "__main__":
    main()
