"""[[rules]]: tag the calls nobody labelled (a heartbeat, a cron), or refuse them. Pure: compiled once from the
config, then each call's path, model, headers and last user message are matched against bounded slices."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from picometer.config import Config, RuleConfig
from picometer.frozen import frozen
from picometer.gateway.tags import UNTAGGED, Tags, clean_tag

# Python's re has no timeout: a regex only ever sees this many characters (the end of the text, where the ask is).
MAX_MATCH_CHARS = 4096
MAX_MESSAGES = 1000  # walked from the end: the last user message is near it
MAX_PARTS = 100  # text parts of one message
# Where each API shape keeps its messages, in the order they are looked for.
_PROMPT_KEYS = {
    "openai": ("messages", "input", "prompt"),  # chat, Responses (and embeddings), completions
    "anthropic": ("messages",),
    "gemini": ("contents",),
    "ollama": ("messages", "prompt", "input"),  # api/chat, api/generate, api/embed
}
_ANY_SHAPE = ("messages", "contents", "input", "prompt")
_TEXT_PARTS = ("text", "input_text")


@frozen
class Call:
    """What a rule looks at: the canonical path below the provider, the model, lower-cased headers, the body."""

    path: str
    model: str | None
    headers: Mapping[str, str]
    body: Mapping[str, Any] | None = None
    shape: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled [[rules]] entry; `number` counts from 1 in config order, as `picometer check` names it."""

    number: int
    config: RuleConfig
    path: re.Pattern[str] | None
    model: re.Pattern[str] | None
    headers: tuple[tuple[str, str, re.Pattern[str]], ...]  # (lower-cased name, name as configured, regex)
    prompt: re.Pattern[str] | None

    @property
    def block(self) -> bool:
        return self.config.action == "block"

    def matches(self, call: Call, prompt: str | None) -> bool:
        """Every match_ key given matches (a missing model, header or prompt matches none); `prompt` is the last
        user message, already bounded, or None when there is none."""
        if self.path is not None and not self.path.search(call.path[-MAX_MATCH_CHARS:]):
            return False
        if self.model is not None and not (call.model and self.model.search(call.model[-MAX_MATCH_CHARS:])):
            return False
        for name, _, regex in self.headers:
            value = call.headers.get(name)
            if value is None or not regex.search(value[:MAX_MATCH_CHARS]):
                return False
        return self.prompt is None or (prompt is not None and self.prompt.search(prompt) is not None)

    def described(self) -> str:
        """What the rule matches, as written in the config (never the call's own text)."""
        c = self.config
        said = [f"{key} = {_toml(getattr(c, key))}" for key in ("match_path", "match_model") if getattr(c, key)]
        said += [f"match_header.{name} = {_toml(regex.pattern)}" for _, name, regex in self.headers]
        if c.match_prompt:
            said.append(f"match_prompt = {_toml(c.match_prompt)}")
        return f"[[rules]] #{self.number}" + (f" ({', '.join(said)})" if said else " (matches every call)")

    def tag(self, tags: Tags, headers: Mapping[str, str], config: Config) -> Tags:
        """`tags` with what this rule sets, each only where the call carries none of its own."""
        c = self.config
        workflow = c.workflow if c.workflow and tags.workflow == UNTAGGED else tags.workflow
        env = tags.env
        if clean_tag(headers.get("x-picometer-env")) is None:
            configured = config.workflows.get(workflow)
            if c.env:
                env = c.env
            elif workflow != tags.workflow:  # as tags.resolve_tags does: a workflow's calls carry its env
                env = configured.env if configured else "prod"
        return replace(
            tags,
            workflow=workflow,
            env=env,
            tenant=tags.tenant or c.tenant or None,
            prompt_version=tags.prompt_version or c.prompt_version or None,
        )


class Rules:
    """The config's [[rules]], compiled once (and again on reload); `match` finds the first that matches."""

    def __init__(self, config: Config) -> None:
        self.rules = tuple(_compile(i + 1, rule) for i, rule in enumerate(config.rules))
        self._wants_prompt = any(rule.prompt is not None for rule in self.rules)

    def match(self, call: Call) -> Rule | None:
        if not self.rules:
            return None
        prompt = last_user_message(call.body, call.shape) if self._wants_prompt and call.body is not None else None
        return next((rule for rule in self.rules if rule.matches(call, prompt)), None)


def _compile(number: int, rule: RuleConfig) -> Rule:
    def regex(pattern: str) -> re.Pattern[str] | None:
        return re.compile(pattern) if pattern else None

    return Rule(
        number,
        rule,
        regex(rule.match_path),
        regex(rule.match_model),
        tuple((name.lower(), name, re.compile(pattern)) for name, pattern in rule.match_header.items()),
        regex(rule.match_prompt),
    )


def last_user_message(body: Mapping[str, Any] | None, shape: str | None) -> str | None:
    """The text of the last user message that has text, its last MAX_MATCH_CHARS characters; None when there is
    none. Any JSON is safe here: what is not the expected shape is skipped, and only bounded parts are walked."""
    if not isinstance(body, Mapping):
        return None
    for key in _PROMPT_KEYS.get(shape or "", _ANY_SHAPE):
        text = _from(key, body.get(key))
        if text is not None:
            return text
    return None


def _from(key: str, value: Any) -> str | None:
    if isinstance(value, str):  # Responses input, completions and Ollama prompt, embeddings input
        return _tail(value) if key in ("input", "prompt") else None
    if isinstance(value, Mapping):  # Gemini also takes a single Content
        value = [value]
    if not isinstance(value, list):
        return None
    for item in reversed(value[-MAX_MESSAGES:]):
        text = _user_text(item)
        if text is not None:
            return text
    return None


def _user_text(item: Any) -> str | None:
    if isinstance(item, str):  # a list of prompts or embedding inputs: the last one
        return _tail(item)
    if not isinstance(item, Mapping) or item.get("role", "user") != "user":
        return None
    content = item.get("content", item.get("parts"))  # Gemini keeps its text in parts
    if isinstance(content, str):
        return _tail(content)
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    for part in content[-MAX_PARTS:]:
        # Gemini parts have no type; chat and Messages parts are "text", Responses parts "input_text".
        if isinstance(part, Mapping) and isinstance(part.get("text"), str) and part.get("type", "text") in _TEXT_PARTS:
            texts.append(_tail(part["text"]))
    return _tail("\n".join(texts)) if texts else None


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string, as the config has it


def _tail(text: str) -> str:
    return text[-MAX_MATCH_CHARS:]
