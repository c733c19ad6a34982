"""The importable use-case API (`apex_x.load_config`, `apex_x.preflight`, ...): the CLI, notebooks and users call it.

Each function is a thin call into the container (the only composition root): load the config, build the
container for it, run the use case it provides.
Heavy modules are imported inside the functions, so `import apex_x.api` stays cheap.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apex_x.adapters.datasets.shapes_writer import ShapesPaths
    from apex_x.application.benchmark import BenchmarkReport
    from apex_x.application.evaluate import EvalReport
    from apex_x.application.export import ExportResult
    from apex_x.application.inference import InferenceModel
    from apex_x.application.predict import PredictionRun
    from apex_x.application.preflight import PreflightReport
    from apex_x.application.train import TrainResult
    from apex_x.container import Container
    from apex_x.domain.config import ApexConfig
    from apex_x.domain.environment import Requirement
    from apex_x.domain.types import DatasetReport

# Keyword flags of load_config -> (dotted config key, the CLI flag named in error messages).
CONFIG_FLAGS: dict[str, tuple[str, str]] = {
    "steps_per_stage": ("train.steps_per_stage", "--steps-per-stage"),
    "seed": ("train.seed", "--seed"),
    "num_classes": ("model.num_classes", "--num-classes"),
    "device": ("runtime.device", "--device"),
    "output_dir": ("train.output_dir", "--output-dir"),
    "epochs": ("train.epochs", "--epochs"),
    "batch_size": ("train.batch_size", "--batch-size"),
    "profile": ("model.profile", "--profile"),
    "kernels": ("runtime.kernels", "--kernels"),
    "log_level": ("runtime.log_level", "--log-level"),
    "allow_synthetic_fallback": ("train.allow_synthetic_fallback", "--allow-synthetic-fallback"),
}


def _container(settings: ApexConfig | None = None) -> Container:
    """The composition root for `settings` (defaults when None): every use case and adapter comes from it."""
    from apex_x.container import create_container

    return create_container(settings)


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = (), **flags: Any) -> ApexConfig:
    """YAML file (optional) + `--set` style overrides ("train.epochs=3") + keyword flags -> validated config.

    Flags are those of CONFIG_FLAGS (e.g. `seed=0, num_classes=3, steps_per_stage=10`); None means "not
    given". Precedence: file < overrides < flags. Errors are ConfigError naming the file or flag and key.
    """
    extra: dict[str, tuple[Any, str]] = {}
    for name, value in flags.items():
        if name not in CONFIG_FLAGS:
            close = difflib.get_close_matches(name, list(CONFIG_FLAGS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid flags: {', '.join(CONFIG_FLAGS)}"
            raise TypeError(f"load_config() got an unknown flag {name!r}{hint}")
        if value is not None:
            key, flag = CONFIG_FLAGS[name]
            extra[key] = (value, f"{flag} {value}")
    loader = _container().config_loader()
    return loader(None if path is None else str(path), overrides=list(overrides), extra=extra)


def preflight(
    profile: str = "base",
    output_json: str | os.PathLike[str] | None = None,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
) -> PreflightReport:
    """Check the dependencies, CUDA, triton and the output folder of a profile ("base" or "worldclass").

    Returns the report (`report.ok`, `report.failures`, `report.to_dict()`); never raises for a missing
    package. `output_dir` defaults to `train.output_dir` of `config` (or of the defaults). With
    `output_json`, the report is also written there as JSON.
    """
    _ensure_logging()
    settings = load_config(config)
    container = _container(settings)
    folder = str(output_dir) if output_dir is not None else settings.train.output_dir
    if output_json is not None:
        container.check_output_file()(output_json, key="--output-json")
    report = container.preflight().execute(profile, folder, settings if config is not None else None)
    if output_json is not None:
        _write_json(output_json, report.to_dict())
    return report


def preflight_profiles() -> list[str]:
    """The profiles `preflight` accepts: "base", then each model profile that needs more packages or checks."""
    return _container().preflight().profiles


def requirement_for_module(module_name: str) -> Requirement | None:
    """The package (base's or a model profile's) that provides a top-level module, for 'No module named X'."""
    return _container().requirement_for_module()(module_name)


def _ensure_logging() -> None:
    """Python callers that never configured logging get Apex-X's console set-up (info) instead of
    structlog's print-everything default; an entry point's own configure_logging is left alone."""
    import structlog

    if not structlog.is_configured():
        _container().configure_logging()("info", None)


def _write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write JSON atomically (the container's one atomic writer); creates the folder."""
    return Path(_container().json_file_writer()(path, dict(payload)))


# --- data: dataset preflight and the built-in shapes dataset (issue 3) -----------------------------


def dataset_preflight(
    config: str | os.PathLike[str] | None,
    *,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    full_decode: bool = False,
    output_json: str | os.PathLike[str] | None = None,
) -> DatasetReport:
    """Validate the dataset contract of a config (its real COCO data) without training.

    Returns the DatasetReport (`report.ok`, `report.findings`, `report.summary`, `report.to_plain()`);
    dataset problems are findings, not exceptions. The class count to check is `num_classes` or
    model.num_classes of the config. With `output_json` the report is also written there as JSON.
    """
    _ensure_logging()
    settings = load_config(config, overrides, num_classes=num_classes)
    container = _container(settings)
    if output_json is not None:
        container.check_output_file()(output_json, key="--output-json")
    use_case = container.dataset_preflight()
    report = use_case.execute(
        settings,
        full_decode=full_decode or settings.data.full_image_check,
        expected_num_classes=settings.model.num_classes,
    )
    if output_json is not None:
        _write_json(output_json, {"config": None if config is None else os.fspath(config), **report.to_plain()})
    return report


def make_shapes(
    directory: str | os.PathLike[str],
    *,
    train: int = 512,
    val: int = 64,
    size: int = 256,
    seed: int = 0,
    layout: str = "shapes",
    overwrite: bool = False,
) -> ShapesPaths:
    """Write the built-in shapes dataset (COCO format, 3 classes) to `directory`; deterministic per seed.

    layout "shapes": DIR/train, DIR/val, DIR/instances_{train,val}.json (configs/quickstart.yaml);
    layout "coco": DIR/train2017, DIR/val2017, DIR/annotations/instances_{train,val}2017.json
    (configs/coco_baseline.yaml with DIR=data/coco). Returns the paths (`.config_overrides()`).
    """
    from apex_x.domain.shapes_layout import LAYOUT_FILES

    if layout not in LAYOUT_FILES:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUT_FILES))}, got {layout!r}")
    writer = _container().shapes_writer()
    return writer(directory, train=train, val=val, size=size, seed=seed, layout=layout, overwrite=overwrite)


# --- training (issue 5) -------------------------------------------------------------------------


def train(
    config: str | os.PathLike[str] | ApexConfig | None,
    *,
    steps_per_stage: int | None = None,
    seed: int | None = None,
    num_classes: int | None = None,
    overrides: Sequence[str] = (),
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    stop_after_steps: int | None = None,
    log_level: str | None = None,
    resume_command: Callable[[str, Sequence[str]], str] | None = None,
) -> TrainResult:
    """Train (or resume) a run: the same use case, checks and reports as `apex-x train`.

    `config` is a YAML path (with `overrides` such as "train.epochs=1" and the keyword flags on top) or an
    ApexConfig. `resume` continues from a checkpoint (e.g. <output_dir>/checkpoints/last.pt) in that run's
    folder unless `output_dir` or a train.output_dir override says otherwise. `stop_after_steps` pauses
    after that many batches (last.pt saved). Returns a TrainResult (status, report path, best metric,
    last val metrics, checkpoints); bad input raises a UserError subclass naming the key, file or id.
    Messages that say how to resume (a pause, an undecodable image) spell it as this call
    (`apex_x.train('cfg.yaml', resume='.../last.pt')`) unless `resume_command(last_pt, overrides)` spells it
    otherwise (the CLI passes its own).
    """
    from apex_x.domain.config import ApexConfig
    from apex_x.domain.errors import ConfigError, TerminationRequested, UserError

    overrides = list(overrides)
    if output_dir is None and resume is not None and not any(
        text.partition("=")[0].strip() == "train.output_dir" for text in overrides
    ):
        output_dir = _container().run_folder_of()(os.fspath(resume))
    flags = {"steps_per_stage": steps_per_stage, "seed": seed, "num_classes": num_classes, "device": device,
             "output_dir": None if output_dir is None else os.fspath(output_dir)}
    if isinstance(config, ApexConfig):
        given = {name: value for name, value in flags.items() if value is not None}
        if overrides or given:
            settings = load_config(None, [*_as_overrides(config), *overrides], **given)
        else:
            settings = config
    elif resume is not None:
        try:
            settings = load_config(config, overrides, **flags)
        except ConfigError:  # e.g. --set train.stages.1.epochs=N of stages the checkpoint has but the YAML lacks:
            settings = load_config(config, [], **flags)  # the checkpoint's config is the base (resume_settings)
    else:
        settings = load_config(config, overrides, **flags)
    if resume is not None:
        given = {name: value for name, value in flags.items() if value is not None}
        settings = _container(settings).resume_settings(
            settings, os.fspath(resume), overrides, load=lambda texts: load_config(None, texts, **given)
        )
    container = _container(settings)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:  # before anything is created (the log file is the first)
        container.check_run_folder()(settings.train.output_dir)
    run_folder = container.run_folder()
    output_dir = settings.train.output_dir
    created_here = rank == 0 and not run_folder.exists(output_dir)
    log_file = str(Path(output_dir) / "logs" / "train.jsonl") if rank == 0 else None
    level = log_level or settings.runtime.log_level
    configure_logging = container.configure_logging()
    configure_logging(level, log_file)
    use_case = container.train_use_case()
    try:
        return use_case.execute(
            resume_from=None if resume is None else os.fspath(resume), stop_after_steps=stop_after_steps,
            resume_command=resume_command or python_resume_command(config),
        )
    except (UserError, TerminationRequested, KeyboardInterrupt):  # refused, or stopped during start-up
        if created_here and not run_folder.holds_checkpoints(output_dir):  # ended before anything was saved
            configure_logging(level, None)  # closes the log file
            run_folder.remove(output_dir)  # a refused run leaves nothing behind
        raise


def python_resume_command(config: str | os.PathLike[str] | ApexConfig | None) -> Callable[[str, Sequence[str]], str]:
    """How a Python user resumes: `apex_x.train('cfg.yaml', resume='.../last.pt'[, overrides=[...]])`."""
    shown = repr(os.fspath(config)) if isinstance(config, (str, os.PathLike)) else (
        "None" if config is None else "<the same ApexConfig>")

    def command(last: str, overrides: Sequence[str] = ()) -> str:
        extra = f", overrides={list(overrides)!r}" if overrides else ""
        return f"apex_x.train({shown}, resume={last!r}{extra})"

    return command


def cli_resume_command(config: str | os.PathLike[str] | None) -> Callable[[str, Sequence[str]], str]:
    """How a CLI user resumes: `apex-x train cfg.yaml --resume .../last.pt [--set k=v]` (shell-quoted)."""
    import shlex

    def command(last: str, overrides: Sequence[str] = ()) -> str:
        words = ["apex-x", "train", *([os.fspath(config)] if config is not None else []), "--resume", last]
        for item in overrides:
            words += ["--set", item]
        return shlex.join(words)

    return command


def _as_overrides(config: ApexConfig) -> list[str]:
    """An ApexConfig as `key=value` overrides (JSON values are valid YAML), to apply more on top."""
    return [f"{section}.{key}={json.dumps(value)}" for section, values in config.to_plain().items()
            for key, value in values.items()]


# --- using a trained model: evaluate, predict, load_model (issue 8) ---------------------------------


def load_model(
    checkpoint: str,
    *,
    device: str = "auto",
    score_threshold: float | None = None,
    model_overrides: Mapping[str, Any] | None = None,
) -> InferenceModel:
    """A checkpoint's model, ready for inference: profile, classes and input size come from the checkpoint."""
    _ensure_logging()
    overrides = dict(model_overrides or {})
    if score_threshold is not None:
        overrides["score_threshold"] = float(score_threshold)
    return _container().load_model()(str(checkpoint), device=device, model_overrides=overrides)


def predict(
    checkpoint: str,
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    output_dir: str | None = "artifacts/predictions",
    score_threshold: float | None = 0.25,
    device: str = "auto",
    batch_size: int = 4,
    overlays: bool = True,
    coco_annotations: str | os.PathLike[str] | None = None,
) -> PredictionRun:
    """Predict on image files and folders; writes predictions.json, summary.json and PNG overlays to output_dir.

    Inputs that cannot be used (missing, empty folder, undecodable) are listed in `.failures`; the others
    are still processed. With output_dir=None nothing is written and the detections are returned.
    """
    _ensure_logging()
    if output_dir is not None:
        _container().check_output_folder()(output_dir, key="--output")
    model = load_model(checkpoint, device=device, score_threshold=score_threshold)
    container = _container(model.config)
    image_ids = check_classes(model, coco_annotations) if coco_annotations is not None else None
    sink = (
        container.prediction_sink(output_dir=output_dir, categories=model.categories, overlays=overlays)
        if output_dir is not None
        else None
    )
    use_case = container.predict_images(model=model, sink=sink, score_threshold=score_threshold, batch_size=batch_size,
                                        image_ids=image_ids)
    return use_case.execute([str(images)] if isinstance(images, (str, os.PathLike)) else [str(item) for item in images])


EXPORT_FORMATS = ("onnx", "torchscript")


def export(
    checkpoint: str | os.PathLike[str],
    format: str = "onnx",  # noqa: A002 - the CLI's --format
    *,
    output: str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    dynamic_batch: bool = False,
) -> ExportResult:
    """Export a checkpoint's model (EMA weights when present) as an ONNX or TorchScript file holding the network
    and its dense decoding, plus `<file>.json` with the classes and post-processing settings.

    input_size (height, width) defaults to the checkpoint's; dynamic_batch makes the batch dimension free
    (ONNX; a TorchScript file accepts any batch). Default output: beside the checkpoint (best.pt -> best.onnx).
    Errors: ConfigError for an unknown format or an input size the profile refuses, UserError when the model
    cannot be exported in that format, DependencyError when the format's packages are not installed.
    """
    from apex_x.domain.errors import ConfigError
    from apex_x.domain.registry import quoted_choices

    _ensure_logging()
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {format!r}; valid: {quoted_choices(EXPORT_FORMATS)}", key="--format")
    container = _container()
    if output is not None:
        container.check_output_file()(os.fspath(output), key="--output")
    model = load_model(os.fspath(checkpoint), device="cpu")
    exporter = container.model_exporters()[format]
    return container.export_model(exporter=exporter).execute(
        model, output=None if output is None else os.fspath(output), input_size=input_size,
        dynamic_batch=dynamic_batch,
    )


def benchmark(
    checkpoint: str | os.PathLike[str],
    *,
    images: Sequence[str | os.PathLike[str]] = (),
    formats: Sequence[str] = ("eager",),
    device: str = "auto",
    batch_size: int = 1,
    input_size: tuple[int, int] | None = None,
    warmup: int = 3,
    iterations: int = 20,
    output_json: str | os.PathLike[str] | None = None,
) -> BenchmarkReport:
    """Inference latency per image (pre-processing, model, post-processing; median and p90 ms) and throughput of
    a checkpoint's model for each of `formats` ("eager", "torchscript", "onnx"), after `warmup` batches, with
    parameters and GFLOPs. Without `images`, a 1280x720 JPEG stand-in is decoded. Writes `output_json` if given."""
    import tempfile

    _ensure_logging()
    container = _container()
    if output_json is not None:
        container.check_output_file()(os.fspath(output_json), key="--output-json")
    model = load_model(os.fspath(checkpoint), device=device)
    reader = container.image_reader()
    with tempfile.TemporaryDirectory(prefix="apex_x_benchmark_") as scratch:
        files = [found for item in images for found in reader.list_images(os.fspath(item))]
        if not files:
            files = [container.write_sample_image()(os.path.join(scratch, "sample_1280x720.jpg"))]
        report = container.benchmark_inference().execute(
            model, files, formats=list(formats), scratch_dir=scratch, batch_size=batch_size, input_size=input_size,
            warmup=warmup, iterations=iterations,
        )
    if output_json is not None:
        _write_json(output_json, report.to_plain())
    return report


def convert_dataset(
    to: str,
    output: str | os.PathLike[str],
    *,
    coco_splits: Mapping[str, tuple[str, str]] | None = None,
    yolo_data: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write a dataset in the other layout: to="yolo" from `coco_splits` (split -> (images folder, instances
    JSON)), or to="coco" from an Ultralytics `yolo_data` data.yaml. `output` must be a new or empty folder.
    Returns {"splits": counts per split, "keys": the data.* settings that use the result}."""
    from pathlib import Path

    from apex_x.domain.errors import ConfigError

    _ensure_logging()
    container = _container()
    container.check_output_folder()(os.fspath(output), key="--output")
    target = Path(output)
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"{target} is not empty: convert writes into a new or empty folder", key="--output")
    converters = container.dataset_converters()
    if to not in converters:
        raise ConfigError(f"unknown layout {to!r}; valid: {', '.join(converters)}", key="--to")
    splits = {name: (str(a), str(b)) for name, (a, b) in (coco_splits or {}).items()}
    return converters[to](target, coco_splits=splits or None,
                          yolo_data=None if yolo_data is None else os.fspath(yolo_data))


def letterbox(image: Any, input_size: Sequence[int]) -> tuple[Any, Any]:
    """(H, W, 3) uint8 RGB image -> ((3, h, w) uint8 tensor for an exported file, ImageMeta for decode_exported):
    scaled to fit input_size (h, w), centred, padded with 114, as prediction places images."""
    return _container().letterbox()(image, input_size)


def decode_exported(outputs: Sequence[Any], metas: Sequence[Any], metadata: Mapping[str, Any], *,
                    score_threshold: float | None = None) -> list[Any]:
    """An exported file's outputs (boxes, scores, mask_coeffs, prototypes) for letterboxed images -> Detections
    per image in original pixels (NMS, mask assembly, paste-back). `metadata`: the export's `<file>.json`."""
    return _container().decode_exported()(outputs, metas, metadata, score_threshold=score_threshold)


def check_classes(model: InferenceModel, coco_annotations: str | os.PathLike[str]) -> dict[str, int]:
    """Refuse (DatasetError listing the differing ids and names of both sides) unless the model's class list
    equals the COCO file's; returns the file's image ids by file name (so predictions carry them)."""
    from apex_x.domain.class_lists import require_same_classes
    from apex_x.domain.types import CategoryMap

    categories, image_ids, grouping = _container(model.config).coco_classes_reader()(os.fspath(coco_annotations))
    dropped = grouping - set(model.categories.original_ids)  # left out in training too (unless it kept them)
    if dropped:
        kept = [(cid, name) for cid, name in zip(categories.original_ids, categories.names, strict=True)
                if cid not in dropped]
        categories = CategoryMap(tuple(cid for cid, _ in kept), tuple(name for _, name in kept))
    require_same_classes(model.categories, categories, checkpoint=str(model.checkpoint_path), data_kind="COCO file",
                         data_name=os.fspath(coco_annotations), action="predict")
    return image_ids


def evaluate(
    config: str | None,
    checkpoint: str,
    *,
    overrides: Sequence[str] = (),
    output_json: str | None = None,
    output_md: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    write_files: bool = True,
) -> EvalReport:
    """COCO bbox/segm metrics of `checkpoint` on the val split of `config` (+ `--set` overrides).

    The model (profile, architecture, input size, classes) comes from the checkpoint; `model.*`
    overrides apply on top of it. Writes eval_report.json/.md (default: in train.output_dir).
    """
    _ensure_logging()
    loaded = load_config(config, list(overrides))
    dotted_keys = (text.partition("=")[0].strip() for text in overrides)
    model_keys = {key.split(".", 1)[1] for key in dotted_keys if key.startswith("model.")}
    model = load_model(  # the checkpoint first: a bad checkpoint is named before the data is checked
        checkpoint,
        device=device or loaded.runtime.device,
        model_overrides={key: getattr(loaded.model, key) for key in model_keys},
    )
    settings = _container(loaded).evaluation_settings(str(config) if config is not None else "<defaults>")
    check_output_file = _container(settings).check_output_file()
    if write_files:
        json_path = output_json or str(Path(settings.train.output_dir) / "eval_report.json")
        md_path = output_md or str(Path(json_path).with_suffix(".md"))
        check_output_file(json_path, key="--output-json")
        check_output_file(md_path, key="--output-md")
    effective = settings.model_copy(update={"model": model.config.model})
    container = _container(effective)
    use_case = container.evaluate_checkpoint(model=model, batch_size=batch_size or settings.train.batch_size)
    report = use_case.execute()
    report.extra["config"] = str(config) if config is not None else None
    if write_files:
        report.extra["files"] = [json_path, md_path]
        container.eval_report_writer().write(report.to_plain(), container.eval_markdown()(report), json_path, md_path)
        report.extra["files"] += report.write_previews(str(Path(json_path).parent))
    return report
