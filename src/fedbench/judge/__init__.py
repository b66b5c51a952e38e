"""An optional vision-language judge for FED-Score's Alignment (docs/judge.md).

A judge is an OpenAI-compatible chat-completions endpoint with image inputs. It answers, per face
image, a distribution over the seven expressions and, per required facial action, whether the face
performs it. Answers are cached by (judge config hash, prompt version, image sha256, actions asked);
failures are statuses (`judge_failed`, `judge_refused`), never a value.
"""

from fedbench.judge.config import JudgeConfig, JudgeConfigError, load_judge_config
from fedbench.judge.schema import PROMPT_VERSION, JudgeAnswer, JudgeReply

__all__ = ["JudgeConfig", "JudgeConfigError", "load_judge_config", "PROMPT_VERSION", "JudgeAnswer", "JudgeReply"]
