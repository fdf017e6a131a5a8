"""Chat-form rows: a tokenizer's own chat template, and a conversation split into turns.

A chat row is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str,
"reward": number (optional, assistant messages only)}, ...]}``: an optional leading
system message, then user and assistant messages in turn, with at least one assistant
message. The conversation is rendered with the tokenizer's chat template (Jinja, as
Hugging Face transformers renders it) and cut into text pieces: the text each assistant
message adds after the generation prompt is an action (loss on it, its reward on its
last token); the rest (system and user turns, role headers) is context.

The template comes from a tokenizer directory: ``chat_template.jinja`` if present (newer
transformers saves it there), else the ``"chat_template"`` of ``tokenizer_config.json``
(a string, or a list of ``{"name", "template"}`` of which "default" is used).
"""
import datetime
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jinja2.ext
import jinja2.sandbox

from irl_lm.errors import InputError, MissingError

Turn = tuple[str, bool, float]
ROLES = ("system", "user", "assistant")
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
# The named special tokens transformers passes to a chat template (`special_tokens_map`).
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")
_NEEDS_TEMPLATE = "chat rows ('messages') need a tokenizer with a chat template"


class NoChatTemplateError(InputError):
  """Chat rows met without a chat template (none given, or the tokenizer has none)."""


class _GenerationBlock(jinja2.ext.Extension):
  """``{% generation %}...{% endgeneration %}`` (transformers' assistant-mask marker) as a no-op."""

  tags = {"generation"}

  def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
    return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
  """JSON without Jinja's HTML escaping, as chat templates expect."""
  return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True,
      extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


class ChatTemplate:
  """A compiled chat template and the special tokens it may use.

  `source` (the file it came from) names it in errors; `special_tokens` maps e.g.
  "bos_token" to its text.
  """

  def __init__(self, template: str, source: str, special_tokens: Mapping[str, str] | None = None):
    self.source = source
    self.special_tokens = dict(special_tokens or {})
    try:
      self._template = _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
      raise InputError(f"chat template line {e.lineno} does not compile: {_one_line(e.message)}",
                       where=source) from None

  def render(self, messages: Sequence[Mapping[str, Any]],
             add_generation_prompt: bool = False) -> str:
    """The conversation as text; InputError (one line) if the template fails."""
    try:
      return self._template.render(messages=[dict(m) for m in messages],
                                   add_generation_prompt=add_generation_prompt, tools=None,
                                   documents=None, **self.special_tokens)
    except jinja2.TemplateError as e:
      raise InputError(f"chat template {self.source}: {_one_line(e.message or e)}") from None
    except Exception as e:  # pylint: disable=broad-except  # template code raising anything
      raise InputError(f"chat template {self.source} failed: "
                       f"{type(e).__name__}: {_one_line(e)}") from None


def _read_json(path: str) -> dict[str, Any]:
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except OSError as e:
    raise InputError(f"cannot read {CONFIG_FILE}: {e.strerror or e}", where=path) from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f"malformed {CONFIG_FILE}: {_one_line(e)}", where=path) from None
  if not isinstance(config, dict):
    raise InputError(f"malformed {CONFIG_FILE}: expected a JSON object", where=path)
  return config


def _token_text(value: Any) -> str | None:
  """A special token's text: a string, or an AddedToken dict's "content"."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) else None


def special_tokens(directory: str) -> dict[str, str]:
  """The named special tokens (``bos_token``, ``eos_token``, ...) of a tokenizer directory's
  ``tokenizer_config.json``; {} without one."""
  path = os.path.join(directory, CONFIG_FILE)
  config = _read_json(path) if os.path.isfile(path) else {}
  return {k: t for k in SPECIAL_TOKENS if (t := _token_text(config.get(k))) is not None}


def _config_template(config: Mapping[str, Any], path: str) -> str | None:
  template = config.get("chat_template")
  if template is None or isinstance(template, str):
    return template
  if isinstance(template, list):
    named = {}
    for i, entry in enumerate(template):
      if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
              and isinstance(entry.get("template"), str)):
        raise InputError(f"chat_template[{i}] must be an object with string 'name' and "
                         "'template'", where=path)
      named[entry["name"]] = entry["template"]
    if "default" not in named:
      raise InputError(f"chat_template has no template named 'default' (has {sorted(named)})",
                       where=path)
    return named["default"]
  raise InputError("chat_template must be a string or a list of {name, template}, got "
                   f"{type(template).__name__}", where=path)


def load_chat_template(tokenizer_dir: str) -> ChatTemplate:
  """The chat template of a tokenizer directory (or of the directory of a file in it).

  `chat_template.jinja` wins over `tokenizer_config.json`'s "chat_template", as in
  transformers; the special tokens come from `tokenizer_config.json` when present.
  Raises `NoChatTemplateError` if the directory has neither.
  """
  if os.path.isdir(tokenizer_dir):
    directory = tokenizer_dir
  elif os.path.isfile(tokenizer_dir):
    directory = os.path.dirname(tokenizer_dir) or "."
  else:
    raise MissingError("tokenizer directory not found", where=tokenizer_dir)
  config_path = os.path.join(directory, CONFIG_FILE)
  template_path = os.path.join(directory, TEMPLATE_FILE)
  config = _read_json(config_path) if os.path.isfile(config_path) else {}
  special = special_tokens(directory)
  if os.path.isfile(template_path):
    try:
      with open(template_path, encoding="utf-8") as f:
        return ChatTemplate(f.read(), template_path, special)
    except (OSError, UnicodeDecodeError) as e:
      raise InputError(f"cannot read {TEMPLATE_FILE}: {_one_line(e)}",
                       where=template_path) from None
  if not os.path.isfile(config_path):
    raise NoChatTemplateError(f"{directory} has no {CONFIG_FILE} or {TEMPLATE_FILE}; "
                              f"{_NEEDS_TEMPLATE}")
  template = _config_template(config, config_path)
  if template is None:
    raise NoChatTemplateError(f"{config_path} has no chat_template; {_NEEDS_TEMPLATE}")
  return ChatTemplate(template, config_path, special)


def no_template_error() -> NoChatTemplateError:
  """The error for a chat row read by a source that was given no chat template."""
  return NoChatTemplateError(f"{_NEEDS_TEMPLATE}; pass chat_template_from=<tokenizer dir> to "
                             "register_jsonl_reward_task")


def _reward(message: Mapping[str, Any], i: int) -> float:
  value = message.get("reward")
  if value is None:
    return 0.0
  if message["role"] != "assistant":
    raise InputError(f"messages[{i}]: a reward on a {message['role']!r} message; "
                     "rewards go on assistant messages")
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise InputError(f"messages[{i}]: field 'reward' must be a number, got {value!r}")
  if not math.isfinite(value):
    raise InputError(f"messages[{i}]: field 'reward' must be finite, got {value!r}")
  return float(value)


def check_messages(messages: Any) -> list[float]:
  """Validates a chat row's "messages" (see the module docstring); returns each one's reward."""
  if not isinstance(messages, list) or not messages:
    raise InputError("field 'messages' must be a non-empty list")
  rewards = []
  previous = None
  for i, message in enumerate(messages):
    if not isinstance(message, dict):
      raise InputError(f"messages[{i}] must be an object, got {message!r}")
    for key in ("role", "content"):
      if key not in message:
        raise InputError(f"messages[{i}]: missing field {key!r}")
      if not isinstance(message[key], str):
        raise InputError(f"messages[{i}]: field {key!r} must be a string, got {message[key]!r}")
    role = message["role"]
    if role not in ROLES:
      raise InputError(f"messages[{i}]: unknown role {role!r}; expected 'system', 'user' or "
                       "'assistant'")
    if role == "system" and i > 0:
      raise InputError(f"messages[{i}]: role 'system' is only allowed as the first message")
    if role == "assistant" and previous in (None, "system"):
      raise InputError(f"messages[{i}]: role 'assistant' before any 'user' message; the "
                       "conversation starts with 'user' (after an optional 'system')")
    if role == previous:
      raise InputError(f"messages[{i}]: role {role!r} follows {previous!r}; roles must alternate")
    if role == "assistant" and not message["content"].strip():
      raise InputError(f"messages[{i}]: empty assistant content")
    rewards.append(_reward(message, i))
    previous = role
  if "assistant" not in (m["role"] for m in messages):
    raise InputError("no assistant message in 'messages'")
  return rewards


def chat_turns(messages: Any, template: ChatTemplate) -> tuple[str, list[Turn]]:
  """(prompt, [(text, is_action, reward), ...]) of a conversation rendered by `template`.

  For assistant message i, the rendering of messages[:i] with the generation prompt is
  context and what the rendering of messages[:i+1] adds to it is the action. The
  pieces join to the rendering of the whole conversation, or InputError says which
  prefix the template does not extend. The leading context is the prompt.
  """
  rewards = check_messages(messages)
  plain = [{k: v for k, v in m.items() if k != "reward"} for m in messages]
  pieces: list[Turn] = []
  done, done_what = "", "nothing"

  def extend(text: str, what: str) -> str:
    if not text.startswith(done):
      raise InputError(f"chat template {template.source} cannot be split into turns: the "
                       f"rendering of {what} does not start with the rendering of {done_what}")
    return text[len(done):]

  for i, message in enumerate(plain):
    if message["role"] != "assistant":
      continue
    context = template.render(plain[:i], add_generation_prompt=True)
    pieces.append((extend(context, f"messages[:{i}] with the generation prompt"), False, 0.0))
    done, done_what = context, f"messages[:{i}] with the generation prompt"
    full = template.render(plain[:i + 1])
    action = extend(full, f"messages[:{i + 1}]")
    if not action.strip():
      raise InputError(f"messages[{i}]: the chat template renders this assistant message "
                       "as no text")
    pieces.append((action, True, rewards[i]))
    done, done_what = full, f"messages[:{i + 1}]"
  whole = template.render(plain)
  pieces.append((extend(whole, "all messages"), False, 0.0))
  assert "".join(t for t, _, _ in pieces) == whole
  prompt = pieces[0][0]
  return prompt, [p for p in pieces[1:] if p[0]]
