"""Throw-away probe (session 14): one ONNX export's network on four 512-frame stereo segments
(random magnitudes) in ONNX Runtime (float32, as shipped) and in OpenVINO (float32 and
bfloat16 inference precision), 2 threads, taken in turns: each one's masks against ONNX
Runtime's and its time (min and median of 5).

    pip install openvino==2026.4.1     # not a vocalsep dependency
    python openvino_probe.py vocalsep/pretrained/default.onnx 640
"""
import sys, time, numpy as np, onnxruntime as ort, openvino as ov
path, bins = sys.argv[1], int(sys.argv[2])
x = (np.abs(np.random.RandomState(0).randn(4, 2, 512, bins)) ** 2).astype(np.float32)
o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
o.add_session_config_entry("session.intra_op.allow_spinning", "0")
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
core = ov.Core()
m = core.read_model(path)
runs = {"ort": lambda: s.run(None, {name: x})[0]}
for prec in ("f32", "bf16"):
    c = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": prec, "PERFORMANCE_HINT": "LATENCY"})
    req = c.create_infer_request()
    runs[prec] = (lambda req=req: req.infer({0: x})[0].copy())
ref = runs["ort"]()
for k, f in runs.items():
    y = f()
    print(k, "max |diff| vs ort", float(np.abs(y - ref).max()), "mean", float(np.abs(y - ref).mean()))
t = {k: [] for k in runs}
for i in range(5):
    for k, f in runs.items():
        t0 = time.perf_counter(); f(); t[k].append(time.perf_counter() - t0)
for k in runs: print(k, "min", round(min(t[k]), 3), "median", round(sorted(t[k])[2], 3))
