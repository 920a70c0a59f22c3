"""Share on the Hub, offline: push to a loopback Hub-protocol server (tests/hub_server.py) selected with
HF_ENDPOINT, and pull back with `trust_remote_code=True` in a process where hf_relpos cannot be imported.

huggingface_hub reads HF_ENDPOINT at import time: subprocesses get it in their environment; in this
process the fixture also patches `huggingface_hub.constants.ENDPOINT` (and the resolve-URL template built
from it), and hf_relpos.hub reads HF_ENDPOINT when a push runs.
"""

import json
import re
import shutil

import huggingface_hub
import pytest
import torch
from helpers import PROJECT_ROOT, run_without_hf_relpos
from hub_server import LoopbackHub
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_relpos.cli import main as cli_main
from hf_relpos.hub import plan_upload, push_to_hub
from hf_relpos.training import train
from hf_relpos.training.data import synthetic_classification

RECIPES = PROJECT_ROOT / "recipes"
TOKEN = "hf_loopback_write_token"
USER = "test-user"
FAST = [
    "--max_steps",
    "6",
    "--synthetic_train_size",
    "64",
    "--synthetic_eval_size",
    "24",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--per_device_train_batch_size",
    "8",
    "--disable_tqdm",
    "true",
]
CODE_FILES = {
    "configuration_relpos_bert.py",
    "modeling_relpos_bert.py",
    "relative_positions.py",
    "attention_engine.py",
    "position_kernels.py",
    "scheme_config.py",
    "local_attention.py",
    "compat.py",
}
EXPECTED = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "README.md",
    "metrics.json",
    "all_results.json",
    "eval_results.json",
    "train_results.json",
    *CODE_FILES,
}


@pytest.fixture(scope="module")
def hub():
    server = LoopbackHub(token=TOKEN, user=USER).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", server.endpoint)
        mp.setenv("HF_TOKEN", TOKEN)
        mp.setenv("HF_HUB_OFFLINE", "0")
        mp.setattr(huggingface_hub.constants, "ENDPOINT", server.endpoint)
        mp.setattr(
            huggingface_hub.constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        yield server
    server.stop()


@pytest.fixture(scope="module")
def trained(hub, tmp_path_factory):
    """The classification demo with the t5 scheme, trained for a few steps with --push_to_hub (the
    recipe path)."""
    out = tmp_path_factory.mktemp("hub") / "cls"
    result = train(
        RECIPES / "classification_demo.yaml",
        [
            *FAST,
            "--relative_position",
            "t5",
            "--output_dir",
            str(out),
            "--push_to_hub",
            "true",
            "--hub_model_id",
            f"{USER}/cls-recipe",
        ],
    )
    return out, result


def api(token=TOKEN):
    return HfApi(endpoint=huggingface_hub.constants.ENDPOINT, token=token)


def download(repo_id, filename, tmp_path, revision=None, token=TOKEN):
    return api(token).hf_hub_download(repo_id, filename, revision=revision, cache_dir=tmp_path / "hf-cache")


def copy_checkpoint(out, dest, drop=()):
    shutil.copytree(out, dest)
    for name in drop:
        (dest / name).unlink()
    return dest


def python_blocks(card_text):
    return re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)


def test_recipe_push_to_hub_uploads_the_checkpoint(hub, trained):
    out, result = trained
    assert result["hub"]["repo_id"] == f"{USER}/cls-recipe"
    files = hub.files(f"{USER}/cls-recipe")
    assert set(files) == EXPECTED  # no training_args.bin, no trainer_state.json
    for name in EXPECTED - {"README.md"}:
        assert files[name] == (out / name).read_bytes(), name
    assert json.loads(files["config.json"])["auto_map"]["AutoModelForSequenceClassification"].startswith(
        "modeling_relpos_bert."
    )
    card = files["README.md"].decode()
    assert f'from_pretrained("{USER}/cls-recipe", trust_remote_code=True)' in card
    # one upload at the end of the run, by hf_relpos: Trainer's own pushes were switched off
    commits = hub.calls("POST", f"/api/models/{USER}/cls-recipe/commit/")
    assert len(commits) == 1 and commits[0]["status"] == 200
    creates = [c for c in hub.calls("POST", "/api/repos/create") if c["json"]["name"] == "cls-recipe"]
    assert len(creates) == 1 and "visibility" not in creates[0]["json"]


def test_cli_push_then_pull_without_hf_relpos(hub, trained, tmp_path, capsys):
    out, result = trained
    repo = f"{USER}/cls-demo"
    assert cli_main(["push", str(out), "--repo-id", repo, "--commit-message", "demo upload"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["repo_id"] == repo and "training_args.bin" in printed["skipped"]
    assert hub.calls("POST", f"/api/models/{repo}/commit/main")[-1]["status"] == 200
    assert hub.state.commits[hub.repo(repo)["branches"]["main"]]["summary"] == "demo upload"
    # a base checkpoint (no card, no results) gets the base card
    base = copy_checkpoint(
        out,
        tmp_path / "base",
        drop=["README.md", "metrics.json", "all_results.json", "eval_results.json", "train_results.json"],
    )
    push_to_hub(base, f"{USER}/cls-base")

    # the pushed card parses, holds the metrics and names the repo
    card = ModelCard.load(download(repo, "README.md", tmp_path))
    metrics = {r.metric_type: r.metric_value for r in card.data.eval_results}
    for name in ("accuracy", "macro_f1"):
        assert metrics[name] == pytest.approx(result["eval"][f"eval_{name}"])
    assert card.data.model_name == "cls-demo" and card.data.library_name == "transformers"
    assert {"relative-position", "t5", "custom_code"} <= set(
        card.data.tags
    ) and not card.data.datasets  # "synthetic" is no Hub id
    assert str(out) not in card.text and f'from_pretrained("{repo}", trust_remote_code=True)' in card.text
    base_card = ModelCard.load(download(f"{USER}/cls-base", "README.md", tmp_path))

    texts = list(synthetic_classification(train_size=64, eval_size=24, seed=1234)["validation"]["text"][:6])
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        local = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {"repo": repo, "texts": texts, "snippets": python_blocks(card.text)[:1] + python_blocks(base_card.text)[:1]}
        )
    )
    got = run_without_hf_relpos(
        f"""
        import contextlib, io, json, torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        job = json.load(open({str(job)!r}))
        model = AutoModelForSequenceClassification.from_pretrained(job["repo"], trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained(job["repo"], trust_remote_code=True)
        with torch.no_grad():
            logits = model(**tok(job["texts"], padding=True, return_tensors="pt")).logits.tolist()
        printed = []
        for code in job["snippets"]:  # the cards' own "How to use" code, as a user would paste it
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(code, {{}})
            printed.append(buf.getvalue())
        print(json.dumps({{"logits": logits, "module": type(model).__module__, "printed": printed}}))
        """,
        cwd=tmp_path,
        env={
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "fresh-hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_TOKEN": "",
        },
    )
    assert "transformers_modules" in got["module"]
    assert torch.allclose(torch.tensor(got["logits"]), local, atol=1e-5, rtol=0)
    assert len(got["printed"]) == 2 and all("label" in p for p in got["printed"])
    assert not [r for r in hub.requests if r["status"] >= 500]  # the server never failed on what clients sent


@pytest.mark.parametrize("case", ["weights", "code", "config", "auto_map", "pickle_only", "shard"])
def test_incomplete_folder_fails_before_any_upload(hub, trained, tmp_path, case):
    out, _ = trained
    folder = copy_checkpoint(out, tmp_path / "ckpt")
    if case == "weights":
        (folder / "model.safetensors").unlink()
        expected = "model.safetensors"
    elif case == "code":  # imported by modeling_relpos_bert.py, not named in auto_map itself
        (folder / "attention_engine.py").unlink()
        expected = "attention_engine.py"
    elif case == "config":
        (folder / "config.json").unlink()
        expected = "config.json"
    elif case == "auto_map":
        config = json.loads((folder / "config.json").read_text())
        del config["auto_map"]
        (folder / "config.json").write_text(json.dumps(config))
        expected = "auto_map"
    elif case == "pickle_only":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        expected = "pytorch_model.bin is a pickle file"
    else:
        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        names = sorted(state)
        save_file({k: state[k] for k in names[:3]}, folder / "model-00001-of-00002.safetensors")
        weight_map = {
            k: "model-00001-of-00002.safetensors" if i < 3 else "model-00002-of-00002.safetensors"
            for i, k in enumerate(names)
        }
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        expected = "model-00002-of-00002.safetensors"
    before = len(hub.requests)
    with pytest.raises(ValueError, match=re.escape(expected)) as err:
        push_to_hub(folder, f"{USER}/refused-{case}")
    assert "Nothing was uploaded" in str(err.value)
    assert len(hub.requests) == before  # not even a create call
    assert (("model", f"{USER}/refused-{case}")) not in hub.state.repos


def test_cli_push_errors_exit_2(hub, trained, tmp_path, capsys):
    out, _ = trained
    folder = copy_checkpoint(out, tmp_path / "noweights", drop=["model.safetensors"])
    before = len(hub.requests)
    assert cli_main(["push", str(folder), "--repo-id", f"{USER}/bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-relpos push: error:") and "model.safetensors" in err and "Nothing was uploaded" in err
    assert cli_main(["push", str(tmp_path / "absent"), "--repo-id", f"{USER}/bad"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli_main(["push", str(out), "--repo-id", "a/b/c"]) == 2
    assert "repo_id='a/b/c' is not valid" in capsys.readouterr().err
    assert len(hub.requests) == before


def test_push_sends_only_the_checkpoint(hub, trained, tmp_path):
    """Sharded safetensors go up with their index; pickles, checkpoint-N folders, logs and stray files stay."""
    out, _ = trained
    folder = copy_checkpoint(out, tmp_path / "busy")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    shards = {n: f"model-0000{1 + (i % 2)}-of-00002.safetensors" for i, n in enumerate(names)}
    for shard in set(shards.values()):
        save_file({n: state[n] for n in names if shards[n] == shard}, folder / shard)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": shards}))
    (folder / "checkpoint-3").mkdir()
    (folder / "checkpoint-3" / "optimizer.pt").write_bytes(b"pickle")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    (folder / "optimizer.pt").write_bytes(b"pickle")
    (folder / "runs").mkdir()
    (folder / "notes.txt").write_text("local notes")
    (folder / "helper_script.py").write_text("print('not modeling code')")
    plan = plan_upload(folder)
    assert set(plan.skipped) == {
        "checkpoint-3/",
        "pytorch_model.bin",
        "optimizer.pt",
        "runs/",
        "notes.txt",
        "helper_script.py",
        "training_args.bin",
        "trainer_state.json",
    }
    assert "pickle" in plan.skipped["training_args.bin"] and "checkpoint" in plan.skipped["checkpoint-3/"]
    result = push_to_hub(folder, f"{USER}/cls-sharded")
    files = hub.files(f"{USER}/cls-sharded")
    assert set(files) == (EXPECTED - {"model.safetensors"}) | {"model.safetensors.index.json", *shards.values()}
    assert result["files"] == sorted(files)
    for shard in set(shards.values()):
        assert files[shard] == (folder / shard).read_bytes()


def test_cards_rendered_for_the_repo(hub, trained, tmp_path):
    out, result = trained
    # no README.md: the task card is rendered again from metrics.json
    folder = copy_checkpoint(out, tmp_path / "nocard", drop=["README.md"])
    push_to_hub(folder, f"{USER}/cls-rendered")
    card = ModelCard.load(download(f"{USER}/cls-rendered", "README.md", tmp_path))
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == pytest.approx(
        result["eval"]["eval_accuracy"]
    )
    assert card.data.pipeline_tag == "text-classification" and card.data.model_name == "cls-rendered"
    assert f'from_pretrained("{USER}/cls-rendered", trust_remote_code=True)' in card.text
    assert "| learning_rate | 0.003 |" in card.text and "| lr_scheduler_type | linear |" in card.text
    assert "arxiv.org/abs/1910.10683" in card.text  # the t5 scheme's paper
    assert 'pipeline("text-classification"' in card.text
    # neither README.md nor metrics.json: the base card
    folder = copy_checkpoint(out, tmp_path / "bare", drop=["README.md", "metrics.json"])
    push_to_hub(folder, f"{USER}/cls-bare")
    card = ModelCard.load(download(f"{USER}/cls-bare", "README.md", tmp_path))
    assert card.data.eval_results is None and "## Results" not in card.text
    assert {"relative-position", "t5", "custom_code", "relpos_bert"} <= set(card.data.tags)
    assert f'AutoModelForSequenceClassification.from_pretrained("{USER}/cls-bare", trust_remote_code=True)' in card.text
    assert "no results are claimed" in card.text and "## Limitations" in card.text
    # a hand-written README.md: kept, its load line pointed at the repo, metadata completed
    folder = copy_checkpoint(out, tmp_path / "own", drop=["README.md"])
    (folder / "README.md").write_text(
        "# My classifier\n\nWritten by hand.\n\n```python\nfrom transformers import "
        "AutoModelForSequenceClassification\nm = AutoModelForSequenceClassification"
        f".from_pretrained('{folder}', trust_remote_code=True)\n```\n"
    )
    push_to_hub(folder, f"{USER}/cls-own")
    card = ModelCard.load(download(f"{USER}/cls-own", "README.md", tmp_path))
    assert "Written by hand." in card.text and str(folder) not in card.text
    assert f"from_pretrained('{USER}/cls-own', trust_remote_code=True)" in card.text
    assert card.data.library_name == "transformers" and "custom_code" in card.data.tags
    # the Hub's view of the repo carries the card metadata
    info = api().model_info(f"{USER}/cls-bare")
    assert "custom_code" in info.tags and "README.md" in {s.rfilename for s in info.siblings}


def test_cli_push_private(hub, trained, tmp_path):
    out, _ = trained
    repo = f"{USER}/cls-private"
    assert cli_main(["push", str(out), "--repo-id", repo, "--private"]) == 0
    create = [c for c in hub.calls("POST", "/api/repos/create") if c["json"]["name"] == "cls-private"]
    assert create[-1]["json"]["visibility"] == "private"
    assert api().model_info(repo).private is True
    with pytest.raises(RepositoryNotFoundError):
        download(repo, "config.json", tmp_path / "anonymous", token=False)
    assert json.loads(open(download(repo, "config.json", tmp_path)).read())["model_type"] == "relpos_bert"


def test_cli_push_to_a_branch(hub, trained, tmp_path):
    out, _ = trained
    repo = f"{USER}/cls-branch"
    assert cli_main(["push", str(out), "--repo-id", repo, "--revision", "dev"]) == 0
    refs = {b.name: b.target_commit for b in api().list_repo_refs(repo).branches}
    assert set(refs) == {"main", "dev"} and refs["main"] != refs["dev"]
    assert set(hub.files(repo, "dev")) == EXPECTED and hub.files(repo, "main") == {}
    path = download(repo, "model.safetensors", tmp_path, revision="dev")
    assert open(path, "rb").read() == (out / "model.safetensors").read_bytes()
    assert api().model_info(repo, revision="dev").sha == refs["dev"]
    # pushing the same folder again: the branch exists and nothing changed, so no new commit
    assert cli_main(["push", str(out), "--repo-id", repo, "--revision", "dev"]) == 0
    assert {b.name: b.target_commit for b in api().list_repo_refs(repo).branches} == refs


def test_bare_repo_name_goes_under_the_token_user(hub, trained):
    out, _ = trained
    result = push_to_hub(out, "cls-bare-name")
    assert result["repo_id"] == f"{USER}/cls-bare-name"
    card = hub.files(f"{USER}/cls-bare-name")["README.md"].decode()
    assert f'from_pretrained("{USER}/cls-bare-name", trust_remote_code=True)' in card


def test_bad_hub_model_id_or_offline_fails_before_work(hub, trained, monkeypatch):
    out, _ = trained
    before = len(hub.requests)
    with pytest.raises(ValueError, match="hub_model_id='a/b/c' is not valid"):
        train(
            RECIPES / "classification_demo.yaml",
            [*FAST, "--output_dir", str(out.parent / "never"), "--push_to_hub", "true", "--hub_model_id", "a/b/c"],
        )
    assert not (out.parent / "never").exists()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        push_to_hub(out, f"{USER}/offline")
    assert len(hub.requests) == before


@pytest.mark.parametrize("task", ["qa", "summarization"])
def test_task_card_code_runs(tmp_path, task, capsys):
    """Transformers 5 removed the question-answering and summarization pipelines: the cards' code (the
    pipelines the checkpoint carries) must still run as written (here on a fresh tiny checkpoint in a local folder)."""
    from hf_relpos import RelPosBertConfig, RelPosT5Config
    from hf_relpos.cards import build_model_card
    from hf_relpos.modeling_relpos_bert import RelPosBertForQuestionAnswering
    from hf_relpos.modeling_relpos_t5 import RelPosT5ForConditionalGeneration
    from hf_relpos.pipeline_files import add_pipelines
    from hf_relpos.training.modeling import (
        BERT_PRESETS,
        T5_PRESETS,
        train_sentencepiece_tokenizer,
        train_wordpiece_tokenizer,
    )

    texts = ["the cat sat on the mat near the door", "where did the cat sit", "key alpha beta key gamma"] * 10
    folder = tmp_path / task
    if task == "qa":
        tokenizer = train_wordpiece_tokenizer(texts, 200)
        config = RelPosBertConfig(**BERT_PRESETS["tiny"], vocab_size=len(tokenizer), relative_position="alibi")
        model = RelPosBertForQuestionAnswering(config)
        metrics, example = {"eval_exact_match": 40.0, "eval_f1": 50.0}, "the cat sat on the mat near the door"
    else:
        tokenizer = train_sentencepiece_tokenizer(texts, 100)
        config = RelPosT5Config(
            **T5_PRESETS["tiny"],
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        model = RelPosT5ForConditionalGeneration(config)
        metrics, example = {"eval_rougeL": 0.25}, "key alpha beta key gamma"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    add_pipelines(folder)  # what train / convert / push outputs carry
    card = build_model_card(
        task,
        model.config,
        metrics,
        {"learning_rate": 1e-3},
        "synthetic",
        repo_id=str(folder),
        example_input=example,
        example_question="where did the cat sit?",
    )
    assert (
        f'pipeline("{ {"qa": "question-answering"}.get(task, task) }", model="{folder}", trust_remote_code=True)'
        in card.text
    )
    capsys.readouterr()
    exec(python_blocks(card.text)[0], {})
    printed = capsys.readouterr().out
    assert printed.endswith("\n")  # one printed line: the answer span, or the generated summary
    if task == "qa":  # the pipeline's answer: a span of the context
        answer = eval(printed)  # noqa: S307 (a dict the snippet printed)
        assert answer["answer"] == example[answer["start"] : answer["end"]]


def test_push_carries_the_question_answering_pipeline(hub, tmp_path):
    """A QA folder saved before checkpoints carried pipelines (no custom_pipelines, no pipelines_relpos.py) goes
    up with both; pulled back where hf_relpos cannot be imported, pipeline("question-answering") answers."""
    from hf_relpos import RelPosBertConfig, RelPosBertForQuestionAnswering
    from hf_relpos.training.modeling import BERT_PRESETS, train_wordpiece_tokenizer

    texts = ["the cat sat on the mat near the door", "where did the cat sit"] * 10
    tokenizer = train_wordpiece_tokenizer(texts, 120)
    folder = tmp_path / "qa"
    RelPosBertForQuestionAnswering(RelPosBertConfig(**BERT_PRESETS["tiny"], vocab_size=len(tokenizer))).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    assert "custom_pipelines" not in json.loads((folder / "config.json").read_text())
    assert "pipelines_relpos.py" in plan_upload(folder).files
    push_to_hub(folder, f"{USER}/qa-pipeline")
    files = hub.files(f"{USER}/qa-pipeline")
    assert "pipelines_relpos.py" in files and {*CODE_FILES} <= set(files)
    pipelines = json.loads(files["config.json"])["custom_pipelines"]
    assert pipelines["question-answering"]["impl"] == "pipelines_relpos.RelPosQuestionAnsweringPipeline"
    assert "custom_pipelines" not in json.loads(
        (folder / "config.json").read_text()
    )  # the local folder is left as it is
    got = run_without_hf_relpos(
        f"""
        import json
        from transformers import pipeline
        qa = pipeline("question-answering", model="{USER}/qa-pipeline", trust_remote_code=True)
        print(json.dumps(qa(question="where did the cat sit", context="the cat sat on the mat near the door")))
        """,
        cwd=tmp_path,
        env={
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "fresh-hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_TOKEN": "",
        },
    )
    context = "the cat sat on the mat near the door"
    assert got["answer"] == context[got["start"] : got["end"]] and got["answer"]
