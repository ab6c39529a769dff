"""Named limits of the `.gsi` format and of the library, with their reasons.

Readers check these before allocating anything; ``spec/gsi.md`` lists the same
numbers.
"""

MAX_DIMENSION = 16384
"""Largest width or height in pixels: a decoded RGB8 image stays below 805 MB,
and a quantized coordinate at the finest position grid (1/16 px) fits 19 bits."""

MAX_GAUSSIANS = 1 << 22
"""Largest Gaussian count (4,194,304): the decoded float32 parameters stay
below 135 MB, far above any useful budget (a 16384 x 16384 image at one
Gaussian per 64 pixels). Decoding a quantized file passes through integer
codes and float64 values on the way: its peak is about 190 bytes per
Gaussian (770 MB at this limit, measured), not the 32 of the result."""

MAX_METADATA_BYTES = 65535
"""Largest metadata section: room for provenance, never a data channel."""

MAX_METADATA_ENTRIES = 256
"""Most key/value pairs in the metadata section."""

MAX_POSITION_FRACTION_BITS = 4
"""Finest quantized position grid: 1/16 pixel; finer steps cost bits and gain nothing measurable."""

CUTOFF_SQ = 9.0
"""A Gaussian contributes to a pixel only where its squared Mahalanobis distance
is at most this (its 3-sigma ellipse). Normative: part of the decode."""

MAX_RENDER_OVERLAP = 1024
"""Most footprint pixels a render visits per output pixel, on average (each
Gaussian's 3-sigma bounding box, clipped to the image), above
:data:`MIN_RENDER_BUDGET` in all. Fitted files stay near 20-60; far above is a
decompression bomb (a small image under millions of Gaussians that each cover
all of it), whose render would take hours, so it is refused unless the caller
raises or lifts the limit."""

MIN_RENDER_BUDGET = 1 << 28
"""Footprint pixels every render may visit whatever its size (under a second
on one core): a thumbnail of a file with millions of Gaussians still renders."""

MAX_CELL_PAIRS = 1 << 24
"""Most (Gaussian, cell) pairs a cell-pooling CLIP head takes in one call
(:func:`gscodec.clip.cells.cell_pairs`): about 30 bytes of indices each, and
the pair MLP runs on chunks of them. An image of 900 Gaussians on ViT-B-16's
196 patches has a few thousand; millions of Gaussians that each cover the
whole image (a bomb) would have billions."""

MAX_IMAGE_PIXELS = 1 << 26
"""Largest image ``gsi encode`` decodes (67,108,864 pixels, e.g. 8192 x 8192),
checked from the file's header before any pixel is decoded: the decoded RGB8
array stays below 202 MB. Pillow's own limit (89,478,485) is higher."""

MAX_FIT_PIXELS = 1 << 24
"""Largest image the fitter takes (16,777,216 pixels, e.g. 4096 x 4096), after
``--resize``: its working buffers cost about 100-150 bytes per pixel (about
2.5 GB here) and its time grows faster than the pixel count."""

MAX_SAMPLE_BYTES = 1 << 28
"""Most bytes read into memory for one sample: the members of one key in a tar
shard (their declared sizes, checked before reading), or a listed image and its
sidecars (256 MiB; an RGB8 image of :data:`MAX_IMAGE_PIXELS` pixels, stored raw, fits)."""

MAX_SAMPLE_MEMBERS = 1024
"""Most tar members one sample may have."""

MAX_MANIFEST_BYTES = 1 << 28
"""Largest shard manifest read (256 MiB; a manifest takes about 400 bytes per sample)."""

MAX_HEAD_PARAMETERS = 1 << 28
"""Most parameters a CLIP head's own layers (stem and resampler, estimated from its
config before anything is built) may have: 268,435,456, 1 GiB in float32. The
registered heads have 1-20 million."""

MAX_HEAD_DEPTH = 64
"""Most resampler layers in a head config."""

MAX_HEAD_WIDTH = 16384
"""Largest width in a head config (``resampler.attn_dim``, ``stem.hidden``) and most tokens (``num_tokens``)."""
