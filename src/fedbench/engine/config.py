"""Build configuration: one section per stage, each with its own thresholds.

Load from YAML (`fedbench build --config build.yaml`), then command-line options override. Every
value is recorded in the data card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    image_extensions: list[str] = [".jpg", ".jpeg", ".png", ".webp", ".avif", ".bmp"]
    video_extensions: list[str] = [".mp4", ".mov", ".mkv", ".avi", ".webm"]
    frame_interval_s: float = Field(1.0, gt=0, description="sample one video frame every this many seconds")
    near_duplicate_bits: int = Field(6, ge=0, le=64, description="a frame within this pHash distance of the "
                                                                    "last kept frame of its video is skipped")
    max_side: int = Field(1024, ge=128, description="frames and images are stored at most this large")


class FaceConfig(_Section):
    min_face_px: int = Field(96, ge=16, description="minimum face box height in the original image")
    dominant_ratio: float = Field(0.25, gt=0, le=1, description="other faces must be smaller than this share of "
                                                                   "the main face's area")
    min_sharpness: float = Field(20.0, ge=0, description="face quality (Laplacian variance of the aligned crop)")
    max_yaw_deg: float = Field(30.0, gt=0, le=90)
    max_pitch_deg: float = Field(25.0, gt=0, le=90)
    max_roll_deg: float = Field(25.0, gt=0, le=180)


class LabelConfig(_Section):
    min_confidence: float = Field(0.4, ge=0, le=1, description="ensemble probability of the top class")
    unknown: Literal["keep", "drop"] = "keep"


class TargetConfig(_Section):
    targets_per_source: int = Field(2, ge=1, le=6)
    oversample: float = Field(1.5, ge=1, description="candidates per class kept before verification, as a "
                                                      "multiple of the final quota")
    classes: list[str] = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry"]


class ParaphraseConfig(_Section):
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0


class InstructionConfig(_Section):
    paraphrase: ParaphraseConfig | None = None


class GroundTruthConfig(_Section):
    editor: str = Field("warp", description="a registered editor or a YAML editor config")
    editor_args: dict[str, Any] = Field(default_factory=dict)
    seeds: int = Field(2, ge=1, le=16, description="ground-truth candidates per triplet; the best verified is kept")
    base_seed: int = 0
    num_gpus: float = Field(0.0, ge=0, description="GPUs per editor actor on Ray")


class VerifyConfig(_Section):
    min_identity: float = Field(0.5, description="ID score of G against S (FED-Score's identity component)")
    min_emotion: float = Field(0.2, description="target probability of G (A_emo without a reference)")
    min_actions: float = Field(0.3, description="share of the target's facial actions G performs (A_act)")
    min_background: float = Field(0.6, description="SSIM outside the face (BG)")
    min_quality: float = Field(0.5, description="face quality of G relative to S (PQ)")


class SplitConfig(_Section):
    near_duplicate_bits: int = Field(6, ge=0, le=64, description="sources within this pHash distance are "
                                                                    "near-duplicates: the later one is dropped")
    identity_cosine: float = Field(0.45, description="sources whose identity embeddings are this close are "
                                                        "one identity cluster (never split across test/train)")
    max_test_share: float = Field(0.5, gt=0, le=1, description="test never takes a cluster that would bring it "
                                                                  "above this share of the triplets (small builds "
                                                                  "keep training data)")
    seed: int = 0


class BuildConfig(_Section):
    per_class: int = Field(110, ge=0, description="test triplets per target class")
    train_per_class: int = Field(3000, ge=0, description="training pairs per target class")
    ingest: IngestConfig = IngestConfig()
    face: FaceConfig = FaceConfig()
    label: LabelConfig = LabelConfig()
    target: TargetConfig = TargetConfig()
    instruction: InstructionConfig = InstructionConfig()
    ground_truth: GroundTruthConfig = GroundTruthConfig()
    verify: VerifyConfig = VerifyConfig()
    split: SplitConfig = SplitConfig()

    @classmethod
    def load(cls, path: Path | None, **overrides: Any) -> "BuildConfig":
        raw: dict[str, Any] = {}
        if path is not None:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            if not isinstance(raw, dict):
                raise ValueError(f"{path}: expected a mapping of sections (ingest, face, label, ...)")
        config = cls.model_validate(raw)
        return config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
