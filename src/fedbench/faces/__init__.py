"""Perception backbones behind small interfaces: landmarks + blendshapes, identity, emotion, masks, quality."""
