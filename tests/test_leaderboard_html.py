"""The leaderboard's HTML page: every table of the Markdown with its provenance, the plots inline, all
text escaped, nothing to fetch. Runs are tracked into a temporary store as in ``test_leaderboard``; the
page is read back with the standard library's HTML parser."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import numpy as np
import pytest
from test_leaderboard import DATASET, log, result_of, scores

from bench.cli.leaderboard import leaderboard
from bench.evaluation.metric_catalog import METRICS_VERSION
from bench.reporting import html_page as leaderboard_html
from bench.reporting import leaderboard as lb
from bench.workflows import leaderboard_inputs, tracking

VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}
PNG = "data:image/png;base64,"


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def walk(self) -> list[Node]:
        """The descendants, in document order."""
        return [node for child in self.children if isinstance(child, Node) for node in (child, *child.walk())]

    def find(self, tag: str) -> list[Node]:
        return [node for node in self.walk() if node.tag == tag]


class _Tree(HTMLParser):
    """The page as a tree of ``Node``; every element but a void one must be closed where it was opened."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1].tag == tag, f"</{tag}> closes <{self.open[-1].tag}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(page: str) -> Node:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.open == [tree.root], f"unclosed: {[node.tag for node in tree.open[1:]]}"
    return tree.root


def rows(table: Node) -> list[list[Node]]:
    (body,) = table.find("tbody")
    return [row.find("td") for row in body.find("tr")]


def test_the_page_has_every_table_sortable_and_its_plots_inline(tracking_store):
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0))
        log("additive", seed, scores(seed, 0.2))
        log("linear", seed, scores(seed, 0.1))
    out = tracking_store / "boards"
    leaderboard(dataset=DATASET, metric="pearson_delta_de20,mse_de20", out=out)
    page = (out / f"{DATASET}.html").read_text(encoding="utf-8")
    root = parse(page)
    assert root.find("title")[0].text() == f"Leaderboard: {DATASET}"
    tables = root.find("table")
    assert [table.attrs["data-metric"] for table in tables] == ["pearson_delta_de20", "mse_de20"]
    for table in tables:
        assert [th.text() for th in table.find("th")] == ["model", "seeds", "all", "combo", "single"]
        assert all(th.find("button") for th in table.find("th"))
        assert [cells[0].text() for cells in rows(table)] == [
            "additive (baseline, reference)", "linear (baseline)", "mean (baseline)"]
    additive = [scores(seed, 0.2).mean() for seed in (1, 2)]
    (_, seeds, cell, *_), _, (*_, mean_single) = rows(tables[0])
    assert seeds.text() == "2" and float(cell.attrs["data-sort"]) == pytest.approx(np.mean(additive))
    assert cell.find("strong")[0].text() == f"{np.mean(additive):.3f} ± {np.std(additive, ddof=1):.3f}"  # best: bold
    assert mean_single.find("span")[0].text() == "Δ −0.200 [−0.200, −0.200]* (mdd 0.000)"  # a constant gap: the CI excludes 0

    images = root.find("img")
    plots = sorted(out.glob("*.png"))
    assert len(images) == len(plots) == 2  # a bar plot per metric (fake runs have no split for a scatter plot)
    assert all(image.attrs["src"].startswith(PNG) and image.attrs["alt"] for image in images)
    assert sorted(base64.b64decode(image.attrs["src"].removeprefix(PNG)) for image in images) == sorted(
        plot.read_bytes() for plot in plots)
    addresses = [value for node in root.walk() for name, value in node.attrs.items() if name in ("src", "href")]
    assert len(addresses) == 2 and all(address.startswith(PNG) for address in addresses)  # nothing to fetch
    assert not re.search("https?:", page, re.IGNORECASE)
    assert [script.attrs for script in root.find("script")] == [{}]  # one inline script


def test_every_text_is_escaped_and_the_provenance_stated(tracking_store, tmp_path):
    tag = "<i>1</i>"
    error = '<script>alert("x")</script> & more'
    for seed in (1, 2):
        log("mean", seed, scores(seed, 0.0), params={"ridge": "0.1"})
        log("mean", seed, scores(seed, 0.3), params={"ridge": tag})
    failed = result_of("additive", 1, scores(1, 0.0), status="FAILED")
    failed.error = error
    tracking.log_run(failed)
    (board,) = leaderboard_inputs.boards(DATASET)
    reference = lb.default_reference(board, "pearson_delta_de20")
    table = lb.table_cells(board, ["pearson_delta_de20"], reference, leaderboard_inputs.scores())
    command = "bench leaderboard --out '<boards> & co'"
    page = leaderboard_html.page([(board, table, {})], command, tmp_path)
    assert tag not in page and "<script>alert" not in page and "& more" not in page and "<boards>" not in page
    root = parse(page)
    text = root.text()
    assert f"mean (ridge={tag}) (baseline, reference)" in [cells[0].text() for cells in rows(root.find("table")[0])]
    assert f"Reference: mean (ridge={tag}) (of the baselines with the most seeds, the best" in text
    assert f"additive seed 1: {error}" in text and f"Written by {command} from runs tracked in MLflow" in text
    assert f"Dataset sha256: {'d' * 64}; metrics version {METRICS_VERSION}." in text
    assert "Split files: simulation-seed1 (generated, not committed; sha256 split-1), simulation-seed2" in text
    assert re.search(r"Code: commit [0-9a-f]{12}\.", text)
    assert not root.find("img")


def test_no_html_writes_no_page(tracking_store):
    log("mean", 1, scores(1, 0.0))
    out = tracking_store / "boards"
    leaderboard(dataset=DATASET, metric="pearson_delta_de20", out=out, plots=False, html=False)
    assert sorted(path.name for path in out.iterdir()) == [f"{DATASET}.csv", f"{DATASET}.md"]


def test_a_failing_page_leaves_the_old_files_as_they_were(tracking_store, monkeypatch):
    log("mean", 1, scores(1, 0.0))
    out = tracking_store / "boards"
    out.mkdir()
    old = {f"{DATASET}.md": "old table", f"{DATASET}.csv": "old,csv", f"{DATASET}.html": "<p>old page</p>"}
    for name, text in old.items():
        (out / name).write_text(text)

    def broken(board_tables, command, folder):
        raise OSError("disk full")

    monkeypatch.setattr(leaderboard_html, "page", broken)  # after the Markdown and the CSV are drawn
    with pytest.raises(OSError, match="disk full"):
        leaderboard(dataset=DATASET, metric="pearson_delta_de20", out=out, plots=False)
    assert {path.name: path.read_text() for path in out.iterdir()} == old
