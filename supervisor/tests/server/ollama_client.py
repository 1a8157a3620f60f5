"""Drives ollamad with Ollama's official Python client (the `ollama` package).

Usage: ollama_client.py BASE_URL SMOLLM2_GGUF GEMMA3_GGUF TOOL_TEMPLATE. Prints OK when
every call worked as the client expects; any failure raises with the client's message.
"""
import json
import sys
import time

import jsonschema
import ollama
from pydantic import BaseModel, ConfigDict, Field, conlist, constr

base, gguf, gemma_gguf, tool_template = sys.argv[1:5]
client = ollama.Client(host=base)

digest = client.create_blob(gguf)
assert digest.startswith("sha256:"), digest

progress = list(client.create(model="smollm2", files={"model.gguf": digest},
                              parameters={"temperature": 0}, stream=True))
assert progress[-1].status == "success", progress

names = [m.model for m in client.list().models]
assert "smollm2:latest" in names, names

reply = client.generate(model="smollm2", prompt="What is the capital of France?",
                        options={"num_predict": 8})
# Greedy SmolLM2 may end its answer (EOS, "stop") within the budget.
assert reply.done and 0 < reply.eval_count <= 8, reply
assert reply.response, reply

pieces = list(client.generate(model="smollm2", prompt="What is the capital of France?",
                              options={"num_predict": 8}, stream=True))
assert pieces[-1].done and pieces[-1].done_reason in ("length", "stop"), pieces[-1]
assert "".join(p.response for p in pieces) == reply.response

running = client.ps().models
assert [m.model for m in running] == ["smollm2:latest"], running
assert running[0].size > 0 and running[0].expires_at is not None, running[0]

question = [{"role": "system", "content": "You are a geography teacher."},
            {"role": "user", "content": "What is the capital of France?"}]
answer = client.chat(model="smollm2", messages=question, options={"num_predict": 12})
assert answer.done and answer.message.role == "assistant", answer
assert "Paris" in answer.message.content, answer
assert 0 < answer.eval_count <= 12 and answer.prompt_eval_count > 10, answer

parts = list(client.chat(model="smollm2", messages=question, options={"num_predict": 12},
                         stream=True))
assert parts[-1].done and parts[-1].done_reason in ("length", "stop"), parts[-1]
assert all(p.message.role == "assistant" for p in parts), parts
assert "".join(p.message.content for p in parts) == answer.message.content

texts = ["Paris is the capital of France.", "The cat sat on the mat.",
         "Paris is the capital of France."]
embedded = client.embed(model="smollm2", input=texts)
vectors = embedded.embeddings
assert len(vectors) == 3 and len(vectors[0]) == 576, [len(v) for v in vectors]
assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
assert embedded.prompt_eval_count > 10, embedded

short = client.embed(model="smollm2", input="Paris", dimensions=64).embeddings[0]
assert len(short) == 64 and abs(sum(x * x for x in short) - 1.0) < 1e-3

legacy = client.embeddings(model="smollm2", prompt="Paris is the capital of France.")
assert len(legacy.embedding) == 576, len(legacy.embedding)

# Structured output: "json" and a schema, on both models, whole and streamed.
gemma_digest = client.create_blob(gemma_gguf)
# This Gemma 3 GGUF carries no chat template: Gemma's turns, written in Jinja.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m.role == 'assistant' else 'user' }}\n{{ m.content }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
assert client.create(model="gemma3", files={"gemma.gguf": gemma_digest},
                     template=GEMMA_TEMPLATE,
                     parameters={"temperature": 0}).status == "success"


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")  # additionalProperties: false
    name: constr(max_length=24)
    country: constr(max_length=24)
    population: int = Field(ge=0, le=100_000_000)
    landmarks: conlist(constr(max_length=24), max_length=3)


# The grammar ends the generation when the document is complete. A schema with bounds
# keeps a tiny model from writing forever (Gemma 3 270M loops on free-form JSON).
ask = [{"role": "user", "content": "Describe Paris as JSON."}]
room = {"num_ctx": 1024, "num_predict": 400}
whole = client.chat(model="smollm2", format="json", options=room, messages=[
    {"role": "user", "content": "Give the name and country of Paris as a JSON object."}])
assert whole.done_reason == "stop", whole
assert isinstance(json.loads(whole.message.content), dict), whole
for model in ("smollm2", "gemma3"):
    city = client.chat(model=model, messages=ask, format=City.model_json_schema(),
                       options=room)
    assert city.done_reason == "stop", city
    City.model_validate_json(city.message.content)
    parts = list(client.generate(model=model, prompt="Describe Paris as JSON.",
                                 format=City.model_json_schema(), stream=True,
                                 options=room))
    assert parts[-1].done_reason == "stop", parts[-1]
    text = "".join(p.response for p in parts)
    jsonschema.validate(json.loads(text), City.model_json_schema())

try:
    client.chat(model="smollm2", messages=ask, format={"type": "object", "minProperties": "x"})
    raise AssertionError("a schema that cannot be compiled is refused")
except ollama.ResponseError as e:
    assert e.status_code == 400, e

# Tools: SmolLM2 with Qwen 2.5's tool template, after two worked examples.
with open(tool_template, encoding="utf-8") as f:
    assert client.create(model="smol-tools", from_="smollm2",
                         template=f.read()).status == "success"


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
      city: The city
    """
    return "sunny"


def worked(city):
    return {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": city}}}]}


history = [{"role": "user", "content": "Weather in London?"}, worked("London"),
           {"role": "user", "content": "Weather in Berlin?"}, worked("Berlin"),
           {"role": "user", "content": "Weather in Paris?"}]
called = client.chat(model="smol-tools", messages=history, tools=[get_weather],
                     options={"temperature": 0, "num_predict": 40})
calls = called.message.tool_calls
assert calls and calls[0].function.name == "get_weather", called
assert calls[0].function.arguments == {"city": "Paris"}, calls
history += [called.message, {"role": "tool", "content": get_weather("Paris"),
                             "tool_name": "get_weather"}]
after = client.chat(model="smol-tools", messages=history, tools=[get_weather],
                    options={"temperature": 0, "num_predict": 20})
assert after.done, after

# Context: the answer's tokens continue the conversation.
first = client.generate(model="smollm2", prompt="My name is Ada.", options={"num_predict": 4})
assert first.context and len(first.context) > 4, first
follow = client.generate(model="smollm2", prompt="What is my name?", context=first.context,
                         options={"num_predict": 4})
assert follow.prompt_eval_count > len(first.context), follow

# keep_alive 0 unloads.
unloaded = client.generate(model="gemma3", prompt="", keep_alive=0)
assert unloaded.done_reason == "unload", unloaded
for _ in range(100):
    if "gemma3:latest" not in [m.model for m in client.ps().models]:
        break
    time.sleep(0.05)
else:
    raise AssertionError(f"keep_alive 0 unloads within 5 s: {client.ps()}")

try:
    client.generate(model="missing", prompt="hi")
    raise AssertionError("a missing model must fail")
except ollama.ResponseError as e:
    assert e.status_code == 404 and "not found" in e.error, e

shown = client.show("smollm2")
assert shown.modelinfo["general.architecture"] == "llama", shown.modelinfo
assert shown.modelinfo["general.parameter_count"] == 134515008, shown.modelinfo
assert shown.modelinfo["llama.context_length"] > 0, shown.modelinfo
assert shown.modelinfo["tokenizer.ggml.tokens"] is None, "the vocabulary only with verbose"
assert "completion" in shown.capabilities and "embedding" not in shown.capabilities, shown
assert shown.details.family == "llama" and shown.details.quantization_level == "Q4_1", shown
assert shown.parameters.split() == ["temperature", "0"], shown.parameters
assert "\nFROM /" in shown.modelfile and "PARAMETER temperature 0" in shown.modelfile, shown
assert shown.template and shown.modified_at is not None, shown

assert client.copy("smollm2", "smollm2-copy").status == "success"
listed = {m.model: m for m in client.list().models}
assert {"smollm2:latest", "smollm2-copy:latest"} <= set(listed), listed
assert listed["smollm2-copy:latest"].digest == listed["smollm2:latest"].digest, listed
assert client.show("smollm2-copy").modelinfo["general.parameter_count"] == 134515008

assert client.delete("smollm2-copy").status == "success"
names = [m.model for m in client.list().models]
assert "smollm2-copy:latest" not in names and "smollm2:latest" in names, names
again = client.generate(model="smollm2", prompt="What is the capital of France?",
                        options={"num_predict": 8})
assert again.response == reply.response, "the original keeps the blobs it shared"

for call in (lambda: client.show("missing"), lambda: client.delete("missing"),
             lambda: client.copy("missing", "other")):
    try:
        call()
        raise AssertionError("a missing model must fail")
    except ollama.ResponseError as e:
        assert e.status_code == 404 and "not found" in e.error, e

print("OK")
