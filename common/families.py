"""Family names that may appear in a metric key: a fixed public vocabulary, never intel text.

A site's blocklist labels each name with a family string that the site wrote (or its feed
did). That string can be anything: "conficker", or "victim-laptop.corp.example". Only names
from this fixed list of publicly documented DGA families (and the generator's synthetic
classes) become part of a key such as `recall_family_conficker`; any other family is reported
as `local_<k>`, a site-local index whose meaning stays in the site's own report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["KNOWN_FAMILIES", "family_keys", "family_slug"]

# Publicly documented DGA malware families (reimplementations and feeds name them this way).
PUBLIC_DGA_FAMILIES = frozenset(
    (
        "bamital",
        "banjori",
        "bazarbackdoor",
        "bedep",
        "beebone",
        "blackhole",
        "bobax",
        "bumblebee",
        "ccleaner",
        "chinad",
        "chir",
        "conficker",
        "corebot",
        "cryptolocker",
        "cryptowall",
        "darkcracks",
        "darkshell",
        "diamondfox",
        "dircrypt",
        "dmsniff",
        "dnsbenchmark",
        "dnschanger",
        "dyre",
        "ebury",
        "ekforward",
        "emotet",
        "enviserv",
        "feodo",
        "fobber",
        "gameover",
        "gozi",
        "goznym",
        "gspy",
        "hesperbot",
        "infy",
        "kraken",
        "locky",
        "m0yv",
        "madmax",
        "makloader",
        "matsnu",
        "mirai",
        "modpack",
        "monerodownloader",
        "murofet",
        "mydoom",
        "necurs",
        "newgoz",
        "ngioweb",
        "nymaim",
        "nymaim2",
        "oderoor",
        "omexo",
        "padcrypt",
        "pandabanker",
        "pitou",
        "pizd",
        "post",
        "proslikefan",
        "pushdo",
        "pushdotid",
        "pykspa",
        "pykspa2",
        "qadars",
        "qakbot",
        "qhost",
        "qsnatch",
        "ramdo",
        "ramnit",
        "ranbyus",
        "randomloader",
        "redyms",
        "rovnix",
        "sharkbot",
        "shifu",
        "shiotob",
        "simda",
        "sisron",
        "sphinx",
        "suppobox",
        "sutra",
        "symmi",
        "szribi",
        "tempedreve",
        "tinba",
        "tinynuke",
        "tofsee",
        "torpig",
        "tsifiri",
        "tufik",
        "ud2",
        "ud3",
        "ud4",
        "urlzone",
        "vawtrak",
        "vidro",
        "vidrotid",
        "virut",
        "volatilecedar",
        "wd",
        "xshellghost",
        "xxhex",
        "zeus",
        "zloader",
    )
)
# The synthetic classes of fedsec's site generator (experiments/generator/dga.py).
GENERATOR_CLASSES = frozenset(
    (
        "b32alnum",
        "cvsyll",
        "dateseed",
        "hexhash",
        "markovgram",
        "randalpha",
        "seedmutate",
        "shortmulti",
        "wordconcat",
        "worddigit",
    )
)
KNOWN_FAMILIES = PUBLIC_DGA_FAMILIES | GENERATOR_CLASSES | {"unknown"}

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def family_slug(name: str) -> str:
    """A metric-key-safe family name: 'Conficker.B' -> 'conficker_b'; '' -> 'unknown'."""
    return _NOT_SLUG.sub("_", str(name).lower()).strip("_") or "unknown"


def family_keys(names: Iterable[str]) -> dict[str, str]:
    """Each family string -> the key part that may leave the site.

    A string whose slug is a known family keeps that slug; the others become `local_1`,
    `local_2`, ... in sorted order of their slugs (the same string, the same key, within one
    report).

    >>> family_keys(["Locky", "victim-laptop.corp.example", "x"])
    {'Locky': 'locky', 'victim-laptop.corp.example': 'local_1', 'x': 'local_2'}
    """
    names = sorted(set(map(str, names)))
    slugs = {name: family_slug(name) for name in names}
    local = sorted({slug for slug in slugs.values() if slug not in KNOWN_FAMILIES})
    index = {slug: f"local_{number}" for number, slug in enumerate(local, start=1)}
    return {name: slug if slug in KNOWN_FAMILIES else index[slug] for name, slug in slugs.items()}
