//! Zone files (RFC 1035 §5 master-file format) holding exactly what the DNS front end answers,
//! so that standard authoritative servers (NSD, Knot) can serve the same names with the same
//! RRsets: `idnode export --format zone` writes one, and `scripts/bench-peers.sh` loads it into
//! NSD and Knot to compare them with idnode on identical data.
//!
//! The records are built by the same functions the front end answers with ([`Zone::soa`],
//! [`Zone::ns_records`], and [`value_records`] for an ANY query: TXT per public value, URI and
//! NAPTR per URL value, each value's TTL); this module only prints them. hickory-proto's
//! `Display` for `Record` is not master-file syntax (TXT strings come out unquoted and
//! unescaped and run together, unknown RDATA as bare base64, the type of an unknown record as
//! `Unknown`), so the printer is here:
//!
//! - every record on one line, owner absolute, explicit TTL and class `IN`;
//! - character-strings quoted, `"` and `\` escaped with a backslash, bytes outside printable
//!   ASCII as `\DDD` (so UTF-8 text arrives byte for byte);
//! - names absolute, bytes other than letters, digits, `-`, `_` and `*` escaped;
//! - URI (type 256, which hickory carries as unknown RDATA) as `URI <priority> <weight>
//!   "<target>"`; any other record hickory has no printer for here in the RFC 3597 generic
//!   form `TYPE<n> \# <length> <hex>`.
//!
//! A zone file cannot say everything the front end does: an identifier whose values are all
//! non-public is NODATA at idnode but has no records (hence NXDOMAIN) in a zone, and the names
//! on the path to a homed prefix that holds no identifiers are NODATA at idnode but do not
//! exist in a zone. TTLs given as absolute expiry times are written relative to the export.

use std::io::{self, Write};

use hickory_proto::rr::rdata::{NAPTR, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::{parse_uri_rdata, value_records, Zone};
use crate::model::HandleValue;

/// The records an identifier's name answers an ANY query with: TXT per public value, then URI
/// and NAPTR per public URL value, owned by `owner`. `now` (unix seconds) turns absolute value
/// TTLs into relative ones.
pub fn identifier_records(owner: &Name, values: &[HandleValue], now: u32) -> Vec<Record> {
    let mut out = Vec::new();
    value_records(owner, values, RecordType::ANY, now, &mut out);
    out
}

/// The apex records: the SOA with this serial, then the NS records.
pub fn apex_records(zone: &Zone, serial: u32) -> Vec<Record> {
    let mut out = vec![zone.soa(serial)];
    out.extend(zone.ns_records());
    out
}

/// Writes a zone file: the header and apex records first, then identifiers one at a time.
pub struct ZoneFileWriter<W: Write> {
    out: W,
    line: String,
    records: usize,
}

impl<W: Write> ZoneFileWriter<W> {
    /// Start a zone file for `zone` with the SOA serial `serial` (the front end uses the
    /// registry's change-log sequence).
    pub fn new(mut out: W, zone: &Zone, serial: u32) -> io::Result<ZoneFileWriter<W>> {
        let origin = name_text(zone.origin());
        writeln!(out, "; Zone {origin} as idnode's DNS front end answers it.")?;
        writeln!(
            out,
            "; Written by `idnode export --format zone`; every record has an explicit TTL."
        )?;
        writeln!(out, "$ORIGIN {origin}")?;
        writeln!(out, "$TTL {}", zone.negative_ttl)?;
        let mut writer = ZoneFileWriter {
            out,
            line: String::with_capacity(256),
            records: 0,
        };
        for record in apex_records(zone, serial) {
            writer.record(&record)?;
        }
        Ok(writer)
    }

    /// Write one record.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        push_record(&mut self.line, record);
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        self.records += 1;
        Ok(())
    }

    /// Write the records of one identifier (see [`identifier_records`]); returns how many.
    pub fn identifier(
        &mut self,
        owner: &Name,
        values: &[HandleValue],
        now: u32,
    ) -> io::Result<usize> {
        let records = identifier_records(owner, values, now);
        for record in &records {
            self.record(record)?;
        }
        Ok(records.len())
    }

    /// Records written so far (apex included).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Flush and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One record in master-file syntax, without the newline.
pub fn record_text(record: &Record) -> String {
    let mut line = String::with_capacity(128);
    push_record(&mut line, record);
    line
}

fn push_record(line: &mut String, record: &Record) {
    push_name(line, &record.name);
    line.push(' ');
    line.push_str(&record.ttl.to_string());
    line.push_str(" IN ");
    match &record.data {
        RData::SOA(soa) => push_soa(line, soa),
        RData::NS(ns) => {
            line.push_str("NS ");
            push_name(line, &ns.0);
        }
        RData::TXT(txt) => push_txt(line, txt),
        RData::NAPTR(naptr) => push_naptr(line, naptr),
        data => match parse_uri_rdata(data) {
            Some((priority, weight, target)) => {
                line.push_str(&format!("URI {priority} {weight} "));
                push_quoted(line, target.as_bytes());
            }
            None => push_generic(line, record.record_type(), data),
        },
    }
}

fn push_soa(line: &mut String, soa: &SOA) {
    line.push_str("SOA ");
    push_name(line, &soa.mname);
    line.push(' ');
    push_name(line, &soa.rname);
    line.push_str(&format!(
        " {} {} {} {} {}",
        soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
    ));
}

fn push_txt(line: &mut String, txt: &TXT) {
    line.push_str("TXT");
    if txt.txt_data.is_empty() {
        // A TXT record holds at least one (here empty) character-string.
        line.push_str(" \"\"");
    }
    for s in txt.txt_data.iter() {
        line.push(' ');
        push_quoted(line, s);
    }
}

fn push_naptr(line: &mut String, n: &NAPTR) {
    line.push_str(&format!("NAPTR {} {} ", n.order, n.preference));
    push_quoted(line, &n.flags);
    line.push(' ');
    push_quoted(line, &n.services);
    line.push(' ');
    push_quoted(line, &n.regexp);
    line.push(' ');
    push_name(line, &n.replacement);
}

/// RFC 3597: `TYPE<n> \# <length> <hex>` (the RDATA in wire form, names uncompressed).
fn push_generic(line: &mut String, rtype: RecordType, data: &RData) {
    let mut bytes = Vec::new();
    let encoded = {
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_canonical_form(true);
        data.emit(&mut encoder)
    };
    if encoded.is_err() {
        // Cannot happen for RDATA that was built in memory; keep the file loadable anyway.
        bytes.clear();
    }
    line.push_str(&format!("TYPE{} \\# {}", u16::from(rtype), bytes.len()));
    if !bytes.is_empty() {
        line.push(' ');
        for b in &bytes {
            line.push_str(&format!("{b:02x}"));
        }
    }
}

/// A character-string in double quotes, escaped for master files.
fn push_quoted(line: &mut String, bytes: &[u8]) {
    line.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                line.push('\\');
                line.push(char::from(b));
            }
            0x20..=0x7e => line.push(char::from(b)),
            _ => line.push_str(&format!("\\{b:03}")),
        }
    }
    line.push('"');
}

/// An absolute name, each label byte that is not a letter, digit, `-`, `_` or `*` escaped.
fn push_name(line: &mut String, name: &Name) {
    if name.is_root() {
        line.push('.');
        return;
    }
    for label in name.iter() {
        for &b in label {
            match b {
                b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') => {
                    line.push(char::from(b))
                }
                0x21..=0x7e => {
                    line.push('\\');
                    line.push(char::from(b));
                }
                _ => line.push_str(&format!("\\{b:03}")),
            }
        }
        line.push('.');
    }
}

/// A name in master-file syntax (absolute, escaped).
pub fn name_text(name: &Name) -> String {
    let mut s = String::new();
    push_name(&mut s, name);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Handle, SuffixCase, Ttl, ValuePermissions};
    use crate::wire::dns::URI;
    use hickory_proto::rr::rdata::NULL;
    use hickory_proto::serialize::txt::Parser;

    fn zone() -> Zone {
        Zone::new("id.example.", SuffixCase::Sensitive).unwrap()
    }

    fn sample_values() -> Vec<HandleValue> {
        let mut email = HandleValue::new(2, "EMAIL", "quality@example.com");
        email.ttl = Ttl::Relative(3600);
        vec![
            HandleValue::new(1, "URL", "https://example.com/sn/0001?a=1&b=\"x\"!"),
            email,
            HandleValue::new(3, "DESC", "Pump housing; lot 2026-11, \\ line 3"),
            HandleValue::new(4, "HS_SECKEY", "secret")
                .with_permissions(ValuePermissions::ADMIN_ONLY),
        ]
    }

    fn sample_zone_text() -> (String, Name) {
        let z = zone();
        let owner = z
            .name_of(&Handle::parse("88.100.1/SN-0001", SuffixCase::Sensitive).unwrap())
            .unwrap();
        let mut w = ZoneFileWriter::new(Vec::new(), &z, 42).unwrap();
        assert_eq!(w.identifier(&owner, &sample_values(), 0).unwrap(), 5);
        assert_eq!(w.records(), 7);
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        // EMAIL's TTL is 3600, the others' 86400: the TXT RRset gets 3600 throughout.
        let txt: Vec<&str> = text.lines().filter(|l| l.contains(" TXT ")).collect();
        assert_eq!(txt.len(), 3, "{text}");
        assert!(txt.iter().all(|l| l.contains(" 3600 ")), "{text}");
        (text, owner)
    }

    #[test]
    fn zone_text_has_the_front_ends_records() {
        let (text, _) = sample_zone_text();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(';')).collect();
        assert_eq!(
            lines,
            [
                "$ORIGIN id.example.",
                "$TTL 60",
                "id.example. 60 IN SOA ns1.id.example. hostmaster.id.example. 42 3600 600 604800 60",
                "id.example. 60 IN NS ns1.id.example.",
                "sn-0001.1.100.88.id.example. 3600 IN TXT \"1 URL https://example.com/sn/0001?a=1&b=\\\"x\\\"!\"",
                "sn-0001.1.100.88.id.example. 3600 IN TXT \"2 EMAIL quality@example.com\"",
                "sn-0001.1.100.88.id.example. 3600 IN TXT \"3 DESC Pump housing; lot 2026-11, \\\\ line 3\"",
                "sn-0001.1.100.88.id.example. 86400 IN URI 1 1 \"https://example.com/sn/0001?a=1&b=\\\"x\\\"!\"",
                "sn-0001.1.100.88.id.example. 86400 IN NAPTR 1 10 \"u\" \"E2U+web:https\" \"!^.*$!https://example.com/sn/0001?a=1&b=\\\"x\\\"\\\\!!\" .",
            ]
        );
        assert!(!text.contains("secret"), "non-public values stay out");
    }

    #[test]
    fn hole5_zone_export_withholds_secrets_stored_public() {
        let z = zone();
        let owner = z
            .name_of(&Handle::parse("88.100.1/SN-0001", SuffixCase::Sensitive).unwrap())
            .unwrap();
        let mut w = ZoneFileWriter::new(Vec::new(), &z, 1).unwrap();
        let values = vec![
            HandleValue::new(1, "DESC", "pump"),
            // Stored with public read (as records written before secrets defaulted to
            // admin-only were): still never exported.
            HandleValue::new(300, "HS_SECKEY", "hunter2").with_permissions(ValuePermissions(0x0E)),
            HandleValue::new(301, "hs_privkey", "privkey-data")
                .with_permissions(ValuePermissions(0x0E)),
        ];
        w.identifier(&owner, &values, 0).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        assert!(text.contains("DESC pump"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("privkey-data"),
            "{text}"
        );
    }

    #[test]
    fn zone_text_parses_back_to_the_same_records() {
        let (text, owner) = sample_zone_text();
        // hickory's zone parser knows no URI type: those lines are checked above.
        let without_uri: String = text
            .lines()
            .filter(|l| !l.contains(" IN URI "))
            .map(|l| format!("{l}\n"))
            .collect();
        let (origin, sets) = Parser::new(without_uri.as_str(), None, None)
            .parse()
            .unwrap();
        assert_eq!(origin, *zone().origin());
        let parsed: Vec<Record> = sets
            .values()
            .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect();
        let mut expected = apex_records(&zone(), 42);
        expected.extend(
            identifier_records(&owner, &sample_values(), 0)
                .into_iter()
                .filter(|r| r.record_type() != URI),
        );
        assert_eq!(parsed.len(), expected.len());
        for want in &expected {
            let got = parsed
                .iter()
                .find(|r| *r == want)
                .unwrap_or_else(|| panic!("missing {want}"));
            assert_eq!(got.ttl, want.ttl, "{want}");
        }
    }

    #[test]
    fn generic_form_and_escaped_names() {
        let owner = Name::from_labels(vec![&b"a.b"[..], b"x y", b"id"]).unwrap();
        let r = Record::from_rdata(
            owner,
            5,
            RData::Unknown {
                code: RecordType::Unknown(65280),
                rdata: NULL::with(vec![0, 1, 0xab]),
            },
        );
        assert_eq!(
            record_text(&r),
            "a\\.b.x\\032y.id. 5 IN TYPE65280 \\# 3 0001ab"
        );
        // Bytes outside printable ASCII as \DDD (hickory's own zone lexer misreads these,
        // which is why the parse-back test above sticks to ASCII).
        let utf8 = Record::from_rdata(
            Name::root(),
            1,
            RData::TXT(TXT::new(vec!["é\t".to_string()])),
        );
        assert_eq!(record_text(&utf8), ". 1 IN TXT \"\\195\\169\\009\"");
        let empty = Record::from_rdata(Name::root(), 1, RData::TXT(TXT::from_bytes(vec![])));
        assert_eq!(record_text(&empty), ". 1 IN TXT \"\"");
    }
}
