"""The ``emoflow`` command line: one subcommand per workflow stage.

Every stage command takes ``--config`` (a YAML or JSON file, validated against the schema);
the Snakemake rules pass the validated, merged config the workflow wrote to
``<results>/<name>/config.json``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from emoflow.errors import ConfigError, EmoflowError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="emoflow: offline audio-visual emotion recognition, one stage per command.",
)

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="config file (YAML/JSON), validated against the schema"),
]
LogOpt = Annotated[
    Path | None, typer.Option("--log", help="also write this command's log to this file")
]


def _setup_logging(log_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def _config(path: Path) -> dict:
    from emoflow.config import load_config

    return load_config(path)


def _check_branch(branch: str) -> None:
    from emoflow.branches import ALL_BRANCHES

    if branch not in ALL_BRANCHES:
        _fail(f"--branch must be one of {', '.join(ALL_BRANCHES)}, not {branch!r}")


def _fail(message: str) -> None:
    typer.secho(f"emoflow: error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


@app.command("validate-config")
def validate_config_cmd(config: Annotated[Path, typer.Argument(help="config file")]) -> None:
    """Validate a config file; unknown or mistyped keys are named."""
    _config(config)
    typer.echo(f"{config}: valid")


@app.command("demo-corpus")
def demo_corpus(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the clips into")],
    clips: Annotated[
        int, typer.Option(help="number of clips (12 actors x 4 emotions x 2 = 96)")
    ] = 96,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same bytes")] = 0,
    ffmpeg: Annotated[str, typer.Option(help="ffmpeg binary")] = "ffmpeg",
    workers: Annotated[
        int | None, typer.Option(help="clips made at once (default: the CPU count)")
    ] = None,
) -> None:
    """Write the deterministic demo corpus (RAVDESS-named mp4 clips with real face photos)."""
    import os

    from emoflow.demo.corpus import make_demo_corpus

    workers = workers or len(os.sched_getaffinity(0))
    paths = make_demo_corpus(out_dir, clips=clips, seed=seed, ffmpeg=ffmpeg, workers=workers)
    typer.echo(f"{len(paths)} demo clips in {out_dir}")


@app.command()
def scan(config: ConfigOpt, log: LogOpt = None) -> None:
    """Scan the dataset: clip table, shard lists and scan failures (rewritten only on change)."""
    _setup_logging(log)
    from emoflow.datasets.manifest import refresh

    s = refresh(_config(config))
    typer.echo(
        f"{s.clips} clips, {s.failures} rejected, {s.hashed} hashed, "
        f"shard lists rewritten: {s.shards_written or 'none'}"
    )


def _extract(stage: str, config: Path, shard: int, workers: int | None, log: Path | None) -> None:
    _setup_logging(log)
    from emoflow.extraction.shard_job import run_shard

    s = run_shard(_config(config), stage, shard, workers)
    typer.echo(
        f"{stage} shard {shard}: {s['with_features']} of {s['clips']} clips with features "
        f"({len(s['computed'])} computed, {len(s['cached'])} from cache, "
        f"{len(s['failures'])} failed)"
    )


ShardOpt = Annotated[int, typer.Option("--shard", help="shard index k")]
WorkersOpt = Annotated[int | None, typer.Option(help="parallel clips (default: available CPUs)")]


@app.command("extract-audio")
def extract_audio(
    config: ConfigOpt, shard: ShardOpt, workers: WorkersOpt = None, log: LogOpt = None
) -> None:
    """Audio stage of one shard: log-mel + MFCC of its clips (from the cache) -> audio/<k>.h5."""
    _extract("audio", config, shard, workers, log)


@app.command("extract-faces")
def extract_faces(
    config: ConfigOpt, shard: ShardOpt, workers: WorkersOpt = None, log: LogOpt = None
) -> None:
    """Face stage of one shard: aligned faces of its clips (from the cache) -> faces/<k>.h5."""
    _extract("faces", config, shard, workers, log)


@app.command("extract-egemaps")
def extract_egemaps(
    config: ConfigOpt, shard: ShardOpt, workers: WorkersOpt = None, log: LogOpt = None
) -> None:
    """eGeMAPS stage of one shard: the audio windows -> openSMILE functionals -> egemaps/<k>.h5."""
    _extract("egemaps", config, shard, workers, log)


@app.command("extract-ssl")
def extract_ssl(
    config: ConfigOpt, shard: ShardOpt, workers: WorkersOpt = None, log: LogOpt = None
) -> None:
    """SSL stage of one shard: the audio windows -> local speech encoder -> ssl/<k>.h5."""
    _extract("ssl", config, shard, workers, log)


@app.command("extract-face_cnn")
def extract_face_cnn(
    config: ConfigOpt, shard: ShardOpt, workers: WorkersOpt = None, log: LogOpt = None
) -> None:
    """face_cnn stage of one shard: the FER encoder's outputs per face frame -> face_cnn/<k>.h5."""
    _extract("face_cnn", config, shard, workers, log)


def _compute(stage: str, config: Path, workers: int | None, log: Path | None) -> None:
    _setup_logging(log)
    from emoflow.extraction.compute import run_compute

    s = run_compute(_config(config), stage, workers)
    typer.echo(
        f"{stage}: {len(s['computed'])} of {s['clips']} clips computed into the cache "
        f"({len(s['failures'])} failed, {s['encoded_bytes']} bytes encoded)"
    )


@app.command("compute-audio")
def compute_audio(config: ConfigOpt, workers: WorkersOpt = None, log: LogOpt = None) -> None:
    """Audio stage, every shard: compute each clip missing from the per-clip cache, once."""
    _compute("audio", config, workers, log)


@app.command("compute-faces")
def compute_faces(config: ConfigOpt, workers: WorkersOpt = None, log: LogOpt = None) -> None:
    """Face stage, every shard: compute each clip missing from the per-clip cache, once."""
    _compute("faces", config, workers, log)


@app.command("compute-egemaps")
def compute_egemaps(config: ConfigOpt, workers: WorkersOpt = None, log: LogOpt = None) -> None:
    """eGeMAPS stage, every shard: compute each clip missing from the per-clip cache, once."""
    _compute("egemaps", config, workers, log)


@app.command("compute-ssl")
def compute_ssl(config: ConfigOpt, workers: WorkersOpt = None, log: LogOpt = None) -> None:
    """SSL stage, every shard: compute each clip missing from the per-clip cache, once."""
    _compute("ssl", config, workers, log)


@app.command("compute-face_cnn")
def compute_face_cnn(config: ConfigOpt, workers: WorkersOpt = None, log: LogOpt = None) -> None:
    """face_cnn stage, every shard: encode the faces of each clip missing from its cache."""
    _compute("face_cnn", config, workers, log)


@app.command()
def failures(config: ConfigOpt, log: LogOpt = None) -> None:
    """Collect scan and stage failures into failures.parquet; with strict: true, fail on any."""
    _setup_logging(log)
    from emoflow.extraction.failures import collect_failures

    cfg = _config(config)
    rows = collect_failures(cfg)
    typer.echo(f"{len(rows)} failures")
    if cfg["strict"] and rows:
        listing = "\n".join(
            f"  {r['stage']}/{r['kind']}: {r['clip_id']}: {r['message']}" for r in rows
        )
        message = f"strict: true and {len(rows)} clips failed:\n{listing}"
        logging.getLogger("emoflow").error("%s", message)
        raise typer.Exit(code=1)


@app.command()
def split(config: ConfigOpt, log: LogOpt = None) -> None:
    """Speaker-independent folds (or the official split) -> folds.parquet; checks leakage."""
    _setup_logging(log)
    from emoflow.stages import run_split

    n = run_split(_config(config))
    typer.echo(f"{n} folds written")


@app.command("inner-split")
def inner_split(config: ConfigOpt, log: LogOpt = None) -> None:
    """Inner speaker-independent folds inside each fold's training part -> inner_folds.parquet
    (fusion fitted on their out-of-fold predictions)."""
    _setup_logging(log)
    from emoflow.stages import run_inner_split

    n = run_inner_split(_config(config))
    typer.echo(f"{n} inner folds per fold written")


@app.command()
def train(
    config: ConfigOpt,
    branch: Annotated[str, typer.Option(help="a branch: audio, visual, egemaps, ssl, face_cnn")],
    fold: Annotated[int, typer.Option(help="fold index")],
    seed: Annotated[int, typer.Option(help="training seed")],
    inner: Annotated[
        int | None, typer.Option(help="an inner fold of --fold (fusion's out-of-fold predictions)")
    ] = None,
    log: LogOpt = None,
) -> None:
    """Train one branch on one fold (or one of its inner folds) with one seed (resumes from its
    checkpoint)."""
    _setup_logging(log)
    _check_branch(branch)
    from emoflow.stages import run_train

    out = run_train(_config(config), branch, fold, seed, inner)
    typer.echo(f"model and predictions in {out}")


@app.command()
def refit(
    config: ConfigOpt,
    branch: Annotated[str, typer.Option(help="a branch: audio, visual, egemaps, ssl, face_cnn")],
    log: LogOpt = None,
) -> None:
    """Retrain one branch on every labelled clip for the cross-validated epoch count."""
    _setup_logging(log)
    _check_branch(branch)
    from emoflow.stages import run_refit

    out = run_refit(_config(config), branch)
    typer.echo(f"refitted model in {out}")


@app.command()
def fuse(
    config: ConfigOpt,
    fold: Annotated[int, typer.Option(help="fold index")],
    seed: Annotated[int, typer.Option(help="training seed")],
    log: LogOpt = None,
) -> None:
    """Fuse the branches of one (fold, seed): late, stacking and feature-level fusion."""
    _setup_logging(log)
    from emoflow.stages import run_fuse

    run_fuse(_config(config), fold, seed)


@app.command()
def evaluate(config: ConfigOpt, log: LogOpt = None) -> None:
    """Result tables (csv/md/tex), figures and provenance from the stored predictions."""
    _setup_logging(log)
    from emoflow.stages import run_report

    table = run_report(_config(config))
    typer.echo(table)


@app.command()
def bundle(config: ConfigOpt, log: LogOpt = None) -> None:
    """Package the fold-0 models and fusion weights for `emoflow predict`."""
    _setup_logging(log)
    from emoflow.stages import run_bundle

    out = run_bundle(_config(config))
    typer.echo(f"model bundle: {out}")


@app.command()
def predict(
    videos: Annotated[
        list[Path], typer.Argument(help="video or audio files (a file without video: audio only)")
    ],
    model: Annotated[
        Path,
        typer.Option(
            help="model bundle folder (results/<name>/model) or one branch model file "
            "(audio.pt / visual.pt)"
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="output folder for <stem>.timeline.csv, <stem>.json and <stem>.png"),
    ] = Path("predictions"),
    workers: Annotated[int, typer.Option(help="CPU threads for the models")] = 2,
) -> None:
    """Predict an emotion timeline (CSV, JSON, PNG) for each video with a trained bundle.

    Features are extracted with the spec stored in the bundle; the fusion chosen at training
    combines the branches.
    """
    _setup_logging(None)
    from emoflow.deploy.predict import run_predict

    run_predict(videos, model, out, threads=workers)


def main() -> None:
    """Entry point of the console script: clear one-line errors instead of tracebacks."""
    try:
        app()
    except (ConfigError, EmoflowError) as exc:
        if logging.getLogger().handlers:  # a stage command: the error also goes to its log file
            logging.getLogger("emoflow").error("%s", exc)
        else:
            typer.secho(f"emoflow: error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(1)
