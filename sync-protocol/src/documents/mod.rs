//! Document schemas: one Automerge document per record. Each module fixes the field
//! names and the Automerge type of every field, reads leniently what JavaScript clients
//! write by default (a JS string becomes a Text object, a whole JS number an Int), writes
//! one canonical type, and validates into structured findings.
//!
//! Canonical types: strings are scalar `Str` (last-writer-wins, so concurrent edits show
//! as conflicts instead of interleaved letters; from JavaScript write them as
//! `new Automerge.ImmutableString(...)`); whole numbers `Int`; decimals `F64`; dates
//! `Str` `YYYY-MM-DD`; clock times `Str` `HH:MM`; instants `Timestamp` (ms since epoch).

pub mod cooperative;
pub mod member;
pub mod training_session;

use automerge::{
    AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value, transaction::Transactable,
};
use serde::{Deserialize, Serialize};

pub use cooperative::Cooperative;
pub use member::Member;
pub use training_session::{AttendanceEntry, TrainingSession};

/// Current schema version written by this crate.
pub const SCHEMA_VERSION: i64 = 1;

/// The record types that sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    Cooperative,
    Member,
    TrainingSession,
}

impl DocType {
    /// Order in which a client pushes documents: what others take their scope from
    /// goes first.
    pub fn push_rank(self) -> u8 {
        match self {
            DocType::Cooperative => 0,
            DocType::Member => 1,
            DocType::TrainingSession => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Cooperative => "cooperative",
            DocType::Member => "member",
            DocType::TrainingSession => "training_session",
        }
    }

    pub fn parse(s: &str) -> Option<DocType> {
        match s {
            "cooperative" => Some(DocType::Cooperative),
            "member" => Some(DocType::Member),
            "training_session" => Some(DocType::TrainingSession),
            _ => None,
        }
    }
}

/// Cambodia's province codes (capital and 24 provinces), as the server's reference table.
pub const PROVINCE_CODES: [&str; 25] = [
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25",
];

/// Sex, as recorded for sex-disaggregated reporting.
pub const SEX_VALUES: [&str; 3] = ["female", "male", "other"];

/// One validation result. Findings never block a sync: the record is stored and flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code, e.g. `missing_required_field`.
    pub code: String,
    /// Field path, e.g. `attendance.<participant>.hours`.
    pub field: String,
    pub message: String,
}

/// Drops `missing_required_field` for a field already flagged `wrong_type`: the value is
/// there, of the wrong type, and one finding says so (reading and validation each saw it).
pub fn without_double_findings(findings: Vec<Finding>) -> Vec<Finding> {
    let wrong: std::collections::HashSet<String> = findings
        .iter()
        .filter(|f| f.code == "wrong_type")
        .map(|f| f.field.clone())
        .collect();
    findings
        .into_iter()
        .filter(|f| !(f.code == "missing_required_field" && wrong.contains(&f.field)))
        .collect()
}

impl Finding {
    pub fn new(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Reads fields of one map object, tolerating the types JS clients write and noting
/// values of the wrong type as findings.
pub struct Reader<'a, D: ReadDoc> {
    doc: &'a D,
    obj: ObjId,
    prefix: String,
    pub findings: Vec<Finding>,
}

impl<'a, D: ReadDoc> Reader<'a, D> {
    pub fn root(doc: &'a D) -> Self {
        Self::at(doc, ROOT, "")
    }

    pub fn at(doc: &'a D, obj: ObjId, prefix: &str) -> Self {
        Self {
            doc,
            obj,
            prefix: prefix.to_string(),
            findings: Vec::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn wrong_type(&mut self, key: &str, expected: &str) {
        let path = self.path(key);
        self.findings.push(Finding::new(
            "wrong_type",
            path,
            format!("expected {expected}"),
        ));
    }

    fn value(&self, key: &str) -> Option<(Value<'a>, ObjId)> {
        self.doc.get(&self.obj, key).ok().flatten()
    }

    /// A string from a scalar `Str` or a `Text` object.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.value(key) {
            None => None,
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                ScalarValue::Null => None,
                _ => {
                    self.wrong_type(key, "a string");
                    None
                }
            },
            Some((Value::Object(ObjType::Text), id)) => self.doc.text(&id).ok(),
            Some(_) => {
                self.wrong_type(key, "a string");
                None
            }
        }
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    }

    /// A whole number from `Int`, `Uint`, or an integral `F64`.
    pub fn int(&mut self, key: &str) -> Option<i64> {
        match self.value(key) {
            None => None,
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Int(i) => Some(*i),
                ScalarValue::Uint(u) => i64::try_from(*u).ok(),
                ScalarValue::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
                ScalarValue::Null => None,
                _ => {
                    self.wrong_type(key, "a whole number");
                    None
                }
            },
            Some(_) => {
                self.wrong_type(key, "a whole number");
                None
            }
        }
    }

    /// A number from `F64`, `Int` or `Uint`.
    pub fn number(&mut self, key: &str) -> Option<f64> {
        match self.value(key) {
            None => None,
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::F64(f) if f.is_finite() => Some(*f),
                ScalarValue::Int(i) => Some(*i as f64),
                ScalarValue::Uint(u) => Some(*u as f64),
                ScalarValue::Null => None,
                _ => {
                    self.wrong_type(key, "a number");
                    None
                }
            },
            Some(_) => {
                self.wrong_type(key, "a number");
                None
            }
        }
    }

    /// An instant, from `Timestamp` (ms), or an RFC 3339 string.
    pub fn timestamp_ms(&mut self, key: &str) -> Option<i64> {
        match self.value(key) {
            None => None,
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Timestamp(t) => Some(*t),
                ScalarValue::Int(i) => Some(*i),
                ScalarValue::Str(s) => {
                    let parsed = chrono::DateTime::parse_from_rfc3339(s.trim())
                        .map(|d| d.timestamp_millis())
                        .ok();
                    if parsed.is_none() {
                        self.wrong_type(key, "a timestamp (Timestamp, or an RFC 3339 string)");
                    }
                    parsed
                }
                ScalarValue::Null => None,
                _ => {
                    self.wrong_type(key, "a timestamp");
                    None
                }
            },
            Some((Value::Object(ObjType::Text), id)) => {
                let parsed = self
                    .doc
                    .text(&id)
                    .ok()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
                    .map(|d| d.timestamp_millis());
                if parsed.is_none() {
                    self.wrong_type(key, "a timestamp (Timestamp, or an RFC 3339 string)");
                }
                parsed
            }
            Some(_) => {
                self.wrong_type(key, "a timestamp");
                None
            }
        }
    }

    /// A list of strings (each `Str` or `Text`).
    pub fn string_list(&mut self, key: &str) -> Vec<String> {
        match self.value(key) {
            None => Vec::new(),
            Some((Value::Object(ObjType::List), id)) => {
                let len = self.doc.length(&id);
                (0..len)
                    .filter_map(|i| match self.doc.get(&id, i).ok().flatten() {
                        Some((Value::Scalar(s), _)) => match s.as_ref() {
                            ScalarValue::Str(s) => Some(s.to_string()),
                            _ => None,
                        },
                        Some((Value::Object(ObjType::Text), t)) => self.doc.text(&t).ok(),
                        _ => None,
                    })
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            Some(_) => {
                self.wrong_type(key, "a list of strings");
                Vec::new()
            }
        }
    }

    /// A nested map object.
    pub fn map(&mut self, key: &str) -> Option<ObjId> {
        match self.value(key) {
            Some((Value::Object(ObjType::Map), id)) => Some(id),
            None => None,
            Some(_) => {
                self.wrong_type(key, "a map");
                None
            }
        }
    }

    pub fn keys(&self, obj: &ObjId) -> Vec<String> {
        self.doc.keys(obj).collect()
    }

    pub fn doc(&self) -> &'a D {
        self.doc
    }
}

/// The `type` field of a document, if it names a known type.
pub fn doc_type_of<D: ReadDoc>(doc: &D) -> Option<DocType> {
    Reader::root(doc)
        .string("type")
        .and_then(|t| DocType::parse(&t))
}

/// Writes canonical types.
pub struct Writer<'t, T: Transactable> {
    tx: &'t mut T,
    obj: ObjId,
}

impl<'t, T: Transactable> Writer<'t, T> {
    pub fn root(tx: &'t mut T) -> Self {
        Self { tx, obj: ROOT }
    }

    pub fn at(tx: &'t mut T, obj: ObjId) -> Self {
        Self { tx, obj }
    }

    pub fn string(&mut self, key: &str, value: Option<&str>) -> Result<(), AutomergeError> {
        match value {
            Some(v) => self.tx.put(&self.obj, key, ScalarValue::Str(v.into())),
            None => Ok(()),
        }
    }

    pub fn int(&mut self, key: &str, value: Option<i64>) -> Result<(), AutomergeError> {
        match value {
            Some(v) => self.tx.put(&self.obj, key, ScalarValue::Int(v)),
            None => Ok(()),
        }
    }

    pub fn number(&mut self, key: &str, value: Option<f64>) -> Result<(), AutomergeError> {
        match value {
            Some(v) => self.tx.put(&self.obj, key, ScalarValue::F64(v)),
            None => Ok(()),
        }
    }

    pub fn timestamp_ms(&mut self, key: &str, value: Option<i64>) -> Result<(), AutomergeError> {
        match value {
            Some(v) => self.tx.put(&self.obj, key, ScalarValue::Timestamp(v)),
            None => Ok(()),
        }
    }

    pub fn string_list(&mut self, key: &str, values: &[String]) -> Result<(), AutomergeError> {
        let list = self.tx.put_object(&self.obj, key, ObjType::List)?;
        for (i, v) in values.iter().enumerate() {
            self.tx
                .insert(&list, i, ScalarValue::Str(v.as_str().into()))?;
        }
        Ok(())
    }

    /// Gets or creates a nested map.
    pub fn map(&mut self, key: &str) -> Result<ObjId, AutomergeError> {
        match self.tx.get(&self.obj, key)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => self.tx.put_object(&self.obj, key, ObjType::Map),
        }
    }

    /// `type` and `schema_version`, once, when a document is created.
    pub fn header(&mut self, doc_type: DocType) -> Result<(), AutomergeError> {
        self.string("type", Some(doc_type.as_str()))?;
        self.int("schema_version", Some(SCHEMA_VERSION))
    }
}

/// Shared checks used by the record modules.
pub(crate) mod rules {
    use super::Finding;

    pub fn required<T>(findings: &mut Vec<Finding>, field: &str, value: &Option<T>) {
        if value.is_none() {
            findings.push(Finding::new(
                "missing_required_field",
                field,
                format!("`{field}` is required"),
            ));
        }
    }

    pub fn one_of(
        findings: &mut Vec<Finding>,
        field: &str,
        value: &Option<String>,
        allowed: &[&str],
    ) {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            findings.push(Finding::new(
                "invalid_value",
                field,
                format!("`{field}` must be one of: {}", allowed.join(", ")),
            ));
        }
    }

    pub fn date(findings: &mut Vec<Finding>, field: &str, value: &Option<String>) {
        if let Some(v) = value
            && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err()
        {
            findings.push(Finding::new(
                "invalid_date",
                field,
                format!("`{field}` must be a date YYYY-MM-DD"),
            ));
        }
    }

    pub fn time(findings: &mut Vec<Finding>, field: &str, value: &Option<String>) {
        if let Some(v) = value
            && chrono::NaiveTime::parse_from_str(v, "%H:%M").is_err()
        {
            findings.push(Finding::new(
                "invalid_time",
                field,
                format!("`{field}` must be a time HH:MM"),
            ));
        }
    }

    pub fn uuid(findings: &mut Vec<Finding>, field: &str, value: &Option<String>) {
        if let Some(v) = value
            && !crate::ids::is_canonical_id(v)
        {
            findings.push(Finding::new(
                "invalid_id",
                field,
                format!("`{field}` must be a lower-case hyphenated UUID"),
            ));
        }
    }

    /// Longest name or place a record holds, in characters (Khmer names are ~10-30).
    pub const MAX_NAME_CHARS: usize = 200;

    /// A text longer than `max` characters: flagged `too_long` (a 60 KB "name" was
    /// accepted silently before).
    pub fn max_chars(findings: &mut Vec<Finding>, field: &str, value: &Option<String>, max: usize) {
        if let Some(v) = value
            && v.chars().count() > max
        {
            findings.push(Finding::new(
                "too_long",
                field,
                format!("`{field}` has more than {max} characters"),
            ));
        }
    }

    pub fn province(findings: &mut Vec<Finding>, field: &str, value: &Option<String>) {
        if let Some(v) = value
            && !super::PROVINCE_CODES.contains(&v.as_str())
        {
            findings.push(Finding::new(
                "unknown_province",
                field,
                format!("`{v}` is not a province code"),
            ));
        }
    }

    /// Cambodian numbers: 8–10 digits starting with 0, or +855 and 8–9 digits.
    pub fn phone(findings: &mut Vec<Finding>, field: &str, value: &Option<String>) {
        if let Some(v) = value {
            let compact: String = v
                .chars()
                .filter(|c| !matches!(c, ' ' | '-' | '.'))
                .collect();
            let ok = if let Some(rest) = compact.strip_prefix("+855") {
                (8..=9).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit())
            } else {
                compact.starts_with('0')
                    && (9..=10).contains(&compact.len())
                    && compact.bytes().all(|b| b.is_ascii_digit())
            };
            if !ok {
                findings.push(Finding::new(
                    "invalid_phone",
                    field,
                    "not a Cambodian phone number",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    use super::*;

    #[test]
    fn an_unreadable_timestamp_is_flagged_not_dropped_silently() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "recorded_at", "yesterday").unwrap();
        let mut r = Reader::root(&doc);
        assert_eq!(r.timestamp_ms("recorded_at"), None);
        assert_eq!(r.findings[0].code, "wrong_type");
        doc.put(ROOT, "recorded_at", "2026-11-30T08:00:00Z")
            .unwrap();
        let mut r = Reader::root(&doc);
        assert_eq!(r.timestamp_ms("recorded_at"), Some(1_796_025_600_000));
        assert!(r.findings.is_empty());
    }

    #[test]
    fn a_value_of_the_wrong_type_is_one_finding_not_also_a_missing_one() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "type", "member").unwrap();
        doc.put(ROOT, "sex", 7_i64).unwrap();
        let (m, mut findings) = Member::read(&doc);
        findings.extend(m.validate(2026));
        let on_sex: Vec<String> = without_double_findings(findings)
            .into_iter()
            .filter(|f| f.field == "sex")
            .map(|f| f.code)
            .collect();
        assert_eq!(on_sex, ["wrong_type"]);
    }
}
