"""Answer normalisation as the official VQA evaluation script does it (GT-Vision-Lab/VQA ``vqaEval.py``),
re-implemented here with the same observable behaviour, quirks included:

1. newlines and tabs become spaces; the text is stripped;
2. punctuation: each of ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`` is deleted if the *original* text
   has it next to a space or contains a digit-comma-digit anywhere (``1,000``), else replaced by a space;
3. a period not followed by a digit is deleted (``3.5`` keeps its point). The script passes ``re.UNICODE``
   as the ``count`` argument of ``re.sub``, so only the first 32 such periods go; kept here;
4. lower case, split on whitespace, number words ``none``/``zero``..``ten`` -> digits, the articles
   ``a an the`` dropped, then words in the script's contractions table (``dont`` -> ``don't``) restored;
5. the words are joined by single spaces.

The apostrophe is not punctuation there, so ``don't`` stays ``don't``. TextVQA's official evaluator (the
EvalAI answer processor) first lower-cases, deletes ``,`` and ``?`` and splits ``'s`` off
(``tokenize=True``). Normalisations are memoised: benchmark answers repeat a great deal.
"""

from __future__ import annotations

import re
from functools import lru_cache

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!")
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
_DIGIT_COMMA = re.compile(r"\d,\d")
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_COUNT = int(re.UNICODE)  # the script's accidental count argument (32)
_ANY_PUNCT = re.compile("[" + re.escape("".join(PUNCTUATION)) + ".]")

# The contracted forms of the script's table. A form with one apostrophe is looked up without it
# ("dont" -> "don't"); a form with several is looked up with any one of them missing ("couldnt've" and
# "couldn'tve" -> "couldn't've", but not "couldntve"). Capitalised keys never match (the text is lower-cased
# first): the script has them too.
_CONTRACTED = (
    "ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's how'd how'll "
    "how's I'm I've isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock oughtn't "
    "shan't should've shouldn't somebody'll somebody's someone'd someone'll someone's something'd "
    "something'll that's there'd there're there's they'd they'll they're they've 'twas wasn't we've weren't "
    "what'll what're what's what've when's where'd where's where've who'd who'll who's who've why'll why're "
    "why's won't would've wouldn't y'all you'd you'll you're you've couldn't've hadn't've he'd've I'd've "
    "it'd've mightn't've shouldn't've somebody'd've someone'd've something'd've there'd've they'd've "
    "we'd've who'd've wouldn't've y'all'll y'all'd've you'd've she'd've 'ow's'at"
).split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for form in _CONTRACTED:
        cuts = [i for i, c in enumerate(form) if c == "'"]
        for i in cuts:
            table[form[:i] + form[i + 1:]] = form
    table["somebody'd"] = "somebodyd"  # reversed in the script's table: kept as it scores
    return table


CONTRACTIONS = _contraction_table()


def process_punctuation(text: str) -> str:
    """Step 2 and 3 of the module docstring (case untouched)."""
    if not _ANY_PUNCT.search(text):
        return text
    out = text
    squash = _DIGIT_COMMA.search(text) is not None
    for p in PUNCTUATION:
        if p in out:
            out = out.replace(p, "" if squash or p + " " in text or " " + p in text else " ")
    return _PERIOD.sub("", out, count=_PERIOD_COUNT)


def process_words(text: str) -> str:
    """Step 4 and 5: case, number words, articles, contractions, whitespace."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


@lru_cache(maxsize=1 << 20)
def normalize_answer(text: str, tokenize: bool = False) -> str:
    """A prediction (or, for TextVQA, any answer) normalised as the official evaluation does.

    Args:
        text: The answer text.
        tokenize: TextVQA's pre-step (lower case, delete ``,`` and ``?``, ``'s`` -> `` 's``).
    """
    if tokenize:
        text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_words(process_punctuation(text))


@lru_cache(maxsize=1 << 20)
def punctuation_only(text: str) -> str:
    """What the VQA script does to human answers when they disagree (punctuation only; memoised)."""
    return process_punctuation(text)


def loo_accuracy(matches: int, num_answers: int) -> float:
    """Mean over the leave-one-annotator-out subsets of ``min(1, matches / 3)``.

    ``matches`` of the ``num_answers`` human answers equal the prediction; leaving out a matching one
    leaves ``matches - 1``, leaving out another leaves ``matches``.
    """
    if matches == 0 or num_answers == 0:
        return 0.0
    hit = min(1.0, (matches - 1) / 3)
    miss = min(1.0, matches / 3)
    return (matches * hit + (num_answers - matches) * miss) / num_answers


def vqa_accuracy(prediction: str, answers: list[str], *, style: str = "vqav2") -> float:
    """Official accuracy of one prediction against the human answers.

    Args:
        prediction: The model's answer.
        answers: The human answers (10 in VQAv2, TextVQA and VizWiz).
        style: ``vqav2`` (also VizWiz: the VQA script, human answers punctuation-processed only when they
            disagree) or ``textvqa`` (EvalAI processor on both sides).
    """
    if style == "textvqa":
        pred = normalize_answer(prediction, True)
        gold = [normalize_answer(a, True) for a in answers]
    else:
        pred = normalize_answer(prediction)
        gold = [punctuation_only(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    return loo_accuracy(sum(g == pred for g in gold), len(gold))
