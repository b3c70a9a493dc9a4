//! ClassBench filter and trace files (formats in `../shared/data/classbench/README.md`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use septa_classifier::{
    Action, AddrMatch, FlowKey, Mode, PortRange, Prefix, Rule, RuleId, SourceRef,
};

/// Parses a filter file: one rule per line, first line highest priority. Rule `i` (0-based line
/// among non-empty lines) gets id `i`; even ids allow, odd ids deny (ClassBench has no actions).
pub fn parse_rules(text: &str) -> anyhow::Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rule = parse_rule(line, rules.len())
            .with_context(|| format!("rules line {}: {line:?}", n + 1))?;
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_rule(line: &str, index: usize) -> anyhow::Result<Rule> {
    let line = line.trim();
    let Some(rest) = line.strip_prefix('@') else {
        bail!("missing leading '@'")
    };
    let t: Vec<&str> = rest.split_whitespace().collect();
    if t.len() < 9 || t[3] != ":" || t[6] != ":" {
        bail!("expected `@src/len dst/len lo : hi lo : hi proto/mask [flags/mask]`");
    }
    if t.len() > 10 {
        bail!("too many fields");
    }
    let sport = range(t[2], t[4]).context("source port range")?;
    let dport = range(t[5], t[7]).context("destination port range")?;
    let (proto, mask) = t[8]
        .split_once('/')
        .context("protocol must be value/mask")?;
    let (proto, mask) = (
        hex_u8(proto).context("protocol")?,
        hex_u8(mask).context("protocol mask")?,
    );
    let proto = match mask {
        0 => None,
        0xff => Some(proto),
        m => bail!("protocol mask {m:#04x} is neither 0x00 nor 0xFF"),
    };
    Ok(Rule {
        id: RuleId(index as u32),
        src: prefix(t[0]).context("source prefix")?,
        dst: prefix(t[1]).context("destination prefix")?,
        sport,
        dport,
        proto,
        in_port: None,
        vlan: None,
        action: if index.is_multiple_of(2) {
            Action::Allow
        } else {
            Action::Deny
        },
        mode: Mode::Enforce,
        source: SourceRef(index as u64),
    })
}

fn hex_u8(s: &str) -> anyhow::Result<u8> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .context("expected 0x..")?;
    Ok(u8::from_str_radix(digits, 16)?)
}

fn range(lo: &str, hi: &str) -> anyhow::Result<PortRange> {
    let (lo, hi): (u16, u16) = (lo.parse()?, hi.parse()?);
    if lo > hi {
        bail!("{lo} > {hi}");
    }
    Ok(PortRange { lo, hi })
}

/// A ClassBench prefix; host bits are cleared (rte_acl does the same). `/0` becomes Any.
fn prefix(s: &str) -> anyhow::Result<AddrMatch> {
    let (addr, len) = s.split_once('/').context("expected addr/len")?;
    let addr: Ipv4Addr = addr.parse()?;
    let len: u8 = len.parse()?;
    if len > 32 {
        bail!("prefix length {len} > 32");
    }
    if len == 0 {
        return Ok(AddrMatch::Any);
    }
    let mask = u32::MAX << (32 - u32::from(len));
    Ok(AddrMatch::prefix(Prefix::v4(
        Ipv4Addr::from(u32::from(addr) & mask),
        len,
    )))
}

/// Parses a trace file: `src dst sport dport proto [...]` per line, decimal.
pub fn parse_trace(text: &str) -> anyhow::Result<Vec<FlowKey>> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let key = parse_header(line).with_context(|| format!("trace line {}: {line:?}", n + 1))?;
        keys.push(key);
    }
    Ok(keys)
}

fn parse_header(line: &str) -> anyhow::Result<FlowKey> {
    let t: Vec<&str> = line.split_whitespace().collect();
    if t.len() < 5 {
        bail!("expected at least 5 fields");
    }
    Ok(FlowKey::v4(
        Ipv4Addr::from(t[0].parse::<u32>().context("source address")?),
        Ipv4Addr::from(t[1].parse::<u32>().context("destination address")?),
        t[4].parse().context("protocol")?,
        t[2].parse().context("source port")?,
        t[3].parse().context("destination port")?,
    ))
}

/// Writes IPv4 rules in ClassBench filter format (for dpdk-test-acl on generated sets).
pub fn write_rules(rules: &[Rule]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (i, r) in rules.iter().enumerate() {
        let p = |m: &AddrMatch| -> anyhow::Result<String> {
            match m {
                AddrMatch::Any => Ok("0.0.0.0/0".into()),
                AddrMatch::Prefixes(ps) if ps.len() == 1 => Ok(ps[0].to_string()),
                _ => bail!("rule {i}: only single IPv4 prefixes fit the ClassBench format"),
            }
        };
        let (proto, mask) = r.proto.map_or((0, 0), |p| (p, 0xff));
        writeln!(
            out,
            "@{} {} {} : {} {} : {} 0x{proto:02x}/0x{mask:02X}",
            p(&r.src)?,
            p(&r.dst)?,
            r.sport.lo,
            r.sport.hi,
            r.dport.lo,
            r.dport.hi
        )?;
    }
    Ok(out)
}

/// Writes IPv4 keys in ClassBench trace format (set A; the filter column holds `match + 1`, 0 when
/// nothing matches).
pub fn write_trace(keys: &[FlowKey], matches: &[Option<usize>]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (k, m) in keys.iter().zip(matches) {
        // Truncation is intended: IPv4 lives in the low 32 bits.
        writeln!(
            out,
            "{} {} {} {} {} {}",
            k.src as u32,
            k.dst as u32,
            k.sport,
            k.dport,
            k.proto,
            m.map_or(0, |m| m + 1)
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_rule_layouts() {
        let a = "@175.77.88.155/32 119.106.158.0/24 0 : 65535 6888 : 6888 0x06/0xFF\n";
        let b = "@1.2.3.4/32\t0.0.0.0/0\t1 : 2\t3 : 4\t0x00/0x00\t0x1000/0x1000\n";
        let rules = parse_rules(&format!("{a}{b}")).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].proto, Some(6));
        assert_eq!(rules[0].dport, PortRange::exact(6888));
        assert_eq!(rules[1].dst, AddrMatch::Any);
        assert_eq!(rules[1].proto, None);
        let back = write_rules(&rules[..1]).unwrap();
        assert_eq!(
            back,
            "@175.77.88.155/32 119.106.158.0/24 0 : 65535 6888 : 6888 0x06/0xFF\n"
        );
    }

    #[test]
    fn bad_lines_name_the_line_number() {
        let text = "@1.2.3.4/32 5.6.7.8/32 0 : 65535 80 : 80 0x06/0xFF\n@1.2.3.4/33 5.6.7.8/32 0 : 1 2 : 3 0x06/0xFF\n";
        let err = format!("{:#}", parse_rules(text).unwrap_err());
        assert!(err.contains("rules line 2"), "{err}");
        let err = format!(
            "{:#}",
            parse_rules("@1.2.3.4/32 5.6.7.8/32 9 : 1 2 : 3 0x06/0xFF").unwrap_err()
        );
        assert!(err.contains("line 1") && err.contains("9 > 1"), "{err}");
        let err = format!(
            "{:#}",
            parse_trace("1 2 3 4 6 1\n1 2 x 4 6 1\n").unwrap_err()
        );
        assert!(err.contains("trace line 2"), "{err}");
    }

    #[test]
    fn parses_trace_sets_a_and_b() {
        let keys = parse_trace("1600753409 3271393328 65535 21 6 413\n0 1 2 3 17 0 7\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].sport, keys[0].dport, keys[0].proto),
            (65535, 21, 6)
        );
        assert_eq!(keys[1].proto, 17);
    }
}
