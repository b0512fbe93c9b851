"""Synthetic tool-use conversations for teaching a small model to chain calls.

Why: the embedded 0.5B model calls one tool and then answers, even when the request asks for a
second step that uses the first result (measured: 0 of 8 two-step requests chained). ModelScope-
Agent's answer is fine-tuning on tool-use conversations; this module writes such conversations
for the built-in tools (calculator, date/time, address parsing, speech) and for a few extra tools
whose results it computes itself (weather, unit and currency conversion, word counts), so the
adapter learns the pattern rather than one tool set.

Every built-in tool result in a conversation comes from really running the tool; the extra tools
are defined here with a deterministic implementation (they exist only as training material).
Requests are generated from templates with random values; `benchmarks/multi_step.py`'s requests are
held out (none of its wordings or values is produced here).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from raygent.schema import Message, ToolCall, ToolExample, ToolSpec

BUILTIN_GROUP = ("address_parse", "calculator", "current_datetime", "text_to_speech")


class Conversation(BaseModel):
    """One training conversation: the tools offered and the messages (assistant turns are the targets)."""

    tools: list[ToolSpec]
    messages: list[Message]
    kind: str = Field(description="chain2 / chain3 / single / chat: what the conversation teaches")


# -- extra tools (training material only) -------------------------------------------------------
_CITIES = {"London": ("London", 11, "rainy"), "Tokyo": ("Tokyo", 22, "sunny"), "Berlin": ("Berlin", 7, "cloudy"),
           "Sydney": ("Sydney", 25, "windy"), "上海": ("上海", 16, "小雨"), "广州": ("广州", 27, "晴"),
           "成都": ("成都", 13, "阴"), "Madrid": ("Madrid", 19, "clear")}
_RATES = {("USD", "CNY"): 7.1, ("EUR", "USD"): 1.08, ("GBP", "EUR"): 1.17, ("JPY", "CNY"): 0.048}


def _spec(name: str, description: str, properties: dict[str, Any], required: list[str],
          example: tuple[str, dict[str, Any]]) -> ToolSpec:
    return ToolSpec(name=name, description=description,
                    parameters={"type": "object", "properties": properties, "required": required},
                    examples=[ToolExample(query=example[0], arguments=example[1])])


EXTRA_TOOLS: dict[str, tuple[ToolSpec, Callable[..., Any]]] = {
    "get_weather": (
        _spec("get_weather", "Current weather of a city: temperature in Celsius and sky. 查询城市天气。",
              {"city": {"type": "string", "description": "city name"}}, ["city"],
              ("How is the weather in Rome?", {"city": "Rome"})),
        lambda city: dict(zip(("city", "temperature_c", "sky"), _CITIES.get(city, (city, 15, "cloudy"))))),
    "c_to_f": (
        _spec("c_to_f", "Convert a temperature from Celsius to Fahrenheit.",
              {"celsius": {"type": "number"}}, ["celsius"], ("30 C in Fahrenheit?", {"celsius": 30})),
        lambda celsius: {"fahrenheit": round(celsius * 9 / 5 + 32, 1)}),
    "convert_currency": (
        _spec("convert_currency", "Convert an amount of money between currencies (ISO codes). 货币换算。",
              {"amount": {"type": "number"}, "from_currency": {"type": "string"}, "to_currency": {"type": "string"}},
              ["amount", "from_currency", "to_currency"],
              ("100 USD in CNY?", {"amount": 100, "from_currency": "USD", "to_currency": "CNY"})),
        lambda amount, from_currency, to_currency: {
            "amount": round(amount * _RATES.get((from_currency, to_currency), 1.0), 2), "currency": to_currency}),
    "word_count": (
        _spec("word_count", "Count the words and characters of a text. 统计字数。",
              {"text": {"type": "string"}}, ["text"], ("How many words in 'hello big world'?", {"text": "hello big world"})),
        lambda text: {"words": len(text.split()), "characters": len(text)}),
}


# -- the built-in tools, really run ---------------------------------------------------------------
class _Tools:
    def __init__(self) -> None:
        from raygent.toolhub.builtin import BUILTIN_TOOLS
        from raygent.toolhub.registry import ToolRegistry

        self.registry = ToolRegistry([BUILTIN_TOOLS[name]() for name in BUILTIN_GROUP])
        self._ids = 0

    def builtin_specs(self) -> list[ToolSpec]:
        return asyncio.run(self.registry.list_specs())

    def call(self, name: str, **arguments: Any) -> tuple[Message, Message, Any]:
        """The assistant's call, the tool message and the raw result."""
        self._ids += 1
        call = ToolCall(id=f"call{self._ids}", name=name, arguments=arguments)
        if name in EXTRA_TOOLS:
            output: Any = EXTRA_TOOLS[name][1](**arguments)
            content = json.dumps(output, ensure_ascii=False)
        else:
            result = asyncio.run(self.registry.call(name, arguments))
            if result.error is not None:
                raise RuntimeError(f"{name}{arguments} failed while writing training data: {result.error}")
            output, content = result.output, result.content_for_model()
        return (Message.assistant(tool_calls=[call]),
                Message(role="tool", tool_call_id=call.id, name=name, content=content), output)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_ADDRESSES = ["广东省广州市天河区石牌街道", "江苏南京市鼓楼区湖南路街道", "四川省成都市武侯区玉林街道",
              "湖北武汉市洪山区珞南街道", "北京市海淀区中关村街道", "山东省青岛市市南区八大关街道",
              "福建厦门市思明区鼓浪屿街道", "陕西省西安市雁塔区小寨路街道", "浙江宁波市鄞州区东柳街道"]
_OPS = [("+", "add {c} to it", "加上 {c}"), ("-", "subtract {c} from it", "减去 {c}"),
        ("*", "multiply it by {c}", "乘以 {c}"), ("/", "divide it by {c}", "除以 {c}")]


class ChainWriter:
    """Writes conversations; `seed` makes a data set reproducible."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.tools = _Tools()
        self._builtin = self.tools.builtin_specs()

    # each writer draws one conversation of its kind
    def calc_then_calc(self) -> Conversation:
        r, t = self.rng, self.tools
        a, b = r.randint(3, 99), r.randint(2, 60)
        op, en, zh = r.choice(_OPS)
        c = r.choice([2, 4, 5, 10]) if op == "/" else r.randint(2, 120)
        first = f"{a}{r.choice(['*', '+', '-'])}{b}"
        zh_req = r.random() < 0.35
        templates_en = ["Use the calculator on {x}, and afterwards {step}.", "Work out {x} first; then {step}.",
                        "Calculate {x}. When you have the result, {step}.", "I need {x} computed, then {step}.",
                        "Start with {x} on the calculator and {step}."]
        templates_zh = ["先计算 {x}，再把得到的结果{step}。", "请用计算器算一下 {x}，然后将结果{step}。",
                        "帮我算 {x}，算出来以后{step}。"]
        step = (zh if zh_req else en).format(c=c)
        request = r.choice(templates_zh if zh_req else templates_en).format(x=first, step=step)
        call1, res1, out1 = t.call("calculator", expression=first)
        v1 = out1["result"]
        call2, res2, out2 = t.call("calculator", expression=f"{_num(v1)}{op}{c}")
        v2 = _num(out2["result"])
        answer = (f"{first} = {_num(v1)}，{_num(v1)} {op} {c} = {v2}。最终结果是 {v2}。" if zh_req else
                  f"{first} = {_num(v1)}, and {_num(v1)} {op} {c} = {v2}. The result is {v2}.")
        return self._conv(self._builtin, [Message.user(request), call1, res1, call2, res2, Message.assistant(answer)],
                          "chain2")

    def calc_three_steps(self) -> Conversation:
        r, t = self.rng, self.tools
        a, b, c, d = r.randint(2, 30), r.randint(2, 30), r.randint(2, 50), r.randint(2, 9)
        request = r.choice([f"Compute {a}+{b}, then multiply that by {c}, and finally subtract {d}. Use the calculator "
                            f"for each step.", f"分三步用计算器：先算 {a}+{b}，结果乘以 {c}，最后再减去 {d}。"])
        call1, res1, o1 = t.call("calculator", expression=f"{a}+{b}")
        call2, res2, o2 = t.call("calculator", expression=f"{_num(o1['result'])}*{c}")
        call3, res3, o3 = t.call("calculator", expression=f"{_num(o2['result'])}-{d}")
        v = _num(o3["result"])
        answer = f"The final result is {v}." if request.startswith("Compute") else f"最终结果是 {v}。"
        return self._conv(self._builtin, [Message.user(request), call1, res1, call2, res2, call3, res3,
                                          Message.assistant(answer)], "chain3")

    def date_then_calc(self) -> Conversation:
        r, t = self.rng, self.tools
        year = r.randint(1950, 2015)
        kind = r.choice(["since", "age", "zh_age", "until"])
        call1, res1, out1 = t.call("current_datetime")
        now = int(out1["date"][:4])
        if kind == "since":
            request = r.choice([f"Check today's date, then tell me how many years have passed since {year}.",
                                f"Look up the current date and compute the number of years since {year}."])
            expression, answer = f"{now}-{year}", "{v} years have passed since " + str(year) + "."
        elif kind == "age":
            request = r.choice([f"What's the date today? Then work out the age of a person born in {year}.",
                                f"Get the current date first, then calculate how old a person born in {year} is."])
            expression, answer = f"{now}-{year}", "Someone born in " + str(year) + " turns {v} this year."
        elif kind == "zh_age":
            request = r.choice([f"先查一下今天的日期，再算出 {year} 年出生的人今年多少岁。",
                                f"获取当前日期，然后计算从 {year} 年到今年过了多少年。"])
            expression, answer = f"{now}-{year}", "今年是 " + str(now) + " 年，结果是 {v}。"
        else:
            target = now + r.randint(2, 40)
            request = f"Find the current year, then compute how many years remain until {target}."
            expression, answer = f"{target}-{now}", "{v} years remain until " + str(target) + "."
        call2, res2, out2 = t.call("calculator", expression=expression)
        text = answer.format(v=_num(out2["result"]))
        return self._conv(self._builtin, [Message.user(request), call1, res1, call2, res2, Message.assistant(text)],
                          "chain2")

    def address_then_speech(self) -> Conversation:
        r, t = self.rng, self.tools
        address = r.choice(_ADDRESSES)
        field, en_name, zh_name = r.choice([("province", "province", "省份"), ("city", "city", "城市"),
                                            ("district", "district", "区")])
        zh_req = r.random() < 0.5
        request = (r.choice([f"解析地址 {address}，然后用语音把{zh_name}名称读出来。",
                             f"从这个地址中找出{zh_name}：{address}，再用女声朗读它。",
                             f"先识别地址“{address}”，接着把识别出的{zh_name}用语音播报。"]) if zh_req else
                   r.choice([f"Split the address {address} into its parts, then speak the {en_name} aloud.",
                             f"Identify the {en_name} in {address} and read it out with speech synthesis.",
                             f"Parse {address}; after that, say the {en_name} name out loud."]))
        call1, res1, out1 = t.call("address_parse", address=address)
        value = out1.get(field) or out1.get("city") or ""
        if not value:
            raise RuntimeError(f"address_parse found no {field} in {address}")
        arguments = {"text": value, "gender": "woman"} if "女声" in request else {"text": value}
        call2, res2, _ = t.call("text_to_speech", **arguments)
        answer = (f"{zh_name}是{value}，已用语音读出。" if zh_req else
                  f"The {en_name} is {value}; I read it aloud.")
        return self._conv(self._builtin, [Message.user(request), call1, res1, call2, res2, Message.assistant(answer)],
                          "chain2")

    def value_then_speech(self) -> Conversation:
        r, t = self.rng, self.tools
        if r.random() < 0.5:
            a, b = r.randint(10, 99), r.randint(10, 99)
            request = r.choice([f"Calculate {a}*{b} and then read the answer aloud.",
                                f"算一下 {a} 乘 {b}，再用语音把结果读出来。"])
            call1, res1, out1 = t.call("calculator", expression=f"{a}*{b}")
            spoken = _num(out1["result"]) if request.startswith("Calc") else f"{a}乘{b}等于{_num(out1['result'])}"
        else:
            request = r.choice(["Check what weekday it is today and announce it with text to speech.",
                                "查询今天是星期几，然后用男声播报出来。", "Find today's date and read it out loud."])
            call1, res1, out1 = t.call("current_datetime")
            spoken = (f"Today is {out1['weekday']}" if "weekday" in request else
                      f"今天是{out1['weekday_zh']}" if "星期" in request else f"Today is {out1['date']}")
        arguments = {"text": spoken, "gender": "man"} if "男声" in request else {"text": spoken}
        call2, res2, _ = t.call("text_to_speech", **arguments)
        answer = (f"已播报：{spoken}。" if any("\u4e00" <= ch <= "\u9fff" for ch in request)
                  else f"Done: \"{spoken}\" was read aloud.")
        return self._conv(self._builtin, [Message.user(request), call1, res1, call2, res2, Message.assistant(answer)],
                          "chain2")

    def extra_chain(self) -> Conversation:
        """Chains over the extra tools, offered together with two built-in ones."""
        r, t = self.rng, self.tools
        offered = [EXTRA_TOOLS[n][0] for n in EXTRA_TOOLS] + [s for s in self._builtin
                                                              if s.name in ("calculator", "text_to_speech")]
        kind = r.choice(["weather_f", "weather_speak", "money_calc", "count_calc"])
        if kind in ("weather_f", "weather_speak"):
            city = r.choice(list(_CITIES))
            call1, res1, out1 = t.call("get_weather", city=city)
            if kind == "weather_f":
                request = r.choice([f"Get the weather in {city} and convert the temperature to Fahrenheit.",
                                    f"查一下{city}的天气，再把气温换算成华氏度。"])
                call2, res2, out2 = t.call("c_to_f", celsius=out1["temperature_c"])
                answer = f"{city}: {out2['fahrenheit']} °F ({out1['temperature_c']} °C), {out1['sky']}."
            else:
                request = f"Look up the weather in {city}, then read the temperature aloud."
                spoken = f"{city}: {out1['temperature_c']} degrees, {out1['sky']}"
                call2, res2, _ = t.call("text_to_speech", text=spoken)
                answer = f"{city} is {out1['temperature_c']} °C and {out1['sky']}; I read it aloud."
        elif kind == "money_calc":
            (src, dst), amount, people = r.choice(list(_RATES)), r.randint(20, 900), r.randint(2, 6)
            request = r.choice([f"Convert {amount} {src} to {dst}, then split it equally among {people} people.",
                                f"把 {amount} {src} 换算成 {dst}，然后平分给 {people} 个人，每人多少？"])
            call1, res1, out1 = t.call("convert_currency", amount=amount, from_currency=src, to_currency=dst)
            call2, res2, out2 = t.call("calculator", expression=f"{_num(out1['amount'])}/{people}")
            share = _num(round(out2["result"], 2))
            answer = (f"{amount} {src} = {_num(out1['amount'])} {dst}; each of {people} gets {share} {dst}."
                      if request.startswith("Convert") else f"每人 {share} {dst}（共 {_num(out1['amount'])} {dst}）。")
        else:
            text = r.choice(["the quick brown fox jumps over the lazy dog", "ray actors run agents at scale",
                             "small models need good examples to chain tools"])
            k = r.randint(2, 9)
            request = f"Count the words in '{text}', then multiply the word count by {k}."
            call1, res1, out1 = t.call("word_count", text=text)
            call2, res2, out2 = t.call("calculator", expression=f"{out1['words']}*{k}")
            answer = f"'{text}' has {out1['words']} words; times {k} that is {_num(out2['result'])}."
        return self._conv(offered, [Message.user(request), call1, res1, call2, res2, Message.assistant(answer)],
                          "chain2")

    def single(self) -> Conversation:
        """One call then the answer: chaining must not turn every request into two calls."""
        r, t = self.rng, self.tools
        kind = r.choice(["calc", "date", "address", "speech"])
        if kind == "calc":
            a, b = r.randint(11, 999), r.randint(2, 99)
            expression = f"{a}{r.choice(['*', '+', '-', '/'])}{b}"
            request = r.choice([f"How much is {expression}?", f"计算 {expression}", f"Evaluate {expression} please."])
            call, res, out = t.call("calculator", expression=expression)
            value = _num(round(out["result"], 4))
            answer = f"{expression} = {value}。" if request.startswith("计算") else f"{expression} = {value}."
        elif kind == "date":
            request = r.choice(["What's today's date?", "今天几号？星期几？", "Which weekday is it today?"])
            call, res, out = t.call("current_datetime")
            answer = (f"今天是 {out['date']}，{out['weekday_zh']}。" if request.startswith("今天") else
                      f"Today is {out['weekday']}, {out['date']}.")
        elif kind == "address":
            address = r.choice(_ADDRESSES)
            request = r.choice([f"识别地址中的省市区：{address}", f"Which province, city and district is {address} in?"])
            call, res, out = t.call("address_parse", address=address)
            parts = [out.get(k) for k in ("province", "city", "district", "town") if out.get(k)]
            answer = "、".join(parts) + "。" if request.startswith("识别") else "It is in " + ", ".join(parts) + "."
        else:
            text = r.choice(["欢迎光临", "Good morning, everyone", "会议三点开始", "Thank you for waiting"])
            request = r.choice([f"Read this aloud: {text}", f"把这句话读出来：{text}"])
            call, res, _ = t.call("text_to_speech", text=text)
            answer = ("已读出。" if request.startswith("把") else
                      "Done, I read it aloud.")
        return self._conv(self._builtin, [Message.user(request), call, res, Message.assistant(answer)], "single")

    def chat(self) -> Conversation:
        """No tool needed: answer directly."""
        request, answer = self.rng.choice([
            ("Hi there! What can you do?", "Hi! I can calculate, tell the date and time, parse Chinese addresses "
                                           "and read text aloud."),
            ("你好，你是谁？", "你好！我是一个可以调用工具的助手：计算、查询日期时间、解析地址、语音合成。"),
            ("Thanks, that's all.", "You're welcome!"),
            ("What is the capital of France?", "The capital of France is Paris."),
        ])
        return self._conv(self._builtin, [Message.user(request), Message.assistant(answer)], "chat")

    @staticmethod
    def _conv(tools: list[ToolSpec], messages: list[Message], kind: str) -> Conversation:
        return Conversation(tools=tools, messages=messages, kind=kind)


# share of each writer in a data set: mostly chains, with single calls and chit-chat kept in view
MIX: list[tuple[str, float]] = [("calc_then_calc", 0.2), ("date_then_calc", 0.12), ("address_then_speech", 0.14),
                                ("value_then_speech", 0.12), ("extra_chain", 0.14), ("calc_three_steps", 0.05),
                                ("single", 0.18), ("chat", 0.05)]


def write_conversations(n: int, seed: int = 0) -> list[Conversation]:
    """`n` conversations drawn from MIX (reproducible for one seed)."""
    writer = ChainWriter(seed)
    names, weights = zip(*MIX)
    picks = writer.rng.choices(names, weights=weights, k=n)
    return [getattr(writer, name)() for name in picks]
