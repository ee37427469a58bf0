//! The mapping between identifiers and DNS names, from both ends, on arbitrary input.
//!
//! The first input byte picks the suffix case rule (bit 0) and how the rest is read (bit 1):
//!
//! - **as a name**: the rest is a sequence of labels (`len, bytes[len]`, lengths taken modulo
//!   64) put under the zone `id.example.`. `Zone::classify` and `Zone::is_empty_non_terminal`
//!   never panic; a name under the zone with labels below it is never the apex; each
//!   identifier candidate it yields maps back (`Zone::name_of`) without error to a name whose
//!   candidates include it;
//! - **as an identifier**: the rest, as UTF-8 text, through `Handle::parse`; `name_of` either
//!   gives a name of at most 255 bytes under the zone whose candidates include the identifier,
//!   or says why not (a prefix segment that is no plain label, or a name too long).
//!
//! And in both modes the base32 codec: `base32_decode(base32_encode(x)) == x`, and whatever
//! `base32_decode` accepts re-encodes to the input, lower-cased.
#![no_main]

use hickory_proto::rr::Name;
use idnode::model::{Handle, Prefix, SuffixCase};
use idnode::wire::dns::{
    base32_decode, base32_encode, MappingError, NameMeaning, Zone, MAX_NAME_LEN,
};
use libfuzzer_sys::fuzz_target;

fn check_name(zone: &Zone, name: &Name) {
    let _ = zone.is_empty_non_terminal(name);
    let meaning = zone.classify(name);
    let below = name.iter().count() - zone.origin().iter().count();
    match meaning {
        NameMeaning::OutsideZone => panic!("{name} is outside the zone it was built under"),
        NameMeaning::Apex => assert_eq!(below, 0, "{name} is not the apex"),
        NameMeaning::NotAnIdentifier => {}
        NameMeaning::Identifier(candidates) => {
            assert!((1..=2).contains(&candidates.len()), "{candidates:?}");
            for c in &candidates {
                let back = zone
                    .name_of(c)
                    .unwrap_or_else(|e| panic!("{name}: candidate {c:?} has no name: {e}"));
                match zone.classify(&back) {
                    NameMeaning::Identifier(again) => {
                        assert!(again.contains(c), "{name} -> {c:?} -> {back} -> {again:?}")
                    }
                    other => panic!("{name} -> {c:?} -> {back} means {other:?}"),
                }
            }
        }
    }
}

fn check_handle(zone: &Zone, handle: &Handle) {
    match zone.name_of(handle) {
        Ok(name) => {
            assert!(name.len() <= MAX_NAME_LEN, "{name}: {} bytes", name.len());
            assert!(zone.origin().zone_of(&name), "{name} outside the zone");
            match zone.classify(&name) {
                NameMeaning::Identifier(c) => {
                    assert!(c.contains(handle), "{handle:?} -> {name} -> {c:?}")
                }
                other => panic!("{handle:?} -> {name} means {other:?}"),
            }
        }
        Err(MappingError::PrefixSegment(s)) => assert!(
            handle.prefix().as_str().split('.').any(|p| p == s),
            "{handle:?}: segment {s:?} is not in the prefix"
        ),
        Err(MappingError::NameTooLong(n)) => assert!(n > MAX_NAME_LEN, "{n} bytes is not too long"),
    }
}

fn check_base32(bytes: &[u8]) {
    let enc = base32_encode(bytes);
    assert_eq!(base32_decode(enc.as_bytes()).as_deref(), Some(bytes));
    if let Some(dec) = base32_decode(bytes) {
        assert_eq!(base32_encode(&dec).as_bytes(), bytes.to_ascii_lowercase());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let case = if mode & 1 == 0 {
        SuffixCase::Sensitive
    } else {
        SuffixCase::Insensitive
    };
    let mut zone = Zone::new("id.example", case).expect("zone");
    zone.homed = vec![Prefix::parse("88.100.1").expect("prefix")];
    check_base32(rest);

    if mode & 2 == 0 {
        let mut labels: Vec<&[u8]> = Vec::new();
        let mut r = rest;
        while let [len, tail @ ..] = r {
            let n = usize::from(len % 64).min(tail.len());
            let (label, after) = tail.split_at(n);
            if label.is_empty() {
                break;
            }
            labels.push(label);
            r = after;
        }
        labels.extend(zone.origin().iter());
        if let Ok(mut name) = Name::from_labels(labels) {
            name.set_fqdn(true);
            check_name(&zone, &name);
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(handle) = Handle::parse(text, case) {
            check_handle(&zone, &handle);
        }
    }
});
