"""Bad input gets one clear error, everywhere: the public API and the command lines, fuzzed.

``test_public_api_under_fuzzing`` walks the nlbook package, collects every callable that a
module exports (its ``__all__``, or the public names it defines when it has none; nlbook.exercises
is left to its own tests), and fails when one has no entry in ``REGISTRY`` below: a new public
function needs one valid example call and a spec per argument. Each entry is called once as
given, then once per mutation of one argument (see tests/_fuzz.py): rank ±1, dtypes, empty axes,
NaN/inf, huge values, None, strings, bools for ints, batch mismatches, gates out of range, token
ids out of range, chunk sizes 0/−1/1.5/T+3/100000; non-contiguous and requires_grad copies must
give the same result. Anything other than a valid result or a ValueError/TypeError naming the
argument fails the test (a call past its CPU-time budget is a hang: load is not). Seeded,
tiny sizes.

``test_command_lines_with_bad_arguments`` runs every ``python -m nlbook.*`` entry point in
process with bad arguments: each must print one ``error: ...`` line and exit non-zero, without
a traceback, and without training first.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
import math
import os
import pkgutil
import sys
import tempfile
import time
import typing
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _fuzz import (
    EITHER,
    REFUSE,
    Bool,
    Choice,
    Device,
    Entry,
    File,
    Float,
    FloatList,
    Free,
    Func,
    Gen,
    Int,
    IntList,
    Lazy,
    Obj,
    OutFile,
    Str,
    Tensor,
    run_registry,
    summarise,
)

import nlbook
from nlbook import (
    cms,
    data,
    hope,
    memory,
    ngram,
    optim,
    recall,
    selfmod,
    transformer,
    transformer_plus_plus,
)
from nlbook.hope import carry
from nlbook.selfmod import chunk_kernel
from nlbook.tasks import continual, formal_languages, next_character
from nlbook.tasks import recall as task_recall

REGISTRY: dict[str, Entry] = {}
EXCLUDED_PACKAGES = ("nlbook.exercises",)  # redesigned elsewhere; its own tests check it


def key_of(target) -> str:
    return f"{target.__module__}:{target.__qualname__}"


def entry(target, make, specs=None, **options) -> None:
    REGISTRY[key_of(target)] = Entry(call=target, make=make, specs=specs or {}, **options)


def method(name: str, call, make, specs=None, **options) -> None:
    REGISTRY[name] = Entry(call=call, make=make, specs=specs or {}, **options)


def exempt(target, reason: str) -> None:
    REGISTRY[key_of(target)] = Entry(call=target, make=dict, specs={}, exempt=reason)


RECORD = "a plain record built by nlbook; the functions that receive it check it"
ERROR = "an exception class"
COMMAND_LINE = "a command line: test_command_lines_with_bad_arguments runs it"


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rand(*shape, seed=0, low=0.0, high=1.0, dtype=torch.float32):
    values = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return low + (high - low) * values


def tokens(batch, length, vocab, seed=0):
    return torch.randint(vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def shape_is(path, expected):
    """A check: ``path(result)`` has shape ``expected(arguments)``."""

    def check(result, arguments):
        try:
            got = tuple(path(result).shape)
            want = tuple(expected(arguments))
        except Exception as error:
            return f"result of unexpected structure ({type(error).__name__}: {error})"
        return None if got == want else f"result shape {got}, expected {want}"

    return check


def all_of(*checks):
    def check(result, arguments):
        for one in checks:
            problem = one(result, arguments)
            if problem:
                return problem
        return None

    return check


# ============================================================================================
# nlbook (the package)

exempt(nlbook.SetupInfo, RECORD)
entry(nlbook.setup, lambda: dict(seed=0, threads=1, verbose=False),
      {"seed": Int(low=0, role="seed"), "threads": Int(low=1, none=True, role="cost"),
       "verbose": Bool()}, same=False)
entry(nlbook.smoke, lambda: dict(full=2000, small=20), {"full": Free(), "small": Free()})
entry(nlbook.is_smoke, dict)
entry(nlbook.is_headless, dict)

# ============================================================================================
# nlbook.memory (B, H, T, d) = (2, 1, 5, 3)


QKV = dict(q=Tensor(batch="B"), k=Tensor(batch="B"), v=Tensor(batch="B"))


def qkv(length=5):
    return dict(q=randn(2, 1, length, 3, seed=1), k=F.normalize(randn(2, 1, length, 3, seed=2),
                                                                dim=-1),
                v=randn(2, 1, length, 3, seed=3))


def memory_shapes(result, arguments):
    output, state = result[0], result[1]
    if isinstance(state, tuple):
        state = state[0]
    v = arguments["v"]
    if tuple(output.shape) != tuple(v.shape):
        return f"output shape {tuple(output.shape)}, expected {tuple(v.shape)}"
    want = (*v.shape[:2], arguments["q"].shape[-1], v.shape[-1])
    if tuple(state.shape) != want:
        return f"state shape {tuple(state.shape)}, expected {want}"
    return None


CHUNK = Int(low=1, role="chunk", length=5, none=True)
entry(memory.linear_attention,
      lambda: dict(**qkv(), decay=rand(2, 1, 5, low=0.5), initial_state=randn(2, 1, 3, 3),
                   chunk_size=2, return_states=False),
      {**QKV, "decay": Tensor(gate=(0, 1), none=True, batch="B"),
       "initial_state": Tensor(none=True, batch="B"), "chunk_size": CHUNK,
       "return_states": Bool()}, check=memory_shapes)
entry(memory.delta_rule,
      lambda: dict(**qkv(), beta=rand(2, 1, 5), decay=rand(2, 1, 5, low=0.5),
                   initial_state=randn(2, 1, 3, 3), chunk_size=2, return_states=True),
      {**QKV, "beta": Tensor(gate=(0, 2), batch="B"),
       "decay": Tensor(gate=(0, 1), none=True, batch="B"),
       "initial_state": Tensor(none=True, batch="B"), "chunk_size": CHUNK,
       "return_states": Bool()}, check=memory_shapes)
TITANS_GATES = {"lr": Tensor(gate=(0, 1), batch="B"), "momentum": Tensor(gate=(0, 1), batch="B"),
                "forget": Tensor(gate=(0, 1), batch="B")}


def titans_gates():
    return dict(lr=rand(2, 1, 5, high=0.5, seed=4), momentum=rand(2, 1, 5, seed=5),
                forget=rand(2, 1, 5, high=0.2, seed=6))


entry(memory.titans_memory,
      lambda: dict(**qkv(), **titans_gates(), initial_state=(randn(2, 1, 3, 3), randn(2, 1, 3, 3)),
                   chunk_size=2, return_states=False),
      {**QKV, **TITANS_GATES, "initial_state": Obj(none=True), "chunk_size": CHUNK,
       "return_states": Bool()}, check=memory_shapes,
      extra=[("initial_state", "a pair of one wrong shape", (randn(2, 1, 3, 3), randn(2, 3, 3)),
              REFUSE),
             ("initial_state", "a triple", (randn(2, 1, 3, 3),) * 3, REFUSE)])
entry(memory.reference_titans_memory,
      lambda: dict(**qkv(), **titans_gates(), initial_state=None, frozen_chunk_size=2,
                   return_states=False),
      {**QKV, **TITANS_GATES, "initial_state": Obj(none=True),
       "frozen_chunk_size": Int(low=1, role="chunk", length=5), "return_states": Bool()},
      check=memory_shapes)
entry(memory.softmax_attention, lambda: dict(**qkv(), causal=True, window=3),
      {**QKV, "causal": Bool(), "window": Int(low=1, role="chunk", length=5, none=True)},
      check=shape_is(lambda r: r, lambda a: a["v"].shape))
entry(memory.softmax_attention_reference, lambda: dict(**qkv(), causal=True),
      {**QKV, "causal": Bool()}, check=shape_is(lambda r: r, lambda a: a["v"].shape))
entry(memory.benchmark_memory,
      lambda: dict(batch=1, heads=1, length=4, dim=2, chunk_sizes=(2,), repeats=1, seed=0),
      {"batch": Int(low=1), "heads": Int(low=1), "length": Int(low=1), "dim": Int(low=1),
       "chunk_sizes": IntList(item=Int(low=1)), "repeats": Int(low=1, role="cost"),
       "seed": Int(low=0, role="seed")}, same=False)

# ============================================================================================
# nlbook.transformer: V = 7, (B, T) = (2, 5)


V = 7


@functools.cache
def small_transformer():
    torch.manual_seed(0)
    return transformer.TransformerLM(V, 8, 1, 2, context_length=8, mlp_ratio=2)


IDS = Tensor(kind="int", vocab=V, batch="B")
TARGETS = Tensor(kind="int", vocab=V, ignore=True, batch="B", none=True)
exempt(transformer.ParameterCount, RECORD)
entry(transformer.TransformerLM,
      lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2, context_length=8,
                   mlp_ratio=2, dropout=0.0, bias=False),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1), "mlp_ratio": Int(low=1),
       "dropout": Float(0, 1, high_inclusive=False), "bias": Bool()}, same=False)
LOGITS_SHAPE = shape_is(lambda r: r[0], lambda a: (*a["idx"].shape, V))
method("TransformerLM.forward", lambda idx, targets: small_transformer()(idx, targets),
       lambda: dict(idx=tokens(2, 5, V), targets=tokens(2, 5, V, seed=1)),
       {"idx": IDS, "targets": TARGETS}, check=LOGITS_SHAPE)
SAMPLING = {"temperature": Float(low=0), "top_k": Int(low=1, none=True),
            "top_p": Float(0, 1, low_inclusive=False, none=True), "generator": Gen(none=True)}


def sampling():
    return dict(temperature=0.8, top_k=3, top_p=0.9, generator=torch.Generator().manual_seed(0))


method("TransformerLM.generate", lambda **a: small_transformer().generate(**a),
       lambda: dict(idx=tokens(2, 3, V), max_new_tokens=3, **sampling()),
       {"idx": Tensor(kind="int", vocab=V), "max_new_tokens": Int(low=0, role="cost"),
        **SAMPLING}, check=shape_is(lambda r: r, lambda a: (a["idx"].shape[0],
                                                             a["idx"].shape[1] + 3)))
entry(transformer.check_token_ids,
      lambda: dict(name="idx", ids=tokens(2, 5, V), vocab_size=V, context_length=8,
                   allow_ignore_index=False),
      {"name": Free(), "ids": Tensor(kind="int", vocab=V), "vocab_size": Int(low=1),
       "context_length": Int(low=1, none=True), "allow_ignore_index": Bool()},
      aliases={"ids": ("idx",)})
entry(transformer.check_generation_arguments,
      lambda: dict(idx=tokens(2, 5, V), max_new_tokens=3),
      {"idx": Tensor(kind="int", vocab=None), "max_new_tokens": Int(low=0, role="cost")})
entry(transformer.check_targets,
      lambda: dict(idx=tokens(2, 5, V), targets=tokens(2, 5, V), vocab_size=V),
      {"idx": Tensor(kind="int", batch="B"), "targets": TARGETS, "vocab_size": Int(low=1)})
entry(transformer.generate_tokens,
      lambda: dict(model=small_transformer(), idx=tokens(2, 3, V), max_new_tokens=3,
                   **sampling()),
      {"model": Obj(), "idx": Tensor(kind="int", vocab=V),
       "max_new_tokens": Int(low=0, role="cost"), **SAMPLING},
      check=shape_is(lambda r: r, lambda a: (a["idx"].shape[0], a["idx"].shape[1] + 3)))
entry(transformer.language_model_loss,
      lambda: dict(logits=randn(2, 5, V), targets=tokens(2, 5, V)),
      {"logits": Tensor(batch="B"), "targets": TARGETS},
      extra=[("targets", "every target -1", torch.full((2, 5), -1), REFUSE)])
entry(transformer.parameter_count, lambda: dict(model=small_transformer()), {"model": Obj()})
entry(transformer.reference_causal_attention, lambda: qkv(), QKV,
      check=shape_is(lambda r: r, lambda a: a["v"].shape))
entry(transformer.sample_next_token,
      lambda: dict(logits=randn(2, V), **sampling()),
      {"logits": Tensor(), **SAMPLING},
      check=shape_is(lambda r: r, lambda a: (a["logits"].shape[0], 1)),
      extra=[("temperature", "1e-40", 1e-40, EITHER),
             ("logits", "a row of -inf", torch.full((2, V), -math.inf), REFUSE),
             ("logits", "some -inf", torch.tensor([[0.0, -math.inf] * 3 + [1.0]] * 2), EITHER)])


# nlbook.transformer_plus_plus: the same sizes (d_head = 4)


@functools.cache
def small_transformer_plus_plus():
    torch.manual_seed(0)
    return transformer_plus_plus.TransformerPlusPlusLM(V, 8, 1, 2, context_length=8,
                                                       mlp_ratio=2)


entry(transformer_plus_plus.TransformerPlusPlusLM,
      lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2, context_length=8,
                   mlp_ratio=2, dropout=0.0, rotary_base=10000.0, window=4),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1), "mlp_ratio": Int(low=1),
       "dropout": Float(0, 1, high_inclusive=False),
       "rotary_base": Float(1, low_inclusive=False), "window": Int(low=1, none=True)},
      same=False)
method("TransformerPlusPlusLM.forward",
       lambda idx, targets: small_transformer_plus_plus()(idx, targets),
       lambda: dict(idx=tokens(2, 5, V), targets=tokens(2, 5, V, seed=1)),
       {"idx": IDS, "targets": TARGETS}, check=LOGITS_SHAPE)
method("TransformerPlusPlusLM.generate", lambda **a: small_transformer_plus_plus().generate(**a),
       lambda: dict(idx=tokens(2, 3, V), max_new_tokens=3, **sampling()),
       {"idx": Tensor(kind="int", vocab=V), "max_new_tokens": Int(low=0, role="cost"),
        **SAMPLING}, check=shape_is(lambda r: r, lambda a: (a["idx"].shape[0],
                                                             a["idx"].shape[1] + 3)))
ROTARY_POSITIONS = Tensor(integers=True)
entry(transformer_plus_plus.rotary_angles,
      lambda: dict(positions=torch.arange(3.0), d_head=4, base=10000.0),
      {"positions": ROTARY_POSITIONS, "d_head": Int(low=1),
       "base": Float(1, low_inclusive=False)},
      check=shape_is(lambda r: r, lambda a: (a["positions"].shape[0], a["d_head"] // 2)),
      extra=[("d_head", "odd", 3, REFUSE)])
entry(transformer_plus_plus.apply_rotary,
      lambda: dict(x=randn(2, 3, 4), positions=torch.arange(3.0), base=10000.0),
      {"x": Tensor(rank=False), "positions": ROTARY_POSITIONS,
       "base": Float(1, low_inclusive=False)},
      check=shape_is(lambda r: r, lambda a: a["x"].shape),
      extra=[("x", "odd d_head", randn(2, 3, 5), REFUSE)])
entry(transformer_plus_plus.swiglu_hidden_width, lambda: dict(d_model=48, mlp_ratio=4),
      {"d_model": Int(low=1), "mlp_ratio": Int(low=1)})

# ============================================================================================
# nlbook.selfmod: W (2, 3, 4) (a batch of 2 layers d_out = 3, d_in = 4)


DGD = {"W": Tensor(batch="B"), "x": Tensor(batch="B"), "grad_y": Tensor(batch="B"),
       "lr": Float(low=0, low_inclusive=False), "retention": Float(0, 1)}


def dgd_arguments():
    return dict(W=randn(2, 3, 4), x=randn(2, 4, seed=1), grad_y=randn(2, 3, seed=2), lr=0.5)


W_SHAPE = shape_is(lambda r: r, lambda a: a["W"].shape)
LR_TENSORS = [("lr", "a tensor of shape (3,)", torch.full((3,), 0.5), REFUSE),
              ("lr", "a tensor of shape (2,)", torch.full((2,), 0.5), EITHER),
              ("lr", "a NaN tensor", torch.tensor(math.nan), REFUSE),
              ("lr", "a tensor with a zero", torch.tensor([0.5, 0.0]), REFUSE)]
entry(selfmod.dgd_step, lambda: dict(**dgd_arguments(), retention=0.9), DGD, check=W_SHAPE,
      extra=[*LR_TENSORS, ("retention", "a tensor of shape (3,)", torch.full((3,), 0.9), REFUSE),
             ("retention", "a tensor of shape (2,)", torch.full((2,), 0.9), EITHER)])
entry(selfmod.dgd_proximal_closed_form, dgd_arguments,
      {key: value for key, value in DGD.items() if key != "retention"}, check=W_SHAPE,
      extra=LR_TENSORS)
entry(selfmod.dgd_step_rank_k,
      lambda: dict(W=randn(2, 3, 4), X=randn(2, 2, 4, seed=1), grad_Y=randn(2, 2, 3, seed=2),
                   lr=0.5),
      {"W": Tensor(batch="B"), "X": Tensor(batch="B"), "grad_Y": Tensor(batch="B"),
       "lr": Float(low=0, low_inclusive=False)}, check=W_SHAPE, extra=LR_TENSORS)
entry(selfmod.silu_derivative, lambda: dict(a=randn(2, 3)), {"a": Tensor(rank=False)},
      check=shape_is(lambda r: r, lambda a: a["a"].shape))
entry(selfmod.correlated_stream_experiment,
      lambda: dict(length=6, dim=3, correlation=0.9, lrs=(0.5,), seed=0, noise=0.0),
      {"length": Int(low=1), "dim": Int(low=1), "correlation": Float(-1, 1),
       "lrs": FloatList(item=Float(low=0, low_inclusive=False)), "seed": Int(low=0, role="seed"),
       "noise": Float(low=0)})
def chunk_shapes(result, arguments):
    lead = torch.broadcast_shapes(
        arguments["state"].shape[:-2], arguments["keys"].shape[:-2],
        arguments["values"].shape[:-2], arguments["beta"].shape[:-1],
        arguments["log_alpha"].shape[:-1])
    want = (*lead, *arguments["state"].shape[-2:])
    if tuple(result[0].shape) != want:
        return f"state shape {tuple(result[0].shape)}, expected {want}"
    if arguments["queries"] is None:
        return None if result[1] is None else "reads without queries"
    reads = (*lead, arguments["keys"].shape[-2], arguments["state"].shape[-1])
    return None if tuple(result[1].shape) == reads else (
        f"reads shape {tuple(result[1].shape)}, expected {reads}")


entry(chunk_kernel.gated_delta_chunk,
      lambda: dict(state=randn(2, 3, 4), keys=F.normalize(randn(2, 5, 3, seed=1), dim=-1),
                   values=randn(2, 5, 4, seed=2), beta=rand(2, 5, seed=3),
                   log_alpha=-rand(2, 5, seed=4, high=0.2), queries=randn(2, 5, 3, seed=5)),
      # Leading dims of size 1 broadcast (documented); an axis more or fewer is refused (it
      # gave results of another shape), and so is beta > 1.
      {"state": Tensor(), "keys": Tensor(), "values": Tensor(),
       "beta": Tensor(gate=(0, 1)), "log_alpha": Tensor(gate=(-math.inf, 0)),
       "queries": Tensor(none=True)}, check=chunk_shapes)
entry(chunk_kernel.block_sizes, lambda: dict(length=70, block=32),
      {"length": Int(low=0), "block": Int(low=1, none=True)})


@functools.cache
def small_titans():
    return selfmod.SelfModifyingTitans(4, 2, chunk_size_memory=2, chunk_size_others=2,
                                       generator=torch.Generator().manual_seed(0))


exempt(selfmod.SelfModifyingState, RECORD)
entry(selfmod.SelfModifyingTitans,
      lambda: dict(d_model=4, heads=2, head_dim=None, hidden=None, chunk_size_memory=2,
                   chunk_size_others=2, retain_toward_initial=True, write_first_layer=False,
                   generator=torch.Generator().manual_seed(0)),
      {"d_model": Int(low=1), "heads": Int(low=1), "head_dim": Int(low=1, none=True),
       "hidden": Int(low=1, none=True), "chunk_size_memory": Int(low=1, role="chunk"),
       "chunk_size_others": Int(low=1, role="chunk"), "retain_toward_initial": Bool(),
       "write_first_layer": Bool(), "generator": Gen(none=True)}, same=False)
method("SelfModifyingTitans.forward",
       lambda x, state, return_trace, keep_state: small_titans()(
           x, state, return_trace=return_trace, keep_state=keep_state),
       lambda: dict(x=randn(2, 5, 4), state=None, return_trace=False, keep_state=True),
       {"x": Tensor(), "state": Obj(none=True), "return_trace": Bool(), "keep_state": Bool()},
       check=shape_is(lambda r: r[0], lambda a: a["x"].shape),
       extra=[("state", "a state for batch 1", small_titans().initial_state(1), REFUSE)])
method("SelfModifyingTitans.initial_state", lambda batch: small_titans().initial_state(batch),
       lambda: dict(batch=2), {"batch": Int(low=1)})
entry(selfmod.reference_self_modifying_titans,
      lambda: dict(layer=small_titans(), x=randn(1, 3, 4), chunk_size_memory=2,
                   chunk_size_others=1),
      {"layer": Obj(), "x": Tensor(float64=EITHER),
       "chunk_size_memory": Int(low=1, role="chunk", length=3),
       "chunk_size_others": Int(low=1, role="chunk", length=3)},
      check=shape_is(lambda r: r, lambda a: a["x"].shape))


@functools.cache
def small_selfmod_linear():
    return selfmod.SelfModifyingLinear(3, 2, generator=torch.Generator().manual_seed(0))


entry(selfmod.SelfModifyingLinear,
      lambda: dict(d_in=3, d_out=2, rank=1, generator=torch.Generator().manual_seed(0)),
      {"d_in": Int(low=1), "d_out": Int(low=1), "rank": Int(low=1), "generator": Gen(none=True)},
      same=False)
method("SelfModifyingLinear.forward",
       lambda x, return_weights: small_selfmod_linear()(x, return_weights=return_weights),
       lambda: dict(x=randn(2, 4, 3), return_weights=False),
       {"x": Tensor(), "return_weights": Bool()},
       check=shape_is(lambda r: r, lambda a: (*a["x"].shape[:2], 2)))


# ============================================================================================
# nlbook.cms: (B, T, d) = (2, 5, 4), levels with chunks (2, 3)



def cms_options():
    return dict(dim=4, chunk_sizes=[2, 3], learning_rates=[0.1, 0.0], hidden_dim=None,
                linear=False, variant="sequential", reset_every=None, residual=True,
                pre_norm=True, activation="gelu", init_scale=1.0,
                generator=torch.Generator().manual_seed(0), dtype=None, first_order=False)


@functools.cache
def small_cms():
    return cms.ContinuumMemory(**cms_options())


entry(cms.ContinuumMemory, cms_options,
      {"dim": Int(low=1), "chunk_sizes": IntList(item=Int(low=1)),
       "learning_rates": FloatList(item=Float(low=0)), "hidden_dim": Int(low=1, none=True),
       "linear": Bool(), "variant": Choice(options=cms.VARIANTS),
       "reset_every": Obj(none=True), "residual": Bool(), "pre_norm": Bool(),
       "activation": Choice(), "init_scale": Float(low=0), "generator": Gen(none=True),
       "dtype": Obj(none=True), "first_order": Bool()}, same=False,
      extra=[("reset_every", "[0, None]", [0, None], REFUSE),
             ("reset_every", "one entry", [None], REFUSE),
             ("dtype", "torch.int64", torch.int64, REFUSE)])
CMS_OUTPUT = shape_is(lambda r: r.output, lambda a: a["x"].shape)


def cms_finite_part(result, arguments):
    """Losses are NaN where no target was given (documented); the rest must be finite."""
    targets = arguments.get("targets")
    known = 0 if targets is None or not isinstance(targets, torch.Tensor) else targets.shape[1]
    return result.output, result.losses[:, :known], result.state
method("ContinuumMemory.forward",
       lambda **a: small_cms()(a.pop("x"), a.pop("targets"), **a),
       lambda: dict(x=randn(2, 5, 4), targets=randn(2, 5, 4, seed=1),
                    loss_fn=cms.squared_error_loss, state=None, pending_target=None,
                    record=cms.CMSRecord(2), keep_state=True),
       {"x": Tensor(batch="B"), "targets": Tensor(batch="B", none=True),
        "loss_fn": Func(none=True), "state": Obj(none=True), "pending_target": Obj(none=True),
        "record": Obj(none=True), "keep_state": Bool()}, check=CMS_OUTPUT,
       finite_part=cms_finite_part,
       extra=[("state", "a state for batch 1", small_cms().initial_state(1), REFUSE),
              ("targets", "one position short (pending)", randn(2, 4, 4), EITHER),
              ("record", "a record of 3 levels", cms.CMSRecord(3), REFUSE)])
method("ContinuumMemory.initial_state", lambda batch: small_cms().initial_state(batch),
       lambda: dict(batch=2), {"batch": Int(low=1)})
method("ContinuumMemory.apply_parameters",
       lambda parameters, inputs: small_cms().apply_parameters(parameters, inputs),
       lambda: dict(parameters=small_cms().initial_state(2).parameters, inputs=randn(2, 5, 4)),
       {"parameters": Obj(), "inputs": Tensor()},
       check=shape_is(lambda r: r, lambda a: a["inputs"].shape),
       extra=[("parameters", "one level", small_cms().initial_state(2).parameters[:1], REFUSE)])
entry(cms.MultiRateOptimizer,
      lambda: dict(optimizer=torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                                              {"params": [torch.zeros(3, requires_grad=True)]}],
                                             lr=0.1), chunk_sizes=[1, 2]),
      {"optimizer": Obj(), "chunk_sizes": IntList(item=Int(low=1))}, same=False)
entry(cms.reference_continuum_memory,
      lambda: dict(cms=small_cms(), x=randn(2, 5, 4), targets=randn(2, 5, 4, seed=1),
                   loss_fn=cms.squared_error_loss),
      {"cms": Obj(), "x": Tensor(batch="B"), "targets": Tensor(batch="B"), "loss_fn": Func()},
      check=shape_is(lambda r: r[0], lambda a: a["x"].shape))
entry(cms.CMSRecord, lambda: dict(num_blocks=2, keep_deltas=False),
      {"num_blocks": Int(low=1), "keep_deltas": Bool()}, same=False)
entry(cms.cross_entropy_loss, lambda: dict(readout=torch.nn.Linear(4, V)),
      {"readout": Func()}, same=False)
entry(cms.nested_reset_periods, lambda: dict(chunk_sizes=[2, 8, 4]),
      {"chunk_sizes": IntList(item=Int(low=1))})


@functools.cache
def cms_record():
    record = cms.CMSRecord(2, keep_deltas=True)
    small_cms()(randn(2, 5, 4), randn(2, 5, 4, seed=1), loss_fn=cms.squared_error_loss,
                record=record)
    return record


entry(cms.parameter_trajectory,
      lambda: dict(record=cms_record(), block=0, name="w_in",
                   initial=small_cms().blocks[0]["w_in"].detach().clone(), sequence=1),
      {"record": Obj(), "block": Int(low=0, high=1, role="index"), "name": Str(),
       "initial": Tensor(), "sequence": Int(low=0, high=1, role="index")},
      extra=[("name", "an unknown name", "bogus", REFUSE)])
entry(cms.squared_error_loss, lambda: dict(outputs=randn(2, 5, 4), targets=randn(2, 5, 4)),
      {"outputs": Tensor(batch="B"), "targets": Tensor(batch="B")},
      check=shape_is(lambda r: r, lambda a: a["outputs"].shape[:2]))
for record_class in (cms.CMSOutput, cms.CMSState, cms.LevelRecord):
    exempt(record_class, RECORD)
method("CMSRecord.update_sizes",
       lambda record, block: record.update_sizes(block),
       lambda: dict(record=cms_record(), block=1),
       {"record": Free(), "block": Int(low=0, high=1, role="index")})
method("cms.cross_entropy_loss(readout)(outputs, targets)",
       lambda readout, outputs, targets: cms.cross_entropy_loss(readout)(outputs, targets),
       lambda: dict(readout=torch.nn.Linear(4, V), outputs=randn(2, 5, 4),
                    targets=tokens(2, 5, V)),
       {"readout": Func(), "outputs": Tensor(batch="B"),
        "targets": Tensor(kind="int", vocab=V, batch="B")}, same=False,
       extra=[("readout", "a readout of the wrong shape", lambda outputs: outputs[..., 0],
               REFUSE)])

# ============================================================================================
# nlbook.hope: V = 7, d = 8, one layer, two heads, small chunks


SMALL_HOPE = dict(chunk_size_memory=4, chunk_size_others=2, cms_chunk_sizes=(8, 3),
                  cms_learning_rates=(0.0, 0.05), cms_hidden_dim=12)


@functools.cache
def small_hope():
    return hope.HopeLM(V, 8, 1, 2, context_length=16, **SMALL_HOPE)


def block_options():
    return dict(d_model=8, heads=2, head_dim=None, memory_hidden=None, chunk_size_memory=4,
                chunk_size_others=2, cms_chunk_sizes=(8, 3), cms_learning_rates=(0.0, 0.05),
                cms_hidden_dim=12, conv_window=4, first_order=True,
                generator=torch.Generator().manual_seed(0))


BLOCK_SPECS = {"d_model": Int(low=1), "heads": Int(low=1), "head_dim": Int(low=1, none=True),
               "memory_hidden": Int(low=1, none=True), "chunk_size_memory": Int(low=1),
               "chunk_size_others": Int(low=1), "cms_chunk_sizes": IntList(item=Int(low=1)),
               "cms_learning_rates": FloatList(item=Float(low=0)),
               "cms_hidden_dim": Int(low=1, none=True), "conv_window": Int(low=0),
               "first_order": Bool(), "generator": Gen(none=True)}
entry(hope.CausalDepthwiseConv, lambda: dict(dim=4, window=3),
      {"dim": Int(low=1), "window": Int(low=1)}, same=False)
method("CausalDepthwiseConv.forward",
       lambda x, buffer: hope.CausalDepthwiseConv(4, 3)(x, buffer),
       lambda: dict(x=randn(2, 6, 4), buffer=randn(2, 2, 4)),
       {"x": Tensor(batch="B"), "buffer": Tensor(batch="B", none=True)},
       check=all_of(shape_is(lambda r: r[0], lambda a: a["x"].shape),
                    shape_is(lambda r: r[1], lambda a: (a["x"].shape[0], 2, 4))),
       extra=[("buffer", "(2, 5, 4) for window 3", randn(2, 5, 4), REFUSE)])
entry(hope.HopeBlock, block_options, BLOCK_SPECS, same=False)


def hope_block():
    return small_hope().blocks[0]


method("HopeBlock.forward",
       lambda **a: hope_block()(a.pop("x"), a.pop("targets"), **a),
       lambda: dict(x=randn(2, 5, 8), targets=tokens(2, 4, V), loss_fn=small_hope()._cms_loss,
                    state=None, pending_target=None, record=None, return_trace=False,
                    dropout=0.0, keep_state=True),
       {"x": Tensor(batch="B"), "targets": Tensor(kind="int", vocab=V, batch="B", none=True),
        "loss_fn": Func(none=True), "state": Obj(none=True), "pending_target": Obj(none=True),
        "record": Obj(none=True), "return_trace": Bool(),
        "dropout": Float(0, 1, high_inclusive=False), "keep_state": Bool()},
       check=shape_is(lambda r: r.output, lambda a: a["x"].shape),
       finite_part=lambda r, a: (r.output, r.state, r.cms_losses[:, :a["targets"].shape[1]]
                                 if isinstance(a["targets"], torch.Tensor) else None),
       extra=[("state", "a state for batch 1", hope_block().initial_state(randn(1, 5, 8)),
               REFUSE)])
method("HopeBlock.initial_state", lambda x: hope_block().initial_state(x),
       lambda: dict(x=randn(2, 5, 8)), {"x": Tensor(finite=False)})  # reads only x's shape
entry(hope.HopeLM,
      lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2, context_length=16,
                   dropout=0.0, seed=0, **SMALL_HOPE),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1),
       "dropout": Float(0, 1, high_inclusive=False), "seed": Int(low=0, role="seed"),
       "chunk_size_memory": Int(low=1), "cms_chunk_sizes": IntList(item=Int(low=1)),
       "cms_hidden_dim": Int(low=1, none=True)}, same=False)
HOPE_LOGITS = shape_is(lambda r: r[0], lambda a: (*a["idx"].shape, V))
method("HopeLM.forward", lambda idx, targets: small_hope()(idx, targets),
       lambda: dict(idx=tokens(2, 5, V), targets=tokens(2, 5, V, seed=1)),
       {"idx": IDS, "targets": TARGETS}, check=HOPE_LOGITS)


def hope_state(batch=2):
    return small_hope().stream(tokens(batch, 3, V))[1]


method("HopeLM.stream",
       lambda **a: small_hope().stream(a.pop("idx"), a.pop("state"), **a),
       lambda: dict(idx=tokens(2, 5, V), state=hope_state(), targets=None, record=None,
                    return_trace=False, keep_state=True),
       {"idx": IDS, "state": Obj(none=True), "targets": TARGETS, "record": Obj(none=True),
        "return_trace": Bool(), "keep_state": Bool()}, check=HOPE_LOGITS,
       extra=[("state", "a state for batch 1", hope_state(1), REFUSE),
              ("record", "two records for one layer", [cms.CMSRecord(2)] * 2, REFUSE)])
method("HopeLM.generate", lambda **a: small_hope().generate(**a),
       lambda: dict(idx=tokens(2, 3, V), max_new_tokens=3, **sampling(), return_logits=False),
       {"idx": Tensor(kind="int", vocab=V), "max_new_tokens": Int(low=0, role="cost"),
        **SAMPLING, "return_logits": Bool()},
       check=shape_is(lambda r: r, lambda a: (a["idx"].shape[0], a["idx"].shape[1] + 3)))
method("HopeLM.carry_over", lambda state, relative: small_hope().carry_over(state,
                                                                          relative=relative),
       lambda: dict(state=hope_state(), relative=True), {"state": Obj(), "relative": Bool()},
       same=False)
method("HopeLM.resume_stream",
       lambda carried, restart: small_hope().resume_stream(carried, restart=restart),
       lambda: dict(carried=small_hope().carry_over(small_hope().stream(
           tokens(2, 4, V), targets=tokens(2, 4, V, seed=1))[1]),
           restart=torch.tensor([True, False])),
       {"carried": Obj(), "restart": Tensor(kind="bool", none=True, rank=True, batch=None)},
       same=False)
entry(carry.carry_over, lambda: dict(model=small_hope(), state=hope_state(), relative=True),
      {"model": Obj(), "state": Obj(), "relative": Bool()}, same=False)
entry(carry.resume_stream,
      lambda: dict(model=small_hope(), carried=small_hope().carry_over(hope_state()),
                   restart=None),
      {"model": Obj(), "carried": Obj(), "restart": Tensor(kind="bool", none=True)},
      same=False)
exempt(carry.CarriedState, RECORD)
entry(hope.matched_models,
      lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2, context_length=8, seed=0,
                   **SMALL_HOPE),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1), "seed": Int(low=0, role="seed")},
      same=False)
entry(hope.benchmark_hope,
      lambda: dict(d_model=4, n_layers=1, n_heads=2, batch=1, length=4, steps=1,
                   second_order=False),
      {"d_model": Int(low=1), "n_layers": Int(low=1), "n_heads": Int(low=1),
       "batch": Int(low=1), "length": Int(low=1), "steps": Int(low=1, role="cost"),
       "second_order": Bool()}, same=False, alarm=10.0)
entry(hope.training_tokens_per_second,
      lambda: dict(model=small_transformer(), batch=2, length=4, steps=1, vocab_size=V, seed=0),
      {"model": Obj(), "batch": Int(low=1), "length": Int(low=1, high=8),
       "steps": Int(low=1, role="cost"), "vocab_size": Int(low=1, high=V),
       "seed": Int(low=0, role="seed")}, same=False)


def frozen(model):
    with hope.frozen_cms(model) as inside:
        return inside is model


entry(hope.frozen_cms, lambda: dict(model=small_hope()), {"model": Obj()})
REGISTRY[key_of(hope.frozen_cms)].call = frozen
entry(hope.trace_passage, lambda: dict(model=small_hope(), idx=tokens(1, 4, V)),
      {"model": Obj(), "idx": Tensor(kind="int", vocab=V)}, finite=False,
      check=shape_is(lambda r: r.lr[0], lambda a: (a["idx"].shape[1], 2)))
for record_class in (hope.HopeBlockOutput, hope.HopeBlockState, hope.HopeState,
                     hope.PassageTrace):
    exempt(record_class, RECORD)


# ============================================================================================
# nlbook.data


TEXT = "to be or not to be, that is the question.\n" * 8


@functools.cache
def fixture_dir() -> Path:
    """A folder of small files the fuzz reads (created once, in the system temp folder)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="nlbook-fuzz-"))
    (folder / "text.txt").write_text(TEXT, encoding="utf-8")
    (folder / "bom.txt").write_text("\ufeff" + TEXT, encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return folder


def text_file() -> str:
    return str(fixture_dir() / "text.txt")


@functools.cache
def vocabulary():
    return data.CharVocabulary.from_text(TEXT)


def text_ids():
    return vocabulary().encode(TEXT)


class DirectoryArg(File):
    """A folder argument (``data_dir``): None is the default, a missing folder is refused."""

    def mutations(self, value):
        return [("None", None, EITHER), ("an int", 3, REFUSE),
                ("a missing folder", "/nonexistent/nlbook-fuzz", REFUSE)]


class PathArg(File):
    """A path that is only joined, never read: any str or Path is fine, other types are not."""

    def mutations(self, value):
        return [("None", None, EITHER), ("an int", 3, REFUSE), ("a str", "bogus", EITHER)]


for record_class in (data.CharCorpus, data.DataFileError):
    exempt(record_class, RECORD if record_class is data.CharCorpus else ERROR)
entry(data.tiny_shakespeare_path, lambda: dict(data_dir=None), {"data_dir": PathArg()})
entry(data.python_stdlib_path, lambda: dict(data_dir=None), {"data_dir": PathArg()})
entry(data.load_tiny_shakespeare, lambda: dict(data_dir=None, verify=True),
      {"data_dir": DirectoryArg(), "verify": Bool()})
entry(data.load_python_stdlib, lambda: dict(data_dir=None, verify=True),
      {"data_dir": DirectoryArg(), "verify": Bool()})
entry(data.sha256_of_file, lambda: dict(path=text_file()), {"path": File()})
entry(data.load_text_file, lambda: dict(path=text_file()), {"path": File()},
      check=lambda result, arguments: "a byte-order mark in the text" if "\ufeff" in result
      else None,
      extra=[("path", "a file with a byte-order mark", str(fixture_dir() / "bom.txt"), EITHER),
             ("path", "an empty file", str(fixture_dir() / "empty.txt"), REFUSE),
             ("path", "a Latin-1 file", str(fixture_dir() / "latin1.txt"), REFUSE)])
entry(data.CharVocabulary, lambda: dict(chars="abc"), {"chars": Str()},
      extra=[("chars", "a repeated character", "abca", REFUSE)], same=False)
method("CharVocabulary.from_text", lambda text: data.CharVocabulary.from_text(text),
       lambda: dict(text=TEXT), {"text": Str()}, same=False)
method("CharVocabulary.encode", lambda text, name: vocabulary().encode(text, name=name),
       lambda: dict(text="to be", name="text"), {"text": Str(empty=True), "name": Str()},
       extra=[("text", "a character outside", "zzz", REFUSE)], aliases={"text": ("name",)})
method("CharVocabulary.decode", lambda ids: vocabulary().decode(ids),
       lambda: dict(ids=torch.tensor([0, 1, 2])),
       {"ids": Tensor(kind="int", vocab=len(vocabulary()), empty=True)})
entry(data.make_corpus,
      lambda: dict(text=TEXT, source="text", vocabulary=None, train_fraction=0.9),
      {"text": Str(), "source": Str(), "vocabulary": Obj(none=True),
       "train_fraction": Float(0, 1, low_inclusive=False, high_inclusive=False)}, same=False,
      extra=[("vocabulary", "a vocabulary missing characters",
              data.CharVocabulary("abc"), REFUSE),
             ("text", "a byte-order mark", "\ufeff" + TEXT, EITHER)],
      check=lambda result, arguments: "a byte-order mark in the vocabulary"
      if "\ufeff" in result.vocabulary.chars else None)
entry(data.load_corpus, lambda: dict(path=text_file(), train_fraction=0.9),
      {"path": File(none=True),
       "train_fraction": Float(0, 1, low_inclusive=False, high_inclusive=False)}, same=False)
entry(data.split_train_val, lambda: dict(ids=text_ids(), train_fraction=0.9),
      {"ids": Tensor(kind="int"),
       "train_fraction": Float(0, 1, low_inclusive=False, high_inclusive=False)})
entry(data.random_batch,
      lambda: dict(ids=text_ids(), batch_size=2, context_length=8,
                   generator=torch.Generator().manual_seed(0), device="cpu"),
      {"ids": Tensor(kind="int"), "batch_size": Int(low=1), "context_length": Int(low=1),
       "generator": Gen(), "device": Device()},
      check=shape_is(lambda r: r[0], lambda a: (a["batch_size"], a["context_length"])))
entry(data.sequential_windows, lambda: dict(ids=text_ids(), context_length=8),
      {"ids": Tensor(kind="int"), "context_length": Int(low=1)})


def streams():
    return data.ContiguousStreams(text_ids(), 2, 8, stream_length=16,
                                  generator=torch.Generator().manual_seed(0), alignment=4)


entry(data.ContiguousStreams,
      lambda: dict(ids=text_ids(), batch_size=2, context_length=8, stream_length=16,
                   generator=torch.Generator().manual_seed(0), alignment=4),
      {"ids": Tensor(kind="int"), "batch_size": Int(low=1), "context_length": Int(low=1),
       "stream_length": Int(low=1, none=True), "generator": Gen(), "alignment": Int(low=1)},
      same=False)
method("ContiguousStreams.next_batch", lambda device: streams().next_batch(device),
       lambda: dict(device="cpu"), {"device": Device()})
method("ContiguousStreams.load_state_dict", lambda state: streams().load_state_dict(state),
       lambda: dict(state=streams().state_dict()), {"state": Obj()},
       extra=[("state", "a state missing 'calls'",
               {"positions": torch.zeros(2, dtype=torch.int64),
                "windows_left": torch.zeros(2, dtype=torch.int64)}, REFUSE),
              ("state", "positions for batch 3",
               {"positions": torch.zeros(3, dtype=torch.int64),
                "windows_left": torch.zeros(3, dtype=torch.int64), "calls": 1}, REFUSE)])
entry(data.joint_vocabulary, lambda: dict(texts=("ab", "bc")), {"texts": Free()},
      extra=[("texts", "an int among them", ("ab", 3), REFUSE),
             ("texts", "an empty text", ("ab", ""), REFUSE), ("texts", "no text", (), REFUSE)])
REGISTRY[key_of(data.joint_vocabulary)].call = lambda texts: data.joint_vocabulary(*texts)
entry(data.load_corpus_pair, lambda: dict(train_fraction=0.9, data_dir=None),
      {"train_fraction": Float(0, 1, low_inclusive=False, high_inclusive=False),
       "data_dir": DirectoryArg()}, same=False, alarm=10.0)

# ============================================================================================
# nlbook.ngram


NGRAM_IDS = Tensor(kind="int", vocab=5, rank=True)


def ngram_ids(length=60, seed=0):
    return torch.randint(5, (length,), generator=torch.Generator().manual_seed(seed))


@functools.cache
def fitted_ngram():
    return ngram.NgramModel(3, 5).fit(ngram_ids())


entry(ngram.NgramModel, lambda: dict(order=3, vocab_size=5, smoothing="kneser_ney",
                                     discount=0.75),
      {"order": Int(low=1), "vocab_size": Int(low=1), "smoothing": Choice(),
       "discount": Float(0, 1, low_inclusive=False)}, same=False)
method("NgramModel.fit", lambda train_ids: ngram.NgramModel(3, 5).fit(train_ids),
       lambda: dict(train_ids=ngram_ids()), {"train_ids": NGRAM_IDS}, same=False)
method("NgramModel.log_probs", lambda ids, history: fitted_ngram().log_probs(ids, history),
       lambda: dict(ids=ngram_ids(10, 1), history=ngram_ids(4, 2)),
       {"ids": NGRAM_IDS, "history": Tensor(kind="int", vocab=5, none=True)})
method("NgramModel.cross_entropy", lambda ids, history: fitted_ngram().cross_entropy(ids, history),
       lambda: dict(ids=ngram_ids(10, 1), history=ngram_ids(4, 2)),
       {"ids": NGRAM_IDS, "history": Tensor(kind="int", vocab=5, none=True)})
method("NgramModel.next_token_probabilities",
       lambda history: fitted_ngram().next_token_probabilities(history),
       lambda: dict(history=ngram_ids(4, 2)), {"history": NGRAM_IDS})
entry(ngram.modified_kneser_ney_discounts, lambda: dict(counts=torch.tensor([1, 1, 2, 3, 4, 5])),
      {"counts": Tensor(kind="int")},
      extra=[("counts", "a negative count", torch.tensor([1, -1]), REFUSE)])
entry(ngram.ngram_baselines,
      lambda: dict(train_ids=ngram_ids(), val_ids=ngram_ids(20, 1), vocab_size=5, orders=(3,),
                   verbose=False),
      {"train_ids": NGRAM_IDS, "val_ids": NGRAM_IDS, "vocab_size": Int(low=1),
       "orders": IntList(item=Int(low=1), empty=True), "verbose": Bool()}, same=False)
entry(ngram.uniform_cross_entropy, lambda: dict(vocab_size=5), {"vocab_size": Int(low=1)})

# ============================================================================================
# nlbook.optim



def parameters(*shape):
    return [torch.zeros(*(shape or (2, 3)), requires_grad=True)]


PARAMS = Obj()
RATE, RETENTION = Float(low=0), Float(0, 1, high_inclusive=False)
PRECONDITIONER = Choice()
entry(optim.MomentumMemory, lambda: dict(params=parameters(), lr=0.1, momentum=0.9),
      {"params": PARAMS, "lr": RATE, "momentum": RETENTION}, same=False)
entry(optim.PreconditionedMomentum,
      lambda: dict(params=parameters(), lr=0.1, momentum=0.9, preconditioner="rms",
                   beta2=0.999, eps=1e-8),
      {"params": PARAMS, "lr": RATE, "momentum": RETENTION, "preconditioner": PRECONDITIONER,
       "beta2": RETENTION, "eps": Float(low=0, low_inclusive=False)}, same=False)
entry(optim.DeltaMomentum,
      lambda: dict(params=parameters(), lr=0.1, momentum=0.9, preconditioner="identity",
                   beta2=0.999, eps=1e-8),
      {"params": PARAMS, "lr": RATE, "momentum": RETENTION, "preconditioner": PRECONDITIONER,
       "beta2": RETENTION, "eps": Float(low=0, low_inclusive=False)}, same=False)
entry(optim.AdamMemory,
      lambda: dict(params=parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, moments="ema"),
      {"params": PARAMS, "lr": RATE, "betas": FloatList(item=RETENTION),
       "eps": Float(low=0, low_inclusive=False), "moments": Choice()}, same=False)
entry(optim.DeepMomentum,
      lambda: dict(params=parameters(), lr=0.1, momentum=0.9, hidden=4, memory_lr=None, seed=0),
      {"params": PARAMS, "lr": RATE, "momentum": RETENTION, "hidden": Int(low=1),
       "memory_lr": Float(low=0, none=True), "seed": Int(low=0, role="seed")}, same=False)
entry(optim.Muon,
      lambda: dict(params=parameters(), lr=0.02, momentum=0.95, nesterov=True, ns_steps=5,
                   weight_decay=0.1, ns_coefficients=optim.MUON_COEFFICIENTS, eps=1e-7,
                   adjust_lr_fn=None, ns_precision="bfloat16"),
      {"params": PARAMS, "lr": RATE, "momentum": RETENTION, "nesterov": Bool(),
       "ns_steps": Int(low=1, role="cost"), "weight_decay": Float(low=0),
       "ns_coefficients": FloatList(), "eps": Float(low=0, low_inclusive=False),
       "adjust_lr_fn": Choice(none=True), "ns_precision": Choice()}, same=False,
      extra=[("params", "a 1-D parameter", parameters(3), REFUSE)])
entry(optim.M3,
      lambda: dict(params=parameters(), lr=0.02, betas=(0.9, 0.999, 0.9), alpha=1.0,
                   slow_every=10, ns_steps=5, eps=1e-8, moments="sum",
                   ns_coefficients=optim.MUON_COEFFICIENTS, ns_precision="param"),
      {"params": PARAMS, "lr": RATE, "betas": FloatList(item=Float(0, 1)),
       "alpha": Float(low=0), "slow_every": Int(low=1), "ns_steps": Int(low=1, role="cost"),
       "eps": Float(low=0, low_inclusive=False), "moments": Choice(),
       "ns_coefficients": FloatList(), "ns_precision": Choice()}, same=False)


def stepped(optimizer_class, **options):
    """One step of ``optimizer_class`` on a tiny quadratic: the parameter after it."""
    parameter = torch.ones(2, 3, requires_grad=True)
    optimizer = optimizer_class([parameter], **options)
    (parameter ** 2).sum().backward()
    optimizer.step()
    return parameter.detach()


method("MomentumMemory.step", lambda lr: stepped(optim.MomentumMemory, lr=lr),
       lambda: dict(lr=0.1), {"lr": RATE})
method("M3.step", lambda lr: stepped(optim.M3, lr=lr), lambda: dict(lr=0.02), {"lr": RATE})
entry(optim.newton_schulz,
      lambda: dict(matrix=randn(3, 4), steps=5, coefficients=optim.MUON_COEFFICIENTS, eps=1e-7,
                   compute_dtype=None),
      {"matrix": Tensor(), "steps": Int(low=0, role="cost"), "coefficients": FloatList(),
       "eps": Float(low=0, low_inclusive=False), "compute_dtype": Obj(none=True)},
      check=shape_is(lambda r: r, lambda a: a["matrix"].shape),
      extra=[("compute_dtype", "torch.int64", torch.int64, REFUSE),
             ("coefficients", "two numbers", (1.0, 2.0), REFUSE)])
entry(optim.benchmark_optimizers,
      lambda: dict(width=4, depth=1, batch=2, repeats=1, min_seconds=0.0),
      {"width": Int(low=1), "depth": Int(low=1), "batch": Int(low=1),
       "repeats": Int(low=1, role="cost"), "min_seconds": Float(low=0, huge=False)},
      same=False, alarm=10.0)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1)


entry(optim.continual_stream,
      lambda: dict(optimizers={"sgd": sgd}, tasks=2, switch_every=2, steps=4, input_dim=3,
                   hidden=4, output_dim=2, batch=2, shared=0.5, seed=0),
      {"optimizers": Obj(), "tasks": Int(low=1), "switch_every": Int(low=1),
       "steps": Int(low=1, role="cost"), "input_dim": Int(low=1), "hidden": Int(low=1),
       "output_dim": Int(low=1), "batch": Int(low=1), "shared": Float(0, 1),
       "seed": Int(low=0, role="seed")},
      extra=[("optimizers", "a label without a factory", {"sgd": 3}, REFUSE),
             ("optimizers", "a factory that returns no optimizer", {"sgd": lambda p: 3},
              REFUSE)])
entry(optim.make_optimizer, lambda: dict(name="momentum", params=parameters(), lr=0.1,
                                         momentum=0.9),
      {"name": Choice(), "params": PARAMS, "lr": RATE, "momentum": RETENTION}, same=False)
entry(optim.max_difference_to_torch,
      lambda: dict(make_ours=lambda p: optim.MomentumMemory(p, 0.1),
                   make_torch=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), steps=4,
                   bias=True, reload_at=2, seed=0),
      {"make_ours": Func(), "make_torch": Func(), "steps": Int(low=1, role="cost"),
       "bias": Bool(), "reload_at": Int(low=0, none=True), "seed": Int(low=0, role="seed")})
entry(optim.run_toy_problem,
      lambda: dict(name="momentum", problem="quadratic", lr=0.01, momentum=0.9, steps=5),
      {"name": Choice(), "problem": Choice(), "lr": RATE, "momentum": RETENTION,
       "steps": Int(low=1, role="cost")}, finite=False,  # a diverged run is NaN (documented)
      check=shape_is(lambda r: r[0], lambda a: (a["steps"] + 1, 2)))
entry(optim.toy_landscape, lambda: dict(problem="rosenbrock", resolution=5),
      {"problem": Choice(), "resolution": Int(low=1)})
entry(optim.gradients_for_mass, lambda: dict(momentum=0.9, fraction=0.5),
      {"momentum": RETENTION, "fraction": Float(0, 1, high_inclusive=False)})
entry(optim.linear_layer_surprise_step,
      lambda: dict(weight=randn(3, 4), inputs=randn(2, 4, seed=1),
                   output_gradients=randn(2, 3, seed=2), lr=0.1),
      {"weight": Tensor(), "inputs": Tensor(batch="B"), "output_gradients": Tensor(batch="B"),
       "lr": RATE}, check=shape_is(lambda r: r, lambda a: a["weight"].shape))
entry(optim.momentum_cumulative_weight, lambda: dict(momentum=0.9, count=torch.tensor([1, 5])),
      {"momentum": RETENTION, "count": Tensor(kind="int", rank=False)},
      extra=[("count", "an int", 7, EITHER), ("count", "a float", 1.5, REFUSE),
             ("count", "a negative count", torch.tensor([-1]), REFUSE)])
entry(optim.momentum_weighted_sum, lambda: dict(gradients=randn(4, 3), lr=0.1, momentum=0.9),
      {"gradients": Tensor(rank=False), "lr": RATE, "momentum": RETENTION},
      check=shape_is(lambda r: r, lambda a: a["gradients"].shape[1:]))

# ============================================================================================
# nlbook.recall


exempt(recall.RecallStream, RECORD)


def recall_stream():
    return recall.key_overwrite_stream(n_keys=3, n_writes=6, dim=4, seed=0)


method("RecallStream.latest_value_index",
       lambda stream, step: stream.latest_value_index(step),
       lambda: dict(stream=recall_stream(), step=3),
       {"stream": Free(), "step": Int(low=0, high=5, role="index")})
entry(recall.key_overwrite_stream, lambda: dict(n_keys=3, n_writes=6, dim=4, seed=0),
      {"n_keys": Int(low=1), "n_writes": Int(low=1), "dim": Int(low=1),
       "seed": Int(low=0, role="seed")})
entry(recall.capacity_stream, lambda: dict(n_pairs=5, dim=4, seed=0),
      {"n_pairs": Int(low=1), "dim": Int(low=1), "seed": Int(low=0, role="seed")})
entry(recall.run_rule,
      lambda: dict(stream=recall_stream(), kind="delta", beta=1.0, decay=0.9, lr=0.5,
                   momentum=0.0, forget=0.0, chunk_size=2),
      {"stream": Obj(), "kind": Choice(), "beta": Float(0, 2), "decay": Float(0, 1,
                                                                             low_inclusive=False),
       "lr": Float(0, 1), "momentum": Float(0, 1), "forget": Float(0, 1),
       "chunk_size": Int(low=1, role="chunk", length=6, none=True)},
      check=shape_is(lambda r: r, lambda a: (6, 4, 4)))
entry(recall.least_squares_memory, lambda: dict(stream=recall_stream()), {"stream": Obj()})
entry(recall.decode_accuracy,
      lambda: dict(state=randn(4, 4, dtype=torch.float64),
                   query_keys=randn(3, 4, seed=1, dtype=torch.float64),
                   target_index=torch.tensor([0, 2, 1]),
                   candidates=randn(5, 4, seed=2, dtype=torch.float64)),
      {"state": Tensor(), "query_keys": Tensor(batch="K"),
       "target_index": Tensor(kind="int", vocab=5, batch="K"), "candidates": Tensor()})
entry(recall.recall_trace,
      lambda: dict(stream=recall_stream(), states=randn(6, 4, 4, dtype=torch.float64)),
      {"stream": Obj(), "states": Tensor()}, finite=False,  # errors are NaN before a write
      check=shape_is(lambda r: r["recall"], lambda a: (6,)))
entry(recall.final_recall, lambda: dict(stream=recall_stream(), kind="delta", beta=0.5),
      {"stream": Obj(), "kind": Choice(), "beta": Float(0, 2)})
entry(recall.compare_rules,
      lambda: dict(make_stream=lambda seed: recall.capacity_stream(4, 4, seed), seeds=[0, 1],
                   rules={"delta": {"kind": "delta", "beta": 1.0}}),
      {"make_stream": Func(), "seeds": IntList(item=Int(low=0)), "rules": Obj(none=True)},
      extra=[("rules", "a rule without kind", {"x": {"beta": 1.0}}, REFUSE)])


# ============================================================================================
# nlbook.tasks


LANGUAGE = Choice()
SMALL_TASK = dict(language="parity", train_lengths=(2, 4), test_lengths=(5, 8))


def formal_model():
    torch.manual_seed(0)
    return transformer.TransformerLM(len(formal_languages.FORMAL_VOCABULARY), 8, 1, 2,
                                     context_length=16)


def small_task():
    return formal_languages.formal_language_task(**SMALL_TASK)


def rng(seed=0):
    return np.random.default_rng(seed)


LENGTHS = IntList(item=Int(low=1))
LENGTH_PAIRS = [("lengths", "reversed", (4, 2), REFUSE), ("lengths", "one number", (3,), REFUSE)]
for record_class in (formal_languages.FormalBatch, formal_languages.FormalLanguageTask,
                     formal_languages.FormalTrainingResult):
    exempt(record_class, RECORD)
entry(formal_languages.is_member, lambda: dict(language="anbn", string="aabb"),
      {"language": LANGUAGE, "string": Str(empty=True)},
      extra=[("string", "a letter outside the alphabet", "aaxb", REFUSE)])
entry(formal_languages.prefix_labels, lambda: dict(language="shuffle2", string="([)]"),
      {"language": LANGUAGE, "string": Str(empty=True)},
      extra=[("string", "a letter outside the alphabet", "(a)", REFUSE)])
entry(formal_languages.sample_positive,
      lambda: dict(language="parity", length=5, generator=rng()),
      {"language": LANGUAGE, "length": Int(low=1), "generator": Gen(kind="numpy")},
      extra=[("length", "a length without positives", 3, EITHER)])
REGISTRY[key_of(formal_languages.sample_positive)].make = lambda: dict(
    language="anbn", length=4, generator=rng())
entry(formal_languages.sample_negative,
      lambda: dict(language="anbn", lengths=(2, 6), generator=rng()),
      {"language": LANGUAGE, "lengths": LENGTHS, "generator": Gen(kind="numpy")},
      extra=LENGTH_PAIRS)
entry(formal_languages.sample_strings,
      lambda: dict(language="abab_star", count=4, lengths=(2, 8), generator=rng()),
      {"language": LANGUAGE, "count": Int(low=1), "lengths": LENGTHS,
       "generator": Gen(kind="numpy")}, extra=LENGTH_PAIRS)
entry(formal_languages.encode_strings,
      lambda: dict(language="parity", strings=["011", "1"], supervision="prefix", length=6),
      {"language": LANGUAGE, "strings": Obj(), "supervision": Choice(),
       "length": Int(low=4, none=True)},
      extra=[("strings", "a letter outside the alphabet", ["0a1"], REFUSE),
             ("strings", "an empty string", ["01", ""], REFUSE), ("strings", "[]", [], REFUSE)])
entry(formal_languages.formal_language_task,
      lambda: dict(language="anbncn", train_lengths=(3, 9), test_lengths=(10, 18)),
      {"language": LANGUAGE, "train_lengths": LENGTHS, "test_lengths": IntList(
          item=Int(low=1), none=True)},
      extra=[("test_lengths", "overlapping training", (5, 18), REFUSE)])
entry(formal_languages.formal_language_batch,
      lambda: dict(task=small_task(), split="bin1", batch_size=3, generator=rng(),
                   supervision="end"),
      {"task": Obj(), "split": Choice(), "batch_size": Int(low=1),
       "generator": Gen(kind="numpy"), "supervision": Choice()})
entry(formal_languages.train_formal_language,
      lambda: dict(model=formal_model(), task=small_task(), steps=2, batch_size=4,
                   learning_rate=3e-3, weight_decay=0.0, seed=0, supervision="end",
                   grad_clip=1.0),
      {"model": Obj(), "task": Obj(), "steps": Int(low=1, role="cost"),
       "batch_size": Int(low=1), "learning_rate": Float(0, 1, low_inclusive=False),
       "weight_decay": Float(0, 1), "seed": Int(low=0, role="seed"), "supervision": Choice(),
       "grad_clip": Float(low=0, low_inclusive=False)}, same=False,
      extra=[("model", "a model with a short context",
              transformer.TransformerLM(13, 8, 1, 2, context_length=4), REFUSE)])
entry(formal_languages.evaluate_formal_language,
      lambda: dict(model=formal_model(), task=small_task(), split="bin0", examples=8, seed=1,
                   batch_size=4),
      {"model": Obj(), "task": Obj(), "split": Choice(), "examples": Int(low=1, role="cost"),
       "seed": Int(low=0, role="seed"), "batch_size": Int(low=1)})
method("FormalLanguageTask.lengths", lambda split: small_task().lengths(split),
       lambda: dict(split="Bin1"), {"split": Choice()})

# nlbook.tasks.next_character: Table 5's next-character-set prediction
exempt(next_character.PredictionBatch, RECORD)
entry(next_character.output_symbols, lambda: dict(language="anbncn"), {"language": LANGUAGE})
entry(next_character.output_ids, lambda: dict(language="shuffle2"), {"language": LANGUAGE})
entry(next_character.next_character_sets, lambda: dict(language="anbn", string="aab"),
      {"language": LANGUAGE, "string": Str()},
      extra=[("string", "not a prefix of the language", "aba", REFUSE),
             ("string", "a letter outside the alphabet", "aax", REFUSE)])
entry(next_character.prediction_strings,
      lambda: dict(language="shuffle2", count=4, lengths=(2, 8), seed=0, distinct=True),
      {"language": LANGUAGE, "count": Int(low=1), "lengths": LENGTHS,
       "seed": Int(low=0, role="seed"), "distinct": Bool()},
      extra=[("lengths", "reversed", (8, 2), REFUSE),
             ("lengths", "no positive string", (5, 5), REFUSE)])


def prediction_batch():
    return next_character.encode_prediction_batch("parity", ["0110", "11"])


entry(next_character.encode_prediction_batch,
      lambda: dict(language="parity", strings=["0110", "11"]),
      {"language": LANGUAGE, "strings": Obj()},
      extra=[("strings", "a letter outside the alphabet", ["0a1"], REFUSE),
             ("strings", "an empty string", ["01", ""], REFUSE), ("strings", "[]", [], REFUSE)])
entry(next_character.prediction_loss,
      lambda: dict(outputs=randn(2, 4, 3), batch=prediction_batch()),
      {"outputs": Tensor(batch="B"), "batch": Obj()})
entry(next_character.strings_correct,
      lambda: dict(model=formal_model(), language="parity", strings=["0110", "11"],
                   batch_size=1),
      {"model": Obj(), "language": LANGUAGE, "strings": Obj(), "batch_size": Int(low=1)},
      extra=[("strings", "longer than the model's window", ["0" * 20], REFUSE)])
entry(next_character.train_next_character,
      lambda: dict(model=formal_model(), language="parity", strings=["0110", "11"], steps=2,
                   batch_size=2, learning_rate=3e-3, seed=0, grad_clip=1.0),
      {"model": Obj(), "language": LANGUAGE, "strings": Obj(),
       "steps": Int(low=1, role="cost"), "batch_size": Int(low=1, role="cost"),
       "learning_rate": Float(0, 1, low_inclusive=False), "seed": Int(low=0, role="seed"),
       "grad_clip": Float(low=0, low_inclusive=False)}, same=False, alarm=10.0)


@functools.cache
def shakespeare_vocabulary():
    return data.CharVocabulary.from_text(data.load_tiny_shakespeare())


@functools.cache
def filler():
    return data.load_tiny_shakespeare()[:3000]


def shakespeare_model():
    torch.manual_seed(0)
    return transformer.TransformerLM(len(shakespeare_vocabulary()), 8, 1, 2, context_length=32)


for record_class in (task_recall.RecallPrompt, task_recall.RecallResult):
    exempt(record_class, RECORD)
entry(task_recall.query_text, lambda: dict(name="Bakel"), {"name": Str()})
entry(task_recall.fact_line, lambda: dict(name="Bakel", answer="qorv"),
      {"name": Str(), "answer": Str()})
entry(task_recall.random_name, lambda: dict(generator=rng()), {"generator": Gen(kind="numpy")})
entry(task_recall.random_answer, lambda: dict(length=4, generator=rng()),
      {"length": Int(low=1), "generator": Gen(kind="numpy")},
      aliases={"length": ("answer_length",)})
entry(task_recall.shakespeare_filler, lambda: dict(length=40, text=filler(), generator=rng()),
      {"length": Int(low=0), "text": Str(), "generator": Gen(kind="numpy")})
RECALL_OPTIONS = {"lead": Int(low=0), "answer_length": Int(low=1), "facts": Int(low=1),
                  "control": Choice(none=True)}
entry(task_recall.recall_prompt,
      lambda: dict(gap=30, generator=rng(), filler_text=filler(), lead=10, answer_length=4,
                   facts=2, control=None),
      {"gap": Int(low=0), "generator": Gen(kind="numpy"), "filler_text": Str(none=True),
       **RECALL_OPTIONS})
entry(task_recall.recall_accuracy,
      lambda: dict(model=shakespeare_model(), vocabulary=shakespeare_vocabulary(), gaps=(4, 40),
                   trials=2, seed=0, lead=8, answer_length=2, facts=1, control=None,
                   filler_text=filler(), mode="window", window=None, chunk_length=16),
      {"model": Obj(), "vocabulary": Obj(), "gaps": IntList(item=Int(low=0)),
       "trials": Int(low=1, role="cost"), "seed": Int(low=0, role="seed"), **RECALL_OPTIONS,
       "filler_text": Str(none=True), "mode": Choice(none=True),
       "window": Int(low=1, none=True, high=32), "chunk_length": Int(low=1)}, same=False,
      alarm=10.0)
entry(task_recall.recall_training_batch,
      lambda: dict(vocabulary=shakespeare_vocabulary(), batch_size=2, context_length=64,
                   generator=torch.Generator().manual_seed(0), gaps=(0, 8), filler_text=filler(),
                   answer_length=4, facts=1, answer_only=True),
      {"vocabulary": Obj(), "batch_size": Int(low=1), "context_length": Int(low=1),
       "generator": Gen(), "gaps": IntList(item=Int(low=0)), "filler_text": Str(none=True),
       "answer_length": Int(low=1), "facts": Int(low=1), "answer_only": Bool()})
entry(task_recall.recall_training_text,
      lambda: dict(text=filler(), gaps=(40, 200), spacing=100, answer_length=4, seed=0),
      {"text": Str(none=True), "gaps": IntList(item=Int(low=0)), "spacing": Int(low=0),
       "answer_length": Int(low=1), "seed": Int(low=0, role="seed")})
entry(task_recall.mqar_batch,
      lambda: dict(batch_size=2, vocab_size=12, sequence_length=12, kv_pairs=3,
                   generator=torch.Generator().manual_seed(0), power_a=0.01,
                   random_non_queries=True),
      {"batch_size": Int(low=1), "vocab_size": Int(low=1), "sequence_length": Int(low=1),
       "kv_pairs": Int(low=1), "generator": Gen(),
       "power_a": Float(0, 1, low_inclusive=False, none=True),
       "random_non_queries": Bool()})
entry(task_recall.induction_guesses,
      lambda: dict(idx=tokens(2, 20, V), vocab_size=V, fallback=3, match=4),
      {"idx": Tensor(kind="int", vocab=V), "vocab_size": Int(low=1), "fallback": Int(low=0),
       "match": Int(low=1)})
entry(task_recall.masked_accuracy,
      lambda: dict(model=small_transformer(), inputs=tokens(2, 5, V),
                   targets=torch.tensor([[-1, 2, -1, 3, -1], [0, -1, -1, -1, 6]])),
      {"model": Obj(), "inputs": Tensor(kind="int", vocab=V, batch="B"),
       "targets": Tensor(kind="int", vocab=V, ignore=True, batch="B")},
      extra=[("targets", "no target", torch.full((2, 5), -1), REFUSE)])


@functools.cache
def corpus_pair():
    vocabulary = data.joint_vocabulary(TEXT, "def f(x):\n    return x + 1\n")
    return (data.make_corpus(TEXT * 2, source="a", vocabulary=vocabulary),
            data.make_corpus("def f(x):\n    return x + 1\n" * 20, source="b",
                             vocabulary=vocabulary))


def continual_small():
    return continual.continual_setup(steps_per_phase=2, corpora=corpus_pair())


for record_class in (continual.ContinualPhase, continual.ContinualStep, continual.ContinualSetup):
    exempt(record_class, RECORD)
entry(continual.continual_setup,
      lambda: dict(steps_per_phase=(2, 3, 1), order=("A", "B", "A"), corpora=corpus_pair()),
      {"steps_per_phase": IntList(item=Int(low=1), scalar=True), "order": Obj(),
       "corpora": Obj(none=True)},
      same=False, extra=[("order", "an unknown corpus", ("A", "C", "A"), REFUSE)])
entry(continual.continual_schedule, lambda: dict(setup=continual_small()), {"setup": Obj()})
REGISTRY[key_of(continual.continual_schedule)].call = lambda setup: list(
    continual.continual_schedule(setup))
entry(continual.continual_batches,
      lambda: dict(setup=continual_small(), batch_size=2, context_length=8,
                   generator=torch.Generator().manual_seed(0), device="cpu"),
      {"setup": Obj(), "batch_size": Int(low=1), "context_length": Int(low=1),
       "generator": Gen(), "device": Device()})
REGISTRY[key_of(continual.continual_batches)].call = lambda **a: list(
    continual.continual_batches(**a))
entry(continual.continual_losses,
      lambda: dict(model=small_continual_model(),
                   validation_sets=continual_small().validation_sets(context_length=8, windows=3),
                   batch_size=2),
      {"model": Obj(), "validation_sets": Obj(), "batch_size": Int(low=1)},
      extra=[("validation_sets", "a set of mismatched inputs and targets",
              {"A": (torch.zeros(2, 8, dtype=torch.int64), torch.zeros(3, 8, dtype=torch.int64))},
              REFUSE)])


@functools.cache
def small_continual_model():
    torch.manual_seed(0)
    return transformer.TransformerLM(len(corpus_pair()[0].vocabulary), 8, 1, 2,
                                     context_length=8)


method("ContinualSetup.phase_at", lambda step: continual_small().phase_at(step),
       lambda: dict(step=3), {"step": Int(low=0, high=5, role="index")})
method("ContinualSetup.validation_sets",
       lambda **a: continual_small().validation_sets(**a),
       lambda: dict(context_length=8, windows=3, seed=0),
       {"context_length": Int(low=1), "windows": Int(low=1), "seed": Int(low=0, role="seed")})


# ============================================================================================
# nlbook.train, nlbook.evaluate, nlbook.sample, nlbook.bench

from nlbook import bench, evaluate, sample  # noqa: E402
from nlbook import train as training  # noqa: E402
from nlbook.train import building, checkpoints, loop  # noqa: E402


def train_options(**overrides):
    values = dict(model="transformer", d_model=8, n_layers=1, n_heads=2, context_length=8,
                  batch_size=2, steps=2, warmup_steps=1, eval_interval=2, eval_batches=1,
                  learning_rate=3e-3, min_learning_rate=3e-4, data=text_file())
    values.update(overrides)
    return values


@functools.cache
def checkpoint_file() -> str:
    path = fixture_dir() / "model.pt"
    training.train(training.TrainConfig(**train_options(checkpoint=str(path))), progress=False,
                   log=None)
    return str(path)


def broken_checkpoint(key: str) -> str:
    """The checkpoint of checkpoint_file() without ``key``."""
    state = checkpoints.load_checkpoint(checkpoint_file())
    state.pop(key)
    path = fixture_dir() / f"without-{key}.pt"
    torch.save(state, path)
    return str(path)


def foreign_checkpoint() -> str:
    """A transformer checkpoint whose model_config says hope (another model's weights)."""
    state = checkpoints.load_checkpoint(checkpoint_file())
    state["model_config"] = dict(state["model_config"], name="hope", options={})
    path = fixture_dir() / "foreign.pt"
    torch.save(state, path)
    return str(path)


class Payload:
    """Unpickling this would run code: the checkpoint loader must refuse it unread."""

    ran = False

    def __reduce__(self):
        return (Payload._run, ())

    @staticmethod
    def _run():
        Payload.ran = True
        return "ran"


def pickled_checkpoint() -> str:
    path = fixture_dir() / "pickled.pt"
    torch.save({"format": "nlbook-checkpoint-1", "model": {}, "payload": Payload()}, path)
    return str(path)


@functools.cache
def train_result():
    return training.train(training.TrainConfig(**train_options()), progress=False, log=None)


for error_class in (training.CheckpointError, training.ModelUnavailableError,
                    training.TrainingDivergedError, training.TrainingInterrupted):
    exempt(error_class, ERROR)
exempt(training.TrainResult, RECORD)
for command in (training.main, evaluate.main, sample.main, bench.main):
    exempt(command, COMMAND_LINE)
CONFIG_FIELDS = dict(
    model="transformer", preset=None, d_model=8, n_layers=1, n_heads=2, context_length=8,
    model_options={}, batch_size=2, steps=2, minutes=None, calibration_steps=10,
    optimizer="adamw", learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=1,
    weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=2, eval_batches=1,
    checkpoint_interval=None, seed=0, device="cpu", data=None, checkpoint=None,
    carry_state=False, stream_length=1024, carry_relative=True)
# learning_rate=inf is valid on purpose: train() stops that run with TrainingDivergedError.
LEARNING_RATE = Float(low=0, low_inclusive=False)
entry(training.TrainConfig, lambda: dict(CONFIG_FIELDS),
      {"model": Choice(), "preset": Choice(none=True), "d_model": Int(low=1),
       "n_layers": Int(low=1), "n_heads": Int(low=1), "context_length": Int(low=1),
       "model_options": Obj(), "batch_size": Int(low=1), "steps": Int(low=1, role="cost"),
       "minutes": Float(low=0, low_inclusive=False, none=True, huge=False),
       "calibration_steps": Int(low=1, role="cost"), "optimizer": Choice(),
       "learning_rate": LEARNING_RATE, "min_learning_rate": Float(0, 3e-3),
       "warmup_steps": Int(low=0, role="cost"), "weight_decay": Float(low=0),
       "beta1": Float(0, 1, high_inclusive=False), "beta2": Float(0, 1, high_inclusive=False),
       "grad_clip": Float(low=0, low_inclusive=False, none=True),
       "eval_interval": Int(low=1, role="cost"), "eval_batches": Int(low=1, role="cost"),
       "checkpoint_interval": Int(low=1, none=True, role="cost"),
       "seed": Int(low=0, role="seed"), "device": Device(named=True), "data": Str(none=True),
       "checkpoint": Str(none=True), "carry_state": Bool(),
       "stream_length": Int(low=1, none=True, role="cost"), "carry_relative": Bool()},
      same=False,
      extra=[("model_options", "an unknown option", {"bogus": 1}, REFUSE),
             ("model_options", "a non-plain value", {"dropout": object()}, REFUSE),
             ("beta2", "1.0", 1.0, REFUSE)], finite=False)
REGISTRY[key_of(training.TrainConfig)].specs["learning_rate"] = Float(
    low=0, low_inclusive=False, infinite=True)  # inf: see above
method("TrainConfig.from_preset", lambda preset, steps: training.TrainConfig.from_preset(
    preset, steps=steps), lambda: dict(preset="tiny", steps=5),
       {"preset": Choice(), "steps": Int(low=1, role="cost")}, same=False)
method("TrainConfig.from_dict", lambda values: training.TrainConfig.from_dict(values),
       lambda: dict(values=dict(CONFIG_FIELDS)), {"values": Obj()}, same=False,
       extra=[("values", "a bad field", dict(CONFIG_FIELDS, beta1=1.5), REFUSE)],
       aliases={"values": ("beta1",)})
entry(training.train,
      lambda: dict(config=training.TrainConfig(**train_options()), corpus=None, resume=False,
                   stop_at_step=None, progress=False, after_step=None, log=None),
      {"config": Obj(), "corpus": Obj(none=True), "resume": Bool(),
       "stop_at_step": Int(low=0, none=True, role="cost"), "progress": Bool(),
       "after_step": Func(none=True), "log": Func(none=True)}, same=False, alarm=10.0,
      extra=[("config", "learning_rate=inf (diverges)",
              training.TrainConfig(**train_options(learning_rate=math.inf)),
              training.TrainingDivergedError),
             ("config", "a huge learning rate (diverges)",
              training.TrainConfig(**train_options(learning_rate=1e30)),
              training.TrainingDivergedError),
             ("config", "an unwritable checkpoint",
              training.TrainConfig(**train_options(checkpoint="/proc/nlbook/x.pt")), REFUSE)])
entry(building.build_model,
      lambda: dict(name="hope", vocab_size=V, d_model=8, n_layers=1, n_heads=2,
                   context_length=8, **SMALL_HOPE),
      {"name": Choice(), "vocab_size": Int(low=1), "d_model": Int(low=1),
       "n_layers": Int(low=1), "n_heads": Int(low=1), "context_length": Int(low=1, none=True)},
      same=False)
entry(building.build_optimizer,
      lambda: dict(name="muon", model=small_transformer(), learning_rate=1e-3,
                   weight_decay=0.1, betas=(0.9, 0.99)),
      {"name": Choice(), "model": Obj(), "learning_rate": Float(low=0, low_inclusive=False),
       "weight_decay": Float(low=0), "betas": FloatList(item=Float(0, 1,
                                                                   high_inclusive=False))},
      same=False)
REGISTRY[key_of(building.build_optimizer)].specs["learning_rate"] = Float(
    low=0, low_inclusive=False, infinite=True)  # inf allowed for AdamW (a diverging run)
entry(building.OptimizerPair,
      lambda: dict(main=torch.optim.SGD(parameters(), lr=0.1),
                   fallback=torch.optim.SGD(parameters(), lr=0.1)),
      {"main": Obj(), "fallback": Obj()}, same=False)
entry(building.learning_rate_at,
      lambda: dict(step=5, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=2,
                   total_steps=10, progress=None),
      {"step": Int(low=0), "learning_rate": Float(low=0, low_inclusive=False, infinite=True),
       "min_learning_rate": Float(0, 1e-3), "warmup_steps": Int(low=0),
       "total_steps": Int(low=1, none=True), "progress": Float(none=True)})
REGISTRY[key_of(building.learning_rate_at)].finite = False  # a rate of inf stays inf
entry(checkpoints.load_checkpoint, lambda: dict(path=checkpoint_file(), map_location="cpu"),
      {"path": File(), "map_location": Device()}, same=False)
entry(checkpoints.load_model, lambda: dict(path=checkpoint_file(), device="cpu"),
      {"path": File(), "device": Device()}, same=False,
      extra=[("path", "a checkpoint lacking model_config", Lazy(lambda: broken_checkpoint(
                  "model_config")), training.CheckpointError),
             ("path", "a checkpoint of another model's weights", Lazy(foreign_checkpoint),
              training.CheckpointError),
             ("path", "a checkpoint with a pickled object", Lazy(pickled_checkpoint),
              training.CheckpointError)])
entry(checkpoints.save_checkpoint,
      lambda: dict(path=str(fixture_dir() / "saved.pt"),
                   state={"format": training.CHECKPOINT_FORMAT, "a": 1}),
      {"path": OutFile(), "state": Obj()}, same=False,
      extra=[("state", "another format (load_checkpoint refuses it)", {"format": "x"}, REFUSE),
             ("state", "an arbitrary object inside",
              {"format": training.CHECKPOINT_FORMAT, "a": Payload()}, REFUSE)])
EVALUATION = dict(model=Obj(), ids=Tensor(kind="int", vocab=len(vocabulary())),
                  device=Device())
entry(training.estimate_loss,
      lambda: dict(model=small_text_model(), ids=text_ids(), batch_size=2, context_length=8,
                   batches=2, seed=0, device="cpu"),
      {**EVALUATION, "batch_size": Int(low=1), "context_length": Int(low=1, high=8),
       "batches": Int(low=1, role="cost"), "seed": Int(low=0, role="seed")})
entry(training.evaluate_all,
      lambda: dict(model=small_text_model(), ids=text_ids(), context_length=8, batch_size=4,
                   device="cpu", progress=False),
      {**EVALUATION, "context_length": Int(low=1, high=8), "batch_size": Int(low=1),
       "progress": Bool()})
entry(training.evaluate_stream,
      lambda: dict(model=small_text_model(), ids=text_ids(), window=8, device="cpu",
                   batch_size=4, progress=False),
      {**EVALUATION, "window": Int(low=1, high=8), "batch_size": Int(low=1),
       "progress": Bool()})
entry(training.loss_by_position,
      lambda: dict(model=small_text_model(), ids=text_ids(), length=8, windows=3, seed=0,
                   device="cpu", batch_size=2),
      {**EVALUATION, "length": Int(low=1, high=8), "windows": Int(low=1, role="cost"),
       "seed": Int(low=0, role="seed"), "batch_size": Int(low=1)})
entry(loop.save_loss_figure,
      lambda: dict(result=train_result(), path=str(fixture_dir() / "loss.png"),
                   references={"uniform": 3.0}),
      {"result": Obj(), "path": OutFile(), "references": Obj(none=True)}, same=False,
      extra=[("path", "an unknown image type", str(fixture_dir() / "loss.xyz"), REFUSE),
             ("references", "a NaN reference", {"uniform": math.nan}, REFUSE)])
entry(evaluate.evaluate_checkpoint,
      lambda: dict(checkpoint=checkpoint_file(), data=None, split=None, window=8,
                   device="cpu", progress=False),
      {"checkpoint": File(), "data": File(none=True), "split": Choice(none=True),
       "window": Int(low=1), "device": Device(), "progress": Bool()}, same=False)
entry(sample.sample_text,
      lambda: dict(model=small_text_model(), vocabulary=vocabulary(), prompt="to be",
                   max_new_tokens=4, temperature=0.8, top_k=5, top_p=0.9,
                   generator=torch.Generator().manual_seed(0), num_samples=2),
      {"model": Obj(), "vocabulary": Obj(), "prompt": Str(),
       "max_new_tokens": Int(low=0, role="cost"), **SAMPLING, "num_samples": Int(low=1)},
      extra=[("prompt", "a character outside", "zzz", REFUSE),
             ("temperature", "1e-40", 1e-40, EITHER)])
entry(bench.time_call, lambda: dict(function=lambda: None, repeats=2, warmup=1, min_seconds=0.0),
      {"function": Func(), "repeats": Int(low=1, role="cost"), "warmup": Int(low=0, role="cost"),
       "min_seconds": Float(low=0, huge=False)})


@functools.cache
def small_text_model():
    torch.manual_seed(0)
    return transformer.TransformerLM(len(vocabulary()), 8, 1, 2, context_length=8)


# ============================================================================================
# nlbook.claims, nlbook.hope.mixers, the Hebbian chunk

from nlbook import claims  # noqa: E402
from nlbook.hope import mixers  # noqa: E402

for record_class in (claims.AblationResult, claims.AblationRow):
    exempt(record_class, RECORD)
ABLATION_SIZES = dict(d_model=8, n_layers=1, n_heads=2, context_length=8, batch_size=2,
                      stream_length=16)
entry(claims.ablation_configs,
      lambda: dict(**ABLATION_SIZES, minutes=None, steps=2, learning_rate=2e-3, seed=0,
                   variants=["HOPE", "Transformer"], vocab_size=V),
      {"d_model": Int(low=1), "n_layers": Int(low=1), "n_heads": Int(low=1),
       "context_length": Int(low=1), "batch_size": Int(low=1),
       "minutes": Float(low=0, low_inclusive=False, none=True, huge=False),
       "steps": Int(low=1, role="cost"), "learning_rate": Float(low=0, low_inclusive=False),
       "stream_length": Int(low=1, role="cost", none=True), "seed": Int(low=0, role="seed"),
       "variants": Obj(none=True), "vocab_size": Int(low=1)}, same=False,
      extra=[("variants", "an unknown variant", ["HOPE", "bogus"], REFUSE)])


@functools.cache
def ablation_corpus():
    return data.make_corpus(TEXT * 3, source="text")


entry(claims.run_ablation,
      lambda: dict(minutes=None, steps=1, variants=["Transformer"], corpus=ablation_corpus(),
                   scored_characters=40, position_length=8, position_windows=1, seed=0,
                   progress=False, log=None, **ABLATION_SIZES),
      # variants=None and corpus=None are valid but train every variant / on Shakespeare:
      # their other mutations are fuzzed, and ablation_configs fuzzes variants fully.
      {"steps": Int(low=1, role="cost"), "variants": Free(), "corpus": Free(),
       "scored_characters": Int(low=2, none=True, role="cost"),
       "position_length": Int(low=1, role="cost"), "position_windows": Int(low=1, role="cost"),
       "seed": Int(low=0, role="seed"), "progress": Bool(), "log": Func(none=True)},
      same=False, alarm=10.0,
      extra=[("variants", "an int", 3, REFUSE), ("variants", "a str", "HOPE", REFUSE),
             ("corpus", "an int", 3, REFUSE), ("corpus", "a str", "bogus", REFUSE)])

MIXER_X = Tensor(batch="B")


@functools.cache
def small_mixer(cls, name, value):
    return cls(8, 2, **{name: value}, generator=torch.Generator().manual_seed(0))

for mixer_class, extra_name, extra_value in ((mixers.SlidingWindowAttention, "window", 3),
                                             (mixers.GatedLinearAttention, "chunk_size", 2),
                                             (mixers.GatedDeltaRule, "chunk_size", 2)):
    entry(mixer_class,
          lambda cls=mixer_class, name=extra_name, value=extra_value: dict(
              d_model=8, heads=2, head_dim=None, **{name: value},
              generator=torch.Generator().manual_seed(0)),
          {"d_model": Int(low=1), "heads": Int(low=1), "head_dim": Int(low=1, none=True),
           extra_name: Int(low=1), "generator": Gen(none=True)}, same=False)

    def mixer_forward(x, state, return_trace, keep_state, cls=mixer_class, name=extra_name,
                      value=extra_value):
        layer = small_mixer(cls, name, value)
        return layer(x, state, return_trace=return_trace, keep_state=keep_state)

    method(f"{mixer_class.__name__}.forward", mixer_forward,
           lambda cls=mixer_class, name=extra_name, value=extra_value: dict(
               x=randn(2, 5, 8), state=small_mixer(cls, name, value).initial_state(2),
               return_trace=False, keep_state=True),
           {"x": MIXER_X, "state": Obj(none=True), "return_trace": Bool(), "keep_state": Bool()},
           check=shape_is(lambda r: r[0], lambda a: a["x"].shape),
           extra=[("state", "a state for batch 1",
                   small_mixer(mixer_class, extra_name, extra_value).initial_state(1), REFUSE)])
for record_class in (mixers.AttentionState, mixers.LinearAttentionState):
    exempt(record_class, RECORD)



entry(chunk_kernel.gated_hebbian_chunk,
      lambda: dict(state=randn(2, 3, 4), keys=F.normalize(randn(2, 5, 3, seed=1), dim=-1),
                   values=randn(2, 5, 4, seed=2), beta=rand(2, 5, seed=3),
                   log_alpha=-rand(2, 5, seed=4, high=0.2), queries=randn(2, 5, 3, seed=5)),
      {"state": Tensor(rank=False), "keys": Tensor(rank=False), "values": Tensor(rank=False),
       "beta": Tensor(gate=(0, math.inf), rank=False),
       "log_alpha": Tensor(gate=(-math.inf, 0), rank=False),
       "queries": Tensor(none=True, rank=False)}, check=chunk_shapes)


# ============================================================================================
# nlbook.viz (NaN in plotted data is a gap, not an error: finite=False) and nlbook.widgets

from nlbook import viz, widgets  # noqa: E402
from nlbook.viz import palette  # noqa: E402

ARRAY = Tensor(finite=False, contiguity=False, grad=False, float64=EITHER, integers=True)
LIGHT_ARRAY = Tensor(finite=False, integers=True, light=True)
# Plotted numbers: NaN and inf are gaps, any sign plots; bools and strings are refused.
PLOT_NUMBERS = FloatList(item=Float(), gaps=True)
FIGURE = dict(finite=False, same=False)
TITLE = Str(empty=True)
SIZE = Float(low=0, low_inclusive=False, huge=False)


def curve(length=6, seed=0):
    return rand(length, seed=seed, low=1.0, high=2.0)


entry(viz.new_figure, lambda: dict(ncols=2, nrows=1, width=3.0, height=2.0),
      {"ncols": Int(low=1), "nrows": Int(low=1), "width": SIZE,
       "height": SIZE}, **FIGURE)
entry(viz.to_numpy, lambda: dict(array=randn(3, 2)), {"array": Free()}, finite=False)
entry(palette.model_color, lambda: dict(label="HOPE"), {"label": Str(empty=True)})
entry(palette.colors_for, lambda: dict(labels=["HOPE", "Transformer", "x"]),
      {"labels": Obj()}, extra=[("labels", "an int among them", ["HOPE", 3], REFUSE)])
entry(viz.plot_memory_explorer,
      lambda: dict(states=randn(6, 3, 3), errors=rand(6, 2), recall=rand(6), step=2,
                   title="t", key_ids=torch.tensor([0, 1, 0, 1, 0, 1])),
      {"states": ARRAY, "errors": ARRAY, "recall": LIGHT_ARRAY,
       "step": Int(low=0, high=5, role="index"), "title": TITLE,
       "key_ids": Tensor(kind="int", vocab=2, none=True)}, **FIGURE)
entry(viz.plot_recall_comparison,
      lambda: dict(x_values=[1, 2, 3], table={"a": [0.1, 0.5, 0.9]}, xlabel="N", title="",
                   reference_x=2.0),
      {"x_values": Obj(), "table": Obj(), "xlabel": TITLE, "title": TITLE,
       "reference_x": Float(none=True)}, **FIGURE,
      extra=[("table", "a row of another length", {"a": [0.1]}, REFUSE)])
entry(viz.plot_speedups,
      lambda: dict(labels=["a", "b"], loop_seconds=[1.0, 2.0], chunk_seconds=[0.5, 0.5]),
      {"labels": Obj(), "loop_seconds": FloatList(item=Float(low=0, low_inclusive=False)),
       "chunk_seconds": FloatList(item=Float(low=0, low_inclusive=False))}, **FIGURE)
entry(viz.plot_update_ticks,
      lambda: dict(steps_per_block=[[2, 4, 6], [6]], length=8, sizes=None,
                   labels=["fast", "slow"], levels=None),
      {"steps_per_block": Obj(), "length": Int(low=1),
       "sizes": Obj(none=True), "labels": Obj(none=True), "levels": Obj(none=True)},
      **FIGURE, extra=[("labels", "one label for two blocks", ["fast"], REFUSE),
                       ("levels", "one level for two blocks", [1], REFUSE)])
entry(viz.plot_cms_explorer,
      lambda: dict(trajectories=[randn(4, 2, 2), randn(2, 2, 2)],
                   steps_per_block=[[2, 4, 6], [6]], losses=rand(8), time=3, show="change",
                   labels=None, levels=None),
      {"trajectories": Obj(), "steps_per_block": Obj(), "losses": ARRAY,
       "time": Int(low=0, high=7, role="index"), "show": Choice(),
       "labels": Obj(none=True), "levels": Obj(none=True)}, **FIGURE)
entry(viz.plot_stream_losses,
      lambda: dict(curves={"HOPE": curve(), "Transformer": curve(seed=1)}, boundaries=[3],
                   labels=["A", "B"], smooth=2, ylabel="loss", floor=None),
      {"curves": Obj(), "boundaries": IntList(item=Int(low=0), empty=True),
       "labels": Obj(), "smooth": Int(low=1), "ylabel": TITLE,
       "floor": Float(low=0, low_inclusive=False, none=True)}, **FIGURE)
entry(viz.plot_forgetting,
      lambda: dict(results={"SGD": [1.0, 2.0], "M3": [1.0, 1.5]}, phase_labels=["A", "B"],
                   ylabel="MSE", log=True, floor=None),
      {"results": Obj(), "phase_labels": Obj(), "ylabel": TITLE, "log": Bool(),
       "floor": Float(low=0, low_inclusive=False, none=True)}, **FIGURE)


def timescales():
    return dict(lr=rand(5, 2), retention=rand(5, 2), key_change=rand(5, 2),
                value_change=rand(5, 2), memory_drift=rand(5, 2), generator_drift=rand(5, 2),
                cms_drift=rand(5, 2), cms_updates=[[], [3]], token_loss=rand(5))


entry(viz.plot_hope_timescales, lambda: dict(**timescales(), token=2, text="abcde", title=""),
      {"lr": ARRAY, "memory_drift": ARRAY,
       **{name: LIGHT_ARRAY for name in ("retention", "key_change", "value_change",
                                         "generator_drift", "cms_drift", "token_loss")},
       "cms_updates": Obj(), "token": Int(low=0, high=4, role="index"), "text": TITLE,
       "title": TITLE}, **FIGURE)
entry(viz.plot_hope_passage,
      lambda: dict(traces={"tiny": [timescales()]}, text="abcde", token=2, layer=0, model=None),
      {"traces": Obj(), "text": TITLE, "token": Int(low=0, high=4, role="index"),
       "layer": Int(low=0, high=0, role="index"), "model": Choice(none=True)}, **FIGURE)
entry(viz.plot_speed_and_size,
      lambda: dict(names=["HOPE", "Transformer"], tokens_per_second=[100.0, 300.0],
                   parameters=[1e6, 1e6], title="t"),
      {"names": Obj(), "tokens_per_second": PLOT_NUMBERS, "parameters": PLOT_NUMBERS,
       "title": TITLE}, **FIGURE)



def mqar_sequence():
    inputs = torch.tensor([3, 9, 5, 12, 0, 5, 0, 3])  # 2 pairs (3→9, 5→12), queries 5 and 3
    targets = torch.tensor([-1, -1, -1, -1, -1, 12, -1, 9])
    return inputs, targets


MQAR_TOKENS = Tensor(kind="int", light=True)
entry(viz.plot_mqar_sequence,
      lambda: dict(inputs=mqar_sequence()[0], targets=mqar_sequence()[1], kv_pairs=2,
                   predictions=torch.tensor([0, 0, 0, 0, 0, 12, 0, 4]), title=""),
      {"inputs": MQAR_TOKENS, "targets": MQAR_TOKENS, "kv_pairs": Int(low=1, high=4),
       "predictions": Tensor(kind="int", light=True, none=True), "title": TITLE}, **FIGURE,
      extra=[("inputs", "a negative token id", torch.tensor([-3, 9, 5, 12, 0, 5, 0, 3]),
              REFUSE),
             ("targets", "a target below -1", torch.tensor([-2] * 8), REFUSE),
             ("predictions", "another length", torch.tensor([0, 1]), REFUSE)])
entry(viz.plot_mqar_curves,
      lambda: dict(curves={"hope": [[(50, 0.3), (100, 0.9)], [(50, 0.2), (100, 0.8)]],
                           "delta": [[(50, 0.5)]]},
                   chance=0.25, threshold=0.9, title="", xlabel="step"),
      {"curves": Obj(), "chance": Float(low=0, high=1, none=True),
       "threshold": Float(low=0, high=1, none=True), "title": TITLE, "xlabel": TITLE},
      **FIGURE,
      extra=[("curves", "a curve with three columns", {"a": [[(1, 0.5, 2)]]}, REFUSE),
             ("curves", "no seed", {"a": []}, REFUSE),
             ("curves", "a curve that is not a list of seeds", {"a": 0.5}, REFUSE)])


def recall_matrix(seed=0):
    matrix = rand(8, 8, seed=seed, low=-1.0, high=1.0)
    return matrix.masked_fill(torch.ones(8, 8).triu(1).bool(), float("nan"))


entry(viz.plot_hope_recall,
      lambda: dict(inputs=mqar_sequence()[0], targets=mqar_sequence()[1], lr=rand(8),
                   key_similarity=recall_matrix(), value_similarity=recall_matrix(1),
                   position=5, kv_pairs=2, title="t"),
      {"inputs": MQAR_TOKENS, "targets": MQAR_TOKENS, "lr": LIGHT_ARRAY,
       "key_similarity": LIGHT_ARRAY, "value_similarity": LIGHT_ARRAY,
       "position": Int(low=0, high=7, role="index"), "kv_pairs": Int(low=1, high=4),
       "title": TITLE}, **FIGURE,
      extra=[("key_similarity", "a (T, T-1) matrix", rand(8, 7), REFUSE),
             ("lr", "another length", rand(5), REFUSE)])


def toy_runs():
    path, losses = optim.run_toy_problem("momentum", steps=4)
    return {"momentum": (path, losses)}


entry(viz.plot_optimizer_trajectories,
      lambda: dict(runs=toy_runs(), landscape=optim.toy_landscape("quadratic", 8), title=None),
      {"runs": Obj(), "landscape": Obj(), "title": Str(none=True, empty=True)}, **FIGURE,
      extra=[("landscape", "a landscape without 'loss'", {"x": [0.0], "y": [0.0]}, REFUSE)])
entry(viz.plot_momentum_memory_length, lambda: dict(momenta=[0.5, 0.9], max_count=20),
      {"momenta": FloatList(item=Float(0, 1, high_inclusive=False), scalar=True),
       "max_count": Int(low=1, high=10 ** 6)}, **FIGURE)
entry(viz.plot_newton_schulz,
      lambda: dict(initial=[0.01, 0.1, 1.0], after={"1 step": [0.03, 0.3, 0.9]}, title=None),
      {"initial": Obj(), "after": Obj(), "title": Str(none=True, empty=True)}, **FIGURE,
      extra=[("after", "a series of another length", {"1 step": [0.5]}, REFUSE),
             ("initial", "a zero singular value", [0.0, 1.0, 0.5], REFUSE)])
entry(viz.plot_continual_stream,
      lambda: dict(results=optim.continual_stream({"sgd": sgd}, tasks=2, switch_every=2,
                                                  steps=4, input_dim=3, hidden=4, output_dim=2,
                                                  batch=2), smooth=2),
      {"results": Obj(), "smooth": Int(low=1)}, **FIGURE)
entry(viz.plot_gd_vs_dgd_stream,
      lambda: dict(results={"gd": {0.5: rand(6)}, "dgd": {0.5: rand(6, seed=1)}}, title="t"),
      {"results": Obj(), "title": TITLE}, **FIGURE,
      extra=[("results", "an unknown rule", {"sgd": {0.5: rand(6)}}, REFUSE),
             ("results", "only 'gd'", {"gd": {0.5: rand(6)}}, EITHER)])
entry(viz.plot_selfmod_trace,
      lambda: dict(lr=rand(6), retention=rand(6), changes={"main": rand(6)}, step=2, head=0),
      {"lr": ARRAY, "retention": ARRAY, "changes": Obj(),
       "step": Int(low=0, high=5, role="index"), "head": Int(low=0)}, **FIGURE)
entry(viz.plot_training_curves,
      lambda: dict(train_steps=torch.arange(1, 7), train_loss=curve(), val_steps=[2, 4, 6],
                   val_loss=[1.8, 1.6, 1.5], references={"uniform": 4.1}, label="HOPE",
                   smoothing=0.9, title=None, width=4.0, height=3.0),
      {"train_steps": ARRAY, "train_loss": ARRAY,
       "val_steps": Obj(none=True), "val_loss": Obj(none=True), "references": Obj(none=True),
       "label": TITLE, "smoothing": Float(0, 1, high_inclusive=False),
       "title": Str(none=True, empty=True), "width": SIZE, "height": SIZE}, **FIGURE)
entry(viz.plot_loss_curves,
      lambda: dict(curves={"HOPE": ([1, 2, 3], [2.0, 1.8, 1.7])}, references=None,
                   xlabel="step", title="t", width=4.0, height=3.0),
      {"curves": Obj(), "references": Obj(none=True), "xlabel": TITLE, "title": TITLE,
       "width": SIZE, "height": SIZE}, **FIGURE,
      extra=[("curves", "x and loss of different lengths", {"HOPE": ([1, 2], [2.0])}, REFUSE)])
entry(viz.plot_loss_by_position,
      lambda: dict(curves={"HOPE": curve(20)}, references={"uniform": 4.1}, training_window=8,
                   smoothing=4, title=None, width=4.0, height=3.0),
      {"curves": Obj(), "references": Obj(none=True),
       "training_window": Int(low=1, none=True), "smoothing": Int(low=1),
       "title": Str(none=True, empty=True), "width": SIZE, "height": SIZE}, **FIGURE)
entry(viz.plot_evaluations,
      lambda: dict(scores={"HOPE": {"fresh": 1.8, "stream": 1.7}}, title=None, width=4.0,
                   height=3.0),
      {"scores": Obj(), "title": Str(none=True, empty=True), "width": SIZE, "height": SIZE},
      **FIGURE, extra=[("scores", "a NaN score", {"HOPE": {"fresh": math.nan}}, EITHER)])
entry(viz.plot_ablation,
      lambda: dict(names=["HOPE", "without CMS"], stream=[1.7, 1.8], fresh=[1.9, 2.0],
                   baseline="HOPE", title=None, width=4.0, height=None),
      {"names": Obj(), "stream": PLOT_NUMBERS, "fresh": Obj(none=True),
       "baseline": Str(empty=True), "title": Str(none=True, empty=True), "width": SIZE,
       "height": Float(low=0, low_inclusive=False, none=True, huge=False)}, **FIGURE)
entry(widgets.render_once, lambda: dict(plot=viz.plot_momentum_memory_length),
      {"plot": Func()}, **FIGURE)
entry(widgets.int_slider, lambda: dict(value=3, low=0, high=10, step=1, description="n"),
      {"value": Int(low=0, high=10, role="index"), "low": Int(high=3, role="index"),
       "high": Int(low=3, role="index"), "step": Int(low=1, role="index"),
       "description": TITLE}, **FIGURE)
entry(widgets.float_slider,
      lambda: dict(value=0.5, low=0.0, high=1.0, step=0.1, description="x", readout_format=".2f"),
      {"value": Float(0, 1), "low": Float(high=0.5), "high": Float(low=0.5),
       "step": Float(low=0, low_inclusive=False), "description": TITLE,
       "readout_format": Str()}, **FIGURE)
entry(widgets.dropdown, lambda: dict(options=["a", "b"], value="a", description="d"),
      {"options": Obj(), "value": Free(), "description": TITLE}, **FIGURE,
      extra=[("value", "a value not among the options", "c", REFUSE)])
entry(widgets.multi_select, lambda: dict(options=["a", "b"], value=("a",), description="d"),
      {"options": Obj(), "value": Free(), "description": TITLE}, **FIGURE,
      extra=[("value", "a value not among the options", ("c",), REFUSE)])
entry(widgets.explore,
      lambda: dict(plot=viz.plot_momentum_memory_length,
                   controls={"max_count": widgets.int_slider(20, 1, 40)}, fixed={"momenta": 0.9},
                   play=None),
      {"plot": Func(), "controls": Obj(), "fixed": Obj(none=True), "play": Str(none=True)},
      **FIGURE, extra=[("play", "a name that is no control", "bogus", REFUSE),
                       ("controls", "a control without a value", {"max_count": 3}, REFUSE)])


# ============================================================================================
# nlbook.levels, nlbook.viz.diagrams, nlbook.claims.table, nlbook.timing, nlbook.course,
# nlbook.render, nlbook.train.distributed, the training loop's steps, nlbook.cms.inner_gradient

from nlbook import course, levels, render, timing  # noqa: E402
from nlbook.claims import table as claims_table  # noqa: E402
from nlbook.cms import inner_gradient  # noqa: E402
from nlbook.train import distributed  # noqa: E402
from nlbook.viz import diagrams  # noqa: E402

entry(levels.Component, lambda: dict(name="W", frequency=1.0, needs=("m",), description="d"),
      {"name": Str(), "frequency": Float(low=0), "needs": Obj(), "description": Str(empty=True)},
      same=False)
COMPONENTS = Obj()
entry(levels.assign_levels, lambda: dict(components=levels.m3_components()),
      {"components": COMPONENTS},
      extra=[("components", "a list with a str", [*levels.m3_components(), "x"], REFUSE)])
entry(levels.faster, lambda: dict(a="slow momentum M2", b="weights W",
                                  components=levels.m3_components()),
      {"a": Str(), "b": Str(), "components": COMPONENTS},
      extra=[("a", "an unknown component", "bogus", REFUSE)])
entry(levels.level_label, lambda: dict(level=2, period=32, unit="token"),
      {"level": Int(low=1), "period": Int(low=1, none=True), "unit": Str()})
entry(levels.sgd_momentum_components, dict)
entry(levels.adam_components, dict)
entry(levels.m3_components, lambda: dict(slow_every=10), {"slow_every": Int(low=2)})
entry(levels.hope_components,
      lambda: dict(cms_chunk_sizes=(256, 32), cms_learning_rates=(0.0, 1e-2),
                   tokens_per_step=1024),
      {"cms_chunk_sizes": IntList(item=Int(low=1)),
       "cms_learning_rates": FloatList(item=Float(low=0)), "tokens_per_step": Int(low=1)})
entry(diagrams.level_colour, lambda: dict(level=2), {"level": Int(low=1)})
entry(diagrams.plot_level_map,
      lambda: dict(components=levels.m3_components(), levels=None, unit="step", title=""),
      {"components": COMPONENTS, "levels": Obj(none=True), "unit": Str(), "title": TITLE},
      **FIGURE, extra=[("levels", "levels that contradict Def. 2",
                        {"fast momentum M1": 3, "second moment V": 1, "weights W": 2,
                         "slow momentum M2": 1}, REFUSE)])
entry(diagrams.plot_cms_chain,
      lambda: dict(chunk_sizes=(8, 2), learning_rates=(0.0, 0.1), loss="loss", title=""),
      {"chunk_sizes": IntList(item=Int(low=1)), "learning_rates": FloatList(item=Float(low=0)),
       "loss": Str(empty=True), "title": TITLE}, **FIGURE)
entry(diagrams.plot_hope_block,
      lambda: dict(chunk_size_memory=64, chunk_size_others=32, cms_chunk_sizes=(256, 32),
                   cms_learning_rates=(0.0, 1e-2), conv_window=4, title=""),
      {"chunk_size_memory": Int(low=1), "chunk_size_others": Int(low=1),
       "cms_chunk_sizes": IntList(item=Int(low=1)),
       "cms_learning_rates": FloatList(item=Float(low=0)), "conv_window": Int(low=1),
       "title": TITLE}, **FIGURE)
entry(claims_table.Claim,
      lambda: dict(topic="t", claim="c", paper_scale="p", measured_here="m", scale_here="s",
                   verdict=claims_table.VERDICTS[0], why="w"),
      {"topic": Str(), "claim": Str(), "paper_scale": Str(), "measured_here": Str(),
       "scale_here": Str(), "verdict": Choice(), "why": Str()}, same=False)
entry(claims_table.claims_table, lambda: dict(claims=[]), {"claims": Obj(none=True)},
      extra=[("claims", "a list with a str", ["x"], REFUSE)])
# nlbook.claims.protocol
from nlbook.claims import protocol  # noqa: E402

for record_class in (protocol.AccuracyCell, protocol.Comparison, protocol.LossCell,
                     protocol.Verdict):
    exempt(record_class, RECORD)
entry(protocol.wilson_interval, lambda: dict(correct=3, total=10, z=1.96),
      {"correct": Int(low=0), "total": Int(low=1), "z": Float(0, low_inclusive=False)},
      extra=[("correct", "more than total", 11, REFUSE)])
entry(protocol.loss_cell, lambda: dict(values=[1.0, 1.2, 1.1]),
      {"values": FloatList(item=Float())})
entry(protocol.accuracy_cell, lambda: dict(correct=[3, 4], totals=[10, 10]),
      {"correct": IntList(item=Int(low=0)), "totals": IntList(item=Int(low=1))},
      extra=[("correct", "one count too many", [3, 4, 5], REFUSE),
             ("correct", "more than its total", [11, 4], REFUSE)])
entry(protocol.compare,
      lambda: dict(a=protocol.loss_cell([1.0, 1.1]), b=protocol.loss_cell([2.0, 2.1]),
                   minimum=None),
      {"a": Obj(), "b": Obj(), "minimum": Float(0, none=True)},
      extra=[("b", "another kind of cell", protocol.accuracy_cell([1], [2]), REFUSE)])
entry(protocol.Control,
      lambda: dict(model="LSTM", task="parity", measured=0.97, threshold=0.95,
                   higher_is_better=True),
      {"model": Str(), "task": Str(), "measured": Float(), "threshold": Float(),
       "higher_is_better": Bool()}, same=False)
entry(protocol.verdict,
      lambda: dict(control=protocol.Control("LSTM", "parity", 1.0, 0.95),
                   outcomes=[True, None], testable_on_cpu=True, mechanism_exercised=True),
      {"control": Obj(none=True), "outcomes": Obj(), "testable_on_cpu": Bool(),
       "mechanism_exercised": Bool()},
      extra=[("outcomes", "a list with an int", [1], REFUSE)])
entry(protocol.interleaved_step_seconds,
      lambda: dict(steps={"a": lambda: None, "b": lambda: None}, rounds=2, warmup=0,
                   clock=time.perf_counter),
      {"steps": Obj(), "rounds": Int(low=1, role="cost"), "warmup": Int(low=0, role="cost"),
       "clock": Func()}, same=False,
      extra=[("steps", "{}", {}, REFUSE), ("steps", "a value that is not callable",
                                           {"a": 3}, REFUSE)])
entry(protocol.equal_time_steps, lambda: dict(step_seconds={"a": 0.5, "b": 0.25}, seconds=10.0),
      {"step_seconds": Obj(), "seconds": Float(0, low_inclusive=False)},
      extra=[("step_seconds", "a zero time", {"a": 0.0}, REFUSE)])
entry(timing.load_average, dict, finite=False)  # NaN where the OS has no load average
entry(course.repository_address, lambda: dict(root=None), {"root": DirectoryArg()},
      same=False)
entry(course.setup_cell, lambda: dict(address="https://github.com/a/b", seed=0),
      {"address": Str(), "seed": Int(low=0, role="seed")})
entry(course.colab_url, lambda: dict(address="https://github.com/a/b",
                                     notebook="01_associative_memory.ipynb"),
      {"address": Str(), "notebook": Str()})
entry(course.readme_block, lambda: dict(address="https://github.com/a/b",
                                        notebooks=["01_associative_memory.ipynb"]),
      {"address": Str(), "notebooks": Obj()})
for command in (course.main, render.main):
    exempt(command, COMMAND_LINE)
exempt(course.check, "reads every tracked file of the checkout (git); tests/test_course.py")
exempt(course.sync, "rewrites the notebooks and README of the checkout; tests/test_course.py")
exempt(render.render_notebook, "executes a notebook (minutes); tests/test_render.py")
exempt(render.render_book, "executes every notebook (minutes); tests/test_render.py")
for record_class in (render.NotebookFailed, render.RenderedNotebook):
    exempt(record_class, ERROR if record_class is render.NotebookFailed else RECORD)
if hasattr(course, "CourseError"):
    exempt(course.CourseError, ERROR)
entry(distributed.launched_world_size, dict)
entry(distributed.launched_rank, dict)
entry(distributed.check_batch_divides, lambda: dict(batch_size=4, world_size=2),
      {"batch_size": Int(low=1), "world_size": Int(low=1)},
      extra=[("world_size", "3 (does not divide 4)", 3, REFUSE)])
entry(distributed.World, lambda: dict(rank=0, size=1, local_rank=0, backend=None,
                                      owns_group=False),
      {"rank": Int(low=0), "size": Int(low=1), "local_rank": Int(low=0),
       "backend": Str(none=True), "owns_group": Bool()}, same=False,
      extra=[("rank", "a rank past the size", 1, REFUSE)])
entry(distributed.take_rows, lambda: dict(tree={"a": torch.arange(6).view(3, 2)},
                                          rows=slice(0, 2)),
      {"tree": Free(), "rows": Obj()})
entry(distributed.process_device, lambda: dict(device="cpu", world=distributed.World()),
      {"device": Device(named=True), "world": Obj()}, same=False)
entry(distributed.join_world, lambda: dict(device="cpu"), {"device": Device()}, same=False)
entry(distributed.data_parallel,
      lambda: dict(module=torch.nn.Linear(2, 2), world=distributed.World(),
                   device=torch.device("cpu")),
      {"module": Obj(), "world": Obj(), "device": Device()}, same=False)
entry(distributed.describe_world, lambda: dict(world_size=1, batch_size=4, device="cpu",
                                               autocast=False),
      {"world_size": Int(low=1), "batch_size": Int(low=1), "device": Device(named=True),
       "autocast": Bool()})
entry(training.evaluation.window_batch_losses,
      lambda: dict(model=small_text_model(), ids=text_ids(), batch_size=2, context_length=8,
                   batches=2, seed=0, device="cpu", share=(0, 1)),
      {**EVALUATION, "batch_size": Int(low=1), "context_length": Int(low=1, high=8),
       "batches": Int(low=1, role="cost"), "seed": Int(low=0, role="seed"), "share": Obj()},
      extra=[("share", "a rank past the size", (1, 1), REFUSE)])


def fresh_run():
    return loop.set_up_run(training.TrainConfig(**train_options()))


entry(loop.set_up_run,
      lambda: dict(config=training.TrainConfig(**train_options()), corpus=None, resume=False,
                   world=None),
      {"config": Obj(), "corpus": Obj(none=True), "resume": Bool(), "world": Obj(none=True)},
      same=False)
exempt(loop.Run, RECORD + " (set_up_run builds it)")
exempt(loop.StepForward, "the module one training step calls; built by set_up_run")
for step_function in (loop.train_step, loop.learning_rate_for, loop.evaluate_run,
                      loop.record_evaluation, loop.checkpoint_state, loop.write_checkpoint):
    entry(step_function, lambda: dict(run=fresh_run()), {"run": Obj()}, same=False)
entry(loop.stop_at_deadline, lambda: dict(run=fresh_run(), say=print),
      {"run": Obj(), "say": Func()}, same=False)
entry(loop.describe_run, lambda: dict(config=training.TrainConfig(**train_options()),
                                      world_size=1),
      {"config": Obj(), "world_size": Int(low=1)})
for kernel in (inner_gradient.BranchTape, inner_gradient.activation_backward,
               inner_gradient.activation_derivative, inner_gradient.affine_input_gradient,
               inner_gradient.check_per_token_losses, inner_gradient.layer_norm_backward,
               inner_gradient.layer_output_gradients, inner_gradient.loss_and_output_gradient):
    exempt(kernel, "an inner-gradient kernel of ContinuumMemory.forward (called per segment "
                   "with what forward checked; kept free of checks for torch.compile)")


# ============================================================================================
# chapter 7's experiments: nlbook.claims (formal, recall, continual, their shared pieces),
# nlbook.viz.claims, nlbook.hope.frozen_memories, nlbook.train.stream_token_losses

for record_class in (claims.FormalResult, claims.RecallGapResult, claims.ContinualResult,
                     claims.ContinualMetrics):
    exempt(record_class, RECORD)
FORMAL_SMALL = dict(train_lengths=(2, 4), test_lengths=(5, 8))
SEEDS = IntList(item=Int(low=0, role="seed"), scalar=True)
# models=None is valid but trains the default HOPE and Transformer: fuzzed by the extras only
MODELS = Free()
MODEL_EXTRAS = [("models", "{}", {}, REFUSE), ("models", "an int", 3, REFUSE),
                ("models", "a str", "bogus", REFUSE),
                ("models", "a factory that returns an int", {"T": lambda: 3}, REFUSE),
                ("models", "a name that is not a str", {3: formal_model}, REFUSE)]
SWITCHES = Obj(none=True)


def formal_factories():
    return {"T": formal_model}


entry(claims.formal_models, lambda: dict(d_model=8, n_layers=1, n_heads=2, context_length=9),
      {"d_model": Int(low=1), "n_layers": Int(low=1), "n_heads": Int(low=1),
       "context_length": Int(low=1)}, same=False)
REGISTRY[key_of(claims.formal_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims.formal_models(**a).items()}
entry(claims.formal_switches, dict, same=False)
entry(claims.run_formal,
      lambda: dict(models=formal_factories(), languages=("parity",), steps=1, batch_size=2,
                   learning_rate=3e-3, seeds=(0,), train_strings=4, examples=2,
                   switches=None, control=None, control_languages=("parity",),
                   control_threshold=0.95, claim_model=None, log=None, **FORMAL_SMALL),
      {"models": MODELS, "languages": Obj(), "steps": Int(low=1, role="cost"),
       "batch_size": Int(low=1, role="cost"), "learning_rate": Float(0, 1, low_inclusive=False),
       "seeds": SEEDS, "train_lengths": LENGTHS, "test_lengths": LENGTHS,
       "train_strings": Int(low=1, role="cost"), "examples": Int(low=1, role="cost"),
       "switches": SWITCHES, "control": Str(none=True), "control_languages": Obj(),
       "control_threshold": Float(0, 1), "claim_model": Str(none=True),
       "log": Func(none=True)}, same=False, alarm=10.0,
      extra=[*MODEL_EXTRAS, ("languages", "an unknown language", ("dyck",), REFUSE),
             ("switches", "a switch of a model not trained", {"x": ("H", hope.frozen_cms)},
              EITHER),
             ("switches", "a malformed switch", {"x": "T"}, REFUSE),
             ("control", "a model that is trained", "T", EITHER),
             ("test_lengths", "longer than the window", (5, 40), REFUSE)])
entry(claims.formal.formal_delta_models,
      lambda: dict(d_model=8, n_layers=1, n_heads=2, context_length=9),
      {"d_model": Int(low=1), "n_layers": Int(low=1), "n_heads": Int(low=1),
       "context_length": Int(low=1)}, same=False)
REGISTRY[key_of(claims.formal.formal_delta_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims.formal.formal_delta_models(**a).items()}

# nlbook.claims.baselines: the LSTM control and the delta rule with a beta range
from nlbook.claims import baselines  # noqa: E402


def seeded_model(model_class, **options):
    torch.manual_seed(0)
    return model_class(V, 8, 1, 2, context_length=8, **options)


for model_class, extra_options, extra_specs in (
        (baselines.LSTMLM, {}, {}),
        (baselines.DeltaRuleLM, dict(beta_max=2.0, chunk_size=4),
         {"beta_max": Float(0, 2, low_inclusive=False), "chunk_size": Int(low=1)})):
    entry(model_class,
          lambda extra_options=extra_options: dict(vocab_size=V, d_model=8, n_layers=1,
                                                   n_heads=2, context_length=8,
                                                   **extra_options),
          {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
           "n_heads": Int(low=1), "context_length": Int(low=1), **extra_specs}, same=False)
    method(f"{model_class.__name__}.forward",
           lambda idx, targets, model_class=model_class, extra_options=extra_options:
           seeded_model(model_class, **extra_options)(idx, targets),
           lambda: dict(idx=tokens(2, 5, V), targets=tokens(2, 5, V, seed=1)),
           {"idx": IDS, "targets": TARGETS}, check=LOGITS_SHAPE)


def recall_factories():
    return {"T": lambda: transformer.TransformerLM(len(shakespeare_vocabulary()), 8, 1, 2,
                                                    context_length=64)}


entry(claims.visible_gap, lambda: dict(window=64, answer_length=4),
      {"window": Int(low=1), "answer_length": Int(low=1)})
entry(claims.recall_models, lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2,
                                         context_length=8),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1)}, same=False)
REGISTRY[key_of(claims.recall_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims.recall_models(**a).items()}
entry(claims.recall_switches, dict, same=False)
entry(claims.run_recall,
      lambda: dict(models=recall_factories(), vocabulary=shakespeare_vocabulary(), gaps=(4,),
                   steps=1, minutes=None, batch_size=1, context_length=64,
                   learning_rate=2e-3, warmup_steps=0, trials=1, seeds=(0,),
                   training_gaps=(0, 8), spacing=8, stream_length=64, answer_length=4,
                   switches=None, log=None),
      {"models": MODELS, "vocabulary": Obj(none=True),
       "gaps": IntList(item=Int(low=0, role="cost")),
       "steps": Int(low=1, role="cost"),
       "minutes": Float(low=0, low_inclusive=False, none=True, huge=False),
       "batch_size": Int(low=1, role="cost"), "context_length": Int(low=1, role="cost"),
       "learning_rate": Float(0, 1, low_inclusive=False), "warmup_steps": Int(low=0),
       "trials": Int(low=1, role="cost"), "seeds": SEEDS,
       "training_gaps": IntList(item=Int(low=0, role="cost")),
       "spacing": Int(low=0), "stream_length": Int(low=1, role="cost"),
       "answer_length": Int(low=1, role="cost"), "switches": SWITCHES,
       "log": Func(none=True)}, same=False, alarm=10.0, extra=MODEL_EXTRAS)

# nlbook.claims.mqar
from nlbook.claims import mqar as claims_mqar  # noqa: E402

for record_class in (claims_mqar.MQARResult, claims_mqar.MQARRun):
    exempt(record_class, RECORD)
entry(claims_mqar.mqar_models,
      lambda: dict(vocab_size=12, d_model=8, n_layers=1, n_heads=2, sequence_length=12,
                   names=["delta", "transformer"], hope_options=None),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "sequence_length": Int(low=1), "names": Obj(),
       "hope_options": Obj(none=True)}, same=False,
      extra=[("names", "an unknown model", ["lstm"], REFUSE), ("names", "[]", [], REFUSE)])
REGISTRY[key_of(claims_mqar.mqar_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims_mqar.mqar_models(**a).items()}


@functools.cache
def mqar_result_file() -> str:
    path = Path(tempfile.mkdtemp()) / "mqar.json"
    claims_mqar.run_mqar(mqar_factories(), seeds=(0,), steps=1, batch_size=2, vocab_size=12,
                         sequence_length=12, kv_pairs=3, test_size=2, eval_every=1,
                         eval_size=2).save(str(path))
    return str(path)


def mqar_factories():
    return {"T": lambda: transformer.TransformerLM(12, 8, 1, 2, context_length=12)}


entry(claims_mqar.run_mqar,
      lambda: dict(models=mqar_factories(), seeds=(0,), steps=1, batch_size=2, vocab_size=12,
                   sequence_length=12, kv_pairs=3, learning_rate=3e-3, weight_decay=0.1,
                   warmup_steps=None, constant_learning_rate=False, test_size=2,
                   eval_every=1, eval_size=2, power_a=None, random_non_queries=False,
                   log=None),
      {"models": MODELS, "seeds": SEEDS, "steps": Int(low=1, role="cost"),
       "batch_size": Int(low=1, role="cost"), "vocab_size": Int(low=1, role="cost"),
       "sequence_length": Int(low=1, role="cost"), "kv_pairs": Int(low=1),
       "learning_rate": Float(0, 1, low_inclusive=False), "weight_decay": Float(0, 1),
       "warmup_steps": Int(low=1, none=True), "constant_learning_rate": Bool(),
       "test_size": Int(low=1, role="cost"), "eval_every": Int(low=1),
       "eval_size": Int(low=1, role="cost"),
       "power_a": Float(0, 1, low_inclusive=False, none=True), "random_non_queries": Bool(),
       "log": Func(none=True)}, same=False, alarm=10.0, extra=MODEL_EXTRAS)
entry(claims_mqar.load_mqar_results, lambda: dict(paths=[mqar_result_file()]),
      {"paths": Obj()}, same=False,
      extra=[("paths", "[]", [], REFUSE), ("paths", "a str", "x.json", REFUSE)])
entry(claims_mqar.mqar_headline, lambda: dict(name="mqar/t32-cosine"), {"name": Str()},
      same=False)
# nlbook.claims.phased and nlbook.tasks.phased_recall: continual learning in context
from nlbook.claims import phased as claims_phased  # noqa: E402
from nlbook.tasks import phased_recall  # noqa: E402

for record_class in (claims_phased.PhasedMQARResult, claims_phased.PhasedRun):
    exempt(record_class, RECORD)
entry(phased_recall.phased_mqar_layout, lambda: dict(pairs_per_phase=2, gap=1),
      {"pairs_per_phase": Int(low=1), "gap": Int(low=0)})
entry(phased_recall.phased_mqar_batch,
      lambda: dict(batch_size=2, vocab_size=12, pairs_per_phase=2, gap=1,
                   generator=torch.Generator().manual_seed(0)),
      {"batch_size": Int(low=1), "vocab_size": Int(low=1), "pairs_per_phase": Int(low=1),
       "gap": Int(low=0), "generator": Gen()},
      extra=[("pairs_per_phase", "more keys than the vocabulary holds", 3, REFUSE)])
entry(claims_phased.phased_models,
      lambda: dict(vocab_size=12, d_model=8, n_layers=1, n_heads=2, pairs_per_phase=2, gap=1,
                   window=None, cms_chunk=None, names=["delta", "sliding-window transformer++"]),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "pairs_per_phase": Int(low=1), "gap": Int(low=0),
       "window": Int(low=1, none=True, high=16), "cms_chunk": Int(low=1, none=True),
       "names": Obj()}, same=False,
      extra=[("names", "an unknown model", ["lstm"], REFUSE), ("names", "[]", [], REFUSE),
             ("window", "as long as the sequence", 17, REFUSE)])
REGISTRY[key_of(claims_phased.phased_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims_phased.phased_models(**a).items()}
entry(claims_phased.phased_switches, dict, same=False)


def phased_factories():
    return {"T": lambda: transformer.TransformerLM(12, 8, 1, 2, context_length=17)}


entry(claims_phased.run_phased_mqar,
      lambda: dict(models=phased_factories(), seeds=(0,), steps=1, batch_size=2, vocab_size=12,
                   pairs_per_phase=2, gap=1, learning_rate=3e-3, weight_decay=0.1,
                   warmup_steps=1, test_size=2, switches=None, control="T",
                   control_threshold=0.9, claim_model="T", log_every=1, log=None),
      {"models": MODELS, "seeds": SEEDS, "steps": Int(low=1, role="cost"),
       "batch_size": Int(low=1, role="cost"), "vocab_size": Int(low=1, role="cost"),
       "pairs_per_phase": Int(low=1), "gap": Int(low=0, role="cost"),
       "learning_rate": Float(0, 1, low_inclusive=False), "weight_decay": Float(0, 1),
       "warmup_steps": Int(low=0), "test_size": Int(low=1, role="cost"),
       "switches": SWITCHES, "control": Str(), "control_threshold": Float(0, 1),
       "claim_model": Str(), "log_every": Int(low=1), "log": Func(none=True)},
      same=False, alarm=10.0,
      extra=[*MODEL_EXTRAS,
             ("switches", "a switch of a model not trained", {"x": ("H", hope.frozen_cms)},
              EITHER),
             ("switches", "a malformed switch", {"x": "T"}, REFUSE)])


# nlbook.tasks.mad and nlbook.claims.mad
from nlbook.claims import mad as claims_mad  # noqa: E402
from nlbook.tasks import mad as task_mad  # noqa: E402

MAD_TASK = Choice(options=task_mad.MAD_TASKS)
entry(task_mad.mad_batch,
      lambda: dict(task="noisy-in-context-recall", batch_size=2,
                   generator=torch.Generator().manual_seed(0), vocab_size=12,
                   sequence_length=12, noise_vocab_size=4, frac_noise=0.3, motif_size=None,
                   tokens_to_copy=None, test=False, task_seed=0),
      {"task": MAD_TASK, "batch_size": Int(low=1), "generator": Gen(),
       "vocab_size": Int(low=1, none=True), "sequence_length": Int(low=1, none=True),
       "noise_vocab_size": Int(low=1, none=True),
       "frac_noise": Float(0, 1, high_inclusive=False, none=True),
       "motif_size": Int(low=1, none=True), "tokens_to_copy": Int(low=1, none=True),
       "test": Bool(), "task_seed": Int(low=0, role="seed")},
      extra=[("task", "an unknown task", "bogus", REFUSE),
             ("motif_size", "an option of another task", 2, REFUSE)])
entry(task_mad.mad_chance, lambda: dict(task="memorization", vocab_size=64,
                                        noise_vocab_size=None),
      {"task": MAD_TASK, "vocab_size": Int(low=5, none=True),
       "noise_vocab_size": Int(low=1, none=True)})
entry(task_mad.memorization_table, lambda: dict(vocab_size=64, task_seed=0),
      {"vocab_size": Int(low=5), "task_seed": Int(low=0, role="seed")})
for record_class in (claims_mad.MADResult,):
    exempt(record_class, RECORD)
entry(claims_mad.mad_models,
      lambda: dict(d_model=8, n_layers=1, n_heads=2, names=["delta", "transformer++"]),
      {"d_model": Int(low=1), "n_layers": Int(low=1), "n_heads": Int(low=1), "names": Obj()},
      same=False,
      extra=[("names", "an unknown model", ["lstm"], REFUSE), ("names", "[]", [], REFUSE)])
REGISTRY[key_of(claims_mad.mad_models)].call = lambda **a: {
    name: factory(seed=0, vocab_size=12, sequence_length=12)
    for name, factory in claims_mad.mad_models(**a).items()}
entry(claims_mad.CompressionReader,
      lambda: dict(model=transformer_plus_plus.TransformerPlusPlusLM(12, 8, 1, 2,
                                                                    context_length=12),
                   vocab_size=12, sequence_length=12),
      {"model": Obj(), "vocab_size": Int(low=1), "sequence_length": Int(low=1)}, same=False)


def mad_factories():
    def factory(seed=0, vocab_size=16, sequence_length=16):
        return transformer_plus_plus.TransformerPlusPlusLM(vocab_size, 8, 1, 2,
                                                           context_length=sequence_length)

    return {"transformer++": factory}


entry(claims_mad.run_mad,
      lambda: dict(models=mad_factories(), tasks=["selective-copying", "compression"],
                   seeds=(0,), steps=1, batch_size=2, learning_rate=3e-3, weight_decay=0.1,
                   warmup_steps=None, constant_learning_rate=False, test_size=2,
                   task_options={"selective-copying": {"sequence_length": 16,
                                                       "tokens_to_copy": 2},
                                 "compression": {"sequence_length": 16}},
                   timing_rounds=1, on_task=None, log=None),
      {"models": MODELS, "tasks": Obj(), "seeds": SEEDS, "steps": Int(low=1, role="cost"),
       "batch_size": Int(low=1, role="cost"),
       "learning_rate": Float(0, 1, low_inclusive=False), "weight_decay": Float(0, 1),
       "warmup_steps": Int(low=1, none=True), "constant_learning_rate": Bool(),
       "test_size": Int(low=1, role="cost"), "task_options": Obj(none=True),
       "timing_rounds": Int(low=1, role="cost"),
       "on_task": Func(none=True), "log": Func(none=True)}, same=False, alarm=20.0,
      extra=[("tasks", "an unknown task", ["bogus"], REFUSE), ("tasks", "[]", [], REFUSE),
             ("task_options", "an option the task does not take",
              {"compression": {"motif_size": 2}}, REFUSE)])
from nlbook.claims import sign_flip as claims_sign_flip  # noqa: E402

exempt(claims_sign_flip.SignFlipResult, RECORD)
entry(claims_sign_flip.run_sign_flip,
      lambda: dict(seeds=(0,), steps=1, vocab_size=12, sequence_length=12, kv_pairs=3,
                   test_size=2, language_model=None, stream_ids=None, log=None),
      {"seeds": SEEDS, "steps": Int(low=1, role="cost"), "vocab_size": Int(low=1, role="cost"),
       "sequence_length": Int(low=1, role="cost"), "kv_pairs": Int(low=1),
       "test_size": Int(low=1, role="cost"), "language_model": Obj(none=True),
       "stream_ids": Obj(none=True), "log": Func(none=True)}, same=False, alarm=30.0)

# ---- chapter 7's full protocol: nlbook.claims.language, nlbook.claims.results, the map ------
from nlbook.claims import language as claims_language  # noqa: E402
from nlbook.claims import results as claims_results  # noqa: E402

exempt(claims_language.LanguageResult, RECORD)
entry(claims_language.run_language,
      lambda: dict(seeds=(0,), steps=1, variants=["Transformer"], position_length=16,
                   position_windows=1, scored_characters=40, corpus=ablation_corpus(),
                   progress=False, log=None, **ABLATION_SIZES),
      # variants=None trains every variant at the given sizes: fuzzed by the extras only
      {"seeds": SEEDS, "steps": Int(low=1, role="cost"), "variants": Free(),
       "position_length": Int(low=1, role="cost"), "position_windows": Int(low=1, role="cost"),
       "scored_characters": Int(low=1, none=True, role="cost"), "corpus": Free(),
       "progress": Bool(), "log": Func(none=True)}, same=False, alarm=60.0,
      extra=[("variants", "a name not in LANGUAGE_VARIANTS", ["bogus"], REFUSE),
             ("corpus", "an int", 3, REFUSE), ("corpus", "a str", "bogus", REFUSE)])


def claims_fixture_file() -> str:
    """A results file with one made-up recall record (three seeds)."""
    path = Path(tempfile.mkdtemp()) / "claims.json"
    claims_results.save_claims_record("recall", claims_fixture_record(), path)
    return str(path)


def claims_fixture_record(seed: int | None = None) -> dict:
    seeds = [0, 1, 2] if seed is None else [seed]
    runs = {name: [claims_mqar.MQARRun(0.9, 90, 100, (0.8, 0.95), None, [(1, 0.9)], 1.0, 10)
                   for _ in seeds] for name in ("hope", "delta", "transformer++")}
    result = claims_mqar.MQARResult(runs, seeds, {"steps": 1, "sequence_length": 8,
                                                  "kv_pairs": 2})
    return claims_results.experiment_record(
        command="python -m nlbook.bench claims --experiments recall", seconds=1.0, seeds=seeds,
        control=result.control(), verdict=result.recall_verdict(),
        summary=result.recall_summary(), table=result.table(), result=result.to_dict())


PATH = Free()  # a file path: any str is one; non-paths are the extras
PATH_EXTRAS = [("path", "an int", 3, REFUSE), ("path", "''", "", REFUSE)]
entry(claims_results.git_commit, dict, {}, same=False)
entry(claims_results.write_json_atomically,
      lambda: dict(path=str(Path(tempfile.mkdtemp()) / "x.json"), data={"a": 1}),
      {"path": PATH, "data": Free()}, same=False, extra=PATH_EXTRAS)
entry(claims_results.experiment_record,
      lambda: dict(command="python -m nlbook.bench claims", seconds=1.0, seeds=[0, 1, 2],
                   control=None, verdict=claims.protocol.Verdict("holds", "why"),
                   summary="s", table="t", result={}),
      {"command": Str(), "seconds": Float(0, math.inf, high_inclusive=False), "seeds": SEEDS,
       "control": Obj(none=True), "verdict": Obj(), "summary": Str(), "table": Str(),
       "result": Obj()}, same=False)
entry(claims_results.load_claims_results, lambda: dict(path=claims_fixture_file()),
      {"path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_results.claims_record, lambda: dict(name="recall", path=claims_fixture_file()),
      {"name": Str(), "path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_results.show_claims_record,
      lambda: dict(name="recall", path=claims_fixture_file()),
      {"name": Str(), "path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_results.claims_figure, lambda: dict(name="recall", path=claims_fixture_file()),
      {"name": Str(), "path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_results.claims_protocol_minutes, lambda: dict(path=claims_fixture_file()),
      {"path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_results.save_claims_record,
      lambda: dict(name="recall", record=claims_fixture_record(),
                   path=str(Path(tempfile.mkdtemp()) / "claims.json"), lock_timeout=5.0),
      {"name": Str(), "record": Obj(), "path": PATH,
       "lock_timeout": Float(0, 3600)}, same=False, extra=PATH_EXTRAS)
entry(claims_results.merge_claims_records,
      lambda: dict(name="recall", records=[claims_fixture_record(seed) for seed in range(3)]),
      {"name": Str(), "records": Obj()}, same=False,
      extra=[("records", "[]", [], REFUSE), ("records", "a list of ints", [1, 2], REFUSE)])
entry(claims_results.rebuild_claims_record,
      lambda: dict(name="recall", record=claims_fixture_record()),
      {"name": Str(), "record": Obj()}, same=False)
exempt(claims_results.run_claims_experiment,
       "runs one experiment of the full protocol (minutes to hours); its refusals are tested "
       "in tests/test_claims_results.py and each experiment's function is fuzzed here")
entry(claims_table.claims_from_results, lambda: dict(path=claims_fixture_file()),
      {"path": PATH}, same=False, extra=PATH_EXTRAS)
entry(claims_table.claims_verdicts_table, lambda: dict(claims=[]), {"claims": Obj(none=True)},
      same=False)


def continual_factories():
    return {"T": lambda: transformer.TransformerLM(len(corpus_pair()[0].vocabulary), 8, 1, 2,
                                                    context_length=8)}


entry(claims.continual_models, lambda: dict(vocab_size=V, d_model=8, n_layers=1, n_heads=2,
                                            context_length=8),
      {"vocab_size": Int(low=1), "d_model": Int(low=1), "n_layers": Int(low=1),
       "n_heads": Int(low=1), "context_length": Int(low=1)}, same=False)
REGISTRY[key_of(claims.continual_models)].call = lambda **a: {
    name: factory(seed=0) for name, factory in claims.continual_models(**a).items()}
entry(claims.continual_metrics,
      lambda: dict(steps=[0, 5, 10, 15, 20, 25, 30],
                   losses_a=[4.0, 2.5, 2.0, 2.6, 3.0, 2.1, 1.8],
                   losses_b=[4.1, 3.9, 3.8, 2.9, 2.2, 2.6, 2.9], phase_ends=(10, 20, 30)),
      {"steps": IntList(item=Int(low=0)), "losses_a": FloatList(), "losses_b": FloatList(),
       "phase_ends": IntList(item=Int(low=0))},
      extra=[("phase_ends", "a step never evaluated", (10, 20, 31), REFUSE),
             ("steps", "decreasing steps", [0, 5, 10, 15, 20, 30, 25], REFUSE)])
entry(claims.run_continual,
      lambda: dict(models=continual_factories(), steps_per_phase=1, evaluations_per_phase=1,
                   batch_size=2, context_length=8, learning_rate=2e-3, warmup_steps=0,
                   seeds=(0,), stream_length=16, validation_windows=1, corpora=corpus_pair(),
                   log=None),
      {"models": MODELS, "steps_per_phase": Int(low=1, role="cost"),
       "evaluations_per_phase": Int(low=1, high=1),
       "batch_size": Int(low=1, role="cost"), "context_length": Int(low=1, role="cost"),
       "learning_rate": Float(0, 1, low_inclusive=False), "warmup_steps": Int(low=0),
       "seeds": SEEDS, "stream_length": Int(low=1, role="cost"),
       "validation_windows": Int(low=1, role="cost"), "corpora": Free(),
       "log": Func(none=True)}, same=False, alarm=10.0,
      # corpora=None is valid (the default pair, another vocabulary than the models')
      extra=[*MODEL_EXTRAS, ("corpora", "an int", 3, REFUSE), ("corpora", "a str", "x", REFUSE),
             ("corpora", "one corpus", corpus_pair()[:1], REFUSE)])
entry(claims.format_table, lambda: dict(header=["a", "b"], rows=[["x", 1], ["y", 2]],
                                        title="t", notes=["n"]),
      {"header": Obj(), "rows": Obj(), "title": Str(none=True, empty=True), "notes": Obj()},
      extra=[("rows", "a row of another width", [["x", 1, 2]], REFUSE),
             ("header", "[]", [], REFUSE)])
entry(claims.TextLearner,
      lambda: dict(model=formal_model(), learning_rate=1e-3, total_steps=2, warmup_steps=0,
                   min_learning_rate=None, weight_decay=0.1, grad_clip=1.0),
      {"model": Obj(), "learning_rate": Float(0, 1, low_inclusive=False),
       "total_steps": Int(low=1, none=True), "warmup_steps": Int(low=0),
       "min_learning_rate": Float(low=0, none=True), "weight_decay": Float(low=0),
       "grad_clip": Float(low=0, low_inclusive=False)}, same=False)


def learner_step(**arguments):
    learner = claims.TextLearner(small_hope(), learning_rate=1e-3, total_steps=2,
                                 warmup_steps=0)
    return learner.step(**arguments)


method("TextLearner.step", learner_step,
       lambda: dict(inputs=tokens(2, 4, V), targets=tokens(2, 4, V, seed=1),
                    restarted=torch.tensor([True, False])),
       {"inputs": Tensor(kind="int", vocab=V, batch="B"),
        "targets": Tensor(kind="int", vocab=V, batch="B"),
        "restarted": Tensor(kind="bool", none=True, batch="B")}, same=False)


def frozen_memories(model):
    with hope.frozen_memories(model) as inside:
        return inside is model


entry(hope.frozen_memories, lambda: dict(model=small_hope()), {"model": Obj()},
      extra=[("model", "a Transformer", small_transformer(), REFUSE)])
REGISTRY[key_of(hope.frozen_memories)].call = frozen_memories


def ascending_writes(model):
    with hope.ascending_writes(model) as inside:
        return inside is model


entry(hope.ascending_writes, lambda: dict(model=small_hope()), {"model": Obj()},
      extra=[("model", "a Transformer", small_transformer(), REFUSE)])
REGISTRY[key_of(hope.ascending_writes)].call = ascending_writes
entry(training.evaluation.stream_token_losses,
      lambda: dict(model=small_text_model(), ids=text_ids(), window=8, device="cpu",
                   batch_size=2, progress=False),
      {**EVALUATION, "window": Int(low=1), "batch_size": Int(low=1), "progress": Bool()},
      check=shape_is(lambda r: r, lambda a: (len(a["ids"]) - 1,)))
LANGUAGE_ACCURACY = {"HOPE": {"bin0": [1.0, 0.8], "bin1": [0.5, 0.6]},
                     "Transformer": {"bin0": [0.9, 0.7], "bin1": [0.5, 0.4]}}
entry(viz.plot_formal_accuracy,
      lambda: dict(languages=["parity", "anbn"], accuracy=LANGUAGE_ACCURACY, chance=0.5,
                   bins=("a", "b"), title=None, width=4.0, height=3.0),
      {"languages": Obj(), "accuracy": Obj(), "chance": Float(0, 1, none=True),
       "bins": Obj(), "title": Str(none=True, empty=True), "width": SIZE, "height": SIZE}, **FIGURE,
      extra=[("accuracy", "one accuracy for two languages",
              {"HOPE": {"bin0": [1.0], "bin1": [0.5]}}, REFUSE),
             ("accuracy", "no bin1", {"HOPE": {"bin0": [1.0, 0.8]}}, REFUSE),
             ("accuracy", "an accuracy above 1", {"HOPE": {"bin0": [1.5, 0.8],
                                                           "bin1": [0.5, 0.6]}}, REFUSE)])
entry(viz.plot_mad_accuracy,
      lambda: dict(tasks=["ICR", "copy"], means={"hope": [0.9, 0.5], "transformer++": [1.0, 0.7]},
                   lows={"hope": [0.85, 0.4], "transformer++": [0.95, 0.6]},
                   highs={"hope": [0.95, 0.6], "transformer++": [1.0, 0.8]},
                   chance=[0.125, 0.07], title="", width=4.0, height=3.0),
      {"tasks": Obj(), "means": Obj(), "lows": Obj(none=True), "highs": Obj(none=True),
       "chance": FloatList(item=Float(0, 1), none=True), "title": TITLE, "width": SIZE,
       "height": SIZE}, **FIGURE,
      extra=[("means", "an accuracy above 1", {"hope": [1.5, 0.5]}, REFUSE),
             ("means", "one accuracy for two tasks", {"hope": [0.5]}, REFUSE),
             ("lows", "a model missing", {"hope": [0.8, 0.4]}, REFUSE)])
entry(viz.plot_recall_by_gap,
      lambda: dict(gaps=[8, 64, 512], accuracy={"HOPE": [0.9, 0.3, 0.04]},
                   controls={"HOPE": [0.1, 0.05, 0.04]}, chance=1 / 26, visible_gap=18,
                   ylabel="accuracy", title=None, width=4.0, height=3.0),
      {"gaps": IntList(item=Int(low=0)), "accuracy": Obj(), "controls": Obj(none=True),
       "chance": Float(0, 1, none=True), "visible_gap": Float(low=0, none=True),
       "ylabel": Str(empty=True), "title": Str(none=True, empty=True), "width": SIZE,
       "height": SIZE}, **FIGURE,
      extra=[("accuracy", "one value for three gaps", {"HOPE": [0.5]}, REFUSE)])
entry(viz.plot_phased_recall,
      lambda: dict(accuracy={"hope": [0.9, 0.8, 0.5], "transformer++": [1.0, 1.0, 0.99]},
                   intervals={"hope": [[0.85, 0.94], [0.75, 0.84], [0.45, 0.55]],
                              "transformer++": [[0.99, 1.0], [0.99, 1.0], [0.98, 1.0]]},
                   blocks=("A first", "B", "A last"), chance=0.25, title=""),
      {"accuracy": Obj(), "intervals": Obj(), "blocks": Obj(),
       "chance": Float(0, 1, none=True), "title": TITLE}, **FIGURE,
      extra=[("accuracy", "two values for three blocks", {"hope": [0.5, 0.5],
                                                          "transformer++": [1, 1]}, REFUSE),
             ("intervals", "low above high", {"hope": [[0.9, 0.8]] * 3,
                                             "transformer++": [[0.9, 1.0]] * 3}, REFUSE),
             ("intervals", "a model missing", {"hope": [[0.8, 0.9]] * 3}, REFUSE),
             ("accuracy", "above 1", {"hope": [1.5, 0.5, 0.5],
                                      "transformer++": [1, 1, 1]}, REFUSE)])
entry(viz.plot_continual,
      lambda: dict(steps=[0, 5, 10, 15],
                   losses={"HOPE": {"A": [4.0, 3.0, 3.5, 2.9], "B": [4.0, 3.8, 2.5, 3.0]}},
                   phase_ends=(5, 10, 15), order=("A", "B", "A"), corpus_names=None,
                   title=None, width=4.0, height=3.0),
      {"steps": IntList(item=Int(low=0)), "losses": Obj(), "phase_ends": IntList(
          item=Int(low=0)), "order": Obj(), "corpus_names": Obj(none=True),
       "title": Str(none=True, empty=True), "width": SIZE, "height": SIZE}, **FIGURE,
      extra=[("phase_ends", "two phase ends", (5, 10), REFUSE),
             ("losses", "one loss for four steps", {"HOPE": {"A": [4.0], "B": [4.0]}},
              REFUSE)])


# ============================================================================================
# the tests


def public_callables() -> dict[str, object]:
    """Every callable an nlbook module exports, keyed module:qualname (deduplicated)."""
    names = ["nlbook"] + [info.name for info in pkgutil.walk_packages(nlbook.__path__, "nlbook.")]
    found: dict[str, object] = {}
    for name in names:
        parts = name.split(".")
        if parts[-1] == "__main__" or any(part.startswith("_") for part in parts[1:]):
            continue
        if name.startswith(EXCLUDED_PACKAGES):
            continue
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            exported = [key for key, value in vars(module).items() if not key.startswith("_")
                        and getattr(value, "__module__", None) == name]
        for key in exported:
            value = getattr(module, key)
            if typing.get_origin(value) is not None:  # a type alias (Switch, ModelFactory)
                continue
            if callable(value) and not isinstance(value, (dict, torch.dtype)):
                found.setdefault(key_of(value), value)
    return found


def test_every_public_callable_has_a_fuzz_entry():
    missing = sorted(set(public_callables()) - set(REGISTRY))
    assert not missing, f"public callables without a fuzz entry in tests/test_fuzz.py: {missing}"


def test_public_api_under_fuzzing(capsys):
    outcomes, seconds = run_registry(REGISTRY)
    report = summarise(outcomes, seconds)
    bad = [outcome for outcome in outcomes if outcome.kind in ("unclear", "silent", "hang")]
    with capsys.disabled():
        print("\n" + report)
    lines = "\n".join(f"  {o.kind}: {o.entry} | {o.mutation} | {o.detail}" for o in bad[:80])
    assert not bad, f"{report}\n{lines}"


# ============================================================================================
# the command lines


def run_command_line(main, argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in process -> (exit status, stdout, stderr); an exception that escapes
    ``main`` is a traceback the user would have seen."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exit_:
            code = exit_.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            if isinstance(code, str):
                err.write(code + "\n")
    return int(status or 0), out.getvalue(), err.getvalue()


def bad_command_lines(tmp: Path) -> list[tuple[str, object, list[str], Path | None]]:
    """(label, main, argv, a file that must not be written) for every bad argument."""
    from nlbook.train import main as train_main

    corpus = text_file()
    checkpoint, figure = tmp / "run.pt", tmp / "run.png"
    base = ["--data", corpus, "--steps", "2", "--d-model", "8", "--n-layers", "1",
            "--n-heads", "2", "--context-length", "8", "--batch-size", "2",
            "--eval-interval", "1", "--eval-batches", "1", "--no-baselines", "--no-progress",
            "--checkpoint", str(checkpoint), "--figure", str(figure)]

    def train_case(label, *changes, keep=None):
        argv = list(base)
        for flag, value in zip(changes[::2], changes[1::2], strict=True):
            if value == "-":  # drop the flag and its value
                index = argv.index(flag)
                del argv[index:index + 2]
            elif flag in argv and value is not None:
                argv[argv.index(flag) + 1] = value
            elif value is None:
                argv.append(flag)
            else:
                argv += [flag, value]
        return (f"train {label}", train_main, argv, keep if keep is not None else checkpoint)

    (tmp / "empty.txt").write_text("", encoding="utf-8")
    cases = [
        train_case("--device bogus", "--device", "bogus"),
        train_case("--threads 0", "--threads", "0"),
        train_case("--threads x", "--threads", "x"),
        train_case("--model-option bogus=1", "--model-option", "bogus=1"),
        train_case("--model-option dropout=2", "--model-option", "dropout=2"),
        train_case("--model-option without =", "--model-option", "dropout"),
        train_case("--figure x.xyz", "--figure", str(tmp / "x.xyz")),
        train_case("--figure unwritable", "--figure", "/proc/nlbook/loss.png"),
        train_case("--checkpoint unwritable", "--checkpoint", "/proc/nlbook/run.pt",
                   keep=tmp / "never"),
        train_case("--checkpoint ''", "--checkpoint", "", keep=tmp / "never"),
        train_case("--figure ''", "--figure", ""),
        train_case("--checkpoint-every 0", "--checkpoint-every", "0"),
        train_case("--seed 10**20", "--seed", str(10 ** 20)),
        train_case("--threads 10**20", "--threads", str(10 ** 20)),
        train_case("--data ''", "--data", ""),
        train_case("--minutes inf", "--steps", "-", "--minutes", "inf"),
        train_case("--minutes 0", "--minutes", "0"),
        train_case("--steps 0", "--steps", "0"),
        train_case("--steps x", "--steps", "x"),
        train_case("--lr nan", "--lr", "nan"),
        train_case("--lr -1", "--lr", "-1"),
        train_case("--batch-size 0", "--batch-size", "0"),
        train_case("--dropout 1.5", "--dropout", "1.5"),
        train_case("--seed -1", "--seed", "-1"),
        train_case("--eval-interval 0", "--eval-interval", "0"),
        train_case("--stream-length 0", "--stream-length", "0"),
        train_case("--data missing", "--data", str(tmp / "missing.txt")),
        train_case("--data empty", "--data", str(tmp / "empty.txt")),
        train_case("--data a folder", "--data", str(tmp)),
        train_case("--optimizer bogus", "--optimizer", "bogus"),
        train_case("--model bogus", "--model", "bogus"),
        train_case("--preset bogus", "--preset", "bogus"),
        train_case("--n-heads 3 (does not divide 8)", "--n-heads", "3"),
        train_case("--carry-state with a transformer", "--carry-state", None),
        ("train --resume of a missing checkpoint", train_main,
         ["--resume", "--checkpoint", str(tmp / "missing.pt"), "--no-progress"], None),
        ("train --resume of a pickled checkpoint", train_main,
         ["--resume", "--checkpoint", pickled_checkpoint(), "--no-progress"], None),
        ("train --resume of a checkpoint missing keys", train_main,
         ["--resume", "--checkpoint", broken_checkpoint("history"), "--no-progress"], None),
        ("train --resume --device bogus", train_main,
         ["--resume", "--checkpoint", checkpoint_file(), "--device", "bogus",
          "--no-progress"], None),
    ]
    if not torch.cuda.is_available():
        cases.append(train_case("--device cuda (none here)", "--device", "cuda"))
    sample_base = ["--checkpoint", checkpoint_file(), "--max-new-tokens", "3"]
    for label, extra in [("a missing checkpoint", ["--checkpoint", str(tmp / "missing.pt")]),
                         ("a pickled checkpoint", ["--checkpoint", pickled_checkpoint()]),
                         ("a checkpoint missing keys",
                          ["--checkpoint", broken_checkpoint("model_config")]),
                         ("a checkpoint of another model type",
                          ["--checkpoint", foreign_checkpoint()]),
                         ("--temperature -1", ["--temperature", "-1"]),
                         ("--temperature nan", ["--temperature", "nan"]),
                         ("--temperature inf", ["--temperature", "inf"]),
                         ("--num-samples -1", ["--num-samples", "-1"]),
                         ("--num-samples 0", ["--num-samples", "0"]),
                         ("--max-new-tokens -1", ["--max-new-tokens", "-1"]),
                         ("--top-k 0", ["--top-k", "0"]), ("--top-p 0", ["--top-p", "0"]),
                         ("--top-p 1.5", ["--top-p", "1.5"]), ("--prompt ''", ["--prompt", ""]),
                         ("--prompt outside the vocabulary", ["--prompt", "QQQ"]),
                         ("--device bogus", ["--device", "bogus"]),
                         ("--seed -1", ["--seed", "-1"])]:
        cases.append((f"sample {label}", sample.main, sample_base + extra, None))
    for label, extra in [("a missing checkpoint", ["--checkpoint", str(tmp / "missing.pt")]),
                         ("a checkpoint missing keys",
                          ["--checkpoint", broken_checkpoint("model_config")]),
                         ("a checkpoint of another model type",
                          ["--checkpoint", foreign_checkpoint()]),
                         ("--window 0", ["--window", "0"]), ("--split bogus", ["--split", "x"]),
                         ("--threads 0", ["--threads", "0"]),
                         ("--data missing", ["--data", str(tmp / "missing.txt")]),
                         ("--device bogus", ["--device", "bogus"])]:
        cases.append((f"evaluate {label}", evaluate.main,
                       ["--checkpoint", checkpoint_file(), *extra], None))
    for argv in (["memory", "--length", "0"], ["memory", "--batch", "x"],
                 ["memory", "--heads", "-1"], ["memory", "--dim", "0"],
                 ["memory", "--repeats", "0"], ["optim", "--width", "0"],
                 ["optim", "--depth", "0"], ["optim", "--batch", "0"],
                 ["hope", "--context", "0"], ["hope", "--context", "a,b"],
                 ["hope", "--steps", "0"], ["hope", "--tokens-per-step", "0"],
                 ["shakespeare", "--minutes", "0"], ["shakespeare", "--minutes", "inf"],
                 ["shakespeare", "--lr", "nan"], ["shakespeare", "--stream-length", "0"],
                 ["stateful", "--variants", "9"], ["stateful", "--steps", "0"],
                 ["stateful", "--preset", "bogus", "--steps", "1"],
                 ["ablation", "--variants", "99", "--steps", "1"], ["ablation", "--steps", "0"],
                 ["ablation", "--scored-characters", "0", "--steps", "1"],
                 ["formal", "--steps", "0"], ["formal", "--examples", "-1"],
                 ["formal", "--d-model", "x"], ["formal", "--languages", "dyck"],
                 ["formal", "--seeds", "0,x"], ["recall", "--trials", "0"],
                 ["recall", "--minutes", "inf"], ["recall", "--seed", "-1"],
                 ["continual", "--evaluations", "0"],
                 ["mqar", "--models", "lstm"], ["mqar", "--seeds", "0,x"],
                 ["mqar", "--json", ""], ["mqar", "--json", "results.txt"],
                 ["mqar", "--kv", "0"], ["sign-flip", "--seeds", "x"],
                 ["phased-mqar", "--models", "lstm"], ["phased-mqar", "--seeds", "0,x"],
                 ["phased-mqar", "--json", "results.txt"], ["phased-mqar", "--json", ""],
                 ["phased-mqar", "--pairs", "20"], ["phased-mqar", "--gap", "-1"],
                 ["mqar", "--kv", "0"], ["mad", "--models", "lstm"],
                 ["mad", "--tasks", "parity"], ["mad", "--seeds", "0,x"],
                 ["mad", "--json", "results.txt"], ["mad", "--steps", "10", "--warmup", "20"],
                 ["sign-flip", "--seeds", "x"],
                 ["sign-flip", "--steps", "0"],
                 ["claims", "--experiments", "bogus"], ["claims", "--seeds", "0,x"],
                 ["claims", "--output", "claims.txt"],
                 ["claims", "--merge", str(tmp / "missing.json")],
                 ["shakespeare", "--data", str(tmp / "missing.txt")],
                 ["shakespeare", "--data", ""],
                 ["stateful", "--data", str(tmp / "missing.txt"), "--steps", "1"],
                 ["continual", "--steps", "1", "--evaluations", "3"],
                 ["bogus"], []):
        cases.append((f"bench {' '.join(argv) or '(no benchmark)'}", bench.main, argv, None))
    from nlbook import course, render

    for argv in (["bogus"], [], ["check", "extra"], ["sync", "extra"]):
        cases.append((f"course {' '.join(argv) or '(no command)'}", course.main, argv, None))
    notebook = tmp / "a.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    for argv in (["--timeout", "0"], ["--timeout", "x"], [str(tmp / "missing.ipynb")],
                 [str(notebook), "--output", "/proc/nlbook-fuzz/out"],
                 [str(notebook), "--output", str(notebook)]):
        cases.append((f"render {' '.join(argv)}", render.main, argv, None))
    return cases


def test_command_lines_with_bad_arguments(tmp_path, capsys):
    """Every bad argument: a non-zero status and one line ``error: ...``, no traceback, and
    nothing trained (the checkpoint that a run would write does not appear)."""
    threads = torch.get_num_threads()
    problems, count = [], 0
    try:
        for label, main, argv, must_not_exist in bad_command_lines(tmp_path):
            count += 1
            status, out, err = run_command_line(main, argv)
            lines = [line for line in err.splitlines() if line.strip()]
            if status == 0:
                problems.append(f"{label}: exit status 0")
            if "Traceback" in out + err:
                problems.append(f"{label}: printed a traceback")
            if len(lines) != 1 or not lines[0].startswith("error: "):
                problems.append(f"{label}: stderr is not one 'error: ...' line: {lines[-3:]}")
            if must_not_exist is not None and must_not_exist.exists():
                problems.append(f"{label}: trained before failing ({must_not_exist} written)")
                must_not_exist.unlink()
    finally:
        torch.set_num_threads(threads)
    with capsys.disabled():
        print(f"\ncommand lines: {count} bad argument lists, {len(problems)} problems")
    assert not problems, "\n".join(problems)


def test_command_line_edge_cases_that_are_valid(tmp_path):
    """A tiny temperature samples (greedily); it used to crash inside torch.multinomial."""
    status, out, err = run_command_line(sample.main, ["--checkpoint", checkpoint_file(),
                                                      "--temperature", "1e-40",
                                                      "--max-new-tokens", "5", "--prompt", "to"])
    assert status == 0, err
    assert out.splitlines()[-1].startswith("to")


def test_python_dash_m_prints_one_error_line():
    """The real ``python -m nlbook.train`` (its __main__): one line, status 2."""
    import subprocess

    completed = subprocess.run([sys.executable, "-m", "nlbook.train", "--threads", "0"],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(Path(nlbook.__file__)
                                                                    .parents[1])})
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("error: argument --threads")
    assert len(completed.stderr.strip().splitlines()) == 1


# ============================================================================================
# every command line, every subcommand, every flag

def command_parsers() -> dict[str, tuple[object, object]]:
    """``python -m`` name -> (its parser builder, its main)."""
    from nlbook import course, render
    from nlbook.train import cli as train_cli

    return {"nlbook.train": (train_cli._parser, train_cli.main),
            "nlbook.sample": (sample._parser, sample.main),
            "nlbook.evaluate": (evaluate._parser, evaluate.main),
            "nlbook.bench": (bench._parser, bench.main),
            "nlbook.course": (course._parser, course.main),
            "nlbook.render": (render._parser, render.main)}


def command_modules() -> set[str]:
    """Every ``python -m`` command of the package: a module with a ``__main__`` block, or a
    package with a ``__main__`` module."""
    found = set()
    for info in pkgutil.walk_packages(nlbook.__path__, "nlbook."):
        if info.name.endswith(".__main__"):
            found.add(info.name.rsplit(".", 1)[0])
            continue
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            if 'if __name__ == "__main__"' in Path(spec.origin).read_text(encoding="utf-8"):
                found.add(info.name)
    return found


def subcommands(parser) -> dict[str, object]:
    """'' -> the parser itself when it has no subcommands, else subcommand -> its parser (a
    positional with choices, like course's sync/check, counts as subcommands of one parser)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
        if not action.option_strings and action.choices and action.dest != "help":
            return {choice: parser for choice in action.choices}
    return {"": parser}


def flags(parser) -> list:
    import argparse

    return [action for action in parser._actions if action.option_strings
            and not isinstance(action, argparse._HelpAction)]


def automatic_bad_arguments(action) -> list[list[str]]:
    """Bad values every flag of its kind must refuse at parsing (its name in the error)."""
    import argparse

    flag = action.option_strings[0]
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        return [[f"{flag}=x"]]
    if action.choices:
        return [[flag, "bogus"]]
    kind = getattr(action.type, "__name__", "")
    if kind in ("positive_int", "non_negative_int", "seed_int", "thread_count"):
        return [[flag, "x"], [flag, str(10 ** 20)], [flag, "1.5"]]
    if kind in ("positive_float", "non_negative_float", "finite_float", "unit_interval",
                "probability"):
        return [[flag, "x"], [flag, "nan"], [flag, "inf"]]
    return []  # a free text (a path, a device, a name): only the hand-written cases cover it


REQUIRED_ARGUMENTS = {"nlbook.sample": lambda: ["--checkpoint", checkpoint_file()],
                      "nlbook.evaluate": lambda: ["--checkpoint", checkpoint_file()]}


def automatic_command_lines() -> list[tuple[str, object, list[str]]]:
    cases = []
    for command, (build, main) in command_parsers().items():
        for name, parser in subcommands(build()).items():
            prefix = [name] if name else []
            for action in flags(parser):
                for bad in automatic_bad_arguments(action):
                    argv = [*prefix, *REQUIRED_ARGUMENTS.get(command, list)(), *bad]
                    cases.append((f"{command} {' '.join(prefix + bad)}", main, argv))
    return cases


def _short(command: str) -> str:
    return command.removeprefix("nlbook.")


def test_every_command_line_has_a_fuzz_entry(tmp_path):
    """A new ``python -m nlbook.X``, a new subcommand or a new free-text flag fails here until
    bad_command_lines (above) has a case for it; typed flags are fuzzed automatically."""
    assert command_modules() == set(command_parsers()), \
        "a python -m command without an entry in command_parsers() (tests/test_fuzz.py)"
    cases = bad_command_lines(tmp_path)
    missing = []
    for command, (build, _) in command_parsers().items():
        short = _short(command)
        for name, parser in subcommands(build()).items():
            label = f"{short} {name}".strip()
            mine = [argv for case_label, _, argv, _ in cases
                    if case_label == label or case_label.startswith(label + " ")]
            if not mine:
                missing.append(f"{label}: no bad-argument case")
            for action in flags(parser):
                if automatic_bad_arguments(action):
                    continue
                if not any(flag in argv or any(item.startswith(flag + "=") for item in argv)
                           for argv in mine for flag in action.option_strings):
                    missing.append(f"{label} {action.option_strings[0]}: a free-text flag "
                                   f"without a bad-argument case")
    assert not missing, "\n".join(missing)


def test_every_flag_refuses_bad_values_naming_itself(capsys):
    problems, count = [], 0
    threads = torch.get_num_threads()
    try:
        for label, main, argv in automatic_command_lines():
            count += 1
            status, out, err = run_command_line(main, argv)
            lines = [line for line in err.splitlines() if line.strip()]
            flag = next(item for item in reversed(argv) if item.startswith("--")).split("=")[0]
            if status != 2 or len(lines) != 1 or not lines[0].startswith("error: ") \
                    or flag not in lines[0] or "Traceback" in out + err:
                problems.append(f"{label}: status {status}, stderr {lines[-2:]}")
    finally:
        torch.set_num_threads(threads)
    with capsys.disabled():
        print(f"\ncommand-line flags: {count} automatic bad values, {len(problems)} problems")
    assert not problems, "\n".join(problems)


def test_every_flag_says_what_it_is_and_its_default():
    """``--help`` describes every flag of every command and subcommand, with its default
    (argparse's own ``-h`` aside; a required flag has none)."""
    from nlbook._cli import help_string

    missing = []
    for command, (build, _) in command_parsers().items():
        for name, parser in subcommands(build()).items():
            for action in flags(parser):
                text = help_string(parser, action)
                if not (action.help or "").strip():
                    missing.append(f"{command} {name} {action.option_strings[0]}: no help")
                elif "default" not in text.lower() and not action.required:
                    missing.append(f"{command} {name} {action.option_strings[0]}: no default "
                                   f"in {text!r}")
    assert not missing, "\n".join(missing)
