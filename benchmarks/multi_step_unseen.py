"""Multi-step tool use on tools the model has never seen (issue 15's dev set and benchmark).

`benchmarks/multi_step.py` measures chains over the built-in tools, which the `multistep` adapter
was trained around (`raygent/training/chains.py`). This dev set uses fifteen invented business
tools instead (orders, customers, employees, flights, stocks, products, parcels, mail), none of
them a built-in, a training-data tool or a BFCL function (checked by tests/test_multi_step_unseen.py),
each a real async function answering from small in-file tables. Thirty requests, written as a
user would (20 two-step, 10 three-step; English and a few Chinese): every later call needs a field
of an earlier result (an order's customer_id, a ticker, an employee's manager_id ...), and that
value never appears in the request, so the model must read it from the result.

Each case is run through `Agent` with the tools it needs plus distractors (5 tools offered in all;
`--tools all` offers the fifteen), and scored:
  first call  - the first call is the expected tool with the expected literal arguments;
  sequence    - the called tools are exactly the expected ones, in order;
  chained     - the sequence is right AND every linked argument of a later call equals the field
                of the earlier call's real result it must come from;
  refused calls aside - chained once the calls a tool refused with an error are left out (what the
                user gets: `mail_message("C-227")` failed and changed nothing, the chain after it
                did the job).
Per case it prints the calls and a verdict (chained / args-not-from-results / stopped after N /
wrong tool at step N / extra calls / no call); then the totals per model and each model's ratio to
the baseline (the plain model, no adapter). `--hint` appends the plan to each request ("Steps: first
call lookup_order, then call customer_profile with customer_id = the customer_id from the first
result."), a diagnostic that separates planning the chain from carrying a value between calls.

Run: .venv/bin/python benchmarks/multi_step_unseen.py [--model SPEC ...] [--limit N] [--tools 5|all] [--hint]
SPEC: `default` (LlamaCppChatModel() as users get it: 0.5B + the multistep adapter), `plain`
(LlamaCppChatModel(lora=None)), or MODEL[+ADAPTER] as in benchmarks/multi_step.py.
Default: --model default --model plain (ratios are to plain when it runs, else to the first model).
On a busy shared machine pass `--set n_threads=1`: with both cores taken by other work, llama.cpp's
spinning threads made a case take 180-210 s instead of 30-45 s (same calls, same answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import platform
import random
import time
from dataclasses import dataclass
from typing import Any

# -- the tables the tools answer from -----------------------------------------------------------
ORDERS = {
    "A-1042": {"customer_id": "C-311", "total": 86.5, "currency": "USD", "item_sku": "SKU-7781",
               "tracking_no": "TRK-55120", "placed": "2026-11-28"},
    "A-2077": {"customer_id": "C-145", "total": 240.0, "currency": "EUR", "item_sku": "SKU-3302",
               "tracking_no": "TRK-60871", "placed": "2026-11-30"},
    "B-5190": {"customer_id": "C-508", "total": 1290.0, "currency": "GBP", "item_sku": "SKU-9014",
               "tracking_no": "TRK-71436", "placed": "2026-12-01"},
    "B-6023": {"customer_id": "C-227", "total": 54.25, "currency": "USD", "item_sku": "SKU-4467",
               "tracking_no": "TRK-80215", "placed": "2026-12-02"},
}
CUSTOMERS = {
    "C-311": {"name": "Maria Keller", "email": "maria.keller@example.com", "city": "Lisbon", "tier": "gold"},
    "C-145": {"name": "Tomas Ruiz", "email": "t.ruiz@example.org", "city": "Valencia", "tier": "silver"},
    "C-508": {"name": "Priya Nair", "email": "priya.nair@example.net", "city": "Manchester", "tier": "platinum"},
    "C-227": {"name": "Jonas Berg", "email": "jonas.berg@example.com", "city": "Oslo", "tier": "basic"},
}
FORECASTS = {  # city -> (high C, low C, condition)
    "Lisbon": (19, 12, "sunny"), "Valencia": (21, 13, "clear"), "Manchester": (9, 4, "drizzle"),
    "Oslo": (-2, -8, "snow"), "Osaka": (14, 7, "cloudy"), "Nairobi": (26, 15, "scattered showers"),
    "Reykjavik": (1, -3, "windy"), "Montreal": (-5, -12, "snow"), "Denver": (8, -4, "clear"),
    "Singapore": (31, 25, "thunderstorms"), "Rotterdam": (7, 2, "overcast"), "Leipzig": (5, -1, "fog"),
}
EMPLOYEES = {
    "E-001": {"name": "Grace Holloway", "department": "Executive", "manager_id": None,
              "email": "grace.holloway@corp.example", "office_city": "Denver"},
    "E-020": {"name": "Daniel Okafor", "department": "Finance", "manager_id": "E-001",
              "email": "daniel.okafor@corp.example", "office_city": "Nairobi"},
    "E-104": {"name": "Aiko Tanaka", "department": "Finance", "manager_id": "E-020",
              "email": "aiko.tanaka@corp.example", "office_city": "Osaka"},
    "E-087": {"name": "Marco Bianchi", "department": "Engineering", "manager_id": "E-001",
              "email": "marco.bianchi@corp.example", "office_city": "Montreal"},
    "E-233": {"name": "Lena Fischer", "department": "Engineering", "manager_id": "E-087",
              "email": "lena.fischer@corp.example", "office_city": "Reykjavik"},
}
COMPANIES = {"Northwind Robotics": "NWRB", "Bluefin Analytics": "BFNA", "Orchid Biotech": "ORCB",
             "Kestrel Motors": "KSTM"}
QUOTES = {"NWRB": (142.3, "USD"), "BFNA": (58.75, "USD"), "ORCB": (31.2, "EUR"), "KSTM": (1875.0, "JPY")}
USD_PER = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CHF": 1.13, "CNY": 0.14}
FLIGHT_ROUTES = {("LIS", "OSL"): ("RG204", "07:40"), ("SIN", "KIX"): ("RG318", "09:15"),
                 ("DEN", "YUL"): ("RG925", "13:05"), ("NBO", "KEF"): ("RG771", "22:30")}
FLIGHTS = {  # flight -> (status, gate, delay in minutes, arrival airport)
    "RG204": ("on time", "B12", 0, "OSL"), "RG318": ("delayed", "C3", 45, "KIX"),
    "RG925": ("boarding", "A7", 10, "YUL"), "RG771": ("on time", "D22", 0, "KEF"),
}
AIRPORTS = {"LIS": ("Humberto Delgado Airport", "Lisbon", "Portugal"), "OSL": ("Gardermoen", "Oslo", "Norway"),
            "SIN": ("Changi", "Singapore", "Singapore"), "KIX": ("Kansai International", "Osaka", "Japan"),
            "DEN": ("Denver International", "Denver", "USA"), "YUL": ("Trudeau International", "Montreal", "Canada"),
            "NBO": ("Jomo Kenyatta International", "Nairobi", "Kenya"), "KEF": ("Keflavik", "Reykjavik", "Iceland")}
PRODUCTS = {  # sku -> (name, supplier, unit price, currency)
    "SKU-7781": ("espresso grinder", "SUP-19", 86.5, "USD"), "SKU-3302": ("standing desk", "SUP-04", 240.0, "EUR"),
    "SKU-9014": ("road bike", "SUP-33", 1290.0, "GBP"), "SKU-4467": ("desk lamp", "SUP-19", 54.25, "USD"),
}
SUPPLIERS = {
    "SUP-04": {"company": "Hollandia Office BV", "email": "orders@hollandia-office.example",
               "phone": "+31 10 555 0142", "city": "Rotterdam"},
    "SUP-19": {"company": "Brightline Home GmbH", "email": "sales@brightline-home.example",
               "phone": "+49 341 555 0199", "city": "Leipzig"},
    "SUP-33": {"company": "Peak Cycles Ltd", "email": "trade@peakcycles.example",
               "phone": "+44 161 555 0133", "city": "Manchester"},
}
PARCELS = {  # tracking number -> (status, current city, days to delivery)
    "TRK-55120": ("in transit", "Rotterdam", 2), "TRK-60871": ("at sorting hub", "Leipzig", 3),
    "TRK-71436": ("out for delivery", "Manchester", 0), "TRK-80215": ("in transit", "Oslo", 1),
}


def _find(table: dict[str, Any], key: str, what: str) -> Any:
    for k, v in table.items():
        if k.lower() == str(key).strip().lower():
            return k, v
    raise KeyError(f"no {what} {key!r}")


def _digest(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8].upper()


# -- the tools (async functions; docstrings give the descriptions) ------------------------------
async def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up a shop order: the customer who placed it, its total and currency, the item SKU and the
    parcel tracking number.

    Args:
        order_id: the order number, e.g. Z-9001
    """
    key, row = _find(ORDERS, order_id, "order")
    return {"order_id": key, **row}


async def customer_profile(customer_id: str) -> dict[str, Any]:
    """A customer's profile: name, email address, home city and loyalty tier.

    Args:
        customer_id: the customer id, e.g. C-900
    """
    key, row = _find(CUSTOMERS, customer_id, "customer")
    return {"customer_id": key, **row}


async def city_forecast(city: str) -> dict[str, Any]:
    """Tomorrow's weather forecast for a city: high and low temperature in Celsius and the conditions.

    Args:
        city: the city name, e.g. Paris
    """
    key, (high, low, sky) = _find(FORECASTS, city, "forecast for city")
    return {"city": key, "high_c": high, "low_c": low, "conditions": sky}


async def fx_convert(amount: float, from_code: str, to_code: str) -> dict[str, Any]:
    """Convert an amount of money from one currency to another at today's rate.

    Args:
        amount: the amount to convert
        from_code: ISO code of the currency the amount is in, e.g. CHF
        to_code: ISO code of the currency wanted, e.g. CNY
    """
    src, rate_from = _find(USD_PER, from_code, "currency")
    dst, rate_to = _find(USD_PER, to_code, "currency")
    return {"amount": round(amount * rate_from / rate_to, 2), "currency": dst, "rate": round(rate_from / rate_to, 6)}


async def next_flight(origin: str, destination: str) -> dict[str, Any]:
    """The next scheduled flight between two airports (IATA codes): its flight number and departure time.

    Args:
        origin: departure airport code, e.g. AMS
        destination: arrival airport code, e.g. MAD
    """
    key, (number, departs) = _find({f"{a}-{b}": v for (a, b), v in FLIGHT_ROUTES.items()},
                                   f"{origin}-{destination}", "flight on route")
    return {"flight_no": number, "departs": departs, "route": key}


async def flight_status(flight_no: str) -> dict[str, Any]:
    """Live status of a flight by flight number: on time or delayed, gate, delay in minutes and arrival airport code.

    Args:
        flight_no: the flight number, e.g. RG100
    """
    key, (status, gate, delay, arrival) = _find(FLIGHTS, str(flight_no).replace(" ", ""), "flight")
    return {"flight_no": key, "status": status, "gate": gate, "delay_min": delay, "arrival_airport": arrival}


async def airport_info(code: str) -> dict[str, Any]:
    """Details of an airport from its IATA code: the airport name, the city it serves and the country.

    Args:
        code: three-letter IATA airport code, e.g. AMS
    """
    key, (name, city, country) = _find(AIRPORTS, code, "airport")
    return {"code": key, "name": name, "city": city, "country": country}


async def get_employee(employee_id: str) -> dict[str, Any]:
    """An employee's record from the HR directory: name, department, manager's employee id, email and office city.

    Args:
        employee_id: the employee id, e.g. E-900
    """
    key, row = _find(EMPLOYEES, employee_id, "employee")
    return {"employee_id": key, **row}


async def company_ticker(company: str) -> dict[str, Any]:
    """Find the stock ticker symbol of a listed company by its name.

    Args:
        company: the company name, e.g. Acme Corp
    """
    key, ticker = _find(COMPANIES, company, "listed company")
    return {"company": key, "ticker": ticker}


async def stock_quote(ticker: str) -> dict[str, Any]:
    """The latest share price of a stock ticker, in the currency it trades in.

    Args:
        ticker: the ticker symbol, e.g. ACME
    """
    key, (price, currency) = _find(QUOTES, ticker, "ticker")
    return {"ticker": key, "price": price, "currency": currency}


async def sku_details(sku: str) -> dict[str, Any]:
    """Catalogue details of a product by SKU: its name, supplier id, unit price and currency.

    Args:
        sku: the product SKU, e.g. SKU-0001
    """
    key, (name, supplier, price, currency) = _find(PRODUCTS, sku, "product")
    return {"sku": key, "name": name, "supplier_id": supplier, "unit_price": price, "currency": currency}


async def supplier_contact(supplier_id: str) -> dict[str, Any]:
    """Contact details of a supplier: company name, email, phone number and city.

    Args:
        supplier_id: the supplier id, e.g. SUP-99
    """
    key, row = _find(SUPPLIERS, supplier_id, "supplier")
    return {"supplier_id": key, **row}


async def track_package(tracking_no: str) -> dict[str, Any]:
    """Track a parcel by tracking number: delivery status, the city it is in now and days until delivery.

    Args:
        tracking_no: the tracking number, e.g. TRK-00001
    """
    key, (status, city, days) = _find(PARCELS, tracking_no, "parcel")
    return {"tracking_no": key, "status": status, "current_city": city, "days_to_delivery": days}


async def mail_message(to: str, subject: str, body: str = "") -> dict[str, Any]:
    """Send an email message to an address.

    Args:
        to: the recipient's email address
        subject: the subject line
        body: the message text
    """
    if "@" not in str(to):
        raise ValueError(f"{to!r} is not an email address")
    return {"sent": True, "to": to, "message_id": "MSG-" + _digest(to, subject, body)}


async def schedule_meeting(attendee_email: str, topic: str, day: str = "next Monday") -> dict[str, Any]:
    """Put a meeting in the calendar with one attendee, by their email address.

    Args:
        attendee_email: the attendee's email address
        topic: what the meeting is about
        day: when, e.g. next Monday
    """
    if "@" not in str(attendee_email):
        raise ValueError(f"{attendee_email!r} is not an email address")
    return {"meeting_id": "MTG-" + _digest(attendee_email, topic, day), "attendee": attendee_email, "day": day,
            "room": "Room " + str(int(_digest(topic), 16) % 9 + 1)}


FUNCTIONS = [lookup_order, customer_profile, city_forecast, fx_convert, next_flight, flight_status, airport_info,
             get_employee, company_ticker, stock_quote, sku_details, supplier_contact, track_package, mail_message,
             schedule_meeting]
TOOL_NAMES = [f.__name__ for f in FUNCTIONS]


def make_tools(names: list[str] | None = None) -> list[Any]:
    """raygent tools (FunctionTool) for `names` (default: all fifteen), in that order."""
    from raygent.toolhub.base import FunctionTool

    by_name = {f.__name__: f for f in FUNCTIONS}
    return [FunctionTool(by_name[n], idempotent=True) for n in (names or TOOL_NAMES)]


# -- the cases ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ref:
    """An argument that must equal field `field` of the result of step `step` (0-based)."""

    step: int
    field: str


@dataclass
class Case:
    request: str
    steps: list[tuple[str, dict[str, Any]]]  # (tool, {argument: literal or Ref}); unlisted arguments are free

    @property
    def tools(self) -> list[str]:
        return [name for name, _ in self.steps]


def C(request: str, *steps: tuple[str, dict[str, Any]]) -> Case:
    return Case(request, list(steps))


TWO_STEP = [
    C("Who placed order A-1042? I need their email address.",
      ("lookup_order", {"order_id": "A-1042"}), ("customer_profile", {"customer_id": Ref(0, "customer_id")})),
    C("What's tomorrow's forecast in the city where customer C-508 lives?",
      ("customer_profile", {"customer_id": "C-508"}), ("city_forecast", {"city": Ref(0, "city")})),
    C("How much is one share of Kestrel Motors trading at right now?",
      ("company_ticker", {"company": "Kestrel Motors"}), ("stock_quote", {"ticker": Ref(0, "ticker")})),
    C("Is the next flight from LIS to OSL on time?",
      ("next_flight", {"origin": "LIS", "destination": "OSL"}), ("flight_status", {"flight_no": Ref(0, "flight_no")})),
    C("Who is the manager of employee E-104? Give me their name.",
      ("get_employee", {"employee_id": "E-104"}), ("get_employee", {"employee_id": Ref(0, "manager_id")})),
    C("What will the weather be like tomorrow in the office city of employee E-233?",
      ("get_employee", {"employee_id": "E-233"}), ("city_forecast", {"city": Ref(0, "office_city")})),
    C("Which supplier makes product SKU-3302, and how do I contact them?",
      ("sku_details", {"sku": "SKU-3302"}), ("supplier_contact", {"supplier_id": Ref(0, "supplier_id")})),
    C("What product was bought in order B-5190? Show me its catalogue details.",
      ("lookup_order", {"order_id": "B-5190"}), ("sku_details", {"sku": Ref(0, "item_sku")})),
    C("Get the share price of ticker ORCB and convert it into US dollars.",
      ("stock_quote", {"ticker": "ORCB"}),
      ("fx_convert", {"amount": Ref(0, "price"), "from_code": Ref(0, "currency"), "to_code": "USD"})),
    C("How much is the total of order A-2077 in Japanese yen?",
      ("lookup_order", {"order_id": "A-2077"}),
      ("fx_convert", {"amount": Ref(0, "total"), "from_code": Ref(0, "currency"), "to_code": "JPY"})),
    C("Send customer C-227 an email saying their refund has been approved.",
      ("customer_profile", {"customer_id": "C-227"}), ("mail_message", {"to": Ref(0, "email")})),
    C("Which city is airport KEF in, and what's the forecast there for tomorrow?",
      ("airport_info", {"code": "KEF"}), ("city_forecast", {"city": Ref(0, "city")})),
    C("Email employee E-020 a reminder that the budget review is on Friday.",
      ("get_employee", {"employee_id": "E-020"}), ("mail_message", {"to": Ref(0, "email")})),
    C("Where is the parcel for order B-6023 right now?",
      ("lookup_order", {"order_id": "B-6023"}), ("track_package", {"tracking_no": Ref(0, "tracking_no")})),
    C("Track parcel TRK-60871 and tell me the weather forecast for the city it is in now.",
      ("track_package", {"tracking_no": "TRK-60871"}), ("city_forecast", {"city": Ref(0, "current_city")})),
    C("Flight RG925: which city does it land in?",
      ("flight_status", {"flight_no": "RG925"}), ("airport_info", {"code": Ref(0, "arrival_airport")})),
    C("Set up a meeting about the Q3 roadmap with employee E-087.",
      ("get_employee", {"employee_id": "E-087"}), ("schedule_meeting", {"attendee_email": Ref(0, "email")})),
    C("查一下订单 A-1042 是哪位客户下的，告诉我这位客户住在哪个城市。",
      ("lookup_order", {"order_id": "A-1042"}), ("customer_profile", {"customer_id": Ref(0, "customer_id")})),
    C("Bluefin Analytics 的股价现在是多少？",
      ("company_ticker", {"company": "Bluefin Analytics"}), ("stock_quote", {"ticker": Ref(0, "ticker")})),
    C("查询员工 E-233 的经理是谁，给我经理的邮箱。",
      ("get_employee", {"employee_id": "E-233"}), ("get_employee", {"employee_id": Ref(0, "manager_id")})),
]
THREE_STEP = [
    C("What's the weather forecast where the customer of order A-2077 lives?",
      ("lookup_order", {"order_id": "A-2077"}), ("customer_profile", {"customer_id": Ref(0, "customer_id")}),
      ("city_forecast", {"city": Ref(1, "city")})),
    C("Email the customer who placed order B-5190 to let them know it has shipped.",
      ("lookup_order", {"order_id": "B-5190"}), ("customer_profile", {"customer_id": Ref(0, "customer_id")}),
      ("mail_message", {"to": Ref(1, "email")})),
    C("How much is one Northwind Robotics share worth in euros?",
      ("company_ticker", {"company": "Northwind Robotics"}), ("stock_quote", {"ticker": Ref(0, "ticker")}),
      ("fx_convert", {"amount": Ref(1, "price"), "from_code": Ref(1, "currency"), "to_code": "EUR"})),
    C("Send an email to the manager of employee E-104 about the expense report.",
      ("get_employee", {"employee_id": "E-104"}), ("get_employee", {"employee_id": Ref(0, "manager_id")}),
      ("mail_message", {"to": Ref(1, "email")})),
    C("Who supplies the product in order A-1042, and what's their phone number?",
      ("lookup_order", {"order_id": "A-1042"}), ("sku_details", {"sku": Ref(0, "item_sku")}),
      ("supplier_contact", {"supplier_id": Ref(1, "supplier_id")})),
    C("Check the status of flight RG318, find out which city it arrives in, and get tomorrow's forecast there.",
      ("flight_status", {"flight_no": "RG318"}), ("airport_info", {"code": Ref(0, "arrival_airport")}),
      ("city_forecast", {"city": Ref(1, "city")})),
    C("Where is the parcel of order A-2077 now, and what's the weather going to be there?",
      ("lookup_order", {"order_id": "A-2077"}), ("track_package", {"tracking_no": Ref(0, "tracking_no")}),
      ("city_forecast", {"city": Ref(1, "current_city")})),
    C("Email the supplier of product SKU-9014 and ask them to restock.",
      ("sku_details", {"sku": "SKU-9014"}), ("supplier_contact", {"supplier_id": Ref(0, "supplier_id")}),
      ("mail_message", {"to": Ref(1, "email")})),
    C("Book a meeting about hiring with the manager of employee E-233.",
      ("get_employee", {"employee_id": "E-233"}), ("get_employee", {"employee_id": Ref(0, "manager_id")}),
      ("schedule_meeting", {"attendee_email": Ref(1, "email")})),
    C("订单 B-6023 的客户住在哪个城市？那里明天天气怎么样？",
      ("lookup_order", {"order_id": "B-6023"}), ("customer_profile", {"customer_id": Ref(0, "customer_id")}),
      ("city_forecast", {"city": Ref(1, "city")})),
]
CASES = TWO_STEP + THREE_STEP
OFFERED = 5  # tools offered per case: the expected ones plus distractors


def hinted(case: Case) -> str:
    """The request with the plan spelled out (diagnostic: planning vs. carrying values between calls)."""
    parts = [f"first call {case.steps[0][0]}"]
    for name, arguments in case.steps[1:]:
        links = [f"{arg} = the {ref.field} from the {('first', 'second')[ref.step]} result"
                 for arg, ref in arguments.items() if isinstance(ref, Ref)]
        parts.append(f"then call {name} with {' and '.join(links)}")
    return f"{case.request} (Steps: {', '.join(parts)}.)"


def offered_tools(case: Case, index: int, n: int | None = OFFERED) -> list[str]:
    """The tool names offered for a case: its tools plus seeded distractors, shuffled (n=None: all)."""
    if n is None:
        return list(TOOL_NAMES)
    rng = random.Random(index)
    needed = list(dict.fromkeys(case.tools))
    others = [t for t in TOOL_NAMES if t not in needed]
    names = needed + rng.sample(others, max(0, n - len(needed)))
    rng.shuffle(names)
    return names


# -- scoring --------------------------------------------------------------------------------------
def same_value(got: Any, want: Any) -> bool:
    """Loose equality: numbers within 1% (strings that parse as numbers too), strings case-insensitively."""
    def num(v: Any) -> float | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return float(str(v).replace(",", "").strip())
        except ValueError:
            return None

    a, b = num(got), num(want)
    if a is not None and b is not None:
        return abs(a - b) <= 0.01 * max(1.0, abs(b))
    return str(got).strip().lower() == str(want).strip().lower()


def expected_results(case: Case) -> list[dict[str, Any]]:
    """Run the expected calls (links resolved from the real results); the results in order."""
    by_name = {f.__name__: f for f in FUNCTIONS}
    results: list[dict[str, Any]] = []
    for name, arguments in case.steps:
        args = {k: results[v.step][v.field] if isinstance(v, Ref) else v for k, v in arguments.items()}
        if name == "mail_message":
            args.setdefault("subject", "dev set")
        if name == "schedule_meeting":
            args.setdefault("topic", "dev set")
        results.append(asyncio.run(by_name[name](**args)))
    return results


@dataclass
class Score:
    first_call: bool
    sequence: bool
    chained: bool
    verdict: str
    links: list[str]  # per linked argument of a later call: ok / from request / other field / invented / missing


def score(case: Case, calls: list[Any]) -> Score:
    """Score the calls an agent made (objects with .name, .arguments, .result) against the case."""
    names = [c.name for c in calls]
    first_name, first_args = case.steps[0]
    first_call = bool(calls) and calls[0].name == first_name and all(
        k in calls[0].arguments and same_value(calls[0].arguments[k], v) for k, v in first_args.items())
    sequence = names == case.tools
    links: list[str] = []
    for i, (_, arguments) in enumerate(case.steps[1:], start=1):
        for arg, ref in arguments.items():
            if not isinstance(ref, Ref):
                continue
            if i >= len(calls) or not sequence:
                continue
            got = calls[i].arguments.get(arg)
            source = calls[ref.step].result if isinstance(calls[ref.step].result, dict) else {}
            if got is None:
                links.append("missing")
            elif ref.field in source and same_value(got, source[ref.field]):
                links.append("ok")
            elif str(got).strip() and str(got).strip().lower() in case.request.lower():
                links.append("from request")  # the request's own value (an order id where a customer id goes)
            elif any(same_value(got, v) for c in calls[:i] if isinstance(c.result, dict) for v in c.result.values()):
                links.append("other field")
            else:
                links.append("invented")
    chained = sequence and bool(links) and all(x == "ok" for x in links)
    if not calls:
        verdict = "no call"
    elif chained:
        verdict = "chained"
    elif sequence:
        verdict = "args not from results (" + ", ".join(links) + ")"
    elif names == case.tools[:len(names)]:
        verdict = f"stopped after {len(names)}"
    elif names[:len(case.tools)] == case.tools:
        verdict = f"extra calls ({len(names)} for {len(case.tools)})"
    else:
        k = next(i for i, (a, b) in enumerate(zip(names + [None] * len(case.tools), case.tools)) if a != b)
        verdict = f"wrong tool at step {k + 1} ({names[k] if k < len(names) else 'none'})"
    return Score(first_call, sequence, chained, verdict, links)


# -- the benchmark --------------------------------------------------------------------------------
def _load_model(spec: str, options: dict[str, Any]) -> Any:
    from raygent.llm_pool.llama_cpp import LlamaCppChatModel

    if spec == "default":
        llm = LlamaCppChatModel(**options)
    elif spec == "plain":
        llm = LlamaCppChatModel(lora=None, **options)
    else:
        name, _, lora = spec.partition("+")
        llm = LlamaCppChatModel(name, lora=lora or None, **options)
    llm.load()
    return llm


async def _evaluate(spec: str, cases: list[tuple[int, Case]], n_tools: int | None,
                    options: dict[str, Any], hint: bool = False) -> dict[str, Any]:
    from raygent import Agent

    llm = _load_model(spec, options)
    print(f"== {spec} ({llm.model_name})", flush=True)
    totals = {"first": 0, "sequence": 0, "chained": 0, "n": 0, "two": [0, 0], "three": [0, 0], "seconds": 0.0,
              "recovered": 0}
    verdicts: dict[str, int] = {}
    for index, case in cases:
        tools = make_tools(offered_tools(case, index, n_tools))
        start = time.perf_counter()
        result = await Agent(llm=llm, tools=tools).run(hinted(case) if hint else case.request)
        seconds = time.perf_counter() - start
        s = score(case, result.tool_calls)
        totals["n"] += 1
        totals["first"] += s.first_call
        totals["sequence"] += s.sequence
        totals["chained"] += s.chained
        # the user's view: calls the tools refused did nothing; the rest chained right after them
        totals["recovered"] += score(case, [c for c in result.tool_calls if not c.error]).chained
        totals["two" if len(case.steps) == 2 else "three"][0] += s.chained
        totals["two" if len(case.steps) == 2 else "three"][1] += 1
        totals["seconds"] += seconds
        kind = s.verdict.split(" (")[0]
        verdicts[kind] = verdicts.get(kind, 0) + 1
        calls = "; ".join(f"{c.name}({json.dumps(c.arguments, ensure_ascii=False)})" + (" ERR" if c.error else "")
                          for c in result.tool_calls)
        print(f"  {index:2d} [{s.verdict}] first={'Y' if s.first_call else 'n'} {case.request[:60]!r}\n"
              f"       calls: {calls or 'none'}\n       answer: {result.answer[:110]!r} ({seconds:.1f} s)",
              flush=True)
    n = totals["n"]
    print(f"{spec}: first call {totals['first']}/{n}, sequence {totals['sequence']}/{n}, "
          f"sequence+linked args {totals['chained']}/{n}, the same with refused calls set aside "
          f"{totals['recovered']}/{n} (two-step {totals['two'][0]}/{totals['two'][1]}, "
          f"three-step {totals['three'][0]}/{totals['three'][1]}); verdicts {verdicts}; "
          f"{totals['seconds']:.0f} s", flush=True)
    return totals


def main() -> None:
    import argparse

    from raygent.evaluation.cli import parse_options

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", metavar="SPEC",
                        help="default | plain | MODEL[+ADAPTER]; repeat for several (the baseline of the ratios is "
                             "plain when run, else the first); default: default, plain")
    parser.add_argument("--limit", type=int, default=None, help="run only the first N cases")
    parser.add_argument("--cases", default=None, help="run only these cases, by index: '21,23,28'")
    parser.add_argument("--tools", default=str(OFFERED), help=f"tools offered per case: a number (default "
                                                              f"{OFFERED}) or 'all' ({len(TOOL_NAMES)})")
    parser.add_argument("--hint", action="store_true",
                        help="diagnostic: append the plan to each request (which tools, which field goes where)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a LlamaCppChatModel option for every model, e.g. --set max_calls=4")
    args = parser.parse_args()
    models = args.model or ["default", "plain"]
    n_tools = None if args.tools == "all" else int(args.tools)
    options = parse_options(args.set)
    cases = list(enumerate(CASES))[:args.limit]
    if args.cases:
        chosen = {int(i) for i in args.cases.split(",")}
        cases = [(i, c) for i, c in cases if i in chosen]
    print(f"machine: {platform.machine()}; models: {', '.join(models)}; cases: {len(cases)} "
          f"({sum(len(c.steps) == 2 for _, c in cases)} two-step); tools offered: {args.tools}; "
          f"options: {options or 'defaults'}{'; plan hinted in each request' if args.hint else ''}", flush=True)
    results = {m: asyncio.run(_evaluate(m, cases, n_tools, options, args.hint)) for m in models}
    baseline = "plain" if "plain" in results else models[0]
    base = results[baseline]
    print(f"\nmodel | first call | sequence | sequence+args | refused calls aside | s/case | "
          f"ratios to {baseline} (first / seq / seq+args)")
    for m, t in results.items():
        n = t["n"]
        ratios = " / ".join(f"{t[k] / base[k]:.2f}" if base[k] else "n/a" for k in ("first", "sequence", "chained"))
        print(f"{m} | {t['first']}/{n} ({t['first'] / n:.2f}) | {t['sequence']}/{n} ({t['sequence'] / n:.2f}) | "
              f"{t['chained']}/{n} ({t['chained'] / n:.2f}) | {t['recovered']}/{n} | {t['seconds'] / n:.1f} | {ratios}")


if __name__ == "__main__":
    main()
