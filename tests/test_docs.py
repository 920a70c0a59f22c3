"""The front door and its pages: README.md is short and starts with the two commands; every relative link of
README.md, CHANGELOG.md and docs/*.md resolves; every Python snippet there runs, warning-free (see
tests/snippets.py: ``-W error`` for Python warnings, and no WARNING log record from transformers or hf_relpos).

A snippet that needs files, a network or a real checkpoint is written on a tiny model made in the snippet, or
excluded by the line ``<!-- no-test -->`` right before its fence."""

import re

import pytest
from helpers import PROJECT_ROOT
from snippets import NO_TEST, assert_clean, python_snippets, run_snippets

README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
PAGES = [README, *([PROJECT_ROOT / "CHANGELOG.md"] if (PROJECT_ROOT / "CHANGELOG.md").is_file() else []), *DOCS]
# [text](target), ![alt](target) and [text](target "title"); reference definitions [id]: target
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
CODE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 300, f"README.md has {len(text.splitlines())} lines (at most 300)"
    fences = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    assert fences, "README.md has no code block"
    first = [line.split("#")[0].strip() for line in fences[0].splitlines() if line.split("#")[0].strip()]
    assert first == ["make demo", "make test"], first
    before = text[: text.index("```")]
    assert [line for line in before.splitlines() if line.strip() and not line.startswith("# ")] == [], (
        "the two commands come first, right after the title"
    )


def relative_links(page):
    text = CODE.sub("", page.read_text())  # links inside code blocks are code, not links
    for target in LINK.findall(text) + REFERENCE.findall(text):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        yield target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_relative_links_resolve(page):
    missing = []
    for target in relative_links(page):
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to files that do not exist: {missing}"


def test_every_doc_page_is_linked_from_readme():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    assert not [p.name for p in DOCS if p.resolve() not in linked]


def test_python_snippets_run_warning_free(tmp_path):
    snippets = [
        (f"{page.relative_to(PROJECT_ROOT)} snippet {i + 1}", code)
        for page in [README, *DOCS]
        for i, code in enumerate(python_snippets(page.read_text()))
    ]
    assert any(name.startswith("README.md") for name, _ in snippets), "README's first example must run"
    assert_clean(run_snippets(snippets, tmp_path))


def test_no_test_marker_skips_only_the_next_fence():
    text = f"```python\na = 1\n```\n\n{NO_TEST}\n```python\nraise SystemExit\n```\n```python\nb = 2\n```\n"
    assert python_snippets(text) == ["a = 1\n", "b = 2\n"]


def test_doc_pages_named_in_code_exist():
    """Docstrings, comments and recipes that point at a page of docs/ point at one that exists."""
    sources = [
        *(PROJECT_ROOT / "hf_relpos").rglob("*.py"),
        *(PROJECT_ROOT / "tests").glob("*.py"),
        *(PROJECT_ROOT / "recipes").glob("*.yaml"),
        PROJECT_ROOT / "Makefile",
        PROJECT_ROOT / "pyproject.toml",
    ]
    named = {
        (path.name, ref)
        for path in sources
        if path.is_file()
        for ref in re.findall(r"\bdocs/[\w.-]+\.md\b", path.read_text(errors="replace"))
    }
    assert named, "no source names a docs page (the check would prove nothing)"
    assert not [(name, ref) for name, ref in named if not (PROJECT_ROOT / ref).is_file()]
    assert not [p.name for p in sources if p.is_file() and re.search(r"\bSCHEMES\.md\b", p.read_text(errors="replace"))]
