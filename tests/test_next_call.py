"""What makes a call after tool results a real next step (`raygent.llm_pool.next_call`)."""

from __future__ import annotations

import json

from raygent.llm_pool.next_call import misfit_values, next_call_fault
from raygent.schema import Message, ToolCall

PROFILE = {"type": "object", "required": ["customer_id"],
           "properties": {"customer_id": {"type": "string", "description": "the customer id, e.g. C-900"}}}
MAIL = {"type": "object", "required": ["to", "subject"],
        "properties": {"to": {"type": "string", "description": "the recipient's email address"},
                       "subject": {"type": "string", "description": "the subject line"}}}
ORDER = {"customer_id": "C-311", "total": 86.5, "email_hint": None}


def _turn(request: str, *steps: tuple[str, dict, dict | str]) -> list[Message]:
    """A user message followed by (tool, arguments, result or error text) steps."""
    messages = [Message.user(request)]
    for i, (name, arguments, result) in enumerate(steps):
        messages.append(Message.assistant(tool_calls=[ToolCall(id=f"c{i}", name=name, arguments=arguments)]))
        content = result if isinstance(result, str) else json.dumps(result)
        messages.append(Message(role="tool", tool_call_id=f"c{i}", name=name, content=content))
    return messages


def _call(name: str, **arguments) -> ToolCall:
    return ToolCall(id="probe", name=name, arguments=arguments)


def test_a_call_that_carries_a_returned_value_is_a_next_step():
    messages = _turn("Who placed order A-1042? I need their email address.",
                     ("lookup_order", {"order_id": "A-1042"}, ORDER))
    assert next_call_fault(_call("customer_profile", customer_id="C-311"), messages, PROFILE) is None


def test_repeats_made_up_values_and_the_users_own_values_are_not():
    messages = _turn("Who placed order A-1042? I need their email address.",
                     ("lookup_order", {"order_id": "A-1042"}, ORDER))
    assert "repeats" in next_call_fault(_call("lookup_order", order_id="A-1042"), messages, None)
    assert "appear nowhere" in next_call_fault(_call("customer_profile", customer_id="C-900"), messages, PROFILE)
    # the request's own id again, to another tool, after a call that worked: nothing carried forward
    assert "carries no value" in next_call_fault(_call("customer_profile", customer_id="A-1042"), messages, PROFILE)


def test_a_value_an_earlier_call_already_used_is_not_carried_again():
    """After the mail went out with the address the profile gave, a meeting with that address is no
    next step of "email them"."""
    messages = _turn("Email customer C-227 that the refund is approved.",
                     ("customer_profile", {"customer_id": "C-227"}, {"email": "jonas.berg@example.com"}),
                     ("mail_message", {"to": "jonas.berg@example.com", "subject": "Refund approved"},
                      {"sent": True, "to": "jonas.berg@example.com"}))
    meeting = _call("schedule_meeting", attendee_email="jonas.berg@example.com")
    assert "carries no value" in next_call_fault(meeting, messages, None)


def test_after_a_failed_call_another_tool_with_the_users_value_is_a_next_step():
    messages = _turn("Where is the parcel for order B-6023?",
                     ("track_package", {"tracking_no": "B-6023"}, "ERROR: tool 'track_package' failed: no parcel"))
    assert next_call_fault(_call("lookup_order", order_id="B-6023"), messages, None) is None
    # the failed tool again with another made-up value is not
    assert next_call_fault(_call("track_package", tracking_no="B-6O23"), messages, None) is not None
    # nor another tool with a value pieced together from words of the conversation
    assert next_call_fault(_call("lookup_order", order_id="parcel-order"), messages, None) is not None


def test_an_email_parameter_needs_an_email_address():
    assert misfit_values(_call("mail_message", to="C-227", subject="Refund"), MAIL) == [
        "to='C-227' is not an email address"]
    assert misfit_values(_call("mail_message", to="jonas.berg@example.com", subject="Refund"), MAIL) == []
    by_name = {"type": "object", "properties": {"attendee_email": {"type": "string"}}}
    assert misfit_values(_call("schedule_meeting", attendee_email="E-087"), by_name)
    assert misfit_values(_call("schedule_meeting", attendee_email="E-087"), None) == []  # no schema: no judgement
    messages = _turn("Email customer C-227.", ("customer_profile", {"customer_id": "C-227"}, {"name": "Jonas"}))
    assert "not an email address" in next_call_fault(_call("mail_message", to="C-227", subject="Hi"), messages, MAIL)


def test_a_tool_chains_into_itself_once_per_turn():
    """The manager of an employee's manager, 17*23 then that times 3: a tool may take its own result
    once; the probe's third calculator call after "multiply that by 3" is no step of the request."""
    messages = _turn("Compute 17*23, then multiply the result by 3.",
                     ("calculator", {"expression": "17*23"}, {"result": 391}))
    assert next_call_fault(_call("calculator", expression="391*3"), messages, None) is None
    messages = _turn("Compute 17*23, then multiply the result by 3.",
                     ("calculator", {"expression": "17*23"}, {"result": 391}),
                     ("calculator", {"expression": "391*3"}, {"result": 1173}))
    assert "third call" in next_call_fault(_call("calculator", expression="1173*3"), messages, None)


def test_a_number_nothing_gave_or_a_result_handed_back_is_no_next_step():
    messages = _turn("What is 365*24?", ("calculator", {"expression": "365*24"}, {"result": 8760}))
    assert "just returned" in next_call_fault(_call("calculator", expression="8760"), messages, None)
    messages = _turn("How old is someone born in 1990 this year?",
                     ("current_datetime", {}, {"date": "2026-12-02"}),
                     ("calculator", {"expression": "2026-1990"}, {"result": 36}))
    assert "appears nowhere" in next_call_fault(_call("calculator", expression="36*1"), messages, None)
    # 10 is in the clock's result, but the user gave no number to work with
    messages[-3].content = '{"date": "2026-12-02", "time": "10:30:00"}'
    assert "none of the user's" in next_call_fault(_call("calculator", expression="36*10"), messages, None)
    # the user's 12 was already added in the first call
    messages = _turn("What is 23*47+12?", ("calculator", {"expression": "23*47+12"}, {"result": 1093}))
    assert "none of the user's" in next_call_fault(_call("calculator", expression="1093+12"), messages, None)


def test_a_returned_piece_of_the_users_own_text_is_not_carried():
    """address_parse gives back "浙江省" for the user's "浙江..." address: parsing it again is no step."""
    messages = _turn("地址：浙江杭州市江干区九堡镇三村村一区",
                     ("address_parse", {"address": "浙江杭州市江干区九堡镇三村村一区"},
                      {"province": "浙江省", "city": "杭州市", "district": "江干区"}))
    assert "carries no value" in next_call_fault(_call("address_parse", address="浙江省"), messages, None)


def test_a_value_shaped_unlike_the_schemas_example_id_or_no_ticker_is_a_misfit():
    """An order id where the example is a tracking number, a company name where a ticker belongs: the
    call is not made, and the model is asked again without that tool (it looks the value up first).
    A description with a code for its example ("e.g. 'JFK'") sets no shape: BFCL gives such
    parameters city names."""
    track = {"properties": {"tracking_no": {"type": "string", "description": "the tracking number, e.g. TRK-00001"}}}
    assert misfit_values(_call("track_package", tracking_no="B-6023"), track) == [
        "tracking_no='B-6023' is not shaped like its example 'TRK-00001'"]
    assert misfit_values(_call("track_package", tracking_no="trk 80215"), track) == []
    # one letter does not say the kind: orders numbered A-1042 where the example is Z-9001
    order = {"properties": {"order_id": {"type": "string", "description": "the order number, e.g. Z-9001"}}}
    assert misfit_values(_call("lookup_order", order_id="A-1042"), order) == []
    quote = {"properties": {"ticker": {"type": "string", "description": "the ticker symbol, e.g. ACME"}}}
    assert misfit_values(_call("stock_quote", ticker="Kestrel Motors"), quote) == ["ticker='Kestrel Motors' is not a ticker symbol"]
    assert misfit_values(_call("stock_quote", ticker="BRK.B"), quote) == []
    airport = {"properties": {"origin_airport": {"type": "string", "description": "IATA code, e.g. 'JFK'"}}}
    assert misfit_values(_call("flights", origin_airport="Atlanta"), airport) == []
    # "email" in a description that offers other things, or that is about the email, wants no address
    pay = {"properties": {"receiver": {"type": "string", "description": "a username, phone number, or email address"},
                          "subject": {"type": "string", "description": "The subject of the email."}}}
    assert misfit_values(_call("send", receiver="Mary", subject="Meeting"), pay) == []


def test_an_id_with_leading_zeros_returned_by_a_result_is_carried():
    """"E-020" is a manager id the employee record returned: a whole value carried forward, not a
    number 20 that appears nowhere."""
    messages = _turn("Who is the manager of employee E-104? Give me their name.",
                     ("get_employee", {"employee_id": "E-104"}, {"name": "Aiko Tanaka", "manager_id": "E-020"}))
    assert next_call_fault(_call("get_employee", employee_id="E-020"), messages, None) is None


def test_a_next_call_taking_a_short_value_of_the_users_own_brings_a_user_value():
    """The yen of "in Japanese yen" reaches `fx_convert` with the order's total: the user asked for
    this step, whatever the embedder's fit. A long text, a value a tool returned or one an earlier
    call used is no such value."""
    from raygent.llm_pool.next_call import brings_user_value

    messages = _turn("How much is the total of order A-2077 in Japanese yen?",
                     ("lookup_order", {"order_id": "A-2077"}, {"total": 240.0, "currency": "EUR"}))
    assert brings_user_value(_call("fx_convert", amount=240.0, from_code="EUR", to_code="JPY"), messages, None)
    assert not brings_user_value(_call("fx_convert", amount=240.0, from_code="EUR"), messages, None)
    assert not brings_user_value(_call("lookup_order", order_id="A-2077"), messages, None)  # used already
    spoken = _turn("What time is it now?", ("current_datetime", {}, {"now": "2026-12-07 15:47"}))
    assert not brings_user_value(_call("text_to_speech", text="It is now 15:47"), spoken, None)


def test_a_returned_text_is_carried_text_a_returned_number_is_not():
    """In a Chinese request, which the embedder cannot read, only a carried text (a ticker) stands in
    for the fit: an address's area code handed to the calculator does not (tests/test_serve_cli.py's
    assistant once answered with `calculator("330104")` after the address)."""
    from raygent.llm_pool.next_call import carries_text

    ticker = _turn("Bluefin Analytics 的股价现在是多少？", ("company_ticker", {"company": "Bluefin Analytics"},
                                                   {"company": "Bluefin Analytics", "ticker": "BFNA"}))
    assert carries_text(_call("stock_quote", ticker="BFNA"), ticker, None)
    address = _turn("使用地址识别模型，从下面的地址中找到省市区等元素，地址：浙江杭州市江干区九堡镇三村村一区",
                    ("address_parse", {"address": "浙江杭州市江干区九堡镇三村村一区"}, {"province": "浙江省", "adcode": "330104"}))
    assert not carries_text(_call("calculator", expression="330104"), address, None)


def test_a_parameter_named_like_a_field_of_the_turn_s_results_takes_that_field_s_value():
    from raygent.llm_pool.next_call import carry_result_fields

    messages = _turn("Email the customer who placed order B-5190 that it has shipped.",
                     ("lookup_order", {"order_id": "B-5190"}, {"order_id": "B-5190", "customer_id": "C-145",
                                                               "sku": "SKU-9014"}))
    calls, notes = carry_result_fields([_call("customer_profile", customer_id="B-5190")], messages)
    assert calls[0].arguments == {"customer_id": "C-145"}
    assert notes == ["wrote customer_id='B-5190' of 'customer_profile' as 'C-145': the value this turn's results "
                     "give it"]
    # a field that echoes the earlier call's own argument: "order B-5190, then order A-1" stays
    again = [_call("lookup_order", order_id="A-1")]
    assert carry_result_fields(again, messages) == (again, [])
    # a value a tool returned is the model's choice; before any result, nothing changes
    returned = [_call("sku_details", sku="SKU-9014", customer_id="C-145")]
    assert carry_result_fields(returned, messages) == (returned, [])
    first = [_call("customer_profile", customer_id="B-5190")]
    assert carry_result_fields(first, messages[:1]) == (first, [])


E104 = {"name": "Aiko Tanaka", "manager_id": "E-020", "email": "aiko.tanaka@corp.example"}
E020 = {"name": "Daniel Okafor", "manager_id": "E-001", "email": "daniel.okafor@corp.example"}


def test_going_on_with_the_record_in_hand_where_the_request_names_its_reference_is_a_fault():
    """"Email the manager of employee E-104": after the employee's record, mailing the employee's
    own address goes on with the wrong record; the lookup the words point to is the manager's."""
    from raygent.llm_pool.next_call import OTHER_RECORD, follow_reference

    messages = _turn("Send an email to the manager of employee E-104 about the expense report.",
                     ("get_employee", {"employee_id": "E-104"}, E104))
    own = _call("mail_message", to="aiko.tanaka@corp.example", subject="Expense report")
    assert OTHER_RECORD in next_call_fault(own, messages, MAIL)
    assert next_call_fault(_call("get_employee", employee_id="E-020"), messages, None) is None
    follow = follow_reference(messages)
    assert (follow.name, follow.arguments) == ("get_employee", {"employee_id": "E-020"})
    # once followed, the manager's record names the manager's manager: not followed again
    messages = _turn("Send an email to the manager of employee E-104 about the expense report.",
                     ("get_employee", {"employee_id": "E-104"}, E104), ("get_employee", {"employee_id": "E-020"}, E020))
    assert follow_reference(messages) is None
    assert next_call_fault(_call("mail_message", to="daniel.okafor@corp.example", subject="Expense report"),
                           messages, MAIL) is None
    # a request that does not name the reference ("email employee E-104") mails the employee
    plain = _turn("Email employee E-104 about the expense report.", ("get_employee", {"employee_id": "E-104"}, E104))
    assert next_call_fault(own, plain, MAIL) is None and follow_reference(plain) is None


def test_after_a_followed_reference_the_latest_record_s_field_replaces_the_first_one_s():
    from raygent.llm_pool.next_call import carry_result_fields

    messages = _turn("Book a meeting about hiring with the manager of employee E-104.",
                     ("get_employee", {"employee_id": "E-104"}, E104), ("get_employee", {"employee_id": "E-020"}, E020))
    meeting = [_call("schedule_meeting", attendee_email="aiko.tanaka@corp.example", topic="Hiring")]
    calls, notes = carry_result_fields(meeting, messages)
    assert calls[0].arguments["attendee_email"] == "daniel.okafor@corp.example" and len(notes) == 1
    # records of different tools: nothing replaced
    other = _turn("Meet the customer of order A-1.", ("lookup_order", {"order_id": "A-1"}, {"email": "a@x.org"}),
                  ("customer_profile", {"customer_id": "C-1"}, {"email": "b@x.org"}))
    keep = [_call("schedule_meeting", attendee_email="a@x.org", topic="x")]
    assert carry_result_fields(keep, other) == (keep, [])


def test_a_returned_value_handed_to_a_tool_of_another_kind_is_a_fault():
    from raygent.llm_pool.next_call import OTHER_KIND, other_tools_value
    from raygent.schema import ToolSpec

    tools = [ToolSpec(name=n, parameters={"type": "object"}) for n in ("lookup_order", "airport_info", "city_forecast")]
    messages = _turn("Check flight RG318, find out which city it arrives in, and the forecast there.",
                     ("flight_status", {"flight_no": "RG318"}, {"flight_no": "RG318", "arrival_airport": "KIX"}))
    why = other_tools_value(_call("lookup_order", order_id="KIX"), messages, tools)
    assert OTHER_KIND in why and "airport_info" in why
    assert other_tools_value(_call("airport_info", code="KIX"), messages, tools) is None
    # a field named like the parameter, or no offered tool of the field's kind: no fault
    assert other_tools_value(_call("lookup_order", flight_no="RG318"), messages, tools) is None
    assert other_tools_value(_call("lookup_order", order_id="KIX"), messages, tools[:1]) is None


def test_a_returned_text_under_a_parameter_of_another_kind_is_found():
    """After a Chinese request's chain ended with the customer's city, the 0.5B went on to
    `company_ticker(company="Lisbon")`: the embedder cannot judge the request's fit, so the chat
    model checks that the result field ("city") is of the parameter's kind; what the user sees is
    the answer from the profile, without a call for a company named Lisbon."""
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel
    from raygent.llm_pool.next_call import kin_words, returned_texts
    from raygent.schema import ToolSpec

    messages = _turn("查一下订单 A-1042 是哪位客户下的，告诉我这位客户住在哪个城市。",
                     ("lookup_order", {"order_id": "A-1042"}, ORDER),
                     ("customer_profile", {"customer_id": "C-311"}, {"customer_id": "C-311", "name": "Maria Keller", "city": "Lisbon"}))
    ticker = _call("company_ticker", company="Lisbon")
    assert returned_texts(ticker, messages) == [("company", "city", "Lisbon")]
    assert returned_texts(_call("city_forecast", city="Lisbon"), messages) == []  # the field's own name
    assert kin_words("email", "to", "the recipient's email address")
    assert not kin_words("city", "company", "the company name, e.g. Acme Corp")
    model = LlamaCppChatModel()  # nothing loads: only its embedder is used
    spec = ToolSpec(name="company_ticker", description="Find the stock ticker symbol of a listed company.",
                    parameters={"type": "object", "properties": {"company": {"type": "string",
                                                                             "description": "the company name"}}})
    why = model._foreign_value(ticker, messages, spec)
    assert why is not None and "city" in why and "company" in why
    forecast = ToolSpec(name="weather", description="Weather for a place.",
                        parameters={"type": "object", "properties": {"location": {
                            "type": "string", "description": "the location to get the weather for"}}})
    assert model._foreign_value(_call("weather", location="Lisbon"), messages, forecast) is None


def test_a_result_key_of_one_tool_s_example_shape_is_the_step_it_leads_to():
    """After `lookup_order("A-1042")`, the 0.5B called `supplier_contact("C-311")` (a customer id
    where "SUP-99" is the example), then the order again, then an employee lookup: the order's
    "SKU-7781" has the shape of `sku_details`' example "SKU-0001", and is the step to make."""
    from raygent.llm_pool.next_call import shaped_step
    from raygent.schema import ToolSpec

    def tool(name, param, example):
        return ToolSpec(name=name, parameters={"type": "object", "required": [param], "properties": {
            param: {"type": "string", "description": f"the {param}, e.g. {example}"}}})

    tools = [tool("lookup_order", "order_id", "Z-9001"), tool("sku_details", "sku", "SKU-0001"),
             tool("supplier_contact", "supplier_id", "SUP-99"), tool("customer_profile", "customer_id", "C-900")]
    messages = _turn("Who supplies the product in order A-1042, and what's their phone number?",
                     ("lookup_order", {"order_id": "A-1042"},
                      {"order_id": "A-1042", "customer_id": "C-311", "item_sku": "SKU-7781"}))
    step = shaped_step(messages, tools)
    assert (step.name, step.arguments) == ("sku_details", {"sku": "SKU-7781"})
    # two keys of example shapes in the result: no single step
    two = _turn("x", ("lookup_order", {"order_id": "A-1042"}, {"item_sku": "SKU-7781", "supplier": "SUP-04"}))
    assert shaped_step(two, tools) is None
    # a key already used, or one-letter examples only (C-311 for "C-900"): none
    used = _turn("x", ("sku_details", {"sku": "SKU-7781"}, {"item_sku": "SKU-7781", "customer_id": "C-311"}))
    assert shaped_step(used, tools) is None


def test_a_call_that_hands_on_the_field_the_request_asks_for_ends_the_chain():
    """"Who placed order A-1042? I need their email address.": after the profile's "email", the
    0.5B went on to `schedule_meeting(attendee_email=..., topic="Order Placed")`. The request asks
    for the email; a call passing it on is no step the user asked for (the answer gives the email),
    and "Order Placed", two of the request's words put together, is no value of the user's."""
    from raygent.llm_pool.next_call import asked_field, brings_user_value

    messages = _turn("Who placed order A-1042? I need their email address.",
                     ("lookup_order", {"order_id": "A-1042"}, ORDER),
                     ("customer_profile", {"customer_id": "C-311"},
                      {"customer_id": "C-311", "name": "Maria Keller", "email": "maria.keller@example.com"}))
    meeting = _call("schedule_meeting", attendee_email="maria.keller@example.com", topic="Order Placed")
    assert asked_field(meeting, messages) == "email"
    assert not brings_user_value(meeting, messages, None)
    # a request that does not ask for the field: the call may be the step ("Email the customer ...")
    mail = _turn("Send the customer of order A-1042 a thank-you note.", ("lookup_order", {"order_id": "A-1042"}, ORDER),
                 ("customer_profile", {"customer_id": "C-311"}, {"email": "maria.keller@example.com"}))
    assert asked_field(_call("mail_message", to="maria.keller@example.com"), mail) is None
    # two words as the user wrote them are the user's
    q3 = _turn("Set up a meeting about the Q3 roadmap with employee E-087.",
               ("get_employee", {"employee_id": "E-087"}, {"email": "marco@corp.example"}))
    assert brings_user_value(_call("schedule_meeting", attendee_email="marco@corp.example", topic="Q3 roadmap"),
                             q3, None)
