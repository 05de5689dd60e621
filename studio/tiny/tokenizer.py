"""A CLIP-format BPE tokenizer trained on studio-tiny's captions.

CLIP's BPE works on words split by a regex, with bytes mapped to printable characters
and `</w>` marking the end of a word. We learn merges on caption word counts until every
caption word is one token, then write `vocab.json` and `merges.txt` so that
`CLIPTokenizer.from_pretrained` loads it with no network.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from studio.tiny.scenes import caption, sample_scene

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 32  # longest caption is 22 words and commas, plus BOS and EOS

_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def caption_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [caption(sample_scene(rng), rng) for _ in range(n)]


def _word_symbols(word: str, byte_map: dict[int, str]) -> tuple[str, ...]:
    chars = [byte_map[b] for b in word.encode("utf-8")]
    chars[-1] += "</w>"
    return tuple(chars)


def learn_merges(texts: list[str]) -> list[tuple[str, str]]:
    """Plain BPE: merge the most frequent adjacent pair until no word has two symbols."""
    byte_map = bytes_to_unicode()
    counts = Counter(w for t in texts for w in _WORD.findall(t.lower()))
    words = {_word_symbols(w, byte_map): c for w, c in counts.items()}
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, c in words.items():
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += c
        if not pairs:
            return merges
        # Ties broken by the pair itself so the result is the same on every machine.
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for symbols, c in words.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            merged[tuple(out)] = c
        words = merged


def write_tokenizer(folder: Path, merges: list[tuple[str, str]]) -> CLIPTokenizer:
    """Write vocab.json and merges.txt in CLIP's layout, then save the loaded tokenizer
    so the folder also holds its configs (model_max_length, special tokens)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=list(merges),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=MAX_LENGTH,
    )
    tok.save_pretrained(str(folder))
    # Rewrite ours last: older transformers read these two files rather than tokenizer.json.
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def train_tokenizer(folder: Path, n_captions: int = 20000, seed: int = 1234) -> CLIPTokenizer:
    return write_tokenizer(folder, learn_merges(caption_corpus(n_captions, seed)))
