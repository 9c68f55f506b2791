"""Contract with Streaming's internals: fails loudly if an upgrade moves the override points.

streaming_data/_streaming_compat.py overrides ``StreamingDataset._get_work`` and ``._resume`` and reads a
few attributes. These tests pin what that relies on: the version, the signatures, the call sites in
``__iter__``, that the work is read only through ``len()`` and integer indexing, and (behaviourally) that
a custom order is what comes out.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import write_source  # noqa: E402

import streaming  # noqa: E402
import streaming.base.dataset as dataset_module  # noqa: E402
import streaming_data._streaming_compat as compat  # noqa: E402
StreamingDataset = streaming.StreamingDataset
REPO = Path(__file__).resolve().parents[2]


def test_streaming_version_is_the_pinned_one() -> None:
    assert importlib.metadata.version("mosaicml-streaming") == compat.STREAMING_VERSION
    assert f'"mosaicml-streaming=={compat.STREAMING_VERSION}"' in (REPO / "pyproject.toml").read_text()
    compat.check_streaming_version()


def test_override_points_keep_their_signatures() -> None:
    assert list(inspect.signature(StreamingDataset._get_work).parameters) == ["self", "epoch", "sample_in_epoch"]
    assert list(inspect.signature(StreamingDataset._resume).parameters) == ["self", "world", "epoch"]
    assert list(inspect.signature(StreamingDataset.state_dict).parameters) == ["self", "num_samples", "from_beginning"]
    assert list(inspect.signature(StreamingDataset.load_state_dict).parameters) == ["self", "obj"]


def test_prefix_registration_is_wrapped_where_init_calls_it() -> None:
    """StreamingDataset.__init__ registers its shared-memory prefix through the module name we replace."""
    init_source = inspect.getsource(StreamingDataset.__init__)
    assert "self._shm_prefix_int, self._locals_shm = get_shm_prefix(streams_local, streams_remote," in init_source
    assert dataset_module.get_shm_prefix is compat._registered_prefix
    stock = inspect.signature(compat._stock_get_shm_prefix).parameters
    assert list(stock) == ["streams_local", "streams_remote", "world", "retry"]
    source = inspect.getsource(compat._stock_get_shm_prefix)
    assert source.index("_check_and_find_retrying") < source.index("shm = SharedMemory(name, True, len(data))")


def test_iter_calls_the_override_points() -> None:
    """__iter__ resumes via _resume_incr_epoch -> _resume, then hands _get_work's result to _Iterator."""
    iter_source = inspect.getsource(StreamingDataset.__iter__)
    assert "epoch, sample_in_epoch = self._resume_incr_epoch()" in iter_source
    assert "sample_ids = self._get_work(epoch, sample_in_epoch)" in iter_source
    assert "if not len(sample_ids):" in iter_source
    assert "_Iterator(sample_ids)" in iter_source
    assert "self._parallel_worker_world = self._parallel_rank_world.detect_workers()" in iter_source
    resume_source = inspect.getsource(StreamingDataset._resume_incr_epoch)
    assert "self._resume(self._parallel_worker_world, presumed_epoch)" in resume_source


def test_work_is_read_only_by_len_and_integer_index() -> None:
    """A lazy sequence is enough: _Iterator and the three iteration threads only len() and index it."""
    assert "self.total = len(sample_ids)" in inspect.getsource(dataset_module._Iterator.__init__)
    for method in ("_prepare_thread", "_ready_thread", "_each_sample_id"):
        source = inspect.getsource(getattr(StreamingDataset, method))
        uses = re.findall(r"it\.sample_ids[^\n]*", source)
        assert uses and all(re.fullmatch(r"it\.sample_ids\[it\.\w+_index\]", u) for u in uses), uses


def test_attributes_read_by_the_compat_layer(tmp_path: Path) -> None:
    ds = _Reversed(streams=[streaming.Stream(local=write_source(str(tmp_path), "t", "text", 0, 40))], batch_size=4)
    for name in ("sample_offset_per_stream", "samples_per_stream", "shard_offset_per_stream", "shards",
                 "epoch_size", "length", "next_epoch", "_parallel_rank_world", "cache_usage"):
        assert hasattr(ds, name), name
    assert ds._stream_columns(0) == {"input_ids"}


class _Reversed(compat.OrderDrivenDataset):
    """Serves the samples backwards, resuming at the fixed point (epoch 0, sample 8)."""

    def _worker_order(self, epoch: int, sample_in_epoch: int, place: compat.Placement) -> Sequence[int]:
        return _Lazy(self.num_samples - 1 - sample_in_epoch)

    def _resume_point(self, presumed_epoch: int) -> tuple[int, int]:
        return (0, 8) if presumed_epoch == 0 else (presumed_epoch, 0)


class _Lazy:
    """Not a list or an array: proves Streaming accepts any sequence."""

    def __init__(self, top: int) -> None:
        self.top = top

    def __len__(self) -> int:
        return self.top + 1

    def __getitem__(self, i: int) -> int:
        return self.top - i


def test_custom_order_comes_out(tmp_path: Path) -> None:
    ds = _Reversed(streams=[streaming.Stream(local=write_source(str(tmp_path), "t", "text", 0, 40))], batch_size=4)
    assert [int(s["input_ids"][1]) for s in ds] == list(range(31, -1, -1))
    assert [int(s["input_ids"][1]) for s in ds] == list(range(39, -1, -1))  # next epoch: no resume
