#!/usr/bin/env python3
"""The crash loop behind scripts/crash-loop.sh (Python 3 standard library only).

primary: a node homing 88.100.1 takes REST writes (PUT over plain HTTP from loopback) at a
  steady rate from a few writers; it is SIGKILLed at a random moment, restarted, and every
  write it acknowledged (HTTP 200/201) since the last check is read back (GET) and compared
  value by value with what was sent, plus a sample of older ones; at the end all of them.
  Writes that were in flight at the kill may be present or absent, but never half-applied:
  a record that exists holds exactly what one of its writes sent.

follower: a primary homing 88.100 and a follower with [[sync.follow]] of 88.100 (plain
  HTTP, sync.allow_plain); the primary takes the writes (never killed), the follower is
  SIGKILLed at random moments while it applies the change feed, restarted, and must
  converge: every record the primary acknowledged is on the follower with the same values
  (and the /sync/digest of both sides matches when the endpoint answers).

Each record is its own handle, created once, plus one handle per writer that is rewritten
on every turn (the acknowledged value, or one written after it, must be there).
Prints cycles, acknowledged writes and writes lost per loop; exit status 1 if any write is
lost, 2 if the loop itself could not run (a node that does not come back counts as that).
"""

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    print(f"[crash] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Node:
    def __init__(self, binary, work, name, config):
        self.binary, self.work, self.name = binary, work, name
        self.config = os.path.join(work, f"{name}.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.proc = None
        self.starts = 0

    def start(self, port, timeout=60):
        logf = open(os.path.join(self.work, f"{self.name}.log"), "a")
        logf.write(f"\n--- start {self.starts}\n")
        logf.flush()
        self.proc = subprocess.Popen([self.binary, "serve", "--config", self.config],
                                     cwd=self.work, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        self.starts += 1
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} on start "
                                   f"(see {self.name}.log)")
            try:
                status, _ = request(port, "GET", "/healthz", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout} s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request(port, method, path, body=None, auth=None, timeout=5, bearer=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def values_of(content):
    """The values a write sends for `content` (index, type, text)."""
    return [(1, "URL", f"https://example.com/c/{content}"), (2, "DESC", content * 2)]


def stored_values(data):
    """(index, type, text) of a GET answer's values, or None when it is not a record."""
    try:
        j = json.loads(data)
        out = []
        for v in j["values"]:
            d = v["data"]
            text = d["value"] if isinstance(d, dict) else d
            out.append((v["index"], v["type"], text))
        return sorted(out)
    except (ValueError, KeyError, TypeError):
        return None


class Writers:
    """Writers at a steady total rate against `port`, recording what was acknowledged."""

    def __init__(self, port, prefix, auth, rate, threads=4):
        self.port, self.prefix, self.auth = port, prefix, auth
        self.rate, self.nthreads = rate, threads
        self.lock = threading.Lock()
        self.up = threading.Event()
        self.stop_ev = threading.Event()
        self.acked = {}  # handle -> content (fresh handles)
        self.fresh = []  # handles acknowledged since the last check
        self.rewritten = {}  # handle -> (acknowledged content, [contents sent after it])
        self.in_flight_lost = 0  # writes that got no answer (kill), either state allowed
        self.acks = 0
        self.errors = []
        self.threads = []

    def start(self):
        self.up.set()
        for w in range(self.nthreads):
            t = threading.Thread(target=self.run, args=(w,), daemon=True)
            t.start()
            self.threads.append(t)

    def run(self, w):
        n = 0
        period = self.nthreads / self.rate
        mod = f"{self.prefix}/crash-rw-{w}"
        next_t = time.monotonic()
        while not self.stop_ev.is_set():
            if not self.up.is_set():
                self.up.wait(1)
                next_t = time.monotonic()
                continue
            n += 1
            content = f"{w}-{n}-{random.getrandbits(48):012x}"
            rewrite = n % 4 == 0
            handle = mod if rewrite else f"{self.prefix}/crash-{w}-{n}"
            body = {"values": [{"index": i, "type": t, "data": d}
                               for i, t, d in values_of(content)]}
            if rewrite:
                with self.lock:
                    acked, later = self.rewritten.get(handle, (None, []))
                    self.rewritten[handle] = (acked, later + [content])
            try:
                status, data = request(self.port, "PUT", f"/api/handles/{handle}", body,
                                       auth=self.auth, timeout=10)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.in_flight_lost += 1
                status = None
            if status in (200, 201):
                with self.lock:
                    self.acks += 1
                    if rewrite:
                        self.rewritten[handle] = (content, [])
                    else:
                        self.acked[handle] = content
                        self.fresh.append(handle)
            elif status is not None:
                with self.lock:
                    self.errors.append(f"PUT {handle}: HTTP {status} {data[:120]!r}")
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stop_ev.wait(delay)
            else:
                next_t = time.monotonic()

    def pause(self):
        self.up.clear()

    def resume(self):
        self.up.set()

    def finish(self):
        self.stop_ev.set()
        self.up.set()
        for t in self.threads:
            t.join(15)

    def take_fresh(self):
        with self.lock:
            fresh, self.fresh = self.fresh, []
            return fresh


def check(port, handle, allowed, auth=None):
    """None when the record holds one of the `allowed` contents, else what is wrong."""
    try:
        status, data = request(port, "GET", f"/api/handles/{handle}", auth=auth, timeout=10)
    except (OSError, http.client.HTTPException) as e:
        return f"GET failed: {e}"
    if status != 200:
        return f"HTTP {status}"
    got = stored_values(data)
    for content in allowed:
        if got == sorted(values_of(content)):
            return None
    return f"values differ: {got!r:.160}"


class Loop:
    def __init__(self, args, work, kind):
        self.args, self.work, self.kind = args, work, kind
        self.lost = []  # (handle, what is wrong)
        self.cycles = 0
        self.writers = None

    def verify(self, port, handles, auth=None, wait=0.0):
        """Check handles (fresh ones) on port; with wait > 0 retry each until it is right or
        `wait` seconds passed since the check began (a follower catching up)."""
        end = time.monotonic() + wait
        bad = []
        for h in handles:
            content = self.writers.acked[h]
            while True:
                err = check(port, h, [content], auth)
                if err is None or time.monotonic() >= end:
                    break
                time.sleep(0.05)
            if err:
                bad.append((h, err))
        return bad

    def verify_rewritten(self, port, auth=None, wait=0.0):
        end = time.monotonic() + wait
        bad = []
        with self.writers.lock:
            items = list(self.writers.rewritten.items())
        for h, (acked, later) in items:
            if acked is None:
                continue
            while True:
                err = check(port, h, [acked] + later, auth)
                if err is None or time.monotonic() >= end:
                    break
                time.sleep(0.05)
            if err:
                bad.append((h, err))
        return bad


def run_primary(args, work):
    port = free_port()
    data = os.path.join(work, "primary-data")
    node = Node(args.bin, work, "primary", f"""
[node]
data_dir = "{data}"
homed_prefixes = ["88.100.1"]
[http]
listen = "127.0.0.1:{port}"
[handle]
udp = false
tcp = false
[dns]
udp = false
tcp = false
""")
    node.start(port)
    secret = open(os.path.join(data, "88.100.1.admin-secret")).read().strip()
    auth = f"300%3A0.NA/88.100.1:{secret}"
    loop = Loop(args, work, "primary")
    w = loop.writers = Writers(port, "88.100.1", auth, args.rate)
    w.start()
    rnd = random.Random(args.seed)
    try:
        for cycle in range(1, args.cycles + 1):
            time.sleep(rnd.uniform(0.05, args.max_gap))
            node.kill()  # SIGKILL while the writers' PUTs are in flight
            w.pause()
            node.start(port)
            fresh = w.take_fresh()
            fresh_set = set(fresh)
            with w.lock:
                older = [h for h in w.acked if h not in fresh_set]
            sample = rnd.sample(older, min(len(older), 20))
            bad = loop.verify(port, fresh + sample) + loop.verify_rewritten(port)
            loop.lost += bad
            loop.cycles = cycle
            if bad:
                log(f"primary cycle {cycle}: {len(bad)} acknowledged write(s) lost or "
                    f"damaged, e.g. {bad[0]}")
            if cycle % 20 == 0 or cycle == args.cycles:
                log(f"primary: {cycle} cycles, {w.acks} acknowledged writes, "
                    f"{len(loop.lost)} lost")
            w.resume()
        w.finish()
        # Everything, once more, from a clean restart.
        node.kill()
        node.start(port)
        final = loop.verify(port, list(w.acked)) + loop.verify_rewritten(port)
        loop.lost += [b for b in final if b not in loop.lost]
    finally:
        w.finish()
        node.stop()
    return loop


def run_follower(args, work):
    p_port, f_port = free_port(), free_port()
    p_data = os.path.join(work, "upstream-data")
    f_data = os.path.join(work, "follower-data")
    os.makedirs(p_data, exist_ok=True)
    primary = Node(args.bin, work, "upstream", f"""
[node]
data_dir = "{p_data}"
homed_prefixes = ["88.100"]
[http]
listen = "127.0.0.1:{p_port}"
[handle]
udp = false
tcp = false
[dns]
udp = false
tcp = false
[sync]
allow_plain = true
[[sync.allow]]
identity = "300:0.NA/88.100"
prefixes = ["88.100"]
""")
    primary.start(p_port)
    secret_file = os.path.join(p_data, "88.100.admin-secret")
    secret = open(secret_file).read().strip()
    auth = f"300%3A0.NA/88.100:{secret}"
    follower = Node(args.bin, work, "follower", f"""
[node]
data_dir = "{f_data}"
homed_prefixes = []
[http]
listen = "127.0.0.1:{f_port}"
[handle]
udp = false
tcp = false
[dns]
udp = false
tcp = false
[sync]
allow_plain = true
[[sync.follow]]
upstream = "http://127.0.0.1:{p_port}"
identity = "300:0.NA/88.100"
secret_file = "{secret_file}"
prefixes = ["88.100"]
""")
    follower.start(f_port)
    loop = Loop(args, work, "follower")
    w = loop.writers = Writers(p_port, "88.100", auth, args.rate)
    w.start()
    rnd = random.Random(args.seed + 1)
    digests = {"equal": 0, "differ": 0, "unavailable": 0}
    try:
        for cycle in range(1, args.cycles + 1):
            time.sleep(rnd.uniform(0.05, args.max_gap))
            follower.kill()  # while it applies the batches of the ongoing writes
            follower.start(f_port)
            time.sleep(rnd.uniform(0.0, args.max_gap / 2))  # writes go on while it catches up
            w.pause()
            fresh = w.take_fresh()
            fresh_set = set(fresh)
            with w.lock:
                older = [h for h in w.acked if h not in fresh_set]
            sample = rnd.sample(older, min(len(older), 20))
            bad = loop.verify(f_port, fresh + sample, wait=args.converge) + \
                loop.verify_rewritten(f_port, wait=args.converge)
            loop.lost += bad
            digests[compare_digests(p_port, f_port, p_data, f_data)] += 1
            loop.cycles = cycle
            if bad:
                log(f"follower cycle {cycle}: {len(bad)} acknowledged write(s) missing or "
                    f"different on the follower after {args.converge} s, e.g. {bad[0]}")
            if cycle % 20 == 0 or cycle == args.cycles:
                log(f"follower: {cycle} cycles, {w.acks} acknowledged writes, "
                    f"{len(loop.lost)} lost")
            w.resume()
        w.finish()
        follower.kill()
        follower.start(f_port)
        final = loop.verify(f_port, list(w.acked), wait=args.converge) + \
            loop.verify_rewritten(f_port, wait=args.converge)
        loop.lost += [b for b in final if b not in loop.lost]
        loop.final_digest = compare_digests(p_port, f_port, p_data, f_data, wait=args.converge)
        loop.digests = digests
    finally:
        w.finish()
        follower.stop()
        primary.stop()
    return loop


def operator_token(data_dir):
    """The node's operator token (`<data_dir>/sync-operator.token`), which /sync/digest
    accepts from loopback for any prefix; None when the node has not written one."""
    try:
        with open(os.path.join(data_dir, "sync-operator.token")) as f:
            return f.read().strip()
    except OSError:
        return None


def digest_content(body):
    """A /sync/digest answer without its "seq" (the sequence it is exact at, which each node
    numbers on its own): what two nodes holding the same records agree on."""
    try:
        d = json.loads(body)
    except ValueError:
        return body
    if isinstance(d, dict):
        d.pop("seq", None)
    return d


def compare_digests(p_port, f_port, p_data, f_data, wait=2.0):
    """'equal', 'differ' or 'unavailable' for /sync/digest?prefix=88.100 on both nodes,
    each asked with its own operator token."""
    end = time.monotonic() + wait
    while True:
        try:
            path = "/sync/digest?prefix=88.100"
            sp, dp = request(p_port, "GET", path, bearer=operator_token(p_data))
            sf, df = request(f_port, "GET", path, bearer=operator_token(f_data))
        except (OSError, http.client.HTTPException):
            return "unavailable"
        if sp != 200 or sf != 200:
            return "unavailable"
        # The content must agree; "seq" is the sequence each node's digest is exact at, and
        # every node numbers its own changes.
        if digest_content(dp) == digest_content(df):
            return "equal"
        if time.monotonic() >= end:
            return "differ"
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--rate", type=float, default=100.0, help="writes per second in all")
    ap.add_argument("--max-gap", type=float, default=0.8,
                    help="longest time between a (re)start and the next kill, seconds")
    ap.add_argument("--converge", type=float, default=20.0,
                    help="how long a follower may take to catch up after a restart")
    ap.add_argument("--only", choices=["primary", "follower"])
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="idnode-crash.")
    log(f"{args.cycles} cycles per loop, {args.rate:g} writes/s, seed {args.seed}, in {work}")
    loops = []
    status = 0
    try:
        if args.only != "follower":
            loops.append(("primary (REST writes, node killed)", run_primary(args, work)))
        if args.only != "primary":
            loops.append(("follower (sync, follower killed)", run_follower(args, work)))
    except RuntimeError as e:
        log(f"ERROR: {e}")
        status = 2
        args.keep = True
    print()
    print(f"{'loop':<38} {'cycles':>7} {'acknowledged writes':>20} {'in flight at kill':>18} "
          f"{'writes lost':>12}")
    for name, loop in loops:
        w = loop.writers
        print(f"{name:<38} {loop.cycles:>7} {w.acks:>20} {w.in_flight_lost:>18} "
              f"{len(loop.lost):>12}")
    for name, loop in loops:
        for h, err in loop.lost[:10]:
            print(f"  LOST {name.split()[0]}: {h}: {err}")
        if loop.writers.errors:
            print(f"  {name.split()[0]}: {len(loop.writers.errors)} writes refused, e.g. "
                  f"{loop.writers.errors[0]}")
        if hasattr(loop, "digests"):
            d = loop.digests
            print(f"  follower /sync/digest after each cycle: {d['equal']} equal, "
                  f"{d['differ']} differ, {d['unavailable']} unavailable; at the end: "
                  f"{loop.final_digest}")
            if loop.final_digest == "differ":
                status = max(status, 1)
    lost = sum(len(loop.lost) for _, loop in loops)
    if lost:
        status = max(status, 1)
    print("RESULT: " + ("OK, no acknowledged write lost" if status == 0 else
                        f"FAIL ({lost} acknowledged writes lost)" if lost else "FAIL"))
    if args.keep:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
