"""Measurement pieces of the speed benchmarks: paired timing, peak memory, the encoders they compare.

Imports only torch at the top: ``speed.py`` runs as the worker script of a transformers 4.x environment
(``--v4-worker``) and imports this file there too.
"""

from __future__ import annotations

import statistics
import time

import torch

HF_BERT = "hf_bert"
HF_DEBERTA = "hf_deberta_v2"  # scaling part: HF DebertaV2Model of the same size beside relpos "deberta"
MB = 2**20


# ---------------------------------------------------------------- measurement
def peak_memory(fn, device) -> int:
    """Bytes ``fn()`` holds at its peak above what was live when it started."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    totals = [sum(row) for row in sizes]
    return max(totals) - totals[0]


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_times(fns: dict, repeats: int, device) -> dict:
    """Seconds of each callable per round, run round-robin ``repeats`` times after one warm-up each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device))
    return times


def interleaved_medians(fns: dict, repeats: int, device) -> dict:
    return {name: statistics.median(ts) for name, ts in interleaved_times(fns, repeats, device).items()}


def paired_ratio(times: list, anchor_times: list) -> float:
    """Median over rounds of time / anchor time: neighbouring runs share the machine's load."""
    return statistics.median(t / a for t, a in zip(times, anchor_times))


def train_step(model, ids):
    """One forward+backward of an encoder (the loss is a stand-in: its value is irrelevant)."""

    def step():
        model(input_ids=ids).last_hidden_state.float().pow(2).mean().backward()
        model.zero_grad(set_to_none=True)

    return step


def _bert_kwargs(args, length):
    return dict(
        hidden_size=args.hidden,
        num_attention_heads=args.heads,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=max(512, length),
    )


# ---------------------------------------------------------------- models
def build_encoder(name, args, length, device, attn="sdpa"):
    """HF BertModel (absolute) or a relpos_bert model with scheme ``name`` (no absolute table)."""
    torch.manual_seed(0)
    if name == HF_BERT:
        from transformers import BertConfig, BertModel

        model = BertModel(BertConfig(**_bert_kwargs(args, length), attn_implementation="sdpa"), add_pooling_layer=False)
    elif name == HF_DEBERTA:
        from transformers import DebertaV2Config, DebertaV2Model

        # the relpos "deberta" scheme's defaults: 256 log buckets, max 512, c2p + p2c, shared keys, LayerNorm
        model = DebertaV2Model(
            DebertaV2Config(
                **_bert_kwargs(args, length),
                relative_attention=True,
                position_buckets=256,
                max_relative_positions=512,
                pos_att_type=["c2p", "p2c"],
                share_att_key=True,
                norm_rel_ebd="layer_norm",
                position_biased_input=False,
            )
        )
    else:
        from hf_relpos import RelPosBertConfig, RelPosBertModel

        config = RelPosBertConfig(
            **_bert_kwargs(args, length), relative_position=name, absolute_position="none", attn_implementation=attn
        )
        model = RelPosBertModel(config, add_pooling_layer=False)
    return model.to(device)
