//! Writes seed corpora for the fuzz targets from real tablet work (a cooperative, a
//! member, a training session with attendance) made with the sync-protocol client:
//! `cargo run --bin seeds -- corpus` (from fuzz/).

use std::{fs, path::PathBuf};

use sync_protocol::{
    PROTOCOL_VERSION,
    client::SyncClient,
    documents::{AttendanceEntry, Cooperative, DocType, Member, TrainingSession},
    messages::{ChangeEncoding, SyncRequest},
};

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let mut client = SyncClient::new();
    let coop = client
        .create(DocType::Cooperative, |tx| {
            Cooperative {
                name_khmer: Some("សហគមន៍កសិកម្ម".into()),
                name_latin: Some("Kampot Rice".into()),
                province_code: Some("07".into()),
                status: Some("active".into()),
                ..Cooperative::default()
            }
            .write(tx, true)
        })
        .expect("cooperative");
    let member = client
        .create(DocType::Member, |tx| {
            Member {
                cooperative_id: Some(coop.clone()),
                full_name_khmer: Some("សុខ ដារា".into()),
                sex: Some("female".into()),
                year_of_birth: Some(1984),
                phone: Some("012 345 678".into()),
                role: Some("member".into()),
                ..Member::default()
            }
            .write(tx, true)
        })
        .expect("member");
    let session = client
        .create(DocType::TrainingSession, |tx| {
            TrainingSession {
                programme: Some("think_coop".into()),
                cooperative_id: Some(coop.clone()),
                province_code: Some("07".into()),
                facilitators: vec!["Promoter".into()],
                planned_hours: Some(6.0),
                ..TrainingSession::default()
            }
            .write(tx, true)
        })
        .expect("session");
    for (i, hours) in [6.0, 3.5, 6.0].into_iter().enumerate() {
        let entry = AttendanceEntry {
            member_id: (i == 0).then(|| member.clone()),
            name: (i > 0).then(|| format!("Guest {i}")),
            status: Some("present".into()),
            hours: Some(hours),
            ..AttendanceEntry::default()
        };
        client
            .edit(&session, |tx| {
                TrainingSession::write_attendance(tx, &format!("p{i}"), &entry)
            })
            .expect("attendance");
    }
    let (requests, changes) = (root.join("sync_request"), root.join("change_apply"));
    fs::create_dir_all(&requests).expect("mkdir");
    fs::create_dir_all(&changes).expect("mkdir");
    for encoding in [ChangeEncoding::Hex, ChangeEncoding::Base64] {
        client.encoding = encoding;
        for (i, batch) in client.undelivered_batches().into_iter().enumerate() {
            let request = SyncRequest {
                protocol_version: PROTOCOL_VERSION,
                encoding,
                push: batch,
                pull: true,
                ..SyncRequest::default()
            };
            let name = format!("upload-{encoding:?}-{i}.json").to_lowercase();
            fs::write(
                requests.join(name),
                serde_json::to_vec(&request).expect("json"),
            )
            .expect("write");
        }
    }
    for (id, (_, doc)) in client.docs() {
        let history: Vec<u8> = doc
            .get_changes(&[])
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        fs::write(changes.join(format!("history-{id}")), history).expect("write");
    }
    println!("seeds written under {}", root.display());
}
