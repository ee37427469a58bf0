#!/usr/bin/env python3
"""Write the seeds of the targets added for issue 11 (udp_reassembly, dns_query, dns_names,
sync_batch) and the message_decode seeds taken from the second vector set.

    python3 fuzz/seeds/make_seeds.py [path/to/handle-vectors-2.json]

Seeds are small and checked in; running this again rewrites them with the same bytes.
"""
import base64
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "..", "..", "shared", "testdata", "handle-vectors-2.json")


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


def vectors():
    try:
        with open(VECTORS) as f:
            return {k: bytes.fromhex(v) for k, v in json.load(f)["vectors"].items()}
    except OSError as e:
        print(f"no vectors ({e}); message seeds skipped", file=sys.stderr)
        return {}


# --- message_decode / udp_reassembly: native messages of the second vector set ------------
V = vectors()
MESSAGES = [k for k in V if k.endswith(("_REQ_HEX", "_RESP_HEX", "_CHALLENGE_HEX"))]
for k in MESSAGES:
    write("message_decode", "v2_" + k[:-4].lower(), V[k])


def frame(op, datagram):
    return bytes([op]) + struct.pack(">H", len(datagram)) + datagram


def envelope(request_id, seq, length):
    return bytes([2, 11, 2, 11, 0, 0, 0, 0]) + struct.pack(">III", request_id, seq, length)


for k in ["SDK_RESOLUTION_REQ_HEX", "SESSION_SETUP_RESP_HEX", "LIST_HANDLES_RESP_1_HEX"]:
    if k in V:
        # As raw datagrams, and fed whole (bit 7) so that long ones are fragmented.
        write("udp_reassembly", "v2_" + k[:-4].lower(), frame(0, V[k]) + frame(0x80 | 1, V[k]))
# Three fragments of a 1200-byte message, out of order, two clients, the clock moving on.
body = bytes(i % 251 for i in range(1200))
frags = [envelope(7, i, 1200) + body[i * 492:(i + 1) * 492] for i in range(3)]
write("udp_reassembly", "three_fragments_out_of_order",
      frame(0, frags[2]) + frame(1, frags[0]) + frame(0, frags[0]) + frame(4 | 1, frags[1])
      + frame(0, frags[1]))
# Five first fragments (one over the message budget) and a timeout in between.
write("udp_reassembly", "budget_and_timeout",
      b"".join(frame(i, envelope(100 + i, 0, 1200) + body[:492]) for i in range(4))
      + frame(0x1c, envelope(200, 0, 1200) + body[:492]))


# --- dns_query: DNS queries ---------------------------------------------------------------
def qname(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype, qid=0x1234, edns=None, flags=0x0100, qclass=1):
    q = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    q += qname(name) + struct.pack(">HH", qtype, qclass)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return q


A, NS, SOA, TXT, AAAA, NAPTR, ANY, URI, AXFR = 1, 2, 6, 16, 28, 35, 255, 256, 252
DNS = {
    "txt_plain": (0, query("sn-0001.1.100.88.id.example", TXT)),
    "any_edns": (1, query("sn-0001.1.100.88.id.example", ANY, edns=1232)),
    "uri_encoded": (0, query("x--mfrgg.1.100.88.id.example", URI)),
    "naptr_two_labels": (0, query("x--mfrggzdfmztwq2lknnwg23tpobyxe.x--c.1.100.88.id.example",
                                  NAPTR, edns=4096)),
    "apex_soa": (2, query("id.example", SOA)),
    "apex_ns": (2, query("ID.Example", NS)),
    "empty_non_terminal": (2, query("100.88.id.example", A)),
    "prefix_handle": (2, query("x--ha4c4mjqgaxdc.na.0.id.example", TXT)),
    "outside_zone": (0, query("example.org", A)),
    "axfr": (0, query("id.example", AXFR)),
    "class_ch": (0, query("id.example", TXT, qclass=3)),
    "badvers": (0, query("id.example", SOA, edns=512) [:-11]
                + b"\0" + struct.pack(">HHIH", 41, 512, 0x00010000, 0)),
    "compressed_loop": (0, struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\0\x01\0\x01"),
    "notify_opcode": (0, query("id.example", SOA, flags=0x2000)),
}
for name, (mode, packet) in DNS.items():
    write("dns_query", name, bytes([mode]) + packet)


# --- dns_names: names (mode bit 1 clear) and identifiers (bit 1 set) -----------------------
def labels(*ls):
    return b"".join(bytes([len(l)]) + l.encode() for l in ls)


NAMES = {
    "name_plain": bytes([0]) + labels("sn-0001", "1", "100", "88"),
    "name_plain_insensitive": bytes([1]) + labels("Sn-0001", "1", "100", "88"),
    "name_encoded": bytes([0]) + labels("x--mfrgg", "1", "100", "88"),
    "name_encoded_chunks": bytes([0]) + labels("x--mfrg", "x--g", "88"),
    "name_prefix_handle": bytes([0]) + labels("x--ha4c4mjqgaxdc", "na", "0"),
    "name_path": bytes([0]) + labels("100", "88"),
    "handle_plain": bytes([2]) + b"88.100.1/SN-0001",
    "handle_mixed_case": bytes([2]) + b"88.100.1/Sn-0001",
    "handle_slash_dot": bytes([3]) + b"88.100.1/a.b/c",
    "handle_unicode": bytes([2]) + "88.100.1/产品-0001".encode(),
    "handle_long": bytes([2]) + b"88.100.1/" + b"s" * 60 + b"S" * 60,
    "handle_bad_segment": bytes([2]) + b"88.1_0/A",
    "handle_prefix_na": bytes([2]) + b"0.NA/88.100.1",
}
for name, data in NAMES.items():
    write("dns_names", name, data)


# --- sync_batch: /sync/changes and /sync/snapshot answers ----------------------------------
def record(handle, values):
    body = struct.pack(">I", len(handle)) + handle.encode() + values
    return bytes([1]) + struct.pack(">I", zlib.crc32(body)) + body


def value(index, vtype, data, perms=0x0e):
    return (struct.pack(">II", index, 0) + bytes([0, 0, 0x01, 0x51, 0x80, perms])
            + struct.pack(">I", len(vtype)) + vtype.encode()
            + struct.pack(">I", len(data)) + data + struct.pack(">I", 0))


def values(*vs):
    return struct.pack(">I", len(vs)) + b"".join(vs)


def b64(b):
    return base64.b64encode(b).decode()


r1 = record("88.100.1/SN-0001", values(value(1, "URL", b"https://example.org/1")))
r2 = record("20.500/x", values(value(1, "EMAIL", b"a@example.org"), value(2, "URL", b"u")))
batch = {
    "from": 3, "next": 9, "last_seq": 12,
    "changes": [
        {"seq": 4, "unix_millis": 1700000000000, "action": "create", "key": "88.100.1/SN-0001",
         "data": b64(r1)},
        {"seq": 6, "unix_millis": 1700000000001, "action": "update", "key": "20.500/X",
         "data": b64(r2)},
        {"seq": 9, "unix_millis": 1700000000002, "action": "delete", "key": "20.500/X"},
    ],
}
write("sync_batch", "changes_insensitive_cursor3",
      bytes([1 | (3 << 1)]) + json.dumps(batch).encode())
batch_s = dict(batch, changes=[dict(batch["changes"][0]),
                               dict(batch["changes"][1], key="20.500/x")])
write("sync_batch", "changes_sensitive_cursor3", bytes([3 << 1]) + json.dumps(batch_s).encode())
write("sync_batch", "changes_empty", bytes([0]) + b'{"from":0,"next":0,"last_seq":5,"changes":[]}')
snapshot = {"seq": 12, "records": [{"key": "88.100.1/SN-0001", "data": b64(r1)},
                                   {"key": "20.500/x", "data": b64(r2)}]}
write("sync_batch", "snapshot", bytes([0]) + json.dumps(snapshot).encode())
