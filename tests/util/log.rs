//! The audit log as the tests read it (and any other JSON Lines output,
//! `cli-guard audit --json`'s, rows printed on stderr): typed rows, and one
//! query that picks rows out of it, so that a test says which rows it means,
//!
//! ```text
//! log.rows().of(id).kind("egress").host("registry.npmjs.org")
//! ```
//!
//! and a failure names the query and prints the whole log. A row is a JSON
//! object (`Row` dereferences to its `serde_json::Value`, so `row["status"]`
//! reads any field); the fields the query picks by have typed accessors.

use std::fmt;
use std::fs;
use std::ops::Deref;
use std::path::Path;

use serde_json::Value;

use super::process::{lossy, Outcome};

/// Every row of a JSON Lines file or output, in order.
#[derive(Debug, Clone)]
pub struct Log {
    rows: Vec<Row>,
}

impl Log {
    /// Every row of the JSON Lines file at `path`; a missing file, or a line
    /// that is not a JSON object, fails the test naming it.
    pub fn read(path: &Path) -> Log {
        let data = fs::read(path).unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
        Log::parse(&data, &path.display().to_string())
    }

    /// The rows of the logs at `paths`, one file after the other (a rotated
    /// log, then the live one).
    pub fn read_all(paths: &[&Path]) -> Log {
        let rows = paths.iter().flat_map(|p| Log::read(p).rows).collect();
        Log { rows }
    }

    /// The rows written so far to the log at `path`, while writers may
    /// still be appending to it: empty while there is no file, and a last
    /// line still without its newline (a row being written) left out.
    pub fn read_so_far(path: &Path) -> Log {
        let data = fs::read(path).unwrap_or_default();
        let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Log::parse(&data[..whole], &path.display().to_string())
    }

    /// The rows of the JSON Lines in `data`; a line that is not a JSON
    /// object fails the test naming `what` and the line.
    pub fn parse(data: &[u8], what: &str) -> Log {
        let text = String::from_utf8(data.to_vec())
            .unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}\n{}", lossy(data)));
        let rows = text
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("{what}: line is not JSON ({e}): {line:?}\n---- whole ----\n{text}")
                });
                assert!(v.is_object(), "{what}: line is not an object: {line}");
                Row(v)
            })
            .collect();
        Log { rows }
    }

    /// All rows, to be narrowed by the query's methods.
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            log: self,
            picked: self.rows.iter().collect(),
            query: Vec::new(),
        }
    }

    /// The one egress row of the invocation `id` for `host`:`port`; fails
    /// unless there is exactly one.
    pub fn egress_to(&self, id: &str, host: &str, port: u16) -> &Row {
        self.rows().of(id).kind("egress").host(host).port(port).one()
    }

    /// The one egress_close row of the tunnel the egress row `opened`
    /// opened (its invocation's, with its `conn`); fails unless there is
    /// exactly one.
    pub fn close_of(&self, opened: &Row) -> &Row {
        self.rows()
            .of(opened.audit_id())
            .kind("egress_close")
            .conn(&opened["conn"])
            .one()
    }

    /// The audit IDs `ids`, then those of every invocation run under them
    /// (its start row names one of them as its parent), at any depth, in
    /// the order found.
    pub fn nested(&self, ids: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        let mut grew = true;
        while grew {
            grew = false;
            for start in self.rows().kind("start") {
                let id = start.audit_id();
                let under_one = start.parent().is_some_and(|p| all.iter().any(|a| a == p));
                if under_one && !all.iter().any(|a| a == id) {
                    all.push(id.to_owned());
                    grew = true;
                }
            }
        }
        all
    }
}

/// The rows in order, for what is about order or position.
impl Deref for Log {
    type Target = [Row];

    fn deref(&self) -> &[Row] {
        &self.rows
    }
}

/// One row a line, as written: for failure messages.
impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{row}")?;
        }
        Ok(())
    }
}

/// One row: a JSON object.
#[derive(Clone, PartialEq)]
pub struct Row(Value);

impl Row {
    /// `kind`: start, egress, egress_close, end (or "" if none).
    pub fn kind(&self) -> &str {
        self.text("kind")
    }

    /// The invocation's audit ID (or "" if none).
    pub fn audit_id(&self) -> &str {
        self.text("audit_id")
    }

    /// The audit ID of the invocation this one runs under, if nested.
    pub fn parent(&self) -> Option<&str> {
        self.0["parent_audit_id"].as_str()
    }

    /// The tool the row is about (or "" if none).
    pub fn tool(&self) -> &str {
        self.text("tool")
    }

    /// An egress row's host (None when no target could be parsed).
    pub fn host(&self) -> Option<&str> {
        self.0["host"].as_str()
    }

    /// An egress row's port.
    pub fn port(&self) -> Option<u64> {
        self.0["port"].as_u64()
    }

    /// An egress row's reason (or "" if none).
    pub fn reason(&self) -> &str {
        self.text("reason")
    }

    fn text(&self, field: &str) -> &str {
        self.0[field].as_str().unwrap_or_default()
    }
}

impl Deref for Row {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Rows picked out of a log, in the log's order: each method narrows the
/// pick, and remembers how, for failure messages.
#[derive(Clone)]
pub struct Rows<'a> {
    log: &'a Log,
    picked: Vec<&'a Row>,
    query: Vec<String>,
}

impl<'a> Rows<'a> {
    /// Those of any of the invocations `ids`.
    pub fn of_any(self, ids: &[String]) -> Rows<'a> {
        self.narrow(format!("of any of {ids:?}"), |r| {
            ids.iter().any(|id| id == r.audit_id())
        })
    }

    /// Those of `kind`.
    pub fn kind(self, kind: &str) -> Rows<'a> {
        self.narrow(format!("kind {kind}"), |r| r.kind() == kind)
    }

    /// Those of the invocation `audit_id`.
    pub fn of(self, audit_id: &str) -> Rows<'a> {
        self.narrow(format!("of {audit_id}"), |r| r.audit_id() == audit_id)
    }

    /// Those about `tool`.
    pub fn tool(self, tool: &str) -> Rows<'a> {
        self.narrow(format!("tool {tool}"), |r| r.tool() == tool)
    }

    /// Those for `host` (normalised, as logged).
    pub fn host(self, host: &str) -> Rows<'a> {
        self.narrow(format!("host {host}"), |r| r.host() == Some(host))
    }

    /// Those for `port`.
    pub fn port(self, port: u16) -> Rows<'a> {
        self.narrow(format!("port {port}"), |r| r.port() == Some(u64::from(port)))
    }

    /// Those by `method`: `CONNECT`, `dns`, `transparent`, `GET`...
    pub fn method(self, method: &str) -> Rows<'a> {
        self.narrow(format!("method {method}"), |r| r["method"] == method)
    }

    /// The egress rows about the network: all but strict mode's refused
    /// unix sockets (`method: "unix"`, one per program that tried, glibc's
    /// look for nscd in most of them).
    pub fn network(self) -> Rows<'a> {
        self.narrow("network egress".into(), |r| {
            r.kind() == "egress" && r["method"] != "unix"
        })
    }

    /// Those of connection `conn` (an egress row's `conn`).
    pub fn conn(self, conn: &Value) -> Rows<'a> {
        self.narrow(format!("conn {conn}"), |r| &r["conn"] == conn)
    }

    /// Those of top-level invocations (no parent).
    pub fn top_level(self) -> Rows<'a> {
        self.narrow("top-level".into(), |r| r.parent().is_none())
    }

    /// Those of invocations run under the invocation `parent`.
    pub fn under(self, parent: &str) -> Rows<'a> {
        self.narrow(format!("under {parent}"), |r| r.parent() == Some(parent))
    }

    /// Those for which `pred` holds; `what` says what it picks.
    pub fn filter(self, what: &str, pred: impl Fn(&Row) -> bool) -> Rows<'a> {
        self.narrow(what.to_owned(), pred)
    }

    /// The one row picked; fails naming the query and printing the log
    /// unless there is exactly one.
    pub fn one(&self) -> &'a Row {
        match self.picked[..] {
            [row] => row,
            _ => panic!("expected one row, found {}: {self}", self.picked.len()),
        }
    }

    /// The first row picked; fails naming the query and printing the log
    /// if there is none.
    pub fn first_or_fail(&self) -> &'a Row {
        match self.picked.first() {
            Some(row) => row,
            None => panic!("expected a row, found none: {self}"),
        }
    }

    /// The audit IDs of the rows picked, in order.
    pub fn ids(&self) -> Vec<&'a str> {
        self.picked.iter().map(|r| r.audit_id()).collect()
    }

    /// Where the rows picked stand in the log (0 first), in order.
    pub fn positions(&self) -> Vec<usize> {
        self.picked
            .iter()
            .filter_map(|r| self.log.rows.iter().position(|l| std::ptr::eq(l, *r)))
            .collect()
    }

    /// The rows picked, in the log's order.
    pub fn to_vec(&self) -> Vec<&'a Row> {
        self.picked.clone()
    }

    /// The rows picked, sorted by their connection number (`conn`).
    pub fn by_conn(mut self) -> Rows<'a> {
        self.picked.sort_by_key(|r| r["conn"].as_u64());
        self
    }

    fn narrow(mut self, what: String, pred: impl Fn(&Row) -> bool) -> Rows<'a> {
        self.picked.retain(|r| pred(r));
        self.query.push(what);
        self
    }
}

impl<'a> Deref for Rows<'a> {
    type Target = [&'a Row];

    fn deref(&self) -> &[&'a Row] {
        &self.picked
    }
}

impl<'a> IntoIterator for Rows<'a> {
    type Item = &'a Row;
    type IntoIter = std::vec::IntoIter<&'a Row>;

    fn into_iter(self) -> Self::IntoIter {
        self.picked.into_iter()
    }
}

impl<'a, 'r> IntoIterator for &'r Rows<'a> {
    type Item = &'r &'a Row;
    type IntoIter = std::slice::Iter<'r, &'a Row>;

    fn into_iter(self) -> Self::IntoIter {
        self.picked.iter()
    }
}

/// The query, then the whole log: for failure messages.
impl fmt::Display for Rows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query = if self.query.is_empty() {
            "all rows".to_owned()
        } else {
            self.query.join(", ")
        };
        write!(f, "rows ({query}) of the log:\n{}", self.log)
    }
}

impl fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.picked).finish()
    }
}

/// A fetch and run's two top-level invocations of `tool`, in order,
/// checked: the fetch phase enforced, then the run phase observed, not
/// isolated, naming the fetch in `fetch_audit_id`. Where the fetch ran
/// (strict mode or not) is the caller's to check.
pub fn fetch_and_run_phases<'a>(out: &Outcome, log: &'a Log, tool: &str) -> (&'a Row, &'a Row) {
    let starts = log.rows().kind("start").tool(tool).top_level();
    check_eq!(out, starts.len(), 2, "{tool}: a fetch and a run:\n{log}");
    let (fetch, run) = (starts[0], starts[1]);
    check_eq!(out, fetch["phase"], "fetch", "{fetch}");
    check_eq!(out, fetch["mode"], "enforce", "{fetch}");
    check!(out, fetch.get("fetch_audit_id").is_none(), "{fetch}");
    check_eq!(out, run["phase"], "run", "{run}");
    check_eq!(out, run["mode"], "observe", "{run}");
    check_eq!(out, run["isolation"], "none", "{run}");
    check_eq!(
        out,
        run["fetch_audit_id"],
        fetch["audit_id"],
        "the run names its fetch"
    );
    (fetch, run)
}

/// `<12 hex>-<32 hex>`, lowercase.
pub fn is_audit_id(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    matches!(s.split_once('-'), Some((a, b)) if hex(a, 12) && hex(b, 32))
}

/// RFC 3339 UTC with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn is_timestamp(s: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == shape.len()
        && s.bytes()
            .zip(shape.bytes())
            .all(|(c, p)| if p == b'd' { c.is_ascii_digit() } else { c == p })
}
