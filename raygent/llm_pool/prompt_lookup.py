"""Draft tokens for speculative greedy decoding, looked up in the prompt itself.

A tool call mostly copies what the prompt already holds: the call tag and JSON keys from the
exemplars, the tool's name and parameter names from the tool section, argument values from the
user's message; an answer after a tool result quotes the result. So the tokens that followed
the latest earlier occurrence of the reply's last few tokens are a good guess of what comes
next. The decoder evaluates the guess in one batch and keeps the longest prefix the model would
have chosen itself, so the output is the greedy output; only the number of decode calls changes
(25 to about 9 per tool call with the embedded model, measured on benchmarks/embedded_model.py's
requests).

On 2 cores a decode of 1 + k tokens costs about 1 + 0.2 k single-token decodes, so a guess pays
only where it is likely to be right: the draft is used only after a match of at least
`min_match` tokens and is `match + 1` tokens long (at most `max_draft`), the policy that cost
least in a replay of recorded tool calls and answers (0.76 of the decode time of no drafts,
against 0.79-1.04 for fixed lengths).
"""

from __future__ import annotations


class PromptLookup:
    """Index of a token sequence's n-grams (n <= max_ngram), extended as tokens are generated."""

    def __init__(self, tokens: list[int], *, max_ngram: int = 8, min_match: int = 2, max_draft: int = 12):
        if not 1 <= min_match <= max_ngram:
            raise ValueError(f"need 1 <= min_match <= max_ngram, got {min_match} and {max_ngram}")
        self.max_ngram = max_ngram
        self.min_match = min_match
        self.max_draft = max_draft
        self.tokens: list[int] = []
        # n-gram -> the position right after its latest occurrence that has a continuation
        self._after: dict[tuple[int, ...], int] = {}
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        """Add a token; the n-grams ending just before it now have a continuation (this token)."""
        end = len(self.tokens)
        for n in range(self.min_match, min(self.max_ngram, end) + 1):
            self._after[tuple(self.tokens[end - n:end])] = end
        self.tokens.append(token)

    def draft(self, limit: int | None = None) -> list[int]:
        """The guessed next tokens: what followed the longest earlier match of the sequence's tail."""
        size = len(self.tokens)
        for n in range(min(self.max_ngram, size), self.min_match - 1, -1):
            start = self._after.get(tuple(self.tokens[size - n:]))
            if start is not None:
                k = min(n + 1, self.max_draft, limit if limit is not None else self.max_draft)
                return self.tokens[start:start + k]
        return []
