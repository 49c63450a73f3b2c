//! Fuzz target: change validation and apply. The input is one document's history as
//! concatenated change chunks; each chunk's checksum is recomputed so that mutations
//! reach automerge's parser and the server's checks. Whatever is applied must leave a
//! document that saves and loads with the same heads.
#![no_main]

use automerge::Automerge;
use coopsync::sync::ingest::verify_and_apply;
use libfuzzer_sys::fuzz_target;
use sync_protocol::{chunk::split_and_seal, messages::ChangeEncoding};

fuzz_target!(
    init: {
        // automerge 0.12 panics on some crafted changes; the server catches those
        // (`catch_unwind` around apply) and refuses the change. libFuzzer's own hook
        // would abort on them even though they are caught; a panic that escapes still
        // aborts the run through libfuzzer-sys.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let encoded: Vec<String> = split_and_seal(data).iter().map(hex::encode).collect();
    let (doc, applied) = verify_and_apply(&Automerge::new(), &encoded, ChangeEncoding::Hex);
    if applied > 0 {
        let loaded = Automerge::load(&doc.save()).expect("an applied result loads");
        let (mut a, mut b) = (doc.get_heads(), loaded.get_heads());
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    }
);
