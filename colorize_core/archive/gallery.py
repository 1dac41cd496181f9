"""Before/after galleries: small JPEG thumbnails as data URIs, so one HTML page or one markdown
artifact shows them anywhere (a local folder, an S3 bucket, the Prefect UI) with no file links."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from colorize_core.storage.imageio import decode


def thumbnail_uri(data: bytes, size: int = 256) -> str:
    img = decode(data, name="thumbnail").convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def image_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gallery_markdown(pairs: list[tuple[str, bytes, bytes]], title: str) -> str:
    """(name, before bytes, after bytes) -> a markdown table of before | after."""
    lines = [f"# {title}", "", "| source | before | after |", "|---|---|---|"]
    for name, before, after in pairs:
        lines.append(f"| `{name}` | ![before]({thumbnail_uri(before)}) | ![after]({thumbnail_uri(after)}) |")
    return "\n".join(lines)


def gallery_html(pairs: list[tuple[str, bytes, bytes]], title: str) -> str:
    rows = "\n".join(
        f"<tr><td>{html.escape(name)}</td><td><img src='{thumbnail_uri(b, 384)}'></td><td><img src='{thumbnail_uri(a, 384)}'></td></tr>"
        for name, b, a in pairs
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td{padding:4px;vertical-align:top}img{max-width:384px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><table><tr><th>source</th><th>before</th><th>after</th></tr>"
        f"{rows}</table></body></html>"
    )
