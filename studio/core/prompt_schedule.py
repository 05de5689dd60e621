"""AUTOMATIC1111's prompts that change from step to step (wiki "Features → Prompt editing"
and "Alternating words"), read as A1111's `prompt_parser.get_learned_conditioning_prompt_schedules`
reads them:

- `[from:to:when]` is `from` until step `when`, then `to`; `[to:when]` adds `to` after step
  `when`, `[from::when]` removes `from` after it. A `when` below 1 is a fraction of the
  steps (`int(when × steps)`), else a step number; past the last step, the last step.
- `[a|b|c]` is `a` at step 1, `b` at step 2, `c` at step 3, `a` again at step 4, …
- They nest, and sit inside emphasis: `([cat:dog:5]:1.2)` at step 7 is `(dog:1.2)`.
- Any other `[...]` and `(...)` is emphasis, left for `prompt_syntax` to weigh; `\\[` is a
  bracket character. An unclosed `[` is a character too.

The result is a schedule: (last step, prompt) pairs, each prompt as plain A1111 prompt text
for `prompt_syntax` (weights and BREAK still in it). No torch: the window says what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

Schedule = tuple[tuple[int, str], ...]  # (the last step it holds for, from 1; its text)


@dataclass(frozen=True)
class _Edit:
    before: tuple  # nodes up to step `when`
    after: tuple  # nodes after it
    when: float


@dataclass(frozen=True)
class _Alternate:
    options: tuple  # node sequences, one per step in turn


@dataclass(frozen=True)
class _Group:
    opening: str  # "(" or "[": emphasis, kept as it is
    inside: tuple
    closing: str


def schedule(prompt: str, steps: int) -> Schedule:
    """The prompts of a run of `steps` steps, as (last step, text) pairs in step order; one
    pair, the prompt itself, when it changes at no step."""
    return _schedule(prompt, max(1, int(steps)))


def changes(prompt: str) -> bool:
    """Whether the prompt changes from step to step at all."""
    return any(isinstance(node, (_Edit, _Alternate)) for node in _walk(_parse(prompt)))


def at_step(schedule: Schedule, step: int) -> str:
    """The text a step (from 1) runs with."""
    for last, text in schedule:
        if step <= last:
            return text
    return schedule[-1][1]


@lru_cache(maxsize=64)
def _schedule(prompt: str, steps: int) -> Schedule:
    nodes = _parse(prompt)
    if not changes(prompt):
        return ((steps, prompt),)
    ends = {steps}
    for node in _walk(nodes):
        if isinstance(node, _Edit):
            ends.add(_when(node.when, steps))
        elif isinstance(node, _Alternate):
            ends.update(range(1, steps + 1))
    pairs: list[tuple[int, str]] = []
    for end in sorted(e for e in ends if 1 <= e <= steps):
        text = _text(nodes, end, steps)
        if pairs and pairs[-1][1] == text:
            pairs[-1] = (end, text)  # the same prompt goes on
        else:
            pairs.append((end, text))
    return tuple(pairs)


def _when(when: float, steps: int) -> int:
    step = int(when * steps) if when < 1 else int(when)
    return min(steps, max(0, step))


def _text(nodes: tuple, step: int, steps: int) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _Edit):
            chosen = node.before if step <= _when(node.when, steps) else node.after
            parts.append(_text(chosen, step, steps))
        elif isinstance(node, _Alternate):
            parts.append(_text(node.options[(step - 1) % len(node.options)], step, steps))
        else:
            parts.append(node.opening + _text(node.inside, step, steps) + node.closing)
    return "".join(parts)


def _walk(nodes: tuple):  # noqa: ANN202 - a generator of nodes
    for node in nodes:
        yield node
        if isinstance(node, _Edit):
            yield from _walk(node.before)
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            for option in node.options:
                yield from _walk(option)
        elif isinstance(node, _Group):
            yield from _walk(node.inside)


# -- parsing --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _parse(prompt: str) -> tuple:
    nodes, _ = _sequence(prompt, 0, stop="")
    return nodes


def _sequence(text: str, start: int, stop: str) -> tuple[tuple, int]:
    """Nodes from `start` up to (not past) a character of `stop` outside brackets, or the
    end; the position reached."""
    nodes: list = []
    plain: list[str] = []
    at = start
    while at < len(text):
        char = text[at]
        if char == "\\" and at + 1 < len(text):
            plain.append(text[at : at + 2])  # an escape stays, for the emphasis parser
            at += 2
            continue
        if char in stop:
            break
        if char in "[(":
            node, after = _bracket(text, at)
            if node is not None:
                if plain:
                    nodes.append("".join(plain))
                    plain = []
                nodes.append(node)
                at = after
                continue
        plain.append(char)
        at += 1
    if plain:
        nodes.append("".join(plain))
    return tuple(nodes), at


def _bracket(text: str, start: int) -> tuple[object | None, int]:
    """The bracket opening at `start` and where it ends; None when it never closes (then it
    is a character)."""
    if text[start] == "(":
        inside, at = _sequence(text, start + 1, stop=")")
        if at >= len(text):
            return None, start
        return _Group("(", inside, ")"), at + 1
    parts: list[tuple] = []
    separators: list[str] = []
    at = start + 1
    while True:
        part, at = _sequence(text, at, stop=":|]")
        if at >= len(text):
            return None, start
        parts.append(part)
        if text[at] == "]":
            break
        separators.append(text[at])
        at += 1
    end = at + 1
    if separators and all(s == "|" for s in separators):
        return _Alternate(tuple(parts)), end
    when = _number(parts[-1]) if separators and all(s == ":" for s in separators) else None
    if when is not None and len(parts) == 2:  # [to:when]
        return _Edit((), parts[0], when), end
    if when is not None and len(parts) == 3:  # [from:to:when], [from::when]
        return _Edit(parts[0], parts[1], when), end
    # emphasis, or what A1111 would not read as either: the text as it is
    inside: list = []
    for number, part in enumerate(parts):
        if number:
            inside.append(separators[number - 1])
        inside.extend(part)
    return _Group("[", tuple(inside), "]"), end


def _number(nodes: tuple) -> float | None:
    if len(nodes) != 1 or not isinstance(nodes[0], str):
        return None
    try:
        value = float(nodes[0].strip())
    except ValueError:
        return None
    return value if value >= 0 else None
