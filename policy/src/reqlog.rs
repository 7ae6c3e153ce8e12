//! The request log and feedback: what the gateway keeps of one request when its consumer or
//! model opted in ([`LogEntry`], bodies redacted and truncated), the small ownership row every
//! consumer's request leaves for feedback ([`IndexRow`]), the store protocol ([`LogOp`]) and an
//! in-memory store ([`LogStore`]) that the durable stores (a Durable Object per shard on
//! Workers, SQLite on Spin) mirror.
//!
//! Pure data and rules: redaction ([`redact`]), truncation ([`truncate`]), the opaque listing
//! cursor ([`Cursor`]) and feedback validation ([`Feedback::validate`]) are here so every store
//! and the gateway agree on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Dims, Metrics, Row};

/// Longest feedback label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;
/// Most entries one listing page returns.
pub const MAX_PAGE: usize = 200;

/// The usage fields of a logged request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
}

/// One logged request. `request_body`/`response_body` are `None` in listings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogEntry {
    pub request_id: String,
    pub at_ms: u64,
    pub consumer: Option<String>,
    pub tenant: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub operation: String,
    pub status: u16,
    pub outcome: String,
    pub error: Option<String>,
    pub usage: Option<LogUsage>,
    pub cost_nanos: Option<u64>,
    pub latency_ms: u64,
    pub duration_ms: u64,
    pub cache: Option<String>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// A body was cut at `max_body_bytes`.
    pub truncated: bool,
    /// The feedback given on this request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
    /// Deleted by the store from this time on (retention).
    pub expires_ms: u64,
}

impl LogEntry {
    /// The entry without its bodies (listings).
    pub fn summary(&self) -> LogEntry {
        LogEntry { request_body: None, response_body: None, ..self.clone() }
    }
}

/// What every request of a consumer leaves behind so feedback can be checked and rolled up: who
/// made it, and the rollup row (hour, dimensions) it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexRow {
    pub request_id: String,
    pub consumer: String,
    pub hour: u64,
    pub dims: Dims,
    pub expires_ms: u64,
    #[serde(default)]
    pub feedback: bool,
}

/// Feedback on one request: a score in `[0, 1]` (thumbs up 1, down 0), a label, or both, and a
/// comment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Reserved for prompt management: which prompt version the request used (none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
}

/// Why feedback was refused: the field and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackError {
    pub param: &'static str,
    pub message: String,
}

impl Feedback {
    /// Check the bounds: a score in `[0, 1]` or a label (or both); a label of at most 64
    /// letters, digits, `-`, `_`, `.`, `:`; a comment of at most 2000 characters.
    pub fn validate(&self) -> Result<(), FeedbackError> {
        let fail = |param, message: String| Err(FeedbackError { param, message });
        if self.score.is_none() && self.label.is_none() {
            return fail("score", "feedback needs a score (0 to 1) or a label".into());
        }
        if let Some(score) = self.score {
            if !(0.0..=1.0).contains(&score) || score.is_nan() {
                return fail("score", format!("score must be a number between 0 and 1, got {score}"));
            }
        }
        if let Some(label) = &self.label {
            let ok = label.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS || !ok {
                return fail("label", format!("label must be 1 to {MAX_LABEL_CHARS} letters, digits, '-', '_', '.' or ':'"));
            }
        }
        if self.comment.as_ref().is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
            return fail("comment", format!("comment must be at most {MAX_COMMENT_CHARS} characters"));
        }
        if self.prompt_version.is_some() {
            return fail("prompt_version", "prompt_version is reserved for prompt management, which is not available yet".into());
        }
        Ok(())
    }
}

/// The rollup delta of one accepted feedback: counted in the row (hour, dimensions) of the
/// request it is about, with no request of its own.
pub fn feedback_row(index: &IndexRow, feedback: &Feedback) -> Row {
    let mut metrics = Metrics { feedback_count: 1, ..Metrics::default() };
    if let Some(score) = feedback.score {
        metrics.feedback_scored = 1;
        metrics.feedback_score_sum = score;
    }
    if let Some(label) = &feedback.label {
        metrics.feedback_labels.insert(label.clone(), 1);
    }
    Row { hour: index.hour, dims: index.dims.clone(), metrics }
}

/// Filters of a listing, and where the previous page stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub consumer: Option<String>,
    pub model: Option<String>,
    pub outcome: Option<String>,
    pub limit: usize,
    /// Only entries strictly older than this (time, id) in the listing's order.
    pub before: Option<Cursor>,
}

impl ListQuery {
    fn matches(&self, e: &LogEntry) -> bool {
        (self.from_ms..self.to_ms).contains(&e.at_ms)
            && self.consumer.as_ref().is_none_or(|c| e.consumer.as_ref() == Some(c))
            && self.model.as_ref().is_none_or(|m| e.model.as_ref() == Some(m))
            && self.outcome.as_ref().is_none_or(|o| &e.outcome == o)
            && self.before.as_ref().is_none_or(|b| (e.at_ms, e.request_id.as_str()) < (b.at_ms, b.request_id.as_str()))
    }
}

/// Where a page ended: the last entry's time and id. Clients see it as an opaque string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub at_ms: u64,
    pub request_id: String,
}

impl Cursor {
    /// `{at_ms}.{hex of the id}`: URL-safe, opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_ms, hex::encode(self.request_id.as_bytes()))
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (at, id) = text.split_once('.')?;
        let request_id = String::from_utf8(hex::decode(id).ok()?).ok()?;
        Some(Cursor { at_ms: at.parse().ok()?, request_id })
    }
}

/// Newest first: by time, then id, both descending.
pub fn sort_newest_first(entries: &mut [LogEntry]) {
    entries.sort_by(|a, b| (b.at_ms, &b.request_id).cmp(&(a.at_ms, &a.request_id)));
}

/// An operation on one shard of the request-log store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LogOp {
    /// Keep the request's ownership row and, when it was opted in, its entry; delete rows and
    /// entries past their `expires_ms` at `now_ms`.
    Record { index: Option<IndexRow>, entry: Option<Box<LogEntry>>, now_ms: u64 },
    /// One entry with its bodies, and the index row, by request id.
    Get { request_id: String },
    /// Entries without bodies, newest first, at most `limit`.
    List { query: ListQuery },
    /// Attach feedback to `request_id` if `consumer` made it and none was given yet.
    Feedback { request_id: String, consumer: String, feedback: Feedback },
}

/// The store's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum LogReply {
    Recorded,
    Found { index: Option<IndexRow>, entry: Option<Box<LogEntry>> },
    Entries { entries: Vec<LogEntry> },
    /// Feedback accepted: the row to credit in the rollups.
    FeedbackRecorded { index: IndexRow },
    /// No such request of this consumer (unknown, expired, or another consumer's).
    FeedbackUnknown,
    /// Feedback was already given on this request.
    FeedbackDuplicate,
}

/// The in-memory store (the test host's), and the rules the durable stores follow.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    pub index: BTreeMap<String, IndexRow>,
    pub entries: BTreeMap<String, LogEntry>,
}

impl LogStore {
    pub fn apply(&mut self, op: &LogOp) -> LogReply {
        match op {
            LogOp::Record { index, entry, now_ms } => {
                if let Some(index) = index {
                    self.index.insert(index.request_id.clone(), index.clone());
                }
                if let Some(entry) = entry {
                    self.entries.insert(entry.request_id.clone(), (**entry).clone());
                }
                self.index.retain(|_, r| r.expires_ms > *now_ms);
                self.entries.retain(|_, e| e.expires_ms > *now_ms);
                LogReply::Recorded
            }
            LogOp::Get { request_id } => LogReply::Found {
                index: self.index.get(request_id).cloned(),
                entry: self.entries.get(request_id).cloned().map(Box::new),
            },
            LogOp::List { query } => {
                let mut entries: Vec<LogEntry> = self.entries.values().filter(|e| query.matches(e)).map(LogEntry::summary).collect();
                sort_newest_first(&mut entries);
                entries.truncate(query.limit);
                LogReply::Entries { entries }
            }
            LogOp::Feedback { request_id, consumer, feedback } => match self.index.get_mut(request_id) {
                Some(row) if &row.consumer == consumer => {
                    if row.feedback {
                        return LogReply::FeedbackDuplicate;
                    }
                    row.feedback = true;
                    if let Some(entry) = self.entries.get_mut(request_id) {
                        entry.feedback = Some(feedback.clone());
                    }
                    LogReply::FeedbackRecorded { index: row.clone() }
                }
                _ => LogReply::FeedbackUnknown,
            },
        }
    }

    /// Whether `entry` passes `query` (for stores that filter in code).
    pub fn matches(query: &ListQuery, entry: &LogEntry) -> bool {
        query.matches(entry)
    }
}

/// `text` cut to at most `max_bytes` on a character boundary, and whether it was cut.
pub fn truncate(mut text: String, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_an_email_a_card_an_api_key_and_a_jwt() {
        let email = "jane.doe@example.com";
        let card = "4111 1111 1111 1111";
        let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let text = format!(r#"{{"messages":[{{"role":"user","content":"mail {email}, card {card}, key {key}, token {jwt}"}}]}}"#);
        let redacted = crate::guard::redact_all(&text);
        for secret in [email, card, key, jwt, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"] {
            assert!(!redacted.contains(secret), "{secret} survived: {redacted}");
        }
        assert!(redacted.contains("[EMAIL]") && redacted.contains("[CARD]") && redacted.contains("[SECRET]"), "{redacted}");
        assert!(serde_json::from_str::<serde_json::Value>(&redacted).is_ok(), "still JSON: {redacted}");
        assert_eq!(crate::guard::redact_all("nothing here"), "nothing here");
    }

    #[test]
    fn truncation_keeps_whole_characters_and_says_so() {
        assert_eq!(truncate("hello".into(), 5), ("hello".into(), false));
        assert_eq!(truncate("hello".into(), 3), ("hel".into(), true));
        assert_eq!(truncate("héllo".into(), 2), ("h".into(), true), "é is two bytes");
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor { at_ms: 1_700_000_000_000, request_id: "req_a.b/c".into() };
        let text = c.encode();
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'), "{text}");
        assert_eq!(Cursor::decode(&text), Some(c));
        for bad in ["", "12", "x.00", "12.zz", "12.ff"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn feedback_bounds() {
        let ok = |f: Feedback| f.validate().map_err(|e| e.param);
        assert_eq!(ok(Feedback { score: Some(1.0), ..Default::default() }), Ok(()));
        assert_eq!(ok(Feedback { label: Some("wrong-answer".into()), ..Default::default() }), Ok(()));
        assert_eq!(ok(Feedback::default()), Err("score"));
        assert_eq!(ok(Feedback { score: Some(1.5), ..Default::default() }), Err("score"));
        assert_eq!(ok(Feedback { score: Some(-0.1), ..Default::default() }), Err("score"));
        assert_eq!(ok(Feedback { score: Some(f64::NAN), ..Default::default() }), Err("score"));
        assert_eq!(ok(Feedback { label: Some("x".repeat(65)), ..Default::default() }), Err("label"));
        assert_eq!(ok(Feedback { label: Some("has space".into()), ..Default::default() }), Err("label"));
        assert_eq!(ok(Feedback { score: Some(0.0), comment: Some("y".repeat(2001)), ..Default::default() }), Err("comment"));
        assert_eq!(ok(Feedback { score: Some(0.0), comment: Some("y".repeat(2000)), ..Default::default() }), Ok(()));
    }

    fn entry(id: &str, at_ms: u64, consumer: &str) -> LogEntry {
        LogEntry { request_id: id.into(), at_ms, consumer: Some(consumer.into()), outcome: "completed".into(), expires_ms: at_ms + 100, request_body: Some("b".into()), ..Default::default() }
    }

    fn index(id: &str, consumer: &str, expires_ms: u64) -> IndexRow {
        IndexRow { request_id: id.into(), consumer: consumer.into(), hour: 0, dims: Dims::default(), expires_ms, feedback: false }
    }

    #[test]
    fn the_store_lists_newest_first_pages_expires_and_checks_feedback_owners() {
        let mut store = LogStore::default();
        for (i, at) in [(1, 10), (2, 20), (3, 20), (4, 30)] {
            let id = format!("r{i}");
            store.apply(&LogOp::Record { index: Some(index(&id, "a", at + 100)), entry: Some(Box::new(entry(&id, at, "a"))), now_ms: at });
        }
        let list = |store: &mut LogStore, before: Option<Cursor>| match store.apply(&LogOp::List { query: ListQuery { to_ms: 1000, limit: 2, before, ..Default::default() } }) {
            LogReply::Entries { entries } => entries,
            other => panic!("{other:?}"),
        };
        let page = list(&mut store, None);
        assert_eq!(page.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r4", "r3"]);
        assert!(page[0].request_body.is_none(), "listings carry no bodies");
        let cursor = Cursor { at_ms: page[1].at_ms, request_id: page[1].request_id.clone() };
        assert_eq!(list(&mut store, Some(cursor)).iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r2", "r1"]);
        let feedback = |store: &mut LogStore, id: &str, who: &str| store.apply(&LogOp::Feedback { request_id: id.into(), consumer: who.into(), feedback: Feedback { score: Some(1.0), ..Default::default() } });
        assert_eq!(feedback(&mut store, "r1", "b"), LogReply::FeedbackUnknown);
        assert!(matches!(feedback(&mut store, "r1", "a"), LogReply::FeedbackRecorded { .. }));
        assert_eq!(feedback(&mut store, "r1", "a"), LogReply::FeedbackDuplicate);
        assert_eq!(feedback(&mut store, "nope", "a"), LogReply::FeedbackUnknown);
        // A write at 115 drops r1 (expires 110) and keeps the others.
        store.apply(&LogOp::Record { index: Some(index("r5", "a", 500)), entry: None, now_ms: 115 });
        assert!(!store.entries.contains_key("r1") && !store.index.contains_key("r1"));
        assert_eq!(store.entries.len(), 3);
    }
}

/// The request-log store in SQL, shared by the SQLite-backed stores (the Workers Durable Object,
/// Spin's database) so both apply [`LogOp`] the same way: [`statements`] turns an op into
/// statements run in order (each one statement, so each is atomic on its own), and [`reply`]
/// reads their result rows back into a [`LogReply`]. Feedback is one conditional `UPDATE ...
/// RETURNING` (owner matches, none given yet), so two concurrent feedbacks cannot both win.
pub mod sql {
    use super::{IndexRow, LogEntry, LogOp, LogReply};

    /// A parameter or a result cell.
    #[derive(Debug, Clone, PartialEq)]
    pub enum SqlValue {
        Int(i64),
        Text(String),
        Null,
    }

    /// One statement and its positional (`?`) parameters.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Statement {
        pub sql: &'static str,
        pub params: Vec<SqlValue>,
    }

    /// Run once per connection or object before any op.
    pub const SCHEMA: [&str; 3] = [
        "CREATE TABLE IF NOT EXISTS request_index (shard INTEGER NOT NULL, request_id TEXT NOT NULL, consumer TEXT NOT NULL, \
         row TEXT NOT NULL, feedback INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL, PRIMARY KEY (shard, request_id))",
        "CREATE TABLE IF NOT EXISTS request_log (shard INTEGER NOT NULL, request_id TEXT NOT NULL, at_ms INTEGER NOT NULL, owner TEXT, \
         consumer TEXT, model TEXT, outcome TEXT NOT NULL, summary TEXT NOT NULL, request_body TEXT, response_body TEXT, \
         expires_ms INTEGER NOT NULL, PRIMARY KEY (shard, request_id))",
        "CREATE INDEX IF NOT EXISTS request_log_time ON request_log (shard, at_ms)",
    ];

    fn int(n: u64) -> SqlValue {
        SqlValue::Int(n.min(i64::MAX as u64) as i64)
    }

    fn text(s: impl Into<String>) -> SqlValue {
        SqlValue::Text(s.into())
    }

    fn opt(s: Option<&str>) -> SqlValue {
        s.map_or(SqlValue::Null, text)
    }

    fn json<T: serde::Serialize>(value: &T) -> SqlValue {
        text(serde_json::to_string(value).unwrap_or_default())
    }

    /// The statements of `op` on shard `shard`.
    pub fn statements(shard: u32, op: &LogOp) -> Vec<Statement> {
        let shard = SqlValue::Int(i64::from(shard));
        match op {
            LogOp::Record { index, entry, now_ms } => {
                let mut out = Vec::new();
                if let Some(row) = index {
                    out.push(Statement {
                        sql: "INSERT OR REPLACE INTO request_index (shard, request_id, consumer, row, feedback, expires_ms) VALUES (?, ?, ?, ?, 0, ?)",
                        params: vec![shard.clone(), text(&row.request_id), text(&row.consumer), json(row), int(row.expires_ms)],
                    });
                }
                if let Some(entry) = entry {
                    out.push(Statement {
                        sql: "INSERT OR REPLACE INTO request_log (shard, request_id, at_ms, owner, consumer, model, outcome, summary, request_body, response_body, expires_ms) \
                              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        params: vec![
                            shard.clone(),
                            text(&entry.request_id),
                            int(entry.at_ms),
                            opt(index.as_ref().map(|i| i.consumer.as_str())),
                            opt(entry.consumer.as_deref()),
                            opt(entry.model.as_deref()),
                            text(&entry.outcome),
                            json(&entry.summary()),
                            opt(entry.request_body.as_deref()),
                            opt(entry.response_body.as_deref()),
                            int(entry.expires_ms),
                        ],
                    });
                }
                out.push(Statement { sql: "DELETE FROM request_index WHERE shard = ? AND expires_ms <= ?", params: vec![shard.clone(), int(*now_ms)] });
                out.push(Statement { sql: "DELETE FROM request_log WHERE shard = ? AND expires_ms <= ?", params: vec![shard, int(*now_ms)] });
                out
            }
            LogOp::Get { request_id } => vec![Statement {
                sql: "SELECT summary, request_body, response_body FROM request_log WHERE shard = ? AND request_id = ?",
                params: vec![shard, text(request_id)],
            }],
            LogOp::List { query } => {
                let (before_at, before_id) = match &query.before {
                    Some(c) => (int(c.at_ms), text(&c.request_id)),
                    None => (SqlValue::Null, SqlValue::Null),
                };
                vec![Statement {
                    sql: "SELECT summary FROM request_log WHERE shard = ? AND at_ms >= ? AND at_ms < ? \
                          AND (? IS NULL OR consumer = ?) AND (? IS NULL OR model = ?) AND (? IS NULL OR outcome = ?) \
                          AND (? IS NULL OR at_ms < ? OR (at_ms = ? AND request_id < ?)) \
                          ORDER BY at_ms DESC, request_id DESC LIMIT ?",
                    params: vec![
                        shard,
                        int(query.from_ms),
                        int(query.to_ms),
                        opt(query.consumer.as_deref()),
                        opt(query.consumer.as_deref()),
                        opt(query.model.as_deref()),
                        opt(query.model.as_deref()),
                        opt(query.outcome.as_deref()),
                        opt(query.outcome.as_deref()),
                        before_at.clone(),
                        before_at.clone(),
                        before_at,
                        before_id,
                        int(query.limit as u64),
                    ],
                }]
            }
            LogOp::Feedback { request_id, consumer, feedback } => vec![
                Statement {
                    sql: "UPDATE request_index SET feedback = 1 WHERE shard = ? AND request_id = ? AND consumer = ? AND feedback = 0 RETURNING row",
                    params: vec![shard.clone(), text(request_id), text(consumer)],
                },
                Statement {
                    sql: "UPDATE request_log SET summary = json_set(summary, '$.feedback', json(?)) \
                          WHERE shard = ? AND request_id = ? AND owner = ? AND json_extract(summary, '$.feedback') IS NULL",
                    params: vec![json(feedback), shard.clone(), text(request_id), text(consumer)],
                },
                Statement { sql: "SELECT 1 FROM request_index WHERE shard = ? AND request_id = ? AND consumer = ?", params: vec![shard, text(request_id), text(consumer)] },
            ],
        }
    }

    fn cell(rows: &[Vec<Vec<SqlValue>>], statement: usize, row: usize, column: usize) -> Option<&str> {
        match rows.get(statement)?.get(row)?.get(column)? {
            SqlValue::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The reply to `op` from the result rows of its statements (one list per statement).
    pub fn reply(op: &LogOp, rows: &[Vec<Vec<SqlValue>>]) -> LogReply {
        match op {
            LogOp::Record { .. } => LogReply::Recorded,
            LogOp::Get { .. } => {
                let entry = cell(rows, 0, 0, 0).and_then(|s| serde_json::from_str::<LogEntry>(s).ok()).map(|mut e| {
                    e.request_body = cell(rows, 0, 0, 1).map(str::to_string);
                    e.response_body = cell(rows, 0, 0, 2).map(str::to_string);
                    Box::new(e)
                });
                LogReply::Found { index: None, entry }
            }
            LogOp::List { .. } => LogReply::Entries {
                entries: (0..rows.first().map_or(0, Vec::len)).filter_map(|i| serde_json::from_str(cell(rows, 0, i, 0)?).ok()).collect(),
            },
            LogOp::Feedback { .. } => match cell(rows, 0, 0, 0).and_then(|s| serde_json::from_str::<IndexRow>(s).ok()) {
                Some(index) => LogReply::FeedbackRecorded { index },
                None if rows.get(2).is_some_and(|r| !r.is_empty()) => LogReply::FeedbackDuplicate,
                None => LogReply::FeedbackUnknown,
            },
        }
    }
}
