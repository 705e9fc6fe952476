"""Standardisation: canonical records, static sharding, image normalisation and the quarantine."""

import io
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmfr import images, schema
from mmfr.sources import RAW, ImagePolicy, Reject, adapt_finevision, standardise, to_canonical


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


def row(original_id, question="How many?", answer="3", images_=None, answer_type="number"):
    return {"original_id": original_id, "question": question, "answer": answer, "answer_type": answer_type,
            "choices": [], "images": [png()] if images_ is None else images_, "metadata": "{}", "domain": "math"}


BAD = {
    "not_an_image": (row("not_an_image", images_=[b"plain text, not an image"]), "image_corrupt"),
    "corrupt": (row("corrupt", images_=[flipped_png()]), "image_corrupt"),
    "truncated_jpeg": (row("truncated_jpeg", images_=[jpeg(256, 256)[:300]]), "image_truncated"),
    "huge": (row("huge", images_=[huge_header_png()]), "image_too_large"),
    "no_answer": (row("no_answer", answer=None), "missing_answer"),
    "empty_question": (row("empty_question", question="   "), "empty_question"),
    "multi_image": (row("multi_image", images_=[png(), png()]), "multi_image"),
    "no_image": (row("no_image", images_=[]), "image_missing"),
}


def test_bad_records_land_in_quarantine_with_the_right_reason(tmp_path):
    good = [row(f"good{i}", question=f"How many squares? ({i})") for i in range(20)]
    raw = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pylist(good + [r for r, _ in BAD.values()], schema=RAW), raw)
    shards = [str(tmp_path / f"{i:05d}.parquet") for i in range(3)]
    counts = standardise(str(raw), "src", "CC0-1.0", shards, str(tmp_path / "q.parquet"), ImagePolicy(max_side=32))
    quarantine = {r["original_id"]: r["reason"] for r in pq.read_table(tmp_path / "q.parquet").to_pylist()}
    assert quarantine == {k: reason for k, (_, reason) in BAD.items()}
    kept = [r for s in shards for r in pq.read_table(s).to_pylist()]
    assert len(kept) == 20
    assert counts["raw"] == counts["kept"] + counts["quarantined"] == 28
    # static sharding: every record sits in the shard its id hashes to; shards are sorted by id
    for i, s in enumerate(shards):
        ids = pq.read_table(s).column("id").to_pylist()
        assert ids == sorted(ids)
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
    data, w, h = images.normalise(png(mode="RGBA"), 2048)
    assert Image.open(io.BytesIO(data)).mode == "RGB" and (w, h) == (64, 48)
    small = png()
    assert images.normalise(small, 2048)[0] == small  # already fine: bytes kept as they are


def test_ids_are_stable_and_content_based():
    a = to_canonical(row("1"), "src", "x", ImagePolicy())
    b = to_canonical(row("1"), "src", "x", ImagePolicy())
    c = to_canonical(row("1", question="How many circles?"), "src", "x", ImagePolicy())
    assert a["id"] == b["id"] != c["id"]


def test_finevision_rows_map_to_the_raw_layout():
    rec = {"images": [{"bytes": png(), "path": None}], "source": "scienceqa",
           "texts": [{"user": "Which is a mammal?\nChoices:\nA. cat\nB. fish", "assistant": "Answer: A"}]}
    out = adapt_finevision(rec, {}, {"answer_type": "choice", "domain": "science"}, index=7)
    assert out["question"].startswith("Which is a mammal?") and out["answer"] == "Answer: A"
    assert out["original_id"] == "7" and len(out["images"]) == 1
