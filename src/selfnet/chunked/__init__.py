"""Block-wise restoring with halos: any volume size in bounded memory, locally or on a Dask cluster.

The isotropic output grid is cut into blocks (default 256 x 256 x 256 voxels). Each block reads
only the raw planes its Keys-cubic z-interpolation needs plus a lateral and axial halo at least
as wide as the network's receptive field, runs the deblurring net on its XZ and YZ slices and
writes its own chunks of the output store. Reflect padding is applied only where a block touches
the true volume border and block origins are multiples of the net's pixel-unshuffle factor, so
the stitched result equals whole-volume restoring (up to float rounding). The intensity
normaliser is fitted once, globally, from a bounded random sample.

Every finished block leaves a marker in ``<store>/.selfnet-progress``; ``resume=True`` skips
those blocks. ``multiscales`` metadata are written last, so an interrupted store never looks
like a finished OME-Zarr image.

The package is split by responsibility:

- :mod:`~selfnet.chunked.plan`: block plan (output grid, halos, input windows), receptive field, ``is_large``
- :mod:`~selfnet.chunked.source`: reading regions of (lazy, memory-mapped) inputs; workers re-opening the input
- :mod:`~selfnet.chunked.sample`: bounded random samples: global normaliser, lazy validation, training subset
- :mod:`~selfnet.chunked.block`: exact restoring of one block (z-interpolation rows, reflect only at true borders)
- :mod:`~selfnet.chunked.job`: a block job: restore one block, write its chunks, mark it done (in-process or Dask task)
- :mod:`~selfnet.chunked.resume`: progress markers, resuming or creating a store, the hidden partial store, saved model
- :mod:`~selfnet.chunked.run`: :func:`restore_chunked` in-process or on a Dask client; pyramid and metadata last
- :mod:`~selfnet.chunked.export`: :func:`restore_to_file`: TIFF/npy outputs streamed from the partial store
- :mod:`~selfnet.chunked.cluster`: local/remote Dask clients, the block progress bar, :func:`restore_with_cluster`
"""

from __future__ import annotations

# Names outside __all__ (limits, CLI helpers, progress markers) are re-exported for cli.py and the tests.
from selfnet.chunked.block import restore_block
from selfnet.chunked.cluster import block_progress, local_client, remote_client, restore_with_cluster
from selfnet.chunked.export import _BIGTIFF_BYTES, _EXPORT_SLAB_BYTES, export_volume, restore_to_file
from selfnet.chunked.job import BlockJob, model_fingerprint
from selfnet.chunked.plan import (
    AUTO_CHUNK_VOXELS,
    DEFAULT_BLOCK,
    MARGIN,
    BlockPlan,
    Window,
    axis_window,
    choose_halo,
    is_large,
    output_voxels,
    parse_block,
    receptive_radius,
)
from selfnet.chunked.resume import MODEL_FILE, PROGRESS_DIR, done_blocks, partial_store, saved_model
from selfnet.chunked.run import ChunkedResult, ProgressFn, peak_rss, restore_chunked
from selfnet.chunked.sample import (
    EXACT_NORMALIZER_VOXELS,
    SAMPLE_VOXELS,
    TRAIN_MAX_ISO_VOXELS,
    fit_normalizer,
    sample_planes,
    sample_training_volume,
    training_volume,
    validate_lazy,
)
from selfnet.chunked.source import SourceSpec, read_region

__all__ = [
    "DEFAULT_BLOCK",
    "BlockPlan",
    "ChunkedResult",
    "SourceSpec",
    "axis_window",
    "block_progress",
    "choose_halo",
    "fit_normalizer",
    "local_client",
    "parse_block",
    "peak_rss",
    "read_region",
    "receptive_radius",
    "restore_block",
    "restore_chunked",
    "restore_to_file",
    "sample_training_volume",
    "validate_lazy",
]
