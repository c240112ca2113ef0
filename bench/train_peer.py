#!/usr/bin/env python3
"""PyTorch peer of `effcnn train`: CPU training throughput with the same recipe.

`mobilenet_v2` and `shufflenet_v2_x1_0` are torchvision's models with effcnn's CIFAR profile
applied (MobileNetV2: stem and first 24-channel block at stride 1; ShuffleNetV2: stem at stride 1
and no max-pool; 10 classes). `resnet20` / `se_resnet20` are He et al.'s CIFAR ResNets written
here as effcnn defines them (crates/arch/src/zoo/cifar_resnet.rs): 3×3 stem (16), three stages of
3 basic blocks (16/32/64, stride 2 on the first 3×3 conv of stages 2 and 3), 1×1 conv + BN
projection shortcut where the shape changes (option B), and for `se_resnet20` an SE module
(C/16, ReLU, sigmoid, 1×1 convs with bias) after the second BN, before the addition.
`dwsep_cnn` / `plain_cnn` are built from `effcnn show MODEL --profile cifar --format json` (every
conv is followed by BatchNorm + ReLU; a 2×2 max-pool sits wherever the spatial size halves
between two convs; global average pool and the linear classifier close the net) — or, without
the effcnn binary, from a mirror of crates/arch/src/zoo/study.rs. Given the effcnn binary, every
model is checked against `effcnn show MODEL --profile cifar --format json`: its trainable-parameter
count, and every conv's in/out channels, kernel, stride, groups and output size on a 32×32 input,
in the json's layer order (a mismatch exits non-zero). It then trains on random CIFAR-shaped
batches with effcnn's recipe (SGD, Nesterov momentum 0.9, dampening 0, weight decay 5e-4 with
BatchNorm and biases exempt, label smoothing as given) and prints one JSON line with the
training and evaluation throughput: images per wall-clock second, and training images per CPU-second of
the process (all threads), so runs at different thread counts or on a loaded machine compare.
`--memory-format channels_last` converts the model and the input batch to torch.channels_last
(recorded in the JSON line as `memory_format`).

    python3 bench/train_peer.py --model dwsep_cnn --batch-size 128 --threads 2 \
        --effcnn target/debug/effcnn [--memory-format channels_last]

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


def effcnn_show(binary, model):
    cmd = [binary, "show", model, "--profile", "cifar", "--format", "json"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def check_convs(net, rows):
    """Every nn.Conv2d of `net` (module order) against effcnn's conv rows (layer order): in/out
    channels, kernel, stride, groups, and the output size of a 32×32 input (which catches a
    pooling layer effcnn does not have)."""
    want = [(r["in"][0]["c"], r["out"]["c"], tuple(r["k"]), tuple(r["stride"]), r["groups"],
             (r["out"]["h"], r["out"]["w"])) for r in rows if r["op"] != "linear"]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    sizes = {}

    def record(m, inputs, out):
        sizes[m] = tuple(out.shape[2:])

    hooks = [m.register_forward_hook(record) for m in convs]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    got = [(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), m.groups,
            sizes.get(m)) for m in convs]
    if want != got:
        i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        sys.exit(f"convs differ from effcnn's ({len(got)} vs {len(want)}); first difference at conv "
                 f"#{i}, (cin, cout, k, stride, groups, out h×w): "
                 f"{got[i] if i < len(got) else None} != {want[i] if i < len(want) else None}")


def checked(net, binary, model):
    """`net` and effcnn's parameter count, after checking its convs against effcnn's."""
    if not binary:
        return net, None
    d = effcnn_show(binary, model)
    check_convs(net, d["layers"])
    return net, d["params"]


def mobilenet_v2_cifar(binary):
    """torchvision's MobileNetV2 with effcnn's CIFAR profile: stride 1 in the stem and in the
    first block of the 24-channel stage; checked against effcnn's layer table when possible."""
    import torchvision

    net = torchvision.models.mobilenet_v2(num_classes=10)
    net.features[0][0].stride = (1, 1)
    net.features[2].conv[1][0].stride = (1, 1)
    return checked(net, binary, "mobilenet_v2")


def shufflenet_v2_cifar(binary):
    """torchvision's ShuffleNetV2 1.0× with effcnn's CIFAR profile (crates/arch/src/zoo/
    shufflenet_v2.rs, as chenyaofo's cifar10_shufflenetv2_*): the stem conv at stride 1 and no
    max-pool, so stage 2 starts at 32×32; effcnn's initialisation (see `init`)."""
    import torchvision

    net = torchvision.models.shufflenet_v2_x1_0(num_classes=10)
    net.conv1[0].stride = (1, 1)
    net.maxpool = nn.Identity()
    init(net)
    return checked(net, binary, "shufflenet_v2_x1_0")


class SE(nn.Module):
    """SENet's squeeze-and-excitation: global average pool → 1×1 conv (C/16, bias) → ReLU →
    1×1 conv (C, bias) → sigmoid → channel-wise scale."""

    def __init__(self, c, ratio=16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // ratio, 1)
        self.fc2 = nn.Conv2d(c // ratio, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BasicBlock(nn.Module):
    """3×3 conv (stride) → BN → ReLU → 3×3 conv → BN [→ SE] → + shortcut → ReLU; the shortcut is
    a 1×1 conv (stride) + BN where the shape changes. Registration order follows effcnn's graph
    (conv1, conv2, SE, downsample)."""

    def __init__(self, cin, cout, stride, se):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SE(cout) if se else None
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)), inplace=True)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet as crates/arch/src/zoo/cifar_resnet.rs builds it (option B
    shortcuts; SE on every block's residual branch when `se`)."""

    def __init__(self, layers, se, classes=10, planes=(16, 32, 64), strides=(1, 2, 2)):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        blocks, cin = [], planes[0]
        for n, c, s in zip(layers, planes, strides):
            for i in range(n):
                blocks.append(BasicBlock(cin, c, s if i == 0 else 1, se))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv_stem(x)), inplace=True))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cifar_resnet(binary, model):
    net = CifarResNet([3, 3, 3], se=model.startswith("se_"))
    init(net)
    return checked(net, binary, model)


def init(net):
    """torchvision's initialisation, as effcnn-nn does: convs Kaiming-normal (fan_out), biases 0;
    linear N(0, 0.01), bias 0 (BatchNorm keeps PyTorch's 1 / 0)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return net


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
    return init(nn.Sequential(*mods))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="dwsep_cnn", choices=[
        "dwsep_cnn", "plain_cnn", "resnet20", "se_resnet20", "mobilenet_v2", "shufflenet_v2_x1_0"])
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
    p.add_argument("--memory-format", default="contiguous", choices=["contiguous", "channels_last"],
                   help="layout of the model's weights and the input batch")
    a = p.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    fixed = {"mobilenet_v2": mobilenet_v2_cifar, "shufflenet_v2_x1_0": shufflenet_v2_cifar,
             "resnet20": lambda b: cifar_resnet(b, "resnet20"),
             "se_resnet20": lambda b: cifar_resnet(b, "se_resnet20")}
    if a.model in fixed:
        if a.width is not None:
            sys.exit(f"--width is not supported for {a.model}")
        net, effcnn_params = fixed[a.model](a.effcnn)
    elif a.effcnn:
        rows, effcnn_params = layers_from_effcnn(a.effcnn, a.model, a.width)
        net = build(rows)
        check_convs(net, rows)
    else:
        rows, effcnn_params = layers_from_mirror(a.model, a.width)
        net = build(rows)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if effcnn_params is not None and params != effcnn_params:
        sys.exit(f"parameter count {params} != effcnn's {effcnn_params}: structure mismatch")
    if a.memory_format == "channels_last":
        net = net.to(memory_format=torch.channels_last)

    decay, no_decay = [], []
    for m in net.modules():
        for name, prm in m.named_parameters(recurse=False):
            (no_decay if isinstance(m, nn.BatchNorm2d) or name == "bias" else decay).append(prm)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True, dampening=0.0)
    bs = a.batch_size
    x = torch.randn(bs, 3, 32, 32)
    if a.memory_format == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
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
        "memory_format": a.memory_format,
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
