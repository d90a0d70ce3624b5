"""Where features meet geometry: cell centres, positive matching, similarity propagation.

May import: ``losses`` (``chunked`` computes PixPro's loss in row blocks from its sums), ``config``, ``dist``,
``io``, ``errors``; not its siblings ``data`` / ``models``, nor anything above.
"""

from pixelssl.dense.geometry import bin_diagonal, cell_centers, in_box, normalized_distances
from pixelssl.dense.matching import (
    coordinate_positives,
    feature_argmax,
    gather_cells,
    nearest_cell,
    semantic_weights,
)
from pixelssl.dense.propagation import (
    cosine_similarity_matrix,
    masked_softmax,
    pixel_propagation,
    propagate,
    propagation_weights,
    sharpen,
    similarity_matrix,
)

__all__ = [
    "bin_diagonal",
    "cell_centers",
    "coordinate_positives",
    "cosine_similarity_matrix",
    "feature_argmax",
    "gather_cells",
    "in_box",
    "masked_softmax",
    "nearest_cell",
    "normalized_distances",
    "pixel_propagation",
    "propagate",
    "propagation_weights",
    "semantic_weights",
    "sharpen",
    "similarity_matrix",
]
