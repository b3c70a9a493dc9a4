#!/usr/bin/env python3
"""A tiny Modbus/TCP PLC simulator and client for the Septa lab (standard library only).

  modbus.py plc  ADDR [PORT]                 serve 100 holding registers and 100 coils
  modbus.py read  HOST [PORT] [START] [N]    read holding registers (function 3), print them
  modbus.py write HOST [PORT] [REG] [VALUE]  write a single register (function 6)
  modbus.py poll  HOST [PORT] [SECONDS]      the HMI: read every SECONDS forever, on one connection
  modbus.py hold  HOST [PORT] [SECONDS] [N]  one connection: read every SECONDS, N times; prints
                                             each read (exits 1 at the first failed read)
Exit status of the client commands: 0 answered, 1 exception/refused/timeout.
"""
import socket
import socketserver
import struct
import sys
import time

REGS = [0] * 100
COILS = [0] * 100


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        while True:
            head = recv_exact(sock, 7)
            if head is None:
                return
            tid, pid, length, unit = struct.unpack(">HHHB", head)
            pdu = recv_exact(sock, length - 1)
            if pdu is None or not pdu:
                return
            sock.sendall(reply(tid, pid, unit, pdu))


def reply(tid, pid, unit, pdu):
    fc = pdu[0]
    REGS[0] = int(time.time()) & 0xFFFF  # a live value for the HMI
    try:
        if fc in (3, 4) and len(pdu) >= 5:
            start, n = struct.unpack(">HH", pdu[1:5])
            vals = REGS[start:start + n]
            if len(vals) != n or n == 0:
                raise IndexError
            body = bytes([fc, 2 * n]) + b"".join(struct.pack(">H", v) for v in vals)
        elif fc in (1, 2) and len(pdu) >= 5:
            start, n = struct.unpack(">HH", pdu[1:5])
            bits = COILS[start:start + n]
            if len(bits) != n or n == 0:
                raise IndexError
            packed = bytearray((n + 7) // 8)
            for i, b in enumerate(bits):
                packed[i // 8] |= b << (i % 8)
            body = bytes([fc, len(packed)]) + bytes(packed)
        elif fc == 6 and len(pdu) >= 5:
            reg, val = struct.unpack(">HH", pdu[1:5])
            REGS[reg] = val
            body = pdu[:5]
        elif fc == 5 and len(pdu) >= 5:
            reg, val = struct.unpack(">HH", pdu[1:5])
            COILS[reg] = 1 if val == 0xFF00 else 0
            body = pdu[:5]
        else:
            body = bytes([fc | 0x80, 1])  # illegal function
    except IndexError:
        body = bytes([fc | 0x80, 2])  # illegal data address
    return struct.pack(">HHHB", tid, pid, len(body) + 1, unit) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def request(host, port, pdu, timeout=3.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">HHHB", 1, 0, len(pdu) + 1, 1) + pdu)
        head = recv_exact(s, 7)
        if head is None:
            raise ConnectionError("connection closed")
        _, _, length, _ = struct.unpack(">HHHB", head)
        body = recv_exact(s, length - 1)
        if body is None or body[0] & 0x80:
            raise ConnectionError(f"modbus exception {body!r}")
        return body


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    host = argv[2] if len(argv) > 2 else "127.0.0.1"
    port = int(argv[3]) if len(argv) > 3 else 502
    if cmd == "plc":
        with Server((host, port), Handler) as srv:
            srv.serve_forever()
    try:
        if cmd == "read":
            start = int(argv[4]) if len(argv) > 4 else 0
            n = int(argv[5]) if len(argv) > 5 else 4
            body = request(host, port, struct.pack(">BHH", 3, start, n))
            print(" ".join(str(v) for v in struct.unpack(f">{n}H", body[2:2 + 2 * n])))
        elif cmd == "write":
            reg = int(argv[4]) if len(argv) > 4 else 10
            val = int(argv[5]) if len(argv) > 5 else 1
            request(host, port, struct.pack(">BHH", 6, reg, val))
            print(f"wrote register {reg} = {val}")
        elif cmd == "hold":
            every = float(argv[4]) if len(argv) > 4 else 0.5
            count = int(argv[5]) if len(argv) > 5 else 100
            with socket.create_connection((host, port), timeout=2.0) as s:
                s.settimeout(2.0)
                src = "%s:%d" % s.getsockname()[:2]
                print(f"connected from {src}", flush=True)
                for i in range(count):
                    s.sendall(struct.pack(">HHHB", i & 0xFFFF, 0, 6, 1) + struct.pack(">BHH", 3, 0, 1))
                    head = recv_exact(s, 7)
                    if head is None:
                        raise ConnectionError("connection closed")
                    body = recv_exact(s, struct.unpack(">HHHB", head)[2] - 1)
                    if body is None or body[0] & 0x80:
                        raise ConnectionError(f"modbus exception {body!r}")
                    print(f"read {i + 1} ok on {src}", flush=True)
                    time.sleep(every)
        elif cmd == "poll":
            # Like a real HMI: one long-lived connection, reopened after a failure.
            every = float(argv[4]) if len(argv) > 4 else 1.0
            tid = 0
            while True:
                try:
                    with socket.create_connection((host, port), timeout=3.0) as s:
                        s.settimeout(3.0)
                        while True:
                            tid = (tid + 1) & 0xFFFF
                            s.sendall(struct.pack(">HHHB", tid, 0, 6, 1) + struct.pack(">BHH", 3, 0, 4))
                            head = recv_exact(s, 7)
                            if head is None or recv_exact(s, struct.unpack(">HHHB", head)[2] - 1) is None:
                                break
                            time.sleep(every)
                except OSError:
                    pass
                time.sleep(every)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except OSError as e:
        print(f"modbus {cmd} {host}:{port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
