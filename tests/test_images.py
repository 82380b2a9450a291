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


def test_grid_places_each_image_in_its_cell_and_leaves_none_empty(tmp_path):
    """Red at row 0 column 0, green at row 0 column 2, blue at row 1 column 1, nothing in row
    0 column 1: read back, each colour sits in its own cell and the empty cell holds none."""
    red, green, blue = (torch.zeros(1, 3, 16, 16) for _ in range(3))
    red[:, 0], green[:, 1], blue[:, 2] = 1, 1, 1
    grey = torch.full((1, 3, 16, 16), 0.5)
    path = ls.save_grid([[red, None, green], [grey, blue, grey]], tmp_path / "g.png",
                        ["a", "b"], ["1", "2", "3"])  # fmt: skip
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB")).astype(int)
    h, w, _ = px.shape

    def where(colour):
        ys, xs = np.nonzero(np.abs(px - colour).sum(-1) < 30)
        assert len(ys) > 100, colour  # the cell is drawn, not a few anti-aliased pixels
        return xs.mean() / w, ys.mean() / h

    (rx, ry), (gx, gy), (bx, by) = where((255, 0, 0)), where((0, 255, 0)), where((0, 0, 255))
    assert rx < gx and bx < gx and rx < bx  # columns in order
    assert ry < 0.5 and gy < 0.5 and by > 0.5  # rows in order
    assert abs(ry - gy) < 0.02 and gx - bx > 0.15 and bx - rx > 0.15
    middle_top = px[: h // 2, int(w * 0.45) : int(w * 0.6)]  # the empty cell: white only
    assert not (np.abs(middle_top - (128, 128, 128)).sum(-1) < 30).any()
    assert not (np.abs(middle_top - (0, 0, 255)).sum(-1) < 30).any()


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


def test_32_bit_integer_tiffs_are_scaled_by_their_range(tmp_path):
    """A 32-bit integer image above 65535 loaded black when divided by 2³²−1; it is scaled
    by its own range, and an unsigned TIFF's values above 2³¹ (negative in PIL) by their
    true values."""
    import tifffile

    ramp = np.linspace(0, 1, 64 * 48).reshape(48, 64)
    tifffile.imwrite(tmp_path / "i32.tif", (ramp * 100_000).round().astype(np.int32))
    tifffile.imwrite(tmp_path / "u32.tif", (ramp * 4e9).round().astype(np.uint32))
    for name in ("i32.tif", "u32.tif"):
        x = ls.load_image(tmp_path / name, None)
        np.testing.assert_allclose(x[0, 1].numpy(), ramp, atol=1e-5)


def test_activations_take_what_invert_takes_and_refuse_no_pixels_in_one_line():
    import layerscope as ls

    model = ls.load_model("resnet10")
    image = ls.load_image("chelsea", 32)
    want = ls.activations(model, image, ["layer1"])["layer1"]
    for same in (image.half(), image.double()):
        got = ls.activations(model, same, ["layer1"])["layer1"]
        assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-2)
    grey = image.mean(1, keepdim=True)
    out = ls.activations(model, grey, ["layer1"])["layer1"]
    assert torch.equal(out, ls.activations(model, grey.expand(-1, 3, -1, -1), ["layer1"])["layer1"])
    for empty, needle in ((torch.empty(0, 3, 32, 32), "holds no pixels"),
                          (torch.empty(1, 3, 32, 32, device="meta"), "meta device")):  # fmt: skip
        with pytest.raises(ls.ImageError, match=needle):
            ls.activations(model, empty, ["layer1"])
