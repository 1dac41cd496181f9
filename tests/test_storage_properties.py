"""Invariants of the storage layer, as properties (hypothesis): what it promises for every input,
not for the few examples the other tests pick.

- A key the rules accept never resolves outside a local store's root, and a local store and an
  S3 store agree on which keys are unsafe (only their size limits differ).
- A ranged-read file (RangeReader) reads exactly what an in-memory file reads, whatever the
  sequence of seeks and reads.
- Labelling an encoded JPEG or TIFF (inserting and replacing metadata segments) keeps its pixels
  bit for bit, reads back the label it was given, and labelling again replaces the label.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from colorize_core.storage import provenance as prov
from colorize_core.storage.local import LocalStore
from colorize_core.storage.objects import InvalidKeyError, key_problem, validate_key
from colorize_core.storage.provenance import Provenance, label_output
from colorize_core.storage.ranges import RangeReader
from colorize_core.storage.s3 import S3Store
from tests.test_provenance import xmp_properties

# Keys built from the characters that make paths go wrong: separators, dots, drive colons,
# backslashes, control characters, spaces and non-ASCII.
KEY_ALPHABET = st.sampled_from(list("ab/.:\\ \t\x00\x7f-_é😀") + ["..", "./", "//", "C:"])
KEYS = st.lists(KEY_ALPHABET, min_size=0, max_size=12).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=KEYS)
def test_an_accepted_key_stays_inside_the_root(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "root")
    try:
        validate_key(key)
    except InvalidKeyError:
        assert key_problem(key) is not None
        return
    assert key_problem(key) is None
    path = store._path(key)  # noqa: SLF001 - the resolution itself is the property
    assert path.resolve().is_relative_to(store.root) and path != store.root
    assert Path(os.path.normpath(path)) == path  # no '.', '..' or empty segment left to resolve later


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=KEYS)
def test_local_and_s3_stores_agree_on_unsafe_keys(tmp_path: Path, key: str) -> None:
    local = LocalStore(tmp_path / "root")
    s3 = S3Store("bucket", "some/prefix")  # check_key makes no request
    unsafe = key_problem(key)
    if unsafe is not None:
        assert local.check_key(key) == s3.check_key(key) == unsafe
    else:  # short keys: within both stores' size limits
        assert local.check_key(key) is None and s3.check_key(key) is None


class _BytesStore:
    """What RangeReader needs of a store, over bytes in memory; it counts the ranged reads."""

    def __init__(self, data: bytes) -> None:
        self.data, self.reads = data, 0

    def size(self, key: str) -> int:
        return len(self.data)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        assert start >= 0 and length > 0  # never an empty or negative range request
        self.reads += 1
        return self.data[start : start + length]


SEEK = st.tuples(st.just("seek"), st.integers(-80, 300), st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END]))
READ = st.tuples(st.just("read"), st.integers(-1, 120), st.just(0))
READINTO = st.tuples(st.just("readinto"), st.integers(0, 120), st.just(0))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), ops=st.lists(st.one_of(SEEK, READ, READINTO), max_size=25))
def test_a_ranged_read_file_reads_what_an_in_memory_file_reads(data: bytes, ops: list[tuple[str, int, int]]) -> None:
    store = _BytesStore(data)
    ours, truth = io.BufferedReader(RangeReader(store, "k"), buffer_size=16), io.BytesIO(data)  # type: ignore[arg-type]
    for op, n, whence in ops:
        if op == "seek":
            target = {io.SEEK_SET: 0, io.SEEK_CUR: truth.tell(), io.SEEK_END: len(data)}[whence] + n
            if target < 0:
                continue  # BytesIO refuses a negative position; RangeReader clamps it: not compared
            assert ours.seek(n, whence) == truth.seek(n, whence)
        elif op == "read":
            assert ours.read(n) == truth.read(n)
        else:
            a, b = bytearray(n), bytearray(n)
            assert ours.readinto(a) == truth.readinto(b) and a == b
        assert ours.tell() == truth.tell()


def _encoded(pil_format: str, seed: int, w: int, h: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=pil_format, **({"quality": 90} if pil_format == "JPEG" else {}))
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


# Labels as archives have them: any text (XML's special characters, quotes, non-ASCII, emoji),
# less what XML 1.0 cannot hold at all (control characters, lone surrogates: provenance.py
# replaces those, and test_provenance.py checks how).
LABEL_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pil_format=st.sampled_from(["JPEG", "TIFF"]), seed=st.integers(0, 2**16), w=st.integers(1, 40), h=st.integers(1, 40),
    first=st.tuples(LABEL_TEXT, LABEL_TEXT), second=st.tuples(LABEL_TEXT, LABEL_TEXT),
)
def test_labelling_keeps_the_pixels_and_reads_back(pil_format: str, seed: int, w: int, h: int, first: tuple[str, str], second: tuple[str, str]) -> None:
    plain = _encoded(pil_format, seed, w, h)
    once = label_output(plain, pil_format, Provenance(*first))
    twice = label_output(once, pil_format, Provenance(*second))
    for data, (model_id, key) in ((once, first), (twice, second)):
        assert np.array_equal(_pixels(data), _pixels(plain))  # the image data is untouched
        with Image.open(io.BytesIO(data)) as img:
            xmp = xmp_properties(img)
            assert img.size == (w, h)
        assert (xmp[f"{{{prov.NS_DC}}}source"], xmp[f"{{{prov.NS_COLORIZE}}}ModelId"]) == (key, model_id)
    if pil_format == "JPEG":  # replaced, not added to: one Exif and one XMP segment
        assert twice.count(prov.JPEG_XMP_ID) == 1 and len(twice) - len(once) == len(prov.xmp_packet(Provenance(*second))) - len(prov.xmp_packet(Provenance(*first)))
