"""Duplicate removal and benchmark decontamination (mmfr.dedup): small hand-built cases."""

import io
import math
import random
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from mmfr import dedup, images, nearhash, schema
from mmfr.dedup import DedupConfig

PRIORITY = ["alpha", "beta", "gamma"]
LONG_Q = ("A soft drink can has a height of 13 cm and a radius of 3 cm. Find L, the length of the "
          "longest straw that can fit into the can without bending.")


@lru_cache(maxsize=None)
def picture(seed: int) -> bytes:
    """A distinct PNG per seed: coloured rectangles, ellipses and a polygon, plus a caption."""
    rng = random.Random(seed)
    img = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(260), rng.randrange(180)
        box = (x, y, x + rng.randrange(30, 120), y + rng.randrange(30, 120))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour, outline="black")
    draw.polygon([(rng.randrange(320), rng.randrange(240)) for _ in range(3)], fill=(20, 20, 20))
    draw.text((8, 8), f"figure {seed}", fill="black")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def recoded(data: bytes, scale: float = 0.75, quality: int = 85) -> bytes:
    """What an aggregate source does to an image: resize and re-encode as JPEG."""
    img = images.decode(data)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def rec(source: str, oid: str, question: str, image: bytes, answer: str = "5", choices=()) -> dict:
    norm = images.normalise(image, 2048)
    sha = images.sha256(norm.data)
    return {"source": source, "id": schema.sample_id(source, oid, question, sha), "original_id": oid,
            "question": question, "answer": answer, "choices": list(choices), "image_sha256": sha,
            "image_phash": norm.phash, "image": norm.data}


LIGHT = pa.schema([(c, pa.list_(pa.string()) if c == "choices" else pa.string()) for c in dedup.COLUMNS])


def table(recs: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{c: r[c] for c in dedup.COLUMNS} for r in recs], schema=LIGHT)


def run(train: list[dict], bench: list[dict] = (), cfg: DedupConfig = DedupConfig()) -> dict:
    drops = dedup.find_drops(table(train), table(list(bench)), PRIORITY, cfg)
    assert drops.schema.equals(schema.DROPS)
    return {(r["source"], r["original_id"]): r for r in drops.to_pylist()}


def test_fixture_images_are_distinct_and_copies_are_close():
    hashes = [images.normalise(picture(i), 2048).phash for i in range(8)]
    assert min(images.hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 10
    for i in range(8):
        assert images.hamming(hashes[i], images.normalise(recoded(picture(i)), 2048).phash) <= 4


def test_normalise_question():
    n = dedup.normalise_question
    assert n("<image>\nWhat  is  ＸＹ?") == n("what is xy") == "what is xy"
    assert n("<image 1> <|image_pad|>Find x.") == "find x"
    assert n("Is 1.5 < 2?") == "is 1.5 < 2"
    assert n("What is 2+3?") != n("What is 2-3?")
    assert n("“Quoted”, he said; fine: yes!") == "quoted he said fine yes"
    assert n(None) == n("") == ""


def test_exact_duplicate_keeps_the_priority_source():
    img = picture(1)
    train = [rec("beta", "b1", LONG_Q, img), rec("alpha", "a1", LONG_Q, img), rec("alpha", "a2", LONG_Q, img),
             rec("zeta", "z1", LONG_Q, img), rec("beta", "b2", "Another question about the same figure?", img)]
    drops = run(train)
    kept = min((r for r in train if r["source"] == "alpha"), key=lambda r: r["id"])  # ties: by id
    everyone = {("beta", "b1"), ("alpha", "a1"), ("alpha", "a2"), ("zeta", "z1")}
    assert set(drops) == everyone - {("alpha", kept["original_id"])}
    for d in drops.values():
        assert (d["category"], d["reason"]) == ("duplicate", "exact_duplicate")
        assert (d["matched_source"], d["matched_id"], d["distance"]) == ("alpha", kept["id"], 0)


def test_near_duplicate_needs_the_same_question_and_answer():
    img = picture(2)
    train = [rec("alpha", "a1", LONG_Q, img),
             rec("beta", "copy", "<image>\n" + LONG_Q.upper(), recoded(img)),  # re-encoded copy, same question
             rec("beta", "other_q", "Which colour is the largest rectangle in the figure?", recoded(img)),
             rec("beta", "other_a", LONG_Q, recoded(img, 0.5), answer="7")]
    drops = run(train)
    assert set(drops) == {("beta", "copy")}
    d = drops["beta", "copy"]
    assert d["reason"] == "near_duplicate" and d["matched_source"] == "alpha" and 0 <= d["distance"] <= 4
    loose = run(train, cfg=DedupConfig(phash_needs_answer=False))
    assert set(loose) == {("beta", "copy"), ("beta", "other_a")}
    assert run(train, cfg=DedupConfig(near_duplicates=False)) == {}
    assert run(train, cfg=DedupConfig(duplicates=False)) == {}


def test_several_questions_about_one_image_are_kept():
    img = picture(3)
    questions = ["Which part of the diagram is the root?", "What does the arrow from A point to?",
                 "How many stages are shown?"]
    train = [rec("alpha", str(i), q, img) for i, q in enumerate(questions)]
    assert run(train) == {}


def test_union_find_is_transitive_with_smallest_roots():
    uf = dedup.UnionFind(7)
    uf.union([5, 3], [6, 4])
    uf.union([4], [6])
    uf.union([2], [1])
    assert uf.roots().tolist() == [0, 1, 1, 3, 3, 3, 3]
    # a chain of hashes 4 bits apart links records 8 bits apart into one cluster
    base = rec("alpha", "a", LONG_Q, picture(4))
    chain = [{**base, "source": s, "original_id": s, "id": f"{s}-id", "image_sha256": f"sha-{s}", "image_phash": h}
             for s, h in (("alpha", "0000000000000000"), ("beta", "000000000000000f"), ("gamma", "00000000000000ff"))]
    drops = run(chain)
    assert {k: (d["reason"], d["matched_id"], d["distance"]) for k, d in drops.items()} == {
        ("beta", "beta"): ("near_duplicate", "alpha-id", 4), ("gamma", "gamma"): ("near_duplicate", "alpha-id", 8)}


def test_benchmark_image_is_contamination(tmp_path):
    bench = [rec("mathvista", "pid-17", "What is the value of the largest bar in the chart?", picture(5), answer="42"),
             rec("mathvista", "pid-18", "What is x?", picture(6), answer="3")]
    train = [rec("alpha", "same_bytes", "Describe the figure and answer the question.", picture(5), answer="9"),
             rec("beta", "recoded", "What is shown here? Answer with a number.", recoded(picture(6)), answer="3"),
             rec("beta", "recoded_other_answer", "What is shown here?", recoded(picture(6)), answer="8"),
             rec("gamma", "clean", "What is x?", picture(7), answer="3")]
    drops = run(train, bench)
    assert set(drops) == {("alpha", "same_bytes"), ("beta", "recoded")}
    d = drops["alpha", "same_bytes"]
    assert (d["category"], d["reason"], d["matched_source"], d["matched_id"], d["distance"]) == (
        "contaminated", "bench_image", "mathvista", bench[0]["id"], 0)
    assert drops["beta", "recoded"]["matched_id"] == bench[1]["id"] and drops["beta", "recoded"]["distance"] <= 4
    assert run(train, bench, DedupConfig(bench_images=False)) == {}
    # the report names the benchmark and its item
    paths = write_shards(tmp_path, train, bench)
    dedup.dedup(paths["std"], paths["bench"], PRIORITY, DedupConfig(), str(tmp_path / "d.parquet"),
                str(tmp_path / "r.tsv"))
    report = (tmp_path / "r.tsv").read_text()
    assert "mathvista\t" + bench[0]["id"] + "\tpid-17\tbench_image\t0\talpha" in report


def test_benchmark_question_long_yes_short_no():
    bench = [rec("mathverse", "b1", LONG_Q, picture(8)), rec("mathverse", "b2", "What is x?", picture(9))]
    train = [rec("alpha", "long", "<image>" + LONG_Q + "  ", picture(10), answer="1"),
             rec("alpha", "short", "What is x?", picture(11), answer="2")]
    drops = run(train, bench)
    assert set(drops) == {("alpha", "long")}
    d = drops["alpha", "long"]
    assert (d["reason"], d["matched_source"], d["matched_id"], d["distance"]) == (
        "bench_question", "mathverse", bench[0]["id"], None)
    assert run(train, bench, DedupConfig(bench_questions=False)) == {}


def test_benchmark_ngram_overlap():
    words = ("in the figure the quadrilateral abcd is inscribed in a circle with centre o and the diagonal ac "
             "bisects angle bad find the measure of angle bcd").split()
    bench = [rec("mathvision", "b", " ".join(words) + ".", picture(12))]
    thirteen = "Hint: think step by step. " + " ".join(words[5:18]) + ", then give the area of the circle."
    twelve = "Hint: think step by step. " + " ".join(words[5:17]) + ", then give the area of the circle."
    train = [rec("alpha", "13", thirteen, picture(13)), rec("alpha", "12", twelve, picture(14))]
    drops = run(train, bench)
    assert set(drops) == {("alpha", "13")} and drops["alpha", "13"]["reason"] == "bench_question"
    # with 12-grams both match (the guard is off: the shared 12 words are seen with 3 images here)
    cfg = DedupConfig(question_ngram=12, template_images=0)
    assert set(run(train, bench, cfg)) == {("alpha", "13"), ("alpha", "12")}


def test_template_questions_are_not_evidence():
    prompt = ("According to the question shown in the image, please directly answer the question and "
              "provide the final value.")
    bench = [rec("mathverse", f"v{i}", prompt, picture(20 + i), answer=str(i)) for i in range(3)]
    train = [rec("alpha", "t", prompt, picture(30), answer="4"),
             rec("alpha", "n", "Question 7: " + prompt + " Be brief.", picture(31), answer="4")]
    assert run(train, bench) == {}  # seen with 5 distinct images: a template
    assert set(run(train, bench, DedupConfig(template_images=0))) == {("alpha", "t"), ("alpha", "n")}
    # one benchmark image: the question is seen with 2 images, its n-grams with 3 (t's and n's)
    assert set(run(train, bench[:1], DedupConfig(template_images=3))) == {("alpha", "t")}
    assert set(run(train, bench[:1], DedupConfig(template_images=4))) == {("alpha", "t"), ("alpha", "n")}


def test_contamination_is_reported_before_duplication():
    bench = [rec("mmstar", "b", "Which option is correct for the circuit shown?", picture(15), answer="B")]
    train = [rec("alpha", "a", "Explain the circuit.", picture(15)),
             rec("beta", "b", "Explain the circuit.", picture(15))]
    drops = run(train, bench)
    assert {k: d["reason"] for k, d in drops.items()} == {("alpha", "a"): "bench_image", ("beta", "b"): "bench_image"}


def test_hamming_join_finds_every_close_pair():
    rng = np.random.default_rng(0)
    ph = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (400, 6)).astype(np.uint64)
    close = ph[rng.integers(0, 400, 400)] ^ np.bitwise_xor.reduce(flips[:, :rng.integers(0, 7)], axis=1)
    a, b = ph, np.concatenate([close, ph[:50]])
    ka, kb = rng.integers(0, 3, len(a)), rng.integers(0, 3, len(b))
    for d in (0, 3, 6):
        found = {(int(i), int(j))
                 for ia, ib, _ in nearhash.hamming_join(ka, a, kb, b, d, chunk=64) for i, j in zip(ia, ib)}
        dist = np.bitwise_count(a[:, None] ^ b[None, :])
        truth = {(int(i), int(j)) for i, j in np.argwhere((dist <= d) & (ka[:, None] == kb[None, :]))}
        assert found == truth and truth


@pytest.mark.parametrize("extra", nearhash.EXTRA_BANDS)
def test_every_band_layout_finds_every_close_pair_of_concentrated_hashes(extra):
    """Hashes of text on white: most bits fixed, the rest set with skewed odds. Each layout the
    join may choose finds exactly the brute-force pairs, and the join chooses a wider one here."""
    rng = np.random.default_rng(1)
    odds = np.where(np.arange(64) % 4 == 0, 0.5, np.where(np.arange(64) % 4 == 1, 0.02, 0.97))
    bits = (rng.random((600, 64)) < odds).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    ph = np.bitwise_or.reduce(bits, axis=1)
    key = rng.integers(0, 2, len(ph))
    d = 4
    masks = nearhash.layout(d, extra, ph)
    assert len(masks) == math.comb(d + 1 + extra, extra + 1)
    assert np.bitwise_or.reduce(nearhash.balanced_sets(d + 1 + extra, ph)) == np.uint64(2**64 - 1)
    found = {(int(i), int(j)) for ia, ib, _ in nearhash.join_on_bands(key, ph, key, ph, d, masks, chunk=500)
             for i, j in zip(ia, ib)}
    dist = np.bitwise_count(ph[:, None] ^ ph[None, :])
    truth = {(int(i), int(j)) for i, j in np.argwhere((dist <= d) & (key[:, None] == key[None, :]))}
    assert found == truth and len(truth) > len(ph)


def test_the_join_widens_its_layout_only_for_concentrated_hashes():
    rng = np.random.default_rng(2)
    odds = np.where(np.arange(64) % 4 == 0, 0.5, np.where(np.arange(64) % 4 == 1, 0.02, 0.97))
    bits = (rng.random((40_000, 64)) < odds).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    concentrated = np.bitwise_or.reduce(bits, axis=1)
    spread = rng.integers(0, 2**63, 40_000, dtype=np.int64).astype(np.uint64)
    key = np.zeros(40_000, np.int64)
    assert len(nearhash.cheapest_layout(key, spread, key, spread, 4)) == 5
    assert len(nearhash.cheapest_layout(key, concentrated, key, concentrated, 4)) > 5


def write_shards(tmp_path, train: list[dict], bench: list[dict]) -> dict:
    """Records in the RECORD layout (with image bytes), one shard per source, as standardise writes them."""
    paths = {"std": [], "bench": []}
    for kind, recs in (("std", train), ("bench", bench)):
        for source in sorted({r["source"] for r in recs}):
            rows = [{**{f.name: None for f in schema.RECORD}, **{k: v for k, v in r.items() if k != "image"},
                     "image": {"bytes": r["image"], "path": None}} for r in recs if r["source"] == source]
            path = tmp_path / f"{kind}-{source}.parquet"
            rows.sort(key=lambda r: r["id"])
            schema.write_table(pa.Table.from_pylist(rows, schema=schema.RECORD), str(path))
            paths[kind].append(str(path))
    return paths


def test_dedup_is_deterministic_and_counts_add_up(tmp_path):
    bench = [rec("demo_bench", "b1", LONG_Q, picture(40)), rec("demo_bench", "b2", "What is x?", picture(41))]
    train = [rec("alpha", "a1", "How many circles are there in the figure above?", picture(42)),
             rec("beta", "b1", "How many circles are there in the figure above?", picture(42)),
             rec("beta", "b2", "How many circles are there in the figure above?", recoded(picture(42))),
             rec("gamma", "g1", LONG_Q, picture(43)), rec("gamma", "g2", "Name the shape.", picture(41)),
             rec("gamma", "g3", "What is the perimeter of the triangle?", picture(44))]
    paths = write_shards(tmp_path, train, bench)
    outputs = []
    for run_no, std in enumerate([paths["std"], paths["std"][::-1]]):  # input order does not matter either
        out, report = tmp_path / f"drops{run_no}.parquet", tmp_path / f"report{run_no}.tsv"
        counts = dedup.dedup(std, paths["bench"], PRIORITY, DedupConfig(), str(out), str(report))
        outputs.append((out.read_bytes(), report.read_bytes(), counts))
    assert outputs[0] == outputs[1]
    drops = pq.read_table(tmp_path / "drops0.parquet")
    assert drops.schema.equals(schema.DROPS)
    reasons = dict(zip(drops.column("original_id").to_pylist(), drops.column("reason").to_pylist()))
    assert reasons == {"b1": "exact_duplicate", "b2": "near_duplicate", "g1": "bench_question", "g2": "bench_image"}
    counts = outputs[0][2]
    assert sum(c["records"] for c in counts.values()) == len(train)
    assert sum(c["records"] - c["kept"] for c in counts.values()) == drops.num_rows
    for c in counts.values():
        assert c["records"] == c["kept"] + sum(c[r] for r in dedup.REASONS)
    assert counts["beta"] == {"records": 2, "kept": 0, "bench_image": 0, "bench_question": 0,
                              "exact_duplicate": 1, "near_duplicate": 1}
    assert "image" not in dedup.read_light(paths["std"]).column_names


def test_config_defaults_and_checks():
    assert DedupConfig(**{}) == DedupConfig()
    with pytest.raises(ValueError):
        DedupConfig(phash_distance=64)
    with pytest.raises(TypeError):
        DedupConfig(phash_distanse=4)
    assert dedup.find_drops(table([]), table([]), PRIORITY, DedupConfig()).num_rows == 0


def test_matches_a_brute_force_reference():
    """find_drops against an all-pairs implementation of the same rules (n-grams off)."""
    rng = random.Random(7)
    questions = [f"question number {i} asks about the figure with many words in it" for i in range(150)] + ["short one"]

    def fake(source, i, base=None):
        q, a, ph = (base["question"], base["answer"], int(base["image_phash"], 16)) if base else (
            rng.choice(questions), str(rng.randrange(3)), rng.getrandbits(64))
        sha = f"sha{rng.getrandbits(40)}"
        if base and rng.random() < 0.4:  # a copy: the same bytes...
            sha = base["image_sha256"]
        elif base:  # ...or a re-encoding a few bits off
            for _ in range(rng.choice([0, 1, 2, 3, 5])):
                ph ^= 1 << rng.randrange(64)
        return {"source": source, "id": f"{i:04d}", "original_id": str(i), "question": q, "answer": a, "choices": [],
                "image_sha256": sha, "image_phash": f"{ph:016x}"}

    train = []
    for i in range(300):
        base = train[rng.randrange(len(train))] if train and rng.random() < 0.4 else None
        train.append(fake(rng.choice(PRIORITY + ["zeta"]), i, base))
    bench = [fake("bench", 1000 + i, train[rng.randrange(300)] if i % 2 else None) for i in range(30)]
    bench = [{**b, "source": rng.choice(["bench_a", "bench_b"])} for b in bench]
    cfg = DedupConfig(question_ngram=60, template_images=4)

    norm = {q: dedup.normalise_question(q) for q in questions}.__getitem__
    bits = lambda a, b: images.hamming(a["image_phash"], b["image_phash"])  # noqa: E731
    rank = lambda r: (PRIORITY.index(r["source"]) if r["source"] in PRIORITY else 9, r["source"], r["id"])  # noqa: E731
    brank = lambda b: (b["source"], b["id"])  # noqa: E731
    expect = {}
    for r in train:
        same = [b for b in bench if b["image_sha256"] == r["image_sha256"]]
        near = [b for b in bench if b["answer"] == r["answer"] and bits(r, b) <= cfg.bench_phash_distance]
        if same:
            b = min(same, key=brank)
            expect[r["id"]] = ("bench_image", b["id"], 0)
        elif near:
            b = min(near, key=lambda b: (bits(r, b), brank(b)))
            expect[r["id"]] = ("bench_image", b["id"], bits(r, b))
            continue
        if r["id"] in expect:
            continue
        q = norm(r["question"])
        shown = {x["image_phash"] for x in bench + train if norm(x["question"]) == q}
        hits = [b for b in bench if norm(b["question"]) == q and len(q.split()) >= cfg.min_question_words]
        if hits and len(shown) < cfg.template_images:
            expect[r["id"]] = ("bench_question", min(hits, key=brank)["id"], None)
    parent = list(range(len(train)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i, a in enumerate(train):
        for j, b in enumerate(train[:i]):
            near = a["answer"] == b["answer"] and bits(a, b) <= cfg.phash_distance
            if norm(a["question"]) == norm(b["question"]) and (a["image_sha256"] == b["image_sha256"] or near):
                parent[find(i)] = find(j)
    clusters = {}
    for i, r in enumerate(train):
        clusters.setdefault(find(i), []).append(r)
    for members in clusters.values():
        keep = min(members, key=rank)
        for r in members:
            if r is not keep and r["id"] not in expect:
                reason = "exact_duplicate" if r["image_sha256"] == keep["image_sha256"] else "near_duplicate"
                expect[r["id"]] = (reason, keep["id"], bits(r, keep))

    drops = dedup.find_drops(table(train), table(bench), PRIORITY, cfg).to_pylist()
    got = {d["id"]: (d["reason"], d["matched_id"], d["distance"]) for d in drops}
    assert got == expect
    assert {r for r, *_ in expect.values()} == set(dedup.REASONS)  # every rule was exercised
