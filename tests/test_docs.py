"""The documentation stays inside the repository (docs/DESIGN.md, README's documents table).

Every relative link in README.md, docs/*.md and the other READMEs resolves to a file of the
repository (and, with a ``#fragment``, to a heading of that file): the same relative links work
in a clone and in the installed documentation (/usr/share/doc/polres-station keeps README.md
beside docs/). Every ``docs/<name>.md §N`` cited anywhere names an existing document and section.
No file points outside the repository: no ``../shared`` path, no citation of a contract
document the repository does not hold.
"""
from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"build", "dist", "__pycache__", "node_modules"}
TEXT_SUFFIXES = {"", ".py", ".md", ".yaml", ".yml", ".json", ".txt", ".sh", ".cfg", ".ini",
                 ".toml", ".conf", ".service", ".example", ".html", ".js", ".css", ".in"}

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
SECTION_NUMBER = re.compile(r"^(\d+(?:\.\d+)*)\.?\s")
CITATION = re.compile(r"docs/([A-Za-z-]+\.md)(?:\s*§\s*(\d+(?:\.\d+)*))?")
# Documents another piece of work is writing: cited already, and checked like every other once
# they exist. Empty this set when they have landed.
PENDING: set[str] = set()
# Built from parts so that this file does not match itself.
OUTSIDE = [
    (re.compile(r"\.\./" + "shared"), "a path to ../shared, outside the repository"),
    (re.compile(r"/work/" + "shared"), "a path to the lead's shared folder"),
    (re.compile(r"\b" + "SPEC" + r"(?:\.md|\s*§|\b)"), "a citation of a contract document the "
     "repository does not hold (cite docs/INTERFACE.md or docs/BEHAVIOUR.md)"),
    (re.compile("FIELD" + r"-NOTES"), "a citation of field notes outside the repository "
     "(cite docs/FIELD-GUIDE.md §N)"),
]


def markdown_files() -> list[Path]:
    """README.md, docs/*.md and every README.md below config/, firmware/, bench/, systemd/,
    packaging/ and debian/."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for top in ("config", "firmware", "bench", "systemd", "packaging", "debian"):
        found += sorted((ROOT / top).rglob("README.md")) if (ROOT / top).is_dir() else []
    return found


def repository_files() -> list[Path]:
    """Every text file of the working tree, without hidden directories (.git, .venv, caches)
    and build output."""
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part.startswith(".") or part in SKIP_DIRS or part.endswith(".egg-info")
               for part in rel.parts[:-1]):
            continue
        if path.is_file() and path.suffix in TEXT_SUFFIXES and not path.name.startswith("."):
            out.append(path)
    return out


def slug(heading: str) -> str:
    """The anchor GitHub (and most renderers) give a heading."""
    text = CODE_SPAN.sub(lambda m: m.group(0)[1:-1], heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)        # a link keeps its text
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(text):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def sections(doc: Path) -> set[str]:
    """The numbers of a document's numbered headings: ``## 4. Events`` → ``4``."""
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    return {m.group(1) for _, title in HEADING.findall(text)
            if (m := SECTION_NUMBER.match(title))}


def links(doc: Path) -> list[str]:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    text = CODE_SPAN.sub("", text)
    return [a or b for a, b in LINK.findall(text)]


def broken_links(doc: Path) -> list[str]:
    problems = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        try:
            dest.relative_to(ROOT)
        except ValueError:
            problems.append(f"{target}: leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{fragment} in {dest.relative_to(ROOT)}")
    return problems


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    assert broken_links(doc) == []


def test_the_documents_readme_promises_exist() -> None:
    for name in ("INTERFACE.md", "DESIGN.md", "BEHAVIOUR.md", "CLI.md", "FIELD-GUIDE.md",
                 "SIGNING.md", "asyncapi.yaml"):
        assert (ROOT / "docs" / name).is_file(), name


def test_no_reference_leaves_the_repository() -> None:
    problems = []
    for path in repository_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, why in OUTSIDE:
                if pattern.search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: {why}: {line.strip()}")
    assert problems == []


def test_every_docs_citation_names_a_document_and_section() -> None:
    """``docs/INTERFACE.md §4`` in a comment must name a file of docs/ with a section 4."""
    problems = []
    known = {p.name: sections(p) for p in (ROOT / "docs").glob("*.md")}
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for name, section in CITATION.findall(line):
                where = f"{path.relative_to(ROOT)}:{number}"
                if name not in known:
                    if name not in PENDING:
                        problems.append(f"{where}: docs/{name} does not exist")
                elif section and section not in known[name]:
                    problems.append(f"{where}: docs/{name} has no section {section}")
    assert problems == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The link checker sees a broken file link, a broken anchor and a link out of the tree."""
    doc = tmp_path / "x.md"
    doc.write_text("# One two\n[a](missing.md) [b](#one-two) [c](#nope) [d](https://x.y)\n")
    assert anchors(doc) == {"one-two"}
    assert [link for link in links(doc)] == ["missing.md", "#one-two", "#nope", "https://x.y"]
    assert slug("4. Events (station → HQ)") == "4-events-station--hq"
    assert slug("`run` and `stop`") == "run-and-stop"
    assert sections(ROOT / "docs" / "INTERFACE.md") >= {"1", "4", "8"}
    assert any(p.search("see ../" + "shared/x") for p, _ in OUTSIDE)
    assert any(p.search("as " + "SPEC §2 says") for p, _ in OUTSIDE)
    assert any(p.search("FIELD" + "-NOTES says") for p, _ in OUTSIDE)
    assert any(p.search("docs/FIELD" + "-NOTES.md §1") for p, _ in OUTSIDE)
    assert not any(p.search("docs/FIELD-GUIDE.md §1; SPEC_KEYS") for p, _ in OUTSIDE)


def modules() -> list[str]:
    """Every module of the package, as ``desk/web/core`` (``__init__`` and the generated
    ``_version`` aside)."""
    package = ROOT / "station"
    return sorted(str(p.relative_to(package).with_suffix("")) for p in package.rglob("*.py")
                  if p.stem not in ("__init__", "_version") and "__pycache__" not in p.parts)


@pytest.mark.parametrize("doc", ["README.md", "docs/DESIGN.md"])
def test_the_code_map_names_every_module(doc: str) -> None:
    """README's code map and DESIGN's module tables name every module by its file or module
    name (``core.py`` or ``core``, in backquotes)."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_./]*)`", text))
    missing = [m for m in modules()
               if not {m.rsplit("/", 1)[-1], m.rsplit("/", 1)[-1] + ".py", m, m + ".py",
                       f"station/{m}.py"} & named]
    assert missing == []


def test_cli_md_lists_every_subcommand_and_exit_code() -> None:
    from station.cli import COMMANDS, PLUGIN_COMMANDS
    from station.terminal import Exit
    text = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z-]+)` \|", text, re.M))
    assert set(COMMANDS) | set(PLUGIN_COMMANDS) <= rows
    codes = dict(re.findall(r"^\| (\d+) \| `([A-Z]+)` \|", text, re.M))
    assert codes == {str(int(e)): e.name for e in Exit}


def test_design_names_only_what_exists() -> None:
    """Every ``module.Name`` DESIGN.md cites (``outbox.GROUP_MAX``, ``store.SeenIds``) exists."""
    import importlib
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    known = {m.replace("/", ".") for m in modules()}
    missing = []
    for module, name in set(re.findall(r"\b([a-z_]+)\.([A-Z][A-Za-z0-9_]*)\b", text)):
        if module in known and not hasattr(importlib.import_module(f"station.{module}"), name):
            missing.append(f"{module}.{name}")
    assert sorted(missing) == []


def _shipped_by_package() -> list[str]:
    import ast
    text = (ROOT / "packaging" / "build_deb.py").read_text(encoding="utf-8")
    match = re.search(r"^DOCS = (\[.*?\])", text, re.S | re.M)
    assert match, "packaging/build_deb.py: no DOCS list"
    return list(ast.literal_eval(match.group(1)))


def _shipped_by_installer() -> list[str]:
    text = (ROOT / "systemd" / "install.sh").read_text(encoding="utf-8")
    match = re.search(r"for doc in (.*?); do", text, re.S)
    assert match, "systemd/install.sh: no document loop"
    return match.group(1).replace("\\\n", " ").split()


@pytest.mark.parametrize("shipped", [_shipped_by_package, _shipped_by_installer],
                         ids=["deb", "install.sh"])
def test_installed_documents_keep_their_links(shipped: Any) -> None:
    """The documents the package and the installer put under /usr/share/doc/polres-station
    (at their repository paths) link only to documents installed with them."""
    files = {p.relative_to(ROOT) for pattern in shipped() for p in ROOT.glob(pattern)
             if p.is_file()}
    assert Path("README.md") in files and Path("docs/INTERFACE.md") in files
    broken = []
    for rel in sorted(f for f in files if f.suffix == ".md"):
        for target in links(ROOT / rel):
            path = target.partition("#")[0]
            if not path or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            dest = Path(os.path.normpath(rel.parent / path))
            if dest not in files and not any(f.is_relative_to(dest) for f in files):
                broken.append(f"{rel} → {target}")
    assert broken == []
