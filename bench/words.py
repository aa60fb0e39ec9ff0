"""Realistic video prompts from word lists, with a skewed (Zipf-like) popularity, seeded."""

from __future__ import annotations

import random

ADJECTIVES = [
    "lonely",
    "tiny",
    "giant",
    "ancient",
    "futuristic",
    "glowing",
    "curious",
    "playful",
    "majestic",
    "weathered",
    "elegant",
    "mysterious",
    "colorful",
    "shy",
    "fearless",
    "sleepy",
    "graceful",
    "rusty",
    "golden",
    "silver",
    "crystal",
    "wooden",
    "neon",
    "vintage",
    "translucent",
    "fluffy",
    "armored",
    "tired",
    "joyful",
    "stoic",
    "enormous",
    "delicate",
]

SUBJECTS = [
    "golden retriever",
    "astronaut",
    "red fox",
    "old fisherman",
    "paper boat",
    "hummingbird",
    "vintage car",
    "samurai",
    "ballerina",
    "robot",
    "dragon",
    "jellyfish",
    "lighthouse keeper",
    "street musician",
    "snow leopard",
    "hot air balloon",
    "sailing ship",
    "owl",
    "chef",
    "skateboarder",
    "wolf pack",
    "koi fish",
    "steam train",
    "butterfly",
    "knight",
    "octopus",
    "little girl",
    "grandmother",
    "cyclist",
    "surfer",
    "polar bear",
    "city bus",
    "dancer",
    "cat",
    "panda",
    "whale",
    "firefly swarm",
    "motorcycle",
    "wizard",
    "detective",
    "deer",
    "penguin",
    "violinist",
    "painter",
    "mountain goat",
    "spaceship",
    "submarine",
    "scarecrow",
    "monk",
    "horse",
]

ACTIONS = [
    "running along",
    "floating above",
    "walking through",
    "dancing in",
    "flying over",
    "exploring",
    "resting beside",
    "drifting across",
    "climbing",
    "racing through",
    "swimming in",
    "wandering around",
    "hiding in",
    "jumping over",
    "sleeping under",
    "singing in",
    "painting",
    "cooking in",
    "reading in",
    "watching",
    "emerging from",
    "spinning in",
    "gliding past",
    "searching",
    "waiting at",
]

SETTINGS = [
    "a misty beach",
    "a neon-lit Tokyo street",
    "a snowy mountain village",
    "an abandoned cathedral",
    "a bamboo forest",
    "the surface of Mars",
    "a crowded night market",
    "a quiet library",
    "an underwater coral reef",
    "a desert canyon",
    "a flooded subway station",
    "a sunflower field",
    "a floating island",
    "a rainy Paris rooftop",
    "a frozen lake",
    "a volcanic crater",
    "a cozy wooden cabin",
    "an enchanted forest",
    "a busy harbor",
    "a lavender field",
    "a cyberpunk alley",
    "a medieval castle",
    "a glass greenhouse",
    "an old train station",
    "a tropical waterfall",
    "a space station",
    "a foggy London bridge",
    "a rice terrace",
    "a moonlit graveyard",
    "a candy factory",
    "a mountain monastery",
    "an art museum",
    "a jazz club",
    "a wheat field",
    "a glacier cave",
    "a seaside carnival",
]

TIMES = [
    "at sunrise",
    "at golden hour",
    "at dusk",
    "at night",
    "at noon",
    "during a thunderstorm",
    "in heavy snow",
    "in light rain",
    "under the northern lights",
    "during a solar eclipse",
    "in thick fog",
    "under a full moon",
]

STYLES = [
    "cinematic",
    "drone shot",
    "35mm film",
    "slow motion",
    "anime style",
    "watercolor",
    "hyperrealistic",
    "shallow depth of field",
    "handheld camera",
    "8k",
    "wide angle",
    "tracking shot",
    "time lapse",
    "stop motion",
    "claymation",
    "noir",
    "pastel colors",
    "volumetric lighting",
    "soft light",
    "dramatic lighting",
    "macro lens",
    "documentary style",
    "dreamy",
    "vaporwave",
    "studio ghibli inspired",
    "black and white",
    "long exposure",
    "tilt shift",
    "bokeh",
    "film grain",
    "epic scale",
    "moody",
    "vibrant",
    "minimalist",
    "surreal",
    "photorealistic",
    "oil painting",
    "low angle",
    "dolly zoom",
    "aerial view",
]

TITLE_WORDS = [
    "draft",
    "final",
    "test",
    "take",
    "idea",
    "scene",
    "shot",
    "clip",
    "version",
    "teaser",
    "intro",
    "outro",
    "ad",
    "trailer",
    "loop",
    "morning",
    "evening",
    "project",
    "client",
    "demo",
    "remix",
    "favorite",
    "concept",
    "storyboard",
    "pitch",
]


def _zipf_weights(count: int, exponent: float = 0.9) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


class PromptGenerator:
    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self._w = {
            "adj": _zipf_weights(len(ADJECTIVES)),
            "subj": _zipf_weights(len(SUBJECTS)),
            "act": _zipf_weights(len(ACTIONS)),
            "set": _zipf_weights(len(SETTINGS)),
            "time": _zipf_weights(len(TIMES)),
            "style": _zipf_weights(len(STYLES), 1.1),
        }

    def _pick(self, items: list[str], key: str) -> str:
        return self.rng.choices(items, weights=self._w[key])[0]

    def prompt(self) -> str:
        adjective = self._pick(ADJECTIVES, "adj")
        article = "An" if adjective[0] in "aeiou" else "A"
        parts = [
            f"{article} {adjective} {self._pick(SUBJECTS, 'subj')} "
            f"{self._pick(ACTIONS, 'act')} {self._pick(SETTINGS, 'set')}"
        ]
        if self.rng.random() < 0.7:
            parts[0] += " " + self._pick(TIMES, "time")
        styles = {self._pick(STYLES, "style") for _ in range(self.rng.randint(1, 4))}
        return ", ".join(parts + sorted(styles))

    def title(self) -> str | None:
        if self.rng.random() < 0.7:
            return None  # most generations are never named
        words = self.rng.sample(TITLE_WORDS, self.rng.randint(1, 3))
        return " ".join(words).capitalize() + f" {self.rng.randint(1, 99)}"
