"""The run config's ``loggers:`` section -> Composer logger destinations, checked before training starts.

Three destinations next to the always-written ``RUN_DIR/metrics.jsonl``; each section is passed to
Composer's logger as keyword arguments, with these additions:

- ``wandb``: ``mode`` (``online``, ``offline`` or ``disabled``) and ``dir`` (default: the run directory)
  go to ``wandb.init``; ``tags`` may be a comma-separated string. Offline runs upload later with
  ``wandb sync RUN_DIR/wandb/offline-run-*``.
- ``mlflow``: ``tracking_uri`` is a directory (relative to the run config), ``file:///abs/dir``,
  ``sqlite:///path.db``, ``http(s)://host`` or ``databricks``; unset, MLflow's default (``./mlruns``).
  In a directory (file) store, metric names have ``.`` for ``/`` (``loss.train.text``): the store keeps
  each metric in a file of that path, and ``loss/train`` cannot be a file and a directory at once.
- ``tensorboard``: ``log_dir`` relative to the run config; default ``RUN_DIR/tensorboard``.

Versions: Composer 0.32 supports wandb < 0.19 (it calls ``Run.get_url``, gone from later wandb) and
mlflow < 3 (whose file store later releases refuse); pyproject installs Composer's own extras, which pin
both. A misconfiguration (an argument the logger does not take, a store that cannot be opened) is one
:class:`MixtureError` line naming the section and what to write instead.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from mixture.errors import MixtureError
from trainer.config import LoggersConfig, resolve_path

WANDB_MODES = ("online", "offline", "disabled")
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https", "databricks", "postgresql", "mysql", "mssql")


def build_loggers(config: LoggersConfig, run_dir: Path, base: Path) -> list[Any]:
    """Composer logger destinations for the configured sections (wandb, mlflow, tensorboard).

    Args:
        config: The run config's ``loggers`` section.
        run_dir: The run directory (default home of wandb and TensorBoard files).
        base: The run config's directory (relative paths are relative to it).

    Raises:
        MixtureError: For an unknown argument, a bad W&B mode or an MLflow store that cannot be opened.
    """
    from composer.loggers import TensorboardLogger

    loggers: list[Any] = []
    if config.wandb is not None:
        cls = _wandb_logger()
        _check_known("wandb", cls, set(config.wandb) - {"mode", "dir"})
        loggers.append(_construct("wandb", cls, _wandb_args(dict(config.wandb), run_dir, base)))
    if config.mlflow is not None:
        loggers.append(_construct("mlflow", _mlflow_logger(), _mlflow_args(dict(config.mlflow), base)))
    if config.tensorboard is not None:
        args = dict(config.tensorboard)
        args["log_dir"] = resolve_path(base, str(args.get("log_dir") or run_dir / "tensorboard"))
        loggers.append(_construct("tensorboard", TensorboardLogger, args))
    return loggers


def _wandb_logger() -> type:
    """Composer's WandBLogger, except that it looks for checkpoints only in W&B artifacts it uploads.

    With ``checkpoint.autoresume`` and no local checkpoint, Composer asks every logger for one; Composer's
    WandBLogger then queries the W&B API (failing offline, or without an entity) even when it never uploads
    checkpoints (``log_artifacts: false``, the default).
    """
    from composer.loggers import WandBLogger as ComposerWandBLogger

    class WandBLogger(ComposerWandBLogger):
        def download_file(self, remote_file_name: str, destination: str, overwrite: bool = False,
                          progress_bar: bool = True) -> None:
            if not self._log_artifacts:
                raise FileNotFoundError(f"{remote_file_name}: W&B artifacts are off (log_artifacts: false)")
            super().download_file(remote_file_name, destination, overwrite, progress_bar)

    return WandBLogger


def _mlflow_logger() -> type:
    """Composer's MLFlowLogger, with metric names a file store can hold.

    A file store keeps metric ``a/b`` in the file ``metrics/a/b``, so ``loss/train`` and ``loss/train/text``
    (a file and a directory of the same name) cannot both exist; there, ``/`` becomes ``.`` in metric names.
    """
    from composer.loggers import MLFlowLogger as ComposerMLFlowLogger

    class MLFlowLogger(ComposerMLFlowLogger):
        def rename(self, key: str) -> str:
            name = super().rename(key)
            return name.replace("/", ".") if self.tracking_uri.startswith("file:") else name

    return MLFlowLogger


def _wandb_args(args: dict[str, Any], run_dir: Path, base: Path) -> dict[str, Any]:
    mode = str(args.pop("mode", "online"))
    if mode not in WANDB_MODES:
        raise MixtureError(f"mode {mode!r} is not a W&B mode", path="loggers.wandb",
                           hint=f"write one of {', '.join(WANDB_MODES)}")
    if mode == "online":
        import wandb

        if not wandb.api.api_key:  # reads WANDB_API_KEY and ~/.netrc, as wandb.init would
            raise MixtureError("W&B online mode needs an API key and none is set", path="loggers.wandb",
                               hint="run `wandb login` or set WANDB_API_KEY, or write mode: offline and "
                               "upload later with `wandb sync`")
    folder = Path(resolve_path(base, str(args.pop("dir", run_dir))) or run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(args.get("tags"), str):
        args["tags"] = [t.strip() for t in str(args["tags"]).split(",") if t.strip()]
    return {**args, "init_kwargs": {"mode": mode, "dir": str(folder)}}


def _mlflow_args(args: dict[str, Any], base: Path) -> dict[str, Any]:
    uri = args.get("tracking_uri")
    if uri is None:
        return args
    uri = str(uri)
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if not scheme or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):  # a plain path (or a drive letter)
        args["tracking_uri"] = Path(resolve_path(base, uri) or uri).as_uri()
    elif scheme not in MLFLOW_SCHEMES:
        raise MixtureError(f"tracking_uri {uri!r}: unknown store scheme {scheme!r}", path="loggers.mlflow",
                           hint="write a directory, file:///abs/dir, sqlite:///runs.db or http(s)://host")
    elif scheme == "sqlite" and uri.startswith("sqlite:///"):
        # SQLite cannot create a database in a missing folder, and MLflow retries opening it for ~100 s
        # before it gives up: say so at once. (sqlite:///rel.db is relative to the working directory.)
        database = uri[len("sqlite:///"):].split("?", 1)[0]
        if database and database != ":memory:" and not Path(database).parent.is_dir():
            raise MixtureError(f"tracking_uri {uri!r}: the folder {str(Path(database).parent)!r} of the SQLite "
                               "database does not exist", path="loggers.mlflow",
                               hint="create the folder, or point the database at an existing one")
    return args


def _mlflow_uri_restorer() -> Any:  # noqa: ANN401 - a callable
    import mlflow

    before = mlflow.get_tracking_uri()
    return lambda: mlflow.set_tracking_uri(before)


def _check_known(section: str, cls: type, names: set[str]) -> None:
    """Refuse arguments that ``cls`` does not take, naming those it does."""
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    unknown = sorted(names - set(accepted))
    if unknown:
        extra = ", mode, dir" if section == "wandb" else ""
        raise MixtureError(f"unknown argument{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                           path=f"loggers.{section}",
                           hint=f"Composer's {cls.__name__} takes {', '.join(accepted)}{extra}")


def _construct(section: str, cls: type, args: dict[str, Any]) -> Any:
    """``cls(**args)``, with unknown arguments and failures to open the store reported as one line."""
    _check_known(section, cls, set(args))
    restore = _mlflow_uri_restorer() if section == "mlflow" else (lambda: None)
    try:
        return cls(**args)
    except Exception as error:  # noqa: BLE001 - a logger's own failure to start, shown as one line
        restore()  # MLflow keeps the failed store as its process-wide tracking URI; later calls would retry it
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MixtureError(f"{cls.__name__} could not start: {first[:300]}", path=f"loggers.{section}",
                           hint="check the arguments (a tracking_uri the store can open, a writable log_dir)"
                           ) from None
