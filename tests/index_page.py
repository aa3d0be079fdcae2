"""The index page (reports.write_index) read back as a browser would see it: per run row, its
state badge, its stage badges and its number cells, parsed with the standard library's HTML
parser (a substring search would also match the CSS and the other rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

NUMBER_COLUMNS = [
    "accuracy (baseline)",
    "accuracy (speculative)",
    "acceptance",
    "mean acceptance length",
    "speed-up (throughput)",
    "speed-up (latency) [95 %]",
    "tokens per answer",
]


@dataclass
class Cell:
    classes: set[str]
    title: str | None
    text: str = ""
    badges: list[tuple[set[str], str]] = field(default_factory=list)  # (classes, text) of each span.st


@dataclass
class Row:
    cells: list[Cell]

    @property
    def state(self) -> str:
        """The run's state: the class of its state badge other than `st`."""
        [(classes, _)] = self.cells[2].badges
        [state] = classes - {"st"}
        return state

    @property
    def note(self) -> str:
        return self.cells[2].text

    @property
    def stages(self) -> dict[str, str]:
        """Stage number ("01") -> the state its badge shows."""
        return {text.split()[0]: next(iter(classes - {"st"})) for classes, text in self.cells[3].badges}

    @property
    def numbers(self) -> dict[str, Cell]:
        return dict(zip(NUMBER_COLUMNS, self.cells[5:]))

    @property
    def replicate(self) -> int:
        return int(self.cells[1].text) - 1  # the page counts trainings from 1


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: dict[str, Row] = {}
        self.row: Row | None = None
        self.cell: Cell | None = None
        self.badge: list | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and (a.get("id") or "").startswith("run-"):
            self.row = self.rows[a["id"][4:]] = Row([])
        elif tag == "td" and self.row is not None:
            self.cell = Cell(set((a.get("class") or "").split()), a.get("title"))
            self.row.cells.append(self.cell)
        elif tag == "span" and self.cell is not None and "st" in (a.get("class") or "").split():
            self.badge = [set(a["class"].split()), ""]

    def handle_endtag(self, tag):
        if tag == "span" and self.badge is not None:
            self.cell.badges.append((self.badge[0], self.badge[1].strip()))
            self.badge = None
        elif tag == "td":
            self.cell = None
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.text += data
        if self.badge is not None:
            self.badge[1] += data


def runs(page: str) -> dict[str, Row]:
    """Run name (`cot_easy`) -> its row of the index."""
    parser = _Parser()
    parser.feed(page)
    return parser.rows
