use super::*;
use crate::wire::handle::message::{header_and_body, Message, ENVELOPE_LEN};
use crate::wire::handle::vectors2::{v2, v2_hex};

fn dh(name: &str) -> Vec<u8> {
    v2_hex(&format!("/intermediate/SESSION_DH/{name}"))
}

fn client_key() -> DhKey {
    DhKey::decode(&dh("client_DH_PUB_KEY_hex")).unwrap()
}

#[test]
fn oakley_group_2_is_the_vectors_group() {
    let p = BigUint::parse_bytes(OAKLEY_GROUP2_P_HEX.as_bytes(), 16).unwrap();
    assert_eq!(p, BigUint::from_bytes_be(&dh("p_hex")));
    assert_eq!(p.bits(), 1024);
}

#[test]
fn dh_and_session_key_match_the_vectors() {
    let client = client_key();
    let xs = BigUint::from_bytes_be(&dh("server_private_x_hex"));
    let xc = BigUint::from_bytes_be(&dh("client_private_x_hex"));
    // The client's public value is g^xc.
    assert_eq!(public_value(&client, &xc).y, client.y);
    let answer = dh_answer_with(&client, &xs).unwrap();
    assert_eq!(&answer.key[..], &dh("session_key_hex")[..]);
    // The answer's data is what SESSION_SETUP_RESP_HEX carries, byte for byte.
    let resp = Message::decode_full(&v2("SESSION_SETUP_RESP_HEX")).unwrap();
    let crate::wire::handle::message::Body::SessionSetupAnswer { data, .. } = resp.body else {
        panic!()
    };
    assert_eq!(answer.data, data);
    // Both sides agree: the client derives the same key from the server's value.
    let server = DhKey::decode(&data[4..]).unwrap();
    assert_eq!(session_key(&server, &xc).unwrap(), answer.key);
    // A random private value gives a fresh, agreeing key.
    let a = dh_answer(&dh("client_DH_PUB_KEY_hex")).unwrap();
    let b = dh_answer(&dh("client_DH_PUB_KEY_hex")).unwrap();
    assert_ne!(a.key, b.key);
    let server = DhKey::decode(&a.data[4..]).unwrap();
    assert_eq!(session_key(&server, &xc).unwrap(), a.key);
}

#[test]
fn malformed_groups_are_refused() {
    let good = client_key();
    let one = BigUint::from(1u32);
    let with = |p: &BigUint, g: &BigUint, y: &BigUint| {
        DhKey::from_public_key(&PublicKey::Dh {
            y: java_unsigned(y),
            p: java_unsigned(p),
            g: java_unsigned(g),
        })
    };
    assert!(with(&good.p, &good.g, &good.y).is_ok());
    let p_1 = &good.p - &one;
    for (g, y) in [
        (one.clone(), good.y.clone()),
        (p_1.clone(), good.y.clone()),
        (good.g.clone(), one.clone()),
        (good.g.clone(), p_1.clone()),
        (good.g.clone(), good.p.clone()),
        (good.g.clone(), BigUint::from(0u32)),
    ] {
        assert!(with(&good.p, &g, &y).is_err(), "g {g} y {y}");
    }
    // Too small and too large moduli, even moduli.
    let small = BigUint::from(0xffff_fffbu32);
    assert_eq!(
        with(&small, &BigUint::from(2u32), &BigUint::from(5u32)),
        Err(SessionError::ModulusSize(32))
    );
    let huge = (BigUint::from(1u32) << 2100) + &one;
    assert!(matches!(
        with(&huge, &BigUint::from(2u32), &BigUint::from(5u32)),
        Err(SessionError::ModulusSize(2101))
    ));
    let even = &good.p + &one;
    assert!(with(&even, &good.g, &good.y).is_err());
    // A negative (two's complement) integer and other key types.
    let mut neg = java_unsigned(&good.p);
    neg.remove(0);
    assert!(DhKey::from_public_key(&PublicKey::Dh {
        y: java_unsigned(&good.y),
        p: neg,
        g: vec![2]
    })
    .is_err());
    assert_eq!(
        DhKey::from_public_key(&PublicKey::Rsa {
            exponent: vec![1, 0, 1],
            modulus: vec![0x7f; 128]
        }),
        Err(SessionError::NotDh)
    );
    assert_eq!(DhKey::decode(b"garbage"), Err(SessionError::NotDh));
}

#[test]
fn every_session_mac_of_the_vectors_verifies_with_the_derived_key() {
    use crate::auth::credential::{self, Credential};
    // The key derived here (not the vectors' copy of it) checks every MAC of the exchange.
    let xs = BigUint::from_bytes_be(&dh("server_private_x_hex"));
    let key = dh_answer_with(&client_key(), &xs).unwrap().key;
    let macs = &crate::wire::handle::vectors2::v2_json()["intermediate"]["SESSION_MACS"];
    let names: Vec<&String> = macs.as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 5);
    for name in names {
        let bytes = v2(name);
        let m = Message::decode_full(&bytes).unwrap();
        let hb = header_and_body(&bytes[ENVELOPE_LEN..]).unwrap();
        let cred = Credential::decode(m.credential.as_deref().unwrap()).unwrap();
        assert!(
            credential::verify_mac(&key, &m.envelope, hb, &cred).unwrap(),
            "{name}"
        );
        let mut flipped = hb.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(!credential::verify_mac(&key, &m.envelope, &flipped, &cred).unwrap());
        let mut bad_key = key;
        bad_key[0] ^= 1;
        assert!(!credential::verify_mac(&bad_key, &m.envelope, hb, &cred).unwrap());
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 2, last])
}

fn ids() -> impl FnMut() -> u32 {
    let mut n = 0u32;
    move || {
        n += 1;
        n
    }
}

fn session(now: Instant) -> Session {
    Session::new([7; 32], None, (2, 11), Duration::from_secs(86_400), now)
}

fn small() -> SessionLimits {
    SessionLimits {
        max_entries: 6,
        max_per_source: 3,
        unauthenticated_ttl: Duration::from_secs(60),
        max_timeout: Duration::from_secs(3600),
    }
}

#[test]
fn replayed_counters_are_refused_within_the_window() {
    let now = Instant::now();
    let mut s = session(now);
    assert_eq!(s.accept_counter(1), Ok(()));
    assert_eq!(s.accept_counter(1), Err(Replayed(1)));
    for c in 2..=REPLAY_WINDOW as u32 {
        s.accept_counter(c).unwrap();
    }
    assert_eq!(s.accept_counter(100), Err(Replayed(100)));
    // Counter 1 has left the window of the last 200.
    s.accept_counter(1000).unwrap();
    assert_eq!(s.accept_counter(1), Ok(()));
    assert_eq!((s.next_server_counter(), s.next_server_counter()), (1, 2));
}

#[test]
fn sessions_are_bounded_per_source_and_in_total() {
    let mut t = SessionTable::new(small());
    let now = Instant::now();
    let mut next = ids();
    for _ in 0..3 {
        t.insert(ip(1), session(now), now, &mut next, |_| false)
            .unwrap();
    }
    assert_eq!(
        t.insert(ip(1), session(now), now, &mut next, |_| false),
        Err(SessionFull::Source)
    );
    for _ in 0..3 {
        t.insert(ip(2), session(now), now, &mut next, |_| false)
            .unwrap();
    }
    assert_eq!(t.len(), 6);
    // A newcomer still gets in: the oldest of a largest holder goes.
    let admin = IpAddr::from([127, 0, 0, 1]);
    let id = t
        .insert(admin, session(now), now, &mut next, |_| false)
        .unwrap();
    assert_eq!(t.len(), 6);
    assert!(t.get_mut(id, now).is_some());
    assert_eq!(t.count_for(ip(1)) + t.count_for(ip(2)), 5);
}

#[test]
fn ids_avoid_the_challenge_table_and_zero() {
    let mut t = SessionTable::new(small());
    let now = Instant::now();
    let mut seq = [0u32, 0x8000_0000, 5, 6].into_iter();
    let id = t
        .insert(
            ip(1),
            session(now),
            now,
            || seq.next().unwrap_or(9),
            |id| id == 5,
        )
        .unwrap();
    assert_eq!(id, 6);
}

#[test]
fn unauthenticated_sessions_expire_soon_and_authenticated_ones_when_idle() {
    let mut t = SessionTable::new(small());
    let now = Instant::now();
    let mut next = ids();
    let anon = t
        .insert(ip(1), session(now), now, &mut next, |_| false)
        .unwrap();
    let who = Identity {
        handle: crate::model::Handle::parse("0.NA/88.100.1", crate::model::SuffixCase::default())
            .unwrap(),
        index: 300,
    };
    let mut s = session(now);
    s.requested = Some(who.clone());
    let authed = t.insert(ip(1), s, now, &mut next, |_| false).unwrap();
    let other = Identity {
        index: 301,
        ..who.clone()
    };
    assert!(!t.get_mut(authed, now).unwrap().authenticate(&other));
    assert!(t.get_mut(authed, now).unwrap().authenticate(&who));
    // Use keeps the unauthenticated one alive no longer than 60 s.
    assert!(t.get_mut(anon, now + Duration::from_secs(59)).is_some());
    assert!(t.get_mut(anon, now + Duration::from_secs(61)).is_none());
    assert!(!t.contains(anon));
    // The authenticated one lives while used, up to the capped timeout (1 h) idle.
    let mut at = now;
    for _ in 0..5 {
        at += Duration::from_secs(3000);
        assert!(t.get_mut(authed, at).is_some());
    }
    assert_eq!(t.sweep(at + Duration::from_secs(3599)), 0);
    assert_eq!(t.sweep(at + Duration::from_secs(3601)), 1);
    assert!(t.is_empty());
    assert_eq!(t.count_for(ip(1)), 0);
}
