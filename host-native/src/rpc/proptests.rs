//! Property tests of SynapRPC's frame parsing: generated and mutated frames never panic or
//! hang the reader; each ends in a request, a clean error, or the connection's end.
//! `PROPTEST_CASES=5000 cargo test -p synap-server proptests` widens them.

use std::time::Duration;

use proptest::prelude::*;

use super::conn::{ReadError, read_frame};
use super::value::{BadFrame, decode_request};

fn config() -> ProptestConfig {
    crate::proptests::config()
}

/// A valid request frame body: `[id, command, args]` in MessagePack.
fn valid_body(id: u32, command: &str, n: i64) -> Vec<u8> {
    let args: Vec<rmpv_like::V> = vec![rmpv_like::V::Str("q".into()), rmpv_like::V::Int(n)];
    rmp_serde::to_vec(&(id, command, args)).expect("encodes")
}

/// The externally tagged values SynapRPC frames carry, for building test frames.
mod rmpv_like {
    #[derive(serde::Serialize)]
    pub(super) enum V {
        Str(String),
        Int(i64),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_body_decodes_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode_request(&body) {
            Ok(_) | Err(BadFrame::Malformed(_) | BadFrame::ReservedId) => {}
        }
    }

    #[test]
    fn mutated_requests_decode_or_are_refused(
        id in any::<u32>(),
        n in any::<i64>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut body = valid_body(id, "QPUBLISH", n);
        for (at, byte) in edits {
            let i = at % body.len();
            body[i] = byte;
        }
        body.truncate(cut % (body.len() + 1));
        let _ = decode_request(&body);
    }

    #[test]
    fn the_reader_ends_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let mut r: &[u8] = &bytes;
            // Reading from a slice never waits: every frame ends (read, refused or cut short).
            for _ in 0..64 {
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    read_frame(&mut r, 1024, Duration::from_secs(1)),
                )
                .await
                .expect("the reader does not hang");
                match read {
                    Ok(body) => {
                        prop_assert!(!body.is_empty() && body.len() <= 1024);
                        let _ = decode_request(&body);
                    }
                    Err(ReadError::Closed | ReadError::BadLength(_) | ReadError::Slow) => break,
                }
            }
            Ok(())
        })?;
    }
}
