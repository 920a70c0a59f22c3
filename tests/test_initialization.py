"""Mimetic attention initialisation (hf_relpos.initialization, recipe field ``attention_init``)."""

import pytest
import torch
from helpers import PROJECT_ROOT

from hf_relpos import RelPosBertConfig, RelPosT5Config
from hf_relpos.initialization import mimetic_init_
from hf_relpos.modeling_relpos_bert import RelPosBertModel
from hf_relpos.modeling_relpos_t5 import RelPosT5Model
from hf_relpos.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _targets(d, heads, seed):
    """The per-head matrices mimetic_init_ factorises, redrawn from the same generator in the same order."""
    g, eye = torch.Generator().manual_seed(seed), torch.eye(d)
    out = []
    for _ in range(heads):
        qk = 0.7 * torch.randn(d, d, generator=g) / d**0.5 + 0.7 * eye
        vo = 0.4 * torch.randn(d, d, generator=g) / d**0.5 - 0.4 * eye
        out.append((qk, vo))
    return out


def test_full_rank_heads_reproduce_the_paper_matrices_exactly():
    """One head as wide as the model: W_q^T W_k = 0.7 Z + 0.7 I and W_v^T W_o^T = 0.4 Z' − 0.4 I exactly;
    T5 (unscaled scores) gets the query-key product divided by √d_kv."""
    bert = RelPosBertModel(
        RelPosBertConfig(
            hidden_size=16, num_attention_heads=1, intermediate_size=32, num_hidden_layers=1, vocab_size=50
        )
    )
    assert mimetic_init_(bert, generator=torch.Generator().manual_seed(3)) == 1
    attention = bert.encoder.layer[0].attention
    ((qk, vo),) = _targets(16, 1, 3)
    torch.testing.assert_close(attention.self.query.weight.T @ attention.self.key.weight, qk, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        attention.self.value.weight.T @ attention.output.dense.weight.T, vo, atol=1e-5, rtol=1e-4
    )

    t5 = RelPosT5Model(
        RelPosT5Config(d_model=16, d_kv=16, num_heads=1, d_ff=32, num_layers=1, num_decoder_layers=1, vocab_size=50)
    )
    assert mimetic_init_(t5, generator=torch.Generator().manual_seed(3)) == 3  # encoder self, decoder self + cross
    block = t5.encoder.block[0].layer[0].SelfAttention
    ((qk, vo),) = _targets(16, 1, 3)
    torch.testing.assert_close(block.q.weight.T @ block.k.weight, qk / 4, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(block.v.weight.T @ block.o.weight.T, vo, atol=1e-5, rtol=1e-4)


def test_narrow_heads_are_the_best_low_rank_factorisation():
    """head_dim < hidden: each head's product is the truncated SVD of its own target (Eckart–Young), so no
    other rank-head_dim product is closer."""
    model = RelPosBertModel(
        RelPosBertConfig(
            hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=1, vocab_size=50
        )
    )
    mimetic_init_(model, generator=torch.Generator().manual_seed(5))
    attention = model.encoder.layer[0].attention.self
    for h, (qk, _) in enumerate(_targets(32, 4, 5)):
        rows = slice(8 * h, 8 * h + 8)
        product = attention.query.weight[rows].T @ attention.key.weight[rows]
        u, s, vh = torch.linalg.svd(qk)
        torch.testing.assert_close(product, (u[:, :8] * s[:8]) @ vh[:8], atol=1e-5, rtol=1e-4)


def test_tokens_attend_to_their_own_copies_from_the_start():
    """The point of it: in a fresh model, a query token's highest first-layer score is on its own copy far
    more often than under the default initialisation (chance: 1 in 64)."""

    def hits(mimetic):
        torch.manual_seed(0)
        model = RelPosBertModel(
            RelPosBertConfig(
                hidden_size=128, num_attention_heads=4, intermediate_size=256, num_hidden_layers=1, vocab_size=1000
            )
        )
        if mimetic:
            mimetic_init_(model)
        ids = torch.randperm(1000)[:64][None]
        hidden = model.embeddings(input_ids=ids)
        attention = model.encoder.layer[0].attention.self
        q = attention.query(hidden).view(1, 64, 4, 32).transpose(1, 2)
        k = attention.key(hidden).view(1, 64, 4, 32).transpose(1, 2)
        best = (q @ k.transpose(-1, -2)).argmax(-1)  # (1, heads, 64)
        return (best == torch.arange(64)).float().mean().item()

    assert hits(True) > 0.9 and hits(False) < 0.2


def test_recipe_field_initialises_fresh_models_and_refuses_checkpoints(tmp_path):
    """attention_init: mimetic changes a fresh recipe model's attention (same seed otherwise); a bad value
    or a loaded checkpoint is refused naming the field."""
    recipe = str(PROJECT_ROOT / "recipes" / "classification_demo.yaml")
    fast = [
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--synthetic_train_size",
        "8",
        "--synthetic_eval_size",
        "4",
        "--disable_tqdm",
        "true",
        "--max_seq_length",
        "16",
        "--learning_rate",
        "1e-12",
    ]
    diagonal = {}  # mean diagonal of W_q^T W_k over its mean |entry|: the identity shows there
    for init in ("default", "mimetic"):
        out = tmp_path / init
        train(recipe, [*fast, "--attention_init", init, "--output_dir", str(out)])
        attention = RelPosBertModel.from_pretrained(out).encoder.layer[0].attention.self
        product = attention.query.weight.T @ attention.key.weight
        diagonal[init] = torch.diagonal(product).mean() / product.abs().mean()
    assert diagonal["mimetic"] > 3 and diagonal["default"] < 1.5
    with pytest.raises(ValueError, match="attention_init='xavier' is not valid; choose one of: default, mimetic"):
        train(recipe, [*fast, "--attention_init", "xavier", "--output_dir", str(tmp_path / "bad")])
    with pytest.raises(ValueError, match="attention_init='mimetic' initialises a fresh model.*model_name_or_path="):
        train(
            recipe,
            [
                *fast,
                "--attention_init",
                "mimetic",
                "--model_name_or_path",
                str(tmp_path / "default"),
                "--output_dir",
                str(tmp_path / "bad2"),
            ],
        )


def test_pretraining_recipes_initialise_fresh_models_too(tmp_path):
    """span_corruption builds its fresh relpos_t5 on its own path: attention_init reaches it (self- and
    cross-attention of both stacks)."""
    fast = [
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--synthetic_train_size",
        "16",
        "--synthetic_eval_size",
        "4",
        "--tokenizer_vocab_size",
        "300",
        "--max_seq_length",
        "32",
        "--disable_tqdm",
        "true",
        "--learning_rate",
        "1e-12",
    ]
    train(
        {"task": "span_corruption", "preset": "tiny"},
        [*fast, "--attention_init", "mimetic", "--output_dir", str(tmp_path / "t5")],
    )
    from hf_relpos.modeling_relpos_t5 import RelPosT5ForConditionalGeneration

    model = RelPosT5ForConditionalGeneration.from_pretrained(tmp_path / "t5")
    cross = model.decoder.block[0].layer[1].EncDecAttention
    for attention in (model.encoder.block[0].layer[0].SelfAttention, cross):
        product = attention.q.weight.T @ attention.k.weight
        assert torch.diagonal(product).mean() / product.abs().mean() > 3
