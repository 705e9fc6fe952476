"""The published MMFineReason datasets as the teacher's answers, and our build in their layout.

The releases (``OpenDataArena/MMFineReason-Full-2.3M-Qwen3-VL-235B-Thinking``, one config per source,
and the 1.8M / SFT-586K / SFT-123K sets) carry, per question, the thinking teacher's trace
(``qwen3vl_235b_thinking_response``) and the instruct teacher's caption (``caption``), beside the
question as cleaned (``question``, with an ``<image>`` marker), the question as the source gave it
(``ori_question``, empty where cleaning left it as it was), the source's answer (``original_answer``),
the 4B proxy's ``pass_rate`` and the judge's ``is_consistent``. Their ``id`` is unique within a
source only, and their source names are theirs (``FineVision-geo170k(qa)``), so a release row is
found by content: the source's question, normalised, and the image's sha256 (``release_key``).

- ``build_index`` reads a release (a local folder of parquet files, or a Hub id at a revision) once
  into ``data/release/index.parquet``: key, the texts the teacher roles take, pass rate, verdict.
- ``ReleaseBackend`` (``backend: release`` in a ``models.caption`` / ``models.trace`` block) answers a
  request from that index, so the release's texts enter the journals as our teacher's responses
  would, keyed like our requests; a question the release does not hold gets an error response
  (``not in the release``), which the trace's verification rejects and counts.
- ``export`` writes a finished build in the Full-2.3M layout (one folder per source), so a build can be
  published, or run again from its own release (``tests``: the round trip).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.generate.core import Request, Response
from mmfr.generate.role import ModelRole, as_role

log = logging.getLogger(__name__)

# what each teacher role reads from a release row
COLUMNS = {"caption": "caption", "trace": "qwen3vl_235b_thinking_response"}
INDEX = pa.schema([("key", pa.string()), ("source", pa.string()), ("id", pa.string()), ("caption", pa.string()),
                   ("trace", pa.string()), ("pass_rate", pa.float64()), ("is_consistent", pa.bool_())])
# the Full-2.3M layout (its columns, in the order most of its configs give them)
RELEASE = pa.schema([("question", pa.string()), ("id", pa.int64()), ("original_answer", pa.string()),
                     ("qwen3vl_235b_thinking_response", pa.string()), ("caption", pa.string()),
                     ("source", pa.string()), ("ori_question", pa.string()), ("answer", pa.string()),
                     ("pass_rate", pa.float64()), ("consistency_analysis", pa.string()),
                     ("is_consistent", pa.bool_()), ("image", schema.IMAGE_TYPE)],
                    metadata=schema.hf_features_metadata([("image", schema.IMAGE_TYPE)]))
_MARKER = re.compile(r"<image>", re.I)


def question_text(question: str | None) -> str:
    """A question as the release and our records can both give it: no ``<image>`` marker, spaces
    collapsed, case folded."""
    return " ".join(_MARKER.sub(" ", question or "").split()).casefold()


def release_key(question: str | None, image: bytes | None) -> str:
    """The content key of a question with its image: the source's question, normalised, and the
    image's sha256 (a release row is matched to a record of ours by it)."""
    digest = hashlib.sha256(image).hexdigest() if image else ""
    return hashlib.sha256(f"{question_text(question)}\x00{digest}".encode()).hexdigest()


# --------------------------------------------------------------------------- reading a release

def _release_files(release: str, revision: str | None) -> list[str]:
    """The parquet files of a release: a local folder's, or a Hub dataset's at ``revision``."""
    if os.path.isdir(release):
        files = sorted(glob.glob(os.path.join(release, "**", "*.parquet"), recursive=True))
    else:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(release, repo_type="dataset", revision=revision, allow_patterns=["*.parquet"])
        files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
    if not files:
        raise ValueError(f"release {release!r}: no parquet files")
    return files


def _rows(path: str) -> Iterator[dict]:
    """A release file's rows, one record batch at a time (the images are what is large)."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _keyed_rows(release: str, revision: str | None) -> Iterator[tuple[str | None, dict]]:
    """Every row of a release with its content key (None for a row with no question)."""
    for path in _release_files(release, revision):
        for row in _rows(path):
            question = row.get("ori_question") or row.get("question")
            key = release_key(question, (row.get("image") or {}).get("bytes")) if question_text(question) else None
            yield key, row


def build_index(release: str, out: str, revision: str | None = None) -> dict:
    """Read every row of a release into the index ``build_index`` documents; a row without a trace or
    without a question is counted and left out. Returns the counts."""
    rows, counts = [], {"rows": 0, "indexed": 0, "no_question": 0, "duplicate_key": 0}
    seen: set[str] = set()
    for key, row in _keyed_rows(release, revision):
        counts["rows"] += 1
        if key is None:
            counts["no_question"] += 1
            continue
        if key in seen:  # the same question and image twice: the first row stands
            counts["duplicate_key"] += 1
            continue
        seen.add(key)
        rows.append({"key": key, "source": row.get("source"), "id": str(row.get("id")),
                     "caption": row.get("caption"), "trace": row.get(COLUMNS["trace"]),
                     "pass_rate": row.get("pass_rate"), "is_consistent": row.get("is_consistent")})
    counts["indexed"] = len(rows)
    rows.sort(key=lambda r: r["key"])
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    schema.write_table(pa.Table.from_pylist(rows, schema=INDEX), out)
    log.info("release index %s: %s", out, counts)
    return counts


class ReleaseBackend:
    """Answers caption and trace requests with a release's texts (see the module notes); ``model`` is
    the release (its id is what the journals and provenance name), ``options.index`` the index file."""

    name = "release"

    def __init__(self, role: ModelRole | dict):
        role = as_role(role, self.name)
        index = role.option("index")
        if not index or not os.path.exists(index):
            raise ValueError(f"{role.key or 'model block'}.index: the release index {index!r} is not there "
                             f"(rule release_index builds it)")
        self.index = index
        self.release = role.model

    def _lookup(self, wanted: set[str]) -> dict[str, dict]:
        """The index rows of the ``wanted`` keys only (the whole index of the 2.3M release holds tens of
        GB of text: a job reads the keys and just its own rows' texts)."""
        import duckdb

        con = duckdb.connect()
        con.register("wanted", pa.table({"key": sorted(wanted)}))
        rows = con.execute(f"SELECT i.key, i.caption, i.trace FROM read_parquet('{self.index}') i "
                           "JOIN wanted USING (key)").fetchall()
        con.close()
        return {key: {"caption": caption, "trace": trace} for key, caption, trace in rows}

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        wanted = [release_key(r.context.get("original_question"), r.images[0] if r.images else None) for r in requests]
        found = self._lookup(set(wanted))
        for req, key, want in zip(requests, keys, wanted):
            task = req.context.get("task")
            row = found.get(want)
            if task not in COLUMNS:
                yield Response(key, req.sample_id, req.sample_index, "", "error", 0,
                               f"the release answers captions and traces, not {task!r}")
            elif row is None or req.sample_index > 0 or not row[task]:
                why = "not in the release" if row is None else (
                    "the release holds one trace per question" if req.sample_index else f"the release has no {task}")
                yield Response(key, req.sample_id, req.sample_index, "", "error", 0, why)
            else:
                text = row[task]
                yield Response(key, req.sample_id, req.sample_index, text, "stop", len(text.split()))


# --------------------------------------------------------------------------- our build in its layout

def export(records: list[str], captions: list[str], traces: list[str], verified: list[str], passrates: list[str],
           out_dir: str, only: list[str] | None = None) -> dict:
    """Write a build's clean records with their caption, first trace, pass rate and verdict in the
    Full-2.3M layout, ``out_dir/<source>/train-00000-of-00001.parquet`` (``id``: the row's number within
    its source, as the release numbers them; ``is_consistent``: verification found the trace correct).
    ``only``: subset folders whose samples alone are written (a released subset's layout is the same).
    Returns rows per source."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")
    for name, paths in (("rec", records), ("cap", captions), ("tr", traces), ("ver", verified), ("pr", passrates)):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({list(paths)!r})")
    table = con.sql("""
        SELECT r.source, r.id AS sample_id, r.question, r.original_question, r.original_answer, r.answer, r.image,
               c.caption, t.response AS trace, p.pass_rate, v.verdict, v.reason
        FROM rec r
        LEFT JOIN cap c ON c.id = r.id
        LEFT JOIN tr t ON t.id = r.id AND t.sample_index = 0
        LEFT JOIN ver v ON v.id = r.id AND v.sample_index = 0
        LEFT JOIN pr p ON p.id = r.id
        ORDER BY r.source, r.id""").to_arrow_table().to_pylist()
    if only:
        keep = {i for folder in only
                for i in pq.read_table(os.path.join(folder, "data"), columns=["id"]).column("id").to_pylist()}
        table = [r for r in table if r["sample_id"] in keep]
    by_source: dict[str, list[dict]] = {}
    for r in table:
        rows = by_source.setdefault(r["source"], [])
        rows.append({"question": "<image>" + r["question"], "id": len(rows), "original_answer": r["original_answer"],
                     COLUMNS["trace"]: r["trace"], "caption": r["caption"], "source": r["source"],
                     "ori_question": r["original_question"] if r["original_question"] != r["question"] else "",
                     "answer": r["answer"], "pass_rate": r["pass_rate"],
                     "consistency_analysis": f"Analysis: mmfr verification: {r['verdict']} {r['reason'] or ''}".strip(),
                     "is_consistent": r["verdict"] == "correct", "image": r["image"]})
    for source, rows in by_source.items():
        folder = os.path.join(out_dir, source)
        os.makedirs(folder, exist_ok=True)
        schema.write_table(pa.Table.from_pylist(rows, schema=RELEASE),
                           os.path.join(folder, "train-00000-of-00001.parquet"))
    counts = {s: len(rows) for s, rows in sorted(by_source.items())}
    with open(os.path.join(out_dir, "release.json"), "w") as f:
        json.dump({"layout": "MMFineReason-Full-2.3M", "rows": counts}, f, indent=1, sort_keys=True)
    return counts


# --------------------------------------------------------------------------- our build against a release

def _release_table(release: str, revision: str | None, con, name: str) -> None:
    """A release's rows (no images) as table ``name`` with their content key, in ``con``."""
    rows = [{"key": key, "source": row.get("source"), "answer": row.get("answer"),
             "pass_rate": row.get("pass_rate"), "is_consistent": row.get("is_consistent"),
             "trace_words": len((row.get(COLUMNS["trace"]) or "").split()),
             "caption_words": len((row.get("caption") or "").split())}
            for key, row in _keyed_rows(release, revision)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("key", pa.string()), ("source", pa.string()), ("answer", pa.string()), ("pass_rate", pa.float64()),
        ("is_consistent", pa.bool_()), ("trace_words", pa.int64()), ("caption_words", pa.int64())]))
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_arrow")


def compare(shards: dict[str, list[str]], subsets: dict[str, str], release: str, revision: str | None,
            released_subsets: dict[str, str], out: str) -> dict:
    """Set a build beside a release, into the duckdb file ``out``: per source of ours, records matched
    to a release row (``release_key``), answers that agree, our verdict against the release's
    ``is_consistent``, our pass rate against theirs, trace and caption lengths (words) side by side
    (table ``release_sources``); per subset named in ``released_subsets`` ({our subset: released set}),
    the overlap by content key: ours, theirs, in_both, Jaccard (table ``release_subsets``). ``shards``:
    the build's clean, captions, traces, verified and passrate shards; ``subsets``: our subset folders
    by name. Returns both tables as lists of dicts."""
    import duckdb

    if os.path.exists(out):
        os.remove(out)
    con = duckdb.connect(out)
    con.execute("SET threads TO 1")
    for stage, paths in shards.items():
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM read_parquet({list(paths)!r})")
    con.create_function("rkey", lambda q, img: release_key(q, img), [str, bytes], str, side_effects=False)
    con.create_function("words", lambda text: len((text or "").split()), [str], int, side_effects=False)
    con.execute("""CREATE TABLE ours AS
        SELECT r.source, r.id, rkey(r.original_question, r.image.bytes) AS key, r.answer, v.verdict, p.pass_rate,
               words(t.response) AS trace_words, words(c.caption) AS caption_words
        FROM clean r
        LEFT JOIN verified v ON v.id = r.id AND v.sample_index = 0
        LEFT JOIN traces t ON t.id = r.id AND t.sample_index = 0
        LEFT JOIN captions c ON c.id = r.id
        LEFT JOIN passrate p ON p.id = r.id""")
    _release_table(release, revision, con, "theirs")
    con.execute("""CREATE TABLE release_sources AS
        SELECT o.source, count(*) AS records, count(t.key) AS matched,
               round(count(t.key) / count(*), 4) AS matched_share,
               count_if(t.key IS NOT NULL AND lower(trim(o.answer)) IS NOT DISTINCT FROM lower(trim(t.answer)))
                   AS answers_agree,
               count_if(t.key IS NOT NULL AND (o.verdict = 'correct') = t.is_consistent) AS verdicts_agree,
               count_if(t.key IS NOT NULL AND o.pass_rate IS NOT NULL AND t.pass_rate IS NOT NULL) AS pass_rates_both,
               round(avg(abs(o.pass_rate - t.pass_rate)), 4) AS pass_rate_mean_abs_diff,
               median(o.trace_words) AS our_trace_words_median, median(t.trace_words) AS their_trace_words_median,
               median(o.caption_words) AS our_caption_words_median, median(t.caption_words) AS their_caption_words_median
        FROM ours o LEFT JOIN theirs t ON t.key = o.key
        GROUP BY o.source ORDER BY o.source""")
    rows = []
    for name, folder in sorted(subsets.items()):
        if name not in released_subsets:
            continue
        table = f"released_{len(rows)}"
        _release_table(released_subsets[name], None, con, table)
        ours = {r[0] for r in con.execute(
            f"SELECT rkey(original_question, image.bytes) FROM read_parquet('{folder}/data/*.parquet')").fetchall()}
        theirs = {r[0] for r in con.execute(f"SELECT key FROM {table}").fetchall()}
        both = len(ours & theirs)
        rows.append({"subset": name, "released": released_subsets[name], "ours": len(ours), "theirs": len(theirs),
                     "in_both": both, "jaccard": round(both / max(1, len(ours | theirs)), 4)})
    con.register("subset_rows", pa.Table.from_pylist(rows, schema=pa.schema([
        ("subset", pa.string()), ("released", pa.string()), ("ours", pa.int64()), ("theirs", pa.int64()),
        ("in_both", pa.int64()), ("jaccard", pa.float64())])))
    con.execute("CREATE TABLE release_subsets AS SELECT * FROM subset_rows")
    result = {"sources": con.sql("SELECT * FROM release_sources").to_arrow_table().to_pylist(), "subsets": rows}
    con.close()
    return result
