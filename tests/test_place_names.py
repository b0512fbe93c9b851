"""US cities put in the 'City, State' form a tool's schema asks for (raygent.llm_pool.place_names):
what is completed, what is corrected, and what is left as the model wrote it."""

from __future__ import annotations

from raygent.llm_pool.place_names import city_with_state, format_places, wants_city_state
from raygent.schema import Message, ToolCall, ToolSpec

SALON = ToolSpec(name="find_salon", description="Find a hair stylist", parameters={
    "type": "object", "required": ["city"],
    "properties": {"city": {"type": "string", "description": "The city, in the format of 'City, State', such as "
                                                              "'Berkeley, CA'. State names must be abbreviated."},
                   "note": {"type": "string", "description": "Anything else for the stylist"},
                   "is_unisex": {"type": "boolean"}}})


def test_a_bare_city_gets_the_state_of_its_largest_us_namesake():
    assert city_with_state("Pleasanton", "find a salon in Pleasanton") == "Pleasanton, CA"
    assert city_with_state("Portland", "salon in Portland") == "Portland, OR"  # not Maine
    assert city_with_state("new york", "events in new york") == "New York, NY"  # GeoNames' "New York City"


def test_the_state_the_user_wrote_wins_and_a_wrong_guess_is_replaced():
    assert city_with_state("Pittsburg", "a therapist in Pittsburg PA") == "Pittsburg, PA"
    assert city_with_state("Pittsburg, PA", "a therapist in Pittsburg PA") is None  # already right: left
    assert city_with_state("Austin", "Austin, Texas please") == "Austin, TX"
    assert city_with_state("San Lorenzo, NY", "a salon in San Lorenzo") == "San Lorenzo, CA"
    assert city_with_state("Los Angeles, LA", "a car in Los Angeles") == "Los Angeles, CA"
    assert city_with_state("Berkeley, California", "in Berkeley") == "Berkeley, CA"


def test_places_abroad_and_anything_unknown_are_left_alone():
    assert city_with_state("London", "weather in London") is None  # London, England outweighs London, OH
    assert city_with_state("Paris, CA", "a hotel in Paris") is None  # a bad guess, but France, not Texas
    assert city_with_state("Paris, France", "a hotel in Paris") is None
    assert city_with_state("Cancún, QR, Tulum", "weather in Cancún and Tulum") is None  # several places
    assert city_with_state("Springfield Gardens Mall", "x") is None  # not a place in the gazetteer
    # a lower-case "in" after the city names no Indiana: Portland keeps its largest namesake's state
    assert city_with_state("Portland", "Portland in March") == "Portland, OR"


def test_only_parameters_whose_schema_asks_for_city_state_are_touched():
    props = SALON.parameters["properties"]
    assert wants_city_state(props["city"]) and not wants_city_state(props["note"])
    assert not wants_city_state({"type": "integer", "description": "City, State code"})
    call = ToolCall(name="find_salon", arguments={"city": "Pleasanton", "note": "Pleasanton", "is_unisex": True})
    calls, notes = format_places([call], [SALON], [Message.user("A unisex salon in Pleasanton, please.")])
    assert calls[0].arguments == {"city": "Pleasanton, CA", "note": "Pleasanton", "is_unisex": True}
    assert notes == ["wrote city='Pleasanton' of 'find_salon' as 'Pleasanton, CA': the schema asks for 'City, State'"]
    unknown = ToolCall(name="not_offered", arguments={"city": "Pleasanton"})
    assert format_places([unknown], [SALON], [Message.user("Pleasanton")]) == ([unknown], [])
