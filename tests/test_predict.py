"""`hf-relpos predict` and the pipelines a checkpoint carries: predict per task against the evaluation path
(tiny recipes trained for a few steps), the question-answering / summarization pipelines in a process where
hf_relpos cannot be imported (same answers and summaries as predict), bad rows, refusing to overwrite, stdin /
stdout, input formats, embeddings pooling and files."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_without_hf_relpos

import hf_relpos
from hf_relpos import RelPosBertConfig, RelPosBertForTokenClassification, RelPosBertModel
from hf_relpos.cli import main
from hf_relpos.pipelines_relpos import best_answers
from hf_relpos.prediction import BadRowError, pooling_of, predict, task_of
from hf_relpos.training import train
from hf_relpos.training.data import synthetic_classification, synthetic_qa, synthetic_summarization
from hf_relpos.training.modeling import BERT_PRESETS, train_wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SIZES = {"synthetic_train_size": 96, "synthetic_eval_size": 24}
FAST = [
    "--max_steps",
    "8",
    "--per_device_train_batch_size",
    "16",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--logging_steps",
    "4",
] + [x for k, v in SIZES.items() for x in (f"--{k}", str(v))]


def _validation(builder):
    return builder(train_size=SIZES["synthetic_train_size"], eval_size=SIZES["synthetic_eval_size"], seed=1234)[
        "validation"
    ]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa") / "run"
    result = train(RECIPES / "qa_demo.yaml", [*FAST, "--max_steps", "30", "--output_dir", str(out)])
    rows = [{"id": r["id"], "question": r["question"], "context": r["context"]} for r in _validation(synthetic_qa)]
    return out, result, _jsonl(out.parent / "questions.jsonl", rows)


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "run"
    result = train(RECIPES / "classification_demo.yaml", [*FAST, "--output_dir", str(out)])
    return out, result


@pytest.fixture(scope="module")
def summarization(tmp_path_factory):
    out = tmp_path_factory.mktemp("sum") / "run"
    result = train(RECIPES / "summarization_demo.yaml", [*FAST, "--output_dir", str(out)])
    return out, result


def test_qa_predict_gives_the_evaluation_answers(qa, tmp_path):
    out, result, questions = qa
    assert task_of(out) == "qa"
    evaluated = {r["id"]: r["prediction"] for r in json.loads((out / "eval_predictions.json").read_text())}
    rows = hf_relpos.predict(out, questions, tmp_path / "answers.jsonl", batch_size=7)  # the package's function
    assert {r["id"]: r["answer"] for r in rows} == evaluated
    written = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == [json.loads(line)["id"] for line in questions.read_text().splitlines()]
    for row, source in zip(written, map(json.loads, questions.read_text().splitlines())):
        assert source["context"][row["start"] : row["end"]] == row["answer"] and 0 <= row["score"] <= 1
    # n-best: the first of the list is the answer; the same span is never listed twice
    nbest = predict(out, questions, n_best=3)
    assert all(r["n_best"][0]["answer"] == r["answer"] and len(r["n_best"]) == 3 for r in nbest)
    assert all(len({(a["start"], a["end"]) for a in r["n_best"]}) == 3 for r in nbest)
    # saved settings are the defaults: the training windows (64 tokens, stride 24) travel in config.json
    saved = json.loads((out / "config.json").read_text())["custom_pipelines"]["question-answering"]["parameters"]
    assert saved["max_seq_len"] == 64 and saved["doc_stride"] == 24 and saved["max_answer_len"] == 8
    assert (out / "pipelines_relpos.py").is_file()


def test_qa_long_context_windows_and_no_answer(qa):
    out, _, questions = qa
    row = json.loads(questions.read_text().splitlines()[0])
    long = {"id": "long", "question": row["question"], "context": " ".join([row["context"]] * 12)}
    (answer,) = predict(out, [long])
    assert long["context"][answer["start"] : answer["end"]] == answer["answer"]
    (short,) = predict(out, [long], max_seq_length=32, doc_stride=8)  # more, shorter windows: still a span of the text
    assert long["context"][short["start"] : short["end"]] == short["answer"]
    (none,) = predict(out, [row], version_2=True, null_threshold=-1e9)  # any null score wins: no answer
    assert none["answer"] == "" and none["id"] == row["id"]


def test_best_answers_is_padding_free_and_v2():
    offsets = [None, (0, 3), (4, 7), (8, 11), None, None]
    starts = np.array([1.0, 5.0, 0.5, 0.1, 9.0, 9.0])  # padding/question tokens with high logits do not compete
    ends = np.array([1.0, 0.2, 6.0, 0.1, 9.0, 9.0])
    (best,) = best_answers("abc def ghi", [(starts, ends, offsets)])
    assert best["answer"] == "abc def" and (best["start"], best["end"]) == (0, 7)
    (trimmed,) = best_answers("abc def ghi", [(starts[:4], ends[:4], offsets[:4])])
    assert trimmed["answer"] == best["answer"] and trimmed["logit"] == best["logit"]
    (empty,) = best_answers(
        "abc def ghi", [(starts, ends, offsets)], version_2_with_negative=True, null_score_diff_threshold=-100.0
    )
    assert empty["answer"] == ""


def test_classification_predict_matches_the_evaluation_accuracy(classification):
    out, result = classification
    valid = _validation(synthetic_classification)
    rows = predict(out, [{"id": i, "text": t} for i, t in enumerate(valid["text"])], batch_size=5)
    labels = json.loads((out / "config.json").read_text())["id2label"]
    accuracy = np.mean([r["label"] == labels[str(g)] for r, g in zip(rows, valid["label"])])
    assert accuracy == pytest.approx(result["eval"]["eval_accuracy"])
    assert all(
        set(r["probabilities"]) == set(labels.values()) and r["score"] == max(r["probabilities"].values()) for r in rows
    )
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_pipelines_without_hf_relpos_give_predicts_answers(qa, summarization, classification, tmp_path):
    qa_out, _, questions = qa
    sum_out, _ = summarization
    cls_out, _ = classification
    asked = [json.loads(line) for line in questions.read_text().splitlines()[:6]]
    documents = [{"id": i, "text": t} for i, t in enumerate(_validation(synthetic_summarization)["document"][:4])]
    answers = predict(qa_out, asked, n_best=2)
    summaries = predict(sum_out, documents)
    labels = predict(cls_out, ["north a b south", "south c north"])
    got = run_without_hf_relpos(
        f"""
        import json, warnings
        warnings.simplefilter("error")
        from transformers import pipeline
        qa = pipeline("question-answering", model={str(qa_out)!r}, trust_remote_code=True)
        asked = {asked!r}
        one = [qa(question=r["question"], context=r["context"]) for r in asked]
        two = qa([{{"question": r["question"], "context": r["context"]}} for r in asked], top_k=2, batch_size=4)
        auto = pipeline(model={str(qa_out)!r}, trust_remote_code=True)(question=asked[0]["question"], context=asked[0]["context"])
        summarize = pipeline("summarization", model={str(sum_out)!r}, trust_remote_code=True)
        summaries = [summarize(d["text"])[0]["summary_text"] for d in {documents!r}]
        generated = pipeline("text2text-generation", model={str(sum_out)!r}, trust_remote_code=True)({documents[0]["text"]!r})
        classify = pipeline("text-classification", model={str(cls_out)!r}, trust_remote_code=True)
        print(json.dumps({{"one": one, "two": two, "auto": auto, "summaries": summaries, "generated": generated,
                          "labels": classify(["north a b south", "south c north"]),
                          "module": type(qa).__module__}}))
        """,
        cwd=tmp_path,
    )
    assert "transformers_modules" in got["module"]
    assert [a["answer"] for a in got["one"]] == [a["answer"] for a in answers]
    assert [(a["start"], a["end"]) for a in got["one"]] == [(a["start"], a["end"]) for a in answers]
    assert [[a["answer"] for a in two] for two in got["two"]] == [[a["answer"] for a in r["n_best"]] for r in answers]
    assert got["one"][0]["score"] == pytest.approx(answers[0]["score"], rel=1e-4)
    assert got["auto"]["answer"] == answers[0]["answer"]  # the only custom pipeline: pipeline(model=...) picks it
    assert got["summaries"] == [s["summary_text"] for s in summaries]
    assert got["generated"][0]["generated_text"] == summaries[0]["summary_text"]
    assert [x["label"] for x in got["labels"]] == [x["label"] for x in labels]  # built-in pipeline, same labels
    assert [x["score"] for x in got["labels"]] == pytest.approx([x["score"] for x in labels], rel=1e-4)


def test_summarization_predict_matches_the_evaluation_rouge(summarization):
    from hf_relpos.training.summarization import rouge

    out, result = summarization
    valid = _validation(synthetic_summarization)
    rows = predict(out, [{"id": i, "document": d} for i, d in enumerate(valid["document"])], batch_size=5)
    scores = rouge([r["summary_text"].strip() for r in rows], [s.strip() for s in valid["summary"]])
    assert scores["rougeL"] == pytest.approx(result["eval"]["eval_rougeL"])
    saved = json.loads((out / "config.json").read_text())["custom_pipelines"]["summarization"]["parameters"]
    assert saved == {"source_prefix": "", "max_source_length": 64}


def test_summarization_predict_generation_settings(summarization, tmp_path):
    out, _ = summarization
    assert task_of(out) == "summarization"
    documents = _jsonl(
        tmp_path / "docs.jsonl",
        [{"id": f"d{i}", "document": t} for i, t in enumerate(_validation(synthetic_summarization)["document"][:3])],
    )
    rows = predict(out, documents, max_new_tokens=2)
    assert [r["id"] for r in rows] == ["d0", "d1", "d2"] and all(len(r["summary_text"].split()) <= 2 for r in rows)
    text2text = predict(out, documents, task="text2text", num_beams=2, batch_size=1)
    assert all("generated_text" in r for r in text2text)


def test_bad_rows_fail_with_file_line_and_field_or_are_skipped(classification, tmp_path, capsys):
    out, _ = classification
    data = tmp_path / "in.jsonl"
    data.write_text(
        '{"id": 1, "text": "north a south"}\n{"id": 2, "txt": "typo"}\n{"id": 3, "text": ""}\nnot json\n'
        '{"id": 5, "text": "south b north"}\n'
    )
    with pytest.raises(BadRowError, match=r"in\.jsonl:2: field 'text' is missing"):
        predict(out, data)
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(out), "--input", str(data), "--output", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "in.jsonl:2: field 'text' is missing" in err and not target.exists()
    assert (
        main(["predict", str(out), "--input", str(data), "--output", str(target), "--skip-bad-rows", "--no-progress"])
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "skipped 3 bad rows" in err
        and "in.jsonl:3: field 'text' is empty" in err
        and "in.jsonl:4: not valid JSON" in err
    )
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1, 5]


def test_existing_output_is_not_overwritten(classification, tmp_path, capsys):
    out, _ = classification
    data = _jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "north x south"}])
    target = tmp_path / "out.jsonl"
    target.write_text("keep me\n")
    assert main(["predict", str(out), "--input", str(data), "--output", str(target), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err and target.read_text() == "keep me\n"
    assert (
        main(["predict", str(out), "--input", str(data), "--output", str(target), "--overwrite", "--no-progress"]) == 0
    )
    assert json.loads(target.read_text())["id"] == "a"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_device_dtype_and_batch_options(classification):
    out, _ = classification
    texts = ["north a b south", "south c north", "north south"]
    reference = predict(out, texts, batch_size=1, device="cpu", dtype="float32")
    half = predict(out, texts, batch_size=2, dtype="bfloat16")
    assert [r["label"] for r in half] == [r["label"] for r in reference]
    assert [r["score"] for r in half] == pytest.approx([r["score"] for r in reference], abs=0.05)
    for bad, match in (
        ({"dtype": "float8"}, "dtype='float8' is not valid"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"device": "gpu:0"}, "device='gpu:0' is not a torch device"),
        ({"task": "ner"}, "task='ner'"),
    ):
        with pytest.raises(ValueError, match=match):
            predict(out, texts, **bad)


def test_stdin_stdout_csv_and_json_inputs(classification, tmp_path, capsys, monkeypatch):
    out, _ = classification
    monkeypatch.setattr(
        "sys.stdin", io.StringIO('{"id": "s1", "text": "north a south"}\n\n{"id": "s2", "text": "south north"}\n')
    )
    assert main(["predict", str(out), "--input", "-", "--output", "-", "--no-progress"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in printed] == ["s1", "s2"] and all("label" in r for r in printed)
    (tmp_path / "in.csv").write_text('id,text\nc1,"north, then south"\nc2,south north\n')
    assert [r["id"] for r in predict(out, tmp_path / "in.csv")] == ["c1", "c2"]
    (tmp_path / "in.json").write_text(
        json.dumps({"data": [{"id": "j1", "text": "north south"}, {"id": "j2"}]}, indent=1)
    )
    with pytest.raises(BadRowError, match=r"in\.json:\d+: field 'text' is missing"):
        predict(out, tmp_path / "in.json")
    (tmp_path / "in.csv").write_text("id,body\nc1,north\n")
    with pytest.raises(BadRowError, match=r"in\.csv:2: field 'text' is missing"):
        predict(out, tmp_path / "in.csv")
    assert [r["id"] for r in predict(out, tmp_path / "in.csv", text_column="body")] == ["c1"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc") / "minilm-like"
    texts = ["the quick brown fox", "jumps over the lazy dog", "a b c d e f g"] * 10
    tokenizer = train_wordpiece_tokenizer(texts, 120)
    torch.manual_seed(0)
    config = RelPosBertConfig(
        **BERT_PRESETS["tiny"],
        vocab_size=len(tokenizer),
        relative_position="t5",
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "O", 1: "B-ANIMAL", 2: "I-ANIMAL"},
    )
    RelPosBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, config, tokenizer


def test_embeddings_pooling_from_sentence_transformers_files(encoder, tmp_path):
    folder, _, tokenizer = encoder
    texts = ["the quick brown fox", "dog"]
    model = RelPosBertModel.from_pretrained(folder).eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    assert pooling_of(folder)["mode"] == "mean" and task_of(folder) == "embeddings"
    rows = predict(folder, texts)
    np.testing.assert_allclose(np.stack([r["embedding"] for r in rows]), mean.numpy(), atol=1e-5)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    try:
        assert pooling_of(folder) == {"mode": "cls", "normalize": True, "source": "1_Pooling/config.json"}
        cls = torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy()
        predict(folder, [{"id": i, "text": t} for i, t in enumerate(texts)], tmp_path / "e.npy")
        np.testing.assert_allclose(np.load(tmp_path / "e.npy"), cls, atol=1e-5)
        predict(folder, [{"id": i, "text": t} for i, t in enumerate(texts)], tmp_path / "e.safetensors")
        from safetensors import safe_open

        with safe_open(tmp_path / "e.safetensors", "np") as f:
            np.testing.assert_allclose(f.get_tensor("embeddings"), cls, atol=1e-5)
            assert json.loads(f.metadata()["ids"]) == [0, 1]
        with pytest.raises(ValueError, match="embeddings only"):
            predict(folder, texts, tmp_path / "x.npy", task="fill-mask")
    finally:
        (folder / "modules.json").unlink()


def test_token_classification_entities_and_fill_mask(encoder, tmp_path):
    folder, config, tokenizer = encoder
    tagger = tmp_path / "tagger"
    torch.manual_seed(1)
    model = RelPosBertForTokenClassification(config)
    with torch.no_grad():  # tag every token B-ANIMAL / I-ANIMAL by its id's parity: deterministic entities
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 4.0]))
    model.save_pretrained(tagger)
    tokenizer.save_pretrained(tagger)
    assert task_of(tagger) == "token-classification"
    (row,) = predict(tagger, [{"id": "t", "text": "the quick fox"}])
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in row["entities"]] == [
        ("ANIMAL", "the", 0, 3),
        ("ANIMAL", "quick", 4, 9),
        ("ANIMAL", "fox", 10, 13),
    ]
    masked = predict(
        folder,
        [f"the {tokenizer.mask_token} fox", f"{tokenizer.mask_token} b {tokenizer.mask_token}"],
        task="fill-mask",
        top_k=3,
    )
    assert [len(r["predictions"]) for r in masked] == [1, 2] and len(masked[0]["predictions"][0]) == 3
    with pytest.raises(BadRowError, match=r"input\[0\]: field 'text' has no mask token"):
        predict(folder, ["no mask here"], task="fill-mask")


def test_convert_output_carries_the_pipelines(tmp_path):
    from transformers import BertConfig, BertForQuestionAnswering

    from hf_relpos import convert_checkpoint
    from hf_relpos.pipeline_files import pipelines_for

    assert pipelines_for({"architectures": ["RelPosBertForSequenceClassification"]}) == {}
    assert set(pipelines_for({"architectures": ["RelPosT5ForConditionalGeneration"]})) == {
        "summarization",
        "text2text-generation",
    }
    tokenizer = train_wordpiece_tokenizer(["the cat sat on the mat", "where did the cat sit"] * 10, 100)
    source = tmp_path / "bert-qa"
    BertForQuestionAnswering(
        BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(source)
    tokenizer.save_pretrained(source)
    out = tmp_path / "relpos-qa"
    convert_checkpoint(str(source), str(out), "t5")
    assert set(json.loads((out / "config.json").read_text())["custom_pipelines"]) == {"question-answering"}
    assert (out / "pipelines_relpos.py").is_file() and task_of(out) == "qa"
    (answer,) = predict(out, [{"question": "where did the cat sit", "context": "the cat sat on the mat"}])
    assert answer["answer"] == "the cat sat on the mat"[answer["start"] : answer["end"]]
