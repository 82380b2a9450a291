import numpy as np
import pytest
import torch
from PIL import Image

import layerscope as ls


def test_sample_photo_is_rgb_in_unit_range():
    x = ls.load_image("chelsea", 299)
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_grayscale_and_rgba_become_rgb(tmp_path):
    assert ls.load_image("camera", 16).shape == (1, 3, 16, 16)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = ls.load_image(tmp_path / "a.png", None)
    assert x.shape == (1, 3, 8, 8)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_png_round_trip_is_exact_to_8_bits(tmp_path):
    x = ls.load_image("coffee", (20, 30))
    ls.save_image(x, tmp_path / "x.png")
    y = ls.load_image(tmp_path / "x.png", None)
    assert y.shape == (1, 3, 20, 30)
    assert float((x - y).abs().max()) <= 0.5 / 255 + 1e-6


def test_missing_and_corrupt_images_are_clear_errors(tmp_path):
    with pytest.raises(ls.ImageError, match="not found"):
        ls.load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ls.ImageError, match="corrupt"):
        ls.load_image(bad)


def test_grid_has_one_cell_per_image(tmp_path):
    x = ls.load_image("rocket", 16)
    path = ls.save_grid([[x, None, x], [x, x, x]], tmp_path / "g.png", ["a", "b"], ["1", "2", "3"])
    with Image.open(path) as im:
        w, h = im.size
    assert w > h  # three columns, two rows


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    """PIL converts I;16 / I / F images to RGB by clipping at 255: a mid-grey 16-bit image
    would come out white. Each is scaled to [0, 1] by its bit depth (floats in [0, 1] kept)."""
    ramp = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "f.tiff")
    Image.fromarray((ramp * 4 - 1).astype(np.float32)).save(tmp_path / "wide.tiff")
    for name, expected in (("g16.png", ramp), ("f.tiff", ramp), ("wide.tiff", ramp)):
        x = ls.load_image(tmp_path / name, None)
        assert x.shape == (1, 3, 48, 64)
        np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1e-4)
        assert torch.equal(x[0, 0], x[0, 2])  # grey to RGB by replication
        assert 0.49 < float(ls.load_image(tmp_path / name, 32).mean()) < 0.51
