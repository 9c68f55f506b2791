"""Evaluation on the study's benchmarks in their official layouts (docs/evaluation.md).

Torch-free: :mod:`.answers` (the official answer normalisation), :mod:`.scoring` (the official metrics with
standard errors and baselines), :mod:`.layouts` (readers of each benchmark's files), :mod:`.store`
(resumable answers), :mod:`.models` (what MODEL names), :mod:`.runner` (benchmarks -> answers -> results),
:mod:`.cli` (``mixture eval``). With torch: :mod:`.generate` (batched greedy decoding
with the fine-tuning prompt, imported only when a model generates).
"""
