"""The journal: finished responses, one JSON line each, appended as they complete (the resume
cache of every generation stage), with an index beside it and a sha256 per line."""

from __future__ import annotations

import contextlib
import json
import logging
import os

from mmfr.generate.core import Response, content_sha256

log = logging.getLogger(__name__)


class Journal:
    """Append-only JSONL of finished responses, one per shard job, with an index beside it
    (``<journal>.idx``: key, byte offset, length per line) so that other jobs of the same stage can
    fetch a response without reading the whole journal. A torn last line (killed mid-write) is
    ignored, and closed off before the next append."""

    def __init__(self, path: str):
        self.path = path
        self.index_path = path + ".idx"

    def load(self) -> dict[str, Response]:
        done: dict[str, Response] = {}
        if not os.path.exists(self.path):
            return done
        with open(self.path, encoding="utf-8", errors="replace") as f:  # a kill may cut a character
            for line in f:
                if (r := parse_line(line)) is not None:
                    done[r.key] = r
        return done

    def lookup(self, keys: set[str]) -> dict[str, Response]:
        """The responses for ``keys`` this journal holds, read by offset through its index (or by
        a full scan for a journal written before indexes existed)."""
        if not keys or not os.path.exists(self.path):
            return {}
        if not os.path.exists(self.index_path):
            return {k: r for k, r in self.load().items() if k in keys}
        found: dict[str, Response] = {}
        with open(self.index_path, encoding="ascii", errors="replace") as idx, open(self.path, "rb") as f:
            for line in idx:
                parts = line.split()
                if len(parts) != 3 or parts[0] not in keys or parts[0] in found:
                    continue
                f.seek(int(parts[1]))
                if (r := parse_line(f.read(int(parts[2])).decode("utf-8", errors="replace"))) is not None and r.key == parts[0]:
                    found[r.key] = r
        return found

    def _index_complete(self) -> bool:
        """Does the index end where the journal ends? (A kill between the journal write and the
        index write, or inside the index write, leaves it short or torn.)"""
        size = os.path.getsize(self.path)
        if not os.path.exists(self.index_path):
            return size == 0
        with open(self.index_path, "rb") as idx:
            idx.seek(max(0, os.path.getsize(self.index_path) - 256))
            tail = idx.read()
        if size == 0 or not tail.endswith(b"\n"):
            return size == 0 and not tail
        parts = tail.splitlines()[-1].split()
        return len(parts) == 3 and int(parts[1]) + int(parts[2]) == size

    def rebuild_index(self) -> None:
        """Write the index again from the journal (skipping torn lines)."""
        offset, lines = 0, []
        with open(self.path, "rb") as f:
            for raw in f:
                r = parse_line(raw.decode("utf-8", errors="replace"))
                if r is not None:
                    lines.append(f"{r.key} {offset} {len(raw)}\n")
                offset += len(raw)
        with open(self.index_path, "w", encoding="ascii") as idx:
            idx.writelines(lines)
        log.info("rebuilt the index of %s (%d entries)", self.path, len(lines))

    @contextlib.contextmanager
    def writer(self):
        """Append responses one line each, flushed at once (a killed process loses nothing it
        wrote), fsynced on close. A line torn by an earlier kill is closed off first."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a+b") as f:
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # torn by a kill: end it, so the next line stands alone
                    f.write(b"\n")
        if not self._index_complete():
            self.rebuild_index()
        with open(self.path, "ab") as f, open(self.index_path, "a", encoding="ascii") as idx:

            def write(response: Response) -> None:
                line = (response.to_json() + "\n").encode("utf-8")
                offset = f.tell()
                f.write(line)
                f.flush()
                idx.write(f"{response.key} {offset} {len(line)}\n")
                idx.flush()

            try:
                yield write
            finally:
                f.flush()
                os.fsync(f.fileno())


def parse_line(line: str) -> Response | None:
    """The response on a journal line; None for a torn line, and for an edited one (its fields no
    longer match its sha256: it is logged, and the request is generated again)."""
    try:
        fields = json.loads(line)
        seal = fields.pop("sha256", None)
        response = Response(**fields)
    except (json.JSONDecodeError, TypeError, AttributeError):
        return None
    if seal is not None and seal != content_sha256(fields):
        log.warning("journal line for %s (%s) does not match its sha256: edited after it was written; "
                    "ignored, the request will be generated again", fields.get("key"), fields.get("sample_id"))
        return None
    return response


def check_lines(path: str) -> list[tuple[int, str]]:
    """(line number, problem) for each line of the journal at ``path`` that is not a whole, sealed
    response (edited, unsealed, or not JSON). A torn last line is not counted: the next append
    ends it."""
    problems = []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip() or (number == len(lines)):  # the text after the last newline: torn, or none
            continue
        try:
            fields = json.loads(raw.decode("utf-8"))
            seal = fields.pop("sha256", None)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            problems.append((number, "not a JSON response"))
            continue
        if seal is None:
            problems.append((number, "no sha256"))
        elif seal != content_sha256(fields):
            problems.append((number, f"edited: its fields no longer match its sha256 (key {fields.get('key')})"))
    return problems


def siblings(journal_path: str) -> list[Journal]:
    """The other journals of the same stage and source: where a response lives after resharding."""
    folder = os.path.dirname(journal_path) or "."
    if not os.path.isdir(folder):
        return []
    return [Journal(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if name.endswith(".jsonl") and os.path.join(folder, name) != journal_path]
