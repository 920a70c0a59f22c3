"""Synthetic long-input retrieval tasks, built offline: personalised passkey and needle retrieval of
LongEmbed (Zhu et al., 2024, "LongEmbed: Extending Embedding Models for Long Context Retrieval").

Each task at a length L is ``n`` documents of L tokens (special tokens included, counted with the
tokenizer given; a word that does not fit whole is left out, so a few may be a token or two shorter) and ``n`` queries; query i's answer is document i. Document i hides one needle sentence
at depth ``depths[i]`` (a fraction of the document), the depths spread evenly over (0, 1) and shuffled by
the seed; everything else in the documents is the same filler, so only reading the needle tells the
documents apart.

- passkey: filler "The grass is green. The sky is blue. ..." around "<name>'s pass key is <key>.
  Remember it. <key> is the pass key of <name>."; query "what is <name>'s pass key?".
- needle: real prose (a text given, e.g. the Python docs of ../shared/data/longtext) around "The best
  thing to do in <city> is <activity>."; query "What is the best thing to do in <city>?".
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

NAMES = (
    "Aaron Abigail Adrian Alice Amelia Andrew Anna Arthur Beatrice Benjamin Bianca Caleb Camila Charles Chloe "
    "Daniel Delia Dorothy Edgar Elena Emil Esther Felix Fiona Frances Gabriel Grace Harold Hazel Henry Iris "
    "Isaac Ivy Jasper Julia Keith Laura Leon Lucy Marcus Maya Miles Nadia Nathan Olivia Oscar Paula Peter "
    "Quentin Rachel Rosa Samuel Sophie Theodore Uma Victor Wendy Xavier Yara Zachary"
).split()
CITIES = (
    "Amsterdam Athens Bangkok Barcelona Berlin Bogota Boston Brussels Budapest Cairo Chicago Copenhagen "
    "Dublin Edinburgh Florence Geneva Hamburg Havana Helsinki Istanbul Jakarta Kyoto Lagos Lima Lisbon "
    "London Madrid Manila Marseille Melbourne Milan Montreal Moscow Mumbai Munich Nairobi Naples Oslo Paris "
    "Prague Quebec Reykjavik Rome Santiago Seoul Seville Stockholm Sydney Tokyo Toronto Vienna Warsaw Zurich"
).split()
ACTIVITIES = [
    "eat a sandwich and sit in the park on a sunny day",
    "ride a bicycle along the river at dawn",
    "visit the old library and read maps",
    "climb the hill behind the cathedral",
    "take a boat to the small island",
    "listen to jazz in a basement club",
    "buy fresh bread at the morning market",
    "walk through the botanical garden",
    "watch the sunset from the harbour wall",
    "try the spicy noodle soup near the station",
    "swim in the cold lake before breakfast",
    "play chess with strangers in the square",
    "tour the chocolate factory",
    "paint watercolours by the canal",
    "hike to the waterfall north of town",
    "drink tea in the glass pavilion",
    "watch a puppet show for children",
    "rent a canoe and paddle to the lighthouse",
    "collect shells on the black sand beach",
    "dance at the street festival in August",
    "learn to bake pretzels from a local baker",
    "ride the cable car to the summit",
    "explore the abandoned railway tunnel",
    "sing in the cathedral choir on Sunday",
    "feed the pigeons in front of the museum",
    "go skating on the frozen pond",
    "browse the second hand record shops",
    "watch the fishermen mend their nets",
    "eat grilled corn from a roadside stand",
    "take photographs of the painted doors",
    "join the midnight bicycle parade",
    "read poetry in the rose garden",
    "visit the observatory on a clear night",
    "follow the tram line to the last stop",
    "taste honey from the rooftop beehives",
    "watch a silent film with live piano",
    "walk across the old stone bridge at night",
    "sail a small boat around the bay",
    "search for fossils in the limestone cliffs",
    "listen to the street musicians by the fountain",
    "eat dumplings in the covered market",
    "spend an afternoon in the glasshouse zoo",
    "climb the bell tower and ring the bell",
    "picnic under the cherry trees in spring",
    "ride horses along the dunes",
    "build a snowman in the palace gardens",
    "look at the tapestries in the town hall",
    "cook fish soup with the harbour cooks",
    "count the boats from the lighthouse gallery",
    "practise yoga on the pier at sunrise",
    "carve wooden spoons at the craft school",
    "visit the clock museum at noon",
]
NUMBER_OF_DOCUMENTS = 50
TASKS = ("passkey", "needle")


@dataclass
class RetrievalTask:
    """``queries[i]``'s answer is ``documents[i]``; ``depths[i]``: where its needle sits (0 = start)."""

    name: str
    length: int
    queries: list[str]
    documents: list[str]
    needles: list[str]
    depths: list[float]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s.strip()]


def _even_depths(n: int, rng: random.Random) -> list[float]:
    depths = [(i + 0.5) / n for i in range(n)]
    rng.shuffle(depths)
    return depths


def _document(filler: list[tuple[str, list[int]]], needle: str, budget: int, depth: float) -> str:
    """Filler sentences (cycled; ``(text, token ids)``) around ``needle`` so that the filler takes ``budget``
    tokens; the needle goes at the sentence boundary nearest ``depth`` of the filler."""
    parts, used, i = [], 0, 0
    while used < budget:
        sentence, ids = filler[i % len(filler)]
        i += 1
        if used + len(ids) > budget:  # the last sentence is cut to the budget, word by word
            words = sentence.split()[: budget - used]  # a word is at least one token
            parts.append(" ".join(words))
            break
        parts.append(sentence)
        used += len(ids)
    at = round(depth * len(parts))
    return " ".join(parts[:at] + [needle] + parts[at:])


def _fit(tokenizer, text: str, length: int) -> str:
    """``text`` with words dropped from its end until it is at most ``length`` tokens with special tokens."""
    words = text.split()
    while len(tokenizer(" ".join(words))["input_ids"]) > length:
        words = words[: -max(1, (len(tokenizer(" ".join(words))["input_ids"]) - length) // 2)]
    return " ".join(words)


def build_task(
    name: str, tokenizer, length: int, *, seed: int = 0, haystack: str | None = None, n: int = NUMBER_OF_DOCUMENTS
) -> RetrievalTask:
    """The ``name`` task ("passkey" or "needle") at ``length`` tokens; the same seed gives the same task.
    ``haystack``: the needle task's filler text (required there)."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not one of {', '.join(TASKS)}")
    rng = random.Random(f"{name}-{seed}")
    depths = _even_depths(n, rng)
    if name == "passkey":
        if n > len(NAMES):
            raise ValueError(f"n={n} is more than the {len(NAMES)} names the passkey task has")
        names = rng.sample(NAMES, n)
        keys = rng.sample(range(10_000, 100_000), n)
        needles = [f"{p}'s pass key is {k}. Remember it. {k} is the pass key of {p}." for p, k in zip(names, keys)]
        queries = [f"what is {p}'s pass key?" for p in names]
        filler = _sentences(PASSKEY_FILLER)
    else:
        if not haystack:
            raise ValueError("the needle task needs a haystack text (e.g. --data-dir with longtext/)")
        if n > min(len(CITIES), len(ACTIVITIES)):
            raise ValueError(f"n={n} is more than the {min(len(CITIES), len(ACTIVITIES))} needles the task has")
        cities, activities = rng.sample(CITIES, n), rng.sample(ACTIVITIES, n)
        needles = [f"The best thing to do in {c} is {a}." for c, a in zip(cities, activities)]
        queries = [f"What is the best thing to do in {c}?" for c in cities]
        filler = _sentences(haystack)
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    special = len(tokenizer("x")["input_ids"]) - count("x")
    pieces = [(sentence, tokenizer(sentence, add_special_tokens=False)["input_ids"]) for sentence in filler]
    documents = []
    for needle, depth in zip(needles, depths):
        budget = length - special - count(needle)
        if budget < 0:
            raise ValueError(f"length={length} is shorter than the needle ({count(needle) + special} tokens)")
        documents.append(_fit(tokenizer, _document(pieces, needle, budget, depth), length))
    return RetrievalTask(name, length, queries, documents, needles, depths)
