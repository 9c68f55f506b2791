"""What ``mixture eval MODEL`` evaluates: an export directory, a run's ``export/``, or else the run's latest
checkpoint, exported first into ``OUT/checkpoint_export`` (that needs the run config: ``--config``)."""

from __future__ import annotations

import json
from pathlib import Path

from mixture import run_dir as rd
from mixture.errors import MixtureError

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def _is_export(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "language_model").is_dir()


def _checked_export(path: Path) -> Path:
    if not any((path / name).is_file() for name in _PROCESSOR_FILES):
        raise MixtureError(f"{path}: an export without a processor (made by an older version)",
                           hint="re-export it: evaluate the run directory with --config RUN.yaml, or re-run training")
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The run's rank-0 checkpoint with the most batches, if any."""
    found = [(batch, p) for p in (run_dir / rd.CHECKPOINTS).glob(rd.checkpoint_file("*"))
             if (batch := rd.checkpoint_batch(p.name)) is not None]
    return max(found)[1] if found else None


def resolve_model(path: Path, out_dir: Path, config: str | None) -> Path:
    """The export directory to evaluate (see the module docstring)."""
    if _is_export(path):
        return _checked_export(path)
    if _is_export(path / rd.EXPORT):
        return _checked_export(path / rd.EXPORT)
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise MixtureError(f"{path}: neither an export nor a run directory with an export or a checkpoint",
                           hint="pass RUN_DIR, RUN_DIR/export, or a directory written by the export")
    if config is None:
        raise MixtureError(f"{path} has no export; its latest checkpoint is {checkpoint.name}",
                           hint="pass --config RUN.yaml (the run's config) to export and evaluate the checkpoint")
    return export_checkpoint(path, checkpoint, config, out_dir / "checkpoint_export")


def export_checkpoint(run_dir: Path, checkpoint: Path, config_path: str, out: Path) -> Path:
    """Export a run's checkpoint with the model its run config describes (reused if already exported)."""
    stamp = out / "checkpoint.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("checkpoint") == str(checkpoint.resolve()):
        return out
    import torch

    from mixture.schedule import load_schedule
    from streaming_data.tokenizer import load_tokenizer
    from trainer.batch import Vocab
    from trainer.build import tokenizer_dir
    from trainer.config import load_run_config
    from trainer.export import save_hf
    from trainer.model import build_hf_model

    config, base = load_run_config(config_path)
    schedule = rd.read_info(run_dir).schedule
    if not schedule:
        raise MixtureError(f"{run_dir}/{rd.RUN_JSON}: no schedule recorded", hint="evaluate a run made by `mixture train`")
    manifest = load_schedule(schedule).manifest.to_json()
    tokenizer = tokenizer_dir(config, base, manifest)
    loaded = load_tokenizer(tokenizer)
    hf = build_hf_model(config.model, Vocab(loaded.vocab_size, loaded.eos_id), int(manifest["seq_len"]))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["model"]
    weights = {k.removeprefix("core.hf."): v for k, v in state.items()}
    try:
        hf.load_state_dict(weights)
    except RuntimeError as exc:
        raise MixtureError(f"{checkpoint}: does not fit the model of {config_path} ({str(exc).splitlines()[0]})",
                           hint="pass the run config this run was trained with") from None
    save_hf(hf.config, weights, out, tokenizer)
    stamp.write_text(json.dumps({"checkpoint": str(checkpoint.resolve())}) + "\n")
    return out
