"""Global duplicate removal and benchmark decontamination over every standardised source.

Runs once, after standardisation and before the (expensive) LLM cleaning. It reads only light
columns (never image bytes) and decides, for every training record, whether it is dropped and why.
A record is reported once, with the first reason that applies, in this order:

1. ``bench_image`` (contaminated): its image is a benchmark image: the same bytes (sha256), or a
   perceptual hash within ``bench_phash_distance`` bits *and* the same answer and options (a hash
   alone is not trusted: see Calibration). Identical bytes win over hash matches.
2. ``bench_question`` (contaminated): its normalised question equals a benchmark question of at
   least ``min_question_words`` words, or shares a ``question_ngram``-word n-gram with one (the
   GPT-3 13-gram test), unless that text is a template (below).
3. ``exact_duplicate`` (duplicate): same normalised question and same image bytes as the kept copy.
4. ``near_duplicate`` (duplicate): same normalised question, same answer and options, and an image
   within ``phash_distance`` bits: a re-encoded or resized copy, which is how aggregate sources
   overlap. The question alone is not enough (AI2D and TQA ask several questions about one
   image), nor is the image alone.

Contamination comes first so that the contamination report lists every training record that
touches a benchmark, copies included. Duplicates form clusters (exact and near links, made
transitive with a union-find, so a chain of copies 4 bits apart is one cluster); each cluster
keeps the member from the source listed first in ``priority`` (ties: source name, then id; sources
missing from the list come after it) and every other member points at it, with the reason judged
against that kept copy (same bytes: exact, else near) and the bits between the two. A kept record
may itself be contaminated; then its whole cluster goes.

The answer and options ("label") are compared after the same normalisation as questions; a table
without ``answer``/``choices`` columns has empty labels, so hashes then need nothing more
(``phash_needs_answer=False`` does the same on purpose).

Templates. Text that comes with many different images identifies no problem: MathVerse's
"According to the question shown in the image, please directly answer...", MathVista's answer-
format hints, ScienceQA's "Which of these states is farthest north?", the demo's generated
questions. A benchmark question, or an n-gram of one, that appears with ``template_images`` or
more distinct images, counted over benchmark and training records together (an image is its
pHash, so re-encoded copies of one leaked image count once), is not evidence of a leak
(``template_images: 0`` switches this guard off). The image check still applies to those records.

Normalised question (``normalise_question``): Unicode NFKC, lower case, image placeholders
(``<image>``, ``<image 1>``, ``<img>``, ``<|image_pad|>``...) removed, sentence punctuation
(``? ! , ; :``, quotes, and full stops that are not decimal points) replaced by spaces, whitespace
collapsed. Everything else stays, so ``2+3`` and ``2-3``, or ``1.5`` and ``15``, remain different.

Scaling. No all-pairs loop: hashes within ``d`` bits agree exactly on the bits of at least one
band (pigeonhole), so records are joined on (group key, band value) and only those candidates are
compared, in bounded chunks (``mmfr.nearhash``, which lays the bands out by the data, so template
questions over text-on-white images are not a quadratic corner: 200,000 such records 33x faster
than with fixed bands, ``bench/dedup.py``); the group key is (question, label) for near
duplicates and the label for benchmark images. N-grams are 64-bit hashes of word ids computed with
numpy (only words of the benchmark vocabulary can match). 1,000,000 records with random hashes and
20,000 benchmark records take about 11 s and 1.2 GiB (``bench/dedup_calibration.py``, 2 cores).
Results depend only on the set of records, not their order, and outputs are sorted, so two runs
write identical bytes.

Calibration (``python bench/dedup_calibration.py``; pHash = ``imagehash.phash``, 64 bits; it sets
the bits above the median, about half of them, so distances come out even):

- Real images (the 44 files under shared/fixtures, 41 distinct): distinct images are at least 12
  bits apart (two pages of one score), then 18; 1st percentile 20, median 30. Copies move at most
  2 bits: JPEG q=85 (mean 0.3), 0.5x resize (mean 0.1), 0.75x resize (mean 0.4). Cropping is not
  what pHash survives: 2% off each side moves 0-12 bits (mean 4.8), 5% moves 2-22.
- Demo images (``mmfr.demo.synth``, 300 train x 300 test scenes per family = 90,000 pairs each): distinct
  train/test pairs within d = 0, 2, 4, 6, 8 bits: counting 0, 0, 0, 1, 1; charts 0, 0, 0, 6, 33;
  geometry 34, 167, 412, 823, 1321; puzzle 5, 95, 300, 617, 1114. 7.7% of geometry test scenes
  have a train scene with the *same* hash. Copies of the thin-line drawings also move further (up
  to 10 bits for a 0.5x resize of a geometry figure). With the same answer and options required
  too, the geometry and puzzle pairs drop to 0/1 at d=0, 4/6 at d=2, 8/8 at d=4, 15/16 at d=6.
  So no hash threshold makes an image-only test safe for flat drawings; the label makes it usable.
- On the demo itself (2,244 standardised records of five sources, 300 benchmark records), with
  thresholds d for both checks: d=4 with labels drops 13 by image (the 7 injected leaks, which
  have identical bytes, and 6 look-alikes with the same answer), 15 near duplicates (same
  question and answer, look-alike figure) and 41 exact duplicates (35 repeated composed items);
  without labels d=4 would drop 196 by image and 146 as near duplicates. 26 match by question
  (generated questions equal to a benchmark question, or sharing 13 words with one, and seen
  with fewer than 3 images).
- Defaults: ``phash_distance = bench_phash_distance = 4`` (twice the largest move of a re-encoded
  or resized real image, a third of the closest distinct real pair), labels required for hash
  matches, identical bytes trusted alone, ``template_images = 3``, ``min_question_words = 8``,
  ``question_ngram = 13``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfr import schema
from mmfr.nearhash import codes, group, hamming_join, phash_values
from mmfr.schema import DROPS

log = logging.getLogger(__name__)

REASONS = ("bench_image", "bench_question", "exact_duplicate", "near_duplicate")  # precedence order
CATEGORY = {"bench_image": "contaminated", "bench_question": "contaminated",
            "exact_duplicate": "duplicate", "near_duplicate": "duplicate"}
COLUMNS = ["source", "id", "original_id", "question", "answer", "choices", "image_sha256", "image_phash"]



@dataclass(frozen=True)
class DedupConfig:
    phash_distance: int = 4  # near duplicates: bits between the images' perceptual hashes
    bench_phash_distance: int = 4  # contamination by a re-encoded benchmark image
    min_question_words: int = 8  # an identical question this long is contamination
    question_ngram: int = 13  # a shared n-gram of this many words is contamination
    template_images: int = 3  # text seen with this many distinct images is a template (0: off)
    phash_needs_answer: bool = True  # a hash match also needs the same answer and options
    duplicates: bool = True  # exact (and, with near_duplicates, near) duplicate removal
    near_duplicates: bool = True
    bench_images: bool = True
    bench_questions: bool = True

    def __post_init__(self):
        for name in ("phash_distance", "bench_phash_distance"):
            if not 0 <= getattr(self, name) < 64:
                raise ValueError(f"dedup.{name}: {getattr(self, name)} is not in 0..63")
        if self.question_ngram < 1 or self.min_question_words < 1 or self.template_images < 0:
            raise ValueError("dedup: question_ngram and min_question_words must be >= 1, template_images >= 0")


# ---------------------------------------------------------------- text
_PLACEHOLDER = r"<\|?\s*(?:image|img|imagehere|image_pad|vision_start|vision_end|vision_pad)[\s_#-]*\d*\s*\|?>"


def normalise_questions(texts: pa.Array) -> pa.Array:
    """``normalise_question`` over a whole string array (nulls become empty strings); large_string
    out, so millions of long questions do not overflow 32-bit offsets."""
    a = pc.fill_null(pc.cast(texts, pa.large_string()), "")
    a = pc.utf8_lower(pc.utf8_normalize(a, form="NFKC"))
    a = pc.replace_substring_regex(a, _PLACEHOLDER, " ")
    a = pc.replace_substring_regex(a, r"([^0-9])\.", r"\1 ")  # full stops go, decimal points stay
    a = pc.replace_substring_regex(a, r"\.([^0-9]|$)", r" \1")
    a = pc.replace_substring_regex(a, r"^\.", " ")
    a = pc.replace_substring_regex(a, "[?!,;:\"'`´‘’“”«»]", " ")
    a = pc.replace_substring_regex(a, r"[\s\p{Z}]+", " ")
    return pc.utf8_trim_whitespace(a)


def normalise_question(text: str | None) -> str:
    """Lower case, NFKC, no image placeholders or sentence punctuation, single spaces."""
    return normalise_questions(pa.array([text], pa.large_string()))[0].as_py()


def _labels(table: pa.Table) -> pa.Array:
    """Normalised answer and options of each record: what a copy of an item shares with it."""
    n = table.num_rows
    text = pa.large_string()
    answer = table.column("answer").combine_chunks() if "answer" in table.column_names else pa.nulls(n, text)
    if "choices" in table.column_names and n:
        choices = table.column("choices").combine_chunks()
        flat = normalise_questions(pc.list_flatten(choices))
        joined = pc.binary_join(pa.ListArray.from_arrays(_list_offsets(choices), flat), pa.scalar("\x1e", text))
    else:
        joined = pa.nulls(n, text)
    return pc.binary_join_element_wise(normalise_questions(answer), pc.cast(pc.fill_null(joined, ""), text),
                                       pa.scalar("\x1f", text))


def _list_offsets(lists: pa.ListArray) -> pa.Array:
    """Offsets of ``lists`` rebased to its flattened values (nulls count as empty lists)."""
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]))


def _index_in(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set``, -1 where absent."""
    return pc.fill_null(pc.index_in(values, value_set=value_set), -1).to_numpy(zero_copy_only=False).astype(np.int64)


class UnionFind:
    """Disjoint sets over 0..n-1 with batched (numpy) unions. A set's root is its smallest member,
    so labels do not depend on the order of the unions."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def _flatten(self) -> None:
        p = self.parent
        while True:
            q = p[p]
            if np.array_equal(q, p):
                break
            p = q
        self.parent = p

    def union(self, a, b) -> None:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        while a.size:
            self._flatten()
            ra, rb = self.parent[a], self.parent[b]
            differ = ra != rb
            lo, hi = np.minimum(ra, rb)[differ], np.maximum(ra, rb)[differ]
            np.minimum.at(self.parent, hi, lo)  # conflicting hooks: the smallest wins, the rest retry
            a, b = lo, hi

    def roots(self) -> np.ndarray:
        self._flatten()
        return self.parent.copy()


# ---------------------------------------------------------------- n-grams
_P = np.uint64(0x100000001B3)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads small word ids over 64 bits."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _ngram_hashes(texts: pa.Array, vocab: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit hash) of every n-word window whose words are all in ``vocab``."""
    words = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(words)
    offsets = _list_offsets(words).to_numpy()
    ids = _index_in(flat, vocab)
    unknown = ids < 0
    total = len(ids)
    if total < n:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    mixed = _mix(ids)
    starts = total - n + 1
    h = np.zeros(starts, np.uint64)
    for k in range(n):
        h = h * _P + mixed[k:k + starts]
    row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[:starts]
    bad = np.concatenate([[0], np.cumsum(unknown)])
    ok = (np.arange(starts) + n <= offsets[row + 1]) & (bad[n:n + starts] == bad[:starts])
    return row[ok], h[ok]


# ---------------------------------------------------------------- the decision
def find_drops(train: pa.Table, bench: pa.Table, priority: list[str], cfg: DedupConfig) -> pa.Table:
    """Decide which training records are dropped, and why (one DROPS row per dropped record).

    Both tables need source, id, original_id, question, image_sha256 and image_phash; answer and
    choices are used when present (hash matches then also need the same answer and options).
    ``bench``'s ``source`` is the benchmark name.
    """
    n, m = train.num_rows, bench.num_rows
    if not n:
        return DROPS.empty_table()
    rank = {s: i for i, s in enumerate(priority)}
    sources = train.column("source").combine_chunks()
    names = pc.unique(sources)
    src_rank = pa.array([rank.get(s, len(rank)) for s in names.to_pylist()], pa.int64())
    order = pc.sort_indices(pa.table({"r": pc.take(src_rank, pc.index_in(sources, value_set=names)),
                                      "s": sources, "i": train.column("id")}),
                            [("r", "ascending"), ("s", "ascending"), ("i", "ascending")]).to_numpy()
    pref = np.empty(n, np.int64)
    pref[order] = np.arange(n)  # lower is kept first
    border = (pc.sort_indices(bench, [("source", "ascending"), ("id", "ascending")]).to_numpy() if m
              else np.zeros(0, np.int64))
    bpref = np.empty(m, np.int64)
    bpref[border] = np.arange(m)

    # questions: normalise each distinct text once; qid = distinct normalised question
    raw = pc.dictionary_encode(pc.cast(train.column("question"), pa.large_string()).combine_chunks())
    nq_of_raw = normalise_questions(raw.dictionary)
    nq_enc = pc.dictionary_encode(nq_of_raw)
    qid = nq_enc.indices.to_numpy(zero_copy_only=False)[raw.indices.to_numpy(zero_copy_only=False)].astype(np.int64)
    train_nq = nq_enc.dictionary  # distinct normalised training questions, indexed by qid
    bench_nq = normalise_questions(bench.column("question").combine_chunks()) if m else pa.array([], pa.large_string())

    sha_codes = codes(pa.concat_arrays([pc.cast(train.column("image_sha256").combine_chunks(), pa.string()),
                                         pc.cast(bench.column("image_sha256").combine_chunks(), pa.string())]))
    sha, bsha = sha_codes[:n], sha_codes[n:]
    ph, ph_ok = phash_values(train.column("image_phash").combine_chunks())
    bph, bph_ok = phash_values(bench.column("image_phash").combine_chunks())
    if cfg.phash_needs_answer:
        label_codes = codes(pa.concat_arrays([_labels(train), _labels(bench)]))
    else:
        label_codes = np.zeros(n + m, np.int64)
    label, blabel = label_codes[:n], label_codes[n:]

    reason = np.full(n, -1, np.int8)  # index into REASONS, -1 kept
    match = np.full(n, -1, np.int64)  # a bench row (contamination) or a train row (duplicates)
    dist = np.full(n, -1, np.int64)

    def settle(rows: np.ndarray, r: int, matched: np.ndarray, d: np.ndarray) -> None:
        free = reason[rows] < 0
        rows, matched, d = rows[free], matched[free], d[free]
        reason[rows], match[rows], dist[rows] = r, matched, d

    if m and cfg.bench_images:
        _bench_images(settle, sha, bsha, ph, ph_ok, bph, bph_ok, label, blabel, bpref, border, cfg)
    if m and cfg.bench_questions:
        # an image's identity for template counts: its hash, so re-encoded copies count once
        phashes, shas = (pa.concat_arrays([pc.cast(t.column(c).combine_chunks(), pa.string()) for t in (train, bench)])
                         for c in ("image_phash", "image_sha256"))
        ident = codes(pc.coalesce(phashes, shas))
        _bench_questions(settle, qid, train_nq, ident[:n], bench_nq, ident[n:], bpref, border, cfg)
    if cfg.duplicates:
        _duplicates(settle, qid, sha, ph, ph_ok, label, pref, cfg)

    rows = np.flatnonzero(reason >= 0)
    idx = pa.array(rows, pa.int64())
    contaminated = pa.array(reason[rows] < 2)
    matched = match[rows]
    # matched row: a benchmark row for contamination, a training row for duplicates
    in_bench = pa.array(np.where(reason[rows] < 2, matched, 0), pa.int64())
    in_train = pa.array(np.where(reason[rows] < 2, 0, matched), pa.int64())

    def matched_column(name: str) -> pa.Array:
        from_train = pc.take(train.column(name), in_train).combine_chunks()
        from_bench = pc.take(bench.column(name), in_bench).combine_chunks() if m else from_train
        return pc.if_else(contaminated, from_bench, from_train)

    d = dist[rows]
    out = pa.table({
        "source": pc.take(train.column("source"), idx),
        "id": pc.take(train.column("id"), idx),
        "original_id": pc.take(train.column("original_id"), idx),
        "category": pa.array([CATEGORY[REASONS[r]] for r in reason[rows]], pa.string()),
        "reason": pa.array([REASONS[r] for r in reason[rows]], pa.string()),
        "matched_source": matched_column("source"),
        "matched_id": matched_column("id"),
        "distance": pa.array(d.astype(np.int32), pa.int32(), mask=d < 0),
        "question": pc.utf8_slice_codeunits(pc.take(train.column("question"), idx), 0, 300),
    }).cast(DROPS)
    return out.sort_by([("source", "ascending"), ("id", "ascending")])


def _bench_images(settle, sha, bsha, ph, ph_ok, bph, bph_ok, label, blabel, bpref, border, cfg) -> None:
    """bench_image: same bytes as a benchmark image, or a hash within bench_phash_distance (plus
    the same answer and options unless phash_needs_answer is off). Best match: fewest bits, then
    the first benchmark record by (benchmark, id)."""
    n = len(sha)
    best = np.full(n, np.iinfo(np.int64).max, np.int64)  # bits * 2^32 + bench preference
    scale = np.int64(1 << 32)
    # identical bytes
    first = np.full(int(max(sha.max(initial=-1), bsha.max(initial=-1))) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, bsha, bpref)
    hit = first[sha] < np.iinfo(np.int64).max
    best[hit] = first[sha[hit]]
    # perceptual hash: join the distinct (label, hash) of each side
    a_rows = np.flatnonzero(ph_ok)
    b_rows = np.flatnonzero(bph_ok)
    if len(a_rows) and len(b_rows):
        ga = group(label[a_rows], ph[a_rows])
        a_first = np.full(ga.max() + 1, -1, np.int64)
        a_first[ga] = a_rows  # any member stands for its group: same label and hash
        gb = group(blabel[b_rows], bph[b_rows])
        b_best = np.full(gb.max() + 1, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(b_best, gb, bpref[b_rows])
        b_first = border[np.minimum(b_best, len(border) - 1)]
        key_best = np.full(len(a_first), np.iinfo(np.int64).max, np.int64)
        for ia, ib, d in hamming_join(label[a_first], ph[a_first], blabel[b_first], bph[b_first],
                                      cfg.bench_phash_distance):
            np.minimum.at(key_best, ia, d * scale + b_best[ib])
        by_hash = ~hit[a_rows]  # identical bytes win over any hash match
        best[a_rows[by_hash]] = key_best[ga[by_hash]]
    rows = np.flatnonzero(best < np.iinfo(np.int64).max)
    bits = np.where(ph_ok[rows], best[rows] // scale, -1)
    # identical bytes: distance is 0 when the hashes are known
    settle(rows, 0, border[best[rows] % scale], bits)


def _bench_questions(settle, qid, train_nq, img, bench_nq, bimg, bpref, border, cfg) -> None:
    """bench_question: an identical normalised question of at least min_question_words words, or a
    shared question_ngram-word n-gram, unless that text is a template (seen with template_images
    distinct images or more over benchmark and training records)."""
    nq_count = int(qid.max()) + 1
    none = np.iinfo(np.int64).max
    best = np.full(nq_count, none, np.int64)  # bench preference of the match, per training question
    limit = cfg.template_images or none

    # identical questions
    words = pc.fill_null(pc.list_value_length(pc.utf8_split_whitespace(bench_nq)), 0).to_numpy(zero_copy_only=False)
    bcode = codes(bench_nq)
    long_enough = words >= cfg.min_question_words
    if long_enough.any():
        at = _index_in(train_nq, bench_nq)
        q_hit = np.flatnonzero(at >= 0)
        b_hit_code = bcode[at[q_hit]]
        # per bench question: its first record, and distinct images over bench and training
        bq_best = np.full(bcode.max() + 1, none, np.int64)
        np.minimum.at(bq_best, bcode[long_enough], bpref[long_enough])
        t_hit, t_rows = _rows_of(qid, q_hit)
        imgs = _distinct_count(np.concatenate([bcode, b_hit_code[t_hit]]), np.concatenate([bimg, img[t_rows]]),
                               bcode.max() + 1)
        ok = (bq_best[b_hit_code] < none) & (imgs[b_hit_code] < limit)
        best[q_hit[ok]] = bq_best[b_hit_code[ok]]

    # shared n-grams
    n = cfg.question_ngram
    vocab = pc.unique(pc.list_flatten(pc.utf8_split_whitespace(bench_nq)))
    brow, bhash = _ngram_hashes(bench_nq, vocab, n)
    if len(bhash):
        hashes, hinv = np.unique(bhash, return_inverse=True)
        h_best = np.full(len(hashes), none, np.int64)
        np.minimum.at(h_best, hinv, bpref[brow])
        matched_q, matched_h = [], []
        step = 100_000
        for start in range(0, len(train_nq), step):
            row, h = _ngram_hashes(train_nq.slice(start, step), vocab, n)
            pos = np.searchsorted(hashes, h)
            hit = (pos < len(hashes)) & (hashes[np.minimum(pos, len(hashes) - 1)] == h)
            qh = np.unique(np.stack([row[hit] + start, pos[hit]]), axis=1)
            matched_q.append(qh[0])
            matched_h.append(qh[1])
        mq, mh = np.concatenate(matched_q), np.concatenate(matched_h)
        pair, rows = _rows_of(qid, mq)
        h_imgs = _distinct_count(np.concatenate([hinv, mh[pair]]), np.concatenate([bimg[brow], img[rows]]), len(hashes))
        ok = h_imgs[mh] < limit
        np.minimum.at(best, mq[ok], h_best[mh[ok]])

    rows = np.flatnonzero(best[qid] < none)
    settle(rows, 1, border[best[qid[rows]]], np.full(len(rows), -1, np.int64))


def _rows_of(qid: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``wanted``, training row) for every record whose question id is in ``wanted``."""
    order = np.argsort(qid, kind="stable")
    sq = qid[order]
    lo = np.searchsorted(sq, wanted, "left")
    cnt = np.searchsorted(sq, wanted, "right") - lo
    pair = np.repeat(np.arange(len(wanted)), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    return pair, order[np.repeat(lo, cnt) + np.arange(len(pair)) - first]


def _distinct_count(group: np.ndarray, value: np.ndarray, size: int) -> np.ndarray:
    """Number of distinct ``value`` per ``group`` label (0..size-1)."""
    if not len(group):
        return np.zeros(size, np.int64)
    pairs = np.unique(np.stack([group, value]), axis=1)
    return np.bincount(pairs[0], minlength=size)


def _duplicates(settle, qid, sha, ph, ph_ok, label, pref, cfg) -> None:
    """Exact links (question, bytes) and near links (question, label, hash within phash_distance)
    form clusters; each keeps its preferred member, the others point at it."""
    n = len(qid)
    uf = UnionFind(n)
    exact = group(qid, sha)
    rep = np.full(exact.max() + 1, -1, np.int64)
    rep[exact] = np.arange(n)
    uf.union(np.arange(n), rep[exact])
    if cfg.near_duplicates:
        rows = np.flatnonzero(ph_ok)
        key = group(qid[rows], label[rows])
        node = group(key, ph[rows])  # identical question, label and hash: one node
        node_rep = np.full(node.max() + 1 if len(node) else 0, -1, np.int64)
        node_rep[node] = rows
        uf.union(rows, node_rep[node])
        node_key = np.zeros(len(node_rep), np.int64)
        node_key[node] = key
        node_ph = ph[node_rep]
        for ia, ib, _ in hamming_join(node_key, node_ph, node_key, node_ph, cfg.phash_distance):
            keep = ia < ib
            uf.union(node_rep[ia[keep]], node_rep[ib[keep]])
    root = uf.roots()
    keeper_pref = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(keeper_pref, root, pref)
    by_pref = np.empty(n, np.int64)
    by_pref[pref] = np.arange(n)
    keeper = by_pref[keeper_pref[root]]
    rows = np.flatnonzero(keeper != np.arange(n))
    k = keeper[rows]
    same_bytes = sha[rows] == sha[k]
    both = ph_ok[rows] & ph_ok[k]
    bits = np.where(both, np.bitwise_count(ph[rows] ^ ph[k]).astype(np.int64), -1)
    settle(rows[same_bytes], 2, k[same_bytes], bits[same_bytes])
    settle(rows[~same_bytes], 3, k[~same_bytes], bits[~same_bytes])


# ---------------------------------------------------------------- the step
def read_light(paths: list[str]) -> pa.Table:
    """The columns dedup needs from standardised shards (projection: never the image bytes)."""
    tables = []
    for path in paths:
        names = pq.read_schema(path).names
        cols = [c for c in COLUMNS if c in names]
        t = pq.read_table(path, columns=cols)
        for c in COLUMNS:
            if c not in t.column_names:
                typ = pa.list_(pa.string()) if c == "choices" else pa.string()
                t = t.append_column(c, pa.nulls(t.num_rows, typ))
        tables.append(t.select(COLUMNS))
    if not tables:
        return pa.table({c: pa.array([], pa.list_(pa.string()) if c == "choices" else pa.string()) for c in COLUMNS})
    return pa.concat_tables(tables, promote_options="permissive")


def dedup(std_paths: list[str], bench_paths: list[str], priority: list[str], cfg: DedupConfig,
          out: str, report: str) -> dict:
    """Write the DROPS table of all standardised shards to ``out`` and a TSV report to ``report``.

    Returns {source: {"records", "kept", <reason>: n, ...}} with every reason present.
    """
    train, bench = read_light(std_paths), read_light(bench_paths)
    drops = find_drops(train, bench, priority, cfg)
    schema.write_table(drops, out)
    counts = count_drops(train, drops)
    with open(report, "w", encoding="utf-8", newline="") as f:
        f.write(render_report(counts, drops, bench, train))
    log.info("dedup: %d records, %d dropped: %s", train.num_rows, drops.num_rows,
             {r: sum(c[r] for c in counts.values()) for r in REASONS})
    return counts


def count_drops(train: pa.Table, drops: pa.Table) -> dict:
    records = Counter(train.column("source").to_pylist())
    per = Counter(zip(drops.column("source").to_pylist(), drops.column("reason").to_pylist()))
    counts = {}
    for src in sorted(records):
        row = {r: per.get((src, r), 0) for r in REASONS}
        counts[src] = {"records": records[src], "kept": records[src] - sum(row.values()), **row}
    return counts


def _cell(value) -> str:
    return "" if value is None else " ".join(str(value).split())


def render_report(counts: dict, drops: pa.Table, bench: pa.Table, train: pa.Table) -> str:
    """Counts per source, then one line per contaminated record, then one line per duplicate
    (grouped by the kept copy, so a cluster reads as a block). Tab-separated, whitespace in
    questions folded to single spaces."""
    lines = ["# counts per source", "\t".join(["source", "records", "kept", *REASONS])]
    total = Counter()
    for src, row in counts.items():
        lines.append("\t".join(map(str, [src, row["records"], row["kept"], *(row[r] for r in REASONS)])))
        total.update(row)
    lines.append("\t".join(map(str, ["TOTAL", total["records"], total["kept"], *(total[r] for r in REASONS)])))
    bench_orig = dict(zip(bench.column("id").to_pylist(), bench.column("original_id").to_pylist()))
    kept = set(drops.filter(pc.equal(drops.column("category"), "duplicate")).column("matched_id").to_pylist())
    mask = pc.is_in(train.column("id"), value_set=pa.array(sorted(kept), pa.string()))
    kept_orig = dict(zip(pc.filter(train.column("id"), mask).to_pylist(),
                         pc.filter(train.column("original_id"), mask).to_pylist()))
    rows = sorted(drops.to_pylist(), key=lambda r: (r["matched_source"], r["matched_id"], r["source"], r["id"]))
    lines += ["", "# contamination: one line per training record that matches a benchmark item",
              "\t".join(["benchmark", "bench_id", "bench_original_id", "reason", "distance", "source", "id",
                         "original_id", "question"])]
    lines += ["\t".join(_cell(v) for v in (r["matched_source"], r["matched_id"], bench_orig.get(r["matched_id"]),
                                           r["reason"], r["distance"], r["source"], r["id"], r["original_id"],
                                           (r["question"] or "")[:120]))
              for r in rows if r["category"] == "contaminated"]
    lines += ["", "# duplicates: the kept copy, then each dropped copy of it",
              "\t".join(["kept_source", "kept_id", "kept_original_id", "reason", "distance", "source", "id",
                         "original_id", "question"])]
    lines += ["\t".join(_cell(v) for v in (r["matched_source"], r["matched_id"], kept_orig.get(r["matched_id"]),
                                           r["reason"], r["distance"],
                                           r["source"], r["id"], r["original_id"], (r["question"] or "")[:120]))
              for r in rows if r["category"] == "duplicate"]
    return "\n".join(lines) + "\n"
