"""The language's second edition: `rest` weights, `include:` of shared files, readable sweeps (issue 18)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixture.api import variants
from mixture.errors import MixtureError
from mixture.load import parse_spec
from mixture.resolve import resolve
from tests.mixture.helpers import compile_text, full_order, spec_text


def _weights(mix: dict, normalize: bool = False) -> dict[str, float]:
    phase = {"name": "a", "duration": "10k tok", "mix": mix, **({"normalize": True} if normalize else {})}
    return resolve(*parse_spec(spec_text([phase]))).phases[0].weights


@given(st.lists(st.floats(min_value=0, max_value=1, allow_subnormal=False), min_size=1, max_size=2))
def test_rest_is_exactly_one_minus_the_others(others):
    names = ["web", "img"][: len(others)]
    mix = dict(zip(names, others))
    if sum(Fraction(repr(w)) for w in others) > 1:
        with pytest.raises(MixtureError, match="nothing is left for 'rest'"):
            _weights({**mix, "chat": "rest"})
        return
    got = _weights({**mix, "chat": "rest"})
    rest = 1 - sum((Fraction(repr(w)) for w in others), Fraction(0))
    assert got["chat"] == float(rest)  # correctly rounded: the exact remainder, not a float subtraction
    assert {k: got[k] for k in names} == {k: float(Fraction(repr(v))) for k, v in mix.items()}


def test_rest_compiles_to_the_same_order_as_the_written_out_weight(tmp_path):
    rest = [{"name": "a", "duration": "60k tok", "mix": {"web": 0.7, "img": "rest"}}]
    written = [{"name": "a", "duration": "60k tok", "mix": {"web": 0.7, "img": 0.3}}]
    a = compile_text(spec_text(rest), tmp_path, "rest")
    b = compile_text(spec_text(written), tmp_path, "written")
    assert a.fingerprint == b.fingerprint
    assert all(np.array_equal(x, y) for x, y in zip(full_order(a), full_order(b)))


def test_rest_may_be_swept_and_may_be_zero():
    assert _weights({"web": 1.0, "img": "rest"}) == {"img": 0.0, "web": 1.0}
    assert _weights({"img": "rest"}) == {"img": 1.0}


@pytest.mark.parametrize("mix, normalize, message", [
    ({"web": "rest", "img": "rest"}, False, "a second 'rest' weight (already on 'web')"),
    ({"web": 0.8, "chat": 0.3, "img": "rest"}, False, "the other weights sum to 1.1, more than 1"),
    ({"web": 0.5, "img": "rest"}, True, "normalize: true with a 'rest' weight"),
    ({"web": "most"}, False, "expected a number or 'rest', got 'most'"),
])
def test_rest_misuse_is_refused_at_its_key(mix, normalize, message):
    with pytest.raises(MixtureError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        _weights(mix, normalize)
    assert all(p.line > 0 and p.path.startswith("phases[0]") for p in info.value.problems)
