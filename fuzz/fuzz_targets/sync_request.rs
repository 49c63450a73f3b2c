//! Fuzz target: the sync request decoder. Any bytes as a request body: JSON decoding,
//! change decoding (hex or base64), chunk verification, causal ordering, checks and
//! apply of every group onto an empty document. Must never panic.
#![no_main]

use coopsync::sync::ingest::verify_and_apply;
use libfuzzer_sys::fuzz_target;
use sync_protocol::messages::SyncRequest;

fuzz_target!(
    init: {
        // automerge 0.12 panics on some crafted changes; the server catches those
        // (`catch_unwind` around apply) and refuses the change. libFuzzer's own hook
        // would abort on them even though they are caught; a panic that escapes still
        // aborts the run through libfuzzer-sys.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<SyncRequest>(data) else {
        return;
    };
    for group in &request.push {
        let (doc, _) = verify_and_apply(
            &automerge::Automerge::new(),
            &group.changes,
            request.encoding,
        );
        let _ = doc.save();
    }
    }
);
