//! A small in-container cache whose entries live a bounded time (the seed's L1 cache), for
//! values where a stale read cannot break an invariant: every write is still guarded by its
//! transaction's conditions. Bounded in size; a full cache starts over.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

pub struct TtlCache<K, V> {
    ttl_seconds: i64,
    max_entries: usize,
    entries: Mutex<HashMap<K, (i64, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl_seconds: i64, max_entries: usize) -> Self {
        Self {
            ttl_seconds,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (i64, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value stored for `key` less than the lifetime ago (`now` in epoch seconds).
    pub fn get(&self, key: &K, now: i64) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| now - *at < self.ttl_seconds)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V, now: i64) {
        let mut entries = self.lock();
        if entries.len() >= self.max_entries {
            entries.clear();
        }
        entries.insert(key, (now, value));
    }

    /// Drops `key` (this container changed it).
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_are_forgotten_and_stay_bounded() {
        // GIVEN a cache whose entries live 30 s, at most 2 of them
        let c = TtlCache::new(30, 2);
        c.put("a", 1, 100);
        // THEN an entry is served within its lifetime, not after it
        assert_eq!(c.get(&"a", 129), Some(1));
        assert_eq!(c.get(&"a", 130), None);
        // AND a forgotten entry is gone at once
        c.put("a", 2, 200);
        c.forget(&"a");
        assert_eq!(c.get(&"a", 200), None);
        // AND a full cache starts over rather than growing
        c.put("a", 1, 300);
        c.put("b", 2, 300);
        c.put("c", 3, 300);
        assert_eq!((c.get(&"a", 300), c.get(&"c", 300)), (None, Some(3)));
    }
}
