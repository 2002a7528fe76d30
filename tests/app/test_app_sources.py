"""``--data`` as a folder of images or a CSV of features, and their errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import TOKEN

from bayesdl.app import Labeller, create_app, load_source


def _save(path, array, mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(12):
        _save(root / f"a/{i:02d}.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    _save(root / "b/x.jpg", np.full((30, 30), 255, np.uint8))
    _save(root / ".hidden/skip.png", np.zeros((20, 20), np.uint8))
    (root / "notes.txt").write_text("not an image")
    (root / "labels.csv").write_text("file,label\na/00.png,cat\na/01.png,dog\nb/x.jpg,dog\n")
    return root


def test_a_folder_gives_a_pool_and_a_held_out_set(folder):
    data = load_source(str(folder), image_size=16)
    assert data.kind == "image" and data.classes == ["cat", "dog"]
    assert data.pool_x.shape == (10, 1, 16, 16)  # 13 images, 3 with known labels
    assert data.item_names == [f"a/{i:02d}.png" for i in range(2, 12)]
    assert data.heldout_y.tolist() == [0, 1, 1]
    torch.testing.assert_close(data.heldout_x[2], torch.ones(1, 16, 16))  # the white JPEG
    assert type(data.network()[0]).__name__ == "Conv2d"  # 16 px and up: the CNN


def test_colour_images_keep_three_channels(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 0] = 255
    _save(tmp_path / "r.png", rgb, "RGB")
    _save(tmp_path / "g.png", np.full((10, 10), 7, np.uint8))
    data = load_source(str(tmp_path), classes=["red", "grey"], image_size=8)
    assert data.pool_x.shape == (2, 3, 8, 8)
    torch.testing.assert_close(data.pool_x[0], torch.full((3, 8, 8), 7 / 255))  # g.png
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    torch.testing.assert_close(data.pool_x[1], red)  # r.png


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda r: None, "holds no PNG or JPEG"),
        (lambda r: _save(r / "a.png", np.zeros((4, 4), np.uint8)), "--classes"),
        (lambda r: (_save(r / "a.png", np.zeros((4, 4), np.uint8)),
                    (r / "labels.csv").write_text("file,label\nmissing.png,cat\na.png,dog\n")),
         "not in"),
        (lambda r: (_save(r / "a.png", np.zeros((4, 4), np.uint8)),
                    (r / "labels.csv").write_text("name,label\na.png,cat\n")),
         "file,label"),
    ],
)  # fmt: skip
def test_bad_folders_are_explained(tmp_path, setup, words):
    root = tmp_path / "d"
    root.mkdir()
    setup(root)
    with pytest.raises(ValueError, match=words):
        load_source(str(root))


def test_unknown_data_is_explained(tmp_path):
    with pytest.raises(ValueError, match="neither one of"):
        load_source("cifar")
    with pytest.raises(ValueError, match="image_size"):
        load_source("digits", image_size=4)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["x1,x2,label"]
    rng = np.random.default_rng(1)
    for i in range(60):
        a, b = rng.normal(size=2)
        label = ("pos" if a + b > 0 else "neg") if i < 20 else ""
        rows.append(f"{a:.4f},{b:.4f},{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_csv_gives_standardised_features(table):
    data = load_source(str(table))
    assert data.kind == "features" and data.classes == ["neg", "pos"]
    assert data.pool_x.shape == (40, 2) and data.heldout_x.shape == (20, 2)
    raw = np.loadtxt(table, delimiter=",", skiprows=1, usecols=(0, 1))
    expected = (raw - raw.mean(0)) / raw.std(0, ddof=1)
    torch.testing.assert_close(data.pool_x, torch.tensor(expected[20:], dtype=torch.float32))
    with pytest.raises(ValueError, match="row 2, column 'x1'"):
        data.features_from_csv("x1,x2\nabc,1\n")
    with pytest.raises(ValueError, match="lacks feature column"):
        data.features_from_csv("x1\n1\n")


def test_the_app_on_a_csv_shows_features_and_takes_csv_cases(table, tmp_path):
    data = load_source(str(table))
    lab = Labeller(data, tmp_path / "w", batch_size=5, train_steps=20, mc_samples=4)
    client = create_app(lab, TOKEN).test_client()
    client.get(f"/?token={TOKEN}")
    state = client.get("/api/state").get_json()
    item = state["items"][0]
    assert [name for name, _ in item["features"]] == ["x1", "x2"]
    raw = np.loadtxt(table, delimiter=",", skiprows=1, usecols=(0, 1))[20 + item["item"]]
    assert [v for _, v in item["features"]] == pytest.approx(raw.tolist(), abs=1e-3)
    assert client.get(f"/item/{item['item']}.png").status_code == 404  # no images here
    upload = b"x1,x2\n0.5,0.5\n-1,-2\n"
    resp = client.post("/api/cases", data={"files": (io.BytesIO(upload), "new.csv")})
    assert [c["name"] for c in resp.get_json()["cases"]] == ["new.csv row 2", "new.csv row 3"]
    resp = client.post("/api/cases", data={"files": (io.BytesIO(b"\x89PNG..."), "a.png")})
    assert resp.status_code == 400 and "only .csv" in resp.get_json()["error"]
    lab.wait(timeout=60)
