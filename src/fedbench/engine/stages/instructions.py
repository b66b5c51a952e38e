"""Stage 5, instruction: a coarse part (the target emotion) and a fine-grained part (the target's
facial actions from the EMFACS facts in docs/fedscore.md), each phrased with varied templates chosen
by a hash of the triplet id. Every phrasing is one that FED-Score's instruction parser reads back
as the same actions (tested). An optional OpenAI-compatible chat endpoint paraphrases the result;
when it fails, the template text stays and the error is recorded in the row."""

from __future__ import annotations

import os

from fedbench.engine.stage import Outcome, Record, Stage, short_hash

# Per target: its EMFACS actions, each with a few phrasings.
ACTIONS: dict[str, list[list[str]]] = {
    "happy": [["pull the lip corners up into a smile", "smile so the corners of the mouth turn up",
               "turn the lip corners up in a broad smile"],
              ["raise the cheeks", "lift the cheeks"]],
    "sad": [["lower the lip corners", "pull down the corners of the mouth", "let the lip corners droop"],
            ["raise the inner corners of the eyebrows", "lift the inner brows"]],
    "surprise": [["raise the eyebrows high", "lift the eyebrows"],
                 ["widen the eyes", "open the eyes wide"],
                 ["drop the jaw so the mouth opens", "let the jaw fall open"]],
    "fear": [["raise and pull the eyebrows together", "lift the eyebrows"],
             ["widen the eyes", "open the eyes wide"],
             ["stretch the lips sideways", "stretch the mouth"]],
    "disgust": [["wrinkle the nose", "scrunch the nose"], ["raise the upper lip", "curl the upper lip"]],
    "angry": [["lower and draw the eyebrows together", "furrow the brows"],
              ["narrow the eyes", "tighten the eyelids"],
              ["press the lips together", "press the lips tight"]],
    "neutral": [["relax the whole face"], ["let the mouth rest closed"]],
}
NOUNS = {"happy": "happy", "sad": "sad", "surprise": "surprised", "fear": "fearful", "disgust": "disgusted",
         "angry": "angry", "neutral": "neutral"}
COARSE = ["Change the expression to {adj}", "Make the person look {adj}", "Give the face a {adj} expression",
          "Edit the face so it looks {adj}"]


def compose(sample_id: str, target: str) -> str:
    pick = lambda options, salt: options[int(short_hash(sample_id, salt), 16) % len(options)]  # noqa: E731
    coarse = pick(COARSE, "coarse").format(adj=NOUNS[target])
    fine = [pick(options, f"action{i}") for i, options in enumerate(ACTIONS[target])]
    joined = fine[0] if len(fine) == 1 else ", ".join(fine[:-1]) + " and " + fine[-1]
    return f"{coarse}: {joined}."


class Instruction(Stage):
    name = "instruction"
    mapped = False  # cheap text work; the paraphrase endpoint has its own rate limits

    def setup(self) -> None:
        self.client = None
        para = self.config.instruction.paraphrase
        if para is not None:
            import httpx

            key = os.environ.get(para.api_key_env)
            if not key:
                raise ValueError(f"instruction.paraphrase: set {para.api_key_env} to the endpoint's API key")
            self.client = httpx.Client(base_url=para.base_url.rstrip("/"), timeout=para.timeout_s,
                                       headers={"Authorization": f"Bearer {key}"})

    def teardown(self) -> None:
        if self.client is not None:
            self.client.close()

    def _paraphrase(self, text: str) -> tuple[str, str | None]:
        para = self.config.instruction.paraphrase
        try:
            r = self.client.post("/chat/completions", json={
                "model": para.model, "temperature": 0,
                "messages": [{"role": "system", "content": "Rephrase the face-editing instruction. Keep every "
                              "facial action and the target emotion. Answer with the instruction only."},
                             {"role": "user", "content": text}]})
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"].strip(), None
        except Exception as exc:  # recorded in the row, never silent
            return text, f"{type(exc).__name__}: {exc}"

    def process(self, record: Record) -> Outcome:
        text = compose(record["id"], record["target"])
        row = {**record, "instruction": text, "instruction_template": text}
        if self.client is not None:
            row["instruction"], error = self._paraphrase(text)
            if error:
                row["paraphrase_error"] = error
        return [row]
