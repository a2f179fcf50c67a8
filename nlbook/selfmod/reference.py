"""The slow, obviously correct float64 token loop that every fast path of
:class:`nlbook.selfmod.SelfModifyingTitans` is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nlbook._checks import (
    check_finite,
    check_instance,
    check_positive_int,
    check_shape,
    check_tensor,
    entry_point,
)
from nlbook.selfmod.dgd import dgd_step, silu_derivative
from nlbook.selfmod.titans import SelfModifyingTitans


@entry_point
def reference_self_modifying_titans(layer: SelfModifyingTitans, x: torch.Tensor,
                                    chunk_size_memory: int = 1,
                                    chunk_size_others: int = 1) -> torch.Tensor:
    """Token-by-token float64 loop of the rule in :class:`SelfModifyingTitans`.

    Written independently of the fast path: column-convention matrices per (sequence, head),
    one :func:`dgd_step` per layer per token, snapshots refreshed after every C tokens
    (the state at C⌊(t−1)/C⌋, never the future). Returns y (B, T, d_model) in float64.
    """
    check_instance("layer", layer, SelfModifyingTitans, expected="a SelfModifyingTitans")
    check_tensor("x", x, ndim=3, layout="(B, T, d_model)", dtype="float", finite=False)
    check_shape("x", x, (None, None, layer.d_model), "(B, T, d_model) of layer")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must hold at least one sequence and one token, got shape "
                         f"{tuple(x.shape)}")
    check_finite("x", x)
    check_positive_int("chunk_size_memory", chunk_size_memory)
    check_positive_int("chunk_size_others", chunk_size_others)
    layer_params = {name: p.double() for name, p in layer.named_parameters()}

    def step(weight, x_layer, target, eta, alpha):
        if layer.write_rule == "dgd":  # DGD (A-eq 57 with retention): erase along x, then write
            return dgd_step(weight, x_layer, -target, eta, retention=alpha)
        if layer.write_rule == "gd":  # plain gradient step on ½‖W x − target‖², retention α
            error = weight @ x_layer - target
            return alpha * weight - eta * error[:, None] * x_layer[None, :]
        # Hebbian: the plain gradient step on −⟨W x, target⟩ with retention (no erase).
        return alpha * weight + eta * target[:, None] * x_layer[None, :]

    def write(weight, initial_weight, x_layer, target, eta, alpha):
        """A write towards ``target``; retention towards W_0 or towards 0."""
        if not layer.retain_toward_initial:
            return step(weight, x_layer, target, eta, alpha)
        shifted_target = target - initial_weight @ x_layer
        return initial_weight + step(weight - initial_weight, x_layer, shifted_target, eta,
                                     alpha)

    x = x.double()
    batch, length, _ = x.shape
    heads, d = layer.heads, layer.head_dim
    inputs = x @ layer_params["input_projection"]
    queries = x @ layer_params["query_projection"]
    # M_v (or plain Titans' value) reads its own input x_v = W_v x, unless it shares x_k.
    if layer.self_modifying and layer.shared_generator_input:
        value_inputs = inputs
    else:
        value_inputs = x @ layer_params["value_projection"]
    outputs_list = []
    for b in range(batch):
        per_head = []
        for head in range(heads):
            # Column convention: first layer W1 (h, d), second layer W2 (d, h); scalar w (1, d).
            def initial(name: str, head: int = head) -> torch.Tensor:
                return layer_params[name][head].transpose(0, 1)

            running = {"eta": [initial("lr_memory")], "alpha": [initial("retention_memory")],
                       "memory": [initial("main_memory_first"), initial("main_memory_second")]}
            if layer.self_modifying:
                running |= {"k": [initial("key_memory_first"), initial("key_memory_second")],
                            "v": [initial("value_memory_first"),
                                  initial("value_memory_second")]}
            snapshot = {name: list(weights) for name, weights in running.items()}
            initial_weights = {name: list(weights) for name, weights in running.items()}
            lr_bias = layer_params["lr_bias"][head, 0, 0]
            retention_bias = layer_params["retention_bias"][head, 0, 0]

            def mlp(weights: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
                if len(weights) == 1:  # linear scalar memory
                    return weights[0] @ z
                return z + weights[1] @ F.silu(weights[0] @ z)

            head_outputs = []
            for t in range(length):
                x_t = inputs[b, t, head * d:(head + 1) * d]
                x_value = value_inputs[b, t, head * d:(head + 1) * d]
                q_t = F.normalize(queries[b, t, head * d:(head + 1) * d], dim=0)
                if layer.self_modifying:
                    k_t = F.normalize(mlp(snapshot["k"], x_t), dim=0)
                    v_t = F.normalize(mlp(snapshot["v"], x_value), dim=0)
                else:  # plain Titans: fixed linear projections
                    k_t = F.normalize(x_t, dim=0)
                    v_t = F.normalize(x_value, dim=0)
                # softplus underflows to 0 for extreme inputs; η = tiny is the same step
                eta_pre = mlp(snapshot["eta"], x_t)[0] + lr_bias
                eta = (torch.sigmoid(eta_pre) if layer.write_rule == "gd"
                       else F.softplus(eta_pre)).clamp_min(1e-300)
                alpha = torch.sigmoid(mlp(snapshot["alpha"], x_t)[0] + retention_bias)
                written = running if layer.self_modifying else {"memory": None}
                for name in written:
                    frozen = snapshot[name]
                    # v̂ = M(v), a fixed inner target; without self-modification the value v.
                    target = mlp(frozen, v_t) if layer.self_modifying else v_t
                    if len(frozen) == 1:
                        # L = ½(w·k − v̂)²: regress w·k onto the target u = v̂
                        running[name] = [write(running[name][0], initial_weights[name][0], k_t,
                                               target, eta, alpha)]
                        continue
                    pre = frozen[0] @ k_t
                    hidden = F.silu(pre)
                    # L = ½‖k + W2 silu(W1 k) − v̂‖². Local targets: the second layer's output
                    # should be v̂ − k; the first layer's pre-activation should move to
                    # pre − ∂L/∂pre. DGD regresses each layer onto its target u, i.e.
                    # dgd_step with grad_y = −u (A-eq 56–57).
                    error = mlp(frozen, k_t) - target
                    grad_pre = (frozen[1].transpose(0, 1) @ error) * silu_derivative(pre)
                    target_first = pre - grad_pre
                    target_second = target - k_t
                    first_layer = running[name][0]
                    if layer.write_first_layer:
                        first_layer = write(first_layer, initial_weights[name][0], k_t,
                                            target_first, eta, alpha)
                    running[name] = [
                        first_layer,
                        write(running[name][1], initial_weights[name][1], hidden,
                              target_second, eta, alpha),
                    ]
                head_outputs.append(mlp(running["memory"], q_t))  # read after the write
                seen = t + 1
                for name in running:
                    size = chunk_size_memory if name == "memory" else chunk_size_others
                    if seen % size == 0:
                        snapshot[name] = list(running[name])
            per_head.append(torch.stack(head_outputs))
        outputs_list.append(torch.cat(per_head, dim=-1))
    outputs = torch.stack(outputs_list)
    return outputs @ layer_params["output_projection"]
