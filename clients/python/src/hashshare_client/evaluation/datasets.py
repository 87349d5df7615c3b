"""Evaluation inputs: a folder of images and a file of texts, or the real
photographs and Vietnamese sentences that ship inside installable packages
(scikit-image, scikit-learn, matplotlib; underthesea's VLSP 2013 test set).
Nothing is downloaded."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Tiles of the larger photographs are distinct originals too: different
# content, but the same camera and light, a harder test than unrelated photos.
TILE = 192
MIN_WORDS = 8


@dataclass(frozen=True)
class Original:
    name: str
    image: Image.Image | None = None
    text: str | None = None


def images_from_folder(folder: Path) -> list[Original]:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        with Image.open(path) as image:
            out.append(Original(path.relative_to(folder).as_posix(), image=image.convert("RGB")))
    return out


def texts_from_file(path: Path) -> list[Original]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [Original(f"{path.name}:{i + 1}", text=line) for i, line in enumerate(lines) if line]


def _package_dir(package: str) -> Path | None:
    # Locate without importing: some of these packages are slow to import.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _photo_files() -> Iterator[Path]:
    skimage = _package_dir("skimage")
    if skimage is not None:
        yield from sorted((skimage / "data").glob("*.png"))
        yield from sorted((skimage / "data").glob("*.jpg"))
    sklearn = _package_dir("sklearn")
    if sklearn is not None:
        yield from sorted((sklearn / "datasets" / "images").glob("*.jpg"))
    matplotlib = _package_dir("matplotlib")
    if matplotlib is not None:
        yield from sorted((matplotlib / "mpl-data" / "sample_data").glob("*.jpg"))
        yield from sorted((matplotlib / "mpl-data" / "sample_data").glob("*.png"))


# The right-eye photo of scikit-image's stereo pair shows the same scene, at
# the same instant, as the left-eye one: one picture for a moderation bank.
SAME_SCENE_AS_ANOTHER = {"motorcycle_right.png"}


def builtin_images(limit: int | None = None) -> list[Original]:
    """Every photo the installed packages ship, plus the non-overlapping
    TILE x TILE tiles of the larger ones."""
    out: list[Original] = []
    for path in _photo_files():
        if path.name in SAME_SCENE_AS_ANOTHER:
            continue
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except OSError:
            continue
        if min(image.size) < 64:
            continue
        out.append(Original(path.name, image=image))
        width, height = image.size
        if width >= 2 * TILE or height >= 2 * TILE:
            for top in range(0, height - TILE + 1, TILE):
                for left in range(0, width - TILE + 1, TILE):
                    tile = image.crop((left, top, left + TILE, top + TILE))
                    out.append(Original(f"{path.name}@{left},{top}", image=tile))
    return out[:limit] if limit else out


def builtin_texts(limit: int | None = None) -> list[Original]:
    """Sentences of the VLSP 2013 test set that underthesea ships, re-joined
    from its word segmentation."""
    underthesea = _package_dir("underthesea")
    if underthesea is None:
        return []
    path = underthesea / "pipeline" / "pos_tag" / "models" / "pos_crf_vlsp2013_20230303" / "test_output.txt"
    if not path.exists():
        return []
    sentences: list[Original] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        words = [line.split("\t")[0] for line in block.splitlines() if line.strip()]
        text = " ".join(words)
        for mark in (" ,", " .", " :", " ;", " !", " ?", " )", "( "):
            text = text.replace(mark, mark.strip() if mark != "( " else "(")
        if len(text.split()) >= MIN_WORDS:
            sentences.append(Original(f"vlsp2013:{len(sentences) + 1}", text=text))
    return sentences[:limit] if limit else sentences


def pixel_digest(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()
