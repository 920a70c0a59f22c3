"""Saved folders' tokenizers (issue 13): recipe outputs, `convert` outputs and pushed repos load with
`AutoTokenizer.from_pretrained(dir)` as a plain transformers tokenizer in a process without hf_relpos,
the tokenizer side never reaching transformers' remote-code check, and `model_max_length` is the model's
real limit (learned absolute: max_position_embeddings; purely relative: the length trained at).

What transformers 5.24 does not let a folder avoid: `AutoTokenizer.from_pretrained` loads the model config
first (`AutoConfig.from_pretrained`, models/auto/tokenization_auto.py:805), and a config.json whose
`auto_map` has "AutoConfig" and whose model_type transformers does not know reaches
`resolve_trust_remote_code` there (models/auto/configuration_auto.py:419), which asks in a terminal, before
tokenizer_config.json is read. The tests pin that this is the ONLY remote-code check on the way (so it asks
once, in AutoConfig, and a non-terminal gets no wait), and that `trust_remote_code=False` or an
installed hf_relpos load with no prompt at all."""

import json

import pytest
import torch
from helpers import PROJECT_ROOT, run_without_hf_relpos
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, T5Config, T5ForConditionalGeneration

from hf_relpos.convert import convert_checkpoint
from hf_relpos.tokenization import UNSET, finalized_tokenizer_config, model_max_length_for
from hf_relpos.training import train
from hf_relpos.training.modeling import train_sentencepiece_tokenizer, train_wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPES = PROJECT_ROOT / "recipes"
FAST = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--synthetic_train_size",
    "32",
    "--synthetic_eval_size",
    "16",
    "--disable_tqdm",
    "true",
]
TEXTS = ["the north wind blows before the south one", "a plain tokenizer for a relative model"] * 40

# Run in a process without hf_relpos: every call of resolve_trust_remote_code (where it was called from)
# and every prompt (input() answers "no input", as a closed terminal would) is recorded.
PROBE = """
import builtins, json, time, traceback
import transformers.dynamic_module_utils as dmu
import transformers.models.auto.configuration_auto as ca
import transformers.models.auto.tokenization_auto as ta
calls, prompts = [], []
real = dmu.resolve_trust_remote_code
def spy(*args, **kwargs):
    frame = traceback.extract_stack()[-2]
    calls.append(frame.filename.rsplit("/", 1)[-1])
    return real(*args, **kwargs)
for module in (dmu, ca, ta):
    module.resolve_trust_remote_code = spy
def no_terminal(prompt=""):
    prompts.append(prompt)
    raise EOFError
builtins.input = no_terminal
from transformers import AutoTokenizer
out = {}
for name, kwargs in (("default", {}), ("untrusted", {"trust_remote_code": False})):
    del calls[:], prompts[:]
    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(FOLDER, **kwargs)
    out[name] = {"calls": list(calls), "prompts": len(prompts), "class": type(tok).__module__ + "." + type(tok).__name__,
                 "model_max_length": tok.model_max_length, "seconds": time.perf_counter() - start,
                 "ids": tok("the north wind")["input_ids"]}
print(json.dumps(out))
"""


def probe(folder, tmp_path, env=None):
    return run_without_hf_relpos(f"FOLDER = {str(folder)!r}\n" + PROBE, cwd=tmp_path, env=env)


def check_loads_plain(folder, tmp_path, expected_length, env=None, local=None):
    got = probe(folder, tmp_path, env)
    local = AutoTokenizer.from_pretrained(local or folder)  # hf_relpos imported here: no remote-code question at all
    for case in got.values():
        assert case["class"].startswith("transformers."), case
        assert case["model_max_length"] == expected_length
        assert case["ids"] == local("the north wind")["input_ids"]
        # the tokenizer side never asks: the only check reached is AutoConfig's (see the module docstring)
        assert set(case["calls"]) <= {"configuration_auto.py"}, case["calls"]
    assert got["default"]["prompts"] <= 1 and got["default"]["seconds"] < 10
    assert got["untrusted"]["prompts"] == 0
    return got


def test_model_max_length_rule():
    assert model_max_length_for({"absolute_position": "learned", "max_position_embeddings": 300}, 64) == 300
    assert model_max_length_for({"absolute_position": "none", "max_position_embeddings": 512}, 64) == 64
    assert model_max_length_for({"absolute_position": "sinusoidal", "max_position_embeddings": 512}) == 512
    unset = {"model_max_length": int(1e30), "tokenizer_class": "BertTokenizer"}
    learned = {"absolute_position": "learned", "max_position_embeddings": 128}
    assert finalized_tokenizer_config(unset, learned)["model_max_length"] == 128
    assert finalized_tokenizer_config(unset, learned, model_max_length=4096)["model_max_length"] == 128
    assert finalized_tokenizer_config({}, {"max_position_embeddings": 512})["tokenizer_class"] == "TokenizersBackend"
    kept = finalized_tokenizer_config({"model_max_length": 64}, {"max_position_embeddings": 512}, keep_set_length=True)
    assert kept["model_max_length"] == 64 and 64 < UNSET


def test_recipe_outputs(tmp_path):
    learned = tmp_path / "learned"
    train(
        RECIPES / "classification_demo.yaml",
        [*FAST, "--absolute_position", "learned", "--relative_position", "alibi", "--output_dir", str(learned)],
    )
    table = json.loads((learned / "config.json").read_text())["max_position_embeddings"]
    assert json.loads((learned / "tokenizer_config.json").read_text())["model_max_length"] == table == 512
    relative = tmp_path / "relative"
    train(RECIPES / "classification_demo.yaml", [*FAST, "--max_seq_length", "48", "--output_dir", str(relative)])
    assert json.loads((relative / "tokenizer_config.json").read_text())["model_max_length"] == 48
    check_loads_plain(learned, tmp_path, 512)
    check_loads_plain(relative, tmp_path, 48)
    # truncation=True now truncates
    tok = AutoTokenizer.from_pretrained(relative)
    assert len(tok(" ".join(["north"] * 200), truncation=True)["input_ids"]) == 48


def test_convert_outputs(tmp_path):
    torch.manual_seed(0)
    tok = train_wordpiece_tokenizer(TEXTS, vocab_size=120)
    src = tmp_path / "bert"
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=96,
        )
    ).save_pretrained(src)
    tok.save_pretrained(src)  # model_max_length unset (1e30), as many hand-made tokenizers are
    convert_checkpoint(src, tmp_path / "kept", scheme="t5", keep_absolute=True)
    convert_checkpoint(src, tmp_path / "longer", scheme="alibi", keep_absolute=True, max_position_embeddings=160)
    convert_checkpoint(src, tmp_path / "relative", scheme="alibi", keep_absolute=False)
    lengths = {
        name: json.loads((tmp_path / name / "tokenizer_config.json").read_text())["model_max_length"]
        for name in ("kept", "longer", "relative")
    }
    assert lengths == {"kept": 96, "longer": 160, "relative": 96}  # relative: the source's trained length
    check_loads_plain(tmp_path / "kept", tmp_path, 96)

    t5_src = tmp_path / "t5_src"
    T5ForConditionalGeneration(
        T5Config(
            vocab_size=120,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            decoder_start_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
        )
    ).save_pretrained(t5_src)
    train_sentencepiece_tokenizer(TEXTS, vocab_size=120).save_pretrained(t5_src)
    convert_checkpoint(t5_src, tmp_path / "t5")
    t5_length = json.loads((tmp_path / "t5" / "config.json").read_text())["max_position_embeddings"]
    check_loads_plain(tmp_path / "t5", tmp_path, t5_length)


def test_pushed_repo(tmp_path):
    import huggingface_hub
    from hub_server import LoopbackHub
    from huggingface_hub import HfApi

    from hf_relpos.hub import push_to_hub

    torch.manual_seed(0)
    tok = train_wordpiece_tokenizer(TEXTS, vocab_size=120)
    src = tmp_path / "bert"
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=80,
        )
    ).save_pretrained(src)
    tok.save_pretrained(src)
    folder = tmp_path / "converted"
    convert_checkpoint(src, folder, scheme="t5", keep_absolute=True)
    # a folder finalized by hand-made code elsewhere: the push settles what goes up, the folder stays as it is
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class")
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": int(1e30)}))
    server = LoopbackHub(token="hf_test", user="tester").start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "0")
            mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
            mp.setenv("HF_ENDPOINT", server.endpoint)
            mp.setattr(huggingface_hub.constants, "ENDPOINT", server.endpoint)
            mp.setattr(
                huggingface_hub.constants,
                "HUGGINGFACE_CO_URL_TEMPLATE",
                server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
            )
            push_to_hub(folder, "tester/tok", token="hf_test")
            sent = json.loads(
                open(
                    HfApi(endpoint=server.endpoint, token="hf_test").hf_hub_download(
                        "tester/tok", "tokenizer_config.json", cache_dir=tmp_path / "cache"
                    )
                ).read()
            )
        assert sent["model_max_length"] == 80 and sent["tokenizer_class"] == "TokenizersBackend"
        assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == int(1e30)
        check_loads_plain(
            "tester/tok",
            tmp_path,
            80,
            env={
                "HF_ENDPOINT": server.endpoint,
                "HF_HUB_OFFLINE": "0",
                "HF_TOKEN": "hf_test",
                "HF_HOME": str(tmp_path / "fresh-hf-home"),
            },
            local=folder,
        )
    finally:
        server.stop()


def test_trained_wordpiece_can_keep_case_and_line_breaks():
    texts = ["register(func)\n\nRegister *func* to run at exit.\n\nunregister(func)\n\nRemove *func*."] * 20
    plain = train_wordpiece_tokenizer(texts, vocab_size=120)
    kept = train_wordpiece_tokenizer(texts, vocab_size=120, lowercase=False, newlines=True)
    text = texts[0]
    assert "¶" not in plain.tokenize(text) and "Register" not in "".join(plain.tokenize(text))
    enc = kept(text, return_offsets_mapping=True, add_special_tokens=False)
    tokens = kept.convert_ids_to_tokens(enc["input_ids"])
    assert tokens.count("¶") == text.count("\n")
    # every piece's offsets point at its own characters: the ¶ tokens at the newlines
    for token, (start, end) in zip(tokens, enc["offset_mapping"]):
        assert text[start:end] == ("\n" if token == "¶" else token.removeprefix("##")), (token, start, end)


def test_tokenizer_options_in_a_recipe_and_their_errors(tmp_path):
    out = tmp_path / "cls"
    train(
        RECIPES / "classification_demo.yaml",
        [*FAST, "--output_dir", str(out), "--tokenizer_lowercase", "false", "--tokenizer_newlines", "true"],
    )
    tok = AutoTokenizer.from_pretrained(out)
    assert (
        tok.backend_tokenizer.normalizer.normalize_str("North\nsouth") == "North ¶ south"
    )  # the saved file keeps both
    with pytest.raises(ValueError, match="tokenizer_newlines=True applies to a tokenizer trained on the fly"):
        train(
            RECIPES / "classification_demo.yaml",
            [
                *FAST,
                "--output_dir",
                str(tmp_path / "x"),
                "--model_name_or_path",
                str(out),
                "--tokenizer_newlines",
                "true",
            ],
        )
    with pytest.raises(ValueError, match="tokenizer_lowercase=True applies to the WordPiece tokenizer"):
        train(
            RECIPES / "summarization_demo.yaml",
            [*FAST, "--output_dir", str(tmp_path / "y"), "--tokenizer_lowercase", "true"],
        )
