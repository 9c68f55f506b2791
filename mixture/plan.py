"""Sweep planning: which variants share a prefix of their training, and the run tree that shares it.

Two compiled schedules agree on global batch ``b`` when every position of it holds the same sample of the
same source (by name, data fingerprint and permutation, never by source id: ids are positions in each
schedule's sorted list of used sources), with the same learning rate and the same cumulative budget tokens.
:func:`common_prefix` is the number of leading batches on which two schedules agree: a checkpoint of one
after that many batches is a checkpoint of the other, so a branch may start from it.

Why not compare the orders position by position: the 1B recipe has 1.7B positions and a sample id costs a
Feistel permutation, so one full comparison takes minutes. A one-source phase is analytic (a cursor through
a keyed permutation), so two of them agree on a whole span when source and cursor agree: O(1). Only where a
mixed phase is involved are source ids compared, as bytes of ``order.bin`` in chunks that grow from 64k
positions (a divergence is usually found in the first one). Sample ids are never computed: while two orders
agree, every source has been drawn equally often in both, so the next positions agree exactly when they
read the same source.

Agreement up to batch ``k`` is an equivalence relation, so pairwise prefixes form an ultrametric
(``LCP(a, c) >= min(LCP(a, b), LCP(b, c))``); :func:`plan_sweep` splits the sweep recursively into groups
that agree, each group's shared span becoming one trunk segment (see docs/sweeps.md).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mixture.errors import MixtureError
from mixture.schedule import Schedule
from mixture.schedule_files import PhaseRecord

_FIRST_CHUNK = 1 << 16
_MAX_CHUNK = 1 << 22


class _View:
    """A schedule with what comparisons read more than once: LR, batch tokens, canonical source ids."""

    def __init__(self, schedule: Schedule, registry: dict[tuple, int]) -> None:
        self.schedule = schedule
        self.seq_len = schedule.manifest.seq_len  # the trainer cuts sequences at it: it changes training
        self.num_batches = schedule.num_batches
        self.lr = schedule.lr()
        self.batch_tokens = schedule.batch_tokens()
        # Canonical id of each source: equal only for the same data read through the same permutation.
        idents = [(s.name, s.fingerprint, s.num_samples, s.key, s.block) for s in schedule.sources]
        self.canon = np.array([registry.setdefault(i, len(registry)) for i in idents], np.int64)
        self.live = [p for p in schedule.phases if p.stop > p.start]
        self.starts = [p.start for p in self.live]

    def phase_at(self, i: int) -> PhaseRecord:
        """The phase record holding position ``i``."""
        return self.live[bisect.bisect_right(self.starts, i) - 1]

    def single(self, phase: PhaseRecord) -> int:
        """Canonical id of a one-source phase's source."""
        return int(self.canon[self.schedule.source_names.index(str(phase.source))])

    def cursor(self, phase: PhaseRecord, i: int) -> int:
        """Draw index at position ``i`` of a one-source phase."""
        return phase.cursors[str(phase.source)] + i - phase.start

    def ids(self, start: int, stop: int) -> NDArray[np.int64]:
        """Canonical source ids of positions ``[start, stop)``."""
        return self.canon[self.schedule.source_ids(start, stop)]


def _chunks(start: int, stop: int) -> Iterator[tuple[int, int]]:
    """Spans covering ``[start, stop)`` that double in size: an early difference costs a small read."""
    size = _FIRST_CHUNK
    while start < stop:
        yield start, min(stop, start + size)
        start, size = start + size, min(size * 2, _MAX_CHUNK)


def _first_difference(x: NDArray, y: NDArray) -> int:
    """First index where equal-length arrays differ, or their length."""
    for a, b in _chunks(0, len(x)):
        diff = np.flatnonzero(x[a:b] != y[a:b])
        if len(diff):
            return a + int(diff[0])
    return len(x)


def _span_difference(a: _View, b: _View, start: int, stop: int) -> int:
    """First difference in ``[start, stop)``, a span inside one phase of each schedule, or ``stop``.

    Called only when positions ``[0, start)`` agree. Then every source has been drawn equally often in both,
    and since a position's sample is its source's permutation of that source's draw count, positions agree
    exactly where their canonical source ids do: no sample id needs computing.
    """
    pa, pb = a.phase_at(start), b.phase_at(start)
    if not pa.mixed and not pb.mixed:
        if a.single(pa) != b.single(pb):
            return start
        # Equal by the argument above; were they not (a schedule whose cursors do not start at 0), the
        # safe answer is that the span disagrees.
        return stop if a.cursor(pa, start) == b.cursor(pb, start) else start
    for x, y in _chunks(start, stop):
        cut = _first_difference(a.ids(x, y), b.ids(x, y))
        if cut < y - x:
            return x + cut
    return stop


def _first_size_difference(a: _View, b: _View) -> int:
    """First global batch whose size differs between the two schedules (both start at position 0, so
    batches before it have the same boundaries), or a number past both."""
    cuts = sorted({s.first_batch for v in (a, b) for s in v.schedule.segments if s.num_batches})
    for cut in cuts:
        if cut >= min(a.num_batches, b.num_batches):
            break
        if a.schedule.batch_size_at(cut) != b.schedule.batch_size_at(cut):
            return cut
    return max(a.num_batches, b.num_batches)


def _prefix(a: _View, b: _View) -> int:
    """:func:`common_prefix` of two views."""
    if a.seq_len != b.seq_len:
        return 0
    limit = min(a.num_batches, b.num_batches, _first_size_difference(a, b))
    # batch_tokens[j] is the total before batch j: batches [0, k) agree only if entries 0..k do.
    limit = min(limit, _first_difference(a.batch_tokens[: limit + 1], b.batch_tokens[: limit + 1]) - 1)
    if (a.lr is None) != (b.lr is None):
        return 0
    if a.lr is not None and b.lr is not None:
        limit = min(limit, _first_difference(a.lr[:limit], b.lr[:limit]))
    stop, pos = a.schedule.batch_start(limit), 0
    while pos < stop:
        end = min(a.phase_at(pos).stop, b.phase_at(pos).stop, stop)
        diff = _span_difference(a, b, pos, end)
        if diff < end:
            return a.schedule.batches_before(diff + 1) - 1  # the batch holding ``diff``
        pos = end
    return limit


def common_prefix(a: Schedule, b: Schedule) -> int:
    """Number of leading global batches on which two compiled schedules agree exactly.

    Batches ``[0, k)`` agree when both schedules have the same batch boundaries before ``k`` (the same
    global batch size at every batch: per-phase batch sizes are compared batch by batch) and sequence length
    (the trainer cuts samples at it, so it changes what is trained even where the order is the same) and, at
    every position before batch ``k``'s start, the same sample of the same source (compared by source name, data
    fingerprint, size, permutation key and shuffle block: source ids may differ between schedules), the
    same learning rate at every step before ``k`` (no LR plan in either also agrees; in one only does
    not) and the same cumulative budget tokens at every batch boundary up to ``k``. A single position that
    differs inside a batch ends the prefix before that batch.

    A checkpoint taken after batch ``k`` of ``a`` is then also one of ``b``: this is the test a trainer makes
    before starting a branch of a sweep from a trunk's checkpoint (a branch at batch ``s`` is safe iff
    ``s <= common_prefix(trunk, branch)``).

    Args:
        a: A compiled schedule.
        b: Another compiled schedule.

    Returns:
        ``k``, between 0 and the shorter schedule's number of batches.
    """
    registry: dict[tuple, int] = {}
    return _prefix(_View(a, registry), _View(b, registry))


@dataclass(frozen=True)
class PlanNode:
    """One segment of the run tree: train ``schedule`` from ``start_batch`` to ``stop_batch``.

    Attributes:
        id: ``n0``, ``n1``, ... in pre-order (a parent before its children).
        schedule: Name of the variant whose compiled schedule this segment trains with.
        start_batch: First global batch of the segment.
        stop_batch: Batch after its last one; a checkpoint is saved here.
        parent: Node whose checkpoint at ``start_batch`` this one starts from (None: from scratch).
        variants: Variants whose training passes through this segment, in sweep order.
        finishes: Variants whose schedule ends at ``stop_batch``: this segment's last checkpoint is theirs.
        start_tokens: Budget tokens before ``start_batch`` (cumulative, from ``batch_tokens``).
        stop_tokens: Budget tokens before ``stop_batch``.
    """

    id: str
    schedule: str
    start_batch: int
    stop_batch: int
    parent: str | None
    variants: tuple[str, ...]
    finishes: tuple[str, ...]
    start_tokens: int
    stop_tokens: int

    @property
    def batches(self) -> int:
        """Global batches this segment trains."""
        return self.stop_batch - self.start_batch

    @property
    def tokens(self) -> int:
        """Budget tokens this segment trains."""
        return self.stop_tokens - self.start_tokens


@dataclass(frozen=True)
class PlanRun:
    """Consecutive segments trained with one schedule: one continuous training run.

    Attributes:
        schedule: Variant whose schedule the run trains with (a variant's schedule serves at most one run).
        nodes: Its segments, in order.
        start_batch: Batch it starts at (0, or a branch point of its parent's run).
        stop_batch: Batch it ends at.
        parent: Node whose checkpoint at ``start_batch`` it starts from (None: from scratch).
        save_at: Batches where a checkpoint must be kept: every segment end (a branch point or an end).
    """

    schedule: str
    nodes: tuple[str, ...]
    start_batch: int
    stop_batch: int
    parent: str | None
    save_at: tuple[int, ...]


@dataclass(frozen=True)
class SweepPlan:
    """The run tree of a sweep and what it saves against training every variant from scratch.

    Attributes:
        variants: Variant names in sweep order.
        nodes: Segments in pre-order; each variant is trained by the chain of segments from a root to the
            node that lists it in ``finishes``.
        num_batches: Each variant's length in global batches.
        num_tokens: Each variant's budget tokens.
        global_batch_size: Samples per global batch (0 when the variants' sizes differ: nothing is shared).
    """

    variants: tuple[str, ...]
    nodes: tuple[PlanNode, ...]
    num_batches: dict[str, int]
    num_tokens: dict[str, int]
    global_batch_size: int

    def node(self, node_id: str) -> PlanNode:
        """The node with this id."""
        return next(n for n in self.nodes if n.id == node_id)

    def children(self, node_id: str | None) -> list[PlanNode]:
        """Nodes starting from ``node_id``'s checkpoint (roots for None), in plan order."""
        return [n for n in self.nodes if n.parent == node_id]

    def served_by(self, variant: str) -> PlanNode:
        """The node whose last checkpoint is ``variant``'s final model."""
        return next(n for n in self.nodes if variant in n.finishes)

    def path(self, variant: str) -> list[PlanNode]:
        """The segments that train ``variant``, from batch 0 to its end."""
        chain = [self.served_by(variant)]
        while chain[-1].parent is not None:
            chain.append(self.node(chain[-1].parent))
        return chain[::-1]

    def same_as(self, variant: str) -> str | None:
        """The earlier variant that shares ``variant``'s final segment (identical schedules, or a prefix)."""
        finishers = self.served_by(variant).finishes
        return finishers[0] if finishers[0] != variant else None

    def runs(self) -> list[PlanRun]:
        """Chains of segments that continue one schedule: each is one training run, in dependency order."""
        runs: dict[str, PlanRun] = {}
        for node in self.nodes:
            parent = self.node(node.parent) if node.parent else None
            if parent is not None and parent.schedule == node.schedule:
                run = runs[node.schedule]
                runs[node.schedule] = PlanRun(run.schedule, run.nodes + (node.id,), run.start_batch,
                                              node.stop_batch, run.parent, run.save_at + (node.stop_batch,))
            else:
                runs[node.schedule] = PlanRun(node.schedule, (node.id,), node.start_batch, node.stop_batch,
                                              node.parent, (node.stop_batch,))
        return list(runs.values())

    def totals(self) -> dict[str, float]:
        """Batches and tokens from scratch (every variant alone) and as planned, and what the plan saves."""
        scratch_b, scratch_t = sum(self.num_batches.values()), sum(self.num_tokens.values())
        plan_b, plan_t = sum(n.batches for n in self.nodes), sum(n.tokens for n in self.nodes)
        return {"scratch_batches": scratch_b, "scratch_tokens": scratch_t, "plan_batches": plan_b,
                "plan_tokens": plan_t, "saved_batches": scratch_b - plan_b, "saved_tokens": scratch_t - plan_t,
                "saved_batch_fraction": (scratch_b - plan_b) / max(scratch_b, 1),
                "saved_token_fraction": (scratch_t - plan_t) / max(scratch_t, 1)}


class _Builder:
    """Recursive construction of the run tree over cached pairwise prefixes."""

    def __init__(self, schedules: dict[str, Schedule]) -> None:
        registry: dict[tuple, int] = {}
        self.views = {name: _View(s, registry) for name, s in schedules.items()}
        self.order = {name: i for i, name in enumerate(schedules)}
        self.cache: dict[tuple[str, str], int] = {}
        self.nodes: list[PlanNode] = []

    def lcp(self, a: str, b: str) -> int:
        key = (a, b) if self.order[a] < self.order[b] else (b, a)
        if key not in self.cache:
            self.cache[key] = _prefix(self.views[key[0]], self.views[key[1]])
        return self.cache[key]

    def classes(self, group: list[str], shared: int) -> list[list[str]]:
        """``group`` split into classes that agree beyond batch ``shared`` (an equivalence: see the module)."""
        out: list[list[str]] = []
        for name in group:
            home = next((c for c in out if self.lcp(c[0], name) > shared), None)
            if home is None:
                out.append([name])
            else:
                home.append(name)
        return out

    def grow(self, group: list[str], start: int, parent: PlanNode | None, preferred: str | None) -> None:
        """Add the segments serving ``group`` (variants that agree on batches ``[0, start)``)."""
        rep = preferred if preferred in group else group[0]
        view = self.views[rep]
        shared = min([self.lcp(rep, v) for v in group if v != rep], default=view.num_batches)
        ended = [v for v in group if self.views[v].num_batches == shared]
        # Members of a class agree beyond its start (a lone member is longer than it), so the segment is not empty.
        assert shared > start or parent is None, (group, start, shared)
        parent = self._add(rep, start, shared, parent, group, ended)
        rest = [v for v in group if v not in ended]
        for cls in (self.classes(rest, shared) if rest else []):
            self.grow(cls, shared, parent, rep)

    def _add(self, rep: str, start: int, stop: int, parent: PlanNode | None, group: list[str],
             ended: list[str]) -> PlanNode:
        tokens = self.views[rep].batch_tokens
        node = PlanNode(f"n{len(self.nodes)}", rep, start, stop, parent.id if parent else None, tuple(group),
                        tuple(ended), int(tokens[start]), int(tokens[stop]))
        self.nodes.append(node)
        return node


def plan_sweep(schedules: dict[str, Schedule]) -> SweepPlan:
    """The run tree that trains every variant of a sweep, sharing every prefix the schedules agree on.

    A group of variants that agree on batches ``[0, s)`` shares ``p`` = the smallest pairwise
    :func:`common_prefix` in the group; ``[s, p)`` becomes one segment, trained with one member's schedule
    (the parent segment's, when it is in the group, so a chain of segments is one continuous run), and the
    group splits into the classes that agree beyond ``p``. A variant alone gets its own segment to its end.
    Variants whose schedules end at ``p`` (identical ones, or prefixes of another) finish on that segment.

    Args:
        schedules: Variant name -> compiled schedule, in sweep order (which orders the plan).

    Returns:
        The plan; its segments start only at batches on which every variant they serve agrees with the
        schedule of the segment they start from.

    Raises:
        MixtureError: If there are no schedules.
    """
    if not schedules:
        raise MixtureError("no schedules to plan", hint="a sweep needs at least one variant")
    builder = _Builder(schedules)
    names = list(schedules)
    for cls in builder.classes(names, 0):
        builder.grow(cls, 0, None, None)
    nodes = builder.nodes
    views = builder.views
    sizes = {s.global_batch_size for s in schedules.values()}
    return SweepPlan(tuple(names), tuple(nodes), {n: views[n].num_batches for n in names},
                     {n: int(views[n].batch_tokens[-1]) for n in names}, sizes.pop() if len(sizes) == 1 else 0)
