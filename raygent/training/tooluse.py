"""Synthetic tool-use conversations over many invented tools: the broad data set for the adapter.

Why: the `multistep` adapter was trained around raygent's four built-in tools. On BFCL it costs
the 0.5B model 0.06-0.12 on single calls and leaves a stray first token (`_Pods`) where no call
fits. A small model learns tool use as a pattern from many tools: which of several offered tools
fits, its argument values copied from the request with the schema's types, several calls at once
when the request asks for several things, a later call fed with an earlier result, and no call at
all when nothing offered fits.

Every tool here is invented for training (no BFCL question, answer or function: a test checks the
names against BFCL's when its data is on the machine) and runs a deterministic implementation, so
every result in a conversation is what the tool returns. Conversations come in groups that share
one offered tool set (and so one system turn, which training computes once per batch).

Kinds: `single` (one fitting call among the 1-5 offered tools), `parallel` (two calls in one
reply: the same tool twice, or two tools), `chain2` / `chain3` (a later call uses a field of an
earlier result), `abstain` (a task none of the offered tools does, most often one for a tool of the
same domain, or a question answered from knowledge: no call, a plain answer).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raygent.schema import Message, ToolCall, ToolSpec
from raygent.training.chains import Conversation


_SLOT = re.compile(r"\{(\w+)(?:=([^}]*))?\}")


def _h(*parts: Any) -> int:
    """A stable number from the arguments (results must not depend on Python's hash seed)."""
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8], 16)


@dataclass
class P:
    """One parameter: its JSON-schema type and description, and the values requests use."""

    type: str
    description: str
    values: list[Any]
    required: bool = True
    enum: list[str] | None = None
    items: str | None = None  # item type of an array


@dataclass
class SyntheticTool:
    name: str
    description: str
    params: dict[str, P]
    run: Callable[..., dict[str, Any]]
    asks: list[str]  # request templates; a {param} in one means the call passes that parameter
    say: str  # answer template over {result fields} and {arguments}

    def spec(self) -> ToolSpec:
        properties: dict[str, Any] = {}
        for name, p in self.params.items():
            prop: dict[str, Any] = {"type": p.type, "description": p.description}
            if p.enum:
                prop["enum"] = p.enum
            if p.items:
                prop["items"] = {"type": p.items}
            properties[name] = prop
        return ToolSpec(name=self.name, description=self.description,
                        parameters={"type": "object", "properties": properties,
                                    "required": [n for n, p in self.params.items() if p.required]})

    def draw(self, rng: random.Random, template: str | None = None) -> tuple[str, dict[str, Any]]:
        """A request and the arguments a right call passes."""
        template = template or rng.choice(self.asks)
        arguments: dict[str, Any] = {}
        shown: dict[str, str] = {}
        for name, fixed in _SLOT.findall(template):
            if fixed:  # {name=json}: the wording implies the value; nothing is shown
                arguments[name] = json.loads(fixed)
                continue
            value = rng.choice(self.params[name].values)
            arguments[name] = value
            shown[name] = _show(value)
        return _SLOT.sub(lambda m: "" if m.group(2) else shown[m.group(1)], template), arguments

    def answer(self, arguments: dict[str, Any], result: dict[str, Any]) -> str:
        values = {**{k: _show(v) for k, v in arguments.items()}, **{k: _show(v) for k, v in result.items()}}
        return self.say.format_map(_Blank(values))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


# -- the catalogue: invented tools, each with a deterministic implementation ----------------------
_PLACES = ["Lyon", "Porto", "Bergen", "Kyoto", "Valparaíso", "Tallinn", "Hobart", "Cusco", "Ghent", "Bilbao",
           "Quebec City", "Zanzibar", "Salzburg", "Tromsø"]
_DISHES = ["mushroom risotto", "chicken tikka masala", "pad thai", "shakshuka", "beef bourguignon",
           "lentil soup", "banana bread", "fish tacos", "ratatouille", "miso ramen"]
_BOOKS = ["The Left Hand of Darkness", "Middlemarch", "Things Fall Apart", "The Remains of the Day",
          "A Wizard of Earthsea", "Invisible Cities", "Beloved", "The Name of the Rose"]
_AUTHORS = dict(zip(_BOOKS, ["Ursula K. Le Guin", "George Eliot", "Chinua Achebe", "Kazuo Ishiguro",
                            "Ursula K. Le Guin", "Italo Calvino", "Toni Morrison", "Umberto Eco"]))
_FILMS = ["Spirited Away", "Arrival", "Paddington 2", "Parasite", "Amélie", "The Iron Giant", "Past Lives",
          "Mad Max: Fury Road"]
_REPOS = ["acme/webshop", "octo/parser", "lab/vision-kit", "infra/terraform-modules", "data/etl-jobs"]
_DOMAINS = ["example.org", "mail.acme.io", "status.octo.dev", "shop.lab.net", "docs.infra.cloud"]
_PLANTS = ["monstera", "basil", "snake plant", "orchid", "tomato", "lavender", "fiddle leaf fig"]
_SONGS = ["Clair de Lune", "Bohemian Rhapsody", "Dancing Queen", "Hey Jude", "Take Five", "Hallelujah"]
_LANGS = ["French", "German", "Japanese", "Spanish", "Italian", "Korean"]
_PHRASES = ["good luck with the exam", "where is the train station", "thank you for dinner",
            "the meeting is moved to Friday", "happy birthday"]
_COUNTRIES = ["Portugal", "Japan", "Canada", "Kenya", "Norway", "Chile", "Vietnam", "Morocco"]
_CAPITALS = {"Portugal": "Lisbon", "Japan": "Tokyo", "Canada": "Ottawa", "Kenya": "Nairobi", "Norway": "Oslo",
             "Chile": "Santiago", "Vietnam": "Hanoi", "Morocco": "Rabat"}
_AREAS = ["Old Town", "Harbour District", "University Quarter", "Central Station", "Riverside"]
_ROOMS = ["living room", "kitchen", "bedroom", "office", "hallway"]


def _coords(place: str) -> dict[str, Any]:
    n = _h("geo", place)
    return {"place": place, "lat": round(-40 + (n % 8000) / 100, 2), "lon": round(-120 + (n // 8000 % 24000) / 100, 2)}


def _clock(n: int, base: int) -> str:
    minutes = base + n % 120
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


CATALOGUE: list[SyntheticTool] = [
    SyntheticTool(
        "place_coordinates", "Look up the latitude and longitude of a town or landmark.",
        {"place": P("string", "name of the town or landmark", _PLACES)},
        lambda place: _coords(place),
        ["Where exactly is {place} on the map?", "Give me the GPS coordinates of {place}.",
         "What are the latitude and longitude of {place}?"],
        "{place} lies at latitude {lat}, longitude {lon}."),
    SyntheticTool(
        "sun_times", "Sunrise and sunset at a position on a given date.",
        {"lat": P("number", "latitude in degrees", [43.3, 59.9, 35.0, -33.0, 48.8]),
         "lon": P("number", "longitude in degrees", [5.4, 10.7, 135.8, -71.6, 2.3]),
         "date": P("string", "date as YYYY-MM-DD; today if left out",
                   ["2026-06-21", "2026-12-21", "2027-03-20"], required=False)},
        lambda lat, lon, date="today": {"sunrise": _clock(_h(lat, lon, date), 300),
                                        "sunset": _clock(_h(lon, lat, date), 1140), "date": date},
        ["When does the sun rise at latitude {lat}, longitude {lon}?",
         "Sunrise and sunset for {lat}, {lon} on {date}, please."],
        "Sunrise is at {sunrise} and sunset at {sunset}."),
    SyntheticTool(
        "recipe_lookup", "Find a recipe by dish name; returns its id, servings and cooking time.",
        {"dish": P("string", "the dish to cook", _DISHES),
         "vegetarian": P("boolean", "only vegetarian versions", [True], required=False)},
        lambda dish, vegetarian=False: {"recipe_id": f"R{_h(dish, vegetarian) % 9000 + 1000}",
                                        "servings": 2 + _h(dish) % 5, "minutes": 15 + _h(dish, 1) % 90},
        ["I want to cook {dish} tonight, can you find a recipe?", "Look up a recipe for {dish}.",
         "Find me a vegetarian recipe for {dish}.{vegetarian=true}"],
        "Recipe {recipe_id}: serves {servings}, about {minutes} minutes."),
    SyntheticTool(
        "recipe_nutrition", "Calories and macronutrients per serving of a recipe, by recipe id.",
        {"recipe_id": P("string", "recipe id such as R1234", ["R2481", "R7730", "R1022", "R5519"])},
        lambda recipe_id: {"kcal": 250 + _h(recipe_id) % 600, "protein_g": 5 + _h(recipe_id, "p") % 40,
                           "carbs_g": 10 + _h(recipe_id, "c") % 80},
        ["How many calories per serving does recipe {recipe_id} have?",
         "Nutrition facts for recipe {recipe_id}?"],
        "Per serving: {kcal} kcal, {protein_g} g protein, {carbs_g} g carbohydrates."),
    SyntheticTool(
        "library_catalog_search", "Search the city library catalogue for a title; returns its ISBN and author.",
        {"title": P("string", "book title", _BOOKS)},
        lambda title: {"isbn": f"978{_h(title) % 10**10:010d}", "title": title, "author": _AUTHORS[title]},
        ["Does the library have {title}?", "Look up {title} in the library catalogue.",
         "Who wrote {title}? Check the library."],
        "{title} by {author}, ISBN {isbn}."),
    SyntheticTool(
        "branch_copies", "How many copies of a book (by ISBN) a library branch has on the shelf now.",
        {"isbn": P("string", "the book's ISBN", ["9780441478125", "9780141439549", "9780385474542"]),
         "branch": P("string", "branch name; all branches if left out", ["Central", "Northside", "Eastgate"],
                     required=False)},
        lambda isbn, branch="all": {"available": _h(isbn, branch) % 4, "branch": branch},
        ["Is ISBN {isbn} on the shelf at the {branch} branch?", "How many copies of {isbn} are available?"],
        "{available} copies available ({branch})."),
    SyntheticTool(
        "film_search", "Find a film by title; returns its film id, year and running time.",
        {"title": P("string", "film title", _FILMS)},
        lambda title: {"film_id": f"F{_h(title) % 90000 + 10000}", "year": 1995 + _h(title) % 30,
                       "runtime_min": 85 + _h(title, 2) % 70},
        ["What year did {title} come out?", "Find the film {title}.", "How long is the movie {title}?"],
        "{title} ({year}), {runtime_min} minutes, id {film_id}."),
    SyntheticTool(
        "film_showtimes", "Cinema showtimes of a film (by film id) in a city.",
        {"film_id": P("string", "film id such as F12345", ["F48213", "F20977", "F77310"]),
         "city": P("string", "city", _PLACES)},
        lambda film_id, city: {"times": [_clock(_h(film_id, city, i), 780 + 150 * i) for i in range(3)]},
        ["When is film {film_id} showing in {city}?", "Showtimes for {film_id} in {city}."],
        "Showtimes: {times}."),
    SyntheticTool(
        "dns_resolve", "Resolve a host name to its IPv4 address.",
        {"hostname": P("string", "host name", _DOMAINS)},
        lambda hostname: {"ip": f"203.0.{_h(hostname) % 250}.{_h(hostname, 1) % 250 + 1}", "ttl": 300},
        ["What IP does {hostname} point to?", "Resolve {hostname}.", "Look up the address record of {hostname}."],
        "{hostname} resolves to {ip}."),
    SyntheticTool(
        "ip_geolocate", "Country and city an IP address is registered in.",
        {"ip": P("string", "IPv4 address", ["203.0.113.7", "198.51.100.24", "192.0.2.55"])},
        lambda ip: {"country": _COUNTRIES[_h(ip) % len(_COUNTRIES)], "city": _PLACES[_h(ip, 1) % len(_PLACES)]},
        ["Where is the IP {ip} located?", "Which country is {ip} from?"],
        "{ip} is registered in {city}, {country}."),
    SyntheticTool(
        "repo_summary", "Summary of a code repository: default branch, stars and open issues.",
        {"repo": P("string", "owner/name", _REPOS)},
        lambda repo: {"default_branch": ["main", "master", "develop"][_h(repo) % 3], "stars": _h(repo) % 5000,
                      "open_issues": _h(repo, 1) % 120},
        ["How many stars does {repo} have?", "What's the default branch of {repo}?", "Give me a summary of {repo}."],
        "{repo}: default branch {default_branch}, {stars} stars, {open_issues} open issues."),
    SyntheticTool(
        "ci_latest_run", "Status of the latest CI run of a repository's branch.",
        {"repo": P("string", "owner/name", _REPOS), "branch": P("string", "branch name", ["main", "release-2.1"])},
        lambda repo, branch: {"status": ["passed", "failed", "running"][_h(repo, branch) % 3],
                              "duration_s": 60 + _h(repo, branch, 1) % 900},
        ["Did the last CI run on {branch} of {repo} pass?", "CI status of {repo} branch {branch}?"],
        "The latest run on {branch} {status} ({duration_s} s)."),
    SyntheticTool(
        "country_facts", "Capital, population and calling code of a country.",
        {"country": P("string", "country name", _COUNTRIES)},
        lambda country: {"capital": _CAPITALS[country], "population_m": round(3 + _h(country) % 1200 / 10, 1),
                         "calling_code": f"+{_h(country) % 280 + 20}"},
        ["What's the capital of {country}?", "How many people live in {country}?", "Tell me the basics about {country}."],
        "{country}: capital {capital}, {population_m} million people, calling code {calling_code}."),
    SyntheticTool(
        "city_local_time", "The current local time and UTC offset in a city.",
        {"city": P("string", "city name", list(_CAPITALS.values()) + _PLACES[:4])},
        lambda city: {"local_time": _clock(_h(city), 0), "utc_offset": f"{_h(city) % 25 - 12:+d}"},
        ["What time is it right now in {city}?", "Local time in {city}?"],
        "It is {local_time} in {city} (UTC{utc_offset})."),
    SyntheticTool(
        "parking_lots_near", "Parking lots with free spaces near an area of town.",
        {"area": P("string", "area or district", _AREAS),
         "max_walk_min": P("integer", "longest walk to the area in minutes", [5, 10, 15], required=False)},
        lambda area, max_walk_min=10: {"lot_id": f"P{_h(area) % 90 + 10}", "free_spaces": _h(area, 1) % 200,
                                       "walk_min": min(max_walk_min, 1 + _h(area) % 12)},
        ["Where can I park near the {area}?", "Find parking close to {area}, at most {max_walk_min} minutes walk."],
        "Lot {lot_id} has {free_spaces} free spaces, {walk_min} min walk."),
    SyntheticTool(
        "reserve_parking", "Reserve a space in a parking lot for a number of hours.",
        {"lot_id": P("string", "lot id such as P42", ["P17", "P42", "P88"]),
         "hours": P("integer", "how many hours", [1, 2, 3, 4, 8])},
        lambda lot_id, hours: {"confirmation": f"PK-{_h(lot_id, hours) % 100000:05d}", "price_eur": 2.5 * hours},
        ["Reserve a spot in lot {lot_id} for {hours} hours.", "Book {hours} hours of parking at {lot_id}."],
        "Reserved: confirmation {confirmation}, {price_eur} EUR."),
    SyntheticTool(
        "track_search", "Search the music catalogue for a song; returns its track id and artist.",
        {"query": P("string", "song title or words from it", _SONGS)},
        lambda query: {"track_id": f"T{_h(query) % 900000 + 100000}", "artist": ["Debussy", "Queen", "ABBA",
                       "The Beatles", "Dave Brubeck", "Leonard Cohen"][_SONGS.index(query) % 6]},
        ["Find the song {query}.", "Who performs {query}? Search the catalogue."],
        "{query} by {artist} (track {track_id})."),
    SyntheticTool(
        "playlist_add", "Add a track (by track id) to one of the user's playlists.",
        {"track_id": P("string", "track id such as T123456", ["T481516", "T234200", "T777001"]),
         "playlist": P("string", "playlist name", ["Road trip", "Focus", "Sunday morning"])},
        lambda track_id, playlist: {"added": True, "playlist_length": 5 + _h(playlist) % 40},
        ["Add {track_id} to my {playlist} playlist.", "Put track {track_id} on {playlist}."],
        "Added to {playlist}; it now has {playlist_length} tracks."),
    SyntheticTool(
        "plant_care", "Care guide for a house or garden plant: light, water interval in days, toxicity to pets.",
        {"plant": P("string", "plant name", _PLANTS)},
        lambda plant: {"light": ["bright indirect", "full sun", "low light"][_h(plant) % 3],
                       "water_every_days": 2 + _h(plant) % 12, "toxic_to_pets": _h(plant, 1) % 2 == 0},
        ["How often should I water my {plant}?", "Is {plant} safe for cats?", "Care tips for a {plant}?"],
        "{plant}: {light} light, water every {water_every_days} days, toxic to pets: {toxic_to_pets}."),
    SyntheticTool(
        "set_reminder", "Create a reminder at a time (HH:MM) with a message.",
        {"time": P("string", "time as HH:MM", ["07:30", "12:15", "18:00", "21:45"]),
         "message": P("string", "what to remind about", ["water the plants", "call grandma", "take the medicine",
                                                         "leave for the cinema"])},
        lambda time, message: {"reminder_id": f"REM-{_h(time, message) % 10000:04d}", "time": time},
        ["Remind me at {time} to {message}.", "Set a reminder for {time}: {message}."],
        "Reminder set for {time}."),
    SyntheticTool(
        "phrase_translate", "Translate a short text into another language.",
        {"text": P("string", "the text", _PHRASES),
         "target_language": P("string", "language to translate into", _LANGS)},
        lambda text, target_language: {"translation": f"[{target_language[:2].upper()}] {text}",
                                       "target_language": target_language},
        ["How do you say '{text}' in {target_language}?", "Translate '{text}' into {target_language}."],
        "In {target_language}: {translation}"),
    SyntheticTool(
        "save_note", "Save a note with a title and a body to the user's notebook.",
        {"title": P("string", "note title", ["Travel phrases", "Shopping", "Ideas"]),
         "body": P("string", "note text", ["buy oat milk", "ask about the visa", "try the new bakery"])},
        lambda title, body: {"note_id": f"N{_h(title, body) % 10000}", "saved": True},
        ["Save a note called {title} saying {body}.", "Write down '{body}' in my {title} note."],
        "Saved the note {title}."),
    SyntheticTool(
        "public_holidays", "Public holidays of a country in a year; returns the next one after a date.",
        {"country": P("string", "country name", _COUNTRIES), "year": P("integer", "year", [2026, 2027])},
        lambda country, year: {"next_holiday": f"{year}-{_h(country, year) % 12 + 1:02d}-{_h(country) % 28 + 1:02d}",
                               "name": ["Independence Day", "Labour Day", "Republic Day", "National Day"][_h(country) % 4],
                               "count": 8 + _h(country, year) % 10},
        ["Which public holidays does {country} have in {year}?", "Next bank holiday in {country} in {year}?"],
        "{country} has {count} public holidays in {year}; next is {name} on {next_holiday}."),
    SyntheticTool(
        "days_between", "Number of days between two dates (YYYY-MM-DD).",
        {"start": P("string", "first date", ["2026-12-06", "2027-01-01", "2026-11-20"]),
         "end": P("string", "second date", ["2027-02-14", "2027-04-05", "2027-07-01"])},
        lambda start, end: {"days": (int(end[:4]) - int(start[:4])) * 365 + (int(end[5:7]) - int(start[5:7])) * 30
                            + int(end[8:]) - int(start[8:])},
        ["How many days from {start} to {end}?", "Count the days between {start} and {end}."],
        "{days} days."),
    SyntheticTool(
        "smart_light", "Switch a room's lights on or off, with an optional brightness in percent.",
        {"room": P("string", "room", _ROOMS), "on": P("boolean", "true to switch on", [True, False]),
         "brightness": P("integer", "brightness 1-100", [20, 50, 80, 100], required=False)},
        lambda room, on, brightness=100: {"room": room, "state": "on" if on else "off",
                                          "brightness": brightness if on else 0},
        ["Switch on the lights in the {room}.{on=true}", "Turn off the {room} lights.{on=false}",
         "Dim the {room} lights to {brightness} percent.{on=true}"],
        "The {room} lights are {state}."),
    SyntheticTool(
        "thermostat_set", "Set the heating target temperature of a room in degrees Celsius.",
        {"room": P("string", "room", _ROOMS), "celsius": P("number", "target temperature", [18.5, 20, 21.5, 23]),
         "mode": P("string", "heating mode", ["comfort", "eco", "away"], required=False,
                   enum=["comfort", "eco", "away"])},
        lambda room, celsius, mode="comfort": {"room": room, "target": celsius, "mode": mode},
        ["Set the {room} to {celsius} degrees.", "Heat the {room} to {celsius} °C in {mode} mode."],
        "The {room} is set to {target} °C ({mode})."),
    SyntheticTool(
        "bike_docks", "Free bikes and empty docks at the bike-share stations near an address.",
        {"address": P("string", "street address", ["12 Canal Street", "Market Square 3", "40 Hill Road"]),
         "electric_only": P("boolean", "count e-bikes only", [True], required=False)},
        lambda address, electric_only=False: {"station": f"S{_h(address) % 300}", "bikes": _h(address, 1) % 15,
                                              "docks": _h(address, 2) % 20},
        ["Any bikes to rent near {address}?", "How many e-bikes are there near {address}?{electric_only=true}"],
        "Station {station}: {bikes} bikes, {docks} empty docks."),
    SyntheticTool(
        "unit_convert_length", "Convert a length between units.",
        {"value": P("number", "the length", [3, 12.5, 42, 100, 5280]),
         "from_unit": P("string", "unit of the value", ["km", "mi", "m", "ft"], enum=["km", "mi", "m", "ft", "in", "cm"]),
         "to_unit": P("string", "unit wanted", ["mi", "km", "ft", "m"], enum=["km", "mi", "m", "ft", "in", "cm"])},
        lambda value, from_unit, to_unit: {"result": round(value * {"km": 1000, "mi": 1609.344, "m": 1, "ft": 0.3048,
                                                                     "in": 0.0254, "cm": 0.01}[from_unit]
                                                           / {"km": 1000, "mi": 1609.344, "m": 1, "ft": 0.3048,
                                                              "in": 0.0254, "cm": 0.01}[to_unit], 3)},
        ["How many {to_unit} is {value} {from_unit}?", "Convert {value} {from_unit} to {to_unit}."],
        "{value} {from_unit} = {result} {to_unit}."),
    SyntheticTool(
        "vocabulary_define", "Dictionary definition and part of speech of an English word.",
        {"word": P("string", "the word", ["serendipity", "ephemeral", "gregarious", "obfuscate", "quixotic"])},
        lambda word: {"part_of_speech": ["noun", "adjective", "verb"][_h(word) % 3],
                      "definition": f"the meaning of '{word}' as given by the dictionary"},
        ["What does {word} mean?", "Define the word {word}."],
        "{word} ({part_of_speech}): {definition}."),
    SyntheticTool(
        "order_groceries", "Put grocery items in the online shopping basket.",
        {"items": P("array", "item names", [["eggs", "flour"], ["apples", "yogurt", "bread"], ["rice", "tofu"]],
                    items="string"),
         "express": P("boolean", "same-day delivery", [True], required=False)},
        lambda items, express=False: {"basket_size": len(items), "delivery": "today" if express else "tomorrow"},
        ["Add {items} to my grocery basket.", "Order {items} with same-day delivery.{express=true}"],
        "{basket_size} items in the basket, delivery {delivery}."),
]
TOOLS = {t.name: t for t in CATALOGUE}

# chains: (request template over the first tool's parameters, first tool, second tool,
#          {second tool's parameter: first result's field}, second tool's parameters given in the request)
CHAINS: list[tuple[str, str, str, dict[str, str], dict[str, list[Any]]]] = [
    ("Find the coordinates of {place}, then tell me when the sun rises and sets there.",
     "place_coordinates", "sun_times", {"lat": "lat", "lon": "lon"}, {}),
    ("Look up a recipe for {dish} and then get its nutrition facts.",
     "recipe_lookup", "recipe_nutrition", {"recipe_id": "recipe_id"}, {}),
    ("Search the library catalogue for {title}, then check how many copies are on the shelf.",
     "library_catalog_search", "branch_copies", {"isbn": "isbn"}, {}),
    ("Find the film {title} and show me its showtimes in {city}.",
     "film_search", "film_showtimes", {"film_id": "film_id"}, {"city": _PLACES}),
    ("Resolve {hostname} and then find out where that IP is located.",
     "dns_resolve", "ip_geolocate", {"ip": "ip"}, {}),
    ("Get the default branch of {repo}, then check the latest CI run on that branch.",
     "repo_summary", "ci_latest_run", {"branch": "default_branch", "repo": "=repo"}, {}),
    ("What's the capital of {country}? Then tell me the local time there.",
     "country_facts", "city_local_time", {"city": "capital"}, {}),
    ("Find a parking lot near the {area} and reserve it for {hours} hours.",
     "parking_lots_near", "reserve_parking", {"lot_id": "lot_id"}, {"hours": [1, 2, 3, 4]}),
    ("Search for the song {query} and add it to my {playlist} playlist.",
     "track_search", "playlist_add", {"track_id": "track_id"}, {"playlist": ["Road trip", "Focus", "Sunday morning"]}),
    ("Translate '{text}' into {target_language} and save it as a note titled {title}.",
     "phrase_translate", "save_note", {"body": "translation"}, {"title": ["Travel phrases", "Ideas"]}),
    ("Find the next public holiday in {country} in {year}, then count the days from {start} until it.",
     "public_holidays", "days_between", {"end": "next_holiday"}, {"start": ["2026-12-06", "2026-11-20"]}),
]
# three steps: the sunrise of a place, then a reminder at that time
CHAIN3 = ("Find where {place} is, get tomorrow's sunrise there, and set a reminder at that time to {message}.")

# questions no offered tool is needed for, answered from knowledge
KNOWLEDGE: list[tuple[str, str]] = [
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the boiling point of water at sea level?", "100 °C (212 °F) at sea level."),
    ("How many continents are there?", "There are seven continents."),
    ("Tell me a joke about computers.", "Why did the computer go to the doctor? It had a virus."),
    ("What's the difference between a list and a tuple in Python?",
     "A list is mutable; a tuple cannot be changed after it is created."),
    ("Thanks, that's all for today!", "You're welcome. Have a good day!"),
    ("Can you explain what photosynthesis is in one sentence?",
     "Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen."),
    ("Hello! How are you?", "Hello! I'm fine, thanks. How can I help you?"),
    ("Which planet is closest to the sun?", "Mercury is the planet closest to the sun."),
    ("Write a haiku about autumn.", "Red leaves drift and fall,\ncool wind hums through empty trees,\nthe year exhales slow."),
    ("What does HTTP stand for?", "HTTP stands for Hypertext Transfer Protocol."),
    ("Give me a synonym for happy.", "Joyful."),
    ("Is a tomato a fruit or a vegetable?", "Botanically a tomato is a fruit; in cooking it is used as a vegetable."),
    ("What is 12 times 12?", "12 times 12 is 144."),
    ("Summarize the plot of Romeo and Juliet in one line.",
     "Two young lovers from feuding families in Verona secretly marry, and a chain of misunderstandings ends in "
     "both of their deaths."),
    ("你好，你能做什么？", "你好！我可以用提供的工具帮你办事，也可以直接回答问题。"),
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("What's a good name for a golden retriever puppy?", "How about Sunny, Maple or Biscuit?"),
]


class ToolUseWriter:
    """Writes groups of conversations that share an offered tool set; `seed` makes it reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._ids = 0

    def _call(self, tool: SyntheticTool, arguments: dict[str, Any]) -> tuple[ToolCall, Message, dict[str, Any]]:
        self._ids += 1
        call = ToolCall(id=f"call{self._ids}", name=tool.name, arguments=arguments)
        result = tool.run(**arguments)
        return call, Message(role="tool", tool_call_id=call.id, name=tool.name,
                             content=json.dumps(result, ensure_ascii=False)), result

    def single(self, offered: list[SyntheticTool]) -> Conversation:
        tool = self.rng.choice(offered)
        request, arguments = tool.draw(self.rng)
        call, result_msg, result = self._call(tool, arguments)
        return _conv(offered, [Message.user(request), Message.assistant(tool_calls=[call]), result_msg,
                               Message.assistant(tool.answer(arguments, result))], "single")

    def parallel(self, offered: list[SyntheticTool]) -> Conversation:
        first = self.rng.choice(offered)
        second = first if self.rng.random() < 0.5 else self.rng.choice(offered)
        request1, args1 = first.draw(self.rng)
        for _ in range(10):  # the same tool twice: with other values
            request2, args2 = second.draw(self.rng)
            if args2 != args1:
                break
        else:
            return self.single(offered)
        if request2[:2].istitle():  # "What's" -> "what's", but "CI status" stays
            request2 = request2[0].lower() + request2[1:]
        request = f"{request1} {self.rng.choice(['Also,', 'And', 'Plus,'])} {request2}"
        c1, r1, out1 = self._call(first, args1)
        c2, r2, out2 = self._call(second, args2)
        answer = f"{first.answer(args1, out1)} {second.answer(args2, out2)}"
        return _conv(offered, [Message.user(request), Message.assistant(tool_calls=[c1, c2]), r1, r2,
                               Message.assistant(answer)], "parallel")

    def chain(self, offered: list[SyntheticTool], link: tuple) -> Conversation:
        template, first_name, second_name, feeds, extra = link
        first, second = TOOLS[first_name], TOOLS[second_name]
        names = re.findall(r"\{(\w+)\}", template)
        shown: dict[str, Any] = {}
        args1: dict[str, Any] = {}
        args2: dict[str, Any] = {}
        for name in names:
            if name in extra:
                shown[name] = args2[name] = self.rng.choice(extra[name])
            else:
                shown[name] = args1[name] = self.rng.choice(first.params[name].values)
        c1, r1, out1 = self._call(first, args1)
        for param, source in feeds.items():
            args2[param] = args1[source[1:]] if source.startswith("=") else out1[source]
        c2, r2, out2 = self._call(second, args2)
        request = template.format(**{k: _show(v) for k, v in shown.items()})
        return _conv(offered, [Message.user(request), Message.assistant(tool_calls=[c1]), r1,
                               Message.assistant(tool_calls=[c2]), r2,
                               Message.assistant(f"{first.answer(args1, out1)} {second.answer(args2, out2)}")],
                     "chain2")

    def chain3(self, offered: list[SyntheticTool]) -> Conversation:
        place = self.rng.choice(_PLACES)
        message = self.rng.choice(TOOLS["set_reminder"].params["message"].values)
        c1, r1, o1 = self._call(TOOLS["place_coordinates"], {"place": place})
        c2, r2, o2 = self._call(TOOLS["sun_times"], {"lat": o1["lat"], "lon": o1["lon"]})
        c3, r3, o3 = self._call(TOOLS["set_reminder"], {"time": o2["sunrise"], "message": message})
        answer = f"Sunrise in {place} is at {o2['sunrise']}; the reminder to {message} is set for then."
        return _conv(offered, [Message.user(CHAIN3.format(place=place, message=message)),
                               Message.assistant(tool_calls=[c1]), r1, Message.assistant(tool_calls=[c2]), r2,
                               Message.assistant(tool_calls=[c3]), r3, Message.assistant(answer)], "chain3")

    def abstain(self, offered: list[SyntheticTool]) -> Conversation:
        roll = self.rng.random()
        if roll < 0.4:
            request, answer = self.rng.choice(KNOWLEDGE)
        else:
            # a job for a tool that is not offered here: most often a near one (the partner of an
            # offered tool in a chain, same domain), as BFCL's irrelevance cases offer a tool close
            # to the question
            near = [TOOLS[n] for t in offered for _, a, b, _, _ in CHAINS for n in (a, b)
                    if t.name in (a, b) and TOOLS[n] not in offered]
            pool = near if near and roll < 0.8 else [t for t in CATALOGUE if t not in offered]
            other = self.rng.choice(pool)
            request, _ = other.draw(self.rng)
            can = " and ".join(t.description.split(";")[0].rstrip(".").lower() for t in offered[:2])
            answer = f"None of the tools I have here can do that. I can {can}."
        return _conv(offered, [Message.user(request), Message.assistant(answer)], "abstain")

    def group(self, size: int) -> list[Conversation]:
        """`size` conversations over one offered set. A third of the sets hold one tool and a third
        two (BFCL's simple and irrelevance cases offer one tool, so a small model must learn to
        decline the one tool on offer); the rest a chain's two tools plus 2-3 others."""
        link = self.rng.choice(CHAINS)
        core = [TOOLS[link[1]], TOOLS[link[2]]]
        shape = self.rng.random()
        if shape < 1 / 3:
            offered = [self.rng.choice(core)]
        elif shape < 2 / 3:
            offered = core
        else:
            others = self.rng.sample([t for t in CATALOGUE if t not in core], self.rng.choice([2, 3]))
            offered = core + others
            if self.rng.random() < 0.4:  # the three-step chain's tools
                offered = [TOOLS["place_coordinates"], TOOLS["sun_times"], TOOLS["set_reminder"]] + others[:2]
        self.rng.shuffle(offered)
        chain3_offered = TOOLS["set_reminder"] in offered and TOOLS["sun_times"] in offered
        # (single, parallel, chain, abstain): one tool on offer cannot chain, so it declines more
        weights = (0.45, 0.2, 0.0, 0.35) if len(offered) == 1 else (0.3, 0.15, 0.35, 0.2)
        out = []
        for kind in self.rng.choices(("single", "parallel", "chain", "abstain"), weights=weights, k=size):
            if kind != "chain":
                out.append(getattr(self, kind)(offered))
            elif chain3_offered:
                out.append(self.chain3(offered) if self.rng.random() < 0.5 else self.chain(offered, CHAINS[0]))
            else:
                out.append(self.chain(offered, link))
        return out


def _conv(offered: list[SyntheticTool], messages: list[Message], kind: str) -> Conversation:
    return Conversation(tools=[t.spec() for t in offered], messages=messages, kind=kind)


def write_tool_use(n: int, seed: int = 0, group_size: int = 8) -> list[Conversation]:
    """`n` conversations in groups of `group_size` sharing their offered tools (reproducible)."""
    writer = ToolUseWriter(seed)
    out: list[Conversation] = []
    while len(out) < n:
        out += writer.group(min(group_size, n - len(out)))
    return out
