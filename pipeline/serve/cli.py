"""The serving side of the CLI: `predict`, `live` and `export` (argument parsing and output only)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail
from stacks.settings import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

FOLDER_CSV = "predictions.csv"  # a folder's answers, beside its clips, unless --out names another file

if TYPE_CHECKING:
    from pipeline.serve.live import LivePrediction

MODEL_HELP = "run folder, .pt checkpoint or .onnx export (default: the model shipped in models/default/)"


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help=MODEL_HELP)
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (torch models only)")


def add_predict(sub: Subcommands) -> None:
    p = add_command(
        sub, "predict", func=cmd_predict,
        help="the emotion of a clip, an image or a folder of them",
        description=(
            "Classify a 3-5 s face clip (or a still image, or every clip in a folder) with a trained model. "
            "The clip is sampled, cropped and normalised exactly as the model's training stacks were (read "
            "from the model file). A clip longer than the model's sequence is classified window by window; "
            "the answer is the mean of the windows' probabilities."))
    p.add_argument("input", type=Path, help=f"a clip ({' '.join(VIDEO_EXTENSIONS)}), an image "
                                            f"({' '.join(IMAGE_EXTENSIONS)}), or a folder of them")
    _add_model_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON (windows included)")
    p.add_argument("--stride", type=int, default=None,
                   help="frames between window starts, counted at 30 fps whatever the clip's rate (default: half "
                        "the model's sequence)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="shorter clips are refused")
    p.add_argument("--timeline", type=Path, help="CSV: one row per window (start, end, label, probabilities)")
    p.add_argument("--plot", type=Path, help="PNG: the probabilities over the clip")
    p.add_argument("--annotate", type=Path, help="the clip with the face box and the current emotion: .mp4, .m4v, "
                   ".mov or .mkv (H.264, as browsers and phones play it) or .avi (MJPEG)")
    p.add_argument("--out", type=Path, help="folder input: the CSV to write (default: <folder>/predictions.csv)")


def _load(args: argparse.Namespace):
    from models.served import load_serving_model

    return load_serving_model(args.model, args.device)


def _predict_folder(args: argparse.Namespace, model) -> int:
    """Each file's answer printed as it comes; Ctrl-C keeps the table of the files done so far."""
    from tqdm import tqdm

    from pipeline.serve.outputs import write_folder_csv
    from pipeline.serve.predict import PredictError, folder_files, predict_file

    files = folder_files(args.input)
    if not files:
        return fail(f"{args.input} holds no clips or images")
    results: list = []
    interrupted = False
    try:
        for path in tqdm(files, desc="predict", unit="file", disable=args.json):
            try:
                results.append(predict_file(path, model, args.stride, args.min_seconds))
            except PredictError as exc:
                results.append(str(exc))
            if not args.json:
                result = results[-1]
                tqdm.write(f"{path}: {result.label} ({result.confidence:.1%})" if not isinstance(result, str)
                           else f"{path}: skipped, {result.split(': ', 1)[-1]}")
    except KeyboardInterrupt:
        interrupted = True
    out = args.out or args.input / FOLDER_CSV
    if interrupted:  # a table of a part goes beside the whole one, which an earlier run may have written
        partial = out.with_name(f"{out.stem}.partial{out.suffix}")
        if results:
            write_folder_csv(results, files[:len(results)], model.classes, partial)
        kept = f"; the table of those is in {partial}" if results else ""
        return fail(f"interrupted after {len(results)} of {len(files)} files{kept}", 130)
    write_folder_csv(results, files, model.classes, out)
    done = [r for r in results if not isinstance(r, str)]
    if args.json:
        print(json.dumps([r.to_dict() if not isinstance(r, str) else {"source": str(f), "error": r}
                          for f, r in zip(files, results)], indent=1))
    else:
        print(f"{len(done)} of {len(files)} files classified; table in {out}")
        print(f"model: {model.describe()}")
    return 0 if done else 1


def _check_predict_options(args: argparse.Namespace) -> None:
    """Options that do not apply to this input were ignored without a word; say so instead."""
    from pipeline.serve.predict import PredictError

    if args.min_seconds < 0:
        raise PredictError(f"--min-seconds must be >= 0 (got {args.min_seconds:g})")
    if args.input.is_dir():
        single = [flag for flag, value in (("--timeline", args.timeline), ("--plot", args.plot)) if value]
        if single:
            raise PredictError(f"{' and '.join(single)} {'is' if len(single) == 1 else 'are'} for one clip; a "
                               "folder's answers go into one table "
                               f"(--out, default {args.input / FOLDER_CSV})")
    elif args.out is not None:
        raise PredictError("--out is for a folder of clips; for one clip, --json, --timeline, --plot and "
                           "--annotate write its answer")


def cmd_predict(args: argparse.Namespace) -> int:
    from models.served import ModelLoadError
    from pipeline.serve.annotate import check_annotate_path
    from pipeline.serve.predict import PredictError, predict_file

    try:
        check_predict_paths(args)
        if args.annotate:
            check_annotate_path(args.annotate, args.input)
            if args.input.is_dir() or args.input.suffix.lower() in IMAGE_EXTENSIONS:
                raise PredictError("--annotate needs a single video as input")
        model = _load(args)
        if args.input.is_dir():
            return _predict_folder(args, model)
        pred = predict_file(args.input, model, args.stride, args.min_seconds)
        written = _write_outputs(args, pred)
    except (ModelLoadError, PredictError) as exc:
        return fail(str(exc))
    except ValueError as exc:  # a bad --stride
        return fail(str(exc), 2)
    except OSError as exc:  # an output that cannot be written
        return fail(f"cannot write {exc.filename or 'an output file'}: {exc.strerror or exc}")
    if args.json:
        print(json.dumps({**pred.to_dict(), "model": str(model.source), "model_description": model.describe(),
                          "written": written}, indent=1))
    else:
        from pipeline.serve.outputs import summary_text

        print(summary_text(pred))
        for what, path in written.items():
            print(f"  {what}: {path}")
        print(f"  model: {model.describe()}")  # which model and offsets answered (the README promised this line)
    return 0


def check_predict_paths(args: argparse.Namespace) -> None:
    """Before the model loads (seconds): the input exists and no output names a folder or a wrong format."""
    from pipeline.serve.predict import PredictError

    if not args.input.exists():
        raise PredictError(f"{args.input}: no such file or folder")
    _check_predict_options(args)  # an option that does not apply is said before what is wrong with its path
    out = args.out
    if out is None and args.input.is_dir():  # the folder's answers go beside its clips unless --out says
        out = args.input / FOLDER_CSV
    for option, path in (("--timeline", args.timeline), ("--plot", args.plot), ("--annotate", args.annotate),
                         ("--out", out)):
        if path is not None and path.is_dir():
            raise PredictError(f"{option} {path} is a folder: give a file name")
        if path is not None:  # found out here, not after a whole folder of clips was classified
            folder = next(p for p in Path(path).absolute().parents if p.exists())
            if not folder.is_dir():
                raise PredictError(f"{option} {path}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                given = " (the default beside the clips)" if option == "--out" and args.out is None else ""
                raise PredictError(f"{option} {path}{given}: cannot write into {folder} (read-only, or not "
                                   f"yours): pass {option} somewhere you can write")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise PredictError(f"--plot {args.plot}: the plot is written as PNG; use a .png file name")


def _write_outputs(args: argparse.Namespace, pred) -> dict[str, str]:
    from pipeline.serve.annotate import write_annotated
    from pipeline.serve.outputs import write_timeline, write_timeline_plot

    written = {}
    if args.timeline:
        write_timeline(pred, args.timeline)
        written["timeline"] = str(args.timeline)
    if args.plot:
        write_timeline_plot(pred, args.plot)
        written["plot"] = str(args.plot)
    if args.annotate:
        write_annotated(pred, args.annotate)
        written["annotated"] = str(args.annotate)
    return written


def add_live(sub: Subcommands) -> None:
    p = add_command(
        sub, "live", func=cmd_live,
        help="rolling prediction over the last sequence from a camera",
        description=("Classify the last sequence of a camera's frames every --every frames, drawing the face box "
                     "and the emotion in a window. --source FILE reads a video as if it were a camera; "
                     "--no-window prints the rolling predictions as lines instead (headless)."))
    p.add_argument("--camera", type=int, default=0, help="camera index for OpenCV")
    p.add_argument("--source", type=Path, help="a video file read frame by frame instead of a camera")
    p.add_argument("--every", type=int, default=None, help="frames between predictions (default: 3 intervals)")
    p.add_argument("--no-window", action="store_true", help="print lines, open no window")
    _add_model_options(p)


def cmd_live(args: argparse.Namespace) -> int:
    import contextlib

    from models.served import ModelLoadError
    from pipeline.serve.live import live_predictions, window_seconds
    from pipeline.serve.predict import MIN_SECONDS, PredictError

    if args.source is not None and args.source.suffix.lower() in IMAGE_EXTENSIONS:
        return fail(f"--source {args.source} is a still image; live reads a video (`predict` classifies an image)")
    made = windows = 0
    try:
        model = _load(args)
        with contextlib.closing(live_predictions(model, args.camera, args.source, args.every,
                                                 show=not args.no_window)) as predictions:
            for prediction in predictions:
                print(_live_line(prediction, model.classes, window_seconds(model)))
                made += prediction.probs is not None
                windows += 1
    except (ModelLoadError, PredictError) as exc:
        return fail(str(exc))
    except ValueError as exc:  # a bad --every
        return fail(str(exc).replace("--stride", "--every"), 2)
    if not made:
        # (it said "... ended before one full window after 0.7 s" below lines of windows: the 0.7 s was wall time)
        short = (f"the file ended before {MIN_SECONDS:g} s, the least a clip needs" if args.source is not None
                 else f"the stream ended before one full window ({window_seconds(model):.1f} s)")
        print(f"no prediction: no face in any of the {windows} windows" if windows else f"no prediction: {short}")
        return 1
    return 0


def _live_line(prediction: LivePrediction, classes: Sequence[str], window: float) -> str:
    """``t=  2.83s  happy     0.91  anger=0.04 happy=0.91 sad=0.05``, or that the ``window`` s had no face."""
    if prediction.probs is None:
        return f"t={prediction.time:7.2f}s  no face in the last {window:.1f} s"
    probs = prediction.probs
    label = classes[int(probs.argmax())]
    scores = " ".join(f"{c}={p:.2f}" for c, p in zip(classes, probs))
    return f"t={prediction.time:7.2f}s  {label:<9} {probs.max():.2f}  {scores}"


CALIBRATION_ENOUGH = 64  # fewer calibration faces than this: the int8 ranges are a guess


def add_export(sub: Subcommands) -> None:
    p = add_command(
        sub, "export", func=cmd_export,
        help="write a run's model as ONNX (onnxruntime) or as a compact int8 checkpoint",
        description=("--onnx: the uint8 stacks -> probabilities graph, with the preprocessing settings stored in "
                     "the file's metadata, for `predict --model x.onnx`. --compact: a checkpoint whose weights "
                     "are int8 with per-channel scales (4x smaller; how the default model ships)."))
    p.add_argument("run", type=Path, help="run folder (its best.pt) or checkpoint")
    p.add_argument("--onnx", type=Path, help="ONNX file to write")
    p.add_argument("--compact", type=Path, help="compact checkpoint (.pt) to write")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="serve with mirror averaging: each face's probabilities averaged with its mirror image's "
                        "(more accurate, 2x the model time); default: as the checkpoint says (off for a run)")
    p.add_argument("--int8", type=Path, metavar="FACES_DIR",
                   help="with --onnx: int8 weights and activations, calibrated on up to 256 face images in "
                        "FACES_DIR, cropped to the face as the training faces are (FER2013's train folder for the "
                        "shipped model; not whole photos); ~4x faster on a CPU")
    p.add_argument("--serve-interval", type=float, metavar="SECONDS",
                   help="with --onnx, frame models: sample a face every SECONDS when serving (default: the "
                        "interval of the training stacks, 1/6 s)")
    p.add_argument("--logit-offset", type=_class_offset, action="append", default=[], metavar="CLASS=VALUE",
                   help="add VALUE to CLASS's logit in the exported model (repeatable; e.g. neutral=-0.75 makes "
                        "neutral answers rarer); recorded in the model's settings")


def _class_offset(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLASS=VALUE, e.g. neutral=-0.75 (got {text!r})") from None


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.serve.export import ExportError, check_outputs, export_compact, export_onnx

    if not args.onnx and not args.compact:
        return fail("nothing to write: pass --onnx FILE and/or --compact FILE", 2)
    if (args.int8 or args.serve_interval) and not args.onnx:
        return fail("--int8 and --serve-interval are for the ONNX export: pass --onnx FILE with them", 2)
    try:
        check_outputs(args.run, {"--onnx": args.onnx, "--compact": args.compact})
        offsets = dict(args.logit_offset)
        if args.onnx:
            meta = export_onnx(args.run, args.onnx, args.mirror, args.int8, args.serve_interval, offsets)
            print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 1e6:.1f} MB)")
            if args.int8:  # it accepted a folder of one whole photo without a word
                n = meta["calibration_images"]
                print(f"  int8 ranges calibrated on {n} image(s) from {args.int8}"
                      + (f"; warning: {n} is few, give {CALIBRATION_ENOUGH} or more face crops" if n <
                         CALIBRATION_ENOUGH else ""))
        if args.compact:
            export_compact(args.run, args.compact, args.mirror, offsets)
            print(f"wrote {args.compact} ({args.compact.stat().st_size / 1e6:.1f} MB)")
    except ExportError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {exc.filename or 'the export'}: {exc.strerror or exc}")
    return 0
