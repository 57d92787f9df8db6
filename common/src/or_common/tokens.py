"""The token layer: one definition of how a record becomes token ids.

A trajectory is the prompt rendered by the model's chat template, then each flow segment
tokenized on its own and appended, then the end-of-turn token when the turn ended normally.
Segment-wise tokenization is what a rollout engine produces (the generated ids, then the output
block's ids appended after them), so evaluation (or-gen), SFT (or-sft) and RL (or-grpo) all see
the same sequence. A model segment written by or-gen carries the engine's own ids (`ids`: the
model often writes a text with ids that are not the tokenizer's encoding of it, and byte tokens
that are not valid UTF-8 on their own), and `encode` uses them while they still decode to the
segment's text; so `encode_record` is token for token what the engine saw and produced. Every token count in the project (or-gen's budget, or-filter --max-tokens,
or-intervene's funnel) comes from here.

The loss mask is 1 on what the model is trained to write (reasoner and intervener segments, and
the end-of-turn token) and 0 on the prompt and on executor output. Executor output is encoded by
`executor_ids`: no text a program prints ever becomes a special or added token.

How an engine's completion becomes ids of the sequence is defined here once too:
`take_completion` (the turn's cut, the end-of-turn id dropped from the text, the engine's
ids kept verbatim as far as the kept text reaches) and `stop_ids` (the ids a turn ends on), for
or-gen's loop and or-grpo's rollout alike.

transformers is imported only by `load_tokenizer`; the functions here take any tokenizer object
with the Hugging Face interface (`apply_chat_template`, `encode`/`__call__`, `decode`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from .flow import final_finish
from .light_tokenizer import LightTokenizer
from .reasoner import generation_config
from .records import ENDED_NORMALLY, TRAINED_ROLES, RecordError
from .turn import cut_completion

IGNORE_INDEX = -100  # what transformers' losses skip


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded: a usage error, reported in one line."""


class EncodeError(RecordError):
    """A record that cannot become a training sequence (chat mode, no flow, bad segments)."""


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_transformers() -> None:
    """transformers prints advisories ("PyTorch was not found") to stderr on import; our tools
    only need its tokenizers."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1, ON, YES or TRUE; `0` is online)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _cached_file(name: str, filename: str) -> Path | None | Literal[False]:
    """A hub name's file in the local Hugging Face cache (asked of huggingface_hub, which imports
    in a fraction of transformers' time): its path, None when absent, False when the cache
    cannot be asked (a malformed name, an unreadable cache)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, filename)
    except Exception:
        return False
    return Path(found) if isinstance(found, str) else None


def _in_hub_cache(name: str) -> bool:
    """Whether the cache holds files of this hub name's tokenizer; when the cache cannot be
    asked, transformers says what is wrong."""
    found = [
        _cached_file(name, f) for f in ("tokenizer_config.json", "tokenizer.json", "config.json")
    ]
    return any(f is not None for f in found)


def _cached_snapshot(name: str) -> Path | None:
    """The cache's snapshot folder of a hub name that holds its tokenizer files, if any."""
    found = _cached_file(name, "tokenizer.json")
    return found.parent if found else None


def _unreachable(name: str) -> TokenizerError:
    return TokenizerError(
        f"{name}: not a local folder, not in the Hugging Face cache, and the hub cannot be "
        "reached; pass the path of a folder holding the tokenizer"
    )


@lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str, light: bool = False) -> Any:
    """A tokenizer from a local folder (loaded locally, never looked up on the hub) or a hub
    name (from the local cache first; from the hub only when it is reachable). Raises
    TokenizerError with one line saying what to do otherwise. `light=True` returns a
    LightTokenizer for a local folder, or a hub name's cached snapshot, that has a
    `tokenizer.json` (no transformers import: for generators and filters that only count,
    encode and decode), the full tokenizer otherwise."""
    _quiet_transformers()
    path = Path(name_or_path).expanduser()
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if light:
        # a local folder, else a hub name's snapshot in the local cache (where `vllm serve`
        # downloaded the model): either loads without transformers
        folder = path if path.is_dir() or looks_like_path else _cached_snapshot(name_or_path)
        files = ("tokenizer.json", "tokenizer_config.json")
        if folder and all((folder / f).is_file() for f in files):
            try:
                return LightTokenizer(folder)
            except (TokenizerError, OSError, ValueError, ImportError):
                pass  # what the light loader does not cover, the full one does
    if path.exists() and not path.is_dir():
        raise TokenizerError(f"{name_or_path}: a tokenizer is a folder, not a file")
    if looks_like_path and not path.exists():  # said before transformers' seconds of import
        raise TokenizerError(f"{name_or_path}: no such folder")
    cached = path.exists() or _in_hub_cache(name_or_path)
    if not cached and (_hub_offline() or not _hub_reachable()):  # before transformers' import
        raise _unreachable(name_or_path)
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers comes with the tools that count
        raise TokenizerError(f"tokenizers need transformers ({exc})") from None
    if path.exists():
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TokenizerError(f"{name_or_path}: no tokenizer in this folder ({first})") from None
    try:  # a hub name already in the local cache
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError):
        pass
    if _hub_offline() or not _hub_reachable():
        raise _unreachable(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TokenizerError(f"{name_or_path}: cannot load its tokenizer ({first})") from None


def check_model(name_or_path: str) -> None:
    """Raise TokenizerError (one line) when a model's weights cannot be had: a path that does
    not exist, or a hub name neither in the local cache nor reachable (said before an engine
    spends a minute retrying the hub)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or path.exists():
        raise TokenizerError(f"{name_or_path}: no such model folder")
    found = _cached_file(name_or_path, "config.json")
    if found is None and (_hub_offline() or not _hub_reachable()):
        raise TokenizerError(
            f"{name_or_path}: not a local folder, not in the Hugging Face cache, and the hub "
            "cannot be reached; pass the path of the model's folder"
        )


def render_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The exact text the assistant turn continues: the chat template with the generation
    prompt (for Qwen3 thinking models it ends with the opened `<think>\\n`)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise TokenizerError("the tokenizer has no chat template; pass --tokenizer with one")
    return tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
    )


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of `text` on its own, without any special token added around it."""
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def executor_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of program output (an executor segment) as plain text: no text a program printed
    becomes a special or added token (a printed `<|im_end|>` would end the turn, a printed
    `</think>` close the thinking). Such text is cut inside each added token's text and the
    pieces tokenized on their own (character by character where normalisation still makes one).
    or-gen's loop, or-grpo's rollout and `encode` (or-sft, or-intervene) all go through here."""
    get_added = getattr(tokenizer, "get_added_vocab", None)
    added = {k: int(v) for k, v in get_added().items() if k} if callable(get_added) else {}
    ids, forbidden = text_ids(tokenizer, text), set(added.values())
    if not forbidden.intersection(ids):
        return ids
    cuts = {len(text)}
    for content in added:
        i = text.find(content)
        while i >= 0:
            cuts.add(i + 1)
            i = text.find(content, i + 1)
    ids, start = [], 0
    for end in sorted(cuts):
        piece_ids = text_ids(tokenizer, text[start:end])
        if forbidden.intersection(piece_ids):
            piece_ids = [t for ch in text[start:end] for t in text_ids(tokenizer, ch)]
        ids.extend(piece_ids)
        start = end
    return ids


def count_tokens(tokenizer: Any, text: str) -> int:
    """How many tokens `text` is on its own (the unit of every budget and funnel)."""
    return len(text_ids(tokenizer, text))


def prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """The prompt's ids: the rendered chat template, tokenized as text (which is what a server
    does with a text prompt; no BOS is added on top of the template's own tokens)."""
    return text_ids(tokenizer, render_prompt(tokenizer, messages))


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that closes an assistant turn in the chat template (`<|im_end|>` for Qwen3)."""
    eos = tokenizer.eos_token_id
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is None:
        raise TokenizerError("the tokenizer has no end-of-turn (eos) token")
    return int(eos)


@dataclass
class Encoded:
    """A token sequence and its loss mask (1 = trained on), of the same length."""

    input_ids: list[int]
    loss_mask: list[int]
    prompt_tokens: int

    @property
    def labels(self) -> list[int]:
        """`input_ids` with IGNORE_INDEX wherever the mask is 0 (what transformers trains on)."""
        return [
            t if m else IGNORE_INDEX for t, m in zip(self.input_ids, self.loss_mask, strict=True)
        ]

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)

    @property
    def response_tokens(self) -> int:
        """Everything after the prompt (the unit of the generation budget)."""
        return len(self.input_ids) - self.prompt_tokens


def encode(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]],
    flow: Sequence[Mapping[str, Any]],
    finish: str | None,
) -> Encoded:
    """The prompt (mask 0), each segment on its own (reasoner/intervener 1, executor 0, through
    `executor_ids`), then the end-of-turn token (1) when `finish` says the turn ended normally
    (`ENDED_NORMALLY`).
    A model segment that carries the engine's ids (`ids`, written by or-gen) is encoded as
    those ids (`segment_ids`), so the sequence is the one the engine saw and produced."""
    ids = prompt_ids(tokenizer, messages)
    mask = [0] * len(ids)
    prompt_len = len(ids)
    texts = [seg.get("text", "") for seg in flow]
    for i, seg in enumerate(flow):
        if not isinstance(texts[i], str):
            raise EncodeError(f"flow[{i}].text must be a string")
        if seg.get("role") not in ("reasoner", "intervener", "executor"):
            raise EncodeError(f"flow[{i}].role must be reasoner, intervener or executor")
    kept = [
        segment_ids(tokenizer, seg) if seg.get("role") != "executor" and t else None
        for seg, t in zip(flow, texts, strict=True)
    ]
    model = [
        t
        for seg, t, k in zip(flow, texts, kept, strict=True)
        if t and seg.get("role") != "executor" and k is None
    ]
    encoded = iter(tokenizer(model, add_special_tokens=False)["input_ids"] if model else [])
    for seg, text, seg_kept in zip(flow, texts, kept, strict=True):
        if not text:
            continue
        if seg.get("role") == "executor":
            seg_ids = executor_ids(tokenizer, text)
        elif seg_kept is not None:
            seg_ids = seg_kept
        else:
            seg_ids = list(next(encoded))
        ids.extend(seg_ids)
        mask.extend([1 if seg.get("role") in TRAINED_ROLES else 0] * len(seg_ids))
    if finish in ENDED_NORMALLY:
        ids.append(end_of_turn_id(tokenizer))
        mask.append(1)
    return Encoded(ids, mask, prompt_len)


def encode_record(tokenizer: Any, record: Mapping[str, Any]) -> Encoded:
    """`encode` for a trajectory record; chat-mode records are refused (their model saw turn
    boundaries that the flow does not hold, so no single sequence is what it produced)."""
    gen = record.get("gen")
    if isinstance(gen, Mapping) and gen.get("mode") == "chat":
        raise EncodeError(
            "chat-mode trajectory (gen.mode = chat): its outputs were sent as user turns, so it "
            "has no single token sequence; generate in completion mode to train on it"
        )
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise EncodeError("missing field 'messages' (the rendered prompt)")
    flow = record.get("flow")
    if not isinstance(flow, list):
        raise EncodeError("missing field 'flow'")
    return encode(tokenizer, messages, flow, final_finish(record))


def align_ids(tokenizer: Any, ids: Sequence[int], text: str) -> list[int]:
    """Ids that decode to exactly `text`, a prefix of `decode(ids)`: the generated ids verbatim
    as far as they stay inside `text`, then only the rest of `text` tokenized. A server's last
    token may run past a stop string (`` `\\n\\n `` past a closing fence), and a server that
    ignored the stop list may run far past it. A cut at a token boundary keeps every id before
    it; a cut inside a token re-tokenizes only that token's kept piece (records keep these
    ids, so the sequence the model continues from is the one training sees, canonical or not).
    One decode when nothing was cut; a binary search over the prefix length otherwise."""

    def inside(k: int) -> bool:
        return text.startswith(tokenizer.decode(list(ids[:k]), skip_special_tokens=False))

    k = len(ids)
    if not inside(k):
        lo, hi = 0, k  # inside(lo) holds (the empty prefix); find the longest such prefix
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if inside(mid):
                lo = mid
            else:
                hi = mid
        k = lo
    head = tokenizer.decode(list(ids[:k]), skip_special_tokens=False) if k else ""
    return list(ids[:k]) + text_ids(tokenizer, text[len(head) :])


def segment_ids(tokenizer: Any, segment: Mapping[str, Any]) -> list[int] | None:
    """The ids a generator recorded for a model segment (`ids`, as the engine produced them),
    when they still decode to its text; a flow cut inside the segment (or-intervene) keeps them
    up to the cut (`align_ids`). None when there are none, or the text was edited since."""
    ids = segment.get("ids")
    text = segment.get("text", "")
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        return None
    decoded = tokenizer.decode(ids, skip_special_tokens=False)
    if decoded == text:
        return list(ids)
    if decoded.startswith(text):
        return align_ids(tokenizer, ids, text)
    return None


def stop_ids(tokenizer: Any) -> set[int]:
    """The ids a turn ends on when the engine emits one: the tokenizer's eos (each of them, when
    it is a list), its pad, and the `eos_token_id` of the generation_config.json in the
    tokenizer's folder (Qwen3: `<|im_end|>` and `<|endoftext|>`).

    One rule for or-gen and or-grpo, the union of what each read before: vLLM stops on the
    tokenizer's eos and on the generation config's eos ids, so both count; a trainer's
    tokenizer may be loaded without the generation config beside it (a hub name), and
    Qwen-style tokenizers set pad to `<|endoftext|>`, the config's other stop id, so pad counts
    too. A pad that is no stop id costs nothing: a model trained with pad masked out never
    writes it, so no completion ends on it."""
    ids: set[int] = set()
    for name in ("eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    folder = getattr(tokenizer, "name_or_path", None)
    if folder:
        value = generation_config(str(folder)).get("eos_token_id")
        ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return ids


@dataclass
class Taken:
    """One engine completion as the turn rules take it (`take_completion`)."""

    text: str  # the kept text: cut by the turn rules, without the end-of-turn token's text
    finish: str  # the turn's (`cut_completion`): fence | fake_output | stop | length
    #: the kept ids, verbatim as far as `text` reaches, then the rest of `text` tokenized
    #: (without the end-of-turn id); None without a tokenizer
    ids: list[int] | None
    #: the end-of-turn id the turn ended on (finish `stop`): a token of the turn that is no
    #: part of its text (the token layer adds it back for a finished turn)
    end_id: int | None
    tokens: int  # what the completion costs of the budget: the kept ids and the end id
    log_probs: list[float] | None = None  # of `ids_with_end`, when asked for

    @property
    def ids_with_end(self) -> list[int]:
        """The kept ids and the end-of-turn id: what a trainer's response holds."""
        return list(self.ids or []) + ([self.end_id] if self.end_id is not None else [])


def take_completion(
    tokenizer: Any,
    text: str | None,
    ids: Sequence[int] | None,
    finish: str,
    context: str,
    stops: set[int],
    *,
    log_probs: Sequence[float] | None = None,
    engine_tokens: int = 0,
) -> Taken:
    """Take one engine completion under the turn's stop rule (`cut_completion`).

    `text` is the engine's text (None: the decoded `ids`), `ids` the generated ids (None: a
    server that gives none back, whose text is tokenized), `finish` the engine's finish reason,
    `context` the model's own text so far (`turn.model_text`) and `stops` the ids a turn
    ends on (`stop_ids`). A completion whose last id is a stop id ends the turn: the id is
    dropped from the ids and its text from the text (an engine that includes special tokens in
    its text writes it), and no fence is ever added; a server without ids that ends its text
    with a stop id's text ended the turn too. A completion cut inside its last token keeps the
    ids before the cut and re-tokenizes only the kept piece (`align_ids`); `log_probs` of the
    generated ids become those of the kept ids (a re-tokenized tail gets the log prob of the
    token it was cut from, the closest figure the engine gave for that text). Without a
    tokenizer (chat mode) the text is cut and `engine_tokens` is the cost."""
    body = list(ids) if ids is not None else None
    ended = False  # on a stop id (a token of the turn)
    over = False  # on a stop id or its text: the turn is over, no fence is ever added
    end_id: int | None = None
    decoded = text is None
    if body and body[-1] in stops:
        ended = over = True
        end_id = body.pop()
        if text is not None:
            end_text = tokenizer.decode([end_id], skip_special_tokens=False)
            if end_text and text.endswith(end_text):
                text = text[: -len(end_text)]
    if text is None:
        text = tokenizer.decode(body or [], skip_special_tokens=False)
    elif body is None and finish == "stop" and tokenizer is not None:  # a server without ids
        for end_text in sorted(
            t for t in (tokenizer.decode([i], skip_special_tokens=False) for i in stops) if t
        ):
            if text.endswith(end_text):
                over = True
                text = text[: -len(end_text)]
                break
    cut, finish = cut_completion(text, finish, context, over)
    if tokenizer is None:
        return Taken(cut, finish, None, None, engine_tokens)
    if body and finish == "length" and cut == text and not decoded:
        # the budget ended inside a character: the engine holds its bytes back from the
        # text, but the ids were generated (and count); the record keeps them, and the
        # text is what they decode to (with U+FFFD for the incomplete character)
        full = tokenizer.decode(body, skip_special_tokens=False)
        if full.startswith(cut) and set(full[len(cut) :]) <= {"\ufffd"}:
            cut = full
    if body is None:
        kept = text_ids(tokenizer, cut)
    elif decoded and cut == text:
        kept = body  # the text is the ids' own decoding, uncut
    else:
        kept = align_ids(tokenizer, body, cut)
    end = end_id if ended and finish == "stop" else None
    taken = Taken(cut, finish, kept, end, len(kept) + (end is not None))
    if log_probs is not None and ids is not None:
        generated, out = list(ids), taken.ids_with_end
        verbatim = 0
        while verbatim < min(len(out), len(generated)) and out[verbatim] == generated[verbatim]:
            verbatim += 1
        tail = float(log_probs[verbatim]) if verbatim < len(log_probs) else 0.0
        taken.log_probs = [float(x) for x in log_probs[:verbatim]] + [tail] * (len(out) - verbatim)
    return taken
