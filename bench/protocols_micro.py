"""The protocol bridges' own cost: translation only, per request, in CPU microseconds.

What a ``POST /v1/responses`` or ``POST /v1/messages`` costs on top of the chat completions
request it becomes: the request translated to chat, the chat answer translated back (JSON:
parse, translate, serialise), and a streamed answer (role chunk, 8 content chunks, finish
chunk, usage chunk, ``[DONE]``: what bench/mock_nginx.py serves) translated event by event.
No HTTP, no store: the pipeline's own cost is the chat benchmark's (bench/run.py).

    python bench/protocols_micro.py [--requests 20000]

CPU time is noisy on a shared machine; instructions are not. ``--only CASE`` runs one case
``--requests`` times, untimed, all in one event loop: run it under callgrind for two counts and
divide the difference (the imports cancel out):

    valgrind --tool=callgrind python bench/protocols_micro.py --only responses_stream --requests 50
    valgrind --tool=callgrind python bench/protocols_micro.py --only responses_stream --requests 250
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.protocols import messages, responses
from gateway.protocols.messages_stream import MessagesStream
from gateway.protocols.responses_answer import from_chat_completion
from gateway.protocols.responses_stream import ResponsesStream

TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
RESPONSES_BODY: dict[str, Any] = {
    "model": "text",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What is the weather?"}]}
    ],
    "tools": [TOOL],
    "max_output_tokens": 256,
    "temperature": 0.2,
}
MESSAGES_BODY: dict[str, Any] = {
    "model": "text",
    "system": "Be brief.",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "What is the weather?"}],
    "tools": [{"name": "get_weather", "input_schema": TOOL["parameters"]}],
}
CHAT_ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock/model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Sunny and 22 degrees in Paris."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    document = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + orjson.dumps(document) + b"\n\n"


SSE = [
    _chunk({"role": "assistant", "content": ""}),
    *(_chunk({"content": f"word{i} "}) for i in range(8)),
    _chunk({}, "stop"),
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":8,'
    b'"total_tokens":28}}\n\n',
    b"data: [DONE]\n\n",
]


async def _relay() -> AsyncIterator[bytes]:
    for chunk in SSE:
        yield chunk


def responses_json() -> None:
    call = responses.translate_request(RESPONSES_BODY, [])
    orjson.dumps(call.chat)
    orjson.dumps(from_chat_completion(orjson.loads(CHAT_ANSWER), call, "resp_1", 1))


def messages_json() -> None:
    call = messages.translate_request(MESSAGES_BODY)
    orjson.dumps(call.chat)
    orjson.dumps(messages.from_chat_completion(orjson.loads(CHAT_ANSWER)))


async def responses_stream() -> None:
    call = responses.translate_request({**RESPONSES_BODY, "stream": True}, [])
    async for _ in ResponsesStream(call, "resp_1", 1, "text").events(_relay()):
        pass


async def messages_stream() -> None:
    messages.translate_request({**MESSAGES_BODY, "stream": True})
    async for _ in MessagesStream("msg_1", "text").events(_relay()):
        pass


def measure(name: str, run: Callable[[], Any], requests: int) -> None:
    loop = asyncio.new_event_loop()
    once = (lambda: loop.run_until_complete(run())) if asyncio.iscoroutinefunction(run) else run
    for _ in range(requests // 10):
        once()
    started = time.process_time()
    for _ in range(requests):
        once()
    micros = (time.process_time() - started) / requests * 1e6
    loop.close()
    print(f"{name:<40} {micros:8.1f} µs CPU per request")


CASES: dict[str, Callable[[], Any]] = {
    "responses_json": responses_json,
    "responses_stream": responses_stream,
    "messages_json": messages_json,
    "messages_stream": messages_stream,
}


def run_only(run: Callable[[], Any], requests: int) -> None:
    async def all_of_them() -> None:
        for _ in range(requests):
            if asyncio.iscoroutinefunction(run):
                await run()
            else:
                run()

    asyncio.run(all_of_them())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--only", choices=sorted(CASES), help="one case, untimed (callgrind)")
    arguments = parser.parse_args()
    count = arguments.requests
    if arguments.only:
        run_only(CASES[arguments.only], count)
        return
    measure("responses: request + JSON answer", responses_json, count)
    measure("responses: request + stream (12 chat events)", responses_stream, count)
    measure("messages: request + JSON answer", messages_json, count)
    measure("messages: request + stream (12 chat events)", messages_stream, count)


if __name__ == "__main__":
    main()
