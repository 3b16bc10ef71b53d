#!/usr/bin/env python3
"""Train small MLPs written the ways people write them, export them to ONNX, and record ONNX Runtime's outputs.

The models differ in how they flatten the image and in their layers, which decides which nodes the exporters
write around the Gemm/MatMul layers (Shape -> Gather -> Unsqueeze -> Concat -> Reshape for `x.view(x.size(0), -1)`,
a constant shape for `x.reshape(-1, 784)`, Flatten for `nn.Flatten()`, ...). Written to test/fixtures/patterns/,
described in its README.md and manifest.json:

  view-size0-ts9        x.view(x.size(0), -1); Linear(784,64), ReLU, Linear(64,10). TorchScript, opset 9, dynamic batch.
  view-size0-ts13       the same forward, opset 13 (Unsqueeze takes its axes as an input there).
  reshape-minus1-ts17   x.reshape(-1, 784); Linear(784,64), Hardtanh(-1,1), Linear(64,10). TorchScript, opset 17.
  flatten-fn-dynamo18   torch.flatten(x, 1); Linear(784,64), ReLU6, Linear(64,32), ReLU, Linear(32,10).
                        torch.export-based (dynamo) exporter, opset 18, dynamic batch (dynamic_shapes).
  view-size0-dynamo18   x.view(x.size(0), -1); Linear(784,64), ReLU, Linear(64,10). dynamo exporter, opset 18,
                        dynamic batch.
  nobias-double-ts13    nn.Flatten(); Linear(784,64,bias=False), ReLU, Linear(64,10,bias=False); model.double()
                        and a float64 input. TorchScript, opset 13.
  fixed-batch1-ts11     x.view(1, -1); Linear(784,100), ReLU, Linear(100,10); input [1, 1, 28, 28] with no
                        dynamic axes. TorchScript, opset 11. ONNX Runtime is run one sample at a time.

Each model gets <name>.onnx and <name>.ort-logits.npy: ONNX Runtime's (CPUExecutionProvider) outputs on the 2,004
test digits of test/fixtures/mnist/digits28-f32.npy as float32 [2004, 10] (the float64 model's outputs narrowed
to float32; the fixed-batch model run on one digit at a time).

Data and training as in models/pytorch/export_fixtures.py (the training split .carry/train-pixels-u8.npy and
.carry/train-labels.npy that its `prepare-split` step writes; Adam, lr 1e-3, batch 64).

Usage (PyTorch + onnx + onnxruntime; a GPU makes training take seconds):

  python3 models/pytorch/export_patterns.py export --split .carry --fixtures test/fixtures/mnist \
      --out test/fixtures/patterns
  python3 models/pytorch/export_patterns.py verify --fixtures test/fixtures/mnist --out test/fixtures/patterns
"""

import argparse
import json
import os
import sys
import traceback

import numpy as np

N_CLASSES = 10


def tensor_values(t, limit=16):
    """Values of a small onnx TensorProto as a list (None if larger than limit)."""
    from onnx import numpy_helper
    a = numpy_helper.to_array(t)
    if a.size > limit:
        return None
    return a.tolist()


def attr_value(a):
    import onnx
    from onnx import helper
    if a.type == onnx.AttributeProto.TENSOR:
        t = a.t
        return {"tensor": {"dtype": onnx.TensorProto.DataType.Name(t.data_type), "dims": list(t.dims),
                           "values": tensor_values(t)}}
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
    return v


def graph_facts(m):
    """Every node (op, name, inputs, outputs, attributes) and every initializer (name, dtype, dims, small values)."""
    import onnx
    nodes = []
    for n in m.graph.node:
        e = {"op": n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}", "name": n.name,
             "inputs": list(n.input), "outputs": list(n.output)}
        if n.attribute:
            e["attrs"] = {a.name: attr_value(a) for a in n.attribute}
        nodes.append(e)
    inits = []
    for t in m.graph.initializer:
        e = {"name": t.name, "dtype": onnx.TensorProto.DataType.Name(t.data_type), "dims": list(t.dims)}
        vals = tensor_values(t)
        if vals is not None:
            e["values"] = vals
        inits.append(e)
    return nodes, inits


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

    train_x = torch.from_numpy(np.load(os.path.join(args.split, "train-pixels-u8.npy"))).float().div_(255).to(dev)
    train_y = torch.from_numpy(np.load(os.path.join(args.split, "train-labels.npy"))).long().to(dev)
    test28 = np.load(os.path.join(args.fixtures, "digits28-f32.npy"))
    labels = np.load(os.path.join(args.fixtures, "labels.npy")).astype(np.int64)
    x28_cpu = torch.from_numpy(test28)

    def train(model, epochs, seed, lr=1e-3, batch=64):
        torch.manual_seed(seed)
        gen = torch.Generator(device=dev).manual_seed(seed)
        model.to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        n = train_x.shape[0]
        for epoch in range(epochs):
            perm = torch.randperm(n, device=dev, generator=gen)
            total = 0.0
            for i in range(0, n, batch):
                idx = perm[i:i + batch]
                loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            if epoch == epochs - 1:
                print(f"  epoch {epoch + 1}: loss {total / n:.4f}", flush=True)
        model.eval()
        return model.cpu()

    manifest = {}
    failures = []

    def dims(vi):
        return [d.dim_param if d.HasField("dim_param") else str(d.dim_value) for d in vi.type.tensor_type.shape.dim]

    def finish(name, exporter, requested_opset, model, dtype=np.float32, one_by_one=False, note=None,
               test_inputs_rule="as stored", torch_fn=None):
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.checker.check_model(path, full_check=True)
        m = onnx.load(path)
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        init_names = {i.name for i in m.graph.initializer}
        inputs = [i for i in m.graph.input if i.name not in init_names]
        graph, inits = graph_facts(m)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        in_meta = sess.get_inputs()[0]
        x = test28.astype(dtype)
        batching = {}
        if one_by_one:
            out = np.concatenate([sess.run(None, {in_meta.name: x[i:i + 1]})[0] for i in range(len(x))])
            try:
                sess.run(None, {in_meta.name: x[:2]})
                batching["batch_of_2"] = "accepted"
            except Exception as e:  # noqa: BLE001 - record how ORT refuses it
                batching["batch_of_2"] = f"refused: {type(e).__name__}: {str(e)[:300]}"
        else:
            out = sess.run(None, {in_meta.name: x})[0]
            # the same digits in other batch sizes must give the same outputs
            parts = [sess.run(None, {in_meta.name: x[i:i + 1]})[0] for i in range(5)]
            parts.append(sess.run(None, {in_meta.name: x[5:12]})[0])
            diff = float(np.abs(np.concatenate(parts) - out[:12]).max())
            batching["batches_1x5_and_7_vs_2004_max_abs_diff"] = diff
        out32 = out.astype(np.float32)
        np.save(os.path.join(args.out, f"{name}.ort-logits.npy"), out32)
        with torch.no_grad():
            if torch_fn is not None:
                ref = torch_fn(model, torch.from_numpy(x))
            else:
                ref = model(torch.from_numpy(x)).numpy()
        entry = {
            "opset": opset,
            "requested_opset": requested_opset,
            "exporter": exporter,
            "ops": sorted({n["op"] for n in graph}),
            "nodes": [n["op"] for n in graph],
            "input": inputs[0].name,
            "input_shape": dims(inputs[0]),
            "input_type": in_meta.type,
            "output": m.graph.output[0].name,
            "output_shape": dims(m.graph.output[0]),
            "output_type": sess.get_outputs()[0].type,
            "ort_accuracy": float((out32.argmax(1) == labels).mean()),
            "torch_accuracy": float((ref.argmax(1) == labels).mean()),
            "ort_vs_torch_max_abs_diff": float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max()),
            "test_inputs": "digits28-f32",
            "test_inputs_rule": test_inputs_rule,
            "labels": "labels",
            "n_test": int(len(labels)),
            "ort_run": "one digit at a time" if one_by_one else "all 2004 digits in one batch",
            "ort_batching": batching,
            "external_data": False,
            "ir_version": m.ir_version,
            "producer": f"{m.producer_name} {m.producer_version}".strip(),
            "n_initializers": len(m.graph.initializer),
            "initializers": inits,
            "graph": graph,
            "versions": versions,
        }
        if note:
            entry["note"] = note
        manifest[name] = entry
        print(f"{name}: opset {opset}, ir {m.ir_version}, input {entry['input']} {entry['input_shape']} {in_meta.type}, "
              f"ORT acc {entry['ort_accuracy']:.4f}, torch acc {entry['torch_accuracy']:.4f}, "
              f"max |ORT-torch| {entry['ort_vs_torch_max_abs_diff']:.3g}, batching {batching}", flush=True)
        print("  nodes:", entry["nodes"], flush=True)
        for n in graph:
            print("   ", n["op"], n["inputs"], "->", n["outputs"], n.get("attrs", ""), flush=True)
        for i in inits:
            print("    init", i, flush=True)

    def ts_export(model, example, path, opset, dynamic=True, **kw):
        if dynamic:
            kw["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], **kw)

    def dynamo_export(model, example, path, opset):
        kw = dict(dynamo=True, opset_version=opset, input_names=["input"], output_names=["logits"],
                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        try:
            torch.onnx.export(model, (example,), path, external_data=False, **kw)
        except TypeError as e:
            if "external_data" not in str(e):
                raise
            torch.onnx.export(model, (example,), path, **kw)
        if os.path.exists(path + ".data"):  # keep it self-contained
            m = onnx.load(path)
            os.remove(path + ".data")
            onnx.save_model(m, path)

    class ViewSize0(nn.Module):
        def __init__(self, hidden=64):
            super().__init__()
            self.fc1 = nn.Linear(784, hidden)
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = x.view(x.size(0), -1)
            return self.fc2(torch.relu(self.fc1(x)))

    class ReshapeMinus1(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 64)
            self.act = nn.Hardtanh(-1.0, 1.0)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            x = x.reshape(-1, 784)
            return self.fc2(self.act(self.fc1(x)))

    class FlattenFn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 64)
            self.act1 = nn.ReLU6()
            self.fc2 = nn.Linear(64, 32)
            self.act2 = nn.ReLU()
            self.fc3 = nn.Linear(32, 10)

        def forward(self, x):
            x = torch.flatten(x, 1)
            return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))

    class FixedBatch1(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 100)
            self.fc2 = nn.Linear(100, 10)
            self.fixed = False  # training runs on batches; the exported forward is x.view(1, -1)

        def forward(self, x):
            x = x.view(1, -1) if self.fixed else x.view(x.size(0), -1)
            return self.fc2(torch.relu(self.fc1(x)))

    def step(name, fn):
        print(name, flush=True)
        try:
            fn(name)
        except Exception:  # noqa: BLE001 - keep going, report at the end
            traceback.print_exc()
            failures.append(name)

    def p(name):
        return os.path.join(args.out, f"{name}.onnx")

    def m1(name):
        torch.manual_seed(11)
        model = train(ViewSize0(), 8, 11)
        ts_export(model, x28_cpu[:8], p(name), 9)
        finish(name, "torchscript", 9, model)

    def m2(name):
        torch.manual_seed(12)
        model = train(ViewSize0(), 8, 12)
        ts_export(model, x28_cpu[:8], p(name), 13)
        finish(name, "torchscript", 13, model)

    def m3(name):
        torch.manual_seed(13)
        model = train(ReshapeMinus1(), 8, 13)
        ts_export(model, x28_cpu[:8], p(name), 17)
        finish(name, "torchscript", 17, model)

    def m4(name):
        torch.manual_seed(14)
        model = train(FlattenFn(), 10, 14)
        dynamo_export(model, x28_cpu[:8], p(name), 18)
        finish(name, "dynamo", 18, model)

    def m5(name):
        torch.manual_seed(15)
        model = train(ViewSize0(), 8, 15)
        dynamo_export(model, x28_cpu[:8], p(name), 18)
        finish(name, "dynamo", 18, model)

    def m6(name):
        torch.manual_seed(16)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64, bias=False), nn.ReLU(), nn.Linear(64, 10, bias=False))
        model = train(model, 8, 16).double().eval()
        ts_export(model, x28_cpu[:8].double(), p(name), 13)
        finish(name, "torchscript", 13, model, dtype=np.float64,
               test_inputs_rule="digits28-f32 widened to float64 (exact)",
               note="trained in float32, then model.double(); torch reference and ONNX Runtime in float64, "
                    "outputs stored narrowed to float32")

    def m7(name):
        torch.manual_seed(17)
        model = train(FixedBatch1(), 8, 17)
        model.fixed = True
        ts_export(model, x28_cpu[:1], p(name), 11, dynamic=False)

        def one_by_one(mod, x):
            return np.concatenate([mod(x[i:i + 1]).numpy() for i in range(len(x))])

        finish(name, "torchscript", 11, model, one_by_one=True, torch_fn=one_by_one,
               note="fixed input shape [1, 1, 28, 28] (no dynamic axes); ONNX Runtime and torch run one digit "
                    "at a time; ort_batching records what ONNX Runtime says to a batch of 2")

    for name, fn in [("view-size0-ts9", m1), ("view-size0-ts13", m2), ("reshape-minus1-ts17", m3),
                     ("flatten-fn-dynamo18", m4), ("view-size0-dynamo18", m5), ("nobias-double-ts13", m6),
                     ("fixed-batch1-ts11", m7)]:
        step(name, fn)

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote", sorted(os.listdir(args.out)), flush=True)
    if failures:
        sys.exit(f"failed: {failures}")


def verify(args):
    """Reload every model of manifest.json, check it, re-run ONNX Runtime and compare with the stored outputs."""
    import onnx
    import onnxruntime as ort

    with open(os.path.join(args.out, "manifest.json")) as f:
        manifest = json.load(f)
    x28 = np.load(os.path.join(args.fixtures, "digits28-f32.npy"))
    y = np.load(os.path.join(args.fixtures, "labels.npy"))
    ok = True
    for name, e in manifest.items():
        path = os.path.join(args.out, f"{name}.onnx")
        onnx.checker.check_model(path, full_check=True)
        m = onnx.load(path)
        nodes = [n.op_type for n in m.graph.node]
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = x28.astype(np.float64 if inp.type == "tensor(double)" else np.float32)
        if e["input_shape"][0] == "1":
            out = np.concatenate([sess.run(None, {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            out = sess.run(None, {inp.name: x})[0]
        out = out.astype(np.float32)
        ref = np.load(os.path.join(args.out, f"{name}.ort-logits.npy"))
        acc = float((ref.argmax(1) == y).mean())
        checks = {
            "nodes": nodes == e["nodes"], "ops": sorted(set(nodes)) == e["ops"], "opset": opset == e["opset"],
            "input": inp.name == e["input"] and inp.type == e["input_type"],
            "logits": ref.dtype == np.float32 and ref.shape == (len(y), 10) and np.array_equal(out, ref),
            "accuracy": abs(acc - e["ort_accuracy"]) < 1e-12,
            "size": os.path.getsize(path) <= 500_000,
        }
        ok &= all(checks.values())
        print(f"{name}: {'OK' if all(checks.values()) else 'FAIL'} {checks} acc {acc:.4f}")
    sys.exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export", help="train, export and run ONNX Runtime")
    p.add_argument("--split", default=".carry")
    p.add_argument("--fixtures", default="test/fixtures/mnist")
    p.add_argument("--out", default="test/fixtures/patterns")
    p = sub.add_parser("verify", help="re-check written fixtures against manifest.json (onnx + onnxruntime)")
    p.add_argument("--fixtures", default="test/fixtures/mnist")
    p.add_argument("--out", default="test/fixtures/patterns")
    args = ap.parse_args()
    {"export": export_all, "verify": verify}[args.cmd](args)


if __name__ == "__main__":
    main()
