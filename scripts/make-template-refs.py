#!/usr/bin/env python3
"""Prints the reference renderings of the chat templates that supervisor::template's tests compare with.

    pip install jinja2 gguf   # versions used: jinja2 3.1.6, gguf 0.19.0
    scripts/make-template-refs.py

Renders each case the way Hugging Face transformers' `apply_chat_template` does (an
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols, a json.dumps
`tojson`, `raise_exception` and `strftime_now` globals, the special tokens as variables), with
Python's jinja2: an implementation independent of minijinja. The output is one line per case,
`<model>/<case>: <JSON string>`, to be pasted into supervisor/src/template/tests.rs.

Templates: SmolLM2's is `tokenizer.chat_template` in its GGUF. The Gemma 3 270M GGUF has no
template (it is the base model), so Gemma's is Gemma 3's instruction-tuned template
(google/gemma-3-*-it, tokenizer_config.json), kept in
supervisor/tests/data/gemma3-chat-template.jinja; BOS/EOS texts come from each GGUF.
Rendered text still holds a leading BOS: stripping it is the supervisor's job, tested there.
"""
import datetime
import json
import os
import pathlib

import gguf
import jinja2
import jinja2.ext
import jinja2.sandbox

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS_DIR = pathlib.Path(os.environ.get("OLLAMA_TEST_MODELS") or
                          pathlib.Path.home() / ".cache/ollamad/test-models")

SYSTEM = {"role": "system", "content": "You are a terse assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ANSWER = {"role": "assistant", "content": "  Paris.\n"}
FOLLOW_UP = {"role": "user", "content": "And of Italy? Answer with \"one\" word, ünïcödé 🙂"}

# Templates that exercise what HF templates rely on beyond the two models' own templates.
EXTRA_TEMPLATES = {
    "tojson": "{{ messages | tojson }}|{{ messages[0] | tojson(indent=2) }}|"
              "{{ {'b': [1, 2.5, none, true, 'x\\ny'], 'a': {}} | tojson(sort_keys=true) }}|{{ [] | tojson(indent=2) }}",
    "python_methods": "{% for m in messages %}[{{ m.content.strip() }}|{{ m.role.startswith('ass') }}|"
                      "{{ m.content.split(' ')[0] | upper }}|{{ m['content'].replace('a', 'A').rstrip() }}|"
                      "{{ m.get('role') }}|{{ m.get('tool_calls') }}|{% for k, v in m.items() %}{{ k }}={{ v | length }};{% endfor %}]\n"
                      "{% endfor %}",
    "whitespace": "{% for m in messages %}\n    {% if m.role == 'user' %}\n        U:{{ m.content }}\n    {% endif %}\n"
                  "{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}\n",
}

CASES = {
    "user": ([USER], True),
    "user_no_prompt": ([USER], False),
    "system_user": ([SYSTEM, USER], True),
    "multi_turn": ([SYSTEM, USER, ANSWER, FOLLOW_UP], True),
    "multi_turn_no_prompt": ([SYSTEM, USER, ANSWER, FOLLOW_UP], False),
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime.now().strftime(fmt)


def compile_template(source):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def gguf_field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def special_tokens(reader):
    tokens = reader.fields["tokenizer.ggml.tokens"]
    bos = gguf_field(reader, "tokenizer.ggml.bos_token_id")
    eos = gguf_field(reader, "tokenizer.ggml.eos_token_id")
    return tokens.contents(bos), tokens.contents(eos)


def main():
    smollm = gguf.GGUFReader(MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf")
    gemma = gguf.GGUFReader(MODELS_DIR / "gemma-3-270m-q4_k_m.gguf")
    assert gguf_field(gemma, "tokenizer.chat_template") is None, "the Gemma GGUF now has a template: use it"
    gemma_source = (ROOT / "supervisor/tests/data/gemma3-chat-template.jinja").read_text(encoding="utf-8")
    models = {
        "smollm2": (gguf_field(smollm, "tokenizer.chat_template"), special_tokens(smollm)),
        "gemma3": (gemma_source, special_tokens(gemma)),
    }
    print(f"# jinja2 {jinja2.__version__}")
    for model, (source, (bos, eos)) in models.items():
        template = compile_template(source)
        for case, (messages, add_generation_prompt) in CASES.items():
            text = template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                   bos_token=bos, eos_token=eos)
            print(f"{model}/{case}: {json.dumps(text, ensure_ascii=False)}")
        try:
            template.render(messages=[USER, USER], add_generation_prompt=True, bos_token=bos, eos_token=eos)
            print(f"{model}/user_user: accepted")
        except jinja2.exceptions.TemplateError as e:
            print(f"{model}/user_user: raises {json.dumps(str(e))}")
    conversation = CASES["multi_turn"][0]
    for name, source in EXTRA_TEMPLATES.items():
        text = compile_template(source).render(messages=conversation, add_generation_prompt=True)
        print(f"extra/{name}: {json.dumps(text, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
