"""Share a checkpoint folder on the Hugging Face Hub: `hf-relpos push` and `--push_to_hub` in recipes.

What goes up: the safetensors weights (single file or sharded with its index), config.json (with its
``auto_map``) and generation_config.json, the modeling code files named in ``auto_map`` with the files
they import, the pipeline code of a question-answering or seq2seq head (``custom_pipelines``; see
hf_relpos.pipeline_files), tokenizer files, result JSON files, and the model card README.md. Nothing else: pickle
files (pytorch_model.bin, training_args.bin, optimizer/scheduler states), ``checkpoint-N`` folders and
logs stay local. A folder that lacks config.json, the weights or a code file fails with a ValueError
naming what is missing, before anything is sent.

The card's load lines always name the repository pushed to: a README.md in the folder has its
``from_pretrained("...", trust_remote_code=True)`` lines rewritten; without one, a card is rendered from
metrics.json (task results) or from the base template (model_cards/base.md).

The upload is huggingface_hub's own protocol: ``HfApi.create_repo`` → (``create_branch``) →
``create_commit``. ``HF_ENDPOINT`` is read when the push runs, so a mirror or a test server set after
import is honoured.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .pipeline_files import PIPELINE_FILE, config_with_pipelines, dump_config
from .pipeline_files import SOURCE as PIPELINE_SOURCE
from .tokenization import TOKENIZER_CONFIG, finalized_tokenizer_config

logger = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)
RESULT_FILES = ("metrics.json", "all_results.json", "eval_results.json", "train_results.json")
CARD = "README.md"
INCOMPLETE_MARKER = "TRAINING_INCOMPLETE"  # written by `hf-relpos train` while a run's output folder is not final
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.joblib")
_RELATIVE_IMPORT = re.compile(r"^\s*(?:from\s+\.(\S+)\s+import|import\s+\.(\S+)\s*$)", re.MULTILINE)
_LOAD_LINE = re.compile(r"""(from_pretrained\(\s*)(["'])([^"'\n]*)\2(?=[^)]*trust_remote_code\s*=\s*True)""")


@dataclass
class UploadPlan:
    """What a push of ``folder`` sends (path in repo -> local file) and what it leaves out (path -> why)."""

    folder: Path
    config: dict
    files: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    has_tokenizer: bool = False


def _code_modules(auto_map) -> set[str]:
    """Module names (file stems) referenced by an ``auto_map``: "module.Class", lists for tokenizers;
    "other/repo--module.Class" points at another repository's code and needs no local file."""
    modules = set()
    for value in (auto_map or {}).values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(ref, str) and "--" not in ref and "." in ref:
                modules.add(ref.rsplit(".", 1)[0])
    return modules


def _code_files(folder: Path, modules: set[str], missing: list[str]) -> set[str]:
    """The code files for ``modules`` and, recursively, the files they import relatively (what
    transformers' dynamic module loader fetches). Absent files are added to ``missing``."""
    found, absent, todo = set(), set(), sorted(modules)
    while todo:
        name = f"{todo.pop()}.py"
        if name in found or name in absent:
            continue
        path = folder / name
        if not path.is_file():
            absent.add(name)
            missing.append(f"{name} (modeling code named in auto_map or imported by it)")
            continue
        found.add(name)
        for a, b in _RELATIVE_IMPORT.findall(path.read_text(encoding="utf-8")):
            todo.append((a or b).strip())
    return found


def plan_upload(folder) -> UploadPlan:
    """Check ``folder`` and list what a push sends. Raises ValueError naming everything missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"cannot push {str(folder)!r}: it is not a folder")
    if (folder / INCOMPLETE_MARKER).exists():
        raise ValueError(
            f"cannot push {str(folder)!r}: it holds an unfinished training run ({INCOMPLETE_MARKER}); "
            "resume or rerun it first. Nothing was uploaded."
        )
    missing: list[str] = []
    config: dict = {}
    config_path = folder / "config.json"
    if not config_path.is_file():
        missing.append("config.json (the model config)")
    else:
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot push {str(folder)!r}: config.json is not valid JSON ({err})") from None
        if not config.get("auto_map"):
            missing.append(
                "auto_map in config.json (save the model with hf_relpos imported so the checkpoint "
                "carries its code and loads with trust_remote_code=True)"
            )

    files: dict[str, Path] = {}
    # weights: safetensors only
    if (folder / WEIGHTS).is_file():
        files[WEIGHTS] = folder / WEIGHTS
    elif (folder / WEIGHTS_INDEX).is_file():
        try:
            shards = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as err:
            raise ValueError(f"cannot push {str(folder)!r}: {WEIGHTS_INDEX} has no valid weight_map ({err})") from None
        files[WEIGHTS_INDEX] = folder / WEIGHTS_INDEX
        for shard in shards:
            if (folder / shard).is_file():
                files[shard] = folder / shard
            else:
                missing.append(f"{shard} (a weight shard listed in {WEIGHTS_INDEX})")
    else:
        pickles = [p.name for p in folder.glob("pytorch_model*.bin")]
        hint = (
            (
                f"; {', '.join(sorted(pickles))} is a pickle file and is never uploaded: re-save the model with "
                "save_pretrained (safetensors is the default)"
            )
            if pickles
            else ""
        )
        missing.append(f"{WEIGHTS} or {WEIGHTS_INDEX} (the weights){hint}")

    for name in CONFIG_FILES:
        if (folder / name).is_file():
            files[name] = folder / name

    modules = _code_modules(config.get("auto_map"))
    tokenizer_config = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot push {str(folder)!r}: tokenizer_config.json is not valid JSON ({err})") from None
        modules |= _code_modules(tokenizer_config.get("auto_map"))
    for name in sorted(_code_files(folder, modules, missing)):
        files[name] = folder / name
    if config and "custom_pipelines" in config_with_pipelines(config):  # QA / seq2seq pipelines as remote code
        files[PIPELINE_FILE] = folder / PIPELINE_FILE if (folder / PIPELINE_FILE).is_file() else PIPELINE_SOURCE

    if missing:
        raise ValueError(f"cannot push {str(folder)!r}: missing " + "; ".join(missing) + ". Nothing was uploaded.")

    tokenizer = [name for name in TOKENIZER_FILES if (folder / name).is_file()]
    for name in tokenizer + [n for n in RESULT_FILES if (folder / n).is_file()]:
        files[name] = folder / name
    if not tokenizer:
        logger.warning("%s has no tokenizer files: users will need the tokenizer from elsewhere", folder)

    plan = UploadPlan(folder=folder, config=config, files=files, has_tokenizer=bool(tokenizer))
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name in files or name == CARD:
            continue
        if entry.is_dir():
            plan.skipped[name + "/"] = (
                "intermediate Trainer checkpoint"
                if re.fullmatch(r"checkpoint-\d+", name)
                else "folders are not part of a shared checkpoint"
            )
        elif any(fnmatch.fnmatch(name, p) for p in PICKLE_PATTERNS):
            plan.skipped[name] = "pickle file (unsafe to load; the weights go up as safetensors)"
        else:
            plan.skipped[name] = "not part of a shared checkpoint"
    return plan


def card_tags(config: dict) -> list[str]:
    """The tags every pushed card carries (the Hub shows `custom_code` as "needs trust_remote_code")."""
    return [
        "hf_relpos",
        "relative-position",
        str(config.get("relative_position", "none")),
        "custom_code",
        str(config.get("model_type", "relpos")),
    ]


def rewrite_card(text: str, repo_id: str, config: dict | None = None) -> str:
    """Point the card's ``from_pretrained("...", trust_remote_code=True)`` lines and its model-index name
    at ``repo_id``; append a "How to use" section when the card has no such line; make sure the metadata
    has ``library_name`` and the hf_relpos tags."""
    from huggingface_hub import ModelCard

    new, count = _LOAD_LINE.subn(lambda m: f"{m.group(1)}{m.group(2)}{repo_id}{m.group(2)}", text)
    if count == 0:
        new = new.rstrip("\n") + (
            "\n\n## How to use\n\nThe repository carries its modeling code:\n\n```python\n"
            "from transformers import AutoModel\n\n"
            f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)\n```\n'
        )
    card = ModelCard(new, ignore_metadata_errors=False)
    card.data.library_name = card.data.library_name or "transformers"
    tags = list(card.data.tags or [])
    card.data.tags = tags + [t for t in card_tags(config or {}) if t not in tags]
    name = repo_id.rsplit("/", 1)[-1]
    old_name = card.data.model_name
    if card.data.eval_results and old_name != name:
        card.data.model_name = name
        if old_name:
            card.text = re.sub(rf"^# {re.escape(old_name)}[ \t]*$", f"# {name}", card.text, count=1, flags=re.MULTILINE)
    return str(card)


def card_for_push(plan: UploadPlan, repo_id: str) -> str:
    """The README.md to upload: the folder's own card pointed at ``repo_id``, else one rendered from
    metrics.json (task card) or from config.json alone (base card)."""
    from .cards import build_base_card, card_from_metrics

    readme = plan.folder / CARD
    if readme.is_file():
        return rewrite_card(readme.read_text(encoding="utf-8"), repo_id, plan.config)
    card = card_from_metrics(plan.config, _read_metrics(plan.folder), repo_id)
    if card is None:
        card = build_base_card(plan.config, repo_id=repo_id, has_tokenizer=plan.has_tokenizer)
    return str(card)


def check_repo_id(repo_id) -> str:
    """Validate a repository id ('namespace/name', or a bare name under the token's user). ValueError if bad."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id or not isinstance(repo_id, str):
        raise ValueError(f"repo_id={repo_id!r} is not valid; use 'namespace/name' (e.g. 'your-user/my-model')")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"repo_id={repo_id!r} is not valid; use 'namespace/name' ({err})") from None
    return repo_id


def push_to_hub(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
) -> dict:
    """Upload the checkpoint in ``folder`` to ``repo_id`` (created if needed; ``private`` applies to a new
    repository). ``revision``: a branch, created from main if absent. Returns what was sent and skipped,
    and the commit URL. Raises ValueError (before any network call) for an incomplete folder or a bad id."""
    plan = plan_upload(folder)
    check_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise ValueError(f"revision={revision!r} is not valid; give a branch name or leave it out for main")
    result = {
        "repo_id": repo_id,
        "revision": revision or "main",
        "files": sorted([*plan.files, CARD]),
        "skipped": plan.skipped,
    }
    if dry_run:
        result["card"] = card_for_push(plan, repo_id)
        return result

    from huggingface_hub import HfApi, constants

    if constants.is_offline_mode():
        raise ValueError("cannot push: HF_HUB_OFFLINE is set (offline mode); unset it to reach the Hub")
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/") or constants.ENDPOINT
    try:
        return _push(
            plan,
            api=HfApi(endpoint=endpoint, token=token),
            repo_id=repo_id,
            result=result,
            private=private,
            revision=revision,
            commit_message=commit_message,
            commit_description=commit_description,
        )
    except Exception as err:
        if not _is_connection_error(err):
            raise
        raise HubConnectionError(
            f"cannot reach the Hub at {endpoint} (HF_ENDPOINT): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no answer'}; the push did not complete: check "
            "the address and the network, then push again"
        ) from err


class HubConnectionError(ValueError):
    """The Hub endpoint could not be reached (refused, DNS, timeout): a user-facing error, not a bug."""


_TRANSPORT_ERRORS = {
    "TransportError",
    "NetworkError",
    "TimeoutException",
    "ConnectError",
    "ConnectTimeout",
    "ProxyError",
    "SSLError",
}


def _is_connection_error(err: BaseException) -> bool:
    """A failure to reach the endpoint (refused, DNS, timeout, proxy, TLS), whatever HTTP client
    huggingface_hub uses (httpx, its forks, or requests): matched by the exception classes' names."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _TRANSPORT_ERRORS or cls.__name__ == "ConnectionError" for cls in type(err).__mro__)


def _read_metrics(folder: Path) -> dict:
    """The folder's metrics.json, or {} when it is absent or not valid JSON (a card is still built)."""
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _upload_content(plan: UploadPlan, name: str, path: Path):
    """What goes up for ``name``: the file, except tokenizer_config.json, sent with ``model_max_length`` and
    ``tokenizer_class`` settled (hf_relpos.tokenization), and config.json, sent with the ``custom_pipelines`` of
    its heads (hf_relpos.pipeline_files; a folder saved before they existed). The local folder is left as it is."""
    if name == "config.json":
        config = config_with_pipelines(plan.config)
        return str(path) if config == plan.config else dump_config(config).encode("utf-8")
    if name != TOKENIZER_CONFIG:
        return str(path)
    metrics = _read_metrics(plan.folder)
    trained = metrics.get("max_seq_length") if isinstance(metrics, dict) else None
    data = finalized_tokenizer_config(
        json.loads(path.read_text()),
        plan.config,
        trained_length=trained if isinstance(trained, int) else None,
        keep_set_length=True,
        has_tokenizer_json=(plan.folder / "tokenizer.json").is_file(),
    )
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _push(plan, *, api, repo_id, result, private, revision, commit_message, commit_description) -> dict:
    from huggingface_hub import CommitOperationAdd, constants

    if "/" not in repo_id:  # a bare name lives under the token's user, as with Trainer's hub_model_id
        repo_id = f"{api.whoami()['name']}/{repo_id}"
    card = card_for_push(plan, repo_id)

    repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
    repo_id = getattr(repo_url, "repo_id", None) or repo_id
    if revision and revision != constants.DEFAULT_REVISION:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=_upload_content(plan, name, path))
        for name, path in sorted(plan.files.items())
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode("utf-8")))
    scheme = plan.config.get("relative_position", "?")
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload {plan.config.get('model_type', 'model')} ({scheme}) with hf-relpos",
        commit_description=commit_description,
        revision=revision,
    )
    if plan.skipped:
        logger.info("not uploaded from %s: %s", plan.folder, ", ".join(plan.skipped))
    result.update(repo_id=repo_id, url=str(repo_url), commit_url=info.commit_url, commit_oid=info.oid)
    return result
