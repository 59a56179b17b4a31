"""The item embedding index: student item vectors, their feature state and a FAISS index, versioned on disk."""
