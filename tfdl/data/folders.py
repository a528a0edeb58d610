"""Folders of the user's own files, one subfolder per class, as Keras'
`image_dataset_from_directory` and `text_dataset_from_directory` read them.

Images are never held: the splits keep file names and tf.data decodes them a batch at a
time (`tfdl.data.pipeline.streamed`). Every file is checked here, before any run: a
class folder without files, a file that is not an image, a text that is not UTF-8 is
one line naming it. Texts are small enough to hold and are read whole.
"""

from pathlib import Path

import numpy as np

from tfdl.data.schema import ImageFolder, TextFolder
from tfdl.data.spec import Arrays, DataSpec, Splits
from tfdl.data.split import split_rows
from tfdl.errors import ConfigError

IMAGE_FORMATS = ("BMP", "GIF", "JPEG", "PNG")  # what tf.io.decode_image reads
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def load_image_folder(cfg: ImageFolder, seed: int) -> Splits:
    files, y, names = class_files(cfg, "images", "image", IMAGE_SUFFIXES)
    for file in files:
        check_image(file)
    h, w = cfg.image_size
    channels = CHANNELS[cfg.color_mode]
    spec = DataSpec(
        input_shape=(h, w, channels),
        task="binary" if len(names) == 2 else "multiclass",
        num_classes=len(names),
        class_names=names,
        # Pixels stay 0..255 in the stream; the model's Rescaling layer scales them.
        normalizer={"how": "rescale", "scale": 1 / 255} if cfg.normalize == "rescale" else None,
        stream={"kind": "images", "image_size": [h, w], "channels": channels, "cache": cfg.cache},
    )
    x = np.asarray([str(f) for f in files], dtype=object)
    train, val, test = split_rows(y, cfg, seed, stratified=True)
    info = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "seed": int(seed)}
    info |= {"normalize": cfg.normalize, "cache": cfg.cache}
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], spec=spec, info=info)


def load_text_folder(cfg: TextFolder, seed: int) -> Arrays:
    files, y, names = class_files(cfg, ".txt files", "text", (".txt",))
    texts = np.asarray([read_text(f) for f in files], dtype=object)
    spec = DataSpec(
        input_shape=(),
        task="binary" if len(names) == 2 else "multiclass",
        num_classes=len(names),
        class_names=names,
        input_dtype="string",
    )
    return Arrays(x=texts, y=y, spec=spec)


def read_text(file) -> str:
    """One text file, which must be UTF-8: one line naming it otherwise."""
    try:
        return Path(file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        problem = f"{file} is not UTF-8 ({err.reason} at byte {err.start})"
        raise ConfigError("data.path", problem, "UTF-8 text files") from None
    except OSError as err:
        raise ConfigError("data.path", f"cannot read {file}: {err.strerror}") from None


def check_image(file: Path) -> None:
    """The file is a picture tf.data can decode: its header is read, not its pixels."""
    from PIL import Image, UnidentifiedImageError

    allowed = "bmp, gif, jpeg or png image files"
    try:
        with Image.open(file, formats=IMAGE_FORMATS):
            pass
    except (UnidentifiedImageError, OSError) as err:
        reason = "unreadable" if isinstance(err, UnidentifiedImageError) else err.strerror
        raise ConfigError("data.path", f"{file} is not an image ({reason})", allowed) from None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def class_files(
    cfg, what: str, noun: str, suffixes
) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """(files, labels, class names) of a folder with one subfolder per class: the classes
    in `cfg.classes` order or sorted, each folder's files (subfolders included, hidden
    ones skipped) in sorted order."""
    root = Path(cfg.path).expanduser()
    layout = f"a folder with one subfolder of {what} per class"
    if not root.exists():
        raise ConfigError("data.path", f"no such folder: {cfg.path}", layout)
    if not root.is_dir():
        raise ConfigError("data.path", f"{cfg.path} is not a folder", layout)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    two = f"2 or more class subfolders of {what}"
    if not found:
        raise ConfigError("data.path", f"{cfg.path} has no subfolders", two)
    names = found
    if cfg.classes is not None:
        unknown = [c for c in cfg.classes if c not in found]
        if unknown:
            problem = f"no class folder {unknown[0]!r} in {cfg.path}"
            raise ConfigError("data.classes", problem, ", ".join(found))
        if len(set(cfg.classes)) < len(cfg.classes):
            raise ConfigError("data.classes", "a class named twice", "each class once")
        names = list(cfg.classes)
    if len(names) < 2:
        raise ConfigError("data.path", f"{cfg.path} has only {names[0]!r}", two)
    files, labels = [], []
    for label, name in enumerate(names):
        folder = root / name
        inside = [
            p
            for p in sorted(folder.rglob("*"))
            if p.is_file() and all(_visible(Path(part)) for part in p.relative_to(folder).parts)
        ]
        if not inside:
            problem = f"class folder {folder} is empty"
            raise ConfigError("data.path", problem, f"every class folder with {what} in it")
        for file in inside:
            if file.suffix.lower() not in suffixes:
                problem = f"{file}: only {what} belong in a class folder"
                allowed = f"{noun} files only ({', '.join(suffixes)})"
                raise ConfigError("data.path", problem, allowed)
        files += inside
        labels += [label] * len(inside)
    return files, np.asarray(labels, dtype=np.int64), tuple(names)
