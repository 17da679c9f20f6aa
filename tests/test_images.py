"""Image loading of odd modes, EXIF orientation, resizing, atomic writes, init images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_exp.core.images import ImageError, fit_long_edge, init_image, load_image, load_pair, save_image, to_tensor


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_loads_as_rgb(tmp_path: Path, mode: str) -> None:
    source = Image.linear_gradient("L").rotate(90).resize((16, 8))  # dark to bright along x
    if mode == "I;16":
        img = Image.fromarray(np.asarray(source, dtype=np.uint16) * 257)
    else:
        img = source.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else (".tiff" if mode in ("I", "F") else ".png")
    path = tmp_path / f"img{suffix}"
    img.save(path)
    loaded = load_image(path, "pair.content")
    assert loaded.mode == "RGB" and loaded.size == (16, 8)
    if mode in ("L", "I;16", "RGB"):
        # a gradient stays a gradient: 16-bit is scaled down, not clipped to white
        row = np.asarray(loaded)[4, :, 0].astype(int)
        assert row.min() < 40 and row.max() > 200


def test_transparent_pixels_become_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.save(tmp_path / "a.png")
    assert np.asarray(load_image(tmp_path / "a.png", "pair.style")).min() == 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (30, 10), "white")
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the upright image is 10 wide, 30 tall
    img.save(tmp_path / "rot.jpg", exif=exif)
    upright = load_image(tmp_path / "rot.jpg", "pair.content")
    assert upright.size == (10, 30)
    top = np.asarray(upright)[2, 5]
    assert top[0] > 200 and top[1] < 80  # red ends up on top


def test_missing_and_bad_files_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^pair.content='.*nope.jpg': no such file$"):
        load_image(tmp_path / "nope.jpg", "pair.content")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path, "pair.style")
    (tmp_path / "x.jpg").write_text("hello")
    with pytest.raises(ImageError, match=r"pair.style='.*x.jpg': not a readable image"):
        load_image(tmp_path / "x.jpg", "pair.style")


def test_resize_long_edge_and_style_follows_content(tiny_pair: tuple[Path, Path]) -> None:
    assert fit_long_edge(Image.new("RGB", (400, 200)), 100).size == (100, 50)
    content, style = load_pair(str(tiny_pair[0]), str(tiny_pair[1]), image_size=20)
    assert content.shape == (1, 3, 15, 20) and style.shape == (1, 3, 20, 15)
    _, bigger = load_pair(str(tiny_pair[0]), str(tiny_pair[1]), image_size=20, style_scale=2.0)
    assert bigger.shape == (1, 3, 40, 30)


def test_save_is_atomic_and_round_trips(tmp_path: Path) -> None:
    image = torch.rand(1, 3, 5, 7)
    path = save_image(image, tmp_path / "out" / "final.png")
    assert [p.name for p in path.parent.iterdir()] == ["final.png"]  # no temp file left behind
    back = to_tensor(Image.open(path).convert("RGB"))
    assert (back - image).abs().max() <= 0.5 / 255 + 1e-6


def test_save_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: Image.Image, *args: object, **kwargs: object) -> None:
        Path(args[0]).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "final.png")
    assert list(tmp_path.iterdir()) == []


def test_init_images() -> None:
    content, style = torch.rand(1, 3, 6, 8), torch.rand(1, 3, 10, 10)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(init_image("content", content, style, gen), content)
    assert init_image("style", content, style, gen).shape == content.shape
    noise = init_image("noise", content, style, gen)
    assert noise.shape == content.shape and noise.min() >= 0 and noise.max() <= 1
    with pytest.raises(ValueError, match="init.kind='blank'"):
        init_image("blank", content, style, gen)
