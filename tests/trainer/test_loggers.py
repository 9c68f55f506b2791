"""Each metric destination with a real short training run: W&B (offline), MLflow (file and sqlite stores),
TensorBoard, and metrics.jsonl's wall time and throughput with the progress lines of a run that is not on
a terminal; misconfigured loggers as one clear error, before any training."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import train_helpers as h  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("composer")

from mixture.errors import MixtureError  # noqa: E402
from trainer.config import LoggersConfig  # noqa: E402
from trainer.loggers import build_loggers  # noqa: E402
from trainer.run import train  # noqa: E402

NUM_BATCHES = 6


@pytest.fixture(scope="module")
def schedule(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loggers")
    raw = h.make_raw(root / "raw", num_docs=40, num_images=16, num_chats=8)
    h.ingest(raw, root / "data")
    spec = h.mixture(root / "data", text_batches=2, batch=4)
    spec["phases"][1]["duration"], spec["phases"][2]["duration"] = "2ba", "2ba"
    spec["run"]["lr"]["plan"] = f"{NUM_BATCHES}ba"
    return h.compile_to(spec, root / "mix.yaml", root / "schedule")


def _train(tmp_path: Path, schedule: Path, loggers: dict) -> Path:
    config = h.run_config(tmp_path / "run.yaml", schedule, tmp_path / "run", loggers={"console": False, **loggers})
    assert train(config).batches == NUM_BATCHES
    return tmp_path / "run"


def test_wandb_offline_and_tensorboard_record_the_run(tmp_path: Path, schedule: Path) -> None:
    run_dir = _train(tmp_path, schedule, {"wandb": {"mode": "offline", "project": "t"},
                                          "tensorboard": {}})
    offline = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1 and b"loss/train" in offline[0].read_bytes()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    assert [e.step for e in scalars.Scalars("loss/train")] == list(range(1, NUM_BATCHES + 1))


def test_progress_lines_and_throughput(tmp_path: Path, schedule: Path, capfd: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTURE_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("MIXTURE_QUIET", raising=False)
    run_dir = _train(tmp_path, schedule, {})
    lines = [x for x in capfd.readouterr().err.splitlines() if " train run: " in x]
    assert len(lines) == NUM_BATCHES + 2 and lines[-1].endswith(" - done")  # 0/6 at the start
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d train run: \d/6 batches \(", x) for x in lines)
    assert re.search(r"6/6 batches \(100.0%\), [\d.]+k? batches/s, [\d.]+k? tok/s, loss \d+\.\d{4}", lines[-2])
    records = h.metrics(run_dir)
    walls = [m["time/wall"] for m in records]
    assert walls == sorted(walls) and all(m["time/step_s"] > 0 for m in records)
    for m, before in zip(records, [None, *records[:-1]]):
        tokens = sum(v for k, v in m.items() if k.startswith("tokens/train/"))
        tokens -= sum(v for k, v in before.items() if k.startswith("tokens/train/")) if before else 0
        assert m["throughput/tokens_per_s"] == pytest.approx(tokens / m["time/step_s"])


def test_cli_train_shows_its_start_up_until_the_first_batch(tmp_path: Path, schedule: Path,
                                                             capfd: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mixture.cli import main

    monkeypatch.setenv("MIXTURE_PROGRESS_INTERVAL", "0")
    monkeypatch.delenv("MIXTURE_QUIET", raising=False)
    config = h.run_config(tmp_path / "run.yaml", schedule, tmp_path / "run", loggers={"console": False})
    assert main(["train", str(config)]) == 0
    lines = capfd.readouterr().err.splitlines()
    start = [i for i, x in enumerate(lines) if "run.yaml: starting (torch and composer" in x]
    batches = [i for i, x in enumerate(lines) if " train run: " in x]
    assert start and batches and start[-1] < batches[0]  # started, ..., done in Ns, then the batches
    assert re.search(r" train \S+run.yaml: starting \(.*\): started$", lines[start[0]])
    assert re.search(r": done in \d+s$", lines[start[-1]])


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_mlflow_store_holds_every_step(tmp_path: Path, schedule: Path, store: str) -> None:
    uri = (tmp_path / "mlruns").as_uri() if store == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    _train(tmp_path, schedule, {"mlflow": {"tracking_uri": uri, "experiment_name": "mix",
                                           "log_system_metrics": False}})
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mix").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    name = "loss.train" if store == "file" else "loss/train"  # a file store holds `/` as directories
    assert f"{name}.text".replace(".", "/" if store == "sqlite" else ".") in runs[0].data.metrics
    history = client.get_metric_history(runs[0].info.run_id, name)
    assert sorted(m.step for m in history) == list(range(1, NUM_BATCHES + 1))


def test_mlflow_directory_is_relative_to_the_run_config(tmp_path: Path) -> None:
    config = LoggersConfig(mlflow={"tracking_uri": "tracking", "log_system_metrics": False})
    [logger] = build_loggers(config, tmp_path / "run", tmp_path)
    assert logger.tracking_uri == (tmp_path / "tracking").as_uri()


@pytest.mark.parametrize(("section", "args", "expected"), [
    ("wandb", {"projct": "x"}, "loggers.wandb: unknown argument projct (Composer's WandBLogger takes project"),
    ("wandb", {"mode": "offlne"}, "loggers.wandb: mode 'offlne' is not a W&B mode"),
    ("wandb", {"project": "x"}, "loggers.wandb: W&B online mode needs an API key and none is set (run `wandb login`"),
    ("mlflow", {"tracking_uri": "sqlit:///x.db"}, "loggers.mlflow: tracking_uri 'sqlit:///x.db': unknown store"),
    ("mlflow", {"tracking_uri": "sqlite:////no/such/dir/x.db", "log_system_metrics": False},
     "loggers.mlflow: tracking_uri 'sqlite:////no/such/dir/x.db': the folder '/no/such/dir' of the SQLite "
     "database does not exist"),
    ("mlflow", {"tracking_uri": "sqlite:////tmp", "log_system_metrics": False},  # a folder, not a database
     "loggers.mlflow: MLFlowLogger could not start: "),
    ("tensorboard", {"logdir": "x"}, "loggers.tensorboard: unknown argument logdir"),
])
def test_misconfigured_logger_is_one_line(tmp_path: Path, section: str, args: dict, expected: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    if section == "mlflow":  # MLflow retries a database it cannot open 10 times, sleeping 101 s in all
        import mlflow.store.db.utils

        monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)
    with pytest.raises(MixtureError) as error:
        build_loggers(LoggersConfig(**{section: args}), tmp_path / "run", tmp_path)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_composer_and_wandb_agree() -> None:
    """Composer's WandBLogger reads the run URL with ``Run.get_url`` (removed from later wandb)."""
    from wandb.sdk.wandb_run import Run

    assert callable(getattr(Run, "get_url", None))
