"""A request queue: users' requests arrive at a growing rate; workers take and answer them.

GET /next -> {"id": ..., "text": ...} (or {"id": null, "closed": bool} when none waits)
POST /answer/<id> (the answer as the body) -> {"ok": true}
GET /stats -> waiting, answered, latency so far.
Every arrival and answer is printed as one JSON line on stdout. Standard library only.
Usage: queue_service.py CONFIG.json ({"port", "load_s", "start_rate", "end_rate", "seed"}).
"""

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CFG = json.load(open(sys.argv[1]))
RNG = random.Random(CFG["seed"])
WORDS = ("apple river cloud stone garden window paper lantern harbor meadow copper violet "
         "orbit cedar falcon ember quartz willow").split()
FORMS = ["Reverse the word {w}.", "Spell the word {w} in capital letters.",
         "How many letters does the word {w} have?", "Give a word that rhymes with {w}.",
         "Translate the word {w} into French."]
LOCK = threading.Lock()
WAITING: list = []
TAKEN: dict = {}
DONE: dict = {}
STATE = {"closed": False, "t0": time.time(), "n": 0}


def emit(**event):
    event["t"] = round(time.time() - STATE["t0"], 3)
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def arrivals():
    load, r0, r1 = CFG["load_s"], CFG["start_rate"], CFG["end_rate"]
    while True:
        t = time.time() - STATE["t0"]
        if t >= load:
            break
        rate = r0 + (r1 - r0) * t / load
        time.sleep(RNG.expovariate(rate))
        if time.time() - STATE["t0"] >= load:
            break
        with LOCK:
            STATE["n"] += 1
            rid = f"{STATE['n']:06d}-{RNG.getrandbits(16):04x}"
            text = RNG.choice(FORMS).format(w=RNG.choice(WORDS))
            WAITING.append((rid, text, time.time()))
            emit(event="arrived", id=rid, waiting=len(WAITING))
    with LOCK:
        STATE["closed"] = True
        emit(event="load_end", waiting=len(WAITING), arrived=STATE["n"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body, code=200):
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path.startswith("/next"):
            with LOCK:
                if WAITING:
                    rid, text, at = WAITING.pop(0)
                    TAKEN[rid] = (text, at, time.time())
                    emit(event="taken", id=rid, waited_s=round(time.time() - at, 3),
                         waiting=len(WAITING))
                    return self.reply({"id": rid, "text": text})
                return self.reply({"id": None, "closed": STATE["closed"] and not TAKEN})
        if self.path.startswith("/stats"):
            with LOCK:
                lat = sorted(d for d in DONE.values())
                return self.reply({"waiting": len(WAITING), "in_progress": len(TAKEN),
                                   "answered": len(DONE), "arrived": STATE["n"],
                                   "median_latency_s": lat[len(lat) // 2] if lat else None})
        self.reply({"error": "not found"}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        answer = self.rfile.read(length).decode(errors="replace")
        rid = self.path.rsplit("/", 1)[-1]
        with LOCK:
            if not self.path.startswith("/answer/") or rid not in TAKEN:
                return self.reply({"error": "unknown request id"}, 404)
            text, at, _ = TAKEN.pop(rid)
            DONE[rid] = round(time.time() - at, 3)
            emit(event="answered", id=rid, latency_s=DONE[rid], answer=answer[:200])
        self.reply({"ok": True})


threading.Thread(target=arrivals, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", CFG["port"]), Handler).serve_forever()
