"""Instruction semantic parsing for HSM-TSS: free-form text -> (task, sound description).

HSM-TSS (arXiv 2505.21025, §III-F, "Instruction semantic parsing") decomposes an arbitrary
instruction into a task type, *extract* or *remove*, and an audio description, e.g.
"Could you help me separate the sound of a dog barking and the background music?" ->
("extract", "a dog barking and the background music"). The paper uses a pre-trained LLM with an
unpublished prompt. This module gives a deterministic rule parser (the default) and, in
``instructions_llm``, a JSON-constrained LLM parser over any local causal LM folder.

Rules of ``RuleParser`` (applied in this order to the text; matching ignores case, and the
description is always a slice of the user's own text, with its case and inner punctuation):

1. Clean-up. A text without any letter or digit (``""``, ``"?!"``) -> ``ValueError``; a non-``str`` ->
   ``TypeError``; any other text gets a result, never an exception. Curly apostrophes are read as
   ``'`` and every white-space character (newline, tab) as a space. Only the first clause before a
   ``;`` is read ("Do not isolate the cars honking; remove them" reads "Do not isolate the cars
   honking").
2. Lead-ins, stripped repeatedly from the front: politeness and framing ("please", "kindly",
   "could/can/would/will you (please/kindly)", "would you mind", "would you be so kind as to",
   "(can you) help me (to)", "I'd like you to", "I need you to", "I would appreciate it if you
   could", "if you could,", "is it possible to", "is there a way to", "how about", "why not",
   "could you possibly", "do you think you could", "any chance you could", "can you do me a favour
   and", "how do I", "make sure (you/to)", "all I want is", "I want to", "I'd like to", "let's",
   "can we/I", "just", "only", greetings ...). After a lead-in or a negation, a verb may be in its
   "-ing" or "-ed" form ("would you mind removing", "I'd appreciate it if you removed").
3. Negation at the front ("don't", "do not", "never", "I'd rather not", "I don't", "please
   don't", ...) flips the task of the verb that follows ("don't keep X" -> remove X; "do not
   remove X" -> extract X; "I don't want X" -> remove X). "No X" / "No more X" -> remove X.
4. "Without": when the text before "without" is empty or names the mixture ("the recording",
   "this clip", "it", "everything", "the audio", ...), the task is remove and the description is
   what follows ("Give me the recording without the dog barking" -> remove "the dog barking").
   Otherwise "without" is description content ("Music without vocals" is a caption).
5. The task verb at the front, longest phrase first. Extract: extract, isolate, separate, keep,
   retain, preserve, pull (out), bring out, single/pick out, give me, get (me), hear, listen to,
   let me hear/listen to, enhance, boost, amplify, highlight, focus on, include, capture,
   leave only/just, "make it so I only hear". Remove: remove, delete, get rid of, eliminate,
   filter (out), cut (out), mute, suppress, take (out/away), erase, silence, drop, kill, strip
   (out), reduce, turn off/down, block, exclude, leave out, discard, cancel, omit, ditch, lose.
   Weak extract verbs (the user's wish): want, need, like, prefer, wish, have, make; their task
   can be overridden by a participle at the end (rule 9).
   A bare verb opening the text and followed by a comma, "of", "is", "and", "then", "with" or a
   preposition is a noun in a caption ("Drop of water falling", "Silence, then a bang").
   A typo in the verb (or in "please"/"could"/...) is accepted by a small edit distance on that
   one word only, never on description words: the same first letter, a Damerau-Levenshtein
   distance <= 1 (verbs of 5-7 letters) or <= 2 (8 letters and more), one closest verb only, and
   the word is not a form of a verb nor one of a few listed real words ("remote", "filler", ...);
   a 3-4 letter verb accepts only a dropped letter or two swapped letters ("kep" -> keep, but
   "cat" is not "cut" and "her" is not "hear").
6. "only"/"just" after the verb is dropped ("keep only the piano"), and "both" before an "X and Y".
7. Everything-except: "everything / all (the other) (sounds) / every sound / the rest / the whole
   thing" followed by "except (for) / but / other than / apart from / besides / aside from /
   excluding / save / that isn't" flips the task: "keep everything except X" -> remove X; "remove
   all but X" -> extract X. Then a quantifier "any of / all of / some of / every instance of" is
   dropped ("don't keep any of the music" -> remove "the music").
8. A placeholder announcing the description after a colon is stripped: "the sound described as:",
   "this sound:", "this sound from the mixture:", "the following sounds:" (hsm-bench's own
   manifests phrase instructions so). Then a leading "the sound(s) of" / "the noise(s) of" / "the sound made by" (article optional) is
   stripped (the paper's own example), once, at the start of the description only.
9. Tail, stripped repeatedly from the end: trailing punctuation; "please", "thanks", "thank
   you", "for me"; a reference to the mixture: "from/in/out of/within (this/the/that/my)
   (audio/sound) recording/audio/clip/mixture/mix/track/file/sample/song/input/signal", "(from)
   the rest (of the ...)", "from this/it", "from the background" (the rest of the mixture; "in the
   background" is description content); "alone", "on its own", "by itself", "only"; the
   particle "out" after verbs that take it ("pull the drums out"); a participle naming the task
   ("removed", "gone", "muted", "taken out", "isolated", "kept", "separated out", optionally
   after "should/must/can/to be", "were", ...). Such a participle decides the task when the
   front verb is weak or missing ("I want the dog barking removed" -> remove; "The speech should
   be extracted" -> extract); with no front verb it must come with "be"/"were"/"gone" so a
   caption like "A glass is dropped" stays a caption. "make X go away / disappear" -> remove X.
10. Default: a text with no recognisable task word is a caption and means "extract this"
    (description = the whole text after steps 1, 8 and 9).
If stripping leaves no letter or digit ("Remove."), the description falls back to the whole
cleaned text. "In the background", "in the distance", "from a tap" ... are description content
and are never stripped (only mixture words are).

``normalise_description`` is the comparison used by the test and the benchmark.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

TASKS = ("extract", "remove")


@dataclass(frozen=True)
class ParsedInstruction:
    task: str  # "extract" | "remove"
    description: str  # the sound description as the user wrote it (trimmed, no trailing punctuation)
    parser: str  # "rule" | "llm" | "llm->rule (reason)"


def normalise_description(text: str) -> str:
    """Comparison form of a description: lower-case, apostrophes dropped, other punctuation -> space,
    spaces collapsed, one leading article ("a", "an", "the") removed."""
    t = text.lower().replace("\u2019", "'").replace("'", "")
    t = "".join(" " if (c in string.punctuation or not c.isprintable()) else c for c in t)
    t = " ".join(t.split())
    return re.sub(r"^(?:a|an|the) ", "", t)


# ---------------------------------------------------------------- vocabulary
_FLAGS = re.IGNORECASE
_END = r"(?:\s*,\s*|\s+|$)"  # what may follow a phrase at the front

# lead-ins: politeness and framing, stripped from the front (longest alternatives first)
_LEADS = [
    r"(?:hi|hey|hello|ok|okay|so|now|also|then|alright)\b,?",
    r"pretty please", r"please", r"pls", r"plz", r"kindly",
    r"(?:would|will|could|can) (?:you|u) (?:please |kindly )?be so kind as to",
    r"(?:would|could) you be so kind (?:as )?to", r"be so kind as to",
    r"(?:would|do) you mind", r"mind",
    (r"(?:i would|i'd|i will|i'll|we would|we'd) (?:really )?(?:appreciate it|love it|be grateful) if you"
     r"(?: could| would| can)?"),
    r"it would be (?:great|nice|good) if you(?: could| would| can)?",
    r"if you (?:could|can|would)(?: please)?",
    r"(?:do you think|(?:is there )?any chance|is there a chance)(?: that)? you (?:could|can|would|might)",
    r"(?:would|will|could|can) you do (?:me|us) a favou?r and",
    (r"(?:would|will|could|can|may) (?:you|u)(?: please| kindly| maybe| possibly| perhaps| just)?"
     r"(?: help me| help us)?(?: to)?"),
    r"how (?:do|can|could|should|would) (?:i|we|you)", r"make sure(?: that)?(?: you| to)?",
    r"all (?:i|we) (?:really )?(?:want|need)(?: to hear)? is",
    r"(?:help me|help us)(?: to)?",
    r"(?:i would|i'd|i) (?:like|want|need|love) (?:you|u) to",
    r"(?:would|will) it be possible to", r"is it possible to", r"is there (?:a|any) way to",
    r"(?:how|what) about", r"why not", r"try (?:to|and)", r"let's", r"let us",
    r"(?:i would|i'd|i|we would|we'd|we) (?:really |only |just )?(?:like|want|need|love|wanna|have) to",
    r"i wanna", r"(?:can|could|may) (?:we|i)", r"(?:want|need|like|love|wish) to",
    r"just", r"only", r"simply",
]
_LEAD_RE = [re.compile(rf"^(?:{p}){_END}", _FLAGS) for p in _LEADS]

_NEG_RE = re.compile(
    r"^(?:please\s+)?(?:(?:i|we)\s*)?(?:don'?t|do not|never|(?:would|'d) rather not|rather not|should not|shouldn'?t)"
    + _END, _FLAGS)
_NO_RE = re.compile(r"^no(?: more)?\s+", _FLAGS)

# (phrase, task, weak, takes the particle "out")
_VERBS: list[tuple[str, str, bool, bool]] = [
    # remove
    ("get rid of", "remove", False, False), ("get rid off", "remove", False, False),
    ("remove", "remove", False, False), ("delete", "remove", False, False),
    ("eliminate", "remove", False, False), ("filter", "remove", False, True),
    ("cut", "remove", False, True), ("mute", "remove", False, False), ("suppress", "remove", False, False),
    ("take away", "remove", False, False), ("take", "remove", False, True), ("erase", "remove", False, False),
    ("silence", "remove", False, False), ("drop", "remove", False, False), ("kill", "remove", False, False),
    ("strip", "remove", False, True), ("reduce", "remove", False, False), ("turn off", "remove", False, False),
    ("turn down", "remove", False, False), ("block", "remove", False, True), ("exclude", "remove", False, False),
    ("leave out", "remove", False, False), ("discard", "remove", False, False), ("cancel", "remove", False, True),
    ("omit", "remove", False, False), ("ditch", "remove", False, False), ("lose", "remove", False, False),
    ("clear", "remove", False, True), ("wipe", "remove", False, True), ("tune", "remove", False, True),
    # extract
    ("make it so (?:that )?(?:i|we) (?:only |just )?(?:hear|get)", "extract", False, False),
    ("let me (?:only |just )?(?:hear|listen to|have)", "extract", False, False),
    ("extract", "extract", False, False), ("isolate", "extract", False, False),
    ("separate", "extract", False, True), ("keep", "extract", False, False), ("retain", "extract", False, False),
    ("preserve", "extract", False, False), ("pull", "extract", False, True), ("bring", "extract", False, True),
    ("single", "extract", False, True), ("pick", "extract", False, True), ("give me", "extract", False, False),
    ("get me", "extract", False, False), ("get", "extract", False, True), ("hear", "extract", False, False),
    ("listen to", "extract", False, False), ("enhance", "extract", False, False), ("boost", "extract", False, False),
    ("amplify", "extract", False, False), ("highlight", "extract", False, False),
    ("emphasi[sz]e", "extract", False, False), ("focus on", "extract", False, False),
    ("include", "extract", False, False), ("capture", "extract", False, False), ("recover", "extract", False, False),
    ("leave (?:only|just)", "extract", False, False), ("leave", "extract", False, False),
    ("output", "extract", False, False), ("return", "extract", False, False),
    # weak: a wish whose object may carry its own participle ("I want the hum removed")
    ("(?:(?:i|we) ?)?(?:would|'d) (?:like|prefer|love)", "extract", True, False),
    ("(?:i |we )?(?:only |just )?(?:want|need|like|prefer|wish|have)", "extract", True, False),
    ("make", "extract", True, False),
]

# verb forms: base, -s, -ing, -ed (only the first word of a phrase is inflected)
_NO_E_DROP = {"free"}


def _forms(word: str) -> list[str]:
    if word.endswith("e") and word not in _NO_E_DROP:
        ing, ed = word[:-1] + "ing", word + "d"
    elif re.fullmatch(r"[a-z]*[^aeiou][aeiou][bdgmnpt]", word) and word not in {"filter", "listen"}:
        ing, ed = word + word[-1] + "ing", word + word[-1] + "ed"  # cut -> cutting, drop -> dropped
    else:
        ing, ed = word + "ing", word + "ed"
    return [word, word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s"), ing, ed]


def _verb_regex(phrase: str, gerund: bool) -> re.Pattern:
    head, _, rest = phrase.partition(" ")
    if gerund and re.fullmatch(r"[a-z]+", head):
        f = _forms(head)
        head = "(?:" + "|".join([f[0], f[2], f[3]]) + ")"
    return re.compile(rf"^{head}{(' ' + rest) if rest else ''}{_END}", _FLAGS)


_VERB_RE = {g: [(_verb_regex(p, g), t, w, o) for p, t, w, o in _VERBS] for g in (False, True)}

# words that a typo may stand for (first word of a lead or verb); short ones only by deletion/swap
_TYPO_TARGETS = sorted({w for p, *_ in _VERBS for w in [p.split(" ")[0]] if re.fullmatch(r"[a-z]+", w)}
                       | {"please", "kindly", "could", "would", "extract", "separate"})
_REAL_WORDS = {"remote", "reserve", "extra", "retina", "delta", "filler", "wood", "place", "plead", "cloud",
               "silent", "select", "relate", "retail", "keel", "kelp", "dripping", "drip", "moved", "removal",
               "kid", "hearth", "heart", "tape", "tale", "mule", "meet", "pill", "bringing", "getting", "outer",
               "erosion", "delight", "retaining", "separated", "single", "deep", "lease", "least", "clean",
               "cute", "cup", "cat", "kit", "kin", "cough", "silencer", "her", "black", "boots", "boot", "dutch",
               "cancer", "discord", "pic", "recovery", "strap", "brink", "brine", "boast"}
_TARGET_FORMS = {f for w in _TYPO_TARGETS for f in _forms(w)}

_MIX = (r"(?:(?:audio|sound|music|input|whole|entire|original|full)\s+)?"
        r"(?:recording|recordings|audio|clip|mixture|mix|track|file|sample|song|input|signal|excerpt|"
        r"snippet|piece|soundtrack|sound clip|sound file|sound|tape|video|footage|one)")
_TAIL_RES = [
    re.compile(r"[\s.,!?;:]+$"),
    re.compile(r"[\s,]+(?:please|pls|plz|thanks|thank you|thx|for me|for us|if you can|if possible)$", _FLAGS),
    re.compile(rf"\s+(?:from|in|out of|within|of|on)\s+(?:(?:this|the|that|my|our|your)\s+)?{_MIX}$", _FLAGS),
    re.compile(r"\s+(?:from|out of)\s+(?:this|it|that|here|the background)$", _FLAGS),
    re.compile(r"\s+(?:from\s+|out of\s+)?the rest(?:\s+of\s+(?:the|this|that|my)\s+\w+)?$", _FLAGS),
    re.compile(r"\s+(?:alone|on (?:its|their) own|by (?:itself|themselves)|only|in isolation)$", _FLAGS),
]
_OUT_RE = re.compile(r"\s+out$", _FLAGS)

_REMOVE_PART = (r"removed|gone|deleted|eliminated|muted|silenced|erased|suppressed|filtered out|filtered|"
                r"taken out|taken away|cut out|cut|dropped|stripped out|stripped|discarded|excluded|cancell?ed|"
                r"go away|disappear|vanish|turned off")
_EXTRACT_PART = (r"extracted|isolated|separated out|separated|kept|retained|preserved|pulled out|enhanced|"
                 r"singled out|picked out|brought out|left alone")
_PART_RE = re.compile(
    rf"\s+(?P<aux>(?:(?:should|must|can|could|will|would|to|need to)\s+)?(?:be|were|was|is|are|get|got|gets|being)"
    rf"\s+)?(?:(?P<rm>{_REMOVE_PART})|(?P<ex>{_EXTRACT_PART}))$", _FLAGS)
_MODAL_RE = re.compile(r"^(?:can|could|should|would|will|may|must)\s+", _FLAGS)

_EXCEPT_RE = re.compile(
    r"^(?:everything|anything|all(?: of)?(?: the)?(?: other)?(?: sounds?| noises?| audio)?|every(?: other)? sound|"
    r"the rest|all the rest|the whole (?:thing|recording|clip|audio|track|mix|mixture))(?: else)?\s*,?\s*"
    r"(?:except(?: for)?|but(?: for)?|other than|apart from|besides|aside from|excluding|save(?: for)?|minus|"
    r"(?:that|which) (?:is not|isn't|'s not))\s+", _FLAGS)
_QUANT_RE = re.compile(r"^(?:any|all|some|each|every (?:instance|bit|trace)) of\s+", _FLAGS)
_PARTICLE_RE = re.compile(r"^(?:out|away|off)(?:\s+|$)", _FLAGS)
# a bare verb at the very start followed by one of these is a noun in a caption ("Drop of water ...")
_NOT_OBJECT_RE = re.compile(r"^(?:,|(?:of|is|are|was|were|and|then|from|in|on|at|by|with|as|followed|while|during)\b)",
                            _FLAGS)
_ADVERB_RE = re.compile(r"^(?:only|just|solely|simply)\s+", _FLAGS)
_BOTH_RE = re.compile(r"^both\s+", _FLAGS)
_SOUND_OF_RE = re.compile(r"^(?:(?:the|a|any|all the)\s+)?(?:sound|sounds|noise|noises)\s+"
                          r"(?:of|(?:made|produced|emitted|created) by)\s+", _FLAGS)

# "<verb> the sound described as: X", "<verb> this sound from the mixture: X": a placeholder for
# the description, announced by a colon (hsm-bench's own manifests phrase instructions so)
_ANNOUNCED_RE = re.compile(
    r"^(?:(?:the|this|that|these|those|a|one)\s+)?(?:following\s+)?(?:sound|sounds|noise|noises|audio|source|event|events)?"
    r"\s*(?:(?:that is |which is )?(?:described|defined) as|called|named|labell?ed(?: as)?)?"
    r"\s*(?:(?:from|out of|in|of) (?:the |this |that )?(?:mixture|mix|recording|audio|clip|input))?\s*:\s*", _FLAGS)
_WITHOUT_RE = re.compile(r"\bwithout\s+", _FLAGS)
_MIX_WORDS = {"recording", "recordings", "audio", "clip", "mixture", "mix", "track", "song", "file", "sample", "sound",
              "version", "it", "this", "that", "everything", "same", "input", "signal", "back", "result", "output"}


def _osa_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: adjacent swaps count 1)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@functools.lru_cache(maxsize=4096)
def _typo_target(word: str) -> str | None:
    """The verb/politeness word that ``word`` is a typo of, or None (see rule 5)."""
    w = word.lower()
    if len(w) < 3 or w in _REAL_WORDS or w in _TARGET_FORMS:
        return None
    best: list[tuple[int, str]] = []
    for t in _TYPO_TARGETS:
        if t[0] != w[0] or abs(len(t) - len(w)) > 2:
            continue
        dist = _osa_distance(w, t)
        if len(t) <= 4:
            ok = dist == 1 and (len(w) == len(t) - 1 or (len(w) == len(t) and sorted(w) == sorted(t)))
        else:
            ok = dist <= (1 if len(t) <= 7 else 2)
        if ok:
            best.append((dist, t))
    best.sort()
    if not best or (len(best) > 1 and best[0][0] == best[1][0]):
        return None  # no candidate, or an ambiguous one
    return best[0][1]


class _Text:
    """A window [a, b) on the user's text: the parser only ever moves its ends, so the description
    is a verbatim slice of what the user wrote."""

    _WORD = re.compile(r"[A-Za-z]+")

    def __init__(self, s: str):
        self.s, self.a, self.b = s, 0, len(s)

    @property
    def text(self) -> str:
        return self.s[self.a:self.b]

    def match_front(self, rx: re.Pattern, fuzzy: bool = False) -> re.Match | None:
        """Match ``rx`` at the front, consuming it; with ``fuzzy`` a typo in the first word is allowed."""
        m = rx.match(self.text)
        if m:
            self.a += m.end()
            return m
        if fuzzy:
            w = self._WORD.match(self.text)
            target = _typo_target(w.group()) if w else None
            if target:
                virtual = target + self.text[w.end():]
                m = rx.match(virtual)
                if m and m.end() > len(target):
                    self.a += m.end() - len(target) + w.end()
                    return m
        return None

    def strip_tail(self, rx: re.Pattern) -> re.Match | None:
        m = rx.search(self.text)
        if m and m.start() > 0:
            self.b = self.a + m.start()
            return m
        return None


def _clean_tail(t: _Text, particle: bool) -> None:
    while True:
        before = t.b
        for rx in _TAIL_RES:
            t.strip_tail(rx)
        if particle:
            t.strip_tail(_OUT_RE)
        if t.b == before:
            return


class RuleParser:
    """The deterministic rule parser documented in the module docstring."""

    name = "rule"

    def __call__(self, text: str) -> ParsedInstruction:
        return self.parse(text)

    @staticmethod
    def _after(s: str, start: int, end: int) -> str:
        # the text right after the verb itself (its match also ate the following spaces or comma)
        return s[start + len(s[start:end].rstrip(" ,")):].lstrip(" ")

    def parse(self, text: str) -> ParsedInstruction:
        if not isinstance(text, str):
            raise TypeError(f"an instruction must be a str, got {type(text).__name__}")
        if not any(c.isalnum() for c in text):
            raise ValueError(f"instruction {text[:40]!r} has no words: give a text such as 'remove the dog barking'")
        s = text.replace("\u2019", "'").replace("\u2018", "'")
        s = re.sub(r"\s", " ", s)  # same length: the window stays on the user's characters
        t = _Text(s)
        semi = s.find(";")
        if semi > 0 and any(c.isalnum() for c in s[:semi]):
            t.b = semi
        t.a = len(s[:t.b]) - len(s[:t.b].lstrip(" ,.!?-\"'"))
        t.b = len(s[:t.b].rstrip())
        whole = (t.a, t.b)
        _clean_tail(t, particle=False)
        whole_clean = (t.a, t.b)

        task, negated, weak, particle, lead = None, False, True, False, False

        def strip_leads() -> bool:
            found = False
            while any(t.match_front(rx, fuzzy=True) for rx in _LEAD_RE):
                found = True
            return found

        lead = strip_leads()
        if t.match_front(_NEG_RE, fuzzy=False):
            negated = True
            lead = strip_leads() or lead
        elif t.match_front(_NO_RE):
            task, negated, weak = "extract", True, False  # "no X" = do not keep X

        # rule 4: "<the mixture> without X"
        w = _WITHOUT_RE.search(t.text)
        if w and task is None:
            prefix = re.sub(r"[\s,]*(?:but|just|only)?[\s,]*$", "", t.text[:w.start()], flags=_FLAGS)
            words = re.findall(r"[a-z']+", prefix.lower())
            if not words or _MIX_WORDS & set(words):
                t.a += w.end()
                task, weak = ("extract" if negated else "remove"), False
                negated = False

        if task is None:
            start = t.a
            for rx, vtask, vweak, vout in _VERB_RE[lead or negated]:
                m = t.match_front(rx, fuzzy=True)
                if m and not (lead or negated) and _NOT_OBJECT_RE.match(self._after(s, start, t.a)):
                    t.a = start  # a noun in a caption, not an imperative
                    continue
                if m:
                    task, weak, particle = vtask, vweak, vout
                    if particle:
                        t.match_front(_PARTICLE_RE)
                    break

        while t.match_front(_ADVERB_RE):
            pass
        if " and " in t.text.lower():
            t.match_front(_BOTH_RE)
        if task is not None and t.match_front(_EXCEPT_RE):
            negated = not negated
            weak = False
        t.match_front(_QUANT_RE)
        if task is not None:
            t.match_front(_ANNOUNCED_RE)
        t.match_front(_SOUND_OF_RE)

        _clean_tail(t, particle)
        m = _PART_RE.search(t.text)
        if m and m.start() > 0 and (weak or task is None):
            has_aux = bool(m.group("aux")) or (m.group("rm") or "").lower() in {"gone", "go away", "disappear",
                                                                                 "vanish"}
            if task is not None or has_aux:
                t.b = t.a + m.start()
                task = "remove" if m.group("rm") else "extract"
                if t.match_front(_MODAL_RE):
                    t.match_front(_SOUND_OF_RE)
                _clean_tail(t, particle=True)

        if task is None:
            task = "extract"  # rule 10: a caption means "extract this"
        if negated:
            task = "remove" if task == "extract" else "extract"
        desc = t.text.strip(" ,")
        for window in (whole_clean, whole):
            if any(c.isalnum() for c in desc):
                break
            desc = s[window[0]:window[1]].strip(" ,")
        return ParsedInstruction(task, desc, self.name)


_RULE = RuleParser()


def parse_instruction(text: str) -> ParsedInstruction:
    """Parse an instruction with the rule parser (the default)."""
    return _RULE(text)


def build_parser(kind: str = "rule", folder: str | None = None, **kwargs):
    """``"rule"`` -> RuleParser(); ``"llm"`` -> LLMParser(folder, **kwargs) (a local causal LM folder)."""
    if kind == "rule":
        return RuleParser()
    if kind == "llm":
        if not folder:
            raise ValueError("the llm instruction parser needs folder=<a local causal LM folder>")
        from systems.hsm_tss.instructions_llm import LLMParser

        return LLMParser(folder, **kwargs)
    raise ValueError(f"unknown instruction parser {kind!r}: use 'rule' or 'llm'")


def __getattr__(name: str):
    # LLMParser lives in instructions_llm (it imports torch); reachable from here without a top-level import
    if name == "LLMParser":
        from systems.hsm_tss.instructions_llm import LLMParser

        return LLMParser
    raise AttributeError(name)
