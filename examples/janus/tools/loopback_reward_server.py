#!/usr/bin/python3
"""Loopback reward server: a TEST DOUBLE of the GenEval reward server's protocol, not GenEval.

It speaks exactly the protocol of the authors' server (github yifan123/reward-server,
app_geneval.py; spec janus-trainer.md section 4.2): an HTTP POST to "/" whose raw body is
pickle.dumps({"images": [jpeg bytes, ...], "meta_datas": [dict, ...], "only_strict": bool});
the reply is HTTP 200 with pickle.dumps({"scores", "rewards", "strict_rewards",
"group_rewards", "group_strict_rewards"}) or, on any exception, HTTP 500 with the traceback
text. The JPEGs are decoded with libjpeg-turbo (libturbojpeg.so.0, through ctypes; Pillow is not
needed).

Its scorer is deliberately simple and deterministic (no detector):
  * target colour: the "color" of the first clause of metadata["include"] that has one, taken
    from COLOURS below; a pixel "has" the colour when every channel is within TOLERANCE (48) of
    it. Without any colour in the include clauses, a pixel counts when it is NOT near black
    (0, 0, 0) with the same tolerance ("something was drawn").
  * f = fraction of the image's pixels that count;
  * scores[i] = f; rewards[i] = 1.0 if f >= 0.5 else 0.0 (0.0 whenever only_strict is true, as
    the real server); strict_rewards[i] = 1.0 if f >= 0.9 else 0.0;
  * group_rewards / group_strict_rewards: for each of the six GenEval tags, a list with, per
    image, its reward when the image's metadata["tag"] is that tag and -10.0 otherwise (as the
    real server). A metadata without "tag" or with an unknown colour raises, hence HTTP 500.

Usage: loopback_reward_server.py --port 0 [--fault KIND] [--reply-protocol P] [--request-log F]
Binds 127.0.0.1; the first line on stdout is the port it listens on (flushed), so --port 0
gives a free port. --fault KIND injects a failure into every reply:
  http500       HTTP 500 with a real traceback text, as the real server on an exception
  slow          sleeps --slow-seconds (default 5) before a normal reply (past a client's timeout)
  truncated     a Content-Length larger than the body sent, then the connection is closed
  cut           HTTP 200, correct Content-Length, but the pickle is cut in half
  malformed     HTTP 200 with a body that is not a pickle
  evil          HTTP 200 with a pickle whose "rewards" is an object whose __reduce__ returns
                (os.system, ("echo pwned > FILE",)) (FILE: --evil-file): what pickle.dumps gives
                for it is GLOBAL/STACK_GLOBAL "posix system" + REDUCE. The server only builds the
                bytes; it never loads them. A client that unpickles them unrestricted runs the
                command.
  wrong-length  "rewards" has one value fewer than the batch has images
  flaky-N       the first N requests get HTTP 500, later ones a normal reply (tests retries)
--reply-protocol P pickles replies with protocol P (0-5; default pickle.DEFAULT_PROTOCOL).
--request-log F appends one JSON line per request received: the number of images, each JPEG's
width, height, chroma subsampling and whether it is baseline, the metadata and only_strict.
"""

import argparse
import ctypes
import io
import json
import os
import pickle
import sys
import threading
import time
import traceback

from flask import Flask, Response, request
from werkzeug.serving import make_server

TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
COLOURS = {
    "red": (255, 0, 0), "orange": (255, 165, 0), "yellow": (255, 255, 0), "green": (0, 128, 0),
    "blue": (0, 0, 255), "purple": (128, 0, 128), "pink": (255, 192, 203), "brown": (165, 42, 42),
    "black": (0, 0, 0), "white": (255, 255, 255),
}
TOLERANCE = 48
SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0", 3: "gray", 4: "4:4:0", 5: "4:1:1"}

_tj = ctypes.CDLL("libturbojpeg.so.0")
_tj.tjInitDecompress.restype = ctypes.c_void_p
_tj.tjDestroy.argtypes = [ctypes.c_void_p]
_tj.tjGetErrorStr2.restype = ctypes.c_char_p
_tj.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
_tj.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong] + [ctypes.POINTER(ctypes.c_int)] * 4
_tj.tjDecompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p,
                              ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]


def decode_jpeg(data):
    """JPEG bytes -> (width, height, subsampling name, rgb bytes), via TurboJPEG."""
    if not isinstance(data, bytes):
        raise TypeError(f"an image is {type(data).__name__}, expected JPEG bytes")
    h = _tj.tjInitDecompress()
    if not h:
        raise RuntimeError("tjInitDecompress failed")
    try:
        w, ht, ss, cs = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if _tj.tjDecompressHeader3(h, data, len(data), ctypes.byref(w), ctypes.byref(ht), ctypes.byref(ss), ctypes.byref(cs)) != 0:
            raise ValueError("not a JPEG: " + _tj.tjGetErrorStr2(h).decode())
        buf = ctypes.create_string_buffer(w.value * ht.value * 3)
        if _tj.tjDecompress2(h, data, len(data), buf, w.value, 0, ht.value, 0, 0) != 0:  # TJPF_RGB = 0
            raise ValueError("JPEG decoding failed: " + _tj.tjGetErrorStr2(h).decode())
        return w.value, ht.value, SUBSAMPLING.get(ss.value, str(ss.value)), buf.raw
    finally:
        _tj.tjDestroy(h)


def is_baseline(data):
    """True when the first start-of-frame marker is SOF0 (baseline DCT)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker == 0xC0
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return False


def fraction(rgb, metadata):
    colour = None
    for clause in metadata.get("include", []):
        if "color" in clause:
            colour = clause["color"]
            break
    if colour is not None:
        if colour not in COLOURS:
            raise ValueError(f"unknown colour {colour!r}; known: {sorted(COLOURS)}")
        r0, g0, b0 = COLOURS[colour]
        hit = lambda r, g, b: abs(r - r0) <= TOLERANCE and abs(g - g0) <= TOLERANCE and abs(b - b0) <= TOLERANCE
    else:
        hit = lambda r, g, b: not (r <= TOLERANCE and g <= TOLERANCE and b <= TOLERANCE)
    n = len(rgb) // 3
    count = sum(1 for r, g, b in zip(rgb[0::3], rgb[1::3], rgb[2::3]) if hit(r, g, b))
    return count / n


def score(images, meta_datas, only_strict):
    if len(images) != len(meta_datas):
        raise ValueError(f"{len(images)} images but {len(meta_datas)} meta_datas")
    scores, rewards, strict = [], [], []
    group, group_strict = {t: [] for t in TAGS}, {t: [] for t in TAGS}
    for data, meta in zip(images, meta_datas):
        _, _, _, rgb = decode_jpeg(data)
        f = fraction(rgb, meta)
        tag = meta["tag"]
        reward = 0.0 if only_strict else (1.0 if f >= 0.5 else 0.0)
        strict_reward = 1.0 if f >= 0.9 else 0.0
        scores.append(f)
        rewards.append(reward)
        strict.append(strict_reward)
        for t in TAGS:
            group[t].append(reward if t == tag else -10.0)
            group_strict[t].append(strict_reward if t == tag else -10.0)
    return {"scores": scores, "rewards": rewards, "strict_rewards": strict,
            "group_rewards": group, "group_strict_rewards": group_strict}


class Evil:
    """pickle.dumps of this gives GLOBAL/STACK_GLOBAL 'posix system' + REDUCE: loading it runs a shell."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.path}",))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1; 0 picks a free one")
    ap.add_argument("--fault", default="none")
    ap.add_argument("--slow-seconds", type=float, default=5.0)
    ap.add_argument("--evil-file", default="/tmp/loopback_reward_server_pwned")
    ap.add_argument("--reply-protocol", type=int, default=pickle.DEFAULT_PROTOCOL)
    ap.add_argument("--request-log", default=None)
    args = ap.parse_args()
    fault = args.fault
    flaky = 0
    if fault.startswith("flaky-"):
        flaky = int(fault[len("flaky-"):])
        fault = "flaky"
    if fault not in ("none", "http500", "slow", "truncated", "cut", "malformed", "evil", "wrong-length", "flaky"):
        ap.error(f"unknown --fault {args.fault}")
    if not 0 <= args.reply_protocol <= pickle.HIGHEST_PROTOCOL:
        ap.error(f"--reply-protocol must be in 0..{pickle.HIGHEST_PROTOCOL}")

    app = Flask("loopback_reward_server")
    lock = threading.Lock()
    state = {"requests": 0}

    @app.route("/", methods=["POST"])
    def inference():
        with lock:
            state["requests"] += 1
            nth = state["requests"]
        body = request.get_data()
        try:
            data = pickle.loads(body)  # a test double trusts its test client, as the real server does
            images, meta_datas, only_strict = data["images"], data["meta_datas"], data["only_strict"]
            if args.request_log:
                entry = {"n": len(images), "only_strict": only_strict, "meta_datas": meta_datas, "jpegs": []}
                for d in images:
                    w, h, ss, _ = decode_jpeg(d)
                    entry["jpegs"].append({"width": w, "height": h, "subsampling": ss, "baseline": is_baseline(d)})
                with lock, open(args.request_log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            if fault == "http500" or (fault == "flaky" and nth <= flaky):
                raise RuntimeError(f"injected fault {args.fault} (request {nth})")
            reply = score(images, meta_datas, only_strict)
            if fault == "slow":
                time.sleep(args.slow_seconds)
            if fault == "wrong-length":
                reply["rewards"] = reply["rewards"][:-1]
            if fault == "evil":
                reply["rewards"] = Evil(args.evil_file)
            out = pickle.dumps(reply, protocol=args.reply_protocol)
            if fault == "malformed":
                out = b"<html>this is not a pickle</html>\n"
            if fault == "cut":
                out = out[: len(out) // 2]
            if fault == "truncated":
                resp = Response(out[: len(out) // 2], status=200, mimetype="application/octet-stream")
                resp.headers["Content-Length"] = str(len(out))
                resp.headers["Connection"] = "close"
                return resp
            return Response(out, status=200, mimetype="application/octet-stream")
        except Exception:
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            return Response(text.encode("utf-8"), status=500, mimetype="text/plain")

    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
