"""Command line: ``vocalsep separate | train | evaluate | models | plot | bench | serve``.

A thin shell over the library: argument parsing, progress bars and one-line errors. Heavy
imports (torch) happen inside the commands so that ``vocalsep --help`` starts instantly.
Every expected failure prints ``vocalsep: error: <file>: <problem>`` and exits non-zero;
set ``VOCALSEP_DEBUG=1`` to see tracebacks.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .pipeline.plan import MASKS, PRECISIONS, RECONSTRUCTIONS, RUNTIMES  # torch-free

if TYPE_CHECKING:
    from .devices import DeviceOutput
    from .live import LiveSeparation

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
#: options of Demucs and Spleeter that vocalsep refuses, and why
REFUSED = {"--shifts": "averaging over time shifts would multiply the separation time by "
                       "their number; its gain for these models is not measured",
           "--segment": "the default model's segment is part of its configuration (512 frames, "
                        "11.9 s); memory does not grow with the song anyway",
           "--mwf": "Spleeter's multichannel Wiener filter is --wiener 1 here; stereo songs "
                    "already get one Wiener step, the spatial step (--no-spatial: not)"}
#: packages the base install (ONNX Runtime separation) leaves out → the extra that brings them
EXTRAS = {"torch": "torch", "matplotlib": "train", "mir_eval": "train", "museval": "train",
          "musdb": "train", "stempeg": "train", "fastapi": "web", "uvicorn": "web", "multipart": "web",
          "dask": "cluster", "distributed": "cluster", "openvino": "openvino"}


#: control characters (a newline in a file name ...) escaped, so that an error stays one line
_ESCAPES = {**{c: f"\\x{c:02x}" for c in (*range(32), 127)}, 9: "\\t", 10: "\\n", 13: "\\r"}


def _fail(message: str) -> None:
    print(f"vocalsep: error: {message.translate(_ESCAPES)}", file=sys.stderr, flush=True)


def _example_path() -> str:
    import stempeg

    return str(stempeg.example_stem_path())


# ---------------------------------------------------------------- separate
def cmd_separate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .batch import Job, expand_inputs, run_batch
    from .separate import check_template

    refused = {"--shifts": args.shifts, "--segment": args.segment, "--mwf": args.mwf}
    for flag, value in refused.items():
        if value is not None:
            _fail(f"{flag}: not offered ({REFUSED[flag]})")
            return EXIT_ERROR
    check_template(args.filename)
    if "-" in args.inputs or args.out == "-":
        _fail("'-' (standard input or output) is not supported: give audio files and an output folder")
        return EXIT_ERROR
    inputs = expand_inputs(list(args.inputs)) + ([_example_path()] if args.example else [])
    if not inputs:
        _fail("no input files (give files, folders or globs, or --example)")
        return EXIT_ERROR
    stems = tuple(s.strip() for s in args.stems.split(",") if s.strip())
    unknown = set(stems) - {"vocals", "accompaniment"}
    if unknown or not stems:
        _fail(f"--stems: unknown stem(s) {', '.join(sorted(unknown)) or '(none)'} (vocals, accompaniment)")
        return EXIT_ERROR
    if args.jobs < 1:
        _fail("-j/--jobs must be at least 1")
        return EXIT_ERROR
    distributed = args.scheduler or args.cluster
    if distributed and args.jobs > 1:
        _fail("-j/--jobs runs processes here; with --scheduler or --cluster the cluster's workers "
              "separate the songs (give one or the other)")
        return EXIT_ERROR
    if args.cluster:
        from .cluster import parse_local

        local = parse_local(args.cluster)
    options = dict(reconstruct=args.reconstruct, mask=args.mask, threshold=args.threshold,
                   full_band=args.full_band, wiener=args.wiener, spatial=args.spatial,
                   precision=args.precision, runtime=args.runtime)
    job = Job(model=args.model, out=args.out, stems=stems, ext=args.format, bits=args.bits,
              template=args.filename, bitrate=args.mp3_bitrate,
              force=args.force, device=args.device, options=options, verbose=args.verbose)
    show = not args.quiet and sys.stderr.isatty()
    overall = tqdm(total=len(inputs), desc="files", unit="file", disable=not show or len(inputs) < 2,
                   position=0)
    bars: dict[int, tqdm] = {}

    def on_progress(index: int, fraction: float) -> None:
        if not show:
            return
        if index not in bars:
            bars[index] = tqdm(total=100, desc=Path(inputs[index]).name[:30], unit="%",
                               position=len(bars) % max(1, args.jobs) + 1, leave=False)
        bars[index].n = round(100 * fraction)
        bars[index].refresh()

    started = time.monotonic()
    done = skipped = failures = 0
    seconds_of_audio = 0.0
    if distributed:
        from .cluster import run_on_cluster

        results = run_on_cluster(inputs, job, args.scheduler, local if args.cluster else None)
    else:
        results = run_batch(inputs, job, args.jobs, on_progress)
    for result in results:
        if result.index in bars:
            bars.pop(result.index).close()
        overall.update(1)
        if result.error:
            overall.clear()
            _fail(result.error)
            failures += 1
        elif result.skipped:
            print(f"{result.path}: skipped (its outputs exist; --force to overwrite)", file=sys.stderr)
            skipped += 1
        else:
            if result.warning:
                overall.clear()
                print(f"vocalsep: warning: {result.warning.translate(_ESCAPES)}", file=sys.stderr, flush=True)
            done += 1
            seconds_of_audio += result.seconds
            if not args.quiet:
                folder = Path(result.written[0]).parent
                overall.write(f"{result.path} -> {folder}/ ({', '.join(Path(w).name for w in result.written)})")
    overall.close()
    wall = time.monotonic() - started
    if not args.quiet and len(inputs) > 1:
        speed = f", {seconds_of_audio / wall:.1f}x real time" if wall > 0 and seconds_of_audio else ""
        print(f"{len(inputs)} files: {done} separated, {skipped} skipped, {failures} failed; "
              f"{seconds_of_audio / 3600:.2f} h of audio in {wall:.1f} s{speed}")
    return EXIT_ERROR if failures else 0


# ---------------------------------------------------------------- live
#: raw sample formats of `vocalsep live`: numpy dtype and full scale
RAW_FORMATS = {"f32le": ("<f4", 1.0), "s16le": ("<i2", 32768.0)}
#: float samples above this are taken for a wrong format (1000 = 60 dB above full scale)
MAX_RAW_LEVEL = 1000.0


def cmd_live(args: argparse.Namespace) -> int:
    import numpy as np

    from .live import LiveSeparation, live_separator

    if (args.rate is not None and args.rate < 1) or (args.channels is not None and not 1 <= args.channels <= 32) \
            or args.chunk < 1:
        _fail("--rate, --channels (1 to 32) and --chunk must be positive")
        return EXIT_ERROR
    from .devices import DeviceError, DeviceInput, DeviceOutput, device_info, list_devices

    try:
        if args.list_devices:
            print(list_devices())
            return 0
        if args.input_device is not None:  # a recording device: its own rate and up to 2 channels
            if args.input is not None or args.realtime:
                _fail("--input-device records as it plays: no input file, no --realtime")
                return EXIT_ERROR
            info = device_info(args.input_device, "input")
            args.rate = args.rate or int(info["default_samplerate"])
            args.channels = args.channels or min(2, int(info["max_input_channels"]))
    except DeviceError as err:
        _fail(str(err))
        return EXIT_ERROR
    if args.input is None and args.input_device is None and (args.rate is None or args.channels is None):
        _fail("live: give --rate and --channels of the raw samples on stdin (or an input file or URL)")
        return EXIT_ERROR
    if args.realtime and args.input is None:
        _fail("--realtime paces an input file or URL; samples on stdin come at their own pace")
        return EXIT_ERROR
    url = None
    if args.input is not None:  # anything ffmpeg reads, decoded to float samples as it goes
        from .audio import live_source

        url, args.rate, args.channels = live_source(args.input, args.rate, args.channels)
    sep, name = live_separator(args.model, args.rate, args.channels, args.chunk, args.latency)
    live = LiveSeparation(sep, args.rate, args.channels, args.chunk)
    if args.verbose:
        block = sep.backend.stream_block
        print(f"vocalsep: live: model {name}, {sep.describe()}; {block}-frame "
              f"segments; latency {live.latency} "
              f"samples ({live.latency / args.rate:.3f} s at {args.rate} Hz)", file=sys.stderr, flush=True)
    output = recorder = None
    try:
        if args.output_device is not None:
            output = DeviceOutput(args.output_device, args.rate, args.channels,
                                  np.dtype(RAW_FORMATS[args.input_format][0]).name)
        if args.input_device is not None:
            recorder = DeviceInput(args.input_device, args.rate, args.channels, args.chunk)
            return _live_loop(args, live, recorder, f"sound device {recorder.name!r}", "f32le", output)
        if url is None:
            return _live_loop(args, live, sys.stdin.buffer, "stdin", args.input_format, output)
        return _live_from_url(args, live, url, output)
    except DeviceError as err:
        _fail(str(err))
        return EXIT_ERROR
    finally:
        for device, lost in ((recorder, "recorded samples were lost (the reading fell behind)"),
                             (output, "the device ran out of samples to play")):
            if device is not None:
                device.close()
                if device.glitches:
                    print(f"vocalsep: live: {device.name}: {device.glitches} times {lost}",
                          file=sys.stderr, flush=True)


def _live_from_url(args: argparse.Namespace, live: "LiveSeparation", url: list[str],
                   output: "DeviceOutput | None") -> int:
    """:func:`_live_loop` over ffmpeg decoding ``url`` as it goes; its errors in one line."""
    import tempfile

    from .audio import start_live_decoder

    with tempfile.TemporaryFile() as log:
        decoder = start_live_decoder(url, args.rate, args.channels, log)
        try:
            code = _live_loop(args, live, decoder.stdout, args.input, "f32le", output)
            if code == 0 and decoder.wait(timeout=30) != 0:  # the end of its output: did it fail?
                log.seek(0)
                lines = log.read().decode(errors="replace").strip().splitlines() or ["no message"]
                _fail(f"{args.input}: ffmpeg stopped decoding it ({lines[-1][:160]}); the output "
                      f"so far was written")
                code = EXIT_ERROR
        finally:
            if decoder.poll() is None:  # stopped early (an error, Ctrl-C, a closed stdout)
                decoder.kill()
            decoder.wait()
            decoder.stdout.close()
    return code


class _CtrlC:
    """Ctrl-C (SIGINT) during a live loop: it interrupts only a wait for input, where nothing is
    half done; at any other moment it is noted (:attr:`requested`) and the loop stops after the
    block in hand, so every stem gets the same samples and the stream's state stays whole."""

    def __enter__(self) -> "_CtrlC":
        self.requested = self.waiting = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def __call__(self, signum: int, frame) -> None:
        self.requested = True
        if self.waiting:
            raise KeyboardInterrupt

    def read(self, source: BinaryIO, size: int) -> bytes:
        """``source.read(size)``, or KeyboardInterrupt if Ctrl-C came before or during it."""
        self.waiting = True
        try:
            if self.requested:
                raise KeyboardInterrupt
            return source.read(size)
        finally:
            self.waiting = False


def _live_loop(args: argparse.Namespace, live: "LiveSeparation", source: BinaryIO, name: str,
               in_format: str, output: "DeviceOutput | None" = None) -> int:
    """Read ``source`` (raw ``in_format`` samples) to its end or Ctrl-C, feed ``live``, write
    the stems (raw, in ``--input-format``) as they come, ``--stem`` to ``output`` (a sound
    device) if given; count late blocks. The exit code."""
    import numpy as np

    from .live import RealTime

    in_dtype, in_scale = RAW_FORMATS[in_format]
    out_dtype, out_scale = RAW_FORMATS[args.input_format]
    width = np.dtype(in_dtype).itemsize * args.channels
    clock = RealTime(args.rate, args.chunk, pace=args.realtime)
    files = {}
    try:
        for stem, path in (("vocals", args.vocals), ("accompaniment", args.accompaniment)):
            if path:
                files[stem] = open(path, "wb")
        sinks = list(files.items())
        if output is not None or not files:
            sinks.append((args.stem, output or sys.stdout.buffer))

        def write(pieces) -> None:
            for vocals, acc in pieces:
                for stem, sink in sinks:
                    x = (vocals if stem == "vocals" else acc).T
                    if out_scale != 1.0:
                        x = np.clip(np.rint(x * out_scale), -out_scale, out_scale - 1)
                    sink.write(np.ascontiguousarray(x, dtype=out_dtype).tobytes())
                    sink.flush()

        read, code = 0, 0
        with _CtrlC() as ctrl_c:
            try:
                while not ctrl_c.requested:
                    data = ctrl_c.read(source, args.chunk * width)
                    whole = len(data) // width * width
                    if whole:
                        block = np.frombuffer(data[:whole], dtype=in_dtype).reshape(-1, args.channels).T
                        block = block.astype(np.float32)
                        if in_scale != 1.0:
                            block /= np.float32(in_scale)
                        with np.errstate(invalid="ignore"):  # NaN compares false: found by isfinite
                            wrong = ~np.isfinite(block) | (np.abs(block) > MAX_RAW_LEVEL)
                        if wrong.any():
                            bad = read + int(np.flatnonzero(wrong.any(axis=0))[0])
                            raise ValueError(f"{name}: sample {bad} is NaN, infinite or far above full "
                                             f"scale (is the input really {in_format}?)")
                        read += block.shape[1]
                        clock.arrived(block.shape[1])
                        write(live.feed(block))
                        behind = clock.written()
                        if behind and clock.late == 1:
                            print(f"vocalsep: live: warning: falling behind real time ({behind * 1000:.0f} ms "
                                  f"at {read / args.rate:.1f} s of input); the output stays continuous",
                                  file=sys.stderr, flush=True)
                    if len(data) < args.chunk * width:  # the end of the stream
                        if len(data) != whole:
                            _fail(f"{name}: the stream stopped in the middle of a sample ({len(data) - whole} "
                                  f"bytes left over; {in_format}, {args.channels} channels)")
                            code = EXIT_ERROR
                        break
                if ctrl_c.requested:
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                code = EXIT_INTERRUPTED
            finally:
                write(live.finish())
    finally:
        for f in files.values():
            f.close()
    report = clock.report()
    if report:
        print(f"vocalsep: live: {report}", file=sys.stderr, flush=True)
    return code


# ---------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import is_musdb_root, load_any
    from .train import TrainConfig, train

    group_weights = {}
    for item in args.group_weight or []:
        rate, _, weight = item.partition("=")
        try:
            group_weights[int(rate)] = float(weight)
        except ValueError:
            _fail(f"--group-weight {item}: give RATE=WEIGHT, e.g. 44100=3")
            return EXIT_ERROR
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      remix=args.remix, gain_db=args.gain_db, speed=args.speed, steps_per_epoch=args.steps_per_epoch,
                      patience=args.patience, lr_patience=args.lr_patience,
                      max_minutes=args.max_minutes, threads=args.threads,
                      balance_groups=args.balance_groups, group_weights=group_weights or None,
                      teacher=args.teacher,
                      teacher_rate=args.teacher_rate, l2sp=args.l2sp, keep_epochs=args.keep_epochs,
                      example_frames=args.example_frames, past_frames=args.past_frames,
                      phase_sensitive=args.phase_sensitive, cross_groups=args.cross_groups,
                      sdr_weight=args.sdr_weight)
    try:
        cfg.check(args.arch)
    except ValueError as err:
        _fail(str(err))
        return EXIT_ERROR
    train_tracks, valid_tracks = [], []
    for folder in args.data:  # MUSDB18: its own train/valid split unless --valid is given
        train_tracks += load_any(folder, "train", "train")
        if is_musdb_root(folder) and not args.valid:
            valid_tracks += load_any(folder, "train", "valid")
    for folder in args.valid or []:
        valid_tracks += load_any(folder, "train", "valid")
    if not valid_tracks:
        _fail(f"{args.data[0]}: not a MUSDB18 root, so --valid DIR is needed for model selection")
        return EXIT_ERROR
    rates = sorted({t.rate for t in train_tracks})
    if set(group_weights) - set(rates):
        _fail(f"--group-weight {', '.join(map(str, sorted(set(group_weights) - set(rates))))}: "
              f"no training data at that rate (the data's rates: {', '.join(map(str, rates))})")
        return EXIT_ERROR
    if not any(group_weights.get(rate, 1.0) > 0 for rate in rates):  # a rate not named weighs 1
        _fail(f"--group-weight: every rate of the data ({', '.join(map(str, rates))}) weighs 0")
        return EXIT_ERROR
    import torch

    from .distributed import lost_rank, start, stop

    ranks = start(args.device)  # under torchrun: join the other processes
    device = f"cuda:{ranks.local_rank}" if args.device == "cuda" and ranks.world > 1 else args.device
    torch.manual_seed(args.seed)  # the initial weights too: the same --seed, the same run
    model = _initial_model(args.arch, args.init, args.stereo, args.width, args.params)
    cfg.device = device
    bar = tqdm(disable=args.quiet or not ranks.main, unit="step")

    def progress(step: int, steps: int, loss: float) -> None:
        if bar.total != steps:
            bar.reset(total=steps)
        bar.n = step
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.refresh()

    meta = {"data": [str(d) for d in args.data], "valid": [str(d) for d in args.valid or args.data],
            "arch": args.arch, "init": args.init, "teacher": args.teacher, "width": args.width, "params": args.params,
            "train_config": {k: v for k, v in vars(cfg).items() if k != "history"}}
    try:
        history = train(model, train_tracks, valid_tracks, args.out, cfg, resume=not args.restart,
                        progress=progress, meta=meta, ranks=ranks)
    except Exception as err:
        lost = lost_rank(err)
        if lost is None:
            raise
        bar.close()
        _fail(f"train: rank {ranks.rank} of {ranks.world}: {lost}")
        return EXIT_ERROR
    finally:
        stop()
    bar.close()
    if history and ranks.main:
        best = min(history, key=lambda h: h["valid_loss"])
        print(f"{len(history)} epochs; best epoch {best['epoch']} (valid loss {best['valid_loss']:.4f}); "
              f"model: {Path(args.out) / 'best.pt'}")
    return 0


def _initial_model(arch: str, init: str | None, stereo: bool = False, width: float | None = None,
                   params: str | None = None):
    """A fresh ``arch`` model; ``init``: ``spleeter`` (Spleeter's 2stems vocal U-Net, for
    ``stemunet``) or a saved model file of the same architecture to start from. ``stereo``
    (stemunet): train and separate with a mask per channel. ``width`` (stemunet): that share of
    Spleeter's filters per layer, pruned from ``init``'s network if one is given. ``params``:
    a JSON object of configuration values that replace ``init``'s (same weights), e.g. the
    network's band ``{"bins": 640, "extension_hz": [5000, 6890.625]}``."""
    from .models import ModelError, build, load

    for option, given in (("--stereo", stereo), ("--width", width is not None)):
        if given and arch != "stemunet":
            raise ModelError(f"{option} needs the stemunet architecture, not {arch}")
    if init is None:
        model = build(arch)
    elif init == "spleeter":
        if arch != "stemunet":
            raise ModelError(f"--init spleeter needs the stemunet architecture, not {arch}")
        from .models.stemunet import StemUNetModel

        model = StemUNetModel.from_spleeter()
    else:
        model = load(init)
        if model.config.arch != arch:
            raise ModelError(f"{init}: a {model.config.arch} model, not {arch}")
    if width is not None and not 0 < width <= 1:
        raise ModelError(f"--width {width}: a share of Spleeter's filters, above 0 and at most 1")
    if width is not None and width != model.width:
        from .models.stemunet import pruned

        c = model.config
        narrow = build(arch, params={**c.params, "width": width}, sample_rate=c.sample_rate,
                       n_fft=c.n_fft, hop=c.hop)
        if init is not None:  # a fresh model is built narrow; a trained one is pruned
            narrow.net.load_state_dict(pruned(model.net, width).state_dict())
        model = narrow
    if params:
        import json

        try:
            changes = json.loads(params)
        except json.JSONDecodeError as err:
            raise ModelError(f"--params {params}: not JSON ({err.msg})") from None
        if not isinstance(changes, dict):
            raise ModelError(f"--params {params}: a JSON object of configuration values")
        c = model.config
        changed = build(arch, params={**c.params, **changes}, sample_rate=c.sample_rate,
                        n_fft=c.n_fft, hop=c.hop)
        if hasattr(changed, "load_weights_of"):  # stemunet: a second network may be added
            changed.load_weights_of(model)
        else:
            changed.load_state_dict(model.state_dict())
        model = changed
    if stereo:
        model.config.params["stereo"] = model.stereo = True
    return model.train()


# ---------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import load_any, load_musdb
    from .evaluate import evaluate
    from .separate import Separator, SeparatorOptions

    if args.musdb:
        tracks = load_musdb(args.musdb, args.subset, args.split, is_wav=args.is_wav)
        protocol = "v4"
    else:
        tracks = load_any(args.data)
        protocol = "v3"
    if args.limit:
        tracks = tracks[: args.limit]
    methods = {}
    for name in args.model:
        for variant in args.variants.split(","):
            mask, reconstruct = variant.split("+") if "+" in variant else (variant, "istft")
            sep = Separator(name, SeparatorOptions(mask=mask, reconstruct=reconstruct,
                                                   threshold=args.threshold,
                                                   full_band=args.full_band, wiener=args.wiener,
                                                   spatial=args.spatial, precision=args.precision,
                                                   runtime=args.runtime))
            label = name if args.variants == "soft" else f"{name} ({mask}, {reconstruct})"
            methods[label] = sep.separate
    report = evaluate(tracks, methods, protocol=protocol, baselines=not args.no_baselines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_csv(out / "per_track.csv")
    table = report.to_markdown()
    tmp = out / ".summary.md.part"
    tmp.write_text(table + "\n")
    os.replace(tmp, out / "summary.md")
    print(table)
    print(f"\nper-track CSV: {out / 'per_track.csv'}; table: {out / 'summary.md'}")
    return 0


# ---------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from .catalog import auto_choice, available

    print(f"{'name':<8} {'arch':<8} {'parameters':>12} {'rate':>8} {'n_fft/hop':>10} {'mask':<12} "
          f"{'runtimes':<21} {'auto here':<22} file")
    for m in available():
        mark = " (default)" if m.default else ""
        mask = "per channel" if m.stereo else "mono"
        runtime = "onnx, openvino, torch" if m.onnx else "torch"
        print(f"{m.name:<8} {m.arch:<8} {m.parameters:>12,} {m.sample_rate:>6}Hz {m.n_fft:>5}/{m.hop:<4} "
              f"{mask:<12} {runtime:<21} {auto_choice(m):<22} {m.path.name}{mark}")
    return 0


# ---------------------------------------------------------------- plot
def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    written = plots.song_figures(args.input, args.out, model=args.model, history=args.history)
    for p in written:
        print(p)
    return 0


# ---------------------------------------------------------------- serve
SHUTDOWN_GRACE_S = 3  # seconds open downloads and streams get when `serve` is stopped


def cmd_serve(args: argparse.Namespace) -> int:
    try:  # the web extra; imported here so that the other commands start no slower
        import uvicorn

        from .server.app import create_app
        from .server.guard import allowed_hosts
    except ImportError as err:
        _fail(f"vocalsep serve needs the web extra ({err.name} is missing): pip install -e \".[web]\"")
        return EXIT_ERROR
    if args.workers < 1 or not min(args.max_upload_mb, args.max_minutes, args.upload_timeout) > 0:
        _fail("--workers must be at least 1, --max-upload-mb, --max-minutes and --upload-timeout positive")
        return EXIT_ERROR
    app = create_app(args.data_dir, model=args.model, workers=args.workers,
                     max_upload=int(args.max_upload_mb * 2**20), device=args.device,
                     max_minutes=args.max_minutes, hosts=allowed_hosts(args.host, args.allow_host),
                     upload_timeout=args.upload_timeout, scheduler=args.scheduler)
    print(f"vocalsep: serving http://{args.host}:{args.port}/ (model {args.model or 'default'}, "
          f"{args.workers} worker(s), jobs in {Path(args.data_dir).resolve()})", flush=True)
    if args.host in ("0.0.0.0", "::") and not args.allow_host:
        print("vocalsep: only requests to localhost are answered: give the names or addresses "
              "others use for this machine with --allow-host", flush=True)
    # a listener may hold /live open for the length of a song: stopping cuts it after a grace
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    return 0


def _iterations(value: str) -> int:
    """``--wiener N``: a whole number >= 0 (a clear message when it swallowed a file name)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a number of iterations (write --wiener=N, or put --wiener after "
            "the input files)") from None
    if n < 0:
        raise argparse.ArgumentTypeError("the number of iterations must be >= 0")
    return n


def _add_post_processing(p: argparse.ArgumentParser) -> None:
    """Options shared by ``separate`` and ``evaluate``: full band, Wiener filtering, precision."""
    p.add_argument("--no-full-band", dest="full_band", action="store_false",
                   help="apply the mask at the model's rate (the vocals stop at its Nyquist, "
                        "8 kHz for 16 kHz models; all above goes to the accompaniment)")
    p.add_argument("--wiener", type=_iterations, nargs="?", const=1, default=0, metavar="N",
                   help="multichannel Wiener filtering with N EM iterations after masking "
                        "(--wiener alone: 1; default 0 = off)")
    p.add_argument("--spatial", action=argparse.BooleanOptionalAction, default=None,
                   help="the spatial step on a stereo song: one multichannel Wiener step on the "
                        "mask's estimates, 10 s at a time, in the band the model hears (default: "
                        "on for models with a soft mask per channel, the default model among them; "
                        "off with --wiener, which filters the whole song)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the model's arithmetic: auto = bfloat16 where the CPU computes it "
                        "natively (AVX512-BF16, AMX) and the runtime can (OpenVINO; torch for "
                        "stemunet models), else float32; ONNX Runtime computes in float32 only "
                        "(default: auto)")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="what runs the model: auto = a model shipped with an ONNX export (the "
                        "default model) runs on the CPU in OpenVINO's bfloat16 where OpenVINO is "
                        "installed (pip install 'vocalsep[openvino]') and the CPU has bfloat16 "
                        "natively, else in ONNX Runtime (float32) unless --precision bfloat16; "
                        "other models in torch (default: auto)")


# ---------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import quality, speed

    return {"quality": quality.main, "speed": speed.main}[args.which](args.options)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vocalsep", description="Isolate the singing voice from music.")
    p.add_argument("--version", action="version", version="vocalsep 0.1.0")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("separate", help="separate songs into vocals and accompaniment")
    s.add_argument("inputs", nargs="*",
                   help="audio files (wav, flac, ogg, mp3, m4a, stem.mp4 ...), folders or globs; "
                        "songs whose outputs exist are skipped (--force to redo them)")
    s.add_argument("-o", "--out", default="separated", help="output folder (default: separated)")
    s.add_argument("--example", action="store_true",
                   help="also separate the MUSDB18 song shipped inside the stempeg package")
    s.add_argument("-m", "--model", "-n", "--name", "-p", default=None,
                   help="shipped model name (default, hq, small, paper, live), or a .pt or .onnx file "
                        "(default: default; -n as in Demucs, -p as in Spleeter)")
    s.add_argument("--reconstruct", choices=RECONSTRUCTIONS, default="istft",
                   help="istft: the mask on the complex STFT, inverted (default); griffinlim: the "
                        "masked magnitude with a phase estimated by Griffin-Lim (the paper's 1st)")
    s.add_argument("--mask", choices=MASKS, default="soft",
                   help="soft: the model's mask as it is (default); binary: 1 above --threshold, else 0")
    s.add_argument("--threshold", type=float, default=0.5, help="binary mask threshold (default 0.5)")
    _add_post_processing(s)
    s.add_argument("--stems", default="vocals,accompaniment",
                   help="the stems to write, comma-separated (default: vocals,accompaniment)")
    s.add_argument("--format", choices=["wav", "flac", "ogg", "mp3"], default="wav",
                   help="output file format (default: wav)")
    s.add_argument("--mp3", dest="format", action="store_const", const="mp3", help="= --format mp3 (Demucs)")
    s.add_argument("--mp3-bitrate", type=int, default=None, metavar="KBPS",
                   help="bit rate of mp3 outputs in kbit/s (default: ffmpeg's)")
    s.add_argument("--filename", default="{track}/{stem}.{ext}", metavar="TEMPLATE",
                   help="output names below -o, from {track}, {stem} and {ext} (default: "
                        "%(default)s, as Demucs)")
    s.add_argument("--two-stems", choices=["vocals"], default=None,
                   help="Demucs' habit: vocals and the rest, which is what vocalsep gives "
                        "(accompaniment = input - vocals)")
    s.add_argument("--shifts", default=None, help=argparse.SUPPRESS)  # refused in one line
    s.add_argument("--segment", default=None, help=argparse.SUPPRESS)  # refused in one line
    s.add_argument("--mwf", action="store_const", const=True, default=None, help=argparse.SUPPRESS)  # refused
    s.add_argument("--bits", choices=["16", "24", "float"], default="16",
                   help="sample format of wav/flac outputs: 16- or 24-bit integers, or 32-bit "
                        "float (default: 16)")
    s.add_argument("--force", action="store_true", help="overwrite existing outputs")
    s.add_argument("--skip-existing", action="store_true", help=argparse.SUPPRESS)  # the default now
    s.add_argument("-j", "--jobs", type=int, default=1, help="files separated in parallel (processes)")
    s.add_argument("-d", "--device", default="cpu", help="cpu (default) or cuda[:N]")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="separate on the Dask cluster of this scheduler (tcp://HOST:8786); "
                            "outputs go to -o, a path every worker must see (extra: cluster)")
    where.add_argument("--cluster", metavar="local:N", default=None,
                       help="separate on a Dask LocalCluster of N worker processes started here")
    s.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    s.add_argument("-v", "--verbose", action="store_true",
                   help="say which runtime, precision and CPU threads separate the songs")
    s.set_defaults(func=cmd_separate)

    lv = sub.add_parser("live", help="separate a stream as it plays (stdin or a file/URL to stdout)",
                        description="Read raw samples from standard input (or decode a file or URL "
                                    "with ffmpeg), write a separated stem as raw samples to standard "
                                    "output as it goes. Output sample k is input sample k - L (L: the "
                                    "latency, stated by -v). Blocks whose output comes later than real "
                                    "time allows are counted and reported on stderr.")
    lv.add_argument("input", nargs="?", default=None,
                    help="a file or URL that ffmpeg reads, decoded as it goes (default: raw samples on stdin)")
    lv.add_argument("--rate", type=int, default=None,
                    help="samples per second of the input (required for stdin; default for a file: its own)")
    lv.add_argument("--channels", type=int, default=None,
                    help="channels of the input (required for stdin; default for a file: its own)")
    lv.add_argument("--input-format", choices=sorted(RAW_FORMATS), default="f32le",
                    help="raw sample format of stdin and of the output (default: f32le)")
    lv.add_argument("--realtime", action="store_true",
                    help="read an input file at its own speed, as if it were playing")
    lv.add_argument("--stem", choices=["vocals", "accompaniment"], default="accompaniment",
                    help="the stem written to standard output (default: accompaniment, karaoke)")
    lv.add_argument("--vocals", default=None, metavar="FILE", help="write the vocals (raw) here")
    lv.add_argument("--accompaniment", default=None, metavar="FILE",
                    help="write the accompaniment (raw) here; with --vocals, nothing goes to stdout")
    lv.add_argument("--latency", type=float, default=None, metavar="SECONDS",
                    help="the most delay you accept: shorter segments, a little less quality "
                         "(default: the model's own segments, about 12 s for the default)")
    lv.add_argument("--chunk", type=int, default=1024, help="samples read at a time (default: 1024)")
    live_help = ("a shipped model or a file (default: 'live' where --latency gives segments of 64 "
                 "frames or fewer, below about 3 s at 44.1 kHz; 'default' otherwise)")
    lv.add_argument("-m", "--model", default=None, help=live_help)
    lv.add_argument("--input-device", default=None, metavar="DEVICE",
                    help="record from this sound device (an index or part of a name from "
                         "--list-devices; the live extra and PortAudio) instead of stdin; stop with Ctrl-C")
    lv.add_argument("--output-device", default=None, metavar="DEVICE",
                    help="play --stem on this sound device instead of writing it to stdout")
    lv.add_argument("--list-devices", action="store_true", help="list the sound devices and stop")
    lv.add_argument("-v", "--verbose", action="store_true", help="say the latency, model and runtime")
    lv.set_defaults(func=cmd_live)

    t = sub.add_parser("train", help="train a model")
    t.add_argument("arch", choices=["unet", "paper", "stemunet"])
    t.add_argument("--data", required=True, action="append",
                   help="MIR-1K clip folder, MUSDB18 root (its train split), or folder of "
                        "<track>/{vocals,accompaniment}.wav; repeat to train on several")
    t.add_argument("--valid", default=None, action="append",
                   help="validation data, repeatable (default: MUSDB's valid split of --data)")
    t.add_argument("--init", default=None,
                   help="start from 'spleeter' (stemunet: Spleeter's 2stems vocal weights) or a model file")
    t.add_argument("--stereo", action="store_true",
                   help="stemunet: stereo examples, a mask per channel (mono data on both channels)")
    t.add_argument("--width", type=float, default=None,
                   help="stemunet: this share of Spleeter's filters in every layer (0.5: a quarter "
                        "of the work), pruned from --init's network when given")
    t.add_argument("--teacher", default=None, metavar="MODEL",
                   help="distil: the model's own estimates are a second target (mean of both "
                        "losses); 'spleeter': Spleeter 2stems' ratio mask of its two networks")
    t.add_argument("--teacher-rate", type=int, default=None, metavar="HZ",
                   help="distil only on examples of the data at this sample rate (e.g. 44100: "
                        "MUSDB18, not the 16 kHz MIR-1K); the others learn the true stems alone")
    t.add_argument("--l2sp", type=float, default=0.0, metavar="WEIGHT",
                   help="add WEIGHT x the squared distance to the starting weights (L2-SP)")
    t.add_argument("--keep-epochs", action="store_true",
                   help="also save every epoch's model (epoch-NNN.pt), to choose or average later")
    t.add_argument("--example-frames", type=int, default=None, metavar="N",
                   help="STFT frames per training example instead of the model's own (stemunet: "
                        "16 to 56 trains for `vocalsep live`'s short segments, with --past-frames)")
    t.add_argument("--past-frames", type=int, default=0, metavar="N",
                   help="stemunet: N frames before each example heard but not scored, as the "
                        "past a live segment hears (docs/live.md)")
    t.add_argument("--cross-groups", type=float, default=0.0, metavar="SHARE",
                   help="this share of remixed examples may lay a voice over a backing of another "
                        "sample rate (e.g. MIR-1K voices over MUSDB18 backings); only for a model "
                        "that hears no more than the narrowest band (the default's 6.9 kHz)")
    t.add_argument("--phase-sensitive", action="store_true",
                   help="fit each stem's magnitude along the mixture's phase, |S| cos(angle(S) - "
                        "angle(X)), not |S|: closer to the waveform SDR a mask can reach")
    t.add_argument("--sdr-weight", type=float, default=0.0, metavar="W",
                   help="stemunet: add W x the mean -SDR in dB of both stems, the mask applied to "
                        "the mixture's STFT and inverted (a loss on the waveform; e.g. 0.05); the "
                        "validation loss includes it, so it is partly in dB")
    t.add_argument("--params", default=None, metavar="JSON",
                   help="configuration values replacing --init's, same weights (stemunet: "
                        "'{\"bins\": 640, \"extension_hz\": [5000, 6890.625]}'; "
                        "'{\"accompaniment\": true}' adds a second network for the accompaniment, "
                        "from Spleeter's, and separates by the ratio of the two masks)")
    t.add_argument("--balance-groups", action="store_true",
                   help="draw data of each sample rate equally often (e.g. MIR-1K and MUSDB18)")
    t.add_argument("--group-weight", action="append", default=None, metavar="RATE=W",
                   help="with --balance-groups: draw data of this sample rate in proportion to W "
                        "(1 for a rate not named; e.g. 44100=3: three MUSDB18 examples for one "
                        "of MIR-1K); repeatable")
    t.add_argument("--out", required=True, help="run folder (checkpoints, best.pt, history.csv, loss.png)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-remix", dest="remix", action="store_false",
                   help="train on the tracks' own mixtures (no remixing, no random gain)")
    t.add_argument("--gain-db", type=float, default=6.0)
    t.add_argument("--speed", type=float, default=0.0, metavar="S",
                   help="play each remixed stem at its own random speed in [1-S, 1+S] (pitch and "
                        "tempo together; 0.1: up to about 1.7 semitones)")
    t.add_argument("--steps-per-epoch", type=int, default=None)
    t.add_argument("--patience", type=int, default=None)
    t.add_argument("--lr-patience", type=int, default=None,
                   help="halve the learning rate after this many epochs without improvement")
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--threads", type=int, default=None, help="CPU threads of each process")
    t.add_argument("--device", default="cpu",
                   help="cpu or cuda (under torchrun: each process its own GPU, NCCL between them)")
    t.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="BSS Eval of models beside the mixture and the oracles")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="MIR-1K clip folder or folder of stems (BSS Eval v3, whole clips)")
    src.add_argument("--musdb", help="MUSDB18 root (museval BSS Eval v4)")
    e.add_argument("--subset", default="train", help="MUSDB18 subset: train or test (default: train)")
    e.add_argument("--split", default="valid",
                   help="MUSDB18 split of the train subset: train or valid (default: valid)")
    e.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ wav layout")
    e.add_argument("-m", "--model", action="append", default=None,
                   help="a shipped model name or a .pt/.onnx file; repeat for several (default: default)")
    e.add_argument("--variants", default="soft",
                   help="comma list of mask[+reconstruct], e.g. soft,binary,binary+griffinlim")
    e.add_argument("--threshold", type=float, default=0.5, help="binary mask threshold (default 0.5)")
    _add_post_processing(e)
    e.add_argument("--limit", type=int, default=None, help="only the first N tracks")
    e.add_argument("--no-baselines", action="store_true",
                   help="leave out the mixture and the ideal binary and ratio masks")
    e.add_argument("-o", "--out", default="evaluation",
                   help="folder for the per-track CSV and the summary (default: evaluation)")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("bench", help="benchmarks: `vocalsep bench quality --help`")
    b.add_argument("which", choices=["quality", "speed"],
                   help="quality: MIR-1K or MUSDB18 tables beside Spleeter; speed: end to end vs "
                        "Spleeter (`vocalsep bench quality --help` for each one's options)")
    b.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # the benchmark's own
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("models", help="list the shipped models")
    m.set_defaults(func=cmd_models)

    sv = sub.add_parser("serve", help="a web page and JSON API for separating songs (needs the web extra)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("-m", "--model", default=None, help="shipped model name or a .pt file, loaded once")
    sv.add_argument("--workers", type=int, default=1, help="songs separated at a time (default 1)")
    sv.add_argument("--data-dir", default="vocalsep-jobs",
                    help="where jobs and their files live, kept across restarts (default ./vocalsep-jobs)")
    sv.add_argument("--max-upload-mb", type=float, default=200, help="largest upload in MB (default 200)")
    sv.add_argument("--max-minutes", type=float, default=60,
                    help="longest song, in minutes of 48 kHz stereo: duration x rate x channels may "
                         "be at most this x 60 x 96000 samples (default 60)")
    sv.add_argument("--upload-timeout", type=float, default=60, metavar="SECONDS",
                    help="an upload that sends nothing for this long is refused (408) and removed "
                         "(default 60)")
    sv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="a name or address clients may use for this server (Host header), besides "
                         "--host, localhost, 127.0.0.1 and [::1]; repeatable; '*' allows any")
    sv.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    sv.add_argument("--scheduler", metavar="ADDRESS", default=None,
                    help="separate the jobs on the Dask cluster of this scheduler (tcp://HOST:8786); "
                         "--data-dir must be a path its workers see; --workers jobs are sent at a time")
    sv.set_defaults(func=cmd_serve)

    pl = sub.add_parser("plot", help="the paper's figures for one song")
    pl.add_argument("input")
    pl.add_argument("-o", "--out", default="plots")
    pl.add_argument("-m", "--model", default=None)
    pl.add_argument("--history", default=None, help="a training run's history.csv for the loss curve")
    pl.set_defaults(func=cmd_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # file names that are not UTF-8 print escaped, not crash
        sys.stdout.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command == "evaluate" and not args.model:
        args.model = ["default"]
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _fail("interrupted; finished outputs were kept, unfinished ones were not written")
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as err:  # a part of the base install does not have
        extra = EXTRAS.get((err.name or "").split(".")[0])
        if extra is None or os.environ.get("VOCALSEP_DEBUG"):
            raise
        _fail(f"vocalsep {args.command} needs {err.name.split('.')[0]}, which this install lacks: "
              f"pip install 'vocalsep[{extra}]'")
        return EXIT_ERROR
    except Exception as err:  # one line, never a traceback, unless debugging
        if os.environ.get("VOCALSEP_DEBUG"):
            raise
        _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
