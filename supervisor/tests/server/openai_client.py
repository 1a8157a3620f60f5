"""Drives ollamad's /v1 routes with OpenAI's official Python client (the `openai` package).

Usage: openai_client.py BASE_URL SMOLLM2_GGUF TOOL_TEMPLATE. Prints OK when every call
worked as the client expects; any failure raises with the client's message. The models are
created with Ollama's client (the /v1 API has no create).
"""
import json
import math
import sys

import jsonschema
import ollama
import openai
from openai import OpenAI

base, gguf, tool_template = sys.argv[1:4]
setup = ollama.Client(host=base)
digest = setup.create_blob(gguf)
assert setup.create(model="smollm2", files={"model.gguf": digest},
                    parameters={"temperature": 0}).status == "success"
with open(tool_template, encoding="utf-8") as f:
    assert setup.create(model="smol-tools", from_="smollm2",
                        template=f.read()).status == "success"

client = OpenAI(base_url=f"{base}/v1", api_key="ollamad", max_retries=0)
question = [{"role": "system", "content": "You are a geography teacher."},
            {"role": "user", "content": "What is the capital of France?"}]

# Chat, whole: the stored temperature 0 is kept (greedy), max_tokens ends it.
whole = client.chat.completions.create(model="smollm2", messages=question, max_tokens=12)
choice = whole.choices[0]
assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-"), whole
assert choice.message.role == "assistant" and "Paris" in choice.message.content, whole
assert choice.finish_reason == "length", whole
usage = whole.usage
assert usage.completion_tokens == 12 and usage.prompt_tokens > 10, usage
assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage

# Chat, streamed with usage: the same greedy text, then a chunk with only the usage.
chunks = list(client.chat.completions.create(
    model="smollm2", messages=question, max_completion_tokens=12, stream=True,
    stream_options={"include_usage": True}))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == choice.message.content, (text, choice.message.content)
reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert reasons == ["length"], reasons
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12, chunks[-1]
assert all(c.usage is None for c in chunks[:-1])

# Logprobs: three alternatives per token; greedy picks the most likely one.
scored = client.chat.completions.create(model="smollm2", messages=question, max_tokens=6,
                                        logprobs=True, top_logprobs=3)
content = scored.choices[0].logprobs.content
assert len(content) == 6, content
for entry in content:
    assert len(entry.top_logprobs) == 3, entry
    assert entry.logprob <= 0 and bytes(entry.bytes) == entry.token.encode(), entry
    best = max(t.logprob for t in entry.top_logprobs)
    assert math.isclose(entry.logprob, best, abs_tol=1e-4), entry
assert "".join(e.token for e in content) == scored.choices[0].message.content

# response_format: a bounded JSON schema; the answer validates. `options` (ours) gives
# the room.
schema = {"type": "object", "additionalProperties": False,
          "properties": {"name": {"type": "string", "maxLength": 24},
                         "country": {"type": "string", "maxLength": 24}},
          "required": ["name", "country"]}
city = client.chat.completions.create(
    model="smollm2", max_tokens=200,
    messages=[{"role": "user", "content": "Give the name and country of Paris as JSON."}],
    response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    extra_body={"options": {"num_ctx": 1024}})
assert city.choices[0].finish_reason == "stop", city
jsonschema.validate(json.loads(city.choices[0].message.content), schema)
loose = client.chat.completions.create(
    model="smollm2", max_tokens=200, response_format={"type": "json_object"},
    messages=[{"role": "user", "content": "Give the name and country of Paris as JSON."}])
assert isinstance(json.loads(loose.choices[0].message.content), dict), loose

# Tools: SmolLM2 with Qwen 2.5's tool template, after two worked examples, greedy.
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "The city"}}}}}]


def worked(city, n):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": f"call_{n}", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}


# As in tools.rs: the examples' calls without their results, so the model copies them.
history = [{"role": "user", "content": "Weather in London?"}, worked("London", 1),
           {"role": "user", "content": "Weather in Berlin?"}, worked("Berlin", 2),
           {"role": "user", "content": "Weather in Paris?"}]
called = client.chat.completions.create(model="smol-tools", messages=history, tools=tools,
                                        tool_choice="auto", max_tokens=40, temperature=0)
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", called
call = choice.message.tool_calls[0]
assert call.id.startswith("call_") and call.type == "function", call
assert call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"city": "Paris"}, call

streamed = list(client.chat.completions.create(model="smol-tools", messages=history,
                                               tools=tools, max_tokens=40, temperature=0,
                                               stream=True))
deltas = [d for c in streamed for d in (c.choices[0].delta.tool_calls or [])]
assert len(deltas) == 1 and deltas[0].index == 0, deltas
assert deltas[0].function.name == "get_weather", deltas
assert json.loads(deltas[0].function.arguments) == {"city": "Paris"}, deltas
assert streamed[-1].choices[0].finish_reason == "tool_calls", streamed[-1]

history += [choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
after = client.chat.completions.create(model="smol-tools", messages=history, tools=tools,
                                       max_tokens=20, temperature=0)
assert after.choices[0].message.role == "assistant", after

# Completions, whole and streamed.
done = client.completions.create(model="smollm2", prompt="The capital of France is",
                                 max_tokens=8)
assert done.object == "text_completion" and done.choices[0].text, done
assert done.usage.completion_tokens == 8 and done.choices[0].finish_reason == "length", done
pieces = list(client.completions.create(model="smollm2", prompt="The capital of France is",
                                        max_tokens=8, stream=True))
assert "".join(p.choices[0].text for p in pieces) == done.choices[0].text, pieces

# Embeddings: base64 (the client's default) and floats, unit vectors, dimensions.
texts = ["Paris is the capital of France.", "The cat sat on the mat."]
vectors = [d.embedding for d in client.embeddings.create(model="smollm2", input=texts).data]
floats = client.embeddings.create(model="smollm2", input=texts, encoding_format="float")
assert len(vectors) == 2 and len(vectors[0]) == 576, [len(v) for v in vectors]
assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vectors[0], floats.data[0].embedding))
assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3 and vectors[0] != vectors[1]
assert floats.usage.prompt_tokens > 10, floats.usage
short = client.embeddings.create(model="smollm2", input="Paris", dimensions=64).data[0]
assert len(short.embedding) == 64 and abs(sum(x * x for x in short.embedding) - 1) < 1e-3

# Models.
ids = [m.id for m in client.models.list()]
assert "smollm2:latest" in ids and "smol-tools:latest" in ids, ids
found = client.models.retrieve("smollm2")
assert found.id == "smollm2:latest" and found.object == "model" and found.owned_by, found

# Errors in OpenAI's shape.
try:
    client.chat.completions.create(model="missing", messages=question)
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.status_code == 404 and e.code == "model_not_found", e
    assert e.type == "invalid_request_error" and "missing" in e.message, e
try:
    client.models.retrieve("missing")
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e
try:
    client.chat.completions.create(model="smollm2", messages=question, n=2)
    raise AssertionError("n > 1 must fail")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.param == "n", e

print("OK")
