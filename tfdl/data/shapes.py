"""An example image folder tfdl writes itself, so the image-folder source runs offline:
circles, squares and triangles, one subfolder per class, as PNG files.

Each picture is one shape in one colour on a background of another (no antialiasing: two
colours exactly), at a random size (30-80% of the picture) and place, with random
colours of clear contrast, so that only the shape tells the classes apart. The same seed
writes the same bytes.
"""

from pathlib import Path

import numpy as np

from tfdl.errors import ConfigError

CLASSES = ("circle", "square", "triangle")
MIN_SIZE, MAX_SIZE = 8, 1024
MAX_SEED = 2**32 - 1
SHARE = (0.3, 0.8)  # of the picture's side, the shape's side


def make_shapes(
    folder, per_class: int = 200, size: int = 64, seed: int = 0, classes=None
) -> dict[str, int]:
    """Write `per_class` pictures of `size` x `size` pixels of each class into `folder`
    (new, or empty) as folder/<class>/<class>_0000.png ...; {class: pictures written}.
    Every argument is checked before anything is written."""
    classes = list(CLASSES if classes is None else classes)
    _check(per_class, size, seed, classes)
    folder = Path(folder)
    _prepare(folder)
    counts = {}
    for name in classes:
        # One generator per class, from the seed and the class: a subset of the classes
        # draws the same pictures of each as the whole set does.
        rng = np.random.default_rng([seed, CLASSES.index(name)])
        _write(folder / name, [_picture(rng, name, size) for _ in range(per_class)], name)
        counts[name] = per_class
    return counts


def _check(per_class, size, seed, classes) -> None:
    if not isinstance(per_class, int) or per_class < 1:
        raise ConfigError("per_class", f"{per_class} pictures per class", "1 or more")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError("size", f"{size} pixels along a side", f"{MIN_SIZE} to {MAX_SIZE}")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError("seed", f"seed {seed}", f"0 to {MAX_SEED}")
    unknown = [c for c in classes if c not in CLASSES]
    if not classes or unknown or len(set(classes)) < len(classes):
        problem = f"unknown class {unknown[0]!r}" if unknown else "no class, or one named twice"
        raise ConfigError("classes", problem, f"each of {', '.join(CLASSES)} at most once")


def _prepare(folder: Path) -> None:
    """The folder exists and is empty afterwards, or one line says why it cannot be."""
    allowed = "a new or empty folder"
    try:
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError("folder", f"{folder} is not empty", allowed)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("folder", f"cannot create {folder}: {err.strerror}", allowed) from None


def _write(folder: Path, pictures, name: str) -> None:
    from PIL import Image

    try:
        folder.mkdir()
        for i, pixels in enumerate(pictures):
            Image.fromarray(pixels, "RGB").save(folder / f"{name}_{i:04d}.png", format="PNG")
    except OSError as err:
        problem = f"cannot write into {folder}: {err.strerror or err}"
        raise ConfigError("folder", problem, "a writable folder with room") from None


def _colours(rng) -> tuple[np.ndarray, np.ndarray]:
    """A background of any brightness and a shape colour clearly darker or lighter."""
    background = rng.integers(0, 256, 3)
    light = background.mean() < 128
    low, high = (170, 256) if light else (0, 86)
    shape = rng.integers(low, high, 3)
    return background.astype(np.uint8), shape.astype(np.uint8)


def _picture(rng, name: str, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    background, colour = _colours(rng)
    lo, hi = (max(2, round(f * size)) for f in SHARE)
    side = int(rng.integers(lo, hi + 1))
    # A margin of a pixel at least: the corners are always background.
    x0, y0 = (int(v) for v in rng.integers(1, size - side, 2))
    x1, y1 = x0 + side - 1, y0 + side - 1
    image = Image.new("RGB", (size, size), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    fill = tuple(int(c) for c in colour)
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    else:  # base along the bottom, apex at the middle of the top
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
    return np.asarray(image)
