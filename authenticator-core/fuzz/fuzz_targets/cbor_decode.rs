//! `cbor::decode` on arbitrary bytes; whatever decodes must re-encode, and the re-encoding must
//! decode again to the same encoding (a fixed point after one round).
#![no_main]

use authenticator_core::cbor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = cbor::decode(data) else {
        return;
    };
    let mut encoded = Vec::new();
    cbor::encode(&value, &mut encoded);
    assert!(!encoded.is_empty(), "a decoded value encoded to nothing");
    match cbor::decode(&encoded) {
        Ok(again) => {
            let mut encoded_again = Vec::new();
            cbor::encode(&again, &mut encoded_again);
            assert_eq!(encoded, encoded_again, "re-encoding is not stable");
        }
        Err(error) => panic!("our own encoding does not decode ({error}): {encoded:02x?}"),
    }
});
