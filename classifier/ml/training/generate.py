"""Deterministic generator of labelled flow-feature records (the raw FeatureRecord fields) from
normal and attack traffic profiles. Same seed -> same rows, on any machine (integer arithmetic on
numpy's PCG64 draws)."""
import numpy as np

L7 = {"unknown": 0, "http": 1, "tls": 2, "dns": 3, "ssh": 4, "smb": 5, "rdp": 6, "kerberos": 7,
      "modbus": 8, "dnp3": 9, "s7comm": 10, "enip": 11, "bacnet": 12, "iec104": 13, "opcua": 14}
HEAD = 8


class Flow:
    """Builds one raw record; the helpers keep the counters consistent with each other."""

    def __init__(self, rng, proto, dport, l7, pf, pr, size_f, size_r, dur_s, iat_ms, iat_cv):
        self.rng = rng
        pf, pr = int(max(pf, 1)), int(max(pr, 0))
        sizes, gaps = [], []
        n_head = min(HEAD, pf + pr)
        for i in range(n_head):
            fwd = i % 2 == 0 or pr == 0
            mean = size_f if fwd else size_r
            sizes.append(int(np.clip(rng.normal(mean, mean * 0.25), 40, 1514)))
            if i > 0:
                gaps.append(int(max(rng.normal(iat_ms, iat_ms * iat_cv), 0.0) * 1000))
        bf = int(sum(int(np.clip(rng.normal(size_f, size_f * 0.2), 40, 1514)) for _ in range(min(pf, 64))) * pf / min(pf, 64))
        br = 0 if pr == 0 else int(sum(int(np.clip(rng.normal(size_r, size_r * 0.2), 40, 1514)) for _ in range(min(pr, 64))) * pr / min(pr, 64))
        self.r = {
            "proto": proto, "sport": int(rng.integers(1024, 65535)), "dport": int(dport),
            "l7": L7[l7], "duration_us": int(max(dur_s, 0.0) * 1e6),
            "packets": [pf, pr], "bytes": [bf, br],
            "head": {"count": n_head, "size_sum": sum(sizes), "size_sumsq": sum(s * s for s in sizes),
                     "size_max": max(sizes) if sizes else 0, "iat_sum_us": sum(gaps),
                     "iat_sumsq_us2": sum(g * g for g in gaps)},
            "tcp": {"syn": 0, "syn_ack": 0, "fin": 0, "rst": 0, "psh": 0},
            "functions": [0, 0, 0, 0, 0],
            "spread": {"src_hosts": 1, "src_ports": 1, "src_hosts_on_port": 1, "dst_sources": 1,
                       "window_s": 10},
        }

    def tcp_session(self, complete=True, rst=False):
        t = self.r["tcp"]
        pk = sum(self.r["packets"])
        t["syn"] = 1 if complete else max(1, self.r["packets"][0])
        t["syn_ack"] = 1 if complete else 0
        t["fin"] = 2 if complete and not rst and pk >= 6 else 0
        t["rst"] = 1 if rst else 0
        t["psh"] = int(pk * self.rng.uniform(0.2, 0.6)) if complete else 0
        return self

    def spread(self, src_hosts, src_ports, on_port, dst_sources):
        s = self.r["spread"]
        s["src_hosts"] = int(max(src_hosts, 1))
        s["src_ports"] = int(max(src_ports, 1))
        s["src_hosts_on_port"] = int(max(min(on_port, s["src_hosts"]), 1))
        s["dst_sources"] = int(max(dst_sources, 1))
        return self

    def functions(self, read=0, write=0, control=0, disruptive=0, other=0):
        self.r["functions"] = [int(read), int(write), int(control), int(disruptive), int(other)]
        return self


def li(rng, lo, hi):
    """Log-uniform integer in [lo, hi]."""
    return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def lu(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


# ---- normal profiles ---------------------------------------------------------------------------
def web(rng):
    pf = li(rng, 4, 60)
    f = Flow(rng, 6, rng.choice([443, 443, 80, 8443]), rng.choice(["tls", "tls", "http"]), pf,
             int(pf * rng.uniform(0.8, 4)), lu(rng, 80, 600), lu(rng, 400, 1400), lu(rng, 0.05, 60),
             lu(rng, 0.5, 80), rng.uniform(0.3, 1.5))
    return f.tcp_session(rst=rng.random() < 0.05).spread(li(rng, 1, 40), li(rng, 1, 3), li(rng, 1, 40), li(rng, 1, 800))


def database(rng):
    pf = li(rng, 10, 5000)
    f = Flow(rng, 6, rng.choice([5432, 3306, 1433, 1521]), "unknown", pf, int(pf * rng.uniform(0.8, 1.5)),
             lu(rng, 80, 400), lu(rng, 100, 1400), lu(rng, 1, 3600), lu(rng, 0.2, 200), rng.uniform(0.5, 2))
    return f.tcp_session().spread(li(rng, 1, 4), li(rng, 1, 3), li(rng, 1, 3), li(rng, 2, 60))


def dns(rng):
    f = Flow(rng, 17, 53, "dns", 1, rng.choice([1, 1, 1, 0]), lu(rng, 50, 120), lu(rng, 80, 500),
             lu(rng, 0.001, 0.2), 1, 0.5)
    return f.spread(li(rng, 1, 4), 1, li(rng, 1, 3), li(rng, 5, 3000))


def modbus_poll(rng):
    pf = li(rng, 20, 20000)
    f = Flow(rng, 6, 502, "modbus", pf, pf, lu(rng, 60, 80), lu(rng, 60, 260), lu(rng, 10, 3600),
             lu(rng, 50, 2000), rng.uniform(0.01, 0.1))
    writes = int(pf * rng.uniform(0, 0.05)) if rng.random() < 0.3 else 0
    f.functions(read=pf - writes, write=writes, other=int(rng.random() < 0.1))
    return f.tcp_session().spread(li(rng, 1, 24), li(rng, 1, 3), li(rng, 1, 24), li(rng, 1, 3))


def dnp3(rng):
    pf = li(rng, 10, 5000)
    f = Flow(rng, 6, 20000, "dnp3", pf, pf, lu(rng, 60, 120), lu(rng, 60, 300), lu(rng, 10, 3600),
             lu(rng, 200, 10000), rng.uniform(0.02, 0.2))
    ops = int(pf * rng.uniform(0, 0.03)) if rng.random() < 0.4 else 0
    f.functions(read=pf - ops, control=ops, other=int(rng.random() < 0.2))
    return f.tcp_session().spread(li(rng, 1, 16), li(rng, 1, 2), li(rng, 1, 16), li(rng, 1, 3))


def file_share(rng):
    pf = li(rng, 10, 20000)
    up = rng.random() < 0.3
    f = Flow(rng, 6, 445, "smb", pf, int(pf * rng.uniform(0.5, 2)), lu(rng, 100, 1400) if up else lu(rng, 100, 300),
             lu(rng, 100, 300) if up else lu(rng, 300, 1400), lu(rng, 0.5, 3600), lu(rng, 0.1, 50), rng.uniform(0.5, 2))
    return f.tcp_session().spread(li(rng, 1, 4), li(rng, 1, 4), li(rng, 1, 3), li(rng, 3, 400))


def admin(rng):
    """IT administration: RDP/WinRM/SSH to a handful of servers, sometimes an inventory sweep."""
    port = rng.choice([3389, 5985, 22, 445])
    pf = li(rng, 8, 5000)
    f = Flow(rng, 6, port, {3389: "rdp", 5985: "http", 22: "ssh", 445: "smb"}[int(port)], pf,
             int(pf * rng.uniform(0.8, 3)), lu(rng, 80, 400), lu(rng, 100, 1400), lu(rng, 1, 7200),
             lu(rng, 1, 200), rng.uniform(0.5, 2))
    hosts = li(rng, 1, 25)
    return f.tcp_session().spread(hosts, li(rng, 1, 4), hosts, li(rng, 1, 10))


NORMAL = {"web": (web, 10), "database": (database, 5), "dns": (dns, 8), "modbus_poll": (modbus_poll, 6),
          "dnp3": (dnp3, 4), "file_share": (file_share, 5), "admin": (admin, 3)}


# ---- attack profiles ---------------------------------------------------------------------------
def tcp_scan(rng):
    ports = li(rng, 8, 3000)
    f = Flow(rng, 6, li(rng, 1, 65000), "unknown", rng.choice([1, 1, 2]), rng.choice([0, 1]),
             lu(rng, 40, 60), lu(rng, 40, 60), lu(rng, 0.0001, 0.5), lu(rng, 0.01, 300), 1.0)
    f.tcp_session(complete=rng.random() < 0.1, rst=rng.random() < 0.7)
    return f.spread(li(rng, 1, 60), ports, li(rng, 1, 60), li(rng, 1, 3))


def udp_scan(rng):
    f = Flow(rng, 17, li(rng, 1, 65000), "unknown", rng.choice([1, 1, 2]), rng.choice([0, 0, 1]),
             lu(rng, 28, 80), lu(rng, 28, 100), lu(rng, 0.0001, 1), lu(rng, 0.01, 500), 1.0)
    return f.spread(li(rng, 1, 60), li(rng, 8, 3000), li(rng, 1, 60), li(rng, 1, 3))


def lateral(rng):
    port = rng.choice([445, 3389, 5985, 5986, 135])
    hosts = li(rng, 10, 600)
    complete = rng.random() < 0.4
    pf = li(rng, 1, 40) if complete else rng.choice([1, 2])
    f = Flow(rng, 6, port, {445: "smb", 3389: "rdp", 5985: "http", 5986: "tls", 135: "unknown"}[int(port)] if complete else "unknown",
             pf, int(pf * rng.uniform(0, 1.5)), lu(rng, 60, 400), lu(rng, 60, 600), lu(rng, 0.001, 5),
             lu(rng, 0.1, 100), 1.0)
    f.tcp_session(complete=complete, rst=rng.random() < 0.5)
    return f.spread(hosts + li(rng, 1, 10), li(rng, 1, 6), hosts, li(rng, 1, 5))


def modbus_write_storm(rng):
    pf = li(rng, 20, 5000)
    f = Flow(rng, 6, 502, "modbus", pf, pf, lu(rng, 60, 260), lu(rng, 60, 80), lu(rng, 0.5, 120),
             lu(rng, 0.5, 50), rng.uniform(0.1, 1))
    w = int(pf * rng.uniform(0.3, 1.0))
    f.functions(read=pf - w, write=w)
    return f.tcp_session().spread(li(rng, 1, 6), 1, li(rng, 1, 6), li(rng, 1, 3))


def dnp3_cold_restart(rng):
    pf = li(rng, 2, 60)
    f = Flow(rng, 6, 20000, "dnp3", pf, pf, lu(rng, 60, 120), lu(rng, 60, 120), lu(rng, 0.05, 30),
             lu(rng, 1, 500), rng.uniform(0.1, 1))
    return f.functions(read=int(pf * rng.uniform(0, 0.8)), disruptive=li(rng, 1, 5)).tcp_session() \
        .spread(li(rng, 1, 10), 1, li(rng, 1, 10), li(rng, 1, 3))


def s7_stop(rng):
    pf = li(rng, 4, 80)
    f = Flow(rng, 6, 102, "s7comm", pf, pf, lu(rng, 60, 300), lu(rng, 60, 300), lu(rng, 0.05, 30),
             lu(rng, 1, 500), rng.uniform(0.1, 1))
    return f.functions(read=int(pf * rng.uniform(0, 0.5)), write=int(pf * rng.uniform(0, 0.3)), disruptive=li(rng, 1, 3)) \
        .tcp_session().spread(li(rng, 1, 8), li(rng, 1, 2), li(rng, 1, 8), li(rng, 1, 3))


def exfiltration(rng):
    pf = li(rng, 2000, 500000)
    f = Flow(rng, 6, rng.choice([443, 443, 8443, 53, 22, 4444]), rng.choice(["tls", "unknown", "ssh"]),
             pf, int(pf * rng.uniform(0.02, 0.3)), lu(rng, 1000, 1460), lu(rng, 52, 120), lu(rng, 5, 1800),
             lu(rng, 0.05, 5), rng.uniform(0.2, 1))
    return f.tcp_session().spread(li(rng, 1, 3), li(rng, 1, 2), 1, 1)


ATTACK = {"tcp_scan": (tcp_scan, 4), "udp_scan": (udp_scan, 2), "lateral_sweep": (lateral, 4),
          "modbus_write_storm": (modbus_write_storm, 2), "dnp3_cold_restart": (dnp3_cold_restart, 1),
          "s7_stop": (s7_stop, 1), "exfiltration": (exfiltration, 2)}


def generate(seed, n_normal, n_attack):
    """Returns a list of (profile, label, raw_record). Deterministic in (seed, n_normal, n_attack)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    rows = []
    for table, n, label in ((NORMAL, n_normal, 0), (ATTACK, n_attack, 1)):
        names = sorted(table)
        weights = np.array([table[k][1] for k in names], dtype=np.float64)
        picks = rng.choice(len(names), size=n, p=weights / weights.sum())
        for p in picks:
            name = names[int(p)]
            rows.append((name, label, table[name][0](rng).r))
    return rows
