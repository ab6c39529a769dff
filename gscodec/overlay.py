"""Drawing each Gaussian's ellipse over a render: what the splats of a `.gsi` file look like."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .gaussians import GaussianImage


def ellipse_outlines(g: GaussianImage, sigma: float = 1.0, points: int = 48) -> np.ndarray:
    """``(N, points, 2)`` float64 outline points of each Gaussian's ``sigma`` ellipse, in pixels.

    The ellipse is the contour where the squared Mahalanobis distance is
    ``sigma**2``: ``mean + sigma * L @ (cos t, sin t)``, with ``L`` the Cholesky factor.
    """
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, points)
    chol = g.chol.astype(np.float64)
    lower = np.zeros((g.count, 2, 2))
    lower[:, 0, 0], lower[:, 1, 0], lower[:, 1, 1] = chol[:, 0], chol[:, 1], chol[:, 2]
    return g.means.astype(np.float64)[:, None, :] + sigma * np.einsum("nij,jp->npi", lower, circle)


def draw_ellipses(pixels: np.ndarray, g: GaussianImage, sigma: float = 1.0,
                  color: tuple[int, int, int] = (255, 255, 255), opacity: float = 0.55) -> np.ndarray:
    """``pixels`` ``(H, W, 3)`` uint8 with the ``sigma`` ellipse of every Gaussian of ``g`` drawn over it.

    ``g`` must be at the size of ``pixels`` (:meth:`GaussianImage.scaled`); returns a new array.
    """
    height, width = pixels.shape[:2]
    if (g.width, g.height) != (width, height):
        raise ValueError(f"Gaussians are {g.width}x{g.height}, the pixels {width}x{height}")
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    ink = (*color, int(round(255 * opacity)))
    outlines = ellipse_outlines(g, sigma)
    lo, hi = outlines.min(axis=1), outlines.max(axis=1)
    visible = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] <= width) & (lo[:, 1] <= height) & \
              ((hi - lo).max(axis=1) >= 1.0)
    for outline in outlines[visible]:
        pts = [tuple(p) for p in np.clip(outline, -4 * max(width, height), 5 * max(width, height))]
        draw.line(pts + pts[:1], fill=ink, width=1)
    base = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB").convert("RGBA")
    return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))
