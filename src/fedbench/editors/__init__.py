"""Editors produce edited images (never scores): probes and the training-free `warp` baseline."""
