"""Deterministic generator of labelled flow-feature records (the raw FeatureRecord fields) from
normal and attack traffic profiles. Same seed -> same rows, on any machine (integer arithmetic on
numpy's PCG64 draws).

Version 2: every flow is simulated as the packets the gateway forwards (TCP handshake, request and
response segments with delayed ACKs, PSH on the last segment of a write, teardown), and its
records are taken where the worker's sampler takes them (dataplane/src/sample.rs):
- after the first HEAD packets (both directions; sizes are L3 lengths, gaps in microseconds),
  with the counts, flags and duration of those packets only;
- periodically (PERIODIC_S after the previous record) while a long flow lasts;
- at the flow's end, with its totals.
TCP flags are counted the sampler's way: `syn` counts every packet with SYN set (the SYN and the
SYN-ACK of a handshake: 2), `fin` every packet with FIN set (one per side on a normal close).
Version 1 drew whole-flow totals with one SYN per flow and no pure ACKs or handshake packets in
the head, so the head record of every ordinary short TCP connection (2 SYN of 8 packets, small
first packets) looked unlike anything in training: the lab's web requests all alerted."""
import numpy as np

GENERATOR_VERSION = 2
L7 = {"unknown": 0, "http": 1, "tls": 2, "dns": 3, "ssh": 4, "smb": 5, "rdp": 6, "kerberos": 7,
      "modbus": 8, "dnp3": 9, "s7comm": 10, "enip": 11, "bacnet": 12, "iec104": 13, "opcua": 14}
HEAD = 8
PERIODIC_S = 60
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# Function classes (septa_features::FUNCTION_CLASSES order).
READ, WRITE, CONTROL, DISRUPTIVE, OTHER = range(5)
# Segments of one write simulated one by one; the rest of a bulk transfer is aggregated (runs).
EXPLICIT_SEGMENTS = 12
# Exchanges simulated one by one; the rest of a long conversation is extrapolated from a sample.
EXPLICIT_EXCHANGES = 12
SAMPLE_EXCHANGES = 4
TAIL_CHUNKS = 8


def li(rng, lo, hi):
    """Log-uniform integer in [lo, hi]."""
    return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def lu(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


class Run:
    """`n` packets going `d` (0 forward, 1 reply) ending at `t` (us): one packet or an aggregate."""
    __slots__ = ("t", "d", "n", "size", "bytes", "sq", "flags", "fns")

    def __init__(self, t, d, n, size, flags=0, fns=None, nbytes=None, sq=None):
        self.t, self.d, self.n, self.size = int(t), d, int(n), int(size)
        self.bytes = int(size) * int(n) if nbytes is None else int(nbytes)
        self.sq = int(size) * int(size) * int(n) if sq is None else int(sq)
        # flag counts: syn, syn_ack, fin, rst, psh
        if isinstance(flags, list):
            self.flags = flags
        else:
            syn = n if flags & SYN else 0
            self.flags = [syn, n if (flags & SYN and flags & ACK) else 0, n if flags & FIN else 0,
                          n if flags & RST else 0, n if flags & PSH else 0]
        self.fns = fns or [0, 0, 0, 0, 0]


class Conv:
    """One conversation as the gateway forwards it: a list of runs in time order."""

    def __init__(self, rng, proto, dport, l7, rtt_us=None):
        self.rng = rng
        self.proto, self.dport, self.l7 = proto, int(dport), L7[l7]
        self.runs = []
        self.t = 0
        self.rtt = rtt_us if rtt_us is not None else lu(rng, 80, 3000)
        linux = rng.random() < 0.7
        self.hdr = (52 if linux else 40) if proto == 6 else 28
        self.syn_size = 60 if linux else 52
        self.mss = 1500 - self.hdr
        self.spread = {"src_hosts": 1, "src_ports": 1, "src_hosts_on_port": 1, "dst_sources": 1,
                       "window_s": 10}
        self.closed = False

    def pkt(self, d, size, flags=0, gap_us=0.0, fn=None):
        self.t += max(int(gap_us), 0)
        fns = None
        if fn is not None:
            fns = [0, 0, 0, 0, 0]
            fns[fn] += 1
        self.runs.append(Run(self.t, d, 1, int(np.clip(size, 20, 1500)), flags, fns))
        return self

    def jitter(self, us):
        return us * self.rng.uniform(0.6, 1.6)

    # ---- TCP -------------------------------------------------------------------------------
    def handshake(self):
        self.pkt(0, self.syn_size, SYN)
        self.pkt(1, self.syn_size, SYN | ACK, self.jitter(self.rtt))
        self.pkt(0, self.hdr, ACK, self.jitter(30))
        return self

    def write(self, d, nbytes, gap_us, fn=None):
        """`nbytes` of payload going `d` after `gap_us`: MSS segments, PSH on the last, the other
        side acknowledging every second segment (delayed ACK)."""
        nbytes = max(int(nbytes), 1)
        nseg = -(-nbytes // self.mss)
        last = nbytes - (nseg - 1) * self.mss
        explicit = min(nseg, EXPLICIT_SEGMENTS)
        ser = 12.0  # us between back-to-back segments
        for i in range(explicit):
            final = i == nseg - 1
            size = self.hdr + (last if final else self.mss)
            self.pkt(d, size, ACK | (PSH if final else 0), gap_us if i == 0 else ser,
                     fn if i == 0 else None)
            if i % 2 == 1 and not final:
                self.pkt(1 - d, self.hdr, ACK, 5)
        rest = nseg - explicit
        if rest > 0:
            # the rest of the transfer: full segments plus the last, half as many ACKs back
            dur = rest * ser * self.rng.uniform(1, 20)
            self.t += int(dur)
            self.runs.append(Run(self.t, d, rest, self.mss + self.hdr, [0, 0, 0, 0, 1],
                                 nbytes=(rest - 1) * (self.mss + self.hdr) + self.hdr + last,
                                 sq=(rest - 1) * (self.mss + self.hdr) ** 2 + (self.hdr + last) ** 2))
            acks = rest // 2
            if acks:
                self.runs.append(Run(self.t, 1 - d, acks, self.hdr, ACK))
        return self

    def exchange(self, req, resp, think_us, fn=None, lone_ack=None):
        """A request (forward) after `think_us`, the reply after about one round trip; the
        requester acknowledges the reply (delayed ACK) unless the next request piggybacks it."""
        self.write(0, req, think_us, fn)
        if lone_ack is None:
            lone_ack = self.rng.random() < 0.3
        if lone_ack:
            self.pkt(1, self.hdr, ACK, self.jitter(self.rtt / 2 + 40))
        if resp > 0:
            self.write(1, resp, self.jitter(self.rtt + 50))
            if self.rng.random() < 0.6:
                self.pkt(0, self.hdr, ACK, self.jitter(self.rtt / 2 + 40))
        return self

    def conversation(self, n, one):
        """`n` exchanges made by `one(conv)`; beyond EXPLICIT_EXCHANGES the rest is extrapolated
        from SAMPLE_EXCHANGES more, in TAIL_CHUNKS runs per direction spread over its time."""
        n = int(max(n, 0))
        for _ in range(min(n, EXPLICIT_EXCHANGES)):
            one(self)
        rest = n - EXPLICIT_EXCHANGES
        if rest <= 0:
            return self
        start, mark = self.t, len(self.runs)
        for _ in range(SAMPLE_EXCHANGES):
            one(self)
        sample, self.runs = self.runs[mark:], self.runs[:mark]
        span = (self.t - start) * rest / SAMPLE_EXCHANGES
        scale = rest / SAMPLE_EXCHANGES / TAIL_CHUNKS
        for c in range(TAIL_CHUNKS):
            t = start + span * (c + 1) / TAIL_CHUNKS
            for d in (0, 1):
                part = [r for r in sample if r.d == d]
                n_d = sum(r.n for r in part)
                if not n_d:
                    continue
                k = max(int(round(n_d * scale)), 1)
                self.runs.append(Run(t, d, k, max(r.size for r in part),
                                     [int(round(sum(r.flags[i] for r in part) * scale)) for i in range(5)],
                                     [int(round(sum(r.fns[i] for r in part) * scale)) for i in range(5)],
                                     nbytes=sum(r.bytes for r in part) * k / n_d,
                                     sq=sum(r.sq for r in part) * k / n_d))
        self.t = int(start + span)
        return self

    def close(self, who=None, rst=False):
        if self.closed:
            return self
        self.closed = True
        who = (0 if self.rng.random() < 0.6 else 1) if who is None else who
        gap = self.jitter(200)
        if rst:
            return self.pkt(who, self.hdr, RST | ACK, gap)
        self.pkt(who, self.hdr, FIN | ACK, gap)
        self.pkt(1 - who, self.hdr, FIN | ACK, self.jitter(self.rtt))
        return self.pkt(who, self.hdr, ACK, self.jitter(self.rtt / 2))

    # ---- records ---------------------------------------------------------------------------
    def records(self, periodic=True):
        """The records the sampler would emit: [(reason, raw)] with reason in head/periodic/end."""
        runs = sorted(self.runs, key=lambda r: r.t)
        out = []
        total = sum(r.n for r in runs)
        head = {"count": 0, "size_sum": 0, "size_sumsq": 0, "size_max": 0, "iat_sum_us": 0,
                "iat_sumsq_us2": 0}
        pk, by, fl, fn = [0, 0], [0, 0], [0] * 5, [0] * 5
        last_t, t0, last_emit = None, runs[0].t, runs[0].t
        head_done = False

        def snap(t):
            return {
                "proto": self.proto, "sport": self.sport, "dport": self.dport, "l7": self.l7,
                "duration_us": int(t - t0), "packets": list(pk), "bytes": list(by),
                "head": dict(head),
                "tcp": dict(zip(("syn", "syn_ack", "fin", "rst", "psh"), fl)),
                "functions": list(fn), "spread": dict(self.spread),
            }

        for r in runs:
            one = r.n == 1
            if head["count"] < HEAD and one:
                if head["count"] > 0:
                    g = r.t - last_t
                    head["iat_sum_us"] += g
                    head["iat_sumsq_us2"] += g * g
                last_t = r.t
                head["count"] += 1
                head["size_sum"] += r.size
                head["size_sumsq"] += r.size * r.size
                head["size_max"] = max(head["size_max"], r.size)
            pk[r.d] += r.n
            by[r.d] += r.bytes
            fl = [a + b for a, b in zip(fl, r.flags)]
            fn = [a + b for a, b in zip(fn, r.fns)]
            if not head_done and head["count"] == HEAD:
                head_done = True
                last_emit = r.t
                if pk[0] + pk[1] < total:
                    out.append(("head", snap(r.t)))
            elif periodic and r.t - last_emit >= PERIODIC_S * 1_000_000 and pk[0] + pk[1] < total:
                last_emit = r.t
                out.append(("periodic", snap(r.t)))
        out.append(("end", snap(runs[-1].t)))
        return out


def tcp(rng, dport, l7, rtt_us=None):
    c = Conv(rng, 6, dport, l7, rtt_us)
    c.sport = int(rng.integers(1024, 65535))
    return c


def udp(rng, dport, l7):
    c = Conv(rng, 17, dport, l7, lu(rng, 100, 20000))
    c.sport = int(rng.integers(1024, 65535))
    return c


def spread(c, src_hosts, src_ports, on_port, dst_sources):
    s = c.spread
    s["src_hosts"] = int(max(src_hosts, 1))
    s["src_ports"] = int(max(src_ports, 1))
    s["src_hosts_on_port"] = int(max(min(on_port, s["src_hosts"]), 1))
    s["dst_sources"] = int(max(dst_sources, 1))
    return c


# ---- normal profiles ---------------------------------------------------------------------------
def web(rng):
    tls = rng.random() < 0.6
    port = int(rng.choice([443, 443, 8443])) if tls else int(rng.choice([80, 80, 8080]))
    c = tcp(rng, port, "tls" if tls else "http").handshake()
    if tls:
        c.exchange(li(rng, 220, 600), li(rng, 1200, 6000), 100, lone_ack=False)
        c.exchange(li(rng, 64, 160), li(rng, 50, 300), 200, lone_ack=False)
    n = 1 if rng.random() < 0.5 else li(rng, 1, 40)
    think = lu(rng, 1000, 5_000_000)
    split = rng.random() < 0.5  # servers that write the header and the body separately

    def request(cc):
        body = li(rng, 100, 3_000_000) if rng.random() < 0.25 else li(rng, 10, 30_000)
        if split:
            cc.exchange(li(rng, 70, 900), li(rng, 120, 400), cc.jitter(think), lone_ack=rng.random() < 0.5)
            cc.write(1, body, cc.jitter(200))
            if rng.random() < 0.6:
                cc.pkt(0, cc.hdr, ACK, cc.jitter(cc.rtt / 2 + 40))
        else:
            cc.exchange(li(rng, 70, 900), body + li(rng, 120, 400), cc.jitter(think))
    c.conversation(n, request)
    if rng.random() < 0.9:
        c.close(rst=rng.random() < 0.05)
    return spread(c, li(rng, 1, 40), li(rng, 1, 3), li(rng, 1, 40), li(rng, 1, 800))


def database(rng):
    port = int(rng.choice([5432, 3306, 1433, 1521]))
    c = tcp(rng, port, "unknown").handshake()
    c.exchange(li(rng, 8, 120), li(rng, 8, 400), 50, lone_ack=False)  # startup / auth
    c.exchange(li(rng, 40, 300), li(rng, 100, 900), 200, lone_ack=False)
    think = lu(rng, 200, 10_000_000)
    c.conversation(li(rng, 1, 20000), lambda cc: cc.exchange(li(rng, 20, 1500), li(rng, 20, 60_000), cc.jitter(think)))
    if rng.random() < 0.8:
        c.close()
    return spread(c, li(rng, 1, 4), li(rng, 1, 3), li(rng, 1, 3), li(rng, 2, 60))


def dns(rng):
    c = udp(rng, 53, "dns")
    q = li(rng, 20, 90)
    c.pkt(0, 28 + q, 0)
    if rng.random() < 0.92:
        c.pkt(1, 28 + q + li(rng, 16, 450), 0, c.jitter(c.rtt))
    elif rng.random() < 0.5:
        c.pkt(0, 28 + q, 0, lu(rng, 1e6, 5e6)).pkt(1, 28 + q + li(rng, 16, 450), 0, c.jitter(c.rtt))
    return spread(c, li(rng, 1, 4), 1, li(rng, 1, 3), li(rng, 5, 3000))


def ntp_icmp(rng):
    """NTP polls and pings: small UDP/ICMP request-reply pairs."""
    if rng.random() < 0.5:
        c = udp(rng, 123, "unknown")
        c.conversation(li(rng, 1, 8), lambda cc: cc.pkt(0, 76, 0, lu(rng, 1e6, 64e6)).pkt(1, 76, 0, cc.jitter(cc.rtt)))
    else:
        c = Conv(rng, 1, 0, "unknown", lu(rng, 50, 5000))
        c.sport = int(rng.integers(1, 65535))
        size = int(rng.choice([84, 84, 60, 1028]))
        c.conversation(li(rng, 1, 30), lambda cc: cc.pkt(0, size, 0, cc.jitter(1e6)).pkt(1, size, 0, cc.jitter(cc.rtt)))
    return spread(c, li(rng, 1, 10), li(rng, 1, 2), li(rng, 1, 10), li(rng, 1, 50))


def modbus_poll(rng):
    c = tcp(rng, 502, "modbus", lu(rng, 100, 5000)).handshake()
    period = lu(rng, 50_000, 2_000_000)
    wshare = rng.uniform(0, 0.05) if rng.random() < 0.3 else 0.0

    def poll(cc):
        w = rng.random() < wshare
        n = li(rng, 1, 60)
        req, resp = (64 + 2 * n, 64) if w else (64, 61 + 2 * n)
        cc.exchange(req - cc.hdr, resp - cc.hdr, cc.jitter(period), WRITE if w else READ,
                    lone_ack=period > 40_000 and rng.random() < 0.8)
    c.conversation(li(rng, 1, 20000), poll)
    if rng.random() < 0.7:
        c.close()
    return spread(c, li(rng, 1, 24), li(rng, 1, 3), li(rng, 1, 24), li(rng, 1, 3))


def dnp3(rng):
    c = tcp(rng, 20000, "dnp3", lu(rng, 200, 20000)).handshake()
    period = lu(rng, 200_000, 10_000_000)
    ops = rng.uniform(0, 0.03) if rng.random() < 0.4 else 0.0

    def poll(cc):
        op = rng.random() < ops
        cc.exchange(li(rng, 20, 60), li(rng, 20, 250), cc.jitter(period), CONTROL if op else READ)
        if rng.random() < 0.1:  # unsolicited response and its confirm
            cc.write(1, li(rng, 20, 120), cc.jitter(period / 3), None)
            cc.write(0, 15, cc.jitter(cc.rtt), OTHER)
    c.conversation(li(rng, 1, 5000), poll)
    if rng.random() < 0.6:
        c.close()
    return spread(c, li(rng, 1, 16), li(rng, 1, 2), li(rng, 1, 16), li(rng, 1, 3))


def file_share(rng):
    c = tcp(rng, 445, "smb").handshake()
    for _ in range(3):  # negotiate, session setup, tree connect
        c.exchange(li(rng, 100, 400), li(rng, 100, 500), 500, lone_ack=False)
    up = rng.random() < 0.3
    think = lu(rng, 500, 3_000_000)

    def op(cc):
        big = li(rng, 200, 2_000_000) if rng.random() < 0.4 else li(rng, 80, 2000)
        if up:
            cc.exchange(big, li(rng, 60, 200), cc.jitter(think))
        else:
            cc.exchange(li(rng, 80, 300), big, cc.jitter(think))
    c.conversation(li(rng, 1, 3000), op)
    if rng.random() < 0.7:
        c.close()
    return spread(c, li(rng, 1, 4), li(rng, 1, 4), li(rng, 1, 3), li(rng, 3, 400))


def admin(rng):
    """IT administration: SSH/RDP/WinRM to a handful of servers, sometimes an inventory sweep."""
    port = int(rng.choice([3389, 5985, 22, 445]))
    c = tcp(rng, port, {3389: "rdp", 5985: "http", 22: "ssh", 445: "smb"}[port]).handshake()
    c.exchange(li(rng, 20, 600), li(rng, 20, 1500), 500, lone_ack=False)
    c.exchange(li(rng, 20, 1500), li(rng, 20, 4000), 2000, lone_ack=False)
    think = lu(rng, 20_000, 3_000_000)
    c.conversation(li(rng, 1, 5000), lambda cc: cc.exchange(li(rng, 30, 300), li(rng, 30, 8000), cc.jitter(think)))
    if rng.random() < 0.8:
        c.close()
    hosts = li(rng, 1, 25)
    return spread(c, hosts, li(rng, 1, 4), hosts, li(rng, 1, 10))


def refused(rng):
    """A failed connection: a service that is down, a closed port, a policy that refuses it (only
    the first SYN is seen), a client retrying. One host and port, not a sweep."""
    port = int(rng.choice([80, 443, 445, 3389, 22, 5432, 502, 8080, 0]))
    c = tcp(rng, port or li(rng, 1024, 65000), "unknown")
    k = rng.random()
    if k < 0.35:
        c.pkt(0, c.syn_size, SYN)
    elif k < 0.6:
        c.pkt(0, c.syn_size, SYN).pkt(0, c.syn_size, SYN, lu(rng, 1e6, 3e6))
    else:
        c.pkt(0, c.syn_size, SYN).pkt(1, 40, RST | ACK, c.jitter(c.rtt))
    return spread(c, li(rng, 1, 40), li(rng, 1, 3), li(rng, 1, 2), li(rng, 1, 50))


NORMAL = {"web": (web, 10), "refused": (refused, 2), "database": (database, 5), "dns": (dns, 8), "modbus_poll": (modbus_poll, 6),
          "dnp3": (dnp3, 4), "file_share": (file_share, 5), "admin": (admin, 3), "ntp_icmp": (ntp_icmp, 2)}


# ---- attack profiles ---------------------------------------------------------------------------
def probe(rng, c):
    """A connection attempt as a scanner makes it: refused by the gateway (only the first SYN is
    seen), unanswered (SYN retries), closed port (RST), or open (handshake, then RST or close)."""
    k = rng.random()
    if k < 0.3:
        c.pkt(0, int(rng.choice([44, 60])), SYN)
    elif k < 0.45:
        c.pkt(0, c.syn_size, SYN).pkt(0, c.syn_size, SYN, lu(rng, 1e6, 3e6))
    elif k < 0.85:
        c.pkt(0, int(rng.choice([44, c.syn_size])), SYN).pkt(1, 40, RST | ACK, c.jitter(c.rtt))
    else:
        c.handshake()
        if rng.random() < 0.5:
            c.pkt(0, 40, RST | ACK, c.jitter(100))
        else:
            c.close(who=0)
    return c


def tcp_scan(rng):
    ports = li(rng, 8, 3000)
    c = probe(rng, tcp(rng, li(rng, 1, 65000), "unknown"))
    # the k-th probe of a scan sees the fan-out so far
    seen = max(int(ports * rng.uniform(0.3, 1.0)), 6)
    return spread(c, li(rng, 1, 60), seen, li(rng, 1, 60), li(rng, 1, 3))


def udp_scan(rng):
    c = udp(rng, li(rng, 1, 65000), "unknown")
    c.pkt(0, li(rng, 28, 80), 0)
    if rng.random() < 0.3:
        c.pkt(1, li(rng, 28, 100), 0, c.jitter(c.rtt))
    ports = li(rng, 8, 3000)
    return spread(c, li(rng, 1, 60), max(int(ports * rng.uniform(0.3, 1.0)), 6), li(rng, 1, 60), li(rng, 1, 3))


def lateral(rng):
    port = int(rng.choice([445, 445, 139, 3389, 5985, 5986, 135]))
    hosts = li(rng, 3, 600)
    if rng.random() < 0.7:
        c = probe(rng, tcp(rng, port, "unknown"))
    else:
        c = tcp(rng, port, {445: "smb", 139: "smb", 3389: "rdp", 5985: "http", 5986: "tls", 135: "unknown"}[port]).handshake()
        c.conversation(li(rng, 1, 8), lambda cc: cc.exchange(li(rng, 60, 400), li(rng, 60, 600), cc.jitter(2000)))
        c.close(rst=rng.random() < 0.5)
    return spread(c, hosts + (li(rng, 1, 10 + 1) - 1), li(rng, 1, 6), hosts, li(rng, 1, 5))


def modbus_write_storm(rng):
    c = tcp(rng, 502, "modbus", lu(rng, 100, 5000)).handshake()
    period = lu(rng, 500, 50_000)
    w = rng.uniform(0.3, 1.0)

    def op(cc):
        wr = rng.random() < w
        n = li(rng, 1, 60)
        req, resp = (64 + 2 * n, 64) if wr else (64, 61 + 2 * n)
        cc.exchange(req - cc.hdr, resp - cc.hdr, cc.jitter(period), WRITE if wr else READ)
    c.conversation(li(rng, 10, 5000), op)
    c.close()
    return spread(c, li(rng, 1, 6), 1, li(rng, 1, 6), li(rng, 1, 3))


def dnp3_cold_restart(rng):
    c = tcp(rng, 20000, "dnp3").handshake()
    c.conversation((li(rng, 1, 20 + 1) - 1), lambda cc: cc.exchange(li(rng, 20, 60), li(rng, 20, 250), cc.jitter(50_000), READ))
    for _ in range(li(rng, 1, 5)):
        c.exchange(20, 20, c.jitter(20_000), DISRUPTIVE)
    c.close(rst=rng.random() < 0.3)
    return spread(c, li(rng, 1, 10), 1, li(rng, 1, 10), li(rng, 1, 3))


def s7_stop(rng):
    c = tcp(rng, 102, "s7comm").handshake()
    c.exchange(22, 22, 100, OTHER)  # COTP connect
    c.exchange(25, 27, 100, OTHER)  # setup communication
    c.conversation((li(rng, 1, 40 + 1) - 1), lambda cc: cc.exchange(li(rng, 30, 120), li(rng, 30, 300), cc.jitter(20_000),
                                                        WRITE if rng.random() < 0.3 else READ))
    for _ in range(li(rng, 1, 3)):
        c.exchange(33, 22, c.jitter(20_000), DISRUPTIVE)
    c.close(rst=rng.random() < 0.3)
    return spread(c, li(rng, 1, 8), li(rng, 1, 2), li(rng, 1, 8), li(rng, 1, 3))


def exfiltration(rng):
    port = int(rng.choice([443, 443, 8443, 53, 22, 4444]))
    c = tcp(rng, port, "tls" if port in (443, 8443) else str(rng.choice(["unknown", "ssh"])),
            lu(rng, 1000, 80_000)).handshake()
    c.conversation(li(rng, 5, 400), lambda cc: cc.exchange(li(rng, 200_000, 20_000_000), li(rng, 50, 400), cc.jitter(2000),
                                                          lone_ack=False))
    c.close()
    return spread(c, li(rng, 1, 3), li(rng, 1, 2), 1, 1)


# Attack records that carry the attack: a probe's every record; otherwise the periodic and final
# records (the first packets of a write storm or an upload look like any other session's).
ATTACK = {"tcp_scan": (tcp_scan, 4, "all"), "udp_scan": (udp_scan, 2, "all"),
          "lateral_sweep": (lateral, 4, "all"), "modbus_write_storm": (modbus_write_storm, 2, "later"),
          "dnp3_cold_restart": (dnp3_cold_restart, 1, "end"), "s7_stop": (s7_stop, 1, "end"),
          "exfiltration": (exfiltration, 2, "later")}


def generate(seed, n_normal, n_attack):
    """Returns a list of (profile, label, raw_record): n_normal normal records and n_attack attack
    records. Deterministic in (seed, n_normal, n_attack)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    rows = []
    tables = (({k: (v[0], v[1], "all") for k, v in NORMAL.items()}, n_normal, 0), (ATTACK, n_attack, 1))
    for table, n, label in tables:
        names = sorted(table)
        weights = np.array([table[k][1] for k in names], dtype=np.float64)
        got = 0
        while got < n:
            name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            make, _, keep = table[name]
            recs = make(rng).records()
            if keep == "end":
                recs = recs[-1:]
            elif keep == "later":
                recs = [r for r in recs if r[0] != "head"]
            for _, raw in recs[:n - got]:
                rows.append((name, label, raw))
            got += min(len(recs), n - got)
    return rows
