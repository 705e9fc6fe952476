"""The published MMFineReason datasets as the teacher's answers, and our build in their layout.

The releases (``OpenDataArena/MMFineReason-Full-2.3M-Qwen3-VL-235B-Thinking``, one config per source,
and the 1.8M / SFT-586K / SFT-123K sets) carry, per question, the thinking teacher's trace
(``qwen3vl_235b_thinking_response``) and the instruct teacher's caption (``caption``), beside the
question as cleaned (``question``, with an ``<image>`` marker), the question as the source gave it
(``ori_question``, empty where cleaning left it as it was), the source's answer (``original_answer``),
the 4B proxy's ``pass_rate`` and the judge's ``is_consistent``. Their ``id`` is unique within a
source only, and their source names are theirs (``FineVision-geo170k(qa)``), so a release row is
found by content: the source's question, normalised, and the image's sha256 (``release_key``); where
the bytes differ (a release that re-encoded its images, or ours turned upright by EXIF), by the same
question and an image whose perceptual hash lies within a few bits (``match``).

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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.generate.core import Request, Response
from mmfr.generate.role import ModelRole, as_role

log = logging.getLogger(__name__)

# what each teacher role reads from a release row
COLUMNS = {"caption": "caption", "trace": "qwen3vl_235b_thinking_response"}
INDEX = pa.schema([("key", pa.string()), ("qkey", pa.string()), ("phash", pa.string()), ("answer", pa.string()),
                   ("source", pa.string()), ("id", pa.string()), ("caption", pa.string()),
                   ("trace", pa.string()), ("pass_rate", pa.float64()), ("is_consistent", pa.bool_())])
# the Full-2.3M layout (its columns, in the order most of its configs give them)
RELEASE = pa.schema([("question", pa.string()), ("id", pa.int64()), ("original_answer", pa.string()),
                     ("qwen3vl_235b_thinking_response", pa.string()), ("caption", pa.string()),
                     ("source", pa.string()), ("ori_question", pa.string()), ("answer", pa.string()),
                     ("pass_rate", pa.float64()), ("consistency_analysis", pa.string()),
                     ("is_consistent", pa.bool_()), ("image", schema.IMAGE_TYPE)],
                    metadata=schema.hf_features_metadata([("image", schema.IMAGE_TYPE)]))
_MARKER = re.compile(r"<image>", re.I)
PHASH_DISTANCE = 4  # default bits between perceptual hashes for a match by image content (dedup's default)


def question_text(question: str | None) -> str:
    """A question as the release and our records can both give it: no ``<image>`` marker, spaces
    collapsed, case folded."""
    return " ".join(_MARKER.sub(" ", question or "").split()).casefold()


def release_key(question: str | None, image: bytes | None) -> str:
    """The content key of a question with its image: the source's question, normalised, and the
    image's sha256 (a release row is matched to a record of ours by it)."""
    digest = hashlib.sha256(image).hexdigest() if image else ""
    return hashlib.sha256(f"{question_text(question)}\x00{digest}".encode()).hexdigest()


def question_key(question: str | None) -> str:
    """The question part of a match by image content: sha256 of the normalised question."""
    return hashlib.sha256(question_text(question).encode()).hexdigest()


def answer_text(answer) -> str | None:
    """An answer as a match by image content compares it: no ``$``, spaces collapsed, case folded."""
    text = " ".join(str(answer).replace("$", " ").split()).casefold() if answer is not None else ""
    return text or None


def match(ours: pa.Table, theirs: pa.Table, distance: int | None = PHASH_DISTANCE) -> tuple[np.ndarray, np.ndarray]:
    """The row of ``theirs`` each row of ``ours`` is (both with columns key, qkey, phash, answer): the
    same key (question and image bytes), else the same question and answer (``answer_text``; a side
    without one does not object) with the closest image within ``distance`` bits of perceptual hash,
    as dedup's near duplicates (ties: the first such row; ``None``: by bytes only). Returns (row of
    theirs or -1, bits apart: -1 where the bytes are the same)."""
    from mmfr.nearhash import codes, hamming_join, phash_values

    row = pc.fill_null(pc.index_in(ours.column("key"), value_set=theirs.column("key").combine_chunks()), -1)
    row = row.to_numpy(zero_copy_only=False).astype(np.int64)
    bits = np.full(len(row), -1, np.int64)
    todo = np.flatnonzero(row < 0)
    if distance is None or not len(todo) or not len(theirs):
        return row, bits
    qkeys = pa.concat_arrays([ours.column("qkey").combine_chunks().take(pa.array(todo)),
                              theirs.column("qkey").combine_chunks()])
    qcode = codes(qkeys)
    ph_a, ok_a = phash_values(ours.column("phash").combine_chunks().take(pa.array(todo)))
    ph_b, ok_b = phash_values(theirs.column("phash").combine_chunks())
    a, b = np.flatnonzero(ok_a), np.flatnonzero(ok_b)
    found = [(a[ia], b[ib], d) for ia, ib, d in
             hamming_join(qcode[:len(todo)][a], ph_a[a], qcode[len(todo):][b], ph_b[b], distance)]
    ia, ib, d = (np.concatenate(x) for x in zip(*found)) if found else (np.zeros(0, np.int64),) * 3
    answers = pa.concat_arrays([ours.column("answer").combine_chunks().take(pa.array(todo)),
                                theirs.column("answer").combine_chunks()])
    given = pc.is_valid(answers).to_numpy(zero_copy_only=False)
    code = codes(answers)
    code_a, code_b = code[:len(todo)], code[len(todo):]
    agree = ~given[:len(todo)][ia] | ~given[len(todo):][ib] | (code_a[ia] == code_b[ib])
    ia, ib, d = ia[agree], ib[agree], d[agree]
    if len(ia):
        order = np.lexsort((ib, d, ia))  # per row of ours: fewest bits, then the first row of theirs
        first = order[np.r_[True, ia[order][1:] != ia[order][:-1]]]
        row[todo[ia[first]]] = ib[first]
        bits[todo[ia[first]]] = d[first]
    return row, bits


def lookup(index: str, wanted: pa.Table, columns: list[str], distance: int | None = PHASH_DISTANCE) -> list[dict | None]:
    """The index rows (``columns``) that the rows of ``wanted`` (key, qkey, phash, answer) match, in order
    (None: not in the release). Reads the index's candidate rows only: those with a wanted key or
    question (the 2.3M release's index holds tens of GB of text)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 1")
    con.register("wanted", wanted)
    source = f"read_parquet('{index}')"
    candidates = con.sql(f"""
        SELECT key, qkey, phash, answer FROM {source} WHERE key IN (SELECT key FROM wanted)
        UNION SELECT key, qkey, phash, answer FROM {source} WHERE qkey IN (SELECT qkey FROM wanted)
        ORDER BY key""").to_arrow_table()
    row, _ = match(wanted, candidates, distance)
    keys = candidates.column("key").to_pylist()
    chosen = pa.table({"key": sorted({keys[r] for r in row if r >= 0})})
    con.register("chosen", chosen)
    found = {r[0]: dict(zip(columns, r[1:])) for r in con.execute(
        f"SELECT i.key, {', '.join('i.' + c for c in columns)} FROM {source} i JOIN chosen USING (key)").fetchall()}
    con.close()
    return [found[keys[r]] if r >= 0 else None for r in row]


def wanted_table(questions: list[str | None], images: list[bytes | None], phashes: list[str | None],
                 answers: list[str | None]) -> pa.Table:
    """Rows to ``lookup``: the key and question key of each question and image, with the image's
    perceptual hash (computed here where not given) and the answer."""
    from mmfr.images import phash_of

    return pa.table({"key": [release_key(q, img) for q, img in zip(questions, images)],
                     "qkey": [question_key(q) for q in questions],
                     "phash": [ph or (phash_of(img) if img else None) for ph, img in zip(phashes, images)],
                     "answer": pa.array([answer_text(a) for a in answers], pa.string())})


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


def _keyed_rows(release: str, revision: str | None) -> Iterator[tuple[dict | None, dict]]:
    """Every row of a release with its match columns (key, qkey, phash; None for a row with no
    question)."""
    from mmfr.images import phash_of

    for path in _release_files(release, revision):
        for row in _rows(path):
            question = row.get("ori_question") or row.get("question")
            image = (row.get("image") or {}).get("bytes")
            keys = {"key": release_key(question, image), "qkey": question_key(question),
                    "phash": phash_of(image) if image else None,
                    "answer": answer_text(row.get("answer"))} if question_text(question) else None
            yield keys, row


def build_index(release: str, out: str, revision: str | None = None) -> dict:
    """Read every row of a release into the index ``build_index`` documents; a row without a trace or
    without a question is counted and left out. Returns the counts."""
    rows, counts = [], {"rows": 0, "indexed": 0, "no_question": 0, "duplicate_key": 0}
    seen: set[str] = set()
    for keys, row in _keyed_rows(release, revision):
        counts["rows"] += 1
        if keys is None:
            counts["no_question"] += 1
            continue
        if keys["key"] in seen:  # the same question and image twice: the first row stands
            counts["duplicate_key"] += 1
            continue
        seen.add(keys["key"])
        rows.append({**keys, "source": row.get("source"), "id": str(row.get("id")),
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
        self.distance = role.option("phash_distance", PHASH_DISTANCE)

    def generate(self, requests: list[Request], keys: list[str]) -> Iterator[Response]:
        wanted = wanted_table([r.context.get("original_question") for r in requests],
                              [r.images[0] if r.images else None for r in requests],
                              [r.context.get("image_phash") for r in requests],
                              [r.context.get("answer") for r in requests])
        found = lookup(self.index, wanted, ["caption", "trace"], self.distance)
        for req, key, row in zip(requests, keys, found):
            task = req.context.get("task")
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

def _release_rows(release: str, revision: str | None) -> pa.Table:
    """A release's rows (no images) with their match columns, one per row with a question."""
    rows = [{**keys, "source": row.get("source"), "their_answer": row.get("answer"),
             "pass_rate": row.get("pass_rate"), "is_consistent": row.get("is_consistent"),
             "trace_words": len((row.get(COLUMNS["trace"]) or "").split()),
             "caption_words": len((row.get("caption") or "").split())}
            for keys, row in _keyed_rows(release, revision) if keys is not None]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("key", pa.string()), ("qkey", pa.string()), ("phash", pa.string()), ("answer", pa.string()),
        ("source", pa.string()), ("their_answer", pa.string()), ("pass_rate", pa.float64()), ("is_consistent", pa.bool_()),
        ("trace_words", pa.int64()), ("caption_words", pa.int64())]))
    return table.append_column("row", pa.array(np.arange(len(table), dtype=np.int64)))


def _released(value: str | dict) -> tuple[str, str | None]:
    """A released set as config gives it: a folder or Hub id, or ``{dataset, revision}``."""
    return (value["dataset"], value.get("revision")) if isinstance(value, dict) else (value, None)


def compare(shards: dict[str, list[str]], subsets: dict[str, str], release: str, revision: str | None,
            released_subsets: dict[str, str | dict], out: str, distance: int | None = PHASH_DISTANCE) -> dict:
    """Set a build beside a release, into the duckdb file ``out``: per source of ours, records matched
    to a release row (``match``: by bytes, or by image content within ``distance`` bits), answers that
    agree, our verdict against the release's ``is_consistent``, our pass rate against theirs, trace and
    caption lengths (words) side by side (table ``release_sources``); per subset named in
    ``released_subsets`` ({our subset: released set}), the overlap: ours, theirs, in_both (rows of
    ours matched in theirs), Jaccard (table ``release_subsets``). ``shards``: the build's clean,
    captions, traces, verified and passrate shards; ``subsets``: our subset folders by name. Returns
    both tables as lists of dicts."""
    import duckdb

    if os.path.exists(out):
        os.remove(out)
    con = duckdb.connect(out)
    con.execute("SET threads TO 1")
    for stage, paths in shards.items():
        con.execute(f"CREATE VIEW {stage} AS SELECT * FROM read_parquet({list(paths)!r})")
    con.create_function("rkey", lambda q, img: release_key(q, img), [str, bytes], str, side_effects=False)
    con.create_function("qkey", lambda q: question_key(q), [str], str, side_effects=False)
    con.create_function("words", lambda text: len((text or "").split()), [str], int, side_effects=False)
    con.create_function("ans", answer_text, [str], str, side_effects=False)
    ours = con.sql("""
        SELECT r.source, r.id, rkey(r.original_question, r.image.bytes) AS key, qkey(r.original_question) AS qkey,
               r.image_phash AS phash, ans(r.answer) AS answer, r.answer AS our_answer, v.verdict, p.pass_rate,
               words(t.response) AS trace_words, words(c.caption) AS caption_words
        FROM clean r
        LEFT JOIN verified v ON v.id = r.id AND v.sample_index = 0
        LEFT JOIN traces t ON t.id = r.id AND t.sample_index = 0
        LEFT JOIN captions c ON c.id = r.id
        LEFT JOIN passrate p ON p.id = r.id""").to_arrow_table()
    theirs = _release_rows(release, revision)
    row, bits = match(ours, theirs, distance)
    ours = ours.append_column("their_row", pa.array(row)).append_column("phash_bits", pa.array(bits))
    con.register("ours_arrow", ours)
    con.register("theirs_arrow", theirs)
    con.execute("CREATE TABLE ours AS SELECT * FROM ours_arrow")
    con.execute("CREATE TABLE theirs AS SELECT * FROM theirs_arrow")
    con.execute("""CREATE TABLE release_sources AS
        SELECT o.source, count(*) AS records, count(t.row) AS matched,
               round(count(t.row) / count(*), 4) AS matched_share,
               count_if(o.phash_bits >= 0) AS matched_by_image_content,
               count_if(t.row IS NOT NULL AND lower(trim(o.our_answer)) IS NOT DISTINCT FROM lower(trim(t.their_answer)))
                   AS answers_agree,
               count_if(t.row IS NOT NULL AND (o.verdict = 'correct') = t.is_consistent) AS verdicts_agree,
               count_if(t.row IS NOT NULL AND o.pass_rate IS NOT NULL AND t.pass_rate IS NOT NULL) AS pass_rates_both,
               round(avg(abs(o.pass_rate - t.pass_rate)), 4) AS pass_rate_mean_abs_diff,
               median(o.trace_words) AS our_trace_words_median, median(t.trace_words) AS their_trace_words_median,
               median(o.caption_words) AS our_caption_words_median, median(t.caption_words) AS their_caption_words_median
        FROM ours o LEFT JOIN theirs t ON t.row = o.their_row
        GROUP BY o.source ORDER BY o.source""")
    rows = []
    for name, folder in sorted(subsets.items()):
        if name not in released_subsets:
            continue
        mine = con.sql(f"""SELECT DISTINCT rkey(original_question, image.bytes) AS key,
            qkey(original_question) AS qkey, image_phash AS phash, ans(answer) AS answer
            FROM read_parquet('{folder}/data/*.parquet')""").to_arrow_table()
        released = _release_rows(*_released(released_subsets[name]))
        matched, _ = match(mine, released, distance)
        both = len(set(matched[matched >= 0].tolist()))
        n_ours, n_theirs = len(mine), len(set(released.column("key").to_pylist()))
        rows.append({"subset": name, "released": _released(released_subsets[name])[0], "ours": n_ours,
                     "theirs": n_theirs, "in_both": both, "jaccard": round(both / max(1, n_ours + n_theirs - both), 4)})
    con.register("subset_rows", pa.Table.from_pylist(rows, schema=pa.schema([
        ("subset", pa.string()), ("released", pa.string()), ("ours", pa.int64()), ("theirs", pa.int64()),
        ("in_both", pa.int64()), ("jaccard", pa.float64())])))
    con.execute("CREATE TABLE release_subsets AS SELECT * FROM subset_rows")
    result = {"sources": con.sql("SELECT * FROM release_sources").to_arrow_table().to_pylist(), "subsets": rows}
    con.close()
    return result
