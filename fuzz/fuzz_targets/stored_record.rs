//! The registry's stored formats (records and change-log entries) on arbitrary bytes:
//! `decode_record` and `decode_change` never panic, and whatever they accept re-encodes to the
//! same bytes.
//!
//! Stored entries are sealed with a CRC-32, so random bytes almost never get past the checksum.
//! Each input is therefore tried twice: as is (exercising the format/CRC checks) and as the
//! body of a correctly sealed entry (format byte 1 + CRC-32 of the input), which lets the
//! fuzzer explore the record and change decoders behind the checksum.
#![no_main]

use idnode::store::record::{decode_change, decode_record, encode_change, encode_record};
use libfuzzer_sys::fuzz_target;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check(bytes: &[u8]) {
    if let Ok(rec) = decode_record(bytes) {
        assert_eq!(
            hex(&encode_record(&rec)),
            hex(bytes),
            "encode_record(decode_record(x)) != x"
        );
    }
    if let Ok(change) = decode_change(42, bytes) {
        assert_eq!(change.seq, 42);
        assert_eq!(
            hex(&encode_change(&change)),
            hex(bytes),
            "encode_change(decode_change(x)) != x"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = Vec::with_capacity(data.len() + 5);
    sealed.push(1);
    sealed.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    sealed.extend_from_slice(data);
    check(&sealed);
});
