//! Poison-tolerant locking of std's `Mutex` and `RwLock`, written once.
//!
//! A lock is poisoned when a thread panics while holding it. Everywhere idnode holds a std
//! lock, the data under it stays usable after such a panic (each call site says why: tables
//! whose entries are whole, counters, caches, sled's atomic transactions), so a poisoned lock
//! is taken over rather than turning one panic into a panic of every later request.
//!
//! A leaf utility, like [`crate::audit`] and [`crate::net`]: std only, usable from every
//! layer (`model` up to `cli`), importing nothing of the crate.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Lock `mutex`, taking it over if a panicking thread poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-lock `lock`, taking it over if a panicking thread poisoned it.
pub fn read<T: ?Sized>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-lock `lock`, taking it over if a panicking thread poisoned it.
pub fn write<T: ?Sized>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, RwLock};

    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_data() {
        let mutex = Mutex::new(1);
        let rw = RwLock::new(2);
        let _ = std::panic::catch_unwind(|| {
            let _m = mutex.lock().unwrap();
            let _w = rw.write().unwrap();
            panic!("poison both");
        });
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *lock(&mutex) += 10;
        assert_eq!(*lock(&mutex), 11);
        *write(&rw) += 20;
        assert_eq!(*read(&rw), 22);
    }
}
