"""Mirror of `septa_features::featurize` (classifier/features/src/lib.rs). Keep the two in step;
the Rust parity test checks committed rows computed here against the Rust function."""
import math

import numpy as np

SCHEMA_VERSION = 1
N_FEATURES = 32
ICS_PORTS = (502, 20000, 102, 44818, 2222, 2404, 47808, 4840)
LATERAL_PORTS = (445, 139, 135, 3389, 5985, 5986, 22)
FEATURE_NAMES = [
    "is_tcp", "is_udp", "log_duration_s", "log_packets_fwd", "log_packets_rev",
    "log_bytes_fwd", "log_bytes_rev", "fwd_byte_share", "head_size_mean", "head_size_std",
    "head_size_max", "log_head_iat_mean_ms", "log_head_iat_std_ms", "syn_share", "fin_share",
    "rst_share", "psh_share", "handshake_done", "dport_well_known", "dport_ics", "dport_lateral",
    "log_src_hosts", "log_src_ports", "log_src_hosts_on_port", "log_dst_sources",
    "fn_read_share", "fn_write_share", "fn_control_share", "log_fn_disruptive", "log_fn_total",
    "l7_identified", "log_packet_rate",
]


def _ln1p(x):
    return math.log1p(max(x, 0.0))


def _share(part, whole):
    return 0.0 if whole == 0 else part / whole


def _mean_std(n, s, sq):
    if n == 0:
        return 0.0, 0.0
    mean = s / n
    var = max(sq / n - mean * mean, 0.0)
    return mean, math.sqrt(var)


def featurize(r):
    """r: the raw record dict written by generate.py. Returns float32[32]."""
    v = [0.0] * N_FEATURES
    tcp = r["proto"] == 6
    v[0] = 1.0 if tcp else 0.0
    v[1] = 1.0 if r["proto"] == 17 else 0.0
    dur_s = r["duration_us"] / 1e6
    v[2] = _ln1p(dur_s)
    pf, pr = r["packets"]
    bf, br = r["bytes"]
    v[3] = _ln1p(pf)
    v[4] = _ln1p(pr)
    v[5] = _ln1p(bf)
    v[6] = _ln1p(br)
    v[7] = _share(bf, bf + br)
    h = r["head"]
    m, s = _mean_std(h["count"], h["size_sum"], h["size_sumsq"])
    v[8] = m / 1500.0
    v[9] = s / 1500.0
    v[10] = h["size_max"] / 1500.0
    m, s = _mean_std(max(h["count"] - 1, 0), h["iat_sum_us"], h["iat_sumsq_us2"])
    v[11] = _ln1p(m / 1000.0)
    v[12] = _ln1p(s / 1000.0)
    pk = pf + pr
    t = r["tcp"]
    v[13] = _share(t["syn"], pk)
    v[14] = _share(t["fin"], pk)
    v[15] = _share(t["rst"], pk)
    v[16] = _share(t["psh"], pk)
    v[17] = 1.0 if (tcp and t["syn_ack"] > 0) else 0.0
    d = r["dport"]
    v[18] = 1.0 if d < 1024 else 0.0
    v[19] = 1.0 if d in ICS_PORTS else 0.0
    v[20] = 1.0 if d in LATERAL_PORTS else 0.0
    sp = r["spread"]
    v[21] = _ln1p(sp["src_hosts"])
    v[22] = _ln1p(sp["src_ports"])
    v[23] = _ln1p(sp["src_hosts_on_port"])
    v[24] = _ln1p(sp["dst_sources"])
    f = r["functions"]
    tot = sum(f)
    v[25] = _share(f[0], tot)
    v[26] = _share(f[1], tot)
    v[27] = _share(f[2], tot)
    v[28] = _ln1p(f[3])
    v[29] = _ln1p(tot)
    v[30] = 1.0 if r["l7"] != 0 else 0.0
    v[31] = _ln1p(pk / max(dur_s, 0.001))
    return np.asarray(v, dtype=np.float64).astype(np.float32)
