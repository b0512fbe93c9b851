"""Optional arguments the user stated but a small model left out of its call.

The 0.5B writes the required arguments and mostly stops there, even where the request spells out an
option: "the temperature in Celsius" gives `get_weather(location=...)` without `unit="celsius"`,
"with the timelines aligned" gives `star_history(repos=...)` without `aligned=true`. On BFCL this
was the commonest fault of otherwise right calls (7 of the 14 wrong `parallel` cases of session 26).
So, after the model has chosen its calls, an optional parameter the call leaves out is filled where
the user's request names its value unambiguously:

- a string enum parameter, when exactly one of its members (three characters or more) appears in
  the request as a whole word ("celsius", "female", "ongoing"; "trial date" for `trial_date`), a
  member inside another stated one not counted ("comedy-drama" states neither "comedy" nor "drama");
  or, where none does, exactly one language code whose language the request names ("in Spanish"
  for `es-ES`), or a short member the request writes out in full as the parameter's description
  does ("descending" for `desc` where the description says "Ascending or descending"; over the
  answer calls with each option taken out, 4 more right values, no wrong one);
- a boolean parameter, set to true, when every telling word of its name appears in the request
  (matched on five letters: "detailed" for `detail`, "aligned" for `aligned`, "tolls" for
  `avoid_tolls`), and no "no", "not", "without", "don't" or "exclude" comes just before; or when
  the request uses most (three or more) of the telling words of what its description says true
  brings ("If true, additional data like PM2.5, PM10, ozone levels ..." for `detail`);
- a free-text unit parameter (`unit`, `units`, `distance_unit`), when the request states exactly one
  unit of a kind the parameter can take ("in miles", "a radius of 5cm"): the unit word the
  parameter's description uses where it has one ('km'), else the user's own ("miles", "cm"); not
  where the description speaks of a compound unit (km/h, density, area). The kind is what the
  description's own unit words are (length for "Defaults to cm"), else what its kind words say
  ("temperature"); where it names none, any kind but time ("for 10 years" states a duration, not
  the unit);
- an integer parameter that counts one thing (`num_tickets`, `nights`), when the request gives one
  count of it, in digits or words up to twenty ("two tickets", "3 VIP tickets"); not a time before
  or after ("seven years ago") nor a count on top of someone ("one other adult"). Offline, over
  BFCL's answer calls with each optional parameter taken out, this added 19 right values, no wrong one;
- a numeric parameter, when one number of the request has all the telling words of its name
  within five words before or three after ("a 4.5 star rating" for `rating`, "round off the result
  to 3" for `round_off`), or is followed by a unit of the kind the name speaks of ("within 10
  miles" for `max_distance`); not a percentage (`percentages.py` turns those into rates), not a
  number a unit of another kind follows ("10 miles" is no rating), not "one", not a number the call
  uses already. Offline, over all of a reply's answer calls with each optional parameter taken
  out: 51 more right values, 3 more wrong ones (503/53 -> 554/56 for every fill rule together).

Only the latest user message counts: the current request, not earlier turns or tool results. Where
the reply calls a tool more than once, each call also reads its own part of the request
(`request_parts.py`: "... rounded to 3 decimal places? After that, ... rounding off to 4"): an enum
member, unit or count the whole request states more than once is taken from the call's part, and
a number only from there, since each call takes its own. Offline, with the parts: 554/56 ->
592/56 (session 30; the fifth word before a number gave 2 of the 38).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from raygent.llm_pool.call_filter import identifier_words
from raygent.llm_pool.request_parts import call_parts
from raygent.schema import Message, ToolCall, ToolSpec

#: name words that say nothing about what a flag turns on
_FLAG_FILLER = frozenset("include includes with show get calculate use enable enabled flag should return want "
                         "need data info".split())
_NEGATION = re.compile(r"\b(?:no|not|without|don't|dont|do not|exclude|excluding|never|skip)\W+(?:\w+\W+){0,2}$")
_TOKEN = re.compile(r"\w+", re.UNICODE)
#: what a flag's description says true does: "If true, additional data ... will be retrieved."
_FLAG_CLAUSE = re.compile(r"(?:if (?:set to )?true,?|whether to|set (?:it )?to true to)\s+([^.;]+)")
_CLAUSE_FILLER = frozenset("will would should also the that this with from into them their there which "
                           "include includes included including return returned returns retrieve retrieved "
                           "data result results value values default false true".split())

#: canonical unit -> (kind, full names, abbreviations); a name counts as a whole word, an
#: abbreviation right after a number ("5m", "10 km", "20°C") or quoted ('m'), and from two letters
#: on also as a word of its own ("in km")
_UNITS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "meters": ("length", ("meter", "meters", "metre", "metres"), ("m",)),
    "kilometers": ("length", ("kilometer", "kilometers", "kilometre", "kilometres"), ("km",)),
    "centimeters": ("length", ("centimeter", "centimeters", "centimetre", "centimetres"), ("cm",)),
    "millimeters": ("length", ("millimeter", "millimeters", "millimetre", "millimetres"), ("mm",)),
    "miles": ("length", ("mile", "miles"), ("mi",)),
    "feet": ("length", ("foot", "feet"), ("ft",)),
    "inches": ("length", ("inch", "inches"), ()),
    "yards": ("length", ("yard", "yards"), ("yd",)),
    "celsius": ("temperature", ("celsius", "centigrade"), ("°c",)),
    "fahrenheit": ("temperature", ("fahrenheit",), ("°f",)),
    "kelvin": ("temperature", ("kelvin", "kelvins"), ()),
    "kilograms": ("mass", ("kilogram", "kilograms", "kilogramme", "kilogrammes"), ("kg",)),
    "grams": ("mass", ("gram", "grams", "gramme", "grammes"), ("g",)),
    "pounds": ("mass", ("pound", "pounds"), ("lb", "lbs")),
    "ounces": ("mass", ("ounce", "ounces"), ("oz",)),
    "liters": ("volume", ("liter", "liters", "litre", "litres"), ("l",)),
    "milliliters": ("volume", ("milliliter", "milliliters", "millilitre", "millilitres"), ("ml",)),
    "gallons": ("volume", ("gallon", "gallons"), ("gal",)),
    "seconds": ("time", ("second", "seconds"), ("s", "sec")),
    "minutes": ("time", ("minute", "minutes"), ("min",)),
    "hours": ("time", ("hour", "hours"), ("h", "hr", "hrs")),
    "days": ("time", ("day", "days"), ()),
    "years": ("time", ("year", "years"), ("yr", "yrs")),
}
_UNIT_NAME_WORDS = frozenset({"unit", "units"})
#: a description of a compound unit (speed, density, area), which one stated unit does not give
_COMPOUND = re.compile(r"\w/\w|\bper\b|square|cubic|\barea\b|velocity|speed|density|[²³]")
#: words of a unit parameter's description that say which kind of unit it takes
_KIND_WORDS = {"length": ("distance", "length", "height", "width", "radius", "depth", "altitude"),
               "temperature": ("temperature",), "mass": ("weight", "mass"), "volume": ("volume",),
               "time": ("duration", "time")}


def latest_request(messages: Sequence[Message], lower: bool = True) -> str:
    """The last user message, lower-cased unless `lower` is False ("" without one)."""
    request = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
    return request.lower() if lower else request


def _stem(word: str) -> str:
    """The first five letters of a name's word, a plural's "s" dropped: how a request's word is matched."""
    return (word[:-1] if word.endswith("s") and len(word) > 4 else word)[:5]


def _stated_flag(name: str, request: str, description: str = "") -> bool:
    words = [w for w in identifier_words(name) if len(w) >= 4 and w not in _FLAG_FILLER]
    if _described_flag(description, request):
        return True
    if not words:
        return False
    for word in words:
        stem = _stem(word)  # "stats" -> "statistics"
        match = next((m for m in _TOKEN.finditer(request) if m.group().startswith(stem)), None)
        if match is None or _NEGATION.search(request[: match.start()]):
            return False
    return True


def _described_flag(description: str, request: str) -> bool:
    """Whether the request asks for what the flag's description says true brings: three or more
    of the telling words after "If true," (or "Whether to", "Set to true to") appear in it, most of
    them, none just after a negation ("including additional data like PM2.5, PM10, ozone levels"
    for `detail`: "If true, additional data like PM2.5, PM10, ozone levels ... will be retrieved")."""
    match = _FLAG_CLAUSE.search(description.lower())
    if not match:
        return False
    words = {w for w in _TOKEN.findall(match.group(1)) if (len(w) >= 4 or any(c.isdigit() for c in w))
             and w not in _CLAUSE_FILLER}
    if len(words) < 3:
        return False
    hits = [m for w in words for m in [re.search(rf"(?<!\w){re.escape(w)}(?!\w)", request)] if m]
    if any(_NEGATION.search(request[: m.start()]) for m in hits):
        return False
    return len(hits) >= 3 and 3 * len(hits) >= 2 * len(words)


#: language codes (ISO 639-1) by the language's English name: "in Spanish" states `es-ES` or `es`
_LANGUAGES = {"en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian", "pt": "portuguese",
              "zh": "chinese", "ja": "japanese", "ko": "korean", "ru": "russian", "ar": "arabic", "hi": "hindi",
              "nl": "dutch", "sv": "swedish", "pl": "polish", "tr": "turkish", "el": "greek", "he": "hebrew",
              "vi": "vietnamese", "th": "thai", "id": "indonesian", "uk": "ukrainian", "cs": "czech", "da": "danish",
              "fi": "finnish", "no": "norwegian", "hu": "hungarian", "ro": "romanian"}
_LANGUAGE_CODE = re.compile(r"([a-z]{2})(?:[-_][A-Za-z]{2,4})?")


def _stated_member(enum: Sequence[Any], request: str, description: str = "") -> str | None:
    hits = [e for e in enum if isinstance(e, str) and len(e) >= 3
            and re.search(rf"(?<!\w){re.escape(e.lower().replace('_', ' '))}(?!\w)", request.replace("_", " "))]
    if not hits:  # language codes, by the language's name: "in Spanish" for `es-ES`
        hits = [e for e in enum if isinstance(e, str) and (m := _LANGUAGE_CODE.fullmatch(e))
                and m.group(1) in _LANGUAGES and re.search(rf"\b{_LANGUAGES[m.group(1)]}\b", request)]
    if not hits and description:  # a short form the description spells out: "desc" for "descending"
        words = set(_TOKEN.findall(request)) & set(_TOKEN.findall(description.lower()))
        hits = [e for e in enum if isinstance(e, str) and len(e) >= 3 and e.isalpha()
                and any(w.startswith(e.lower()) and len(w) > len(e) + 1 for w in words)]
    # "comedy-drama" states that member, not also "comedy" and "drama"
    hits = [e for e in hits if not any(e.lower() != h.lower() and e.lower() in h.lower() for h in hits)]
    return hits[0] if len(hits) == 1 else None


def _unit_forms(text: str) -> dict[str, str]:
    """canonical unit -> the form the (lower-cased) text writes it in, for each unit it states."""
    found: dict[str, str] = {}
    for canonical, (_, names, abbreviations) in _UNITS.items():
        for form in names + abbreviations:
            quoted = rf"['\"]{re.escape(form)}['\"]"
            if form not in abbreviations:
                pattern = rf"(?<!\w){re.escape(form)}(?!\w)"
            elif len(form) < 2:  # "5m" or 'm'; a lone "s" is too often something else
                pattern = rf"\d\s?{re.escape(form)}(?![\w°])|{quoted}"
            else:  # also a bare "km" ("Defaults to cm.", "distance in km")
                pattern = rf"\d\s?{re.escape(form)}(?![\w°])|{quoted}|(?<![\w°']){re.escape(form)}(?![\w°'])"
            if re.search(pattern, text):
                found[canonical] = form
                break
    return found


def _stated_unit(name: str, prop: dict[str, Any], request: str) -> str | None:
    if not _UNIT_NAME_WORDS & set(identifier_words(name)) or prop.get("type", "string") != "string":
        return None
    original = f"{prop.get('description') or ''} {prop.get('default') or ''}"
    described = original.lower()
    if _COMPOUND.search(described):  # "Default is km/h", "the unit for the area": not one word
        return _stated_rate_unit(described, request)
    own = _unit_forms(described)
    kinds = ({_UNITS[u][0] for u in own}
             or {kind for kind, words in _KIND_WORDS.items() if any(re.search(rf"\b{w}", described) for w in words)}
             or {kind for kind, _, _ in _UNITS.values()} - {"time"})
    stated = {u: f for u, f in _unit_forms(request).items() if _UNITS[u][0] in kinds}
    if len(stated) != 1:
        return None
    ((unit, written),) = stated.items()
    if unit not in own:
        return written
    return re.search(re.escape(own[unit]), original, re.IGNORECASE).group()  # as the schema writes it: 'Celsius'


#: a unit written as one over another ("m/s", "km/h", "kg/m3"): a few letters (and a digit) each side
_RATE_UNIT = re.compile(r"(?<![\w/])([a-z]{1,4}\d?/[a-z]{1,4}\d?)(?![\w/])")


def _stated_rate_unit(described: str, request: str) -> str | None:
    """The one rate unit a request writes ("in km/h") for a unit parameter whose description writes
    its default as one ("default is m/s"); None where the request writes none, several or words
    such as "and/or"."""
    if not _RATE_UNIT.search(described):
        return None
    stated = {u for u in _RATE_UNIT.findall(request) if u not in ("and/or", "or/and")}
    return stated.pop() if len(stated) == 1 else None


_NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                             "thirteen fourteen fifteen sixteen seventeen eighteen nineteen "
                                             "twenty".split())}
#: words after a number that make it a time before or after ("seven years ago"), or a count on top of
#: others ("one other adult", "two more"), rather than how many of something
_TIME_AWAY = frozenset("ago later earlier before after".split())
_ON_TOP = frozenset("other more additional extra fewer less".split())
#: a count and the noun it counts, one word between allowed ("two tickets", "3 adult tickets")
_COUNTED = re.compile(r"\b(\d+|" + "|".join(_NUMBER_WORDS) + r")\s+(?:(?!(?:" + "|".join(_ON_TOP) + r")\b)"
                      r"([a-z]+)\s+)?([a-z]+)\b(?!\s+(?:" + "|".join(_TIME_AWAY) + r"|from now)\b)", re.IGNORECASE)
#: name words that say a parameter is a count, not what it counts
_COUNT_FILLER = frozenset("num number count of total no n nr quantity amount how many the".split())


def _same_noun(word: str, noun: str) -> bool:
    """"tickets" for `num_tickets`, "night" for `nights`: the same word, singular or plural."""
    a, b = word.lower().rstrip("s"), noun.lower().rstrip("s")
    return len(a) >= 3 and a == b


def _stated_count(name: str, prop: dict[str, Any], request: str) -> int | None:
    """The one count the request gives of what an integer parameter counts ("two tickets" for
    `num_tickets`), else None."""
    if prop.get("type") != "integer":
        return None
    words = [w for w in identifier_words(name) if w not in _COUNT_FILLER]
    if len(words) != 1:
        return None
    found = set()
    for number, between, noun in _COUNTED.findall(request):
        if noun.lower() in _TIME_AWAY:
            continue
        if _same_noun(words[0], noun) or (between and _same_noun(words[0], between)):
            found.add(int(number) if number.isdigit() else _NUMBER_WORDS[number.lower()])
    return found.pop() if len(found) == 1 else None


#: name words that bound or qualify a number rather than say what it is
_NUMBER_FILLER = _COUNT_FILLER | frozenset("min max minimum maximum value limit".split())
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w.,]*\d)")
#: a number in digits or in words up to twenty ("one" aside: "the default one" is no number)
_ANY_NUMBER = re.compile(_NUMBER.pattern + r"|\b(" + "|".join(w for w in _NUMBER_WORDS if w != "one") + r")\b",
                         re.IGNORECASE)


def _stated_number(name: str, prop: dict[str, Any], request: str, used: set[float]) -> int | float | None:
    """The one number of the request that a numeric parameter's words stand next to ("a 4.5 star
    rating" for `rating`), or that a unit of the parameter's kind follows ("within 10 miles" for
    `max_distance`); None where there is none or more than one, or where the call uses it already."""
    if prop.get("type") not in ("number", "integer", "float"):
        return None
    words = [w for w in identifier_words(name) if w not in _NUMBER_FILLER and len(w) >= 4]
    if not words:
        return None
    stems = {_stem(w) for w in words}
    kinds = {kind for kind, kind_words in _KIND_WORDS.items() if set(words) & set(kind_words)}
    found: set[float] = set()
    for match in _ANY_NUMBER.finditer(request):
        digits, word = match.groups()
        value = float(digits.replace(",", "")) if digits else float(_NUMBER_WORDS[word.lower()])
        after_text = request[match.end():]
        if re.match(r"\s?(?:%|percent)", after_text):  # a percentage: a rate's business (percentages.py)
            continue
        before = _TOKEN.findall(request[: match.start()])[-5:]
        after = _TOKEN.findall(after_text)[:3]
        if after[:1] and after[0] in _ON_TOP or _TIME_AWAY & set(after[:2]):
            continue  # "one other ticket", "seven years ago"
        unit_kinds = {_UNITS[u][0] for u in _unit_forms(" ".join(["1", *after[:1]]))} if after else set()
        if unit_kinds and not unit_kinds & kinds:
            continue  # "10 miles" is a distance, not a rating
        if stems <= {_stem(w) for w in before + after} or unit_kinds & kinds:
            found.add(value)
    found -= used
    if len(found) != 1:
        return None
    value = found.pop()
    if prop.get("type") == "integer":
        return int(value) if value.is_integer() else None
    return int(value) if value.is_integer() else value


def fill_stated_options(calls: Sequence[ToolCall], tools: Sequence[ToolSpec] | None,
                        messages: Sequence[Message]) -> tuple[list[ToolCall], list[str]]:
    """(calls with stated options filled, one note per argument added)."""
    request = latest_request(messages)
    specs = {t.name: t for t in tools or ()}
    if not request or not specs:
        return list(calls), []
    out: list[ToolCall] = []
    notes: list[str] = []
    times_called = Counter(call.name for call in calls)
    parts = call_parts(calls, request)  # where each of several calls of one tool is asked for
    for i, call in enumerate(calls):
        schema = (specs[call.name].parameters or {}) if call.name in specs else {}
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        # the whole request first (an option stated once serves every call), then the call's own part
        texts = [request, parts[i]] if i in parts else [request]
        # calls of one tool take different numbers: only from the call's own part
        number_text = request if times_called[call.name] == 1 else parts.get(i)
        added: dict[str, Any] = {}
        for name, prop in properties.items():
            if name in call.arguments or name in required or not isinstance(prop, dict):
                continue
            if prop.get("enum") and prop.get("type", "string") == "string":
                described = str(prop.get("description") or "")
                member = next((m for t in texts if (m := _stated_member(prop["enum"], t, described)) is not None), None)
                if member is not None:
                    added[name] = member
            elif prop.get("type") == "boolean" and _stated_flag(name, request, str(prop.get("description") or "")):
                added[name] = True
            elif (unit := next((u for t in texts if (u := _stated_unit(name, prop, t)) is not None), None)) is not None:
                added[name] = unit
            elif (count := next((n for t in texts if (n := _stated_count(name, prop, t)) is not None), None)) is not None:
                added[name] = count
            elif number_text and (
                    number := _stated_number(name, prop, number_text, _numbers_of(call.arguments))) is not None:
                added[name] = number
        if added:
            notes.extend(f"added {name}={value!r} to the call to {call.name!r}: the request states it"
                         for name, value in added.items())
            call = call.model_copy(update={"arguments": {**call.arguments, **added}})
        out.append(call)
    return out, notes


def _numbers_of(arguments: dict[str, Any]) -> set[float]:
    """The numbers a call's arguments already carry (a number the call uses is not stated for another)."""
    out: set[float] = set()
    for value in arguments.values():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out.add(float(value))
        elif isinstance(value, str):
            out.update(float(v.replace(",", "")) for v in _NUMBER.findall(value))
    return out
