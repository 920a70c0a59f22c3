"""A misspelt config field warns once, naming the closest known field; other extra keys stay silent."""

import json

import pytest
from transformers.utils import logging

from hf_relpos import RelPosBertConfig, RelPosT5Config, scheme_config


@pytest.fixture
def warnings_seen(monkeypatch):
    seen = []
    monkeypatch.setattr(scheme_config, "_WARNED_FIELDS", set())
    for name in ("hf_relpos.configuration_relpos_bert", "hf_relpos.configuration_relpos_t5"):
        monkeypatch.setattr(logging.get_logger(name), "warning", lambda msg, *a, **k: seen.append(msg))
    return seen


@pytest.mark.parametrize(
    "cls,typo,field",
    [
        (RelPosBertConfig, "relative_positon", "relative_position"),
        (RelPosBertConfig, "absolute_postion", "absolute_position"),
        (RelPosBertConfig, "max_relative_postion", "max_relative_position"),
        (RelPosT5Config, "decoder_relative_positon", "decoder_relative_position"),
        (RelPosT5Config, "num_decoder_layer", "num_decoder_layers"),
    ],
)
def test_near_miss_warns_once_naming_the_field(warnings_seen, cls, typo, field):
    config = cls(**{typo: "alibi" if "position" in field and "max" not in field else 3})
    assert len(warnings_seen) == 1 and f"did you mean {field!r}" in warnings_seen[0] and typo in warnings_seen[0]
    assert getattr(config, typo) is not None  # HF keeps the extra key
    cls(**{typo: 3 if "max" in field or "layer" in field else "alibi"})
    assert len(warnings_seen) == 1  # once per key


def test_far_keys_and_saved_configs_stay_silent(warnings_seen, tmp_path):
    RelPosBertConfig(my_project_note="x", some_flag=True)
    RelPosT5Config(foo_bar=1)
    assert warnings_seen == []
    config = RelPosBertConfig(relative_position="alibi", num_labels=3)
    config.save_pretrained(tmp_path)
    RelPosBertConfig.from_pretrained(tmp_path)
    RelPosT5Config().save_pretrained(tmp_path / "t5")
    RelPosT5Config.from_pretrained(tmp_path / "t5")
    assert warnings_seen == [], warnings_seen
    saved = json.loads((tmp_path / "config.json").read_text())
    assert RelPosBertConfig(**saved).relative_position == "alibi" and warnings_seen == []


def test_saved_checkpoints_load_silently(warnings_seen):
    from pathlib import Path

    from transformers import AutoConfig

    fixtures = Path(__file__).parent / "fixtures"
    for folder in sorted(fixtures.glob("v0_1/*/")) + sorted(fixtures.glob("legacy*/")):
        AutoConfig.from_pretrained(folder)
    assert warnings_seen == []
