"""Standardisation: canonical records, static sharding, image normalisation and the quarantine."""

import io
import os
import json
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmfr import images, schema, sources
from mmfr.exclusions import Exclusions
from mmfr.schema import RAW
from mmfr.sources import ImagePolicy, Reject, standardise, to_canonical, unpack


def png(w=64, h=48, mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color if mode == "RGB" else None).save(buf, "PNG")
    return buf.getvalue()


def jpeg(w=64, h=48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def huge_header_png(w=30000, h=30000) -> bytes:
    """A small real PNG whose IHDR claims w x h pixels (a decompression-bomb header)."""
    data = bytearray(png(8, 8))
    ihdr = bytes(data[12:16]) + struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def flipped_png() -> bytes:
    """A PNG whose compressed pixel data is damaged."""
    data = bytearray(png(200, 200))
    i = data.find(b"IDAT")
    data[i + 10:i + 20] = b"\x00" * 10
    return bytes(data)


def row(original_id, question="How many?", answer="3", images_=None, answer_type="number", solution=None,
        origin=None):
    return {"original_id": original_id, "question": question, "answer": answer, "solution": solution,
            "answer_type": answer_type, "choices": [], "images": [png()] if images_ is None else images_,
            "metadata": "{}", "domain": "math", "origin": origin}


# original_id → (row, category, reason)
BAD = {
    "not_an_image": (row("not_an_image", images_=[b"plain text, not an image"]), "quarantined", "image_corrupt"),
    "corrupt_png": (row("corrupt_png", images_=[flipped_png()]), "quarantined", "image_corrupt"),
    "truncated_jpeg": (row("truncated_jpeg", images_=[jpeg(256, 256)[:300]]), "quarantined", "image_truncated"),
    "huge": (row("huge", images_=[huge_header_png()]), "quarantined", "image_too_large"),
    "no_answer": (row("no_answer", answer=None), "quarantined", "missing_answer"),
    "empty_question": (row("empty_question", question="   "), "quarantined", "empty_question"),
    "mojibake": (row("mojibake", question="Combien de c\ufffd\ufffdt\ufffds ?"), "quarantined", "non_utf8"),
    "no_image": (row("no_image", images_=[]), "quarantined", "image_missing"),
    "multi_image": (row("multi_image", images_=[png(), png()]), "excluded", "multi_image"),
    "clevr": (row("clevr", origin="CLEVR-Math"), "excluded", "excluded_origin"),
}
SPEC = {"name": "src", "license": "CC0-1.0", "adapter": "raw"}
RECIPE = Exclusions(multi_image=True, origins=("clevr", "geo170k(align)", "pathvqa", "exams-v"))


def test_bad_records_are_dropped_with_the_right_reason_and_the_accounting_adds_up(tmp_path):
    good = [row(f"good{i}", question=f"How many squares? ({i})") for i in range(20)]
    solution_only = row("solution_only", answer=None, solution="Two plus two. So we get 4.")
    raw = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pylist(good + [solution_only] + [r for r, *_ in BAD.values()], schema=RAW), raw)
    shards = [str(tmp_path / f"{i:05d}.parquet") for i in range(3)]
    counts = standardise(str(raw), SPEC, shards, str(tmp_path / "dropped.parquet"), str(tmp_path / "counts.json"),
                         ImagePolicy(max_side=32), RECIPE)
    dropped = {r["original_id"]: (r["category"], r["reason"])
               for r in pq.read_table(tmp_path / "dropped.parquet").to_pylist()}
    assert dropped == {k: (category, reason) for k, (_, category, reason) in BAD.items()}
    kept = [r for s in shards for r in pq.read_table(s).to_pylist()]
    assert len(kept) == 21  # the solution-only record waits for answer extraction
    assert [r["solution"] for r in kept if r["answer"] is None] == ["Two plus two. So we get 4."]
    dropped_n = sum(n for by_reason in counts["dropped"].values() for n in by_reason.values())
    assert counts["raw"] == counts["kept"] + dropped_n == 31
    assert counts["dropped"]["excluded"] == {"multi_image": 1, "excluded_origin": 1}
    assert json.loads((tmp_path / "counts.json").read_text()) == counts
    # static sharding: every record sits in the shard its id hashes to
    for i, s in enumerate(shards):
        ids = pq.read_table(s).column("id").to_pylist()
        assert all(schema.shard_of(x, 3) == i for x in ids)
    # images: RGB, longest side capped, aspect kept, hash of the stored bytes
    img = Image.open(io.BytesIO(kept[0]["image"]["bytes"]))
    assert img.mode == "RGB" and img.size == (32, 24)
    assert kept[0]["image_sha256"] == images.sha256(kept[0]["image"]["bytes"])


def test_non_utf8_text_is_rejected():
    with pytest.raises(Reject) as e:
        to_canonical({**row("x"), "question": b"\xff\xfe bad"}, "src", "x", ImagePolicy())
    assert e.value.reason == "non_utf8"


def test_rgba_and_palette_images_become_rgb():
    data, w, h, _ = images.normalise(png(mode="RGBA"), 2048)
    assert Image.open(io.BytesIO(data)).mode == "RGB" and (w, h) == (64, 48)
    small = png()
    assert images.normalise(small, 2048)[0] == small  # already fine: bytes kept as they are


def test_a_camera_picture_is_turned_upright_by_its_exif_orientation():
    """Orientation 6: the camera was turned a quarter clockwise; the stored 64x48 pixels show the
    scene 48 wide and 64 high, with the red band (the top of the stored pixels) on the right."""
    img = Image.new("RGB", (64, 48), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 64, 8))
    exif = Image.Exif()
    exif[images.ORIENTATION] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    data, w, h, _ = images.normalise(buf.getvalue(), 2048)
    upright = Image.open(io.BytesIO(data))
    assert (w, h) == upright.size == (48, 64) and upright.format == "PNG"
    assert upright.getpixel((44, 32))[1] < 60 and upright.getpixel((4, 32))[1] > 200  # red on the right
    plain = jpeg()
    assert images.normalise(plain, 2048)[0] == plain  # no orientation: bytes kept


def test_a_small_image_is_raised_to_the_minimum_side_within_the_maximum():
    _, w, h, _ = images.normalise(png(20, 40), 2048, min_side=32)
    assert (w, h) == (32, 64)
    _, w, h, _ = images.normalise(png(8, 900), 1000, min_side=32)  # the long side caps the raise
    assert (w, h) == (9, 1000)
    assert images.normalise(png(20, 40), 2048)[1:3] == (20, 40)  # min_side 0: left alone
    assert to_canonical({**row("s"), "images": [png(16, 16)]}, "src", "x", ImagePolicy())["image"]["bytes"] != png(16, 16)


def test_ids_are_stable_and_content_based():
    a = to_canonical(row("1"), "src", "x", ImagePolicy())
    b = to_canonical(row("1"), "src", "x", ImagePolicy())
    c = to_canonical(row("1", question="How many circles?"), "src", "x", ImagePolicy())
    assert a["id"] == b["id"] != c["id"]


def test_perceptual_hash_survives_reencoding_but_tells_images_apart():
    img = Image.new("RGB", (300, 200), "white")
    from PIL import ImageDraw

    ImageDraw.Draw(img).ellipse((40, 40, 160, 160), fill="red")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    small = io.BytesIO()
    img.resize((150, 100)).save(small, "JPEG", quality=85)
    other = Image.new("RGB", (300, 200), "white")
    ImageDraw.Draw(other).rectangle((150, 20, 290, 190), fill="blue")
    buf2 = io.BytesIO()
    other.save(buf2, "PNG")
    a, b, c = (images.normalise(x.getvalue(), 2048).phash for x in (buf, small, buf2))
    assert images.hamming(a, b) <= 4 < images.hamming(a, c)


def test_unpack_joins_split_zip_parts_and_refuses_escaping_paths(tmp_path):
    import zipfile

    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("imgs/a.png", png())
        z.writestr("imgs/b.png", png(10, 10))
    data = archive.read_bytes()
    parts = [tmp_path / "images.zip.part-aa", tmp_path / "images.zip.part-ab"]
    parts[0].write_bytes(data[:100])
    parts[1].write_bytes(data[100:])
    assert unpack([str(p) for p in parts], str(tmp_path / "out")) == 2
    assert (tmp_path / "out/imgs/b.png").read_bytes() == png(10, 10)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../escape.png", png())
    with pytest.raises(ValueError, match="escapes"):
        unpack([str(evil)], str(tmp_path / "out2"))


# ---------------------------------------------------------------- download from a local mirror
def finevision_mirror(root):
    """A local copy of a FineVision-style dataset repo: parquet with Image lists and chat turns."""
    import datasets

    features = datasets.Features({
        "images": datasets.List(datasets.Image()),
        "texts": datasets.List({"user": datasets.Value("string"), "assistant": datasets.Value("string")}),
        "source": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict({
        "images": [[{"bytes": png(40, 30), "path": None}], [{"bytes": png(50, 30), "path": None}],
                   [{"bytes": png(), "path": None}, {"bytes": png(20, 20), "path": None}],
                   [{"bytes": png(30, 30), "path": None}]],
        "texts": [[{"user": "<image>How many circles?", "assistant": "3"}],
                  [{"user": "Which is larger?\nChoices:\nA. left\nB. right", "assistant": "Answer: B"},
                   {"user": "What colour is the left one?", "assistant": "red"}],
                  [{"user": "Compare the two panels.", "assistant": "A"}],
                  [{"user": "How many cubes?", "assistant": "5"}]],
        "source": ["geo", "tqa", "raven", "CLEVR-math"],
    }, features=features)
    (root / "data").mkdir(parents=True)
    ds.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def test_download_and_standardise_a_local_mirror(tmp_path):
    mirror = finevision_mirror(tmp_path / "mirror")
    spec = {"name": "fv", "kind": "hf", "adapter": "finevision", "hf_id": str(mirror), "split": "train",
            "revision": None, "license": "x", "domain": "science"}
    raw, manifest, images_dir = (str(tmp_path / n) for n in ("raw.parquet", "manifest.json", "images"))
    assert sources.download(spec, raw, manifest, images_dir, seed=0) == 4
    m = json.loads(open(manifest).read())
    assert m["rows"] == 4 and m["hf_id"] == str(mirror) and m["fingerprint"]
    # saved verbatim: the dataset's own columns, images as undecoded bytes
    assert pq.read_schema(raw).names == ["images", "texts", "source"]
    shards = [str(tmp_path / "00000.parquet")]
    counts = standardise(raw, spec, shards, str(tmp_path / "dropped.parquet"), None, ImagePolicy(), RECIPE)
    kept = pq.read_table(shards[0]).to_pylist()
    assert sorted(r["original_id"] for r in kept) == ["0", "1#0", "1#1"]  # the two-turn row gives two items
    assert {r["question"] for r in kept} >= {"How many circles?", "What colour is the left one?"}
    dropped = {r["original_id"]: r["reason"] for r in pq.read_table(tmp_path / "dropped.parquet").to_pylist()}
    assert dropped == {"2": "multi_image", "3": "excluded_origin"}
    assert counts["raw"] == 5 and counts["kept"] == 3


def test_download_unpacks_image_archives_for_path_records(tmp_path):
    import zipfile

    mirror = tmp_path / "gameqa"
    mirror.mkdir()
    records = [{"data_id": "maze-00001", "qa_type": "State Prediction", "question_id": 1, "image": "images/m1.png",
                "state": "states/m1.json", "plot_level": "Easy", "qa_level": "Easy",
                "question": "How many steps does the shortest path take?", "answer": 4,
                "analysis": "Count the moves: 4."},
               {"data_id": "maze-00002", "qa_type": "State Prediction", "question_id": 1, "image": "images/gone.png",
                "state": "states/m2.json", "plot_level": "Easy", "qa_level": "Easy",
                "question": "How many walls touch the exit?", "answer": 2, "analysis": "Two walls."}]
    (mirror / "games_data.json").write_text(json.dumps(records))
    with zipfile.ZipFile(mirror / "games_images.zip", "w") as z:
        z.writestr("images/m1.png", png(60, 40))
    spec = {"name": "gameqa", "kind": "hf", "adapter": "gameqa", "hf_id": str(mirror), "data_files": "games_data.json",
            "image_archives": ["games_images.zip"], "split": "train", "license": "x", "domain": "puzzle"}
    raw, images_dir = str(tmp_path / "raw.parquet"), str(tmp_path / "images")
    sources.download(spec, raw, str(tmp_path / "manifest.json"), images_dir, seed=0)
    assert os.path.exists(os.path.join(images_dir, "images/m1.png"))
    counts = standardise(raw, spec, [str(tmp_path / "s.parquet")], str(tmp_path / "d.parquet"), None, ImagePolicy(),
                         images_dir=images_dir)
    kept = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert [(r["original_id"], r["answer"]) for r in kept] == [("maze-00001", "4")]
    assert counts["dropped"] == {"quarantined": {"image_missing": 1}}


def test_parallel_standardise_writes_the_same_bytes_as_one_process(tmp_path, monkeypatch):
    """Real MM-EUREKA K12 records (tests/fixtures/sources/mmk12.json), each row group its own task,
    records repeated across tasks and a bad one: two workers give the same shards, drops and counts."""
    from test_adapters import records, spec

    mmk12 = records("mmk12")
    broken = {**mmk12[0], "id": "broken", "image_path": "images/not-here.png"}
    table = pa.Table.from_pylist(mmk12 * 2 + [broken] + mmk12[:1])
    raw = tmp_path / "raw.parquet"
    pq.write_table(table, raw, row_group_size=2)
    monkeypatch.setattr(sources, "TASK_ROWS", 1)
    assert len(sources._tasks(str(raw))) == 4
    out = {}
    for threads in (1, 2):
        d = tmp_path / str(threads)
        d.mkdir()
        shards = [str(d / f"{i:05d}.parquet") for i in range(3)]
        counts = standardise(str(raw), spec("mmk12"), shards, str(d / "dropped.parquet"), str(d / "counts.json"),
                             ImagePolicy(), threads=threads)
        out[threads] = [open(p, "rb").read() for p in [*shards, d / "dropped.parquet", d / "counts.json"]]
    assert out[1] == out[2]
    assert counts["raw"] == 8 and counts["kept"] == 2  # the third record's image file is not in the fixtures
    assert counts["dropped"] == {"duplicate": {"duplicate_id": 3}, "quarantined": {"image_missing": 3}}
