"""What the app labels: a built-in data set, a folder of images, or a CSV of features.

* ``digits``, ``mnist``, ``fashion-mnist``: the training split is the pool; the test
  split's first half is the held-out set (learning curve, referral threshold) and its
  second half supplies sample cases for the referral view. The labels of the pool are
  never shown to the person or the model.
* a folder: every PNG/JPEG under it (recursively, hidden files skipped) is an input,
  resized to ``image_size`` squared, grey unless some image has colour. An optional
  ``labels.csv`` (columns ``file,label``) gives known labels for some images: those form
  the held-out set and leave the pool.
* a ``.csv`` file: one row per input, numeric feature columns, and an optional ``label``
  column; rows with a label are the held-out set, rows without form the pool. Features are
  standardised with the mean and standard deviation of all rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from bayesdl import data as bdata
from bayesdl import priors
from bayesdl.models import gal_cnn, mlp

__all__ = ["LabelData", "load_source", "BUILTIN", "IMAGE_SUFFIXES", "MAX_PIXELS"]

BUILTIN = ("digits", "mnist", "fashion-mnist")
"""Names accepted by ``--data`` besides a folder or a CSV file."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files read from a folder (case-insensitive)."""

MAX_PIXELS = 4096 * 4096
"""Largest image (width x height) the app decodes; larger ones are refused."""

_HELD_OUT_CAP = 2000
_SAMPLE_CAP = 300


@dataclass
class LabelData:
    """Inputs to label, plus what the app needs to show and model them.

    Attributes:
        name: The ``--data`` value, as given.
        kind: ``"image"`` (x is (N, C, H, W) in [0, 1]) or ``"features"`` ((N, F)).
        classes: Class names; a label is an index into this list.
        pool_x: The inputs to label, float32.
        item_names: A name per pool item (file, row number or split index).
        heldout_x: Held-out inputs with known labels (None when there are none).
        heldout_y: Their labels, int64 indices into ``classes``.
        sample_x: Example inputs for the referral view (built-in sets only).
        feature_names: Column names for ``"features"`` data.
        feature_mean: Per-feature mean used to standardise (``"features"`` only).
        feature_std: Per-feature standard deviation used to standardise.
    """

    name: str
    kind: Literal["image", "features"]
    classes: list[str]
    pool_x: Tensor
    item_names: list[str]
    heldout_x: Tensor | None = None
    heldout_y: Tensor | None = None
    sample_x: Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    feature_mean: Tensor | None = None
    feature_std: Tensor | None = None

    @property
    def channels(self) -> int:
        """Image channels (1 grey, 3 colour); 0 for features."""
        return int(self.pool_x.shape[1]) if self.kind == "image" else 0

    @property
    def image_size(self) -> int:
        """Side of the square images; 0 for features."""
        return int(self.pool_x.shape[-1]) if self.kind == "image" else 0

    def fingerprint(self) -> dict[str, object]:
        """What a work directory must match to be resumed with this data."""
        h = hashlib.sha256(self.pool_x.numpy().tobytes()).hexdigest()[:16]
        return {"data": self.name, "classes": self.classes, "pool": list(self.pool_x.shape),
                "pool_sha256": h}  # fmt: skip

    def network(self) -> nn.Module:
        """A fresh network for this data: Gal et al.'s CNN for images of 16 pixels or more,
        otherwise an MLP with one hidden layer of 256 units and dropout 0.5."""
        classes = len(self.classes)
        if self.kind == "image" and self.image_size >= 16:
            return gal_cnn(classes, self.channels, self.image_size, init="glorot")
        return mlp(int(np.prod(self.pool_x.shape[1:])), classes, hidden=(256,), dropout=0.5)

    def prior(self) -> priors.Normal:
        """Weight decay as a Gaussian prior (scaled by 1/labels in the objective): Gal et
        al.'s c = 3.5 on the CNN's first dense layer, c = 0.5 on every layer of the MLP."""
        if self.kind == "image" and self.image_size >= 16:
            return priors.Normal({"": math.inf, "7": 1.0 / math.sqrt(2 * 3.5)})
        return priors.Normal(1.0)

    # -- converting new inputs -----------------------------------------------------------
    def image_from_bytes(self, raw: bytes) -> Tensor:
        """Decode a PNG/JPEG file into one input shaped like the pool's, (C, H, W).

        Args:
            raw: The file's bytes.

        Raises:
            ValueError: If the bytes are not a PNG or JPEG image, or the image is too large.
        """
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(raw)) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise ValueError(f"expected a PNG or JPEG image, got {img.format}.")
                if img.width * img.height > MAX_PIXELS:
                    raise ValueError(
                        f"image of {img.width}x{img.height} pixels is too large (at most "
                        f"{MAX_PIXELS} pixels); shrink it first."
                    )
                return _to_tensor(img, self.channels, self.image_size)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
            raise ValueError(f"not a readable PNG or JPEG image ({err}).") from None

    def features_from_csv(self, text: str) -> list[Tensor]:
        """Parse CSV rows with this data's feature columns into standardised inputs.

        Args:
            text: CSV text with a header naming (at least) the feature columns.

        Raises:
            ValueError: If a column is missing or a value is not a number.
        """
        rows, header = _read_csv_rows(text)
        missing = [c for c in self.feature_names if c not in header]
        if missing:
            raise ValueError(f"the CSV lacks feature column(s) {missing}; it has {header}.")
        x = torch.tensor(
            [[_number(r[c], i, c) for c in self.feature_names] for i, r in enumerate(rows, 2)],
            dtype=torch.float32,
        )
        assert self.feature_mean is not None and self.feature_std is not None
        return list((x - self.feature_mean) / self.feature_std)

    def render_png(self, x: Tensor) -> bytes:
        """An image input as PNG bytes (what the model sees, at its own resolution).

        Args:
            x: One image input, shape (C, H, W), values in [0, 1].
        """
        from PIL import Image

        arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


def _to_tensor(img: object, channels: int, size: int) -> Tensor:
    from PIL import Image

    assert isinstance(img, Image.Image)
    img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _is_grey(img: object) -> bool:
    """True when an image has no colour (a grey mode, or equal RGB channels)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _number(text: str, row: int, column: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"row {row}, column {column!r}: expected a number, got {text!r}."
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"row {row}, column {column!r}: {text!r} is not a finite number.")
    return value


def _read_csv_rows(text: str) -> tuple[list[dict[str, str]], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValueError("the CSV is empty; it needs a header row naming the columns.")
    header = [h.strip() for h in reader.fieldnames]
    reader.fieldnames = header
    return list(reader), header


def _check_classes(classes: list[str], where: str) -> list[str]:
    if len(classes) < 2:
        raise ValueError(f"{where}: need at least 2 classes, got {classes}.")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{where}: class names repeat: {classes}.")
    return classes


def _builtin(name: str) -> LabelData:
    loader = {"digits": bdata.digits, "mnist": bdata.mnist, "fashion-mnist": bdata.fashion_mnist}
    train, test = loader[name]("train"), loader[name]("test")
    half = len(test) // 2
    held = torch.arange(min(half, _HELD_OUT_CAP))
    sample = torch.arange(half, min(len(test), half + _SAMPLE_CAP))
    classes = (
        ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Boot"] if name == "fashion-mnist" else [str(c) for c in range(train.num_classes or 10)]
    )  # fmt: skip
    return LabelData(
        name=name, kind="image", classes=classes, pool_x=train.x.float().contiguous(),
        item_names=[f"{name} train #{i}" for i in range(len(train))],
        heldout_x=test.x[held].float(), heldout_y=test.y[held].long(), sample_x=test.x[sample],
    )  # fmt: skip


def _folder(root: Path, classes: list[str] | None, image_size: int) -> LabelData:
    from PIL import Image

    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )  # fmt: skip
    if not files:
        raise ValueError(f"{root} holds no PNG or JPEG images; put the images to label there.")
    known: dict[str, str] = {}
    label_file = root / "labels.csv"
    if label_file.exists():
        rows, header = _read_csv_rows(label_file.read_text())
        if "file" not in header or "label" not in header:
            raise ValueError(f"{label_file} needs the columns file,label; it has {header}.")
        known = {r["file"].strip(): r["label"].strip() for r in rows}
    if classes is None:
        if not known:
            raise ValueError(
                f"name the classes with --classes a,b,c (or give {label_file} with known labels)."
            )
        classes = sorted(set(known.values()))
    classes = _check_classes(classes, "classes")
    unknown = sorted({v for v in known.values() if v not in classes})
    if unknown:
        raise ValueError(f"{label_file} has labels {unknown} outside the classes {classes}.")
    images, grey = [], True
    for p in files:
        with Image.open(p) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"{p} is larger than {MAX_PIXELS} pixels; shrink it first.")
            grey = grey and _is_grey(img)
            images.append(img.copy())
    channels = 1 if grey else 3
    x = torch.stack([_to_tensor(img, channels, image_size) for img in images])
    rel = [p.relative_to(root).as_posix() for p in files]
    held = [i for i, r in enumerate(rel) if r in known]
    missing = sorted(set(known) - set(rel))
    if missing:
        raise ValueError(f"{label_file} names files that are not in {root}: {missing[:5]}.")
    pool = [i for i, r in enumerate(rel) if r not in known]
    if not pool:
        raise ValueError(f"every image in {root} has a known label; nothing left to label.")
    return LabelData(
        name=str(root), kind="image", classes=classes, pool_x=x[pool],
        item_names=[rel[i] for i in pool],
        heldout_x=x[held] if held else None,
        heldout_y=torch.tensor([classes.index(known[rel[i]]) for i in held]) if held else None,
    )  # fmt: skip


def _table(path: Path, classes: list[str] | None) -> LabelData:
    rows, header = _read_csv_rows(path.read_text())
    if not rows:
        raise ValueError(f"{path} has a header but no rows.")
    features = [h for h in header if h != "label"]
    if not features:
        raise ValueError(f"{path} has no feature columns besides 'label'.")
    has_label = "label" in header
    x = torch.tensor(
        [[_number(r[c], i, c) for c in features] for i, r in enumerate(rows, 2)],
        dtype=torch.float32,
    )
    given = [(r.get("label") or "").strip() if has_label else "" for r in rows]
    if classes is None:
        classes = sorted({g for g in given if g})
        if not classes:
            raise ValueError(
                f"name the classes with --classes a,b,c (or label some rows of {path})."
            )
    classes = _check_classes(classes, "classes")
    unknown = sorted({g for g in given if g and g not in classes})
    if unknown:
        raise ValueError(f"{path} has labels {unknown} outside the classes {classes}.")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8) if len(x) > 1 else torch.ones(x.shape[1])
    x = (x - mean) / std
    held = [i for i, g in enumerate(given) if g]
    pool = [i for i, g in enumerate(given) if not g]
    if not pool:
        raise ValueError(f"every row of {path} has a label; leave the ones to label empty.")
    return LabelData(
        name=str(path), kind="features", classes=classes, pool_x=x[pool],
        item_names=[f"row {i + 2}" for i in pool],
        heldout_x=x[held] if held else None,
        heldout_y=torch.tensor([classes.index(given[i]) for i in held]) if held else None,
        feature_names=features, feature_mean=mean, feature_std=std,
    )  # fmt: skip


def load_source(data: str, *, classes: list[str] | None = None, image_size: int = 28) -> LabelData:
    """Load what ``bayesdl label --data`` names.

    Args:
        data: ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, a folder of images or a CSV
            file of features.
        classes: Class names (folders and CSVs; default: the known labels, sorted).
        image_size: Side images from a folder are resized to.

    Returns:
        The :class:`LabelData`.

    Raises:
        ValueError: If the source is unknown, empty or inconsistent (the message says how).
        FileNotFoundError: If a built-in image set is not on this machine.
    """
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, int)
        or not 8 <= image_size <= 256
    ):
        raise ValueError(f"image_size must be an integer in [8, 256], got {image_size!r}.")
    if data in BUILTIN:
        return _builtin(data)
    path = Path(data)
    if path.is_dir():
        return _folder(path, classes, image_size)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _table(path, classes)
    raise ValueError(
        f"--data {data!r} is neither one of {list(BUILTIN)}, a folder of images, nor a .csv file."
    )
