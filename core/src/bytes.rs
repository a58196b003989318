//! Byte bodies (`Arc<[u8]>`) as byte strings: serde writes a slice as a sequence of numbers,
//! which MessagePack (the command log) stores and reads one number at a time. These helpers
//! write one byte string through `serde_bytes` instead (the JSON text, an array of numbers, is
//! the same in the digest and in exports) and read either form (`serde_bytes::ByteBuf` takes a
//! byte string or a sequence), so logs and snapshots written before still load.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serializer};
use serde_bytes::ByteBuf;

/// `#[serde(with = "crate::bytes::arc")]` for `Arc<[u8]>`.
pub(crate) mod arc {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        Ok(ByteBuf::deserialize(d)?.into_vec().into())
    }
}

/// `#[serde(with = "crate::bytes::option")]` for `Option<Arc<[u8]>>`.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &Option<Arc<[u8]>>, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&b.as_deref(), s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Arc<[u8]>>, D::Error> {
        let b = Option::<ByteBuf>::deserialize(d)?;
        Ok(b.map(|b| b.into_vec().into()))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "arc")]
        body: Arc<[u8]>,
        #[serde(default, with = "option", skip_serializing_if = "Option::is_none")]
        payload: Option<Arc<[u8]>>,
    }

    /// The form serde gives a plain `Arc<[u8]>`: a sequence of numbers.
    #[derive(Serialize)]
    struct Before {
        body: Arc<[u8]>,
        payload: Option<Arc<[u8]>>,
    }

    fn holder() -> Holder {
        Holder {
            body: Arc::from(&[0u8, 1, 200, 255][..]),
            payload: Some(Arc::from(vec![200u8; 64])),
        }
    }

    #[test]
    fn json_text_is_unchanged_and_reads_back() {
        let h = holder();
        let before = Before {
            body: h.body.clone(),
            payload: h.payload.clone(),
        };
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(text, serde_json::to_string(&before).unwrap());
        assert_eq!(serde_json::from_str::<Holder>(&text).unwrap(), h);
    }

    #[test]
    fn messagepack_writes_a_byte_string_and_reads_the_old_form_too() {
        let h = holder();
        let new = rmp_serde::to_vec_named(&h).unwrap();
        let old = rmp_serde::to_vec_named(&Before {
            body: h.body.clone(),
            payload: h.payload.clone(),
        })
        .unwrap();
        assert!(
            new.len() < old.len(),
            "a byte string is smaller than numbers"
        );
        assert_eq!(rmp_serde::from_slice::<Holder>(&new).unwrap(), h);
        assert_eq!(rmp_serde::from_slice::<Holder>(&old).unwrap(), h);
    }

    #[test]
    fn compact_messagepack_reads_the_old_form_too() {
        // Snapshots use the compact (positional) form.
        let h = Holder {
            payload: None,
            ..holder()
        };
        let old = rmp_serde::to_vec(&Before {
            body: h.body.clone(),
            payload: None,
        })
        .unwrap();
        let new = rmp_serde::to_vec(&h).unwrap();
        assert!(new.len() < old.len());
        assert_eq!(rmp_serde::from_slice::<Holder>(&new).unwrap(), h);
        assert_eq!(rmp_serde::from_slice::<Holder>(&old).unwrap(), h);
    }
}
