"""The item embedding index: student item vectors, their feature state and a FAISS index, versioned on disk.

``layout`` (the directory and what every part shares) <- ``embed`` (the student's item side, local or Ray) <-
``build`` (diff -> embed -> assemble -> publish) ; ``reader`` loads a published version for serving.
"""

from searchrel.index.build import build_index, refresh_index
from searchrel.index.layout import LOCK, MANIFEST, IndexConfig, model_version
from searchrel.index.reader import ItemIndex, load_index

__all__ = ["IndexConfig", "ItemIndex", "LOCK", "MANIFEST", "build_index", "load_index", "model_version",
           "refresh_index"]
