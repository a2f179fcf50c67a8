"""Training throughput of HopeLM against a TransformerLM of matched size
(``python -m nlbook.bench hope``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nlbook._checks import check_positive_int
from nlbook.hope.language_model import matched_models
from nlbook.transformer import parameter_count


def _training_step(model: nn.Module, *, batch: int, length: int, vocab_size: int = 65,
                   seed: int = 0) -> Callable[[], None]:
    """One full training step (forward, backward, AdamW) of ``model`` on a fixed random token
    window (B, T) = (batch, length), as a closure."""
    check_positive_int("batch", batch)
    check_positive_int("length", length)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(vocab_size, (batch, length), generator=generator)
    targets = torch.randint(vocab_size, (batch, length), generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training_tokens_per_second(model: nn.Module, *, batch: int, length: int, steps: int = 3,
                               vocab_size: int = 65, seed: int = 0) -> float:
    """Tokens per second of full training steps (forward, backward, AdamW step) of ``model`` on
    random token windows (B, T) = (batch, length), after one warm-up step. One run: timing
    noise is the caller's to judge (the bench prints the load average)."""
    import time

    check_positive_int("steps", steps)
    step = _training_step(model, batch=batch, length=length, vocab_size=vocab_size, seed=seed)
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * length * steps / (time.perf_counter() - start)


def benchmark_hope(*, d_model: int = 144, n_layers: int = 4, n_heads: int = 4,
                   batch: int = 16, length: int = 128, steps: int = 5,
                   second_order: bool = False, compile: bool = False) -> dict[str, float]:
    """Training tokens/s of HopeLM and a TransformerLM at matched parameter count
    (:func:`matched_models`), and their ratio; prints one line per model. With
    ``second_order`` also times HOPE with create_graph through the CMS updates. With
    ``compile`` also times a ``torch.compile``d copy of each model (same initial weights) and
    reports its compile time (the first step's wall time less its median step) apart from its
    step time, and the ratios of compiled HOPE against eager HOPE, the eager Transformer and the
    compiled Transformer.

    One run, with the models' steps interleaved (A, B, A, B, ...) and each model's median step
    time reported: a shared CPU's speed drifts by ±10% over seconds, and interleaving puts both
    models under the same drift (measured here: back-to-back timing moved the ratio between
    0.28 and 0.36 from one run to the next)."""
    import copy
    import time

    check_positive_int("steps", steps)
    hope, transformer = matched_models(65, d_model, n_layers, n_heads, context_length=length)
    rows = [("HopeLM (first-order CMS)", "hope", hope),
            ("TransformerLM", "transformer", transformer)]
    if second_order:
        slow, _ = matched_models(65, d_model, n_layers, n_heads, context_length=length,
                                 first_order=False)
        rows.insert(1, ("HopeLM (second-order CMS)", "hope_second_order", slow))
    if compile:
        rows += [("HopeLM compiled", "hope_compiled", torch.compile(copy.deepcopy(hope))),
                 ("TransformerLM compiled", "transformer_compiled",
                  torch.compile(copy.deepcopy(transformer)))]
    step_functions = {key: _training_step(model, batch=batch, length=length)
                      for _, key, model in rows}
    seconds: dict[str, list[float]] = {key: [] for key in step_functions}
    first_step: dict[str, float] = {}
    for key, step in step_functions.items():
        start = time.perf_counter()
        step()  # warm-up; for a compiled model this step compiles it
        first_step[key] = time.perf_counter() - start
    for _ in range(steps):
        for key, step in step_functions.items():
            start = time.perf_counter()
            step()
            seconds[key].append(time.perf_counter() - start)
    results = {}
    medians = {}
    for label, key, model in rows:
        medians[key] = sorted(seconds[key])[len(seconds[key]) // 2]
        results[key] = batch * length / medians[key]
        count = parameter_count(model).total
        print(f"{label:28s} {count / 1e6:6.3f}M parameters  {results[key]:9.0f} tokens/s "
              f"(median of {steps} steps, {1e3 * medians[key]:.0f} ms; fastest "
              f"{batch * length / min(seconds[key]):.0f})")
    results["ratio"] = results["hope"] / results["transformer"]
    print(f"ratio HOPE / Transformer: {results['ratio']:.2f}  (batch {batch}, context {length}, "
          f"{steps} interleaved timed steps per model)")
    if second_order:
        results["second_order_ratio"] = results["hope_second_order"] / results["hope"]
        print(f"second-order / first-order HOPE: {results['second_order_ratio']:.2f}")
    if compile:
        for key in ("hope_compiled", "transformer_compiled"):
            results[f"{key}_compile_seconds"] = first_step[key] - medians[key]
        print(f"compile time (first step less one step): HOPE "
              f"{results['hope_compiled_compile_seconds']:.0f} s, Transformer "
              f"{results['transformer_compiled_compile_seconds']:.0f} s")
        results["compiled_speedup"] = results["hope_compiled"] / results["hope"]
        results["compiled_ratio"] = results["hope_compiled"] / results["transformer"]
        results["compiled_ratio_compiled"] = (results["hope_compiled"]
                                              / results["transformer_compiled"])
        results["transformer_compiled_speedup"] = (results["transformer_compiled"]
                                                   / results["transformer"])
        print(f"compiled / eager: HOPE {results['compiled_speedup']:.2f}x, Transformer "
              f"{results['transformer_compiled_speedup']:.2f}x")
        print(f"ratio compiled HOPE / eager Transformer: {results['compiled_ratio']:.2f}; "
              f"/ compiled Transformer: {results['compiled_ratio_compiled']:.2f}")
        saved = 1.0 / results["hope"] - 1.0 / results["hope_compiled"]  # s per token
        if saved > 0:
            break_even = results["hope_compiled_compile_seconds"] / (saved * batch * length)
            results["break_even_steps"] = break_even
            print(f"compiling HOPE pays after about {break_even:.0f} training steps "
                  f"(compile time / time saved per step)")
    return results
