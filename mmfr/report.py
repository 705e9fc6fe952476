"""The tables and plots of the workflow report (``snakemake --report``), drawn from the summary
database: yields per source, token-length and pass-rate histograms, subset composition, scores and
training curves.

Every artifact is a file ``results/report/<name>.<ext>``: a plot is an SVG (matplotlib, Agg
backend, written without a date so a rebuild gives the same bytes); a table is an HTML page, which
the report shows inline, with the same rows as CSV beside it. ``CATEGORIES`` says which section of
the report each name belongs to; its caption is ``report/<name>.rst``.
"""

from __future__ import annotations

import csv
import html
import logging
import os
from collections import defaultdict
from functools import partial

log = logging.getLogger(__name__)

# the report's sections, in reading order, and the artifacts in each
CATEGORIES = {
    "yields": "1. Yields",
    "drops": "1. Yields",
    "tokens": "2. Token lengths",
    "pass_rates": "3. Pass rates",
    "subsets": "4. Subsets",
    "scores": "5. Scores",
    "training": "6. Training",
    "release_sources": "7. Against the release",
    "release_subsets": "7. Against the release",
}
# the order of the per-source stages in stage_counts, as samples flow through them
STAGE_ORDER = ("raw", "kept", "captioned", "traced", "expanded", "verified_correct", "pass_rated")


class Table:
    """Column names and rows, as the report shows them."""

    def __init__(self, columns: list[str], rows: list[tuple]):
        self.columns, self.rows = list(columns), [tuple(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)


def _query(con, sql: str) -> Table:
    rel = con.execute(sql)
    return Table([d[0] for d in rel.description], rel.fetchall())


def _pivot(rows, columns: list[str], first: str, total: bool = False, missing=0) -> Table:
    """(row key, column key, value) triples → one row per key, one column per ``columns``
    (``missing`` where a triple is absent), with an ``(all)`` row of column sums if ``total``."""
    cells: dict = defaultdict(dict)
    for key, col, value in rows:
        cells[key][col] = value
    body = [(key, *(cells[key].get(c, missing) for c in columns)) for key in sorted(cells)]
    if total and body:
        body.append(("(all)", *(sum(r[i + 1] for r in body) for i in range(len(columns)))))
    return Table([first, *columns], body)


# ---------------------------------------------------------------- tables
def yields_table(con) -> Table:
    """Per source: samples at each stage, raw → kept → traced → verified → pass-rated, then how
    many each subset took."""
    counts = con.execute("SELECT source, stage, n FROM stage_counts").fetchall()
    subsets = con.execute("SELECT source, subset, sum(n) FROM subsets GROUP BY ALL").fetchall()
    stages = [s for s in STAGE_ORDER if s in {c for _, c, _ in counts}]
    names = sorted({c for _, c, _ in subsets})
    return _pivot(counts + subsets, stages + names, "source", total=True)


def drops_table(con) -> Table:
    """Why samples were dropped: category and reason, per source."""
    rows = con.execute("SELECT category || ': ' || reason, source, n FROM drop_reasons").fetchall()
    return _pivot(rows, sorted({s for _, s, _ in rows}), "reason", total=True)


def tokens_table(con) -> Table:
    return _query(con, "SELECT kind, source, n, round(mean, 1) mean, median, round(p95) p95, max, total "
                       "FROM token_stats ORDER BY kind, source = '(all)', source")


def pass_rates_table(con) -> Table:
    rows = con.execute("SELECT pass_rate, source, n FROM pass_rates").fetchall()
    return _pivot(rows, sorted({s for _, s, _ in rows}), "pass_rate", total=True)


def subsets_table(con) -> Table:
    return _query(con, """SELECT subset, source, domain, n,
        round(100 * n / sum(n) OVER (PARTITION BY subset), 1) share_pct,
        round(mean_pass_rate, 3) mean_pass_rate, round(mean_cot_tokens, 1) mean_cot_tokens
        FROM subsets ORDER BY subset, source, domain""")


def scores_table(con) -> Table:
    """Accuracy (%) per benchmark and category (rows), one column per model."""
    rows = con.execute("SELECT benchmark || ' / ' || category, model, round(accuracy, 2) FROM scores").fetchall()
    return _pivot(rows, _models(con), "benchmark / category", missing=None)


def _models(con) -> list[str]:
    """Evaluated models, base first, each subset's SFT before its GSPO."""
    order = "CASE stage WHEN 'base' THEN 0 WHEN 'sft' THEN 1 ELSE 2 END"
    return [r[0] for r in con.execute(
        f"SELECT DISTINCT model, size, subset, {order} FROM scores ORDER BY size, subset NULLS FIRST, {order}"
    ).fetchall()]


def release_sources_table(con) -> Table:
    """Per source, the build beside the release (``compare``): matched, agreement, lengths."""
    return _query(con, "SELECT * FROM release_sources ORDER BY source")


def release_subsets_table(con) -> Table:
    return _query(con, "SELECT * FROM release_subsets ORDER BY subset")


TABLES = {
    "yields": yields_table,
    "drops": drops_table,
    "tokens": tokens_table,
    "pass_rates": pass_rates_table,
    "subsets": subsets_table,
    "scores": scores_table,
    "release_sources": release_sources_table,  # only where compare.release is set
    "release_subsets": release_subsets_table,
}


def write_csv(table: Table, path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.columns)
        writer.writerows(table.rows)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


_STYLE = ("body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
          "th,td{padding:3px 8px;border-bottom:1px solid #ddd}th{background:#f4f4f4;text-align:left}"
          "td.n{text-align:right;font-variant-numeric:tabular-nums}")


def write_html(table: Table, path: str) -> None:
    """A self-contained page (the report shows it in a frame): numbers right-aligned."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>" + "".join(f'<td{" class=n" if isinstance(v, (int, float)) else ""}>{html.escape(_cell(v))}</td>'
                         for v in row) + "</tr>" for row in table.rows)
    with open(path, "w") as f:
        f.write(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>\n"
                f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>\n</body></html>\n")


# ---------------------------------------------------------------- plots
def _plot(path: str, panels: list[tuple], width: float = 6.4) -> None:
    """A figure of side-by-side panels, each ``(title, data, draw, what)``: ``draw(ax, data)``, or
    "no <what> in this build" where ``data`` is empty. Saved without a date, with stable ids."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "mmfr"  # stable element ids: same data, same bytes
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.2), squeeze=False)
    for ax, (title, data, draw, what) in zip(axes[0], panels):
        ax.set_title(title)
        if len(data):
            draw(ax, data)
        else:
            ax.text(0.5, 0.5, f"no {what} in this build", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)


def _labels(ax, x: str, y: str) -> None:
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=8)


def _stacked_hist(ax, rows, bins: int, x: str, y: str, top: float | None = None) -> None:
    """Histogram of (group, value, count) rows on [0, top] (default: the largest value), stacked by
    group, groups in row order."""
    groups: dict = defaultdict(lambda: ([], []))
    for group, value, n in rows:
        groups[group][0].append(value)
        groups[group][1].append(n)
    top = top if top is not None else max(v for _, v, _ in rows) + 1
    ax.hist([v for v, _ in groups.values()], weights=[w for _, w in groups.values()], bins=bins, range=(0, top),
            stacked=True, label=list(groups))
    _labels(ax, x, y)


def _stacked_bars(ax, table: Table, unit: str, horizontal: bool = False) -> None:
    """One bar per column of ``table`` (after the first), stacked by its rows (the first column
    names them); the ``(all)`` row is left out. ``unit``: what the bars' length counts."""
    labels, positions = table.columns[1:], range(len(table.columns) - 1)
    bottom = [0.0] * len(labels)
    for row in (r for r in table.rows if r[0] != "(all)"):
        values = [float(v) for v in row[1:]]
        if horizontal:
            ax.barh(positions, values, left=bottom, label=str(row[0]))
        else:
            ax.bar(positions, values, bottom=bottom, label=str(row[0]))
        bottom = [b + v for b, v in zip(bottom, values)]
    if horizontal:
        ax.set_yticks(list(positions), labels)
        _labels(ax, unit, "")
    else:
        ax.set_xticks(list(positions), labels, rotation=30, ha="right", rotation_mode="anchor")
        _labels(ax, "", unit)


def _grouped_bars(ax, table: Table, unit: str) -> None:
    """One group of bars per row of ``table``, one bar per column after the first."""
    series = table.columns[1:]
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        ax.bar([j + (i - (len(series) - 1) / 2) * width for j in range(len(table.rows))],
               [row[i + 1] or 0 for row in table.rows], width, label=name)
    ax.set_xticks(range(len(table.rows)), [row[0] for row in table.rows], rotation=30, ha="right",
                  rotation_mode="anchor")
    _labels(ax, table.columns[0], unit)


def _lines(ax, rows, x: str, y: str) -> None:
    """One line per group of (group, x, y) rows."""
    for group in sorted({g for g, _, _ in rows}):
        ax.plot(*zip(*[(a, b) for g, a, b in rows if g == group]), marker=".", label=group)
    _labels(ax, x, y)


def plot_yields(con, path: str) -> None:
    """Samples left after each stage (and taken by each subset), stacked by source."""
    _plot(path, [("Samples per stage, by source", yields_table(con), partial(_stacked_bars, unit="samples"),
                  "samples")], width=8)


def plot_tokens(con, path: str, bins: int = 30) -> None:
    """Histograms of the chain-of-thought and caption lengths of the verified traces, stacked by source."""
    _plot(path, [(f"{kind} tokens (verified-correct traces)",
                  con.execute("SELECT source, tokens, n FROM token_lengths WHERE kind = ? ORDER BY ALL",
                              [kind]).fetchall(),
                  partial(_stacked_hist, bins=bins, x="tokens", y="traces"), f"{kind} tokens")
                 for kind in ("cot", "caption")])


def plot_pass_rates(con, path: str, bins: int = 20) -> None:
    """Histogram of the proxy model's pass rate, stacked by source."""
    rows = con.execute("SELECT source, pass_rate, n FROM pass_rates ORDER BY ALL").fetchall()
    _plot(path, [("Pass rate of the difficulty proxy", rows,
                  partial(_stacked_hist, bins=bins, x="pass rate", y="samples", top=1), "pass rates")])


def plot_subsets(con, path: str) -> None:
    """Each subset's samples, stacked by source (left) and by domain (right)."""
    panels = []
    for by in ("source", "domain"):
        rows = con.execute(f"SELECT {by}, subset, sum(n) FROM subsets GROUP BY ALL").fetchall()
        panels.append((f"Subset composition by {by}", _pivot(rows, sorted({s for _, s, _ in rows}), by),
                       partial(_stacked_bars, unit="samples", horizontal=True), "subsets"))
    _plot(path, panels)


def plot_scores(con, path: str) -> None:
    """Accuracy per benchmark and category, one bar per model."""
    table = scores_table(con)
    _plot(path, [("Benchmark accuracy (%)", table, partial(_grouped_bars, unit="accuracy (%)"), "scores")],
          width=max(6.4, 1.2 * len(table)))


def plot_training(con, path: str) -> None:
    """SFT loss and GSPO reward against the training step, one line per model; DPO's reward margin
    too where the build trained DPO."""
    def curves(metric, stage):
        return con.execute(f"SELECT model, step, {metric} FROM training WHERE {metric} IS NOT NULL "
                           "AND model LIKE ? ORDER BY model, step", [f"%/{stage}"]).fetchall()

    panels = [("loss", "sft"), ("reward", "gspo")]
    if curves("reward_margin", "dpo"):
        panels.append(("reward_margin", "dpo"))
    _plot(path, [(f"{stage.upper()} {metric.replace('_', ' ')}", curves(metric, stage),
                  partial(_lines, x="step", y=metric), f"{stage} {metric}") for metric, stage in panels])


PLOTS = {
    "yields": plot_yields,
    "tokens": plot_tokens,
    "pass_rates": plot_pass_rates,
    "subsets": plot_subsets,
    "scores": plot_scores,
    "training": plot_training,
}


def write_report(summary: str, paths: list[str]) -> None:
    """Write each of ``paths`` (``<dir>/<name>.<ext>``: a plot as .svg or .png, a table as .html or
    .csv) from the summary database."""
    import duckdb

    con = duckdb.connect(summary, read_only=True)
    tables: dict[str, Table] = {}
    for path in paths:
        name, ext = os.path.splitext(os.path.basename(path))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if ext in (".svg", ".png") and name in PLOTS:
            PLOTS[name](con, path)
        elif ext in (".html", ".csv") and name in TABLES:
            table = tables.setdefault(name, TABLES[name](con))
            (write_html if ext == ".html" else write_csv)(table, path)
        else:
            raise ValueError(f"{path}: no report artifact of that name and format; plots (.svg, .png): "
                             f"{sorted(PLOTS)}, tables (.html, .csv): {sorted(TABLES)}")
        log.info("wrote %s", path)
    con.close()
