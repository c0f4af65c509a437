"""The docs stand on their own: nothing points outside the repository, every `docs/design.md §N`
names a section that exists, and every relative Markdown link resolves. No Ray, no models."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
SCANNED = ("diversens/", "tests/", "benchmarks/", "ray_jobs/", "configs/", "docs/", "README.md")
# Committed run records (`diversens report --artifacts` copies, consoles, summaries) keep the
# absolute paths of the machine that made them: data about a run, not references for a reader.
RECORDS = re.compile(r"^docs/results/[^/]+/")
# The original spec lived outside the repository (../shared/DESIGN.md); so do /work/ paths.
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared|/work/")
REFERENCE = re.compile(r"docs/design\.md\s+§\d+(?:\s*,\s*§\d+)*")
HEADING = re.compile(r"^## (\d+)\. \S", re.M)
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "out",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
}


def repo_files() -> list[str]:
    """Files of the checkout, relative and POSIX: tracked plus untracked-but-not-ignored (git),
    else every file outside caches, virtual environments and run outputs."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()  # fmt: skip
        files = sorted({f for f in listed.split("\0") if f and (ROOT / f).is_file()})
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*")
        if p.is_file()
        and not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in p.parts)
    )


def text_of(rel: str) -> str | None:
    """A file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = (ROOT / rel).read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scanned_texts() -> dict[str, str]:
    files = [f for f in repo_files() if f.startswith(SCANNED) and f != THIS]
    texts = {f: text_of(f) for f in files if not RECORDS.match(f)}
    return {f: t for f, t in texts.items() if t is not None}


def sections() -> list[int]:
    return [int(n) for n in HEADING.findall(DESIGN.read_text(encoding="utf-8"))]


def test_scanned_files_are_found():
    texts = scanned_texts()
    assert "README.md" in texts and "diversens/schema.py" in texts
    assert "docs/design.md" in texts


def test_nothing_refers_to_files_outside_the_repository():
    hits = [
        f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for path, text in scanned_texts().items()
        for m in OUTSIDE.finditer(text)
    ]
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_design_sections_are_numbered_in_order():
    numbers = sections()
    assert numbers, f"{DESIGN}: no '## N. Title' headings"
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_every_design_reference_names_an_existing_section():
    known = set(sections())
    refs, broken = 0, []
    for path, text in scanned_texts().items():
        for m in REFERENCE.finditer(text):
            for n in map(int, re.findall(r"§(\d+)", m.group(0))):
                refs += 1
                if n not in known:
                    line = text.count("\n", 0, m.start()) + 1
                    broken.append(f"{path}:{line}: {m.group(0)!r}")
    assert refs > 0, "no `docs/design.md §N` reference found: the pattern no longer matches"
    assert not broken, f"sections that docs/design.md lacks (has 1-{max(known)}):\n" + "\n".join(
        broken
    )


def test_design_cross_references_name_existing_sections():
    """Inside docs/design.md a bare §N points into the page itself."""
    text = DESIGN.read_text(encoding="utf-8")
    cited = {int(n) for n in re.findall(r"§(\d+)", text)}
    assert cited, "docs/design.md cites none of its sections"
    assert cited <= set(sections()), sorted(cited - set(sections()))


def markdown_files() -> list[str]:
    """README.md and the Markdown under docs/, run records aside (the pilot's selection report,
    kept without its scored data, links plots that were never committed)."""
    return [
        f
        for f in repo_files()
        if f == "README.md"
        or (f.startswith("docs/") and f.endswith(".md") and not RECORDS.match(f))
    ]


def link_target_exists(source: str, target: str, files: set[str]) -> bool:
    """A relative link from `source` resolves to a file of the checkout, or to a folder holding
    one; the #anchor is not checked."""
    path = unquote(target.split("#", 1)[0])
    if not path:
        return True  # an anchor in the same page
    resolved = ((ROOT / source).parent / path).resolve()
    try:
        rel = resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return False  # outside the repository
    return rel in files or any(f.startswith(rel.rstrip("/") + "/") for f in files)


def test_relative_markdown_links_resolve():
    files = set(repo_files())
    checked, broken = 0, []
    for source in markdown_files():
        text = FENCE.sub("", (ROOT / source).read_text(encoding="utf-8"))
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
                continue
            checked += 1
            if not link_target_exists(source, target, files):
                line = text.count("\n", 0, m.start()) + 1
                broken.append(f"{source}:{line}: {target}")
    assert checked > 0, "no relative link found in README.md or docs/"
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_link_check_catches_a_missing_file():
    files = set(repo_files())
    assert link_target_exists("README.md", "docs/design.md#3-stages-and-configuration", files)
    assert link_target_exists("docs/results.md", "../configs/study.yaml", files)
    assert not link_target_exists("README.md", "docs/no-such-page.md", files)
    assert not link_target_exists("README.md", "../outside.md", files)
