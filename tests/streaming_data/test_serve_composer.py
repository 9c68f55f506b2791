"""A Composer Trainer fit saves the serving state in its checkpoint; a new Trainer resumes exactly."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import decode_batch, expected_batches  # noqa: E402
from test_serve import B, NUM_BATCHES, dataset, world  # noqa: E402, F401

import composer  # noqa: E402
import torch  # noqa: E402

from mixture.errors import MixtureError  # noqa: E402
from mixture.schedule import load_schedule  # noqa: E402
from streaming_data.serve import build_dataloader  # noqa: E402


def to_tensors(samples: list[dict], table: dict) -> dict:
    rows = torch.tensor(decode_batch(samples, table), dtype=torch.int64)
    return {"position": rows[:, 0], "source_id": rows[:, 1], "sample": rows[:, 2]}


class Recorder(composer.models.ComposerModel):
    """A one-parameter model that records the batches it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[tuple[int, int, int]]] = []

    def forward(self, batch: dict) -> torch.Tensor:
        self.seen.append(list(zip(*(batch[k].tolist() for k in ("position", "source_id", "sample")))))
        return self.weight * batch["position"].float().mean()

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        return outputs.sum()


def fit(path: str, kinds: dict, max_batches: int, save_folder: Path | None = None, load_path: str | None = None,
        **dataset_kwargs) -> Recorder:
    model = Recorder()
    loader = build_dataloader(dataset(path, **dataset_kwargs), num_workers=0,
                              collate_fn=functools.partial(to_tensors, table=kinds))
    trainer = composer.Trainer(
        model=model, train_dataloader=loader, max_duration=f"{max_batches}ba",
        optimizers=torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", progress_bar=False,
        save_folder=str(save_folder) if save_folder else None, save_interval=f"{max_batches}ba",
        save_filename="ep{epoch}-ba{batch}.pt", load_path=load_path, seed=17)
    trainer.fit()
    trainer.close()
    return model


def test_composer_checkpoint_round_trip(world: dict, tmp_path: Path) -> None:
    kinds, path, k = world["kinds"], world["path"], 5
    first = fit(path, kinds, k, save_folder=tmp_path)
    checkpoint = tmp_path / f"ep0-ba{k}.pt"
    state = torch.load(checkpoint, weights_only=False)["state"]["dataset_state"]["train"]
    assert state["samples_consumed"] == k * B
    second = fit(path, kinds, NUM_BATCHES, load_path=str(checkpoint))
    seen = first.seen + second.seen
    want = expected_batches(load_schedule(path))
    assert [[(s, i) for _, s, i in b] for b in seen] == want
    assert [b[0][0] for b in seen] == [g * B for g in range(NUM_BATCHES)]

    with pytest.raises(MixtureError, match="ignore_schedule_fingerprint"):
        fit(world["other"], kinds, NUM_BATCHES, load_path=str(checkpoint))
