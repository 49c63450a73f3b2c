//! Protocol crate tests: a JavaScript-made test vector, lenient reading of what JavaScript
//! writes, validation, and convergence of the document model under any delivery order.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use automerge::{AutoCommit, ObjType, ROOT, ScalarValue, transaction::Transactable};
use proptest::prelude::*;
use sync_protocol::{
    chunk::verify_change_chunk,
    documents::{AttendanceEntry, Cooperative, DocType, Member, TrainingSession, doc_type_of},
};

#[test]
fn text_objects_and_float_numbers_read_like_canonical_values() {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "type", "member").unwrap();
    let name = doc
        .put_object(ROOT, "full_name_khmer", ObjType::Text)
        .unwrap();
    doc.splice_text(&name, 0, 0, "សុខ ចាន់").unwrap();
    doc.put(ROOT, "year_of_birth", ScalarValue::F64(1990.0))
        .unwrap();
    doc.put(ROOT, "sex", ScalarValue::Str("female".into()))
        .unwrap();
    let (m, findings) = Member::read(&doc);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.full_name_khmer.as_deref(), Some("សុខ ចាន់"));
    assert_eq!(m.year_of_birth, Some(1990));
}

#[test]
fn wrong_types_become_findings_not_failures() {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "type", "member").unwrap();
    doc.put(ROOT, "year_of_birth", "nineteen ninety").unwrap();
    doc.put(ROOT, "sex", 7).unwrap();
    let (m, findings) = Member::read(&doc);
    assert_eq!(m.year_of_birth, None);
    let fields: Vec<&str> = findings.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["sex", "year_of_birth"]);
    assert!(findings.iter().all(|f| f.code == "wrong_type"));
}

#[test]
fn attendance_rules_flag_hours_above_planned_and_guests_without_names() {
    let mut s = TrainingSession {
        programme: Some("think_coop".into()),
        province_code: Some("07".into()),
        group_name: Some("Forming group".into()),
        scheduled_date: Some("2026-11-20".into()),
        planned_hours: Some(6.0),
        status: Some("held".into()),
        ..TrainingSession::default()
    };
    let p = "6f9619ff-8b86-4011-b42d-00c04fc964ff".to_string();
    s.attendance.insert(
        p,
        AttendanceEntry {
            status: Some("partial".into()),
            hours: Some(7.5),
            ..AttendanceEntry::default()
        },
    );
    let codes: Vec<String> = s.validate().into_iter().map(|f| f.code).collect();
    assert_eq!(codes, ["missing_required_field", "hours_exceed_planned"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Three replicas edit concurrently; however their changes are delivered (order,
    /// duplicates), every replica reads the same session.
    #[test]
    fn replicas_converge_under_any_delivery_order(
        edits in prop::collection::vec((0..3usize, 0..4u8, 0..5u8), 1..20),
        order in prop::collection::vec(0..3usize, 3..12),
    ) {
        let mut base = AutoCommit::new();
        let s = TrainingSession { planned_hours: Some(6.0), ..TrainingSession::default() };
        s.write(&mut base, true).unwrap();
        base.commit();
        let mut replicas: Vec<AutoCommit> = (0..3).map(|_| base.fork()).collect();
        for (r, field, value) in edits {
            let doc = &mut replicas[r];
            match field {
                0 => { doc.put(ROOT, "location", ScalarValue::Str(format!("L{value}").into())).unwrap(); }
                1 => { TrainingSession::write_attendance(doc, &format!("p{value}"), &AttendanceEntry { status: Some("present".into()), hours: Some(f64::from(value)), ..AttendanceEntry::default() }).unwrap(); }
                2 => { doc.put(ROOT, "status", ScalarValue::Str("held".into())).unwrap(); }
                _ => { doc.put(ROOT, "planned_hours", ScalarValue::F64(f64::from(value))).unwrap(); }
            }
            doc.commit();
        }
        // Deliver everyone's changes to everyone, in the given order, with repeats.
        let all: Vec<Vec<automerge::Change>> = replicas.iter_mut().map(|d| d.get_changes(&[]).into_iter().collect()).collect();
        let mut targets: Vec<AutoCommit> = (0..3).map(|_| base.fork()).collect();
        for (i, t) in targets.iter_mut().enumerate() {
            for &src in order.iter().chain([0usize, 1, 2].iter()) {
                let mut changes = all[(src + i) % 3].clone();
                if src % 2 == 1 { changes.reverse(); }
                t.apply_changes(changes).unwrap();
            }
        }
        let reads: Vec<TrainingSession> = targets.iter().map(|t| TrainingSession::read(t).0).collect();
        prop_assert_eq!(&reads[0], &reads[1]);
        prop_assert_eq!(&reads[1], &reads[2]);
    }
}

#[test]
fn javascript_cooperative_change_verifies_and_reads() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/js-3.5-cooperative.change"
    ))
    .unwrap();
    let hash = verify_change_chunk(&bytes).unwrap();
    assert_eq!(
        hex::encode(hash),
        "2c62b068cf15e57acbf2bdbd1a34983ec660adc26823ed9e600602fd0fe80390"
    );
    let change = automerge::Change::try_from(&bytes[..]).unwrap();
    let mut doc = automerge::Automerge::new();
    doc.apply_changes([change]).unwrap();
    assert_eq!(doc_type_of(&doc), Some(DocType::Cooperative));
    let (coop, findings) = Cooperative::read(&doc);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(coop.name_latin.as_deref(), Some("Kep Salt"));
    assert_eq!(coop.province_code.as_deref(), Some("23"));
    // name_khmer is missing: stored, but flagged.
    assert_eq!(
        coop.validate()
            .iter()
            .map(|f| f.code.as_str())
            .collect::<Vec<_>>(),
        ["missing_required_field"]
    );
}

/// The worked example in docs/sync-protocol.md is real: its base64 is a change whose
/// checksum holds, whose hash is the one printed, and whose first change carries the
/// `id` the schema requires.
#[test]
fn the_worked_example_in_the_protocol_document_is_a_valid_first_change() {
    use base64::Engine as _;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/sync-protocol.md"
    ))
    .unwrap();
    let section = text
        .split("## Worked example with real bytes")
        .nth(1)
        .unwrap();
    let b64 = section
        .split("in base64 (the default):")
        .nth(1)
        .unwrap()
        .split("```")
        .nth(1)
        .unwrap()
        .trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let hash = hex::encode(verify_change_chunk(&bytes).unwrap());
    assert!(
        section.contains(&format!("hash `{hash}`")),
        "documented hash is {hash}"
    );
    let change = automerge::Change::try_from(&bytes[..]).unwrap();
    let mut doc = automerge::Automerge::new();
    doc.apply_changes([change]).unwrap();
    let (coop, findings) = Cooperative::read(&doc);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(coop.name_latin.as_deref(), Some("Kep Salt"));
    assert_eq!(
        automerge::ReadDoc::get(&doc, ROOT, "id")
            .unwrap()
            .map(|(v, _)| v.as_str().map(str::to_string)),
        Some(Some("9b1f6f9e-2d0c-4c61-8c35-3f6f0c9a7e21".to_string()))
    );
}
