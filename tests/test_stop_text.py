"""A reply's text cut at stop strings, and ended at a repeated call (raygent.llm_pool.lazy_decode.StopText)."""

from __future__ import annotations

from raygent.llm_pool.lazy_decode import StopText, repeats_a_call

CALL_A = '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call>'
CALL_B = '<tool_call>\n{"name": "weather", "arguments": {"city": "London"}}\n</tool_call>'


class _Pieces:
    """Stands in for llama.cpp's detokenizer: token i is the i-th piece of text."""

    def __init__(self, pieces: list[str]):
        self.pieces = pieces

    def detokenize(self, tokens: list[int], special: bool = False) -> bytes:
        return "".join(self.pieces[t] for t in tokens).encode()


def _run(text: str, stop: list[str], stop_repeated_call: bool) -> tuple[str, bool, int]:
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    out = StopText(_Pieces(pieces), stop, stop_repeated_call)
    released = ""
    for token in range(len(pieces)):
        piece, stopped = out.add(token)
        released += piece
        if stopped:
            return released + out.rest(), True, token + 1
    return released + out.rest(), False, len(pieces)


def test_a_repeated_call_ends_the_reply_and_new_calls_do_not():
    assert repeats_a_call(CALL_A + "\n" + CALL_B + "\n" + CALL_A)
    assert not repeats_a_call(CALL_A + "\n" + CALL_B) and not repeats_a_call(CALL_A)
    assert repeats_a_call(CALL_A + "\n" + CALL_A.replace("\n", " "))  # white space aside
    reply = CALL_A + "\n" + CALL_B + "\n" + CALL_A + "\n" + CALL_B + "\n" + CALL_A
    text, stopped, used = _run(reply, ["<|im_end|>"], stop_repeated_call=True)
    assert stopped and text == CALL_A + "\n" + CALL_B + "\n" + CALL_A  # the repeat stays; nothing after it
    assert used < len(range(0, len(reply), 7))  # fewer tokens generated
    text, stopped, _ = _run(reply, ["<|im_end|>"], stop_repeated_call=False)
    assert not stopped and text == reply


def test_stop_strings_still_cut_the_text():
    text, stopped, _ = _run("Hello there<|im_end|>ignored", ["<|im_end|>"], stop_repeated_call=True)
    assert stopped and text == "Hello there"
