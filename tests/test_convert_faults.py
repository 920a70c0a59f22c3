"""Conversion under faults and at its edges: damaged weight files (a ValueError naming the file, exit 2 on
the command line), a conversion killed with SIGKILL while writing (OUT absent, the next run cleans up and
succeeds), options validated once (ConvertOptions), T5's head/init options and drift probe, and a source
object left as it was given."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, T5Config, T5ForConditionalGeneration

from hf_relpos import RelPosT5ForConditionalGeneration, RelPosT5Model
from hf_relpos.cli import main as cli_main
from hf_relpos.convert import ConvertOptions, convert_bert_to_relpos, convert_checkpoint, convert_t5_to_relpos

pytestmark = pytest.mark.usefixtures("one_thread")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
)


def tiny_bert(folder=None):
    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY)).eval()
    if folder is not None:
        model.save_pretrained(folder)
    return model


def tiny_t5(folder=None, tied=True):
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=60,
            d_model=16,
            d_kv=4,
            d_ff=32,
            num_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
            eos_token_id=1,
            pad_token_id=0,
            tie_word_embeddings=tied,
        )
    ).eval()
    if folder is not None:
        model.save_pretrained(folder)
    return model


def debris(parent: Path):
    return sorted(p.name for p in parent.iterdir() if ".converting-" in p.name)


@pytest.mark.parametrize("family", ["bert", "t5"])
def test_damaged_weights_name_the_file(tmp_path, capsys, family):
    src = tmp_path / "src"
    (tiny_bert if family == "bert" else tiny_t5)(src)
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated: header promises more than the file holds
    scheme = "t5"
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable weights file.*damaged"):
        convert_checkpoint(src, tmp_path / "out", scheme, no_tokenizer=True)
    assert not (tmp_path / "out").exists() and not debris(tmp_path)
    capsys.readouterr()
    assert cli_main(["convert", str(src), str(tmp_path / "out"), "--scheme", scheme, "--no-tokenizer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-relpos convert: error: ") and str(weights) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    weights.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="model.safetensors"):
        (convert_bert_to_relpos if family == "bert" else convert_t5_to_relpos)(
            src, **({"scheme": "t5"} if family == "bert" else {})
        )


def test_damaged_shard_index(tmp_path):
    src = tmp_path / "src"
    tiny_bert(src)
    (src / "model.safetensors").rename(src / "model-00001-of-00001.safetensors")
    (src / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.safetensors\.index\.json: not a valid weight index"):
        convert_bert_to_relpos(src, "t5")
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(ValueError, match=r"model-00002-of-00002\.safetensors: missing"):
        convert_bert_to_relpos(src, "t5")


_KILLED_CONVERT = """
import sys, time
from pathlib import Path
from hf_relpos import RelPosBertModel
from hf_relpos.convert import convert_checkpoint

save = RelPosBertModel.save_pretrained

def slow_save(self, folder, **kwargs):  # the weights are written, then the process hangs mid-write
    save(self, folder, **kwargs)
    Path(sys.argv[3]).write_text(str(folder))
    time.sleep(600)

RelPosBertModel.save_pretrained = slow_save
convert_checkpoint(sys.argv[1], sys.argv[2], "t5", no_tokenizer=True)
"""


@pytest.mark.parametrize("out_exists", [False, True], ids=["new_out", "empty_out"])
def test_killed_convert_leaves_no_output_and_rerun_succeeds(tmp_path, out_exists):
    src, out, marker = tmp_path / "src", tmp_path / "out", tmp_path / "saved"
    tiny_bert(src)
    if out_exists:
        out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_CONVERT), str(src), str(out), str(marker)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the conversion never reached its save"
            time.sleep(0.2)
        written = Path(marker.read_text())
        assert (written / "model.safetensors").is_file()  # killed with weights half-way to OUT
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # OUT is absent (or still the empty folder it was): nothing claims to be a finished checkpoint
    assert not out.exists() or not any(out.iterdir())
    assert debris(tmp_path) == [f".out.converting-{proc.pid}"]  # the dead run's folder, beside OUT, named by pid
    info = convert_checkpoint(src, out, "t5", no_tokenizer=True)
    assert info["check"]["max_abs_diff"] <= 1e-5 and (out / "model.safetensors").is_file()
    assert debris(tmp_path) == []  # the next run removed the dead one's folder


def test_temp_folder_of_a_live_process_is_left_alone(tmp_path):
    src = tmp_path / "src"
    tiny_bert(src)
    live = tmp_path / f".out.converting-{os.getppid()}"  # our parent: alive, maybe converting into OUT too
    live.mkdir()
    convert_checkpoint(src, tmp_path / "out", "t5", no_tokenizer=True)
    assert live.is_dir()


def test_options_validated_once():
    ConvertOptions()  # defaults are valid
    cases = [
        (dict(scheme="relative_key"), r"scheme='relative_key' is not valid; choose one of: none"),
        (dict(head="mlm"), r"head='mlm' is not valid; choose one of: auto, base"),
        (dict(init="zeros"), r"init='zeros' is not valid; choose one of: preserve, random"),
        (dict(keep_absolute="yes"), r"keep_absolute='yes' is not valid; choose one of: None, True, False"),
        (dict(exact="no"), r"exact='no' is not valid; choose one of: True, False"),
        (dict(max_position_embeddings=0), r"max_position_embeddings=0 is not valid; choose a positive integer"),
        (dict(max_position_embeddings=True), r"max_position_embeddings=True is not valid"),
        (dict(dtype="float16"), r"dtype='float16' is not valid; choose a torch.dtype"),
        (dict(config_overrides=[1]), r"config_overrides=\[1\] is not valid"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            ConvertOptions(**kwargs)
    options = ConvertOptions.from_kwargs(scheme="alibi", exact=False, alibi_slopes=None, hidden_dropout_prob=0.0)
    assert options.scheme == "alibi" and options.config_overrides == {"alibi_slopes": None, "hidden_dropout_prob": 0.0}


def test_t5_head_init_and_probe(tmp_path):
    src = tmp_path / "t5"
    hf = tiny_t5(src, tied=False)
    info = convert_checkpoint(src, tmp_path / "lm", no_tokenizer=True)
    assert info["model_class"] == "RelPosT5ForConditionalGeneration" and info["exact"]
    assert info["check"]["max_abs_diff"] <= 1e-5  # the drift probe runs for T5 too
    base_info = convert_checkpoint(src, tmp_path / "base", head="base", exact=True, no_tokenizer=True)
    assert base_info["model_class"] == "RelPosT5Model" and base_info["check"]["max_abs_diff"] <= 1e-5
    assert any("lm_head dropped" in note for note in base_info["notes"])
    base = RelPosT5Model.from_pretrained(tmp_path / "base").eval()
    lm = RelPosT5ForConditionalGeneration.from_pretrained(tmp_path / "lm").eval()
    ids, dec = torch.tensor([[5, 6, 7, 8, 1]]), torch.tensor([[0, 9, 10]])
    with torch.no_grad():
        expected = hf(input_ids=ids, decoder_input_ids=dec, output_hidden_states=True)
        assert (lm(input_ids=ids, decoder_input_ids=dec).logits - expected.logits).abs().max() <= 1e-5
        got = base(input_ids=ids, decoder_input_ids=dec).last_hidden_state
        assert (
            got
            - hf.get_decoder()(
                input_ids=dec, encoder_hidden_states=expected.encoder_last_hidden_state
            ).last_hidden_state
        ).abs().max() <= 1e-5
    with pytest.raises(ValueError, match=r"init='random' does not apply to a T5 source.*choose: preserve"):
        convert_checkpoint(src, tmp_path / "x", init="random", no_tokenizer=True)
    with pytest.raises(ValueError, match=r"relative_position_per_layer cannot be overridden when converting a T5"):
        convert_checkpoint(src, tmp_path / "x", no_tokenizer=True, relative_position_per_layer=True)
    assert not (tmp_path / "x").exists()


def test_source_object_and_dtype_kept(tmp_path):
    """The drift probe runs in fp32 but gives every model back in its own dtype: the user's half-precision
    source stays half, and dtype=None writes the source's dtype."""
    hf = tiny_bert().half()
    info = convert_checkpoint(hf, tmp_path / "out", "t5", dtype=None, no_tokenizer=True)
    assert hf.embeddings.word_embeddings.weight.dtype == torch.float16 and not hf.training
    assert info["check"]["max_abs_diff"] <= 1e-2
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "float16"
