//! An arena: values stored by small integer id, with freed ids reused.
//!
//! The kernel keeps each kind of object in one, so a capability can name an
//! object by id and look it up in constant time.

use alloc::vec::Vec;

/// Values of type `T` by `u32` id.
pub struct Arena<T> {
    entries: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Arena<T> {
    /// An empty arena.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `value` and returns its id: a freed id if there is one, else
    /// the next new one. `None` when the ids (u32) are used up.
    pub fn insert(&mut self, value: T) -> Option<u32> {
        match self.free.pop() {
            Some(id) => {
                if let Some(entry) = self.entries.get_mut(id as usize) {
                    *entry = Some(value);
                }
                Some(id)
            }
            None => {
                let id = u32::try_from(self.entries.len()).ok()?;
                self.entries.push(Some(value));
                Some(id)
            }
        }
    }

    /// The value with `id`.
    pub fn get(&self, id: u32) -> Option<&T> {
        self.entries.get(id as usize)?.as_ref()
    }

    /// The value with `id`, to change.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.entries.get_mut(id as usize)?.as_mut()
    }

    /// Takes the value out and frees its id.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.entries.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(value)
    }

    /// Every stored value with its id.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(id, entry)| Some((id as u32, entry.as_ref()?)))
    }

    /// Every stored value with its id, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(|(id, entry)| Some((id as u32, entry.as_mut()?)))
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_reuse() {
        let mut arena = Arena::new();
        let a = arena.insert("a").unwrap();
        let b = arena.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(arena.get(a), Some(&"a"));
        assert_eq!(arena.remove(a), Some("a"));
        assert_eq!(arena.get(a), None);
        assert_eq!(arena.remove(a), None, "a second remove finds nothing and frees nothing");
        assert_eq!(arena.len(), 1);
        let c = arena.insert("c").unwrap();
        assert_eq!(c, a, "freed ids are reused");
        assert_eq!(arena.insert("d"), Some(2));
        assert_eq!(arena.len(), 3);
    }

    #[test]
    fn unknown_ids_find_nothing() {
        let mut arena: Arena<u8> = Arena::new();
        assert!(arena.is_empty());
        assert_eq!(arena.get(0), None);
        assert_eq!(arena.get_mut(u32::MAX), None);
        assert_eq!(arena.remove(7), None);
    }

    #[test]
    fn iteration_skips_holes() {
        let mut arena = Arena::new();
        for value in 0..5 {
            arena.insert(value).unwrap();
        }
        arena.remove(1);
        arena.remove(3);
        let seen: Vec<(u32, i32)> = arena.iter().map(|(id, value)| (id, *value)).collect();
        assert_eq!(seen, [(0, 0), (2, 2), (4, 4)]);
        for (_, value) in arena.iter_mut() {
            *value *= 10;
        }
        assert_eq!(arena.get(4), Some(&40));
    }
}
