"""Provenance labels: every colorized output says, in its own metadata, that a trained model made
its colours, which model, from which source, and with which software.

What a labelled output carries
- XMP (one packet, `xmp_packet`):
  - `Iptc4xmpExt:DigitalSourceType` = IPTC's `compositeWithTrainedAlgorithmicMedia`: the real
    photograph's luminance, composited with colour a trained model predicted. This is the
    property provenance tools and photo libraries read for "made with AI".
  - `xmp:CreatorTool` = "colorize <version>" (`software()`).
  - `dc:source` = the source's key in the archive (for local files: its path relative to the
    input folder, never an absolute path).
  - `colorize:ModelId` = the model id of the checkpoint, in the project namespace
    `xmlns:colorize="https://github.com/colorize-archive/ns/1.0/"` (the only property there).
- EXIF (`output_exif`): the source's own EXIF kept (dates, camera make and model, captions such
  as ImageDescription, UserComment, Artist, Copyright, GPS, the MakerNote), each tag with the
  TIFF type and bytes the source gave it, in the source's byte order; Orientation set to 1
  (decoding already turned the pixels upright), Software set to `software()`, the Exif IFD's
  pixel dimensions set to the output's (JPEG, PNG, WebP; TIFF says its size itself). Dropped:
  what described the source file rather than the photograph: TIFF structure tags (strips, bits
  per sample, compression, ...), the thumbnail (IFD1: a gray, unrotated picture), the
  interoperability IFD, and containers this module does not merge (source XMP in tag 700,
  IPTC-NAA, Photoshop resources). If the EXIF would not fit a JPEG APP1 segment (64 KiB), the
  MakerNote goes first, then every source tag: the label itself always fits. A MakerNote whose
  internal offsets count from the TIFF header (some Canon, Nikon) points to the wrong place once
  moved, as after most EXIF rewriters.
- No ICC profile. A source's profile describes its gray pixels (a gray profile on a colour output
  would be wrong), and even an RGB source profile is dropped: the model reads and writes pixel
  values as sRGB (BT.601 luma of sRGB-encoded values), so an untagged output, which viewers show
  as sRGB, is the honest one.

Where, per output format (nothing re-encodes pixels):
- JPEG: APP1 Exif and APP1 XMP ("http://ns.adobe.com/xap/1.0/\\0") segments inserted into the
  encoded bytes right after SOI (after the JFIF APP0 where there is one), whichever encoder made
  them: Pillow, nvJPEG or libjpeg-turbo on the device (`label_output`). Costs one copy of the bytes.
- TIFF: XMP in tag 700 and the EXIF tags in IFD 0 with its Exif and GPS sub-IFDs. Pillow's
  libtiff writer (deflate) cannot write sub-IFDs, so the tags are appended after encoding: a new
  IFD 0 (the encoder's entries plus these) at the end of the file, the header pointing to it
  (`label_output`; `label_tiff_in_place` for a TIFF still in its BytesIO). Strips stay where
  they are; the old IFD 0, a few hundred bytes, is left unused.
- PNG: an eXIf chunk and an uncompressed iTXt chunk "XML:com.adobe.xmp", passed to Pillow's
  save (`save_options`); 16-bit PNGs, which Pillow cannot write, get the same two chunks from
  `png_label_chunks` (imageio writes them before the image data).
- 16-bit TIFF (written by tifffile): labelled in its buffer by `label_tiff_in_place`, with the
  same tags as `label_output` gives Pillow's TIFFs.
- WebP: EXIF and XMP chunks, passed to Pillow's save (`save_options`).
- BMP: cannot carry metadata; written unlabelled (the run's Parquet row still records model_id).

`imageio.encode(img, fmt, provenance=...)` does both halves for Pillow's encodes; the archive's
device-JPEG path calls `label_output` on the bytes. `label=False` on `colorize_shard` and
`colorize_files` writes outputs with no label and no EXIF (as before labelling existed).
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any, TypeVar
from xml.sax.saxutils import escape

from PIL import Image, PngImagePlugin, TiffImagePlugin, TiffTags

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
NS_IPTC4XMPEXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_COLORIZE = "https://github.com/colorize-archive/ns/1.0/"
DISTRIBUTION = "archive-colorizer"  # [project] name in pyproject.toml: where the version comes from

JPEG_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXIF_ID = b"Exif\x00\x00"
_MAX_SEGMENT = 65533  # a JPEG marker segment's payload: 65535 less the two length bytes

T = TypeVar("T")

# EXIF tags (IFD 0 unless noted)
ORIENTATION = 0x0112
SOFTWARE = 0x0131
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
XMP_TAG = 700
MAKER_NOTE = 0x927C  # in the Exif IFD
# IFD 0 tags not copied from the source: they describe the source file's pixel layout (TIFF
# structure, old-style JPEG tables) or are containers this module does not merge (XMP, IPTC-NAA,
# Photoshop, ICC). The Exif and GPS IFD pointers are rebuilt from their contents.
_NOT_COPIED = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 288, 289, 290, 291, 292, 293, 301,
     317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 333, 334, 336, 337, 338, 339, 340, 341, 342, 347,
     512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 532,
     XMP_TAG, 33723, 34377, 34675, EXIF_IFD, GPS_IFD}
)  # fmt: skip
# Exif IFD: the interoperability IFD (a DCF compatibility marker of the original file) is not
# copied; the pixel size (rotation may have swapped it) is rewritten with the output's.
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
_EXIF_IFD_NOT_COPIED = frozenset({0xA005})
# Characters XML 1.0 cannot hold even escaped (C0 controls but tab, newline, CR; surrogates from
# undecodable file names; U+FFFE/U+FFFF): replaced by U+FFFD so that the packet always parses.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Provenance:
    """What one output's label says: the model, the source's key, and the source's EXIF (the
    bytes `source_exif` or `jpeg_source_exif` captured at load time; None if it had none)."""

    model_id: str
    source_key: str
    source_exif: bytes | None = None


@functools.cache
def software() -> str:
    """"colorize <version>" from the installed distribution; plain "colorize" when it is not
    installed (run from a source tree): a label without a version beats no label."""
    try:
        return f"colorize {importlib.metadata.version(DISTRIBUTION)}"
    except importlib.metadata.PackageNotFoundError:
        return "colorize"


def _xml_text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def xmp_packet(provenance: Provenance) -> bytes:
    """The XMP packet (UTF-8) of a labelled output. Deterministic: the same source, model and
    software give the same bytes (no timestamps), so a re-run writes identical outputs."""
    text = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="{NS_IPTC4XMPEXT}"
    xmlns:xmp="{NS_XMP}"
    xmlns:dc="{NS_DC}"
    xmlns:colorize="{NS_COLORIZE}">
   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>
   <xmp:CreatorTool>{_xml_text(software())}</xmp:CreatorTool>
   <dc:source>{_xml_text(provenance.source_key)}</dc:source>
   <colorize:ModelId>{_xml_text(provenance.model_id)}</colorize:ModelId>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""
    packet = text.encode("utf-8")
    if len(packet) + len(JPEG_XMP_ID) > _MAX_SEGMENT:  # keys are at most a few KB: never in practice
        raise ValueError(f"XMP packet of {len(packet)} bytes does not fit a JPEG segment")
    return packet


@dataclass(frozen=True)
class Label:
    """What an output's XMP label says (`read_label`)."""

    digital_source_type: str
    model_id: str
    source_key: str
    creator_tool: str


_XMP_META = re.compile(rb"<x:xmpmeta[\s>].*?</x:xmpmeta>", re.S)


def read_label(data: bytes) -> Label | None:
    """The label `xmp_packet` wrote into an output, found in its bytes (JPEG APP1, PNG iTXt,
    TIFF tag 700 and WebP's XMP chunk all keep the packet as it is); None when there is none."""
    from xml.etree import ElementTree

    for match in _XMP_META.finditer(data):
        try:
            root = ElementTree.fromstring(match.group(0))
        except ElementTree.ParseError:
            continue
        model = root.findtext(f".//{{{NS_COLORIZE}}}ModelId")
        if model is None:
            continue  # another tool's XMP
        return Label(
            digital_source_type=root.findtext(f".//{{{NS_IPTC4XMPEXT}}}DigitalSourceType") or "",
            model_id=model,
            source_key=root.findtext(f".//{{{NS_DC}}}source") or "",
            creator_tool=root.findtext(f".//{{{NS_XMP}}}CreatorTool") or "",
        )
    return None


# --- EXIF: tags with their TIFF types ----------------------------------------------------------
# Tags are kept with the type the source gave them and written back with it. (Pillow's Exif
# object forgets the types of the Exif and GPS IFDs' tags and guesses on writing: UserComment and
# ComponentsConfiguration would become BYTE, not UNDEFINED, and strict readers skip such tags.)

_Ifd = dict[int, tuple[int, Any]]  # tag -> (TIFF type, value as Pillow's ImageFileDirectory_v2 holds it)


@dataclass(frozen=True)
class _ExifTags:
    """The EXIF to write: IFD 0's tags and the Exif and GPS IFDs' (empty: not written). `order`
    is the byte order to write it in ("II" or "MM"): the source's, which MakerNotes without a
    header of their own rely on."""

    ifd0: _Ifd
    exif: _Ifd
    gps: _Ifd
    order: bytes = b"II"


def _head(order: bytes, ifd0: int = 8) -> bytes:
    """A classic TIFF header in byte order `order`, its first IFD at `ifd0`."""
    return order + (b"*\x00" + ifd0.to_bytes(4, "little") if order == b"II" else b"\x00*" + ifd0.to_bytes(4, "big"))


def _text_as_read(typ: int, value: Any) -> Any:
    """Text as the bytes the source held. Pillow reads ASCII tags as Latin-1 text and writes text
    back as ASCII with "?" for anything else: a UTF-8 caption ("Grand-mère", as many archives write
    them) would lose its accents. Bytes are written back exactly."""
    return value.encode("latin-1", "replace") if typ == TiffTags.ASCII and isinstance(value, str) else value


def _kept(ifd: TiffImagePlugin.ImageFileDirectory_v2, dropped: frozenset[int]) -> _Ifd:
    return {tag: (ifd.tagtype[tag], _text_as_read(ifd.tagtype[tag], ifd[tag])) for tag in list(ifd) if tag not in dropped}


def _read_tags(fp: IO[bytes], head: bytes) -> _ExifTags:
    """The tags worth keeping of the TIFF structure (an EXIF blob, or a TIFF file) in `fp`, whose
    first 8 bytes are `head`: IFD 0 less `_NOT_COPIED`, the Exif IFD less `_EXIF_IFD_NOT_COPIED`,
    the GPS IFD."""

    def load(offset: int, group: int | None) -> TiffImagePlugin.ImageFileDirectory_v2:
        ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=head, group=group)
        fp.seek(offset)
        ifd.load(fp)
        return ifd

    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError("not a classic TIFF structure")
    ifd0 = load(int.from_bytes(head[4:8], "little" if head[:2] == b"II" else "big"), None)
    subs = {}
    for pointer, dropped in ((EXIF_IFD, _EXIF_IFD_NOT_COPIED), (GPS_IFD, frozenset[int]())):
        offset = ifd0.get(pointer)
        subs[pointer] = _kept(load(offset, pointer), dropped) if isinstance(offset, int) else {}
    return _ExifTags(_kept(ifd0, _NOT_COPIED), subs[EXIF_IFD], subs[GPS_IFD], head[:2])


def _ifd_bytes(order: bytes, tags: _Ifd, group: int | None, offset: int) -> bytes:
    """One IFD (entry table, next-IFD 0, then its values) laid out to be written at `offset`."""
    ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=_head(order), group=group)
    for tag, (typ, value) in tags.items():
        ifd.tagtype[tag] = typ  # the source's type, not a guess
        ifd[tag] = value
    return ifd.tobytes(offset)


def _write_tags(tags: _ExifTags, order: bytes, offset: int) -> bytes:
    """IFD 0 at `offset`, then the Exif and GPS IFDs, IFD 0 pointing to them. Pillow lays out
    each IFD; a pointer is a LONG in the entry itself, so IFD 0's size does not depend on it."""
    ifd0 = dict(tags.ifd0)
    subs = [(pointer, ifd) for pointer, ifd in ((EXIF_IFD, tags.exif), (GPS_IFD, tags.gps)) if ifd]
    for pointer, _ in subs:
        ifd0[pointer] = (TiffTags.LONG, 0)
    at = offset + len(_ifd_bytes(order, ifd0, None, offset))
    blobs = []
    for pointer, ifd in subs:
        ifd0[pointer] = (TiffTags.LONG, at)
        blobs.append(_ifd_bytes(order, ifd, pointer, at))
        at += len(blobs[-1])  # even: Pillow pads values to words
    return _ifd_bytes(order, ifd0, None, offset) + b"".join(blobs)


def _exif_blob(tags: _ExifTags) -> bytes:
    """EXIF as a JPEG APP1 segment holds it: "Exif\\0\\0", a TIFF header, the IFDs."""
    return _JPEG_EXIF_ID + _head(tags.order) + _write_tags(tags, tags.order, 8)


# --- the source's EXIF, captured at load time ---------------------------------------------------


def source_exif(img: Image.Image) -> bytes | None:
    """The EXIF of a just-opened image (call before `exif_transpose`, while a TIFF's file is
    still open), or None. JPEG, PNG and WebP hand over the bytes they read (no cost); a TIFF's
    EXIF is its IFD 0 and sub-IFDs, whose tags worth keeping are made into an EXIF blob here.
    Never raises: an unreadable EXIF is None (the output loses only it)."""
    raw = img.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw
    fp = getattr(img, "fp", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if img.format != "TIFF" or fp is None:
                # EXIF from elsewhere (a PNG's "Raw profile type exif" text): Pillow's view of it
                exif = img.getexif()
                return exif.tobytes() if len(exif) else None
            here = fp.tell()
            try:
                fp.seek(0)
                tags = _read_tags(fp, fp.read(8))  # the first frame's: decode() takes that one
            finally:
                fp.seek(here)
            return _exif_blob(tags) if tags.ifd0 or tags.exif or tags.gps else None
    except Exception:  # noqa: BLE001 - a corrupt EXIF or a BigTIFF header must not fail the decode
        return None


def _jpeg_header_segments(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of each marker segment between SOI and the scan (SOS) or the first marker
    without a length, and the offset where the rest begins. Reads only the header."""
    segments: list[tuple[int, int]] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or not 0xC0 <= marker <= 0xFE or 0xD0 <= marker <= 0xD9:
            break  # SOS (entropy-coded data follows), or a marker with no length
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end <= pos + 3 or end > len(data):
            raise ValueError("corrupt JPEG header")
        segments.append((pos, end))
        pos = end
    return segments, pos


def _is_app1(data: bytes, start: int, end: int, ident: bytes) -> bool:
    return data[start + 1] == 0xE1 and data.startswith(ident, start + 4) and end - start - 4 >= len(ident)


def jpeg_source_exif(data: bytes) -> bytes | None:
    """The APP1 Exif payload of an encoded JPEG, or None: a walk over the header's segments,
    no decoding (the device-JPEG path keeps the source's bytes, not a Pillow image)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        segments, _ = _jpeg_header_segments(data)
    except ValueError:
        return None
    for start, end in segments:
        if _is_app1(data, start, end, _JPEG_EXIF_ID):
            return data[start + 4 : end]
    return None


# --- the output's EXIF --------------------------------------------------------------------------


def _source_tags(source: bytes | None) -> _ExifTags | None:
    """The source's EXIF tags to keep; None if it had none or they are unreadable."""
    if not source:
        return None
    body = source.removeprefix(_JPEG_EXIF_ID)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF it still reads
            return _read_tags(io.BytesIO(body), body[:8])
    except Exception:  # noqa: BLE001 - unreadable source EXIF: the output carries ours alone
        return None


def _candidate_tags(source: bytes | None, size: tuple[int, int] | None) -> Iterator[_ExifTags]:
    """The output's EXIF, most complete first (lazily: a later one is made only when the one
    before could not be written or was too big): the source's kept tags; those of them Pillow
    can write; those without the MakerNote (the usual reason an EXIF outgrows a JPEG segment);
    ours alone (always fits). Ours: Orientation 1 (the pixels are upright), Software, and the
    output's `size` (width, height) as the Exif IFD's pixel dimensions where the source had an
    Exif IFD (dropped when `size` is None)."""
    ours: _Ifd = {ORIENTATION: (TiffTags.SHORT, 1), SOFTWARE: (TiffTags.ASCII, software().encode())}
    tags = _source_tags(source)
    if tags is not None:
        exif = {tag: v for tag, v in tags.exif.items() if tag not in (PIXEL_X, PIXEL_Y)}
        if exif and size is not None:
            exif.update({PIXEL_X: (TiffTags.LONG, size[0]), PIXEL_Y: (TiffTags.LONG, size[1])})
        full = _ExifTags({**tags.ifd0, **ours}, exif, tags.gps, tags.order)
        yield full
        writable = _writable(full)
        if writable != full:
            yield writable
        if MAKER_NOTE in writable.exif:
            yield replace(writable, exif={tag: v for tag, v in writable.exif.items() if tag != MAKER_NOTE})
    yield _ExifTags(ours, {}, {})


def _writable(tags: _ExifTags) -> _ExifTags:
    """`tags` less those Pillow cannot write (a type or value it does not support): one odd tag
    must not cost the others."""

    def each(ifd: _Ifd, group: int | None) -> _Ifd:
        return {tag: v for tag, v in ifd.items() if _serialized(lambda one: _ifd_bytes(tags.order, one, group, 8), {tag: v}) is not None}

    return replace(tags, ifd0=each(tags.ifd0, None), exif=each(tags.exif, EXIF_IFD), gps=each(tags.gps, GPS_IFD))


def _first_serialized(
    source: bytes | None, size: tuple[int, int] | None, serialize: Callable[[_ExifTags], bytes], limit: int | None
) -> bytes:
    """`serialize` of the first candidate (`_candidate_tags`) that Pillow can write and that fits
    in `limit` bytes."""
    for tags in _candidate_tags(source, size):
        data = _serialized(serialize, tags)
        if data is not None and (limit is None or len(data) <= limit):
            return data
    raise AssertionError("unreachable: Orientation and Software alone always serialize and fit")


def _serialized(serialize: Callable[[T], bytes], tags: T) -> bytes | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about values it coerces
            return serialize(tags)
    except Exception:  # noqa: BLE001 - a source value Pillow cannot write back: the caller tries a smaller set
        return None


def output_exif(source: bytes | None, size: tuple[int, int] | None = None) -> bytes:
    """The output's EXIF ("Exif\\0\\0" + a TIFF structure, as in a JPEG APP1 segment): the
    source's tags kept, Orientation 1, Software ours, pixel dimensions the output's `size`
    (dropped when not given); always small enough for a JPEG segment."""
    return _first_serialized(source, size, _exif_blob, _MAX_SEGMENT)


# --- labelling ----------------------------------------------------------------------------------


def save_options(pil_format: str, provenance: Provenance, size: tuple[int, int]) -> dict[str, object]:
    """Keyword arguments for Pillow's save that label a PNG or WebP of `size` while it is encoded;
    empty for the formats `label_output` labels afterwards (JPEG, TIFF) and for BMP (no metadata).
    No ICC profile either way (module docstring)."""
    if pil_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp_packet(provenance).decode("utf-8"), zip=False)
        return {"exif": output_exif(provenance.source_exif, size), "pnginfo": info}
    if pil_format == "WEBP":
        return {"exif": output_exif(provenance.source_exif, size), "xmp": xmp_packet(provenance)}
    return {}


def png_label_chunks(provenance: Provenance, size: tuple[int, int]) -> list[tuple[bytes, bytes]]:
    """(chunk type, payload) of the eXIf and iTXt chunks that label a PNG of `size` written
    without Pillow (16-bit): byte for byte the chunks `save_options` has Pillow write."""
    exif = output_exif(provenance.source_exif, size).removeprefix(_JPEG_EXIF_ID)  # eXIf holds the TIFF structure alone
    # iTXt: keyword, NUL, not compressed (0), method 0, empty language tag and translated keyword (NUL each), text
    itxt = b"XML:com.adobe.xmp\x00" + b"\x00\x00" + b"\x00" + b"\x00" + xmp_packet(provenance)
    return [(b"eXIf", exif), (b"iTXt", itxt)]


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _label_jpeg(data: bytes, provenance: Provenance) -> bytes:
    """Insert APP1 Exif and APP1 XMP after SOI and any leading APP0 (JFIF requires its APP0
    first; EXIF readers accept Exif right after it), replacing Exif/XMP segments already there."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG: no SOI marker")
    segments, rest = _jpeg_header_segments(data)
    frames = [s for s, _ in segments if 0xC0 <= data[s + 1] <= 0xCF and data[s + 1] not in (0xC4, 0xC8, 0xCC)]  # SOFn
    size = (int.from_bytes(data[frames[0] + 7 : frames[0] + 9], "big"), int.from_bytes(data[frames[0] + 5 : frames[0] + 7], "big")) if frames else None
    lead = 0
    while lead < len(segments) and data[segments[lead][0] + 1] == 0xE0:
        lead += 1
    kept = [
        data[s:e] for s, e in segments[lead:] if not (_is_app1(data, s, e, _JPEG_EXIF_ID) or _is_app1(data, s, e, JPEG_XMP_ID))
    ]
    return b"".join(
        [
            data[:2],
            *(data[s:e] for s, e in segments[:lead]),
            _segment(0xE1, output_exif(provenance.source_exif, size)),
            _segment(0xE1, JPEG_XMP_ID + xmp_packet(provenance)),
            *kept,
            memoryview(data)[rest:],  # a view: the join is the only copy of the scan (a slice would be another)
        ]
    )


def _label_tiff(data: bytes, provenance: Provenance) -> bytes:
    """Append a new IFD 0: the encoder's entries (their values stay where they are) plus the
    output's EXIF tags, Exif/GPS sub-IFDs and XMP (tag 700), serialized by Pillow at the end of
    the file; then point the header at it. Classic (not Big) TIFF, as Pillow writes it."""
    new_ifd0, tail = _tiff_label_tail(data, provenance)
    e = "<" if data[:2] == b"II" else ">"
    return b"".join([data[:4], struct.pack(e + "L", new_ifd0), memoryview(data)[8:], tail])


def label_tiff_in_place(buf: io.BytesIO, provenance: Provenance) -> None:
    """`label_output` for a TIFF held in `buf`, without a copy of it: the label goes on the end
    and the header's first-IFD offset is rewritten where it is (16-bit outputs: hundreds of MB)."""
    view = buf.getbuffer()
    try:
        new_ifd0, tail = _tiff_label_tail(view, provenance)
        e = "<" if view[:2] == b"II" else ">"
    finally:
        view.release()  # BytesIO cannot grow while a view is exported
    buf.seek(0, io.SEEK_END)
    buf.write(tail)
    buf.seek(4)
    buf.write(struct.pack(e + "L", new_ifd0))


def _tiff_label_tail(data: bytes | memoryview, provenance: Provenance) -> tuple[int, bytes]:
    """What labelling the classic TIFF `data` adds: the offset of its new IFD 0, and the bytes to
    append (word padding, the label's values and sub-IFDs, the new IFD 0's entry table)."""
    head = bytes(data[:8])
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        raise ValueError("not a classic TIFF")
    e = "<" if head[:2] == b"II" else ">"
    (ifd0,) = struct.unpack(e + "L", head[4:8])
    (count,) = struct.unpack(e + "H", data[ifd0 : ifd0 + 2])
    table_end = ifd0 + 2 + 12 * count
    entries = {struct.unpack(e + "H", data[p : p + 2])[0]: bytes(data[p : p + 12]) for p in range(ifd0 + 2, table_end, 12)}
    next_ifd = bytes(data[table_end : table_end + 4])

    start = len(data) + len(data) % 2  # IFDs and their values start on a word boundary
    xmp = (TiffTags.BYTE, xmp_packet(provenance))

    def serialize(tags: _ExifTags) -> bytes:  # IFD 0's additions first, laid out to go at `start`
        return _write_tags(_ExifTags({**tags.ifd0, XMP_TAG: xmp}, tags.exif, tags.gps), head[:2], start)

    # No size: TIFF's own ImageWidth/ImageLength say it, and the Exif pixel dimensions are for
    # compressed (JPEG-like) files only.
    blob = _first_serialized(provenance.source_exif, None, serialize, None)
    (added,) = struct.unpack(e + "H", blob[:2])
    entries.update({struct.unpack(e + "H", blob[p : p + 2])[0]: blob[p : p + 12] for p in range(2, 2 + 12 * added, 12)})
    table = struct.pack(e + "H", len(entries)) + b"".join(entries[t] for t in sorted(entries)) + next_ifd
    new_ifd0 = start + len(blob)  # blob's length is even: Pillow pads values to words
    return new_ifd0, b"".join([b"\x00" * (start - len(data)), blob, table])


def label_output(data: bytes, pil_format: str, provenance: Provenance) -> bytes:
    """Label already-encoded bytes where the label goes in after encoding: JPEG (from any
    encoder) and TIFF. PNG and WebP are labelled by `save_options` while encoding, and BMP cannot
    be: those come back unchanged."""
    if pil_format == "JPEG":
        return _label_jpeg(data, provenance)
    if pil_format == "TIFF":
        return _label_tiff(data, provenance)
    return data
