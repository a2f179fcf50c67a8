"""A per-timescale trace of a passage read by a HopeLM, for the chapter's explorer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nlbook.cms import CMSRecord
from nlbook.hope.language_model import HopeLM
from nlbook.transformer import check_token_ids


@dataclass
class PassageTrace:
    """Every memory of a HopeLM, token by token, while it reads a passage (batch 1).

    Per layer ℓ (lists indexed by layer), T tokens, H heads:
        lr[ℓ], retention[ℓ]: (T, H) the Titans' η_t and α_t.
        key_change[ℓ], value_change[ℓ]: (T, H) ‖k_t − k_{t−1}‖, ‖v_t − v_{t−1}‖ (generated keys
            and values; row 0 is ‖k_0‖).
        memory_drift[ℓ]: (T, H) ‖S_t − S_0‖ of the main memory's written layer (S_0 the
            meta-learned initial state); generator_drift[ℓ]: (T, H) the same for M_k, M_v,
            M_η, M_α together.
        cms_drift[ℓ]: (T, K) ‖θ_t − θ_0‖ per CMS block, chain order (all its tensors);
            cms_updates[ℓ]: per block the token counts at which it was updated;
            cms_levels[ℓ]: per block its level (1 = fastest, ``cms.level_of_block``);
            cms_labels[ℓ]: per block the label plots show (``cms.block_labels()``).
    token_loss: (T,) the model's next-token loss at each position (NaN for the last).
    """

    lr: list[torch.Tensor] = field(default_factory=list)
    retention: list[torch.Tensor] = field(default_factory=list)
    key_change: list[torch.Tensor] = field(default_factory=list)
    value_change: list[torch.Tensor] = field(default_factory=list)
    memory_drift: list[torch.Tensor] = field(default_factory=list)
    generator_drift: list[torch.Tensor] = field(default_factory=list)
    cms_drift: list[torch.Tensor] = field(default_factory=list)
    cms_updates: list[list[list[int]]] = field(default_factory=list)
    cms_levels: list[tuple[int, ...]] = field(default_factory=list)
    cms_labels: list[list[str]] = field(default_factory=list)
    token_loss: torch.Tensor | None = None

    def layer(self, index: int) -> dict:
        """The arrays of layer ``index`` as keyword arguments of
        :func:`nlbook.viz.plot_hope_timescales` (plus ``token_loss``)."""
        if not 0 <= index < len(self.lr):
            raise ValueError(f"index must lie in [0, {len(self.lr)}), got {index!r}")
        return {"lr": self.lr[index], "retention": self.retention[index],
                "key_change": self.key_change[index], "value_change": self.value_change[index],
                "memory_drift": self.memory_drift[index],
                "generator_drift": self.generator_drift[index],
                "cms_drift": self.cms_drift[index], "cms_updates": self.cms_updates[index],
                "cms_levels": self.cms_levels[index], "cms_labels": self.cms_labels[index],
                "token_loss": self.token_loss}


def _norm_per_head(tensor: torch.Tensor) -> torch.Tensor:
    """(1, H, ...) → (H,) Frobenius norm per head."""
    return tensor[0].flatten(1).norm(dim=1)


@torch.no_grad()
def trace_passage(model: HopeLM, idx: torch.Tensor) -> PassageTrace:
    """Feed idx (1, T) to ``model`` one token at a time (exact streaming) and record every
    memory after each token (see :class:`PassageTrace`). Cost: T calls of one token."""
    check_token_ids("idx", idx, model.vocab_size, None)
    if idx.shape[0] != 1:
        raise ValueError(f"idx must hold one sequence (1, T), got {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    length, layers = idx.shape[1], model.n_layers
    records = [CMSRecord(block.cms.num_blocks) for block in model.blocks]
    per_layer: dict[str, list[list[torch.Tensor]]] = {
        name: [[] for _ in range(layers)] for name in
        ("lr", "retention", "key", "value", "memory_drift", "generator_drift", "cms_drift")}
    losses = torch.full((length,), math.nan)
    initial = [block.titans.initial_state(1) for block in model.blocks]
    state = None
    try:
        for t in range(length):
            logits, state, traces = model.stream(idx[:, t:t + 1], state, record=records,
                                                 return_trace=True)
            if t + 1 < length:
                losses[t] = F.cross_entropy(logits[0, -1:].float(), idx[0, t + 1:t + 2]).item()
            for layer, (block, trace) in enumerate(zip(model.blocks, traces, strict=True)):
                titans_state = state.layers[layer].titans
                per_layer["lr"][layer].append(trace["lr"][0, :, -1])
                per_layer["retention"][layer].append(trace["retention"][0, :, -1])
                per_layer["key"][layer].append(trace["keys"][0, :, -1])
                per_layer["value"][layer].append(trace["values"][0, :, -1])
                per_layer["memory_drift"][layer].append(_norm_per_head(
                    titans_state.memory_second - initial[layer].memory_second))
                generator = torch.cat([
                    (titans_state.generator_first - initial[layer].generator_first)[0]
                    .flatten(1),
                    (titans_state.generator_second - initial[layer].generator_second)[0]
                    .flatten(1)], dim=1)
                per_layer["generator_drift"][layer].append(generator.norm(dim=1))
                cms_state = state.layers[layer].cms
                drift = []
                for index in range(block.cms.num_blocks):
                    start = block.cms.initial_parameters(index, 1)
                    squares = sum((cms_state.parameters[index][name] - start[name]).pow(2).sum()
                                  for name in start)
                    drift.append(torch.as_tensor(squares).sqrt())
                per_layer["cms_drift"][layer].append(torch.stack(drift))
    finally:
        model.train(was_training)
    result = PassageTrace(token_loss=losses)
    for layer in range(layers):
        keys = torch.stack(per_layer["key"][layer])                          # (T, H, d)
        values = torch.stack(per_layer["value"][layer])
        previous_keys = torch.cat([torch.zeros_like(keys[:1]), keys[:-1]])
        previous_values = torch.cat([torch.zeros_like(values[:1]), values[:-1]])
        result.lr.append(torch.stack(per_layer["lr"][layer]))
        result.retention.append(torch.stack(per_layer["retention"][layer]))
        result.key_change.append((keys - previous_keys).norm(dim=-1))
        result.value_change.append((values - previous_values).norm(dim=-1))
        result.memory_drift.append(torch.stack(per_layer["memory_drift"][layer]))
        result.generator_drift.append(torch.stack(per_layer["generator_drift"][layer]))
        result.cms_drift.append(torch.stack(per_layer["cms_drift"][layer]))
        cms = model.blocks[layer].cms
        result.cms_updates.append([records[layer].update_steps(index)
                                   for index in range(cms.num_blocks)])
        result.cms_levels.append(cms.level_of_block)
        result.cms_labels.append(cms.block_labels())
    return result
