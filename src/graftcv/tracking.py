"""`--logger csv|tensorboard|mlflow`: a run's settings, every epoch's metrics, its final scores and (MLflow) its
files, through Lightning's own loggers; `parent_run` nests the runs of a `compare` or `tune` under one."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from graftcv import distributed
from graftcv.config import TrainConfig, parse_loggers
from graftcv.errors import GraftcvError
from graftcv.training.callbacks import listening

log = logging.getLogger("graftcv")
LOGS_DIR = "logs"  # CSV and TensorBoard logs, inside the run directory
RUN_FILES = ("config.json", "summary.json", "metrics.csv", "val_metrics.json", "test_metrics.json")
FINAL_PREFIXES = ("val_", "test_")
FINAL_KEYS = ("train_seconds", "wall_seconds", "best_epoch", "epochs")


class Tracker:
    """The loggers of one run (none when --logger is not given, or on the ranks other than 0)."""

    def __init__(self, loggers: list, step: Iterator[int]) -> None:
        self.loggers, self.step = loggers, step

    def epoch(self, metrics: dict) -> None:
        step = next(self.step)
        for logger in list(self.loggers):
            try:
                logger.log_metrics(metrics, step=step)
            except Exception as error:  # a tracking server gone mid-run: the run itself goes on without it
                log.warning("--logger %s failed (%s): it logs no more of this run.", kind(logger), str(error)[:200])
                self.loggers.remove(logger)

    def finish(self, run) -> None:
        """Final scores, then the model directory and the run's files as MLflow artifacts; the run id goes into
        summary.json (`tracking`) so that the CLI can add the report it writes afterwards."""
        if not self.loggers or not run.summary:
            return
        final = {k: float(v) for k, v in run.summary.items() if _final(k, v)}
        step = next(self.step)
        found = {}
        for logger in self.loggers:
            logger.log_metrics(final, step=step)
            if _is_mlflow(logger):
                _log_files(logger.experiment, logger.run_id, Path(run.out_dir))
                found |= {"mlflow_run_id": logger.run_id, "mlflow_tracking_uri": logger.graftcv_uri}
            else:
                found[f"{kind(logger)}_dir"] = str(logger.log_dir)
            logger.finalize("success")
        if found:
            from graftcv.rundir import RunDir

            run.summary["tracking"] = found
            RunDir(Path(run.out_dir)).write_summary(run.summary)

    def fail(self) -> None:
        for logger in self.loggers:
            logger.finalize("failed")


def _final(key: str, value: object) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and (key.startswith(FINAL_PREFIXES) or key in FINAL_KEYS)


def _is_mlflow(logger) -> bool:
    return type(logger).__name__ == "MLFlowLogger"


def kind(logger) -> str:
    """The --logger name of a logger (MLFlowLogger.name is its experiment id, which asks the server)."""
    return {"CSVLogger": "csv", "TensorBoardLogger": "tensorboard", "MLFlowLogger": "mlflow"}[type(logger).__name__]


def _log_files(client, run_id: str, out_dir: Path) -> None:
    for name in RUN_FILES:
        if (out_dir / name).is_file():
            client.log_artifact(run_id, str(out_dir / name))
    if (out_dir / "model").is_dir():
        client.log_artifacts(run_id, str(out_dir / "model"), "model")


def make_loggers(config: TrainConfig, save_dir: Path, run_name: str) -> list:
    """Lightning's CSVLogger, TensorBoardLogger and MLFlowLogger as --logger names them; a missing package is
    one sentence."""
    loggers = []
    for name in parse_loggers(config.logger):
        try:
            if name == "csv":
                from lightning.pytorch.loggers import CSVLogger

                loggers.append(CSVLogger(save_dir / LOGS_DIR, name="csv", version=""))
            elif name == "tensorboard":
                from lightning.pytorch.loggers import TensorBoardLogger

                loggers.append(
                    TensorBoardLogger(save_dir / LOGS_DIR, name="tensorboard", version="", default_hp_metric=False)
                )
            else:
                loggers.append(_mlflow(config, run_name))
        except ModuleNotFoundError as missing:
            package = {"tensorboard": "tensorboard", "mlflow": "mlflow"}.get(name, missing.name)
            raise GraftcvError(f"--logger {name} needs the {package} package: pip install {package}.") from None
    return loggers


def _mlflow(config: TrainConfig, run_name: str):
    # MLflow retries an unreachable server for minutes by default; a run should say so at its start instead
    # (both stay the user's to set)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    import mlflow  # noqa: F401 (the logger imports it lazily; a missing package should fail here, at the start)
    from lightning.pytorch.loggers import MLFlowLogger

    tags = {"mlflow.parentRunId": config.parent_run} if config.parent_run else None
    uri, artifacts = store(config.tracking_uri)
    logger = MLFlowLogger(experiment_name=config.experiment, run_name=run_name, tracking_uri=uri, tags=tags,
                          artifact_location=artifacts)  # fmt: skip
    logger.graftcv_uri = uri  # where finish() says the run lives (the logger keeps its own privately)
    return logger


def store(uri: str | None) -> tuple[str | None, str | None]:
    """(tracking URI, artifact location). A plain folder is a local store with no server: MLflow 3 keeps runs in
    SQLite (its file store is frozen), so FOLDER/mlflow.db holds them and FOLDER/artifacts their files. A URI
    with a scheme (sqlite:///, http://, databricks, ...) passes through with MLflow's own artifact root."""
    if uri is None or "://" in uri or uri.startswith(("file:", "databricks")):
        return uri, None
    folder = Path(uri).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GraftcvError(f"--tracking-uri {uri}: cannot create that folder ({error.strerror or error}).") from None
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def hyperparameters(record: dict) -> dict:
    """The settings a tracker shows: every scalar of the run's resolved config (nested dicts stay in config.json)."""
    return {k: v for k, v in record.items() if v is None or isinstance(v, (str, int, float, bool))}


@contextlib.contextmanager
def tracked(config: TrainConfig, record: dict, save_dir: Path, run_name: str) -> Iterator[Tracker]:
    """The run's loggers, hearing every epoch of the block's training; a failed run is marked failed."""
    if not parse_loggers(config.logger) or not distributed.is_main():
        yield Tracker([], itertools.count())
        return
    loggers = make_loggers(config, save_dir, run_name)
    for logger in loggers:
        try:
            logger.log_hyperparams(hyperparameters(record))  # MLflow reaches its store here, before any training
        except Exception as error:  # MLflow's and the filesystem's own error types
            where = f" at {config.tracking_uri}" if config.tracking_uri else ""
            reason = str(error).splitlines()[0][:160].rstrip(".") if str(error) else type(error).__name__
            raise GraftcvError(f"--logger {kind(logger)} cannot write to its store{where} ({reason}).") from None
    tracker = Tracker(loggers, itertools.count())
    try:
        with listening(tracker.epoch):
            yield tracker
    except BaseException:
        tracker.fail()
        raise


@contextlib.contextmanager
def parent_run(settings: dict, name: str) -> Iterator[dict]:
    """With --logger mlflow, one MLflow run that the block's runs (compare's cells, tune's trials) nest under: the
    settings to give them, with `parent_run` set; otherwise the settings unchanged."""
    config = TrainConfig(**{k: v for k, v in settings.items() if k in TrainConfig.field_names()})
    if "mlflow" not in parse_loggers(config.logger) or config.parent_run:
        yield settings
        return
    logger = make_loggers(TrainConfig(logger="mlflow", tracking_uri=config.tracking_uri,
                                      experiment=config.experiment), Path("."), name)[0]  # fmt: skip
    run_id = logger.run_id
    try:
        yield settings | {"parent_run": run_id}
    except BaseException:
        logger.finalize("failed")
        raise
    logger.finalize("success")


def log_file(summary: dict, path: Path) -> None:
    """One more file (the report the CLI writes after the run) into the run's MLflow run, when it has one."""
    found = (summary or {}).get("tracking") or {}
    if "mlflow_run_id" not in found or not path.is_file():
        return
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=found.get("mlflow_tracking_uri")).log_artifact(found["mlflow_run_id"], str(path))
