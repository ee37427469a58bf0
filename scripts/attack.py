#!/usr/bin/env python3
"""The attack suite behind scripts/attack-suite.sh (Python 3 standard library only).

Starts two idnode nodes in a temporary directory on free 127.0.0.1 ports:

  A  the authority: homes 88.100.1, HTTPS (a self-signed end-entity certificate), native
     UDP/TCP, DNS UDP/TCP, response-rate limiting on when the binary knows [rate_limit];
  B  a recursive node (homes nothing) whose root is A.

Legitimate traffic comes from 127.0.0.1 only: `idnode bench` in open loop over native UDP,
native TCP, DNS UDP and HTTPS against A and over native UDP with REC through B, plus an
administrator writing over native TCP (`idnode admin modify`) and over HTTPS (REST PUT).
Attacks come from other loopback networks (127.0.N.x; all of 127.0.0.0/8 is local on
Linux), one at a time, each while the legitimate load runs. Per attack one row: attacker
bytes in (what its sockets sent), bytes out (what its sockets received, datagrams the kernel
dropped at the attacker's sockets included as an estimate), amplification, legitimate
success and p99 per front end, and the attacked node's RSS before and after a settle.

Targets (PASS/FAIL): legitimate success >= 99 % during every attack; amplification <= 3x
for the sustained UDP floods from one source network; RSS after the settle within 10 % of
the RSS before the attack; single queries from a fresh network (an ordinary record and the
~15 KB one) still answered over UDP during every UDP flood.

Everything is loopback, every phase is bounded in time, and the nodes are stopped at exit.
"""

import argparse
import base64
import fcntl
import http.client
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

PREFIX = "88.100.1"
ZONE = "id.example."
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
TCP_INFO = getattr(socket, "TCP_INFO", 11)
TCP_ESTABLISHED = 1

RATE_LIMIT_TOML = """
[rate_limit]
enabled = true
responses_per_second = 200
bytes_per_second = 65536
burst_secs = 2
slip = 2
ipv4_prefix = 24
ipv6_prefix = 56
exempt = ["127.0.0.1/32", "::1/128"]
"""


def log(msg):
    print(f"[attack] {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# Native Handle protocol (../shared/reference/handle-protocol.md sections 1, 2, 4, 7)

OC_RESOLUTION = 1
OC_CREATE_HANDLE = 100
OC_VERIFY_CHALLENGE = 201
OC_SESSION_SETUP = 400
FLAG_CT = 0x40000000
FLAG_REC = 0x10000000
FLAG_CA = 0x08000000
FLAG_PO = 0x01000000
UDP_CHUNK = 492


def u32(n):
    return struct.pack(">I", n)


def lp(b):
    """A length-prefixed byte string (UTF8String / byte array)."""
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def native_message(opcode, flags, body, request_id, session_id=0):
    """Envelope + header + body + empty credential, version 2.11 (one piece; TCP, or UDP
    when it fits in 492 bytes)."""
    head = struct.pack(
        ">IIIHBBII", opcode, 0, flags, 0xFFFF, 0, 0, int(time.time()) + 43200, len(body)
    )
    msg = head + body + u32(0)
    env = struct.pack(">BBBBIIII", 2, 11, 2, 11, session_id, request_id, 0, len(msg))
    return env + msg


def resolution(handle, request_id, flags=FLAG_REC | FLAG_CA | FLAG_PO, types=()):
    body = lp(handle) + u32(0) + u32(len(types)) + b"".join(lp(t) for t in types)
    return native_message(OC_RESOLUTION, flags, body, request_id)


def handle_value(index, vtype, data, perms=0x0E):
    return (
        struct.pack(">IIBIB", index, int(time.time()), 0, 86400, perms)
        + lp(vtype)
        + lp(data)
        + u32(0)
    )


def create_request(handle, values, request_id):
    body = lp(handle) + u32(len(values)) + b"".join(values)
    return native_message(OC_CREATE_HANDLE, 0, body, request_id)


# RFC 2409 Oakley group 2, the group Handle.Net clients set sessions up in.
OAKLEY2_P = int(
    "ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd129024e088a67cc74020bbea63b139b22514a0879"
    "8e3404ddef9519b3cd3a431b302b0a6df25f14374fe1356d6d51c245e485b576625e7ec6f44c42e9a637ed6b"
    "0bff5cb6f406b7edee386bfb5a899fa5ae9f24117c4b1fe649286651ece65381ffffffffffffffff", 16)


def java_int(n):
    """A positive integer as Java's BigInteger.toByteArray writes it."""
    b = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return b"\0" + b if b[0] & 0x80 else b


def session_setup(request_id, identity=f"0.NA/{PREFIX}"):
    """OC_SESSION_SETUP as HandleResolver sends it: DH mode 4 in Oakley group 2, CT|RD."""
    x = random.getrandbits(160) | 1
    y = pow(2, x, OAKLEY2_P)
    key = lp("DH_PUB_KEY") + b"\0\0" + lp(java_int(y)) + lp(java_int(OAKLEY2_P)) + lp(b"\x02")
    body = struct.pack(">HI", 4, 86400) + lp(identity) + u32(300) + lp(key) + b"\0\0"
    return native_message(OC_SESSION_SETUP, 0x59800000, body, request_id)


def verify_challenge(request_id, iterations=200_000):
    """OC_VERIFY_CHALLENGE: handle, index 0 (= every HS_SECKEY of the handle), nonce, the
    original request's digest, and an HS_SECKEY answer naming PBKDF2-HMAC-SHA1 (alg 0x22)
    with `iterations` rounds (layout of SECKEY_ANSWER_HEX in handle-vectors.json)."""
    answer = (
        b"\x22"
        + lp(os.urandom(16))
        + u32(iterations)
        + u32(160)
        + lp(os.urandom(20))
    )
    body = (
        lp("0.NA/" + PREFIX)
        + u32(0)
        + lp(os.urandom(16))
        + lp(os.urandom(32))
        + lp(answer)
    )
    return native_message(OC_VERIFY_CHALLENGE, 0, body, request_id)


def parse_native_head(dgram):
    """(request_id, seq, message_length, response_code or None) of an answer datagram."""
    if len(dgram) < 20:
        return None
    _, _, _, _, _, rid, seq, mlen = struct.unpack(">BBBBIIII", dgram[:20])
    rc = None
    if seq == 0 and len(dgram) >= 28:
        rc = struct.unpack(">I", dgram[24:28])[0]
    return rid, seq, mlen, rc


# ---------------------------------------------------------------------------------------
# DNS


def dns_name(handle, zone=ZONE):
    """88.100.1/item-0001 -> item-0001.1.100.88.id.example. (lower-case suffixes only)."""
    prefix, suffix = handle.split("/", 1)
    labels = [suffix] + list(reversed(prefix.split("."))) + [zone.rstrip(".")]
    return ".".join(labels) + "."


def dns_query(name, qtype=16, qid=None, edns=None):
    qid = random.getrandbits(16) if qid is None else qid
    arcount = 1 if edns else 0
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, arcount)
    q = b""
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", qtype, 1)
    if edns:
        q += b"\x00" + struct.pack(">HHIH", 41, edns, 0, 0)
    return head + q


# ---------------------------------------------------------------------------------------
# Sockets from attacker networks


def rx_socket(src, rcvbuf=4 << 20):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    except OSError:
        pass
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    except OSError:
        pass
    s.bind((src, 0))
    s.setblocking(False)
    return s


class UdpCounters:
    def __init__(self):
        self.sent = 0
        self.bytes_in = 0
        self.send_errors = 0
        self.dgrams_out = 0
        self.bytes_out = 0
        self.drops = {}  # socket fileno -> kernel drop counter (SO_RXQ_OVFL)
        self.codes = {}
        self.secs = 0.0

    def dropped(self):
        return sum(self.drops.values())

    def est_bytes_out(self):
        """Bytes received plus the datagrams dropped at the attacker's full sockets, each
        counted at the mean size of those received."""
        if self.dgrams_out:
            return self.bytes_out + int(self.dropped() * self.bytes_out / self.dgrams_out)
        return self.bytes_out


def drain(sel, c, timeout, classify):
    for key, _ in sel.select(timeout):
        s = key.fileobj
        while True:
            try:
                data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            c.dgrams_out += 1
            c.bytes_out += len(data)
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == SO_RXQ_OVFL and len(cdata) >= 4:
                    c.drops[s.fileno()] = struct.unpack("=I", cdata[:4])[0]
            code = classify(data)
            if code is not None:
                c.codes[code] = c.codes.get(code, 0) + 1


def classify_native(data):
    h = parse_native_head(data)
    if h is None:
        return "short"
    return None if h[3] is None else f"RC{h[3]}"


def classify_dns(data):
    if len(data) < 4:
        return "short"
    flags = struct.unpack(">H", data[2:4])[0]
    rcode = flags & 0xF
    tc = "+TC" if flags & 0x0200 else ""
    return f"rcode{rcode}{tc}"


def classify_either(data):
    """Native answers start with major version 2 and carry a 20-byte envelope; anything
    else is taken for DNS."""
    if len(data) >= 28 and data[0] == 2 and struct.unpack(">I", data[16:20])[0] >= 24:
        return "native " + (classify_native(data) or "fragment")
    return "dns " + classify_dns(data)


def udp_flood(stop, targets, sources, rate, make_payload, classify, c):
    """Send make_payload(i) datagrams at `rate` per second, round-robin over sockets bound
    to `sources` and over `targets`, until `stop`; count what comes back."""
    socks = [rx_socket(src) for src in sources]
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    t0 = time.monotonic()
    i = 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate) - i
            for _ in range(min(due, 4000)):
                s = socks[i % len(socks)]
                payload = make_payload(i)
                target = targets[i % len(targets)]
                i += 1
                try:
                    s.sendto(payload, target)
                    c.sent += 1
                    c.bytes_in += len(payload)
                except OSError:
                    c.send_errors += 1
            drain(sel, c, 0.002, classify)
        c.secs = time.monotonic() - t0
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            drain(sel, c, 0.05, classify)
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()


def net_sources(net, count, first=1):
    """count addresses 127.0.net.first... (one /24)."""
    return [f"127.0.{net}.{first + k}" for k in range(count)]


# ---------------------------------------------------------------------------------------
# TCP connection attacks


def tcp_state(s):
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 8)
        return info[0]
    except OSError:
        return -1


def queued_bytes(s):
    try:
        buf = fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("=i", buf)[0]
    except OSError:
        return 0


def open_conns(target, sources, count, rcvbuf=None, deadline=8.0):
    """Open `count` TCP connections to target spread over `sources`; returns the
    established ones (non-blocking connects, waited for at most `deadline` seconds)."""
    pending = []
    for k in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            s.bind((sources[k % len(sources)], 0))
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        s.connect_ex(target)
        pending.append(s)
    sel = selectors.DefaultSelector()
    for s in pending:
        sel.register(s, selectors.EVENT_WRITE)
    done = []
    end = time.monotonic() + deadline
    while pending and time.monotonic() < end:
        for key, _ in sel.select(0.1):
            s = key.fileobj
            sel.unregister(s)
            pending.remove(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(s)
            else:
                s.close()
    for s in pending:
        sel.unregister(s)
        s.close()
    return done


def client_hello():
    """The bytes of a real TLS ClientHello (for dripping them one at a time)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def insecure_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.quick = args.quick
        self.dur = args.duration or (4.0 if self.quick else 20.0)
        # The full run settles past the node's longest-lived attack state (402 challenges live
        # 20 s, then the sweep and jemalloc's background purge return their memory), so "RSS
        # back within 10 %" measures what stays, not what is still expiring.
        self.settle = args.settle or (1.5 if self.quick else 30.0)
        self.legit_rate = args.legit_rate or (100 if self.quick else 300)
        self.recover_max = 10.0 if self.quick else 60.0
        self.scale = 1.0 if not self.quick else 0.5
        self.work = tempfile.mkdtemp(prefix="idnode-attack.")
        self.procs = {}
        self.configs = {}
        self.rss_start = {}
        self.logs = {}
        self.rows = []
        self.notes = []
        self.ports = {}
        self.ids = []
        self.secret = ""
        self.ctx = insecure_ctx()

    # ----- set-up --------------------------------------------------------------------

    def free_ports(self, n):
        held, ports = [], []
        while len(ports) < n:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                t.close()
                u.close()
                continue
            held += [t, u]
            ports.append(port)
        for s in held:
            s.close()
        return ports

    def make_cert(self):
        cnf = os.path.join(self.work, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write(
                "[req]\ndistinguished_name = dn\nx509_extensions = v3_ee\nprompt = no\n"
                "[dn]\nCN = localhost\n[v3_ee]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
            )
        subprocess.run(
            ["openssl", "req", "-x509", "-config", cnf, "-newkey", "rsa:2048", "-nodes",
             "-days", "2", "-keyout", os.path.join(self.work, "key.pem"),
             "-out", os.path.join(self.work, "cert.pem")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def check_config(self, path):
        r = subprocess.run([self.bin, "check-config", path], capture_output=True, text=True)
        return r.returncode == 0, r.stdout + r.stderr

    def write_config(self, name, build, optional):
        """Write build(keys) for the optional keys the binary knows: `idnode check-config`
        refuses unknown keys, so each one it names is left out, with a printed note
        (IDNODE_ATTACK_NEW_KEYS=off leaves them all out, =on never)."""
        path = os.path.join(self.work, f"{name}.toml")
        mode = os.environ.get("IDNODE_ATTACK_NEW_KEYS", "auto")
        keys = set(optional)
        if mode == "off":
            for key in sorted(keys):
                self.notes.append(f"node {name}: {key} left out (IDNODE_ATTACK_NEW_KEYS=off)")
            keys = set()
        while True:
            with open(path, "w") as f:
                f.write(build(keys))
            ok, out = self.check_config(path)
            if ok:
                return path
            dropped = False
            for key in sorted(keys):
                if mode == "auto" and re.search(r"unknown field `%s`" % key.split(".")[-1], out):
                    self.notes.append(
                        f"node {name}: this binary does not know `{key}`; left out "
                        "(what depends on it is measured without it)"
                    )
                    keys.discard(key)
                    dropped = True
            if not dropped:
                raise SystemExit(f"config {path} refused:\n{out}")

    def restart_nodes(self):
        for name in ("A", "B"):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.start_node(name, self.configs[name], "")
        self.warm_up()

    def warm_up(self):
        """Unrecorded legitimate load, so caches and allocator arenas are warm before the
        RSS a phase starts from is read."""
        dur, self.dur = self.dur, min(self.dur, 4.0)
        try:
            self.legit_load()()
        finally:
            self.dur = dur
        time.sleep(self.settle)
        self.rss_start = {n: self.rss(n) for n in ("A", "B")}

    def start_node(self, name, config, ready_url):
        self.configs[name] = config
        logf = open(os.path.join(self.work, f"{name}.log"), "a")
        self.logs[name] = logf.name
        p = subprocess.Popen(
            [self.bin, "serve", "--config", config], cwd=self.work,
            stdout=logf, stderr=subprocess.STDOUT,
        )
        self.procs[name] = p
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if p.poll() is not None:
                raise SystemExit(f"node {name} exited early:\n{open(logf.name).read()}")
            try:
                status, _ = self.http(name, "GET", "/healthz", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"node {name} did not become ready: {ready_url}")

    def http(self, node, method, path, body=None, auth=False, timeout=5):
        if node == "A":
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.ports["a_http"], context=self.ctx, timeout=timeout
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports["b_http"], timeout=timeout)
        headers = {}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        if auth:
            user = f"300%3A0.NA/{PREFIX}:{self.secret}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def put(self, handle, values, query=""):
        status, data = self.http("A", "PUT", f"/api/handles/{handle}{query}", {"values": values},
                                 auth=True)
        if status not in (200, 201):
            raise SystemExit(f"PUT {handle} failed: {status} {data[:300]!r}")

    def setup(self):
        p = self.free_ports(6)
        self.ports = dict(zip(["a_http", "a_handle", "a_dns", "b_http", "b_handle", "b_dns"], p))
        self.make_cert()
        w = self.work
        a_text = f"""
[node]
data_dir = "{w}/a-data"
homed_prefixes = ["{PREFIX}"]
bootstrap_admins = true

[http]
listen = "127.0.0.1:{p[0]}"
tls_cert = "{w}/cert.pem"
tls_key = "{w}/key.pem"

[handle]
listen = "127.0.0.1:{p[1]}"

[dns]
listen = "127.0.0.1:{p[2]}"
zone = "{ZONE}"
"""
        b_text = f"""
[node]
data_dir = "{w}/b-data"
homed_prefixes = []

[http]
listen = "127.0.0.1:{p[3]}"

[handle]
listen = "127.0.0.1:{p[4]}"

[dns]
listen = "127.0.0.1:{p[5]}"
zone = "{ZONE}"
"""
        b_rec = f"""
[recursion]
enabled = true
roots = ["127.0.0.1:{p[1]}"]
timeout_ms = 1000
attempts = 2
deadline_ms = 4000
"""
        rl = {"rate_limit"}
        a_cfg = self.write_config(
            "A", lambda k: a_text + (RATE_LIMIT_TOML if "rate_limit" in k else ""), rl)
        b_cfg = self.write_config(
            "B", lambda k: b_text + b_rec
            + ('allow = ["127.0.0.0/8"]\n' if "recursion.allow" in k else "")
            + (RATE_LIMIT_TOML if "rate_limit" in k else ""),
            {"rate_limit", "recursion.allow"})
        self.start_node("A", a_cfg, "https healthz")
        self.secret = open(f"{w}/a-data/{PREFIX}.admin-secret").read().strip()
        with open(f"{w}/secret", "w") as f:
            f.write(self.secret)
        self.start_node("B", b_cfg, "http healthz")

        # Data: the prefix's HS_SITE (so B can find A through its root), ordinary records,
        # the ~15 KB record, and the administrator's targets.
        site = {
            "index": 1, "type": "HS_SITE", "data": {"format": "site", "value": {
                "version": 1, "protocolVersion": "2.11", "serialNumber": 1,
                "primarySite": True, "multiPrimary": False, "attributes": [],
                "servers": [{"serverId": 1, "address": "127.0.0.1",
                             "publicKey": {"format": "base64", "value": ""},
                             "interfaces": [
                                 {"query": True, "admin": False, "protocol": "UDP",
                                  "port": p[1]},
                                 {"query": True, "admin": True, "protocol": "TCP",
                                  "port": p[1]}]}]}}}
        self.put(f"0.NA/{PREFIX}", [site], "?index=1")
        self.ids = [f"{PREFIX}/item-{k:04d}" for k in range(40)]
        threads = []
        for k in range(4):
            def mk(chunk):
                for h in chunk:
                    self.put(h, [{"index": 1, "type": "URL", "data": f"https://example.com/{h}"},
                                 {"index": 2, "type": "DESC", "data": "an ordinary record"}])
            t = threading.Thread(target=mk, args=(self.ids[k::4],))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        big = [{"index": 10 + k, "type": "DESC", "data": ("%02d" % k) + "x" * 478}
               for k in range(31)]
        self.big = f"{PREFIX}/big-record"
        self.put(self.big, big)
        # The largest answer the DNS front end sends over UDP: TXT strings just under its
        # 1232-byte limit (dns.max_udp_payload), so the record is not truncated.
        self.dns_big = f"{PREFIX}/dns-record"
        self.put(self.dns_big, [{"index": 10 + k, "type": "DESC", "data": ("%02d" % k) + "y" * 248}
                                for k in range(4)])
        for h in ("admin-tcp", "admin-https"):
            self.put(f"{PREFIX}/{h}", [{"index": 1, "type": "URL", "data": "https://example.com/0"}])
        with open(f"{w}/ids.txt", "w") as f:
            f.write("\n".join(self.ids) + "\n")
        # Size of the large answers over native UDP and DNS UDP.
        size = self.native_udp_probe(self.big, "127.0.0.1", PREFIX)
        dq = dns_query(dns_name(self.dns_big), 16, 5, edns=4096)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(2)
        try:
            u.sendto(dq, ("127.0.0.1", p[2]))
            da = u.recv(65536)
            dns_note = f"{len(da)} bytes ({classify_dns(da)}) to a {len(dq)}-byte DNS query"
        except OSError as e:
            dns_note = f"no DNS answer ({e})"
        finally:
            u.close()
        log(f"nodes up in {w}: A https:{p[0]} native:{p[1]} dns:{p[2]}; "
            f"B (recursive) http:{p[3]} native:{p[4]} dns:{p[5]}; "
            f"the large record answers {size[1]} bytes over native UDP, "
            f"{self.dns_big} {dns_note}")
        ok = self.native_udp_probe(self.ids[1], "127.0.0.1", PREFIX, port=p[4])
        if ok[0] != 1:
            self.notes.append(f"B did not resolve {self.ids[1]} through A (answer {ok})")

    def native_udp_probe(self, handle, src, _prefix, port=None, timeout=2.0):
        """One resolution over UDP from `src`: (response code or None, answer bytes)."""
        port = port or self.ports["a_handle"]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.settimeout(0.2)
        rid = random.getrandbits(31)
        s.sendto(resolution(handle, rid), ("127.0.0.1", port))
        got, total, rc, size = set(), None, None, 0
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                h = parse_native_head(data)
                if h is None or h[0] != rid:
                    continue
                got.add(h[1])
                size += len(data)
                total = h[2]
                if h[3] is not None:
                    rc = h[3]
                if len(got) * UDP_CHUNK >= total:
                    return rc, size
        finally:
            s.close()
        return (rc if total is not None and len(got) * UDP_CHUNK >= total else None), size

    # ----- measurement -----------------------------------------------------------------

    def front_ends_answer(self):
        """True when A answers a query on native UDP, native TCP, DNS UDP and HTTPS and B one
        on native UDP (from 127.0.0.1, each within 1 s)."""
        item = self.ids[2]
        if self.native_udp_probe(item, "127.0.0.1", PREFIX, timeout=1.0)[0] != 1:
            return False
        if self.native_udp_probe(item, "127.0.0.1", PREFIX, port=self.ports["b_handle"],
                                 timeout=1.0)[0] != 1:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.ports["a_handle"]), 1) as s:
                s.settimeout(1)
                s.sendall(resolution(item, 77))
                head = recv_exact(s, 20)
                body = recv_exact(s, struct.unpack(">I", head[16:20])[0])
                if struct.unpack(">I", body[4:8])[0] != 1:
                    return False
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(1)
            try:
                u.sendto(dns_query(dns_name(item), 16, 99), ("127.0.0.1", self.ports["a_dns"]))
                if struct.unpack(">H", u.recv(65536)[2:4])[0] & 0xF != 0:
                    return False
            finally:
                u.close()
            status, _ = self.http("A", "GET", f"/api/handles/{item}", timeout=1)
            return status == 200
        except (OSError, ValueError, struct.error, http.client.HTTPException):
            return False

    def wait_recovered(self):
        """Seconds until every front end answers again (None: not within recover_max)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.recover_max:
            if self.front_ends_answer():
                return time.monotonic() - t0
            time.sleep(0.5)
        return None

    def rss(self, name):
        try:
            with open(f"/proc/{self.procs[name].pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def fds(self, name):
        try:
            return len(os.listdir(f"/proc/{self.procs[name].pid}/fd"))
        except OSError:
            return 0

    def metrics(self, node):
        try:
            status, data = self.http(node, "GET", "/metrics", timeout=5)
        except OSError:
            return {}
        out = {}
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("#") or "_bucket{" in line:
                continue
            parts = line.rsplit(" ", 1)
            if len(parts) == 2:
                try:
                    out[parts[0]] = float(parts[1])
                except ValueError:
                    pass
        return out

    def bench_cmd(self, proto, server, extra=()):
        rate = self.legit_rate
        return [self.bin, "bench", "--proto", proto, "--server", server, "--ids",
                f"{self.work}/ids.txt", "--duration", f"{self.dur}s", "--rate", str(rate),
                "--timeout", "1s", "--json", *extra]

    def legit_load(self):
        """Start the legitimate clients; returns a function that waits for them and gives
        {front end: (sent, ok, p99 ms, first error)}."""
        a = self.ports
        benches = {
            "h-udp": (self.bench_cmd("handle-udp", f"127.0.0.1:{a['a_handle']}",
                                     ["--sockets", "2", "--concurrency", "64"]), "RC1"),
            "h-tcp": (self.bench_cmd("handle-tcp", f"127.0.0.1:{a['a_handle']}",
                                     ["--concurrency", "4"]), "RC1"),
            "dns-udp": (self.bench_cmd("dns-udp", f"127.0.0.1:{a['a_dns']}",
                                       ["--sockets", "2", "--concurrency", "64"]), "NOERROR"),
            "https": (self.bench_cmd("https", f"https://127.0.0.1:{a['a_http']}",
                                     ["--insecure", "--concurrency", "4"]), "HTTP200"),
            "rec-udp": (self.bench_cmd("handle-udp", f"127.0.0.1:{a['b_handle']}",
                                       ["--recursive", "--sockets", "2", "--concurrency", "64"]),
                        "RC1"),
        }
        procs = {k: (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True), ok) for k, (cmd, ok) in benches.items()}
        stop = threading.Event()
        admin = {"a-tcp": [], "a-https": []}
        threads = [threading.Thread(target=self.admin_tcp, args=(stop, admin["a-tcp"])),
                   threading.Thread(target=self.admin_https, args=(stop, admin["a-https"]))]
        for t in threads:
            t.start()

        def wait():
            out = {}
            for k, (p, okcode) in procs.items():
                try:
                    so, se = p.communicate(timeout=self.dur + 30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    so, se = p.communicate()
                try:
                    j = json.loads(so)
                    sent = j["queries_sent"]
                    ok = j["response_codes"].get(okcode, 0)
                    out[k] = (sent, ok, j["p99_us"] / 1000.0,
                              j.get("first_error") or self.other_codes(j, okcode))
                except (ValueError, KeyError, TypeError):
                    out[k] = (0, 0, float("nan"), f"bench failed: {se.strip()[-200:]}")
            stop.set()
            for t in threads:
                t.join()
            for k, results in admin.items():
                lat = sorted(r[1] for r in results)
                ok = sum(1 for r in results if r[0])
                err = next((r[2] for r in results if not r[0]), None)
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
                out[k] = (len(results), ok, p99, err)
            return out

        return wait

    @staticmethod
    def other_codes(j, okcode):
        other = {c: n for c, n in j.get("response_codes", {}).items() if c != okcode}
        if j.get("queries_lost"):
            other["lost"] = j["queries_lost"]
        return ", ".join(f"{c} {n}" for c, n in other.items()) or None

    def admin_tcp(self, stop, results):
        n = 0
        interval = 1.0 if self.quick else 0.5
        while not stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                r = subprocess.run(
                    [self.bin, "admin", "modify", f"{PREFIX}/admin-tcp", "--server",
                     f"127.0.0.1:{self.ports['a_handle']}", "--timeout", "5s",
                     "--auth-handle", f"300:0.NA/{PREFIX}", "--secret-file",
                     f"{self.work}/secret", "--value", f"1:URL:https://example.com/tcp/{n}"],
                    capture_output=True, text=True, timeout=20,
                )
                ok, err = r.returncode == 0, (r.stderr.strip()[-160:] or None)
            except subprocess.TimeoutExpired:
                ok, err = False, "admin modify timed out"
            results.append((ok, time.monotonic() - t0, None if ok else err))
            stop.wait(max(0.0, interval - (time.monotonic() - t0)))

    def admin_https(self, stop, results):
        n = 0
        interval = 0.5 if self.quick else 0.25
        while not stop.is_set():
            n += 1
            t0 = time.monotonic()
            try:
                status, data = self.http(
                    "A", "PUT", f"/api/handles/{PREFIX}/admin-https?index=1",
                    {"values": [{"index": 1, "type": "URL",
                                 "data": f"https://example.com/https/{n}"}]},
                    auth=True, timeout=5)
                ok, err = status in (200, 201), f"HTTP {status} {data[:120]!r}"
            except (OSError, http.client.HTTPException) as e:
                ok, err = False, f"{type(e).__name__}: {e}"
            results.append((ok, time.monotonic() - t0, None if ok else err))
            stop.wait(max(0.0, interval - (time.monotonic() - t0)))

    # ----- one phase ----------------------------------------------------------------------

    def phase(self, key, title, node, attack, amp_target, probe_udp):
        """Run `attack(stop, res)` in a thread while the legitimate load runs."""
        log(f"{key}: {title}")
        t_phase = time.monotonic()
        rss0 = self.rss(node)
        m0 = {n: self.metrics(n) for n in ("A", "B")}
        stop = threading.Event()
        ready = threading.Event()
        res = {"in": 0, "out": 0, "notes": [], "ready": ready, "peak_fds": 0}
        th = None
        if attack:
            th = threading.Thread(target=self.run_attack, args=(attack, stop, res), daemon=True)
            th.start()
            ready.wait(30)
            time.sleep(0.5)
        wait = self.legit_load()
        probes = []
        t_end = time.monotonic() + self.dur
        probed = False
        while time.monotonic() < t_end:
            res["peak_fds"] = max(res["peak_fds"], self.fds(node))
            if probe_udp and not probed and time.monotonic() > t_end - self.dur / 2:
                probed = True
                net = 200 + len(self.rows)
                probes.append(("item", self.native_udp_probe(self.ids[3], f"127.0.{net}.1", PREFIX)))
                probes.append(("big", self.native_udp_probe(self.big, f"127.0.{net}.2", PREFIX)))
            time.sleep(0.25)
        legit = wait()
        stop.set()
        if th:
            th.join(60)
        time.sleep(self.settle)
        rss1 = self.rss(node)
        recovered = self.wait_recovered()
        if recovered is None:
            res["notes"].append(f"the nodes did NOT answer every front end {self.recover_max:g} s "
                                "after the attack; restarted them for the next phase")
            self.restart_nodes()
        elif rss1 > 1.5 * self.rss_start.get(node, rss1):
            res["notes"].append(f"node {node} kept {fmt_bytes(rss1)} (started at "
                                f"{fmt_bytes(self.rss_start[node])}); restarted the nodes for "
                                "the next phase")
            self.restart_nodes()
        elif recovered > 0.5:
            res["notes"].append(f"node A answered every front end again {recovered:.1f} s "
                                "after the settle")
        m1 = {n: self.metrics(n) for n in ("A", "B")}
        alive = {n: self.procs[n].poll() is None for n in ("A", "B")}
        row = {
            "key": key, "title": title, "node": node, "in": res["in"], "out": res["out"],
            "amp": (res["out"] / res["in"]) if res["in"] else 0.0, "amp_target": amp_target,
            "legit": legit, "rss0": rss0, "rss1": rss1, "notes": res["notes"],
            "probes": probes, "alive": alive, "peak_fds": res["peak_fds"],
            "metrics": self.metric_notes(m0, m1, node),
            "secs": time.monotonic() - t_phase,
        }
        if node == "B":
            up = sum(v - m0["A"].get(k, 0.0) for k, v in m1["A"].items()
                     if k.startswith("idnode_requests_total{") and 'code="1"' not in k
                     and 'proto="http"' not in k)
            sent = res.get("queries", 0)
            row["notes"].append(
                f"the root (A) answered {up:.0f} requests with other than RC 1 during the phase"
                + (f" ({up / sent:.2f} per attack query)" if sent else "")
                + "; B's fan-out to it")
        if not all(alive.values()):
            row["notes"].append("NODE DIED: " + ", ".join(n for n, a in alive.items() if not a))
        self.rows.append(row)
        self.print_row(row)
        return row

    def run_attack(self, attack, stop, res):
        try:
            attack(stop, res)
        except Exception as e:  # a broken attack must not hang the suite
            res["notes"].append(f"attack error: {type(e).__name__}: {e}")
        finally:
            res["ready"].set()

    def metric_notes(self, m0, m1, node):
        """Deltas of the attacked node's metrics that say what it did with the attack:
        anything named *drop*/*limit*/*rate*/*slip*, and refusals."""
        out = {}
        for k, v in m1[node].items():
            name = k.split("{")[0]
            d = v - m0[node].get(k, 0.0)
            if d <= 0 or "duration" in name:
                continue
            if re.search(r"drop|limit|slip|refus|reject|shed|busy", k, re.I) or re.search(
                r'code="(3|DROP|REFUSED)"', k
            ):
                out[k] = d
        return out

    # ----- attacks ------------------------------------------------------------------------

    def scaled(self, full):
        return max(1, int(full * self.scale))

    def a_junk_native(self, stop, res):
        c = UdpCounters()
        rnd = random.Random(1)
        junk = [rnd.randbytes(rnd.randint(1, 512)) for _ in range(256)]
        # also envelopes that claim long messages / other fragments (reassembly state)
        for k in range(256):
            env = struct.pack(">BBBBIIII", 2, 11, 2, 11, 0, rnd.getrandbits(31),
                              rnd.randint(0, 500), 262000)
            junk.append(env + rnd.randbytes(200))
        res["ready"].set()
        udp_flood(stop, [("127.0.0.1", self.ports["a_handle"])], net_sources(1, 8),
                  self.scaled(20000), lambda i: junk[i % len(junk)], classify_native, c)
        self.udp_result(res, c)

    def a_junk_dns(self, stop, res):
        c = UdpCounters()
        rnd = random.Random(2)
        junk = [rnd.randbytes(rnd.randint(1, 512)) for _ in range(256)]
        for k in range(256):  # a valid header and question count, garbage after
            junk.append(struct.pack(">HHHHHH", k, 0x0100, 1, 0, 0, 0) + rnd.randbytes(40))
        res["ready"].set()
        udp_flood(stop, [("127.0.0.1", self.ports["a_dns"])], net_sources(2, 8),
                  self.scaled(20000), lambda i: junk[i % len(junk)], classify_dns, c)
        self.udp_result(res, c)

    def a_verify(self, stop, res):
        c = UdpCounters()
        msgs = [verify_challenge(k + 1) for k in range(64)]
        res["notes"].append(f"{len(msgs[0])}-byte datagrams, PBKDF2 200000 rounds, index 0")
        res["ready"].set()
        udp_flood(stop, [("127.0.0.1", self.ports["a_handle"])], net_sources(3, 8),
                  self.scaled(200), lambda i: msgs[i % len(msgs)], classify_native, c)
        self.udp_result(res, c)

    def a_large(self, stop, res):
        c = UdpCounters()
        msgs = [resolution(self.big, 1000 + k) for k in range(64)]
        res["ready"].set()
        res["notes"].append(f"{self.args.flood_rate} queries/s from 254 addresses of one /24")
        udp_flood(stop, [("127.0.0.1", self.ports["a_handle"])], net_sources(4, 254),
                  self.args.flood_rate, lambda i: msgs[i % len(msgs)], classify_native, c)
        self.udp_result(res, c)

    def a_large_dns(self, stop, res):
        c = UdpCounters()
        name = dns_name(self.dns_big)
        msgs = [dns_query(name, 16, k, edns=4096) for k in range(128)]
        res["ready"].set()
        res["notes"].append(f"{self.args.flood_rate} queries/s from 254 addresses of one /24")
        udp_flood(stop, [("127.0.0.1", self.ports["a_dns"])], net_sources(5, 254),
                  self.args.flood_rate, lambda i: msgs[i % len(msgs)], classify_dns, c)
        self.udp_result(res, c)

    def a_challenge_udp(self, stop, res):
        c = UdpCounters()
        msgs = [resolution(f"0.NA/{PREFIX}", 5000 + k, flags=FLAG_REC | FLAG_CA)
                for k in range(256)]
        srcs = [f"127.0.{16 + n}.{1 + k}" for n in range(64) for k in range(4)]
        res["notes"].append(f"{len(srcs)} sources in 64 /24s")
        res["ready"].set()
        udp_flood(stop, [("127.0.0.1", self.ports["a_handle"])], srcs,
                  self.scaled(5000), lambda i: msgs[i % len(msgs)], classify_native, c)
        self.udp_result(res, c)

    def a_challenge_tcp(self, stop, res):
        """Large unauthenticated creates over TCP (each ~261 kB; the node answers with a
        challenge it has to remember)."""
        total = self.scaled(1000)
        data = os.urandom(130_000).hex()[:260_000].encode()
        srcs = net_sources(6, 8)
        stats = {"sent": 0, "in": 0, "out": 0, "answers": {}, "errors": 0}
        lock = threading.Lock()
        res["ready"].set()
        counter = iter(range(total))

        def worker(src):
            s = None
            while not stop.is_set():
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                msg = create_request(f"{PREFIX}/fill-{n}", [handle_value(1, "DESC", data)],
                                     7000 + n)
                try:
                    if s is None:
                        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        s.bind((src, 0))
                        s.settimeout(5)
                        s.connect(("127.0.0.1", self.ports["a_handle"]))
                    s.sendall(msg)
                    with lock:
                        stats["sent"] += 1
                        stats["in"] += len(msg)
                    head = recv_exact(s, 20)
                    mlen = struct.unpack(">I", head[16:20])[0]
                    body = recv_exact(s, min(mlen, 1 << 20))
                    rc = struct.unpack(">I", body[4:8])[0] if len(body) >= 8 else -1
                    with lock:
                        stats["out"] += 20 + len(body)
                        stats["answers"][f"RC{rc}"] = stats["answers"].get(f"RC{rc}", 0) + 1
                except OSError:
                    with lock:
                        stats["errors"] += 1
                    if s:
                        s.close()
                    s = None
            if s:
                s.close()

        threads = [threading.Thread(target=worker, args=(srcs[k % len(srcs)],))
                   for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res["in"], res["out"] = stats["in"], stats["out"]
        res["notes"].append(
            f"{stats['sent']} creates of {len(data)} B sent, answers "
            + (", ".join(f"{k} {v}" for k, v in stats["answers"].items()) or "none")
            + f", {stats['errors']} connection errors")

    def a_certified(self, stop, res):
        """Certified (CT) resolutions from 64 sources of one /24, a sustained one-network flood:
        every answer would cost an RSA signature and carry 300 more bytes; the node signs
        within its budget, sends the rest unsigned, and rate-limits the network's answers."""
        c = UdpCounters()
        msgs = [resolution(self.ids[k % len(self.ids)], 9000 + k,
                           flags=FLAG_CT | FLAG_REC | FLAG_CA | FLAG_PO) for k in range(256)]
        srcs = net_sources(11, 64)
        res["notes"].append(f"{len(srcs)} sources of one /24, {len(msgs[0])}-byte requests")
        res["ready"].set()
        udp_flood(stop, [("127.0.0.1", self.ports["a_handle"])], srcs,
                  self.scaled(5000), lambda i: msgs[i % len(msgs)], classify_native, c)
        self.udp_result(res, c)

    def a_session_setup(self, stop, res):
        """OC_SESSION_SETUP floods over TCP from 32 addresses, a new connection each (as
        HandleResolver connects): each would cost a key agreement, a signature and a session."""
        srcs = net_sources(12, 32)
        stats = {"sent": 0, "in": 0, "out": 0, "answers": {}, "errors": 0}
        lock = threading.Lock()
        pool = [session_setup(11000 + k) for k in range(64)]
        res["ready"].set()

        def worker(src):
            n = 0
            while not stop.is_set():
                msg = pool[n % len(pool)]
                n += 1
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                        s.bind((src, 0))
                        s.settimeout(5)
                        s.connect(("127.0.0.1", self.ports["a_handle"]))
                        s.sendall(msg)
                        head = recv_exact(s, 20)
                        mlen = struct.unpack(">I", head[16:20])[0]
                        body = recv_exact(s, min(mlen, 1 << 20))
                    rc = struct.unpack(">I", body[4:8])[0] if len(body) >= 8 else -1
                    with lock:
                        stats["sent"] += 1
                        stats["in"] += len(msg)
                        stats["out"] += 20 + len(body)
                        stats["answers"][f"RC{rc}"] = stats["answers"].get(f"RC{rc}", 0) + 1
                except OSError:
                    with lock:
                        stats["errors"] += 1

        threads = [threading.Thread(target=worker, args=(src,)) for src in srcs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res["in"], res["out"] = stats["in"], stats["out"]
        res["notes"].append(
            f"{stats['sent']} setups from {len(srcs)} addresses, answers "
            + (", ".join(f"{k} {v}" for k, v in sorted(stats["answers"].items())) or "none")
            + f", {stats['errors']} connection errors")

    def conn_targets(self):
        a = self.ports
        return {"native": ("127.0.0.1", a["a_handle"]), "https": ("127.0.0.1", a["a_http"]),
                "dns": ("127.0.0.1", a["a_dns"])}

    def hold(self, stop, res, conns, drip=None):
        """Keep the connections until stop (calling drip(name, sock) every 2 s), then
        report how many the server had closed, and what was queued for them."""
        last = time.monotonic()
        while not stop.is_set():
            stop.wait(0.2)
            if drip and time.monotonic() - last >= 2.0:
                last = time.monotonic()
                for name, socks in conns.items():
                    for s in socks:
                        try:
                            res["in"] += drip(name, s)
                        except OSError:
                            pass
        parts = []
        for name, socks in conns.items():
            closed = sum(1 for s in socks if tcp_state(s) != TCP_ESTABLISHED)
            res["out"] += sum(queued_bytes(s) for s in socks)
            parts.append(f"{name} {len(socks)} held, {closed} closed by the node")
            for s in socks:
                s.close()
        res["notes"].append("; ".join(parts))

    def a_idle(self, stop, res):
        counts = {"native": self.scaled(2400), "https": self.scaled(2400), "dns": self.scaled(600)}
        srcs = net_sources(7, 4)
        conns = {n: open_conns(t, srcs, counts[n]) for n, t in self.conn_targets().items()}
        res["notes"].append("asked " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        res["ready"].set()
        self.hold(stop, res, conns)

    def a_slow_read(self, stop, res):
        count = self.scaled(200)
        srcs = net_sources(8, 4)
        t = self.conn_targets()
        conns = {"native": [], "https": [], "dns": []}
        nreq = 200
        big_native = b"".join(resolution(self.big, 9000 + k) for k in range(nreq))
        big_dns = b"".join(struct.pack(">H", len(q)) + q for q in
                           (dns_query(dns_name(self.big), 16, k) for k in range(nreq)))
        get = (f"GET /api/handles/{self.big} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 100).encode()
        for name, payload in (("native", big_native), ("dns", big_dns)):
            for s in open_conns(t[name], srcs, count, rcvbuf=4096):
                s.setblocking(False)
                try:
                    res["in"] += s.send(payload)
                except OSError:
                    pass
                conns[name].append(s)
        setup_end = time.monotonic() + 10.0
        lock = threading.Lock()
        todo = iter(range(count))

        def tls_setup():
            while time.monotonic() < setup_end and not stop.is_set():
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    raw.bind((srcs[k % len(srcs)], 0))
                    raw.settimeout(3)
                    raw.connect(t["https"])
                    s = self.ctx.wrap_socket(raw, server_hostname="localhost")
                    s.setblocking(False)
                    try:
                        n = s.send(get)
                    except (OSError, ssl.SSLError):
                        n = 0
                    with lock:
                        res["in"] += n
                        conns["https"].append(s)
                except (OSError, ssl.SSLError):
                    raw.close()

        workers = [threading.Thread(target=tls_setup, daemon=True) for _ in range(16)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(15)
        if len(conns["https"]) < count:
            res["notes"].append(f"https: {len(conns['https'])} of {count} TLS connections set "
                                "up within 10 s")
        res["notes"].append(f"{nreq} large answers asked on each connection, never read")
        res["ready"].set()
        self.hold(stop, res, conns)

    def a_slow_drip(self, stop, res):
        counts = {"native": self.scaled(2400), "https": self.scaled(2400), "dns": self.scaled(600)}
        srcs = net_sources(9, 4)
        conns = {n: open_conns(t, srcs, counts[n]) for n, t in self.conn_targets().items()}
        hello = client_hello()
        req = resolution(self.ids[0], 4242)
        dq = dns_query(dns_name(self.ids[0]), 16, 7)
        streams = {"native": req, "https": hello, "dns": struct.pack(">H", len(dq)) + dq}
        pos = {}

        def drip(name, s):
            k = pos.get(s.fileno(), 0)
            data = streams[name]
            if k >= len(data) - 1:  # never complete the request
                return 0
            pos[s.fileno()] = k + 1
            return s.send(data[k:k + 1])

        res["notes"].append("one byte every 2 s, request never completed")
        res["ready"].set()
        self.hold(stop, res, conns, drip)

    def a_fanout(self, stop, res):
        c = UdpCounters()
        rnd = random.Random(6)

        def payload(i):
            pfx = f"{rnd.randint(10, 99)}.{rnd.getrandbits(40)}"
            if i % 2 == 0:
                return resolution(f"{pfx}/x", 20000 + (i % 100000))
            return dns_query(f"x.{rnd.getrandbits(40)}.{rnd.randint(10, 99)}.{ZONE}", 16)

        socks_native = ("127.0.0.1", self.ports["b_handle"])
        socks_dns = ("127.0.0.1", self.ports["b_dns"])
        res["ready"].set()
        udp_flood(stop, [socks_native, socks_dns], net_sources(10, 8), self.scaled(1000),
                  payload, classify_either, c)
        self.udp_result(res, c)

    def udp_result(self, res, c):
        res["queries"] = c.sent
        res["in"] = c.bytes_in
        res["out"] = c.est_bytes_out()
        note = (f"{c.sent} datagrams sent in {c.secs:.1f} s ({c.sent / max(c.secs, 0.001):.0f}/s), "
                f"{c.dgrams_out} received")
        if c.dropped():
            note += f", {c.dropped()} dropped at the attacker's sockets (counted in bytes out)"
        if c.send_errors:
            note += f", {c.send_errors} send errors"
        if c.codes:
            top = sorted(c.codes.items(), key=lambda kv: -kv[1])[:5]
            note += "; answers " + ", ".join(f"{k} {v}" for k, v in top)
        res["notes"].append(note)

    # ----- report -------------------------------------------------------------------------

    FRONTS = ["h-udp", "h-tcp", "dns-udp", "https", "rec-udp", "a-tcp", "a-https"]

    def print_header(self):
        cols = " ".join(f"{f:>7}" for f in self.FRONTS)
        print(f"\n{'attack':<26} {'in':>9} {'out':>9} {'amp':>7} | legit success % {cols} "
              f"| p99 ms: query admin | RSS before→after", flush=True)

    def print_row(self, row):
        succ = []
        for f in self.FRONTS:
            sent, ok, _, _ = row["legit"].get(f, (0, 0, 0, None))
            succ.append(f"{(100.0 * ok / sent) if sent else float('nan'):7.2f}")
        p99 = max((v[2] for f, v in row["legit"].items() if v[2] == v[2] and not f.startswith("a-")),
                  default=float("nan"))
        p99a = max((v[2] for f, v in row["legit"].items() if v[2] == v[2] and f.startswith("a-")),
                   default=float("nan"))
        amp = f"{row['amp']:6.2f}x" if row["in"] else "     -"
        print(f"{row['key'] + ' ' + row['title']:<26.26} {fmt_bytes(row['in']):>9} "
              f"{fmt_bytes(row['out']):>9} {amp:>7} | {'':16}{' '.join(succ)} | "
              f"{p99:13.1f} {p99a:5.0f} | {row['node']} {fmt_bytes(row['rss0'])}→{fmt_bytes(row['rss1'])}",
              flush=True)

    def evaluate(self):
        print("\n== summary", end="")
        self.print_header()
        for r in self.rows:
            self.print_row(r)
        print("\n== per-phase detail")
        for r in self.rows:
            print(f"{r['key']} {r['title']} (node {r['node']}, peak fds {r['peak_fds']}, "
                  f"phase {r['secs']:.0f} s)")
            for n in r["notes"]:
                print(f"    {n}")
            for f in self.FRONTS:
                sent, ok, p99, err = r["legit"].get(f, (0, 0, float("nan"), None))
                line = f"    {f:<8} {ok}/{sent} ok, p99 {p99:.1f} ms"
                if err and ok < sent:
                    line += f"  ({err})"
                print(line)
            if r["probes"]:
                print("    single UDP queries from a fresh /24: " + ", ".join(
                    f"{n} {'RC%s' % p[0] if p[0] is not None else 'no answer'} ({p[1]} B)"
                    for n, p in r["probes"]))
            if r["metrics"]:
                print("    node metrics: " + ", ".join(
                    f"{k} +{v:g}" for k, v in sorted(r["metrics"].items())[:8]))
        print("\n== targets")
        fails = 0
        attacks = [r for r in self.rows if r["key"] != "0"]

        def verdict(ok, text):
            nonlocal fails
            fails += 0 if ok else 1
            print(f"{'PASS' if ok else 'FAIL'}  {text}")

        for r in self.rows:
            worst = min((100.0 * v[1] / v[0] if v[0] else 0.0, f)
                        for f, v in r["legit"].items())
            verdict(worst[0] >= 99.0,
                    f"{r['key']} {r['title']}: legitimate success >= 99 % on every front end "
                    f"(lowest {worst[1]} {worst[0]:.2f} %)")
        for r in attacks:
            if r["amp_target"]:
                verdict(r["amp"] <= 3.0, f"{r['key']} {r['title']}: amplification <= 3x "
                        f"({r['amp']:.2f}x)")
        for r in attacks:
            grow = (r["rss1"] / r["rss0"] - 1) * 100 if r["rss0"] else float("nan")
            verdict(r["rss0"] and r["rss1"] <= r["rss0"] * 1.10,
                    f"{r['key']} {r['title']}: node {r['node']} RSS within 10 % of its start "
                    f"({fmt_bytes(r['rss0'])} -> {fmt_bytes(r['rss1'])}, {grow:+.1f} %)")
        for r in attacks:
            if r["probes"]:
                ok = all(p[0] == 1 for _, p in r["probes"])
                verdict(ok, f"{r['key']} {r['title']}: single queries from a fresh network "
                        "answered over UDP (ordinary and ~15 KB record)")
        for r in self.rows:
            if not all(r["alive"].values()):
                verdict(False, f"{r['key']} {r['title']}: nodes stayed up")
        print(f"\n{len(self.rows) - 1} attacks, {fails} target(s) failed")
        if self.notes:
            print("notes:\n" + "\n".join(f"  - {n}" for n in self.notes))
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump({"rows": self.rows, "notes": self.notes}, f, indent=1, default=str)
        return fails

    def run(self):
        attacks = [
            ("1a", "junk datagrams, native UDP", "A", self.a_junk_native, True, True),
            ("1b", "junk datagrams, DNS UDP", "A", self.a_junk_dns, True, True),
            ("2", "VERIFY_CHALLENGE flood", "A", self.a_verify, True, True),
            ("3a", "large answers, native UDP", "A", self.a_large, True, True),
            ("3b", "largest answers, DNS UDP", "A", self.a_large_dns, True, True),
            ("4a", "challenge fill, UDP", "A", self.a_challenge_udp, False, True),
            ("4b", "challenge fill, TCP", "A", self.a_challenge_tcp, False, False),
            ("5a", "idle connections", "A", self.a_idle, False, False),
            ("5b", "slow-reading conns", "A", self.a_slow_read, False, False),
            ("5c", "slow-drip requests", "A", self.a_slow_drip, False, False),
            ("6", "recursion fan-out", "B", self.a_fanout, True, False),
            ("7a", "certified (CT) flood, UDP", "A", self.a_certified, True, True),
            ("7b", "session setup flood, TCP", "A", self.a_session_setup, False, False),
        ]
        only = set(self.args.only.split(",")) if self.args.only else None
        self.warm_up()
        self.print_header()
        self.phase("0", "no attack (baseline)", "A", None, False, False)
        for key, title, node, fn, amp, probe in attacks:
            if only and key not in only and key[0] not in only:
                continue
            if any(p.poll() is not None for p in self.procs.values()):
                log("a node has died; stopping")
                break
            self.phase(key, title, node, fn, amp, probe)
        return self.evaluate()

    def close(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.args.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the idnode binary")
    ap.add_argument("--quick", action="store_true", help="short phases, lower rates (CI)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    ap.add_argument("--duration", type=float, help="seconds of legitimate load per phase")
    ap.add_argument("--settle", type=float, help="seconds after a phase before RSS is read")
    ap.add_argument("--legit-rate", type=int, help="queries/s per legitimate front end")
    ap.add_argument("--flood-rate", type=int, default=1000,
                    help="queries/s of the large-answer floods (3a, 3b), both modes")
    ap.add_argument("--only", help="comma-separated attack keys (1a,2,5,...)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    suite = Suite(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        suite.setup()
        log(f"{'quick' if args.quick else 'full'} run: {suite.dur:g} s per phase, "
            f"legitimate {suite.legit_rate} q/s per front end; open files limit "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} (the nodes inherit it)")
        fails = suite.run()
    finally:
        suite.close()
    sys.exit(1 if fails and args.strict else 0)


if __name__ == "__main__":
    main()
