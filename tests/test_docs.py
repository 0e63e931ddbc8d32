"""The documentation: the site builds in strict mode (no broken link, no page left out of
the navigation), the README leads to every page, no page is too long to read, and the
generated parts (the error-code catalog; the configuration table is tests/test_settings.py's)
are what the code says."""

from __future__ import annotations

import re
import subprocess
import sys

from facestream.error_codes import ERROR_CODES, catalog_table
from tests.commands import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
MAX_PAGE_LINES = 400
# An error code as the code writes it: a quoted "family.name" of these families.
CODE_LITERAL = re.compile(
    r"[\"']((?:image|request|frame|stream|auth|broker|kafka|server|principal|result|watch"
    r"|record|detect|analyze|gallery|subject|face|enroll|identify|verify|forget)\.[a-z_]+)[\"']"
)


def test_the_site_builds_in_strict_mode(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    pages = sorted(path.stem for path in DOCS.glob("*.md"))
    built_pages = {path.parent.name for path in tmp_path.glob("*/index.html")}
    assert built_pages == set(pages) - {"index"}
    assert (tmp_path / "index.html").is_file()


def test_the_readme_is_short_and_links_every_page():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = set(re.findall(r"\]\(docs/([a-z-]+\.md)\)", readme))
    assert linked == {path.name for path in DOCS.glob("*.md")} - {"index.md"}


def test_no_page_is_longer_than_a_reader_walks():
    long = {
        path.name: n
        for path in DOCS.glob("*.md")
        if (n := len(path.read_text().splitlines())) > MAX_PAGE_LINES
    }
    assert not long, long


def test_the_error_catalog_is_the_generated_one_and_holds_every_code_the_code_gives():
    assert catalog_table() in (DOCS / "grpc-api.md").read_text(), (
        "regenerate it: python -m facestream.error_codes"
    )
    given = set()
    for package in ("facestream", "grpc_server", "dataflow"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            if path.name != "error_codes.py" and "_pb2" not in path.name:
                given |= set(CODE_LITERAL.findall(path.read_text()))
    catalogued = [error.code for error in ERROR_CODES]
    assert len(catalogued) == len(set(catalogued))
    assert given == set(catalogued), (given - set(catalogued), set(catalogued) - given)
