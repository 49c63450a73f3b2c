//! Training session document (`type: "training_session"`), holding its attendance.
//!
//! | field | Automerge type | required |
//! |---|---|---|
//! | `programme` | Str: `think_coop`, `start_coop`, or another configured programme code | yes |
//! | `module` | Str | no |
//! | `cooperative_id` | Str (UUID) — or `group_name` for a group still forming | one of the two |
//! | `group_name` | Str | |
//! | `province_code` | Str | yes |
//! | `location` | Str | no |
//! | `facilitators` | List of Str | no |
//! | `scheduled_date` | Str `YYYY-MM-DD` | yes |
//! | `start_time`, `end_time` | Str `HH:MM` | no |
//! | `planned_hours` | F64 (Int accepted) | yes |
//! | `status` | Str: `scheduled`, `held`, `cancelled` | yes |
//! | `attendance` | Map: participant id (UUID) → entry map | no |
//!
//! Attendance entry (a map, one per participant, so two tablets recording different
//! people never conflict):
//!
//! | field | Automerge type | required |
//! |---|---|---|
//! | `status` | Str: `present`, `absent`, `partial` | yes |
//! | `hours` | F64 (Int accepted) | for `partial` |
//! | `member_id` | Str (UUID of a member document) | for members |
//! | `name`, `sex`, `age`, `phone` | Str, Str, Int, Str | for people in no cooperative |
//! | `recorded_by` | Str (user id) | yes |
//! | `recorded_at` | Timestamp (ms) | yes |

use std::collections::BTreeMap;

use automerge::{AutomergeError, ReadDoc, transaction::Transactable};
use serde::{Deserialize, Serialize};

use super::{DocType, Finding, Reader, SEX_VALUES, Writer, rules};

pub const PROGRAMMES: [&str; 3] = ["think_coop", "start_coop", "follow_up"];
pub const STATUSES: [&str; 3] = ["scheduled", "held", "cancelled"];
pub const ATTENDANCE_STATUSES: [&str; 3] = ["present", "absent", "partial"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttendanceEntry {
    pub status: Option<String>,
    pub hours: Option<f64>,
    pub member_id: Option<String>,
    pub name: Option<String>,
    pub sex: Option<String>,
    pub age: Option<i64>,
    pub phone: Option<String>,
    pub recorded_by: Option<String>,
    pub recorded_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSession {
    pub programme: Option<String>,
    pub module: Option<String>,
    pub cooperative_id: Option<String>,
    pub group_name: Option<String>,
    pub province_code: Option<String>,
    pub location: Option<String>,
    pub facilitators: Vec<String>,
    pub scheduled_date: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub planned_hours: Option<f64>,
    pub status: Option<String>,
    /// Participant id → entry.
    pub attendance: BTreeMap<String, AttendanceEntry>,
}

impl TrainingSession {
    pub fn read<D: ReadDoc>(doc: &D) -> (Self, Vec<Finding>) {
        let (mut s, mut findings) = Self::read_header(doc);
        let mut r = Reader::root(doc);
        if let Some(att) = r.map("attendance") {
            for participant in r.keys(&att) {
                if let Some(entry) = Self::read_entry_in(doc, &att, &participant, &mut findings) {
                    s.attendance.insert(participant, entry);
                }
            }
        }
        (s, findings)
    }

    /// The session's own fields, without reading its attendance (which can hold thousands
    /// of entries): `attendance` is left empty. Findings are those of these fields.
    pub fn read_header<D: ReadDoc>(doc: &D) -> (Self, Vec<Finding>) {
        let mut r = Reader::root(doc);
        let s = TrainingSession {
            programme: r.string("programme"),
            module: r.string("module"),
            cooperative_id: r.string("cooperative_id"),
            group_name: r.string("group_name"),
            province_code: r.string("province_code"),
            location: r.string("location"),
            facilitators: r.string_list("facilitators"),
            scheduled_date: r.string("scheduled_date"),
            start_time: r.string("start_time"),
            end_time: r.string("end_time"),
            planned_hours: r.number("planned_hours"),
            status: r.string("status"),
            attendance: BTreeMap::new(),
        };
        // `attendance` that is not a map is a finding of the header.
        r.map("attendance");
        let findings = std::mem::take(&mut r.findings);
        (s, findings)
    }

    /// One participant's entry, `None` if there is none (never recorded or removed), with
    /// the findings under `attendance.<participant>`.
    pub fn read_entry<D: ReadDoc>(
        doc: &D,
        participant: &str,
    ) -> (Option<AttendanceEntry>, Vec<Finding>) {
        let mut findings = Vec::new();
        let att = match doc.get(automerge::ROOT, "attendance") {
            Ok(Some((automerge::Value::Object(automerge::ObjType::Map), id))) => id,
            _ => return (None, findings),
        };
        let entry = Self::read_entry_in(doc, &att, participant, &mut findings);
        (entry, findings)
    }

    fn read_entry_in<D: ReadDoc>(
        doc: &D,
        att: &automerge::ObjId,
        participant: &str,
        findings: &mut Vec<Finding>,
    ) -> Option<AttendanceEntry> {
        let prefix = format!("attendance.{participant}");
        let mut outer = Reader::at(doc, att.clone(), "attendance");
        let obj = outer.map(participant);
        findings.append(&mut outer.findings);
        let mut e = Reader::at(doc, obj?, &prefix);
        let entry = AttendanceEntry {
            status: e.string("status"),
            hours: e.number("hours"),
            member_id: e.string("member_id"),
            name: e.string("name"),
            sex: e.string("sex"),
            age: e.int("age"),
            phone: e.string("phone"),
            recorded_by: e.string("recorded_by"),
            recorded_at_ms: e.timestamp_ms("recorded_at"),
        };
        findings.append(&mut e.findings);
        Some(entry)
    }

    /// Writes the session's own fields that are set (not the attendance).
    pub fn write<T: Transactable>(&self, tx: &mut T, create: bool) -> Result<(), AutomergeError> {
        let mut w = Writer::root(tx);
        if create {
            w.header(DocType::TrainingSession)?;
        }
        w.string("programme", self.programme.as_deref())?;
        w.string("module", self.module.as_deref())?;
        w.string("cooperative_id", self.cooperative_id.as_deref())?;
        w.string("group_name", self.group_name.as_deref())?;
        w.string("province_code", self.province_code.as_deref())?;
        w.string("location", self.location.as_deref())?;
        if !self.facilitators.is_empty() {
            w.string_list("facilitators", &self.facilitators)?;
        }
        w.string("scheduled_date", self.scheduled_date.as_deref())?;
        w.string("start_time", self.start_time.as_deref())?;
        w.string("end_time", self.end_time.as_deref())?;
        w.number("planned_hours", self.planned_hours)?;
        w.string("status", self.status.as_deref())?;
        if create {
            w.map("attendance")?;
        }
        Ok(())
    }

    /// Records (or updates) one participant's attendance.
    pub fn write_attendance<T: Transactable>(
        tx: &mut T,
        participant_id: &str,
        entry: &AttendanceEntry,
    ) -> Result<(), AutomergeError> {
        let attendance = Writer::root(tx).map("attendance")?;
        let obj = Writer::at(tx, attendance).map(participant_id)?;
        let mut w = Writer::at(tx, obj);
        w.string("status", entry.status.as_deref())?;
        w.number("hours", entry.hours)?;
        w.string("member_id", entry.member_id.as_deref())?;
        w.string("name", entry.name.as_deref())?;
        w.string("sex", entry.sex.as_deref())?;
        w.int("age", entry.age)?;
        w.string("phone", entry.phone.as_deref())?;
        w.string("recorded_by", entry.recorded_by.as_deref())?;
        w.timestamp_ms("recorded_at", entry.recorded_at_ms)
    }

    pub fn validate(&self) -> Vec<Finding> {
        let mut f = self.validate_header();
        for (pid, e) in &self.attendance {
            f.extend(e.validate(pid, self.planned_hours));
        }
        f
    }

    /// The rules of the session's own fields.
    pub fn validate_header(&self) -> Vec<Finding> {
        let mut f = Vec::new();
        rules::required(&mut f, "programme", &self.programme);
        rules::required(&mut f, "province_code", &self.province_code);
        rules::required(&mut f, "scheduled_date", &self.scheduled_date);
        rules::required(&mut f, "planned_hours", &self.planned_hours);
        rules::required(&mut f, "status", &self.status);
        if self.cooperative_id.is_none() && self.group_name.is_none() {
            f.push(Finding::new(
                "missing_required_field",
                "cooperative_id",
                "a session needs a `cooperative_id` or, for a group still forming, a `group_name`",
            ));
        }
        rules::uuid(&mut f, "cooperative_id", &self.cooperative_id);
        rules::province(&mut f, "province_code", &self.province_code);
        rules::one_of(&mut f, "status", &self.status, &STATUSES);
        rules::date(&mut f, "scheduled_date", &self.scheduled_date);
        rules::time(&mut f, "start_time", &self.start_time);
        rules::time(&mut f, "end_time", &self.end_time);
        for (field, value) in [
            ("module", &self.module),
            ("group_name", &self.group_name),
            ("location", &self.location),
        ] {
            rules::max_chars(&mut f, field, value, rules::MAX_NAME_CHARS);
        }
        if let Some(h) = self.planned_hours
            && !(0.0..=24.0 * 14.0).contains(&h)
        {
            f.push(Finding::new(
                "invalid_value",
                "planned_hours",
                "planned hours out of range",
            ));
        }
        f
    }
}

impl AttendanceEntry {
    /// The rules of one entry; `planned_hours` is its session's.
    pub fn validate(&self, pid: &str, planned_hours: Option<f64>) -> Vec<Finding> {
        let mut f = Vec::new();
        let field = |k: &str| format!("attendance.{pid}.{k}");
        if uuid::Uuid::parse_str(pid).is_err() {
            f.push(Finding::new(
                "invalid_id",
                format!("attendance.{pid}"),
                "participant ids are UUIDs",
            ));
        }
        rules::required(&mut f, &field("status"), &self.status);
        rules::one_of(&mut f, &field("status"), &self.status, &ATTENDANCE_STATUSES);
        rules::one_of(&mut f, &field("sex"), &self.sex, &SEX_VALUES);
        rules::uuid(&mut f, &field("member_id"), &self.member_id);
        rules::phone(&mut f, &field("phone"), &self.phone);
        rules::max_chars(&mut f, &field("name"), &self.name, rules::MAX_NAME_CHARS);
        if self.member_id.is_none() && self.name.is_none() {
            f.push(Finding::new(
                "missing_required_field",
                field("name"),
                "a participant who is not a member needs a name",
            ));
        }
        if self.status.as_deref() == Some("partial") && self.hours.is_none() {
            f.push(Finding::new(
                "missing_required_field",
                field("hours"),
                "partial attendance needs hours",
            ));
        }
        if let Some(h) = self.hours {
            if h < 0.0 {
                f.push(Finding::new(
                    "invalid_value",
                    field("hours"),
                    "hours cannot be negative",
                ));
            } else if planned_hours.is_some_and(|p| h > p) {
                f.push(Finding::new(
                    "hours_exceed_planned",
                    field("hours"),
                    format!(
                        "{h} hours recorded, but the session plans {}",
                        planned_hours.unwrap_or(0.0)
                    ),
                ));
            }
        }
        f
    }
}
