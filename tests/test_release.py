"""Starting from the published MMFineReason release: its rows read into an index, its texts as the
teacher's answers (``backend: release``), and the round trip of the demo's own build through the
release layout (fixtures: tests/fixtures/release, real rows of the Full-2.3M; see its README)."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import DEMO_CONFIGS, snakemake
from mmfr import schema
from mmfr.generate import ModelRole, Request
from mmfr.release import COLUMNS, RELEASE, ReleaseBackend, build_index, question_text, release_key

FIXTURES = Path(__file__).parent / "fixtures" / "release"


def release_folder(tmp_path) -> Path:
    """The fixture rows as a release on disk: one parquet per source, images as the Hub stores them."""
    rows = [json.loads(line) for line in (FIXTURES / "full_2.3m_sample.jsonl").read_text().splitlines()]
    for row in rows:
        if row.get("image"):
            row["image"] = {"bytes": (FIXTURES / row["image"]["path"]).read_bytes(), "path": row["image"]["path"]}
    out = tmp_path / "release"
    for row in rows:
        folder = out / row["source"]
        folder.mkdir(parents=True)
        table = pa.Table.from_pylist([row])
        pq.write_table(table, folder / "train-00000-of-00001.parquet")
    return out


def test_a_question_is_the_same_with_or_without_the_release_s_image_marker():
    assert question_text("<image>How many  cubes?\n") == question_text("How many cubes?") == "how many cubes?"
    assert release_key("<image> Q", b"png") == release_key("q", b"png") != release_key("q", b"jpg")


def test_the_index_holds_every_release_row_and_the_backend_answers_from_it(tmp_path):
    folder = release_folder(tmp_path)
    counts = build_index(str(folder), str(tmp_path / "index.parquet"))
    assert counts == {"rows": 5, "indexed": 5, "no_question": 0, "duplicate_key": 0}
    rows = [json.loads(line) for line in (FIXTURES / "full_2.3m_sample.jsonl").read_text().splitlines()]
    euclid = rows[0]
    image = (FIXTURES / euclid["image"]["path"]).read_bytes()
    role = ModelRole.from_config({"backend": "release", "model": str(folder), "revision": "fixture",
                                  "index": str(tmp_path / "index.parquet")}, "models.trace")
    backend = ReleaseBackend(role)

    def ask(task, question, img, index=0):
        req = Request("ours", (), (img,), index, 0, {"task": task, "original_question": question})
        return next(backend.generate([req], ["k"]))

    # found by the question as the source gave it (ori_question, or question where cleaning left it)
    trace = ask("trace", euclid["ori_question"].removeprefix("<image>"), image)
    assert (trace.finish_reason, trace.text) == ("stop", euclid[COLUMNS["trace"]])
    assert ask("caption", euclid["ori_question"], image).text == euclid["caption"]
    llava = rows[3]
    assert ask("trace", llava["question"], (FIXTURES / llava["image"]["path"]).read_bytes()).text.startswith("<think>")
    # another image, a second sample, another task: said, never guessed
    assert ask("trace", euclid["ori_question"], b"other").error == "not in the release"
    assert ask("trace", euclid["ori_question"], image, index=1).error == "the release holds one trace per question"
    assert "not 'clean'" in ask("clean", euclid["ori_question"], image).error


def test_a_record_whose_image_bytes_differ_is_matched_by_the_same_question_and_image_content(tmp_path):
    """A release that re-encoded its images (or ours, turned upright): the real rows' images tripled in
    size and saved as JPEG still find their row; the same question with another image, another
    question with the same image, or another answer, does not; a distance of 0 bits asks for the
    same hash."""
    import io

    from PIL import Image

    from mmfr.images import phash_of
    from mmfr.release import lookup, wanted_table

    folder = release_folder(tmp_path)
    build_index(str(folder), str(tmp_path / "index.parquet"))
    rows = [json.loads(line) for line in (FIXTURES / "full_2.3m_sample.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("image")]
    questions = [r.get("ori_question") or r["question"] for r in rows]

    def reencoded(row) -> bytes:
        img = Image.open(FIXTURES / row["image"]["path"]).convert("RGB")
        out = io.BytesIO()
        img.resize((img.width * 3, img.height * 3), Image.Resampling.BICUBIC).save(out, "JPEG", quality=85)
        return out.getvalue()

    images = [reencoded(r) for r in rows]
    answers = [r["answer"] for r in rows]
    wanted = wanted_table(questions, images, [None] * len(rows), answers)
    found = lookup(str(tmp_path / "index.parquet"), wanted, ["id", "trace"])
    assert [f and f["id"] for f in found] == [str(r["id"]) for r in rows]
    assert [f["trace"] for f in found] == [r[COLUMNS["trace"]] for r in rows]
    swapped = wanted_table(questions, images[1:] + images[:1], [None] * len(rows), answers)
    assert lookup(str(tmp_path / "index.parquet"), swapped, ["id"]) == [None] * len(rows)
    other = wanted_table(["another question"], images[:1], [None], answers[:1])
    assert lookup(str(tmp_path / "index.parquet"), other, ["id"]) == [None]
    # another answer to the same question on the same picture: a different item, as in dedup
    wrong = wanted_table(questions[:1], images[:1], [None], ["not " + str(answers[0])])
    assert lookup(str(tmp_path / "index.parquet"), wrong, ["id"]) == [None]
    same_hash = [phash_of(r) == phash_of((FIXTURES / row["image"]["path"]).read_bytes()) for r, row in zip(images, rows)]
    exact = lookup(str(tmp_path / "index.parquet"), wanted, ["id"], distance=0)
    assert [f is not None for f in exact] == same_hash and not all(same_hash)


def test_a_release_is_read_at_a_pinned_revision_and_answers_only_teacher_roles(tmp_path):
    from mmfr.config import ConfigError, check_config
    from mmfr.plan import load_config

    from conftest import REPO

    config = load_config([str(REPO / "config.yaml")])
    config["models"]["trace"] = {"backend": "release", "model": "OpenDataArena/x", "revision": None}
    with pytest.raises(ConfigError, match="models.trace.revision: a release is read at a pinned revision"):
        check_config(config)
    config["models"]["trace"]["revision"] = "abc"
    config["models"]["judge"] = {"backend": "release", "model": "OpenDataArena/x", "revision": "abc"}
    with pytest.raises(ConfigError, match="models.judge.backend: a release answers captions and traces only"):
        check_config(config)


def check_compare(build: Path, release: Path, tmp_path: Path, mmfr: Path) -> None:
    """mmfr compare: the build against its own export matches everything and its subset overlaps
    fully; against a copy with 3 rows dropped, 2 answers changed, 4 verdicts flipped and 2 images
    re-encoded as JPEG in one source, and rows of the released subset dropped, it reports exactly
    those differences (the re-encoded rows matched by image content)."""
    import io
    import shutil
    import subprocess

    import duckdb
    from PIL import Image

    def run(*args):
        proc = subprocess.run([str(mmfr), "compare", *args], cwd=build, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        con = duckdb.connect(str(build / "results/release_compare.duckdb"), read_only=True)
        sources = {r[0]: r[1:7] for r in con.execute(
            "SELECT source, records, matched, answers_agree, verdicts_agree, pass_rate_mean_abs_diff, "
            "matched_by_image_content FROM release_sources").fetchall()}
        subsets = con.execute("SELECT subset, ours, theirs, in_both, jaccard FROM release_subsets").fetchall()
        return sources, subsets

    subset = tmp_path / "mfr123k"
    subprocess.run([str(mmfr), "export-release", str(subset), "--subset", "mfr123k"], cwd=build, check=True,
                   capture_output=True)
    sources, subsets = run(str(release), "--subset", f"mfr123k={subset}")
    assert all(n == matched == answers == verdicts and diff in (0.0, None) and not by_content
               for n, matched, answers, verdicts, diff, by_content in sources.values()), sources
    n_subset = subsets[0][1]
    assert subsets == [("mfr123k", n_subset, n_subset, n_subset, 1.0)] and n_subset > 0
    perturbed = tmp_path / "perturbed"
    shutil.copytree(release, perturbed)
    shutil.copytree(subset, tmp_path / "perturbed_subset")
    name = sorted(sources)[-1]
    path = next((perturbed / name).glob("*.parquet"))
    rows = pq.read_table(path).to_pylist()[3:]
    for r in rows[:2]:
        r["answer"] = "not the answer"
    for r in rows[2:6]:
        r["is_consistent"] = not r["is_consistent"]
    for r in rows[6:8]:
        out = io.BytesIO()
        Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB").save(out, "JPEG", quality=95)
        r["image"]["bytes"] = out.getvalue()
    schema.write_table(pa.Table.from_pylist(rows, schema=RELEASE), str(path))
    cut = next((tmp_path / "perturbed_subset").rglob("*.parquet"))
    removed = min(5, pq.read_metadata(cut).num_rows)
    schema.write_table(pq.read_table(cut).slice(removed), str(cut))
    changed, subsets = run(str(perturbed), "--subset", f"mfr123k={tmp_path / 'perturbed_subset'}")
    n = sources[name][0]
    assert changed[name][:4] == (n, n - 3, n - 5, n - 7) and changed[name][5] == 2 and {s: changed[s] for s in changed if s != name} == \
        {s: sources[s] for s in sources if s != name}
    kept = n_subset - removed
    assert subsets == [("mfr123k", n_subset, kept, kept, round(kept / n_subset, 4))] and removed


@pytest.mark.workflow
def test_the_demo_rebuilt_from_its_own_release_has_the_same_verified_sets_and_subsets(demo_run, tmp_path):
    """Export the reduced demo's build in the release layout, then build the datasets again with that
    release as both teachers and its pass rates: no caption or trace comes from the scripted teacher
    and no pass rate from the proxy, and the verified shards and subsets are byte for byte the
    original build's."""
    import subprocess
    import sys

    release = tmp_path / "release"
    mmfr = Path(sys.executable).parent / "mmfr"
    proc = subprocess.run([str(mmfr), "export-release", str(release)], cwd=demo_run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sources = json.loads((release / "release.json").read_text())["rows"]
    assert sources and set(sources) == {p.name for p in (demo_run / "data/clean").iterdir() if p.is_dir()}
    exported = pq.read_table(next(release.glob("*/*.parquet")))
    assert exported.schema.names[:4] == ["question", "id", "original_answer", COLUMNS["trace"]]
    check_compare(demo_run, release, tmp_path, mmfr)
    overlay = tmp_path / "from-release.yaml"
    block = {"backend": "release", "model": str(release), "revision": "demo-export"}
    compare = {"release": str(release), "subsets": {"mfr123k": str(tmp_path / "mfr123k")}}  # check_compare's export
    overlay.write_text(json.dumps({"models": {"caption": block, "trace": block}, "difficulty": {"from_release": True},
                                   "compare": compare}))
    rebuilt = tmp_path / "rebuilt"
    snakemake(rebuilt, "datasets", "results/release_compare.duckdb", configs=(*DEMO_CONFIGS, str(overlay)))
    import duckdb  # rule release_compare: the rebuild beside the release it was built from

    con = duckdb.connect(str(rebuilt / "results/release_compare.duckdb"), read_only=True)
    assert con.execute("SELECT sum(records) = sum(matched) AND sum(records) = sum(verdicts_agree) "
                       "FROM release_sources").fetchone() == (True,)
    assert con.execute("SELECT in_both = ours AND jaccard = 1 FROM release_subsets").fetchall() == [(True,)]
    traces = pq.read_table(rebuilt / "data/traces").to_pylist()
    assert {t["model"] for t in traces} == {str(release)} and not [t for t in traces if t["error"]]
    rates = pq.read_table(rebuilt / "data/passrate").to_pylist()  # the release's pass rates, no proxy call
    assert rates and {(r["model"], r["k"]) for r in rates} == {(str(release), 4)}
    for stage in ("verified", "subsets"):
        before = sorted(p.relative_to(demo_run) for p in (demo_run / "data" / stage).rglob("*") if p.is_file())
        after = sorted(p.relative_to(rebuilt) for p in (rebuilt / "data" / stage).rglob("*") if p.is_file())
        assert before == after and before
        assert all((demo_run / p).read_bytes() == (rebuilt / p).read_bytes() for p in before), stage
