"""Feature standardisation (model.feature_norm): what it computes, and that the export folds it exactly."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlavaForConditionalGeneration

from trainer.batch import Vocab
from trainer.config import ModelConfig
from trainer.model import VLM, build_hf_model, export_state, fold_feature_norm, pixel_values, set_feature_norm

VOCAB = Vocab(300, 299)
SEQ_LEN = 40


def _model(seed: int = 0) -> VLM:
    torch.manual_seed(seed)
    model = VLM(build_hf_model(ModelConfig(feature_norm="channel"), VOCAB, SEQ_LEN), 1, feature_norm=True)
    return model.eval()


def _images(num: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (num, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_standardised_features_have_zero_mean_and_unit_std() -> None:
    model = _model()
    images = _images(64, 1)
    set_feature_norm(model.core, images, batch_size=10)  # batches must not change the numbers
    with torch.no_grad():
        raw = model.core.vision_features(pixel_values(images)).flatten(0, 1)
        standard = (raw - model.core.feature_mean) / model.core.feature_std
    assert torch.allclose(standard.mean(0), torch.zeros(raw.shape[1]), atol=1e-4)
    assert torch.allclose(standard.std(0), torch.ones(raw.shape[1]), atol=1e-4)
    assert "core.feature_mean" in model.state_dict() and "core.feature_std" in model.state_dict()


def test_folded_export_gives_the_trained_models_logits() -> None:
    model = _model(3)
    set_feature_norm(model.core, _images(32, 2))
    with torch.no_grad():  # a trained projector: anything but its initialisation
        for param in model.hf.model.multi_modal_projector.parameters():
            param.add_(torch.randn_like(param))
    state = export_state(model, {k: v.detach().clone() for k, v in model.hf.state_dict().items()})
    plain = LlavaForConditionalGeneration(model.hf.config)
    plain.load_state_dict(state)
    plain.eval()
    pixels = _images(2, 5)
    ids = torch.randint(0, 200, (2, SEQ_LEN))
    ids[:, :16] = VOCAB.image_token_id
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = model.logits(ids, mask, pixels, torch.ones(2, dtype=torch.bool))
        theirs = plain(input_ids=ids, attention_mask=mask, pixel_values=pixel_values(pixels)).logits
        unfolded = LlavaForConditionalGeneration(model.hf.config)
        unfolded.load_state_dict(model.hf.state_dict())
        differs = unfolded.eval()(input_ids=ids, attention_mask=mask, pixel_values=pixel_values(pixels)).logits
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, differs, atol=1e-2)  # without the fold the export would be another model


@given(st.integers(0, 2**16), st.integers(1, 6), st.integers(1, 5))
def test_fold_is_the_affine_map_composed_with_the_linear_layer(seed: int, channels: int, out: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(out, channels, generator=generator), torch.randn(out, generator=generator)
    mean, std = torch.randn(channels, generator=generator), torch.rand(channels, generator=generator) + 0.1
    x = torch.randn(7, channels, generator=generator)
    key = "model.multi_modal_projector.linear_1."
    state = {key + "weight": weight, key + "bias": bias}
    folded = fold_feature_norm(state, mean, std)
    expected = ((x - mean) / std) @ weight.T + bias
    assert torch.allclose(x @ folded[key + "weight"].T + folded[key + "bias"], expected, atol=1e-4)
    assert state[key + "weight"] is weight  # the input is not changed
