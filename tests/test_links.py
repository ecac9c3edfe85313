"""Every relative link and image in README.md, docs/*.md and the committed reports points at a file
that exists; links into README.md and docs/*.md name a heading that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REPORTS = sorted((ROOT / "results").glob("**/REPORT.md"))
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _unfenced(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _prose(text: str) -> str:
    """The text less fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text())) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; underscores stay
    (``jax_multiseed.py`` in a heading gives ``jax_multiseedpy``), as do those of ``_emphasis_``, which no
    heading here uses."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, seen = set(), {}
    for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _unfenced(path.read_text()), re.M):
        s = slug(h)
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken(path: Path, *, check_anchors: bool, docs: list[Path] = DOCS) -> list[str]:
    """What ``path`` links to that is not there: a file, or (into ``docs``) a heading."""
    bad = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and check_anchors and dest.suffix == ".md" and dest in docs and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_docs_links_point_at_files_and_headings(path):
    assert not broken(path, check_anchors=True)


@pytest.mark.parametrize("path", REPORTS, ids=[str(p.relative_to(ROOT)) for p in REPORTS])
def test_report_links_and_images_point_at_files(path):
    assert links(path), "a report without a single link or figure"
    assert not broken(path, check_anchors=False)


def test_the_link_check_fails_on_a_missing_file_or_heading(tmp_path):
    page = (tmp_path / "page.md").resolve()
    (tmp_path / "there.png").write_bytes(b"png")
    page.write_text("# A title, with `code`\n\n![fig](there.png) [ok](#a-title-with-code) "
                    "[gone](missing.png) ![gone too](sub/none.png) [web](https://example.org/x.png)\n"
                    "```\n[not a link](nowhere.md)\n```\n[bad anchor](#no-such-heading)\n")
    assert broken(page, check_anchors=True, docs=[page]) == [
        "missing.png: no such file", "sub/none.png: no such file",
        "#no-such-heading: no heading #no-such-heading in page.md"]
