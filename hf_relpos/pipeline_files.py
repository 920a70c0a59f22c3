"""What a saved checkpoint folder carries for ``transformers.pipeline``: one place for recipe outputs
(``hf-relpos train``), ``hf-relpos convert`` outputs and pushed repositories (``hf-relpos push``).

A question-answering head gets the ``question-answering`` pipeline, a ``relpos_t5`` generation head the
``summarization`` and ``text2text-generation`` pipelines (transformers 5.24 / 5.25 have none of them):
``config.json``'s ``custom_pipelines`` names the classes of :mod:`hf_relpos.pipelines_relpos`, and that file
is copied into the folder as remote code, so ``pipeline(task, model=FOLDER, trust_remote_code=True)`` works
where hf_relpos is not installed. Other heads need nothing: transformers' own ``fill-mask``,
``text-classification``, ``token-classification`` and ``feature-extraction`` pipelines run them.

Imports nothing from hf_relpos (the training, convert and hub modules import this one).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

PIPELINE_MODULE = "pipelines_relpos"
PIPELINE_FILE = f"{PIPELINE_MODULE}.py"
SOURCE = Path(__file__).with_name(PIPELINE_FILE)
QA_PARAMETERS = (
    "max_seq_len",
    "doc_stride",
    "max_answer_len",
    "n_best_size",
    "handle_impossible_answer",
    "null_score_diff_threshold",
)
SEQ2SEQ_PARAMETERS = ("source_prefix", "max_source_length")


def pipelines_for(config: dict, parameters: dict | None = None) -> dict:
    """The ``custom_pipelines`` entry a checkpoint with config.json ``config`` (a dict) should carry: {} when
    transformers' built-in pipelines cover its heads. ``parameters``: the question-answering settings its
    training used (QA: keys of ``QA_PARAMETERS``; seq2seq: ``SEQ2SEQ_PARAMETERS``, the evaluated input prefix and
    length), kept as the pipeline's and ``hf-relpos predict``'s defaults."""
    architectures = config.get("architectures") or []

    def entry(task, cls, auto_class, keys):
        made = {"impl": f"{PIPELINE_MODULE}.{cls}", "pt": [auto_class], "type": "text"}
        saved = ((config.get("custom_pipelines") or {}).get(task) or {}).get("parameters") or {}
        merged = {**saved, **{k: v for k, v in (parameters or {}).items() if k in keys and v is not None}}
        if merged:
            made["parameters"] = merged
        return made

    out = {}
    if any(a.endswith("ForQuestionAnswering") for a in architectures):
        out["question-answering"] = entry(
            "question-answering", "RelPosQuestionAnsweringPipeline", "AutoModelForQuestionAnswering", QA_PARAMETERS
        )
    if any(a.endswith("ForConditionalGeneration") for a in architectures):
        for task, cls in (
            ("summarization", "RelPosSummarizationPipeline"),
            ("text2text-generation", "RelPosText2TextPipeline"),
        ):
            out[task] = entry(task, cls, "AutoModelForSeq2SeqLM", SEQ2SEQ_PARAMETERS)
    return out


def config_with_pipelines(config: dict, parameters: dict | None = None) -> dict:
    """``config`` (config.json's dict) with its ``custom_pipelines`` settled (a new dict)."""
    out = dict(config)
    pipelines = pipelines_for(config, parameters)
    if pipelines:
        out["custom_pipelines"] = {**(config.get("custom_pipelines") or {}), **pipelines}
    return out


def dump_config(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"  # as transformers writes config.json


def add_pipelines(folder, parameters: dict | None = None) -> list[str]:
    """Give the checkpoint ``folder`` its pipelines (see the module docstring): ``custom_pipelines`` in
    config.json and the pipeline code file. Returns the pipeline tasks it carries."""
    folder = Path(folder)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    new = config_with_pipelines(config, parameters)
    if "custom_pipelines" not in new:
        return []
    shutil.copyfile(SOURCE, folder / PIPELINE_FILE)
    if new != config:
        path.write_text(dump_config(new))
    return sorted(new["custom_pipelines"])


__all__ = ["PIPELINE_FILE", "add_pipelines", "config_with_pipelines", "pipelines_for"]
