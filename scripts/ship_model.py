"""Ship a trained model inside the package: copy a run's best.pt and write its model card.

    python scripts/ship_model.py RUN_DIR NAME [--weights FILE] [--evaluation DIR] [--notes TEXT] [--half] [--int8] [--onnx]
    python scripts/ship_model.py --export-onnx NAME     # only (re)write NAME.onnx of a shipped model
    python scripts/ship_model.py --set-params NAME JSON  # change NAME's configuration, same weights

Writes vocalsep/pretrained/NAME.pt (weights + config, without optimiser state) and NAME.md
(the card: data, epochs, training time, validation loss, metrics table, sha256). With
``--onnx`` (stemunet models) also NAME.onnx, the network exported for ONNX Runtime and OpenVINO, which
`vocalsep separate` then runs without torch (needs the ``onnx`` package to write it).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from vocalsep.models import load, save
from vocalsep.models.registry import PRETRAINED_DIR, sha256


def main() -> None:
    if sys.argv[1:2] == ["--export-onnx"] and len(sys.argv) == 3:
        export(sys.argv[2])
        return
    if sys.argv[1:2] == ["--set-params"] and len(sys.argv) == 4:
        set_params(sys.argv[2], json.loads(sys.argv[3]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("name")
    p.add_argument("--evaluation", type=Path, default=None, help="folder written by `vocalsep evaluate`")
    p.add_argument("--notes", default="")
    p.add_argument("--weights", type=Path, default=None,
                   help="the model file to ship (default: RUN_DIR/best.pt), e.g. a chosen epoch-NNN.pt "
                        "or an average (scripts/average_models.py)")
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    p.add_argument("--int8", action="store_true",
                   help="store the convolutions' weights as int8 with a scale per kernel (with --half: "
                        "the rest as float16), e.g. two networks in under 25 MB")
    p.add_argument("--onnx", action="store_true", help="also write NAME.onnx (stemunet models)")
    args = p.parse_args()

    target = PRETRAINED_DIR / f"{args.name}.pt"
    chosen = args.weights or args.run / "best.pt"
    if args.half or args.int8:
        best = load(chosen)
        save(best, target, meta=best.meta, half=args.half, int8=args.int8)
    else:
        shutil.copyfile(chosen, target)
    model = load(target)
    meta = model.meta
    history = list(csv.DictReader(open(args.run / "history.csv")))
    total_seconds = float(history[-1]["seconds"]) if history else 0.0
    cfg = model.config
    lines = [
        f"# Model card: `{args.name}`",
        "",
        f"- architecture: `{cfg.arch}`, {model.parameter_count():,} parameters",
        f"- input: {'stereo (a mask per channel; mono on both channels)' if model.stereo else 'mono'}, "
        f"{cfg.sample_rate} Hz, STFT n_fft {cfg.n_fft}, hop {cfg.hop}",
        "- weights stored as float16 (computed in float32)" if args.half and not args.int8 else None,
        "- convolution weights stored as int8 with a float scale per kernel, the rest as "
        f"{'float16' if args.half else 'float32'} (computed in float32)" if args.int8 else None,
        f"- configuration: `{json.dumps(cfg.params)}`",
        f"- training data: {meta.get('data', '?')}",
        f"- training options: `{json.dumps(meta.get('train_config', {}))}`" if meta.get("train_config") else None,
        f"- epochs run: {len(history)} ({int(history[-1]['frames']) if history else 0:,} target frames trained, "
        f"{total_seconds / 60:.0f} min on {meta.get('train_config', {}).get('threads') or 1} CPU thread(s)); kept: epoch {meta.get('epoch')} "
        f"(lowest validation loss {meta.get('valid_loss', float('nan')):.4f}, reached after "
        f"{meta.get('train_seconds', 0) / 60:.0f} min)",
        f"- file: `vocalsep/pretrained/{args.name}.pt`, sha256 `{sha256(target)}`",
    ]
    twin = target.with_suffix(".onnx")
    if args.onnx:
        export(args.name)
    elif twin.exists():  # a twin of the weights this replaces
        twin.unlink()
    if twin.exists():
        lines.append(f"- ONNX export (run by ONNX Runtime or OpenVINO): `vocalsep/pretrained/{twin.name}`, "
                     f"{twin.stat().st_size / 1e6:.1f} MB, sha256 `{sha256(twin)}`")
    lines.append("")
    if args.notes:
        lines += [args.notes, ""]
    if args.evaluation:
        lines += ["## Measured", "", f"Command and data: see `{args.evaluation / 'command.txt'}`"
                  if (args.evaluation / "command.txt").exists() else "", "",
                  (args.evaluation / "summary.md").read_text().strip(), ""]
    (PRETRAINED_DIR / f"{args.name}.md").write_text("\n".join(l for l in lines if l is not None) + "\n")
    print(f"shipped {target} ({target.stat().st_size / 1e6:.1f} MB)")


def set_params(name: str, params: dict[str, Any]) -> None:
    """Rewrite the shipped ``NAME.pt`` with ``params`` merged into its configuration's (the same
    weights, stored as before: float16 stays float16; its metadata kept, each change noted in it
    as ``[old, new]``), and its ONNX twin if it has one; e.g. the band the default's network
    sees: ``--set-params default '{"bins": 640, "extension_hz": [5000, 6890.625]}'``. Only keys
    the configuration already has can be set (a typo must not ship)."""
    from vocalsep.models import build

    target = PRETRAINED_DIR / f"{name}.pt"
    model = load(target)
    old = model.config.params
    unknown = sorted(set(params) - set(old))
    if unknown:
        raise SystemExit(f"{target}: no such parameter(s) {', '.join(unknown)} (it has {', '.join(old)})")
    stored = torch.load(target, map_location="cpu", weights_only=True)
    half = any(t.dtype == torch.float16 for t in stored["state"].values())
    int8 = "int8_scales" in stored  # stored as before: int8 stays int8
    cfg = model.config
    changed = build(cfg.arch, {**old, **params}, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop=cfg.hop)
    changed.load_state_dict(model.state_dict())
    notes = {**model.meta.get("params_changed", {}), **{k: [old[k], v] for k, v in params.items()}}
    save(changed, target, meta={**model.meta, "params_changed": notes}, half=half, int8=int8)
    print(f"rewrote {target} (params {json.dumps(changed.config.params)}, sha256 {sha256(target)})")
    if target.with_suffix(".onnx").exists():
        export(name)


def export(name: str) -> None:
    """Write ``NAME.onnx`` beside the shipped ``NAME.pt``: its network for ONNX Runtime and OpenVINO."""
    from vocalsep.models.stemunet import export_onnx

    target = PRETRAINED_DIR / f"{name}.pt"
    int8 = "int8_scales" in torch.load(target, map_location="cpu", weights_only=True)
    twin = export_onnx(load(target), target.with_suffix(".onnx"), sha256(target), int8=int8)
    print(f"exported {twin} ({twin.stat().st_size / 1e6:.1f} MB, sha256 {sha256(twin)})")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
