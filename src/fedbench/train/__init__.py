"""Trainers for the baseline editors: `fedbench train warp` (warp_fit) and `fedbench train diffusers-lora`
(lora); training pairs, splits and folds (data)."""
