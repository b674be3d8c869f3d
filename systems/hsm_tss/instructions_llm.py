"""JSON-constrained LLM backend of HSM-TSS's instruction parser (arXiv 2505.21025, §III-F).

The paper parses instructions with a pre-trained LLM and an unpublished prompt. Here any local causal
LM folder (``transformers`` ``AutoModelForCausalLM`` + ``AutoTokenizer``, loaded with
``local_files_only=True``: never a download) completes a few-shot prompt whose answer is the JSON
object ``{"task": "extract"|"remove", "description": "<text>"}``. Decoding is constrained with the
model's own logits so that only that object can come out:

* the fixed template text is forced, never sampled;
* the task is the option with the larger log-probability of its tokens: for each option ``o`` the sum,
  over the tokens of ``o + '", "description": "'`` as tokenized after the prompt, of
  ``log_softmax(logits)`` at that token (a sum, not a mean: both options are followed by the same
  template, so a longer tokenisation of one word is paid for honestly);
* the description is generated greedily after ``"description": "``: at each step the highest-scoring
  token whose text before any ``"`` holds no control character (newlines included), no backslash and
  no line/paragraph separator is taken; special tokens other than end-of-sequence are never taken;
  a token holding ``"`` closes the string (its text after the quote is dropped), and so does
  end-of-sequence. So the text between the quotes never needs escaping and ``json.loads`` always
  reads the result.

Unusable output falls back to the rule parser (``fallback``), the reason kept in ``parser``:
``"llm->rule (empty description)"``, ``"llm->rule (no closing quote within 48 tokens)"``,
``"llm->rule (<exception>)"``. The description is trimmed of spaces and trailing punctuation like the
rule parser's.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from systems.hsm_tss.instructions import TASKS, ParsedInstruction, RuleParser

# Few-shot examples: written for the prompt, none of them is in tests/data/instructions.
PROMPT_HEADER = (
    "Convert each audio editing instruction into JSON. \"task\" is \"extract\" when the user wants to keep or "
    "hear the sound and \"remove\" when the user wants it gone. \"description\" is the sound in the user's own "
    "words, without the task words, politeness or a mention of the recording.\n\n"
)
EXAMPLES = [
    ("Could you help me pull out the sound of a trombone and the snare drum?",
     "extract", "a trombone and the snare drum"),
    ("Please get rid of the chattering voices in this recording.", "remove", "the chattering voices"),
    ("Keep everything except the man clearing his throat.", "remove", "the man clearing his throat"),
    ("Don't remove the harpsichord.", "extract", "the harpsichord"),
    ("A tractor engine chugging while roosters crow", "extract", "A tractor engine chugging while roosters crow"),
    ("I want this clip without the squeaky door.", "remove", "the squeaky door"),
]
SEPARATOR = '", "description": "'
_BAD = {'\\', '\u2028', '\u2029', '\u0085', '\x7f'}


def build_prompt(text: str) -> str:
    """The few-shot prompt, ending right before the task option."""
    lines = [PROMPT_HEADER]
    for instr, task, desc in EXAMPLES:
        answer = json.dumps({"task": task, "description": desc}, ensure_ascii=False)
        lines.append(f"Instruction: {instr}\nJSON: {answer}\n\n")
    lines.append(f"Instruction: {' '.join(text.split())}\nJSON: {{\"task\": \"")
    return "".join(lines)


def _usable_piece(piece: str) -> bool:
    head = piece.split('"', 1)[0]
    return not any(ord(c) < 32 or c in _BAD for c in head)


class LLMParser:
    """Instruction parser over a local causal LM folder, with JSON-constrained decoding."""

    def __init__(self, folder, max_new_tokens: int = 48, device: str = "cpu", fallback=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from hsm_bench.weights import WeightsError

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise WeightsError(f"{folder} is not a causal LM folder (no config.json): point the llm instruction "
                               f"parser at a local transformers model folder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            raise WeightsError(f"cannot load the causal LM in {folder} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}): it needs a tokenizer and a "
                               f"transformers causal LM saved with save_pretrained") from None
        self.model.to(device).eval()
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.fallback = fallback if fallback is not None else RuleParser()
        self._torch = torch
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # the name changed in transformers 5
        eos = self.tokenizer.eos_token_id
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        self._eos = {i for i in ([eos] + (gen_eos if isinstance(gen_eos, list) else [gen_eos])) if i is not None}
        self._special = set(self.tokenizer.all_special_ids) - self._eos
        self._pieces: dict[int, str] = {}

    # ------------------------------------------------------------------ pieces
    def _piece(self, i: int) -> str:
        p = self._pieces.get(i)
        if p is None:
            p = self.tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._pieces[i] = p
        return p

    def _ids(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def continuation_ids(self, prompt: str, prompt_ids: list[int], cont: str) -> list[int]:
        """Token ids of ``cont`` as they follow ``prompt``: from the joint tokenisation when it keeps the
        prompt's tokens, otherwise ``cont`` tokenized on its own."""
        joint = self._ids(prompt + cont, special=True)
        if joint[:len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids):]
        return self._ids(cont, special=False)

    def _forward(self, ids: list[int], cache=None):
        torch = self._torch
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        kw = {self._cache_kw: cache} if cache is not None else {}
        out = self.model(input_ids=x, use_cache=True, **kw)
        new_cache = out.get("cache", None) if hasattr(out, "get") else None
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return out.logits[0].float().log_softmax(-1), new_cache

    # ------------------------------------------------------------------ decoding
    def score_tasks(self, text: str) -> dict[str, float]:
        """Sum of token log-probabilities of each task option (with the template text after it)."""
        return {k: v[0] for k, v in self._score(text).items()}

    def _score(self, text: str) -> dict[str, tuple[float, list[int], object, object]]:
        with self._torch.no_grad():
            prompt = build_prompt(text)
            p_ids = self._ids(prompt, special=True)
            out = {}
            for task in TASKS:
                cont = self.continuation_ids(prompt, p_ids, task + SEPARATOR)
                lp, cache = self._forward(p_ids + cont)
                n = len(p_ids)
                score = float(sum(lp[n - 1 + k, t] for k, t in enumerate(cont)))
                out[task] = (score, cont, lp[-1], cache)
            return out

    def generate_json(self, text: str) -> tuple[str, str]:
        """The constrained answer as JSON text, and why it is unusable ("" when it is usable)."""
        scored = self._score(text)
        task = max(TASKS, key=lambda k: scored[k][0])  # ties: "extract", the caption default
        _, _, lp, cache = scored[task]
        torch = self._torch
        gen: list[int] = []
        closed = False
        with torch.no_grad():
            for _ in range(self.max_new_tokens):
                pick = None
                for i in torch.argsort(lp, descending=True).tolist():
                    if i in self._eos:
                        break  # end-of-sequence closes the string
                    if i in self._special or not _usable_piece(self._piece(i)):
                        continue
                    pick = i
                    break
                if pick is None:
                    closed = True
                    break
                gen.append(pick)
                if '"' in self._piece(pick):
                    closed = True
                    break
                lp, cache = self._forward([pick], cache)
                lp = lp[-1]
        text_out = self.tokenizer.decode(gen, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        desc = text_out.split('"', 1)[0]
        desc = "".join(c for c in desc if ord(c) >= 32 and c not in _BAD)  # a byte split across tokens
        raw = '{"task": "' + task + SEPARATOR + desc + '"}'
        if not closed:
            return raw, f"no closing quote within {self.max_new_tokens} tokens"
        return raw, ""

    def __call__(self, text: str) -> ParsedInstruction:
        if not isinstance(text, str) or not any(c.isalnum() for c in text):
            return self.fallback(text)  # the rule parser's TypeError / ValueError
        try:
            raw, reason = self.generate_json(text)
            obj = json.loads(raw)
            task, desc = obj["task"], obj["description"].strip().rstrip(".,;:!? ").strip()
            if not reason and task not in TASKS:
                reason = f"task {task!r}"
            if not reason and not any(c.isalnum() for c in desc):
                reason = "empty description"
        except Exception as e:  # noqa: BLE001 - any model failure falls back, with its reason recorded
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
        if reason:
            r = self.fallback(text)
            return ParsedInstruction(r.task, r.description, f"llm->rule ({reason})")
        return ParsedInstruction(task, desc, "llm")
