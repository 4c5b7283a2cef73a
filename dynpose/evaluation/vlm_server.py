"""A small OpenAI-compatible chat-completions server on 127.0.0.1: test fault modes and an oracle VLM.

    with vlm_server(mode="correct", answers={...}) as server:
        cfg = VlmConfig(base_url=server.base_url, model="test-vlm", ...)
        ...
        assert server.requests == 1

It listens on 127.0.0.1 on a free port, serves ``POST /v1/chat/completions`` (text and image
parts), counts every request (``server.requests``) and keeps the parsed bodies and headers
(``server.bodies``, ``server.headers`` with lower-case names). Its behaviour is set at start or at any time with
``server.set(mode=..., ...)``:

- ``correct``: answers with ``answers``, a dict (sent as the JSON content) or a callable taking
  the request body and returning the dict; default: every question false (or suitability 10 when
  the request asks for the score schema).
- ``garbage``: content that is not JSON.
- ``http500``: HTTP 500 with an error body, every time.
- ``429``: HTTP 429 with ``Retry-After: 1`` for the first ``fail_first`` requests, then as ``correct``.
- ``hang``: waits ``hang_s`` seconds (past the client's timeout) before answering; it stops
  waiting when the server stops.
- ``oracle``: answers from ``labels``, a mapping from a key to the true answers (a dict of the
  question columns; optional ``suitability``). The key is found as a substring of the request's
  text parts: use the video id (the filter writes "Video id: <id>" into the prompt) or the caption.
  Binary requests get the labelled questions (missing ones false); score requests get the
  label's ``suitability``, else 10 when no labelled question is true and 0 otherwise. A prompt
  that matches no key is answered with HTTP 404. Object requests (DynaPo masks, the schema's one
  property is ``frames``) get, for each "Image k: frame f" line of the prompt, the label's
  ``objects``: a mapping or a callable from the source frame number f to a list of
  ``{"label", "box"}`` dicts (no objects when the label has none). It is a perfect VLM, for upper
  bounds only.

The server runs in a daemon thread and stops when the ``with`` block ends (or at exit).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("correct", "garbage", "http500", "429", "hang", "oracle")
OPTIONS = ("mode", "answers", "labels", "fail_first", "hang_s")


def _questions(body: dict) -> list[str]:
    schema = (body.get("response_format") or {}).get("json_schema") or {}
    return list(((schema.get("schema") or {}).get("properties") or {}).keys())


def _text(body: dict) -> str:
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)


def _images(body: dict) -> int:
    return sum(
        1
        for m in body.get("messages") or []
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict) and p.get("type") == "image_url"
    )


def _oracle_objects(text: str, objects) -> list[dict]:
    frames = [int(f) for f in re.findall(r"^Image \d+: frame (\d+)", text, re.MULTILINE)]
    found = objects if callable(objects) else (lambda f: (objects or {}).get(f, []))
    return [{"image": k, "objects": list(found(f))} for k, f in enumerate(frames, 1)]


class VlmServer:
    def __init__(self, mode: str = "correct", **options):
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.mode = "correct"
        self.answers = None
        self.labels: dict = {}
        self.fail_first = 1
        self.hang_s = 10.0
        self.set(mode=mode, **options)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def set(self, **options) -> None:
        """Change the behaviour: mode, answers, labels, fail_first, hang_s."""
        if options.get("mode", self.mode) not in MODES:
            raise ValueError(f"unknown mode {options['mode']!r}; expected one of {MODES}")
        with self.lock:
            for name, value in options.items():
                if name not in OPTIONS:
                    raise TypeError(f"unknown option {name!r}")
                setattr(self, name, value)

    def start(self) -> "VlmServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, body: dict) -> dict | None:
        questions = _questions(body)
        scored = questions == ["suitability"]
        if self.mode == "oracle":
            text = _text(body)
            label = next((v for k, v in self.labels.items() if str(k) in text), None)
            if label is None:
                return None
            if questions == ["frames"]:
                return {"frames": _oracle_objects(text, label.get("objects"))}
            if scored:
                yes = any(bool(v) for k, v in label.items() if k != "suitability")
                return {"suitability": label.get("suitability", 0 if yes else 10)}
            return {q: bool(label.get(q, False)) for q in questions}
        if callable(self.answers):
            return self.answers(body)
        if self.answers is not None:
            return self.answers
        return {"suitability": 10} if scored else {q: False for q in questions}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout)

            def _error(self, code: int, message: str, headers: dict | None = None) -> None:
                self._send(code, {"error": {"message": message, "type": "server_error", "code": code}}, headers)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with server.lock:
                    server.requests += 1
                    number = server.requests
                    mode = server.mode
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._error(404, f"no route {self.path}")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._error(400, "body is not JSON")
                with server.lock:
                    server.bodies.append(body)
                if mode == "http500":
                    return self._error(500, "internal error (test server)")
                if mode == "429" and number <= server.fail_first:
                    return self._error(429, "rate limited (test server)", {"Retry-After": "1"})
                if mode == "hang":
                    server.stopping.wait(server.hang_s)
                if mode == "garbage":
                    content = "Sure! The video looks fine to me."
                else:
                    answer = server._answer(body)
                    if answer is None:
                        return self._error(404, "oracle: no label matches the prompt")
                    content = json.dumps(answer)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-test-{number}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "test-vlm"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 100 + 85 * _images(body),
                            "completion_tokens": 20,
                            "total_tokens": 120 + 85 * _images(body),
                        },
                    },
                )

        return Handler


@contextlib.contextmanager
def vlm_server(mode: str = "correct", **options):
    server = VlmServer(mode, **options).start()
    try:
        yield server
    finally:
        server.stop()
