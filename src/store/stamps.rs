//! Change stamps: what lets a prepared answer outlive writes to other identifiers.
//!
//! The UDP front end replays encoded answers (`server::udp::HotAnswers`). It used to retire
//! all of them at every write (the registry's sequence moved), so with a few hundred REST
//! writes a second nearly every query took the slow path. Instead, every committed write of
//! a record bumps the stamp of its slot — one of [`SLOTS`] counters picked by a hash of the
//! key with ASCII case folded, so a handle as a client wrote it lands in the same slot as its
//! normalized key — and a prepared answer for handle `h` stays valid while the stamp of `h`'s
//! slot and the structural stamp are what they were when the answer was computed. Two keys
//! sharing a slot only cost an extra recomputation, never a stale answer.
//!
//! The structural stamp moves with whatever can change answers for many handles at once:
//! writes of prefix handles (`0.NA/…`: referrals, homing, administrators) and homing or
//! unhoming a prefix.
//!
//! Order, which is what makes it safe: the writer bumps after the write is visible to readers
//! (sled committed, read index updated) and before it is acknowledged; the reader takes the
//! stamp before it reads the record. A write that lands between the two leaves the answer
//! with an older stamp than the slot's, so it is never replayed.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots (a power of two): 512 KiB of counters.
pub const SLOTS: usize = 1 << 16;

/// The stamps. Reading is two atomic loads; writing one `fetch_add` and one store.
pub struct ChangeStamps {
    clock: AtomicU64,
    structure: AtomicU64,
    slots: Box<[AtomicU64]>,
}

impl Default for ChangeStamps {
    fn default() -> Self {
        ChangeStamps {
            clock: AtomicU64::new(0),
            structure: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// FNV-1a over the ASCII-lower-cased bytes: cheap, and equal for keys that differ only in
/// case. Not keyed: a sender choosing colliding handles gains nothing (queries never bump).
fn slot_of(handle: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in handle {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as usize & (SLOTS - 1)
}

fn is_prefix_handle(key: &[u8]) -> bool {
    key.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"0.NA/"))
}

impl ChangeStamps {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The record under `key` was written (created, changed or deleted).
    pub fn written(&self, key: &[u8]) {
        let t = self.tick();
        if is_prefix_handle(key) {
            self.structure.store(t, Ordering::Release);
        } else {
            self.slots[slot_of(key)].store(t, Ordering::Release);
        }
    }

    /// Something that may change answers for any handle changed.
    pub fn structure_changed(&self) {
        let t = self.tick();
        self.structure.store(t, Ordering::Release);
    }

    /// The stamp an answer for `handle` (as written in a request; case does not matter)
    /// depends on. Take it before reading the record.
    pub fn of(&self, handle: &[u8]) -> u64 {
        let slot = self.slots[slot_of(handle)].load(Ordering::Acquire);
        slot.max(self.structure.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_moves_only_its_own_handle_and_prefix_writes_move_all() {
        let s = ChangeStamps::default();
        let (a, b) = (s.of(b"88.100/A"), s.of(b"88.100/B"));
        s.written(b"88.100/A");
        assert_ne!(s.of(b"88.100/A"), a);
        // Case folded: the client's spelling and the normalized key share the slot.
        assert_eq!(s.of(b"88.100/a"), s.of(b"88.100/A"));
        if slot_of(b"88.100/A") != slot_of(b"88.100/B") {
            assert_eq!(s.of(b"88.100/B"), b);
        }
        let before = s.of(b"88.100/B");
        s.written(b"0.NA/88.100");
        assert_ne!(s.of(b"88.100/B"), before);
        let before = s.of(b"88.200/C");
        s.structure_changed();
        assert_ne!(s.of(b"88.200/C"), before);
    }

    #[test]
    fn stamps_never_come_back() {
        // Whatever happens, a stamp taken earlier is never equal to a later one after a
        // write to that handle (clock values are never reused).
        let s = ChangeStamps::default();
        let mut seen = Vec::new();
        for i in 0..100u32 {
            let key = format!("88.1/{}", i % 7);
            seen.push(s.of(key.as_bytes()));
            s.written(key.as_bytes());
            assert!(s.of(key.as_bytes()) > *seen.last().unwrap_or(&0));
        }
    }
}
