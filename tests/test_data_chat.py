"""Chat-form JSONL rows: the tokenizer's chat template, the split into context and assistant
turns, loss on assistant tokens only, and one-line errors.

The tokenizer directory tests/fixtures/data/chat_tokenizer/ (the tiny byte-level BPE plus
<|im_start|>/<|im_end|>, with a ChatML template) is made by
`python tests/fixtures/make_data_fixtures.py --chat-only`.
"""
import json
import os

import numpy as np
import pytest

from irl_lm.data import BatchIterator, JsonlFormatError, make_vocabulary, register_jsonl_reward_task
from irl_lm.data.chat import ChatTemplate, NoChatTemplateError, chat_turns, load_chat_template
from irl_lm.data.jsonl import parse_line, read_jsonl
from irl_lm.errors import InputError, MissingError

CHAT_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "data", "chat_tokenizer")
TEMPLATE = load_chat_template(CHAT_DIR)
ROW = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello!", "reward": 0.5},
    {"role": "user", "content": "bye"},
    {"role": "assistant", "content": "goodbye.", "reward": 1},
]}
PROMPT = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
          "<|im_start|>assistant\n")
TURNS = [("hello!<|im_end|>\n", True, 0.5),
         ("<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n", False, 0.0),
         ("goodbye.<|im_end|>\n", True, 1.0)]


def write_jsonl(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return str(path)


def write_tokenizer_dir(path, config=None, jinja=None):
  path.mkdir()
  if config is not None:
    (path / "tokenizer_config.json").write_text(json.dumps(config))
  if jinja is not None:
    (path / "chat_template.jinja").write_text(jinja)
  return str(path)


def test_chatml_pieces_exact():
  assert chat_turns(ROW["messages"], TEMPLATE) == (PROMPT, TURNS)
  whole = TEMPLATE.render(ROW["messages"])
  assert PROMPT + "".join(t for t, _, _ in TURNS) == whole
  assert TEMPLATE.render(ROW["messages"][:2], add_generation_prompt=True) == PROMPT


def test_trailing_user_turn_is_context_and_rewards_default_to_zero():
  messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"},
              {"role": "user", "content": "more?"}]
  prompt, turns = chat_turns(messages, TEMPLATE)
  assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
  assert turns == [("hello!<|im_end|>\n", True, 0.0),
                   ("<|im_start|>user\nmore?<|im_end|>\n", False, 0.0)]


def test_parse_line_chat_row_and_done():
  assert parse_line(json.dumps(ROW), TEMPLATE) == (PROMPT, TURNS, True)
  assert parse_line(json.dumps(dict(ROW, done=False)), TEMPLATE)[2] is False


def test_template_sources(tmp_path):
  messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
  jinja = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"
           "{% generation %}{{ m['content'] + eos_token }}{% endgeneration %}"
           "{% else %}[{{ m['content'] }}]{% endif %}{% endfor %}")
  special = {"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>"}
  # A list of named templates: "default" is used.
  listed = load_chat_template(write_tokenizer_dir(tmp_path / "listed", dict(
      special, chat_template=[{"name": "tool_use", "template": "x"},
                              {"name": "default", "template": jinja}])))
  assert chat_turns(messages, listed) == ("<s>[hi]", [("yo</s>", True, 0.0)])
  # chat_template.jinja wins over tokenizer_config.json, whose special tokens still apply.
  both = write_tokenizer_dir(tmp_path / "both", dict(special, chat_template="ignored"), jinja)
  assert load_chat_template(both).render(messages) == "<s>[hi]yo</s>"
  assert load_chat_template(both).source == os.path.join(both, "chat_template.jinja")
  # A file inside the directory names it too.
  assert load_chat_template(os.path.join(CHAT_DIR, "tokenizer.json")).render(
      messages) == TEMPLATE.render(messages)


def test_tokenizer_without_template(tmp_path):
  plain = write_tokenizer_dir(tmp_path / "plain", {"eos_token": "</s>"})
  with pytest.raises(NoChatTemplateError) as err:
    register_jsonl_reward_task("test_chat_no_template", write_jsonl(tmp_path / "r.jsonl", [ROW]),
                               make_vocabulary("hf_tokenizer", CHAT_DIR),
                               chat_template_from=plain)
  assert str(err.value) == (f"{plain}/tokenizer_config.json has no chat_template; chat rows "
                            "('messages') need a tokenizer with a chat template")
  empty = write_tokenizer_dir(tmp_path / "empty")
  with pytest.raises(NoChatTemplateError) as err:
    load_chat_template(empty)
  assert str(err.value) == (f"{empty} has no tokenizer_config.json or chat_template.jinja; chat "
                            "rows ('messages') need a tokenizer with a chat template")
  with pytest.raises(MissingError) as err:
    load_chat_template(str(tmp_path / "none"))
  assert str(err.value) == f"tokenizer directory not found ({tmp_path / 'none'})"


def test_chat_row_without_template_is_never_skipped(tmp_path):
  path = write_jsonl(tmp_path / "rows.jsonl", [
      {"prompt": "a", "response": "b", "reward": 1}, ROW])
  for skip_invalid in (False, True):
    with pytest.raises(JsonlFormatError) as err:
      read_jsonl(path, skip_invalid=skip_invalid)
    assert str(err.value) == (f"{path}:2: chat rows ('messages') need a tokenizer with a chat "
                              "template; pass chat_template_from=<tokenizer dir> to "
                              "register_jsonl_reward_task")


BAD_TEMPLATES = [
    ("{% for m in messages %}{{ m['content'] }}", None,
     "chat template line 1 does not compile: Unexpected end of template. Jinja was looking for "
     "the following tags: 'endfor' or 'else'. The innermost block that needs to be closed is "
     "'for'. ({src})"),
    ("{{ raise_exception('only two roles') }}", None,
     "chat template {src}: only two roles"),
    # The last message is rendered differently, so a conversation does not extend its prefix.
    ("{% for m in messages %}{{ m['content'] }}{% if loop.last %}!{% endif %}\n{% endfor %}"
     "{% if add_generation_prompt %}>{% endif %}", None,
     "chat template {src} cannot be split into turns: the rendering of messages[:2] does not "
     "start with the rendering of messages[:1] with the generation prompt"),
    ("{% for m in messages if m['role'] != 'assistant' %}{{ m['content'] }}{% endfor %}", None,
     "messages[1]: the chat template renders this assistant message as no text"),
]


@pytest.mark.parametrize("jinja,messages,message", BAD_TEMPLATES)
def test_template_problems_are_one_line(tmp_path, jinja, messages, message):
  src = os.path.join(str(tmp_path), "tokenizer_config.json")
  messages = messages or [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
  with pytest.raises(InputError) as err:
    chat_turns(messages, ChatTemplate(jinja, src))
  assert str(err.value) == message.format(src=src)


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "yo"}
S = {"role": "system", "content": "sys"}
BAD_ROWS = [
    ({"messages": []}, "field 'messages' must be a non-empty list"),
    ({"messages": "hi"}, "field 'messages' must be a non-empty list"),
    ({"messages": ["hi"]}, "messages[0] must be an object, got 'hi'"),
    ({"messages": [{"content": "a"}]}, "messages[0]: missing field 'role'"),
    ({"messages": [{"role": "user"}]}, "messages[0]: missing field 'content'"),
    ({"messages": [{"role": "user", "content": 3}]},
     "messages[0]: field 'content' must be a string, got 3"),
    ({"messages": [U, {"role": "tool", "content": "x"}]},
     "messages[1]: unknown role 'tool'; expected 'system', 'user' or 'assistant'"),
    ({"messages": [U, S, A]}, "messages[1]: role 'system' is only allowed as the first message"),
    ({"messages": [S, A]}, "messages[1]: role 'assistant' before any 'user' message; the "
     "conversation starts with 'user' (after an optional 'system')"),
    ({"messages": [U, A, U, U, A]}, "messages[3]: role 'user' follows 'user'; roles must alternate"),
    ({"messages": [U, A, A]}, "messages[2]: role 'assistant' follows 'assistant'; roles must "
     "alternate"),
    ({"messages": [S, U]}, "no assistant message in 'messages'"),
    ({"messages": [U, dict(A, content=" \n")]}, "messages[1]: empty assistant content"),
    ({"messages": [dict(U, reward=1), A]},
     "messages[0]: a reward on a 'user' message; rewards go on assistant messages"),
    ({"messages": [U, dict(A, reward="x")]}, "messages[1]: field 'reward' must be a number, got 'x'"),
    ({"messages": [U, dict(A, reward=True)]},
     "messages[1]: field 'reward' must be a number, got True"),
    ({"messages": [U, dict(A, reward=float("nan"))]},
     "messages[1]: field 'reward' must be finite, got nan"),
    ({"messages": [U, A], "done": "no"}, "field 'done' must be true or false, got 'no'"),
]


@pytest.mark.parametrize("row,message", BAD_ROWS)
def test_bad_chat_row_is_one_line(tmp_path, row, message):
  path = write_jsonl(tmp_path / "bad.jsonl", [ROW, "", json.dumps(row)])
  with pytest.raises(JsonlFormatError) as err:
    read_jsonl(path, chat_template=TEMPLATE)
  assert str(err.value) == f"{path}:3: {message}"
  columns, skipped = read_jsonl(path, skip_invalid=True, chat_template=TEMPLATE)
  assert skipped == [f"{path}:3: {message}"] and len(columns["inputs"]) == 1


def test_batch_weights_cover_only_assistant_tokens(tmp_path):
  vocab = make_vocabulary("hf_tokenizer", CHAT_DIR)
  ids = lambda text: list(vocab.encode(text))
  path = write_jsonl(tmp_path / "chat.jsonl", [ROW])
  task = register_jsonl_reward_task("test_chat_rows", path, vocab, chat_template_from=CHAT_DIR)
  b = next(BatchIterator(task, "train", "encdec", {"inputs": 40, "targets": 48}, 1,
                         shuffle=False, repeat=False))
  eos, im_end = vocab.eos_id, ids("<|im_end|>")
  assert len(im_end) == 1  # a special token, one id
  first, between, second = (ids(text) for text, _, _ in TURNS)
  targets = first + between + second + [eos]
  weights = [1] * len(first) + [0] * len(between) + [1] * (len(second) + 1)
  rewards = np.zeros(len(targets), np.float32)
  rewards[len(first) - 1], rewards[-1] = 0.5, 1.0  # on each assistant turn's last token
  n = len(targets)
  np.testing.assert_array_equal(b["encoder_input_tokens"][0][:len(ids(PROMPT)) + 1],
                                ids(PROMPT) + [eos])
  np.testing.assert_array_equal(b["decoder_target_tokens"][0][:n], targets)
  np.testing.assert_array_equal(b["decoder_loss_weights"][0], weights + [0] * (48 - n))
  np.testing.assert_array_equal(b["decoder_rewards"][0][:n], rewards)
  # The weighted tokens are exactly the assistant texts with their <|im_end|>\n, then EOS.
  weighted = b["decoder_target_tokens"][0][b["decoder_loss_weights"][0] == 1]
  assert list(weighted) == ids("hello!<|im_end|>\ngoodbye.<|im_end|>\n") + [eos]
  assert list(weighted).count(im_end[0]) == 2
