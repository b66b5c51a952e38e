"""Triplet manifests and image decoding."""
