"""The VLM of the study: a decoder LM, a frozen SigLIP vision tower and a 2-layer GELU MLP projector.

The model IS a transformers ``LlavaForConditionalGeneration`` (Llama text model, SigLIP vision tower,
``vision_feature_select_strategy="full"`` because SigLIP has no CLS token), so an export is
``save_pretrained`` and loads in transformers without this project's code. Visual tokens go before the
text: an image sample's ``input_ids`` start with ``V`` copies of the image token, whose embeddings are
replaced by the projected patch features (the same masked scatter LLaVA does).

Feature standardisation (``model.feature_norm: channel``): the vision tower's features pass through a fixed
affine map, ``(x - mean) / std`` per channel (mean and std over every patch of the first training images,
computed once before training: :func:`set_feature_norm`), before the projector. A frozen, randomly
initialised encoder (the demo's) gives features that are ~97% the same for every image (mean cosine
similarity 0.97 between different scenes; the image-dependent part is 3% of their energy), and a small LM
learns the text-only solution first; standardised, the image-dependent part is 69% (docs/training.md).
The map is per channel and not per patch position because only a map shared by all positions folds
exactly into the projector's first linear layer (:func:`fold_feature_norm`), which keeps the export a plain
LLaVA.

:class:`VLM` wraps it for Composer. Its forward differs from LLaVA's in one way that matters for FSDP: the
vision tower and projector run on every step of every rank, on a blank image when the rank's batch has no
image, so that all ranks issue the same collectives (a text-only batch on one rank and an image batch on
another would otherwise hang FSDP's all-gathers). The loss is the mean over label tokens of the per-token
cross entropy; per-source sums are kept for the per-source loss metrics.

A packed batch (:mod:`trainer.batch`) carries ``doc_ids`` and ``position_ids``: the decoder then gets an
explicit 4D boolean mask (:func:`document_mask`: causal within each document, nothing across documents)
and the per-document positions, which transformers' Llama passes to SDPA unchanged (a 4D mask is used
as-is by ``create_causal_mask``). Several images per row (packed rows, or an instruction sample with several
images) need nothing special: features are scattered into the image-token positions in row-major token
order, which is the order the collator stores images in; a count of image tokens other than images x V is
refused rather than scattered wrongly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from composer.models import ComposerModel
from torch import nn
from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

from trainer.batch import IGNORE, Vocab
from trainer.config import ModelConfig

LM_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's appendix shapes (79M, 1.4B) in Llama form, and a tiny one for tests and the demo.
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256},
    "79m": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 4, "intermediate_size": 1536},
    "1b": {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 5632},
}
VISION_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "image_size": 32, "patch_size": 8},
    "siglip-so400m-384": {"hidden_size": 1152, "num_hidden_layers": 27, "num_attention_heads": 16,
                          "intermediate_size": 4304, "image_size": 384, "patch_size": 14},
}
PIXEL_MEAN, PIXEL_STD = 0.5, 0.5  # SigLIP's image processor normalisation


def build_hf_model(cfg: ModelConfig, vocab: Vocab, seq_len: int) -> LlavaForConditionalGeneration:
    """A LLaVA model from the config: presets, overrides, or local pretrained parts."""
    vision = SiglipVisionConfig(**{**VISION_PRESETS[cfg.vision.preset or "tiny"], **cfg.vision.config})
    if cfg.lm.pretrained:
        text = LlamaConfig.from_pretrained(cfg.lm.pretrained)
    else:
        text = LlamaConfig(**{**LM_PRESETS[cfg.lm.preset or "tiny"], "max_position_embeddings": seq_len,
                              "vocab_size": vocab.vocab_size, "bos_token_id": None, "eos_token_id": vocab.eos_id,
                              "pad_token_id": vocab.eos_id, **cfg.lm.config})
    config = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                         image_token_index=vocab.image_token_id, projector_hidden_act=cfg.projector_act,
                         vision_feature_layer=-1, vision_feature_select_strategy="full")
    model = LlavaForConditionalGeneration(config)
    if cfg.lm.pretrained:
        _load_pretrained_lm(model, cfg.lm.pretrained, vocab)
    if cfg.vision.pretrained:
        from transformers import SiglipVisionModel

        tower = SiglipVisionModel.from_pretrained(cfg.vision.pretrained)
        model.model.vision_tower.load_state_dict(tower.state_dict())
    if cfg.vision.frozen:
        model.model.vision_tower.requires_grad_(False)
    return model


def _load_pretrained_lm(model: LlavaForConditionalGeneration, path: str, vocab: Vocab) -> None:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(path)
    if lm.config.vocab_size < vocab.vocab_size:
        lm.resize_token_embeddings(vocab.vocab_size)  # room for the image token
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())


def configure_speed(model: LlavaForConditionalGeneration, *, activation_checkpointing: bool, compile: bool) -> None:
    """Per decoder layer: recompute activations in backward (non-reentrant ``torch.utils.checkpoint``, which
    FSDP2 supports), and/or ``torch.compile`` it in place (module structure and names unchanged, so FSDP2
    units, checkpoints and the export are the same)."""
    lm = model.model.language_model
    if activation_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile:
        for layer in lm.layers:
            layer.compile()


def visual_tokens(model: LlavaForConditionalGeneration) -> int:
    """Visual tokens per image: the vision tower's patches."""
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2


class VLMCore(nn.Module):
    """The LLaVA model behind one ``forward`` (FSDP2's root unit: its hooks gather the embeddings, the
    projector and the LM head; each decoder layer and the vision tower are units of their own)."""

    def __init__(self, hf: LlavaForConditionalGeneration, feature_norm: bool = False) -> None:
        super().__init__()
        self.hf = hf
        self.feature_norm = feature_norm
        if feature_norm:  # buffers: saved in checkpoints, so a resumed or branched run keeps the trunk's
            channels = hf.config.vision_config.hidden_size
            self.register_buffer("feature_mean", torch.zeros(channels))
            self.register_buffer("feature_std", torch.ones(channels))

    def fsdp_wrap_fn(self, module: nn.Module) -> bool:
        """FSDP2 units below the root: each decoder layer and each vision encoder layer (Composer asks this)."""
        return type(module).__name__ in ("LlamaDecoderLayer", "SiglipEncoderLayer")

    def image_features(self, values: torch.Tensor) -> torch.Tensor:
        """Projected patch features ``[images, patches, hidden]``: what LLaVA computes with
        ``vision_feature_layer=-1`` and the ``full`` strategy (the encoder's last hidden state, before SigLIP's
        post-layernorm). Spelled out instead of calling ``get_image_features``, which asks the tower for all
        hidden states (memory) and loses them when the tower's layers are FSDP2 units."""
        hidden = self.vision_features(values)
        if self.feature_norm:
            hidden = (hidden - self.feature_mean) / self.feature_std
        return self.hf.model.multi_modal_projector(hidden)

    def vision_features(self, values: torch.Tensor) -> torch.Tensor:
        """The vision tower's last hidden state ``[images, patches, channels]`` for normalised pixels."""
        vision = self.hf.model.vision_tower.vision_model
        return vision.encoder(inputs_embeds=vision.embeddings(values)).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixels: torch.Tensor,
                has_image: torch.Tensor, doc_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[batch, seq, vocab]``; ``pixels`` are uint8 ``[batch, 3, H, W]`` (or
        ``[batch, images, 3, H, W]``: packed, with ``doc_ids`` and ``position_ids``, or several images a row).
        With ``keep`` (bool ``[batch, seq]``) only the kept positions' logits, ``[kept, vocab]`` in row-major
        order: the LM head runs on those hidden states only."""
        inner = self.hf.model
        embeds = inner.get_input_embeddings()(input_ids)
        if pixels.dim() == 5:  # several images a row: every row's images, in token order
            pixels, has_image = pixels.flatten(0, 1), has_image.flatten()
        if doc_ids is not None:
            attention_mask = document_mask(doc_ids, self.hf.config.text_config._attn_implementation, embeds.dtype)
        any_image = bool(has_image.any())
        chosen = pixels[has_image] if any_image else pixels[:1]
        features = self.image_features(pixel_values(chosen, embeds.dtype)).flatten(0, 1).to(embeds.dtype)
        if any_image:
            tokens = input_ids == self.hf.config.image_token_id
            count = int(tokens.sum())  # one token per feature row (features: [images * V, hidden])
            if count != features.shape[0]:
                raise ValueError(f"{count} image tokens for {len(chosen)} images of "
                                 f"{features.shape[0] // len(chosen)} visual tokens each")
            embeds = embeds.masked_scatter(tokens.unsqueeze(-1).expand_as(embeds), features)
        else:  # keep the tower and projector in the graph on every rank (see the module docstring)
            embeds = embeds + 0.0 * features.sum()
        hidden = inner.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                      use_cache=False).last_hidden_state
        return self.hf.lm_head(hidden if keep is None else hidden[keep])


def pixel_values(pixels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[images, 3, H, W]`` -> the encoder's input (SigLIP's normalisation)."""
    return (pixels.to(dtype) / 255.0 - PIXEL_MEAN) / PIXEL_STD


@torch.no_grad()
def set_feature_norm(core: VLMCore, pixels: torch.Tensor, batch_size: int = 64) -> None:
    """Fix the standardisation's mean and std (per channel, over every patch) from uint8 ``pixels``.

    Raises:
        ValueError: The core has no feature standardisation, or ``pixels`` holds fewer than 2 images.
    """
    if not core.feature_norm or len(pixels) < 2:
        raise ValueError("set_feature_norm needs a core built with feature_norm and at least 2 images")
    device = core.feature_mean.device
    features = torch.cat([core.vision_features(pixel_values(pixels[i:i + batch_size].to(device)))
                          for i in range(0, len(pixels), batch_size)]).flatten(0, 1).double()
    core.feature_mean.copy_(features.mean(0))
    core.feature_std.copy_(features.std(0).clamp(min=1e-6))


def fold_feature_norm(state: dict[str, torch.Tensor], mean: torch.Tensor,
                      std: torch.Tensor) -> dict[str, torch.Tensor]:
    """A LLaVA state dict whose projector takes raw features: ``W (x - m) / s + b = (W / s) x + (b - W m / s)``.

    Exact up to float rounding: the standardisation is per channel, shared by every position, as the
    projector's first linear layer is. Returns a new dict; ``state`` is not changed.
    """
    key = "model.multi_modal_projector.linear_1."
    weight, bias = state[key + "weight"], state[key + "bias"]
    scaled = weight.double() / std.double().to(weight.device)
    folded = bias.double() - scaled @ mean.double().to(weight.device)
    return {**state, key + "weight": scaled.to(weight.dtype), key + "bias": folded.to(bias.dtype)}


def export_state(model: VLM, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LLaVA state dict an export saves: ``state`` (the model's ``hf`` weights) with any
    standardisation folded into the projector, so that a plain LLaVA computes the same logits."""
    core = model.core
    if not core.feature_norm:
        return state
    full = [t.full_tensor() if hasattr(t, "full_tensor") else t for t in (core.feature_mean, core.feature_std)]
    return fold_feature_norm(state, *(t.detach().cpu() for t in full))


def document_mask(doc_ids: torch.Tensor, attn_implementation: str | None, dtype: torch.dtype) -> torch.Tensor:
    """The 4D attention mask ``[rows, 1, seq, seq]`` of packed rows: token i sees token j <= i of its own
    document only. A padding token (doc 0) sees only itself, so no softmax row is empty (SDPA would return
    NaN). Boolean (True = attend) for SDPA; additive (0 / most negative) for the eager implementation.

    Raises:
        MixtureError: For an attention implementation that takes no 4D mask (flash-attention 2).
    """
    seq = doc_ids.shape[1]
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=doc_ids.device).tril()
    self_only = torch.eye(seq, dtype=torch.bool, device=doc_ids.device)
    mask = ((same & causal & (doc_ids[:, None, :] > 0)) | self_only)[:, None]
    if attn_implementation in (None, "sdpa"):
        return mask
    if attn_implementation == "eager":
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    from mixture.errors import MixtureError

    raise MixtureError(f"packing needs SDPA or eager attention, not {attn_implementation!r}",
                       hint="set data.packing: false, or use attn_implementation sdpa")


class VLM(ComposerModel):
    """Composer wrapper: batches from :mod:`trainer.batch`, masked loss, per-source loss sums.

    Args:
        hf: The LLaVA model.
        num_sources: Sources of the schedule (per-source sums are indexed by source id).
        feature_norm: Standardise the vision features before the projector (see the module docstring).
    """

    def __init__(self, hf: LlavaForConditionalGeneration, num_sources: int, feature_norm: bool = False) -> None:
        super().__init__()
        self.core = VLMCore(hf, feature_norm)
        self.num_sources = num_sources
        self.cpu_autocast = False
        # Logits only where a label is predicted (the trainer sets it): the LM head and the cross entropy are
        # about half of a tiny model's step, and most positions of caption and instruction samples (visual
        # tokens, prompts, padding) have no label. Off, forward returns every position's logits.
        self.label_logits_only = False
        self.reset_source_stats()

    @property
    def hf(self) -> LlavaForConditionalGeneration:
        """The LLaVA model (its parameters are DTensors under FSDP)."""
        return self.core.hf

    def reset_source_stats(self) -> None:
        """Zero the per-source sums (loss, label tokens, samples, budget tokens) of the current batch."""
        self.source_stats = torch.zeros(4, self.num_sources, dtype=torch.float64)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixels: torch.Tensor,
               has_image: torch.Tensor, doc_ids: torch.Tensor | None = None,
               position_ids: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[batch, seq, vocab]``, or ``[kept, vocab]`` (see :meth:`VLMCore.forward`)."""
        return self.core(input_ids, attention_mask, pixels, has_image, doc_ids, position_ids, keep)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of every position ``[batch, seq, vocab]``; with ``label_logits_only`` and labels in the
        batch, only of the positions that predict a label, ``[labels, vocab]`` (:meth:`token_losses` takes
        either)."""
        keep = None
        if self.label_logits_only and "labels" in batch:
            keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
            keep[:, :-1] = batch["labels"][:, 1:] != IGNORE
        # Composer autocasts on GPU only (see precision_for)
        with torch.autocast("cpu", dtype=torch.bfloat16) if self.cpu_autocast else contextlib.nullcontext():
            return self.logits(batch["input_ids"], batch["attention_mask"], batch["pixels"], batch["has_image"],
                               batch.get("doc_ids"), batch.get("position_ids"), keep)

    def token_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cross entropy (0 where unlabelled) and the label mask, both ``[batch, seq-1]``, from
        every position's logits ``[batch, seq, vocab]`` or the labelled positions' ``[labels, vocab]``."""
        target = labels[:, 1:]
        mask = target != IGNORE
        if logits.dim() == 2:  # label positions only, row-major: the order of target[mask]
            losses = torch.zeros(target.shape, dtype=torch.float32, device=logits.device)
            losses[mask] = nn.functional.cross_entropy(logits.float(), target[mask], reduction="none")
            return losses, mask
        flat = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                           target.clamp(min=0).flatten(), reduction="none")
        return flat.view_as(target) * mask, mask

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses, mask = self.token_losses(outputs, batch["labels"])
        with torch.no_grad():
            self.source_stats = self.source_stats.to(losses.device)
            self.source_stats += source_sums(losses, mask, batch, self.num_sources)
        return losses.sum() / mask.sum().clamp(min=1)

    def eval_forward(self, batch: dict[str, torch.Tensor], outputs: Any | None = None) -> torch.Tensor:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict[str, Any]:
        return {}


def source_sums(losses: torch.Tensor, mask: torch.Tensor, batch: dict[str, torch.Tensor],
                num_sources: int) -> torch.Tensor:
    """Per-source (loss sum, label tokens, samples, budget tokens) ``[4, num_sources]`` of a batch.

    Works for both layouts: unpacked, row r is sample r; packed, a token's sample is its row's slot
    ``doc_ids - 1`` (the target token's document: the loss at t is charged to the token t+1 it predicts).
    """
    rows = len(losses)
    src = batch["source_id"].view(rows, -1).long()
    if "doc_ids" in batch:
        slot = (batch["doc_ids"][:, 1:] - 1).clamp(min=0)
    else:
        slot = torch.zeros_like(mask, dtype=torch.long)
    per_slot = torch.zeros(2, rows, src.shape[1], dtype=torch.float64, device=losses.device)
    per_slot[0].scatter_add_(1, slot, losses.double())
    per_slot[1].scatter_add_(1, slot, mask.double())
    valid = (src >= 0).flatten()
    stats = torch.stack([per_slot[0].flatten(), per_slot[1].flatten(), torch.ones_like(valid, dtype=torch.float64),
                         batch["budget_tokens"].view(rows, -1).double().flatten()])[:, valid]
    out = torch.zeros(4, num_sources, dtype=torch.float64, device=losses.device)
    return out.index_add_(1, src.flatten()[valid], stats)


def precision_for(model: VLM, precision: str) -> str:
    """The precision to give Composer for the run config's ``precision``. Composer refuses mixed precision
    on CPU, so there ``amp_bf16`` is the model's own bf16 autocast around its forward (weights, gradients
    and optimiser state stay fp32, as with Composer's ``amp_bf16`` on GPU) and Composer runs ``fp32``.

    Raises:
        MixtureError: For ``amp_fp16`` without a GPU (CPUs have no fp16 autocast worth having).
    """
    if torch.cuda.is_available() or precision == "fp32":
        return precision
    if precision != "amp_bf16":
        from mixture.errors import MixtureError

        raise MixtureError(f"precision {precision} needs a GPU", hint="use amp_bf16 or fp32 on CPU")
    model.cpu_autocast = True
    return "fp32"
