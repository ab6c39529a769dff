"""Rate-distortion benchmarking of the splat codec against JPEG, WebP and AVIF (``gsi bench``).

Modules (metrics in :mod:`gscodec.metrics`): :mod:`.bdrate` (Bjøntegaard delta
rate), :mod:`.codecs` (one class per codec), :mod:`.store` (``points.csv`` and
the results JSON files), :mod:`.plot` (the RD plot), :mod:`.reference`
(published curves) and :mod:`.runner` (measuring and aggregating).

Needs ``pytorch-msssim`` and ``matplotlib`` besides the codec's own dependencies.
"""

from .bdrate import bd_rate
from .codecs import CODECS, Codec, make_codec
from ..metrics import ms_ssim, psnr_u8
from .runner import Summary, run
from .store import BenchError

__all__ = ["BenchError", "CODECS", "Codec", "Summary", "bd_rate", "make_codec", "ms_ssim", "psnr_u8", "run"]
