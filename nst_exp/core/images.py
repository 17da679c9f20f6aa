"""Image I/O: any file Pillow reads -> upright RGB tensor in [0, 1]; atomic PNG writes."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from nst_exp.core.files import atomic_path, input_file_problem
from nst_exp.errors import ImageError

PNG_COMPRESS_LEVEL = 1  # zlib's fastest (save_image says why)


def load_image(path: str | Path, field: str) -> Image.Image:
    """Open ``path`` as upright 8-bit RGB, or raise ImageError naming ``field``."""
    path = Path(path).expanduser()
    problem = input_file_problem(path)
    if problem:
        raise ImageError(f"{field}={str(path)!r}: {problem}")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; max_image_pixels is a limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise ImageError(f"{field}={str(path)!r}: {pixels.group(1) if pixels else 'its'} pixels exceed "
                         f"max_image_pixels={Image.MAX_IMAGE_PIXELS} (Pillow's decompression-bomb guard); "
                         "raise it, or set max_image_pixels=null to allow any size") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{field}={str(path)!r}: not a readable image ({error})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha over white, 16-bit/float scaled to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def fitted_size(size: tuple[int, int], long_edge: int) -> tuple[int, int]:
    """``size`` scaled so its longer side is ``long_edge`` px, keeping the aspect ratio."""
    w, h = size
    scale = long_edge / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def fit_long_edge(img: Image.Image, long_edge: int) -> Image.Image:
    """Resize so the longer side is ``long_edge`` px, keeping the aspect ratio."""
    size = fitted_size(img.size, long_edge)
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def to_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> (1, 3, H, W) float32 in [0, 1], contiguous."""
    array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor -> PIL RGB, clamped to [0, 1] and rounded."""
    array = image.detach().float().squeeze(0).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0)
    return Image.fromarray(array.cpu().numpy(), "RGB")


def save_image(image: Tensor | Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically: a crash never leaves a truncated file at ``path``.

    zlib level 1, not Pillow's 6: 15 ms instead of 42 for a 512 x 384 image, for a file 3 %
    larger. A run writes one every ``snapshot_every`` steps, which at GPU step times is part
    of the per-step cost (docs/performance.md, fixed cost).
    """
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return Path(path)


def load_pair(content: str, style: str, image_size: int, style_scale: float | str | None = None,
              max_pixels: int | None = Image.MAX_IMAGE_PIXELS, min_edge: int = 1,
              why: str = "", transpose: bool = False) -> tuple[Tensor, Tensor]:
    """Content at ``image_size`` long edge; style at the content's long edge times ``style_scale``,
    or, with ``style_scale="content"``, stretched to the content's exact size (yunjey, mxnet and
    d2l do so, and their Gram normalisations assume it).

    Both images, as read and as resized, must have a short edge of at least ``min_edge`` px
    (``why`` says which layer needs it).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    content_img = _load_resized(content, "pair.content", image_size, min_edge, why,
                                f" after resizing to image_size={image_size}")
    return to_tensor(content_img), load_style(style, "pair.style", content_img.size[::-1], style_scale, min_edge, why,
                                              transpose)


def load_style(path: str, field: str, content_size: tuple[int, int], style_scale: float | str | None = None,
               min_edge: int = 1, why: str = "", transpose: bool = False) -> Tensor:
    """A style image for a content image of ``content_size`` (H, W), checked as in load_pair.

    Its long edge is the content's times ``style_scale``; ``"content"`` resizes it to the
    content's exact size (recipes that stretch the painting to the photo), or with
    ``transpose`` to that size with height and width swapped: yunjey's ``load_image(style,
    shape=[H, W])`` hands [H, W] to PIL's ``resize``, which reads it as (width, height).
    """
    if style_scale == "content":
        source = check_size(load_image(path, field), field, path, min_edge, why)
        size = content_size if transpose else (content_size[1], content_size[0])  # PIL: (W, H)
        return to_tensor(source.resize(size, Image.Resampling.LANCZOS))
    style_edge = max(1, round(max(content_size) * float(style_scale or 1.0)))
    return to_tensor(_load_resized(path, field, style_edge, min_edge, why,
                                   f" after resizing to a {style_edge} px long edge"))


def load_mask(path: str, field: str, size: tuple[int, int]) -> Tensor:
    """A mask as (1, 1, H, W) in [0, 1] (grey levels: white = 1), resized to ``size`` (H, W).

    A mask that is black everywhere selects nothing: an ImageError, not a silent no-op.
    """
    img = load_image(path, field).convert("L").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    mask = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None, None].contiguous()
    if not mask.any():
        raise ImageError(f"{field}={str(path)!r}: is black everywhere at {size[1]}x{size[0]} px; "
                         "a mask selects where its style goes (white = fully)")
    return mask


def _load_resized(path: str, field: str, long_edge: int, min_edge: int, why: str, stage: str) -> Image.Image:
    """``path`` read and resized to ``long_edge``, checked for ``min_edge`` before and after.

    The pixel limit applies to the resized size too, checked before resizing allocates it.
    """
    source = check_size(load_image(path, field), field, path, min_edge, why)
    w, h = fitted_size(source.size, long_edge)
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        raise ImageError(f"{field}={str(path)!r}: {w}x{h} px{stage} ({w * h} pixels) exceeds "
                         f"max_image_pixels={Image.MAX_IMAGE_PIXELS}; use a smaller size, or raise the limit")
    need, free = w * h * BYTES_PER_PIXEL, available_memory()
    if free is not None and need > free:
        raise ImageError(f"{field}={str(path)!r}: {w}x{h} px{stage} needs about {need / 2**30:.1f} GiB "
                         f"(estimated), {free / 2**30:.1f} GiB of memory is available; use a smaller size")
    return check_size(fit_long_edge(source, long_edge), field, path, min_edge, why, stage)


# A lower bound of what a step costs per pixel: VGG's first block alone keeps four 64-channel
# float32 maps (two convs, two ReLUs) for the backward pass.
BYTES_PER_PIXEL = 4 * 64 * 4


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_size(img: Image.Image, field: str, path: str, min_edge: int, why: str,
               stage: str = "") -> Image.Image:
    """``img`` if both its sides are at least ``min_edge`` px, else an ImageError that says so."""
    if min(img.size) < min_edge:
        raise ImageError(f"{field}={str(path)!r}: {img.size[0]}x{img.size[1]} px{stage} is too small; "
                         f"at least {min_edge}x{min_edge} px needed{why}")
    return img


INIT_KINDS = ("content", "gray", "image", "noise", "style")


def init_image(kind: str, content: Tensor, style: Tensor, generator: torch.Generator,
               noise: float = 0.0, start: Tensor | None = None) -> Tensor:
    """Starting image: ``content``, ``style`` or ``image`` (the user's ``start``), resized to
    the content, ``gray`` or uniform ``noise``.

    For content/style/gray/image, ``noise`` in [0, 1] blends in that fraction of uniform noise.
    """
    random = torch.rand(content.shape, generator=generator)
    if kind == "noise":
        return random
    if kind == "content":
        base = content
    elif kind == "gray":  # low-amplitude noise around mid-gray (jcjohnson's "-init random")
        base = torch.full_like(content, 0.5)
    elif kind in ("style", "image"):
        source = style if kind == "style" else start
        if source is None:
            raise ValueError("init.kind='image' needs the start image")
        base = torch.nn.functional.interpolate(source, size=content.shape[-2:], mode="bilinear",
                                               antialias=True, align_corners=False)
    else:
        raise ValueError(f"init.kind={kind!r} is not one of {list(INIT_KINDS)}")
    return ((1 - noise) * base + noise * random).clamp(0, 1).contiguous()
