//! A first `up` whose members never formed a cluster: telling it apart from a cluster that
//! formed (and so holds data someone may need), and reading the likely causes out of the
//! members' logs. Pure: the facts come from [`crate::host::scripts::formation`] and the log tails.

use std::collections::BTreeMap;

/// What one member's host said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub name: String,
    /// Its etcd runs now.
    pub running: bool,
    /// Leader elections its log shows since its data dir was made; `None`: the log could not be read.
    pub elected: Option<u64>,
    /// The end of its log.
    pub log: String,
}

/// Whether nothing lasting was created: no verdict ever saw quorum, and every member's log was
/// read and shows no leader ever elected. Anything unknown counts as formed (kept protected).
pub fn never_formed(saw_quorum: bool, facts: &[Option<MemberFacts>]) -> bool {
    !saw_quorum && !facts.is_empty() && facts.iter().all(|f| f.as_ref().is_some_and(|f| f.elected == Some(0)))
}

/// The likely causes, each said once with the members it concerns, most telling first: peers
/// refused by TLS, members that exited, peers that could not be reached.
pub fn likely_causes(facts: &[MemberFacts]) -> Vec<String> {
    let mut causes: BTreeMap<(u8, String), Vec<String>> = BTreeMap::new();
    for f in facts {
        let mut seen = std::collections::BTreeSet::new();
        if !f.running {
            seen.insert((1, exit_reason(&f.log)));
        }
        for line in f.log.lines() {
            if let Some(c) = cause_in(line) {
                seen.insert(c);
            }
        }
        for c in seen {
            causes.entry(c).or_default().push(f.name.clone());
        }
    }
    causes
        .into_iter()
        .map(|((_, what), members)| {
            let who = if members.len() == 1 { format!("member {}", members[0]) } else { format!("members {}", members.join(", ")) };
            format!("{who}: {what}")
        })
        .collect()
}

/// The cause one log line names, with its rank (0 TLS, 2 unreachable).
fn cause_in(line: &str) -> Option<(u8, String)> {
    let err = field(line, "error").unwrap_or_else(|| line.to_string());
    if line.contains("rejected connection") {
        let from = field(line, "remote-addr").map(|a| host_of(&a)).unwrap_or_else(|| "a peer".into());
        if err.contains("does not match any of DNSNames") || err.contains("not valid for") {
            return Some((
                0,
                format!(
                    "refused peer connections from {from}: the connecting member's peer certificate does not cover the address it connected from ({})",
                    short(&err)
                ),
            ));
        }
        return Some((0, format!("refused peer connections from {from} in the TLS handshake ({})", short(&err))));
    }
    if err.contains("x509:") {
        let why = after(&err, "x509:");
        // what follows x509: inside "failed to dial … (…)" carries the outer parenthesis
        let why = if why.matches(')').count() > why.matches('(').count() { &why[..why.len() - 1] } else { why };
        return Some((0, format!("does not accept a peer's certificate ({})", short(why))));
    }
    let target = dial_target(&err)?;
    let why = if err.contains("connection refused") {
        "connection refused (nothing listens there: is that member running, on that address and port?)"
    } else if err.contains("no route to host") {
        "no route to host (a firewall or a route between the hosts)"
    } else if err.contains("i/o timeout") || err.contains("connection timed out") {
        "timed out (a firewall dropping packets, or a wrong address)"
    } else if err.contains("network is unreachable") {
        "network unreachable (a wrong address?)"
    } else {
        return None;
    };
    Some((2, format!("cannot reach the peer at {target}: {why}")))
}

/// How a member that is not running ended: its log's last fatal line, else its last line.
pub fn exit_reason(log: &str) -> String {
    let fatal = log.lines().rev().find(|l| l.contains("\"level\":\"fatal\"") || l.contains("\"level\":\"panic\"") || l.contains(" C | "));
    match fatal {
        Some(l) => {
            let msg = field(l, "msg").unwrap_or_default();
            let err = field(l, "error").unwrap_or_default();
            let text = match (msg.is_empty(), err.is_empty()) {
                (false, false) => format!("{msg}: {err}"),
                (false, true) => msg,
                (true, false) => err,
                (true, true) => after(l, " C | ").to_string(),
            };
            format!("exited: {}", short(&text))
        }
        None => match log.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(l) => format!("exited; its log ends: {}", short(l)),
            None => "exited, or never started (its log is empty)".into(),
        },
    }
}

/// A JSON string field of a zap log line, unescaped enough to read (`"key":"value"`).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// `HOST` of `HOST:PORT` (IPv6 brackets kept).
fn host_of(addr: &str) -> String {
    addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_else(|| addr.to_string())
}

/// `ADDR` of `dial tcp ADDR: ...`.
fn dial_target(err: &str) -> Option<String> {
    let rest = after(err, "dial tcp ");
    if rest.len() == err.len() {
        return None;
    }
    rest.split(": ").next().map(str::to_string)
}

fn after<'a>(s: &'a str, marker: &str) -> &'a str {
    s.find(marker).map(|i| &s[i + marker.len()..]).unwrap_or(s).trim()
}

/// At most 200 characters of one line.
fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
#[path = "formation_tests.rs"]
mod tests;
