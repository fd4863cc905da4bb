"""The OCR set of ``ncodec mpq``: photos with rendered text and known ground truth, and the
character error rate (CER) of an OCR result against it.

:func:`make_ocr_set` is a seeded generator: every image is a crop of a background photo with
one text line per font size (largest to smallest, down to 10 px) drawn on a translucent
plate (dark text on a light plate or light on dark) in Pillow's bundled font (Aileron, so the
set is the same on every machine with FreeType). The text is random words, capitalised words
and numbers from a fixed vocabulary.

CER = Levenshtein edits / ground-truth characters, whitespace removed on both sides (the
recogniser's word spacing is not what is measured), case-sensitive. An OCR line is assigned
to the ground-truth line whose (slightly enlarged) box holds its centre; what is read outside
every ground-truth line (text in the photo itself) is ignored.
"""
from __future__ import annotations

import random

import numpy as np

__all__ = ["FONT_SIZES", "make_ocr_set", "render_lines", "levenshtein", "score_ocr"]

#: font sizes (pixels) of the lines of every OCR image
FONT_SIZES = (32, 24, 18, 14, 12, 10)

_WORDS = ("river station market garden window yellow number street coffee bridge winter "
          "signal orange travel paper office ticket silver museum harbour island forest "
          "camera letter doctor engine rocket planet summer castle basket monday").split()


def _phrase(rng: random.Random, n_words: int) -> str:
    out = []
    for _ in range(n_words):
        r = rng.random()
        if r < 0.2:
            out.append(str(rng.randint(10, 9999)))
        elif r < 0.5:
            out.append(rng.choice(_WORDS).capitalize())
        else:
            out.append(rng.choice(_WORDS))
    return " ".join(out)


def render_lines(background: np.ndarray, seed: int, sizes=FONT_SIZES) -> tuple[np.ndarray, list]:
    """Draw one line per font size on ``background`` (H x W x 3 uint8).

    Returns the image and its ground truth ``[{"text", "size", "box": [x0, y0, x1, y1]}]``
    (box = the plate behind the line)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    img = Image.fromarray(background).convert("RGBA")
    h, w = background.shape[:2]
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    gap = max(4, (h - sum(int(s * 1.6) for s in sizes)) // (len(sizes) + 1))
    need = sum(int(s * 1.3) + 2 * max(2, s // 4) for s in sizes)  # the plates' heights
    if len(sizes) * gap + need > h:  # a small photo: tighter spacing
        gap = max(2, (h - need) // len(sizes))
    y, truth = gap, []
    for size in sizes:
        font = ImageFont.load_default(size=size)
        pad = max(2, size // 4)
        words = max(2, min(6, (w - 2 * pad) // (size * 3)))
        text = _phrase(rng, words)
        while len(text.split()) > 1 and draw.textlength(text, font=font) > w - 4 * pad:
            text = text.rsplit(" ", 1)[0]
        tw = int(draw.textlength(text, font=font))
        x = rng.randint(pad, max(pad, w - tw - 3 * pad))
        x0, y0, x1, y1 = x - pad, y, x + tw + pad, y + int(size * 1.3) + 2 * pad
        light = rng.random() < 0.6
        draw.rectangle((x0, y0, x1, y1), fill=(245, 245, 240, 205) if light else (20, 20, 25, 190))
        ink = (rng.randint(0, 60),) * 3 if light else (rng.randint(215, 255),) * 3
        draw.text((x, y0 + pad), text, font=font, fill=ink + (255,))
        truth.append({"text": text, "size": size, "box": [x0, y0, x1, y1]})
        y = y1 + gap
    out = Image.alpha_composite(img, overlay).convert("RGB")
    return np.asarray(out), truth


def make_ocr_set(photos: list[np.ndarray], n: int, seed: int = 0,
                 size: tuple[int, int] = (512, 384)) -> list[tuple[str, np.ndarray, list]]:
    """``n`` OCR images ``(name, image, ground truth)``: seeded crops (``size`` = width,
    height, or the photo's size when smaller) of the photos, taken in turn, with text lines."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        ph, pw = photo.shape[:2]
        cw, ch = min(size[0], pw), min(size[1], ph)
        x, y = rng.randint(0, pw - cw), rng.randint(0, ph - ch)
        img, truth = render_lines(np.ascontiguousarray(photo[y:y + ch, x:x + cw]),
                                  seed * 1000 + i)
        out.append((f"ocr{i:02d}.png", img, truth))
    return out


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _strip(s: str) -> str:
    return "".join(s.split())


def score_ocr(truth: list[dict], lines: list) -> dict:
    """Edits and characters per ground-truth line for OCR ``lines`` (``[(box, text)]``).

    Returns ``{"edits", "chars", "by_size": {size: [edits, chars]}, "read": [text per line]}``.
    """
    assigned: list[list] = [[] for _ in truth]
    for (x0, y0, x1, y1), text in lines:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for k, t in enumerate(truth):
            bx0, by0, bx1, by1 = t["box"]
            m = 0.25 * (by1 - by0)
            if bx0 - m <= cx <= bx1 + m and by0 - m <= cy <= by1 + m:
                assigned[k].append((x0, text))
                break
    edits = chars = 0
    by_size: dict = {}
    read = []
    for t, parts in zip(truth, assigned):
        hyp = " ".join(text for _, text in sorted(parts))
        gt = _strip(t["text"])
        e = levenshtein(gt, _strip(hyp))
        edits, chars = edits + e, chars + len(gt)
        s = by_size.setdefault(str(t["size"]), [0, 0])
        s[0], s[1] = s[0] + e, s[1] + len(gt)
        read.append(hyp)
    return {"edits": edits, "chars": chars, "by_size": by_size, "read": read}
