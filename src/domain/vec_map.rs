//! [`VecMap`]: an ordered map that keeps its entries in one sorted vector while it is small
//! and moves them into a [`BTreeMap`] once it grows past [`VecMap::LARGE`] entries.
//!
//! A `BTreeMap` allocates a whole node (room for eleven entries) for its first entry, so a
//! SKU's maps of one or two locations, a handful of order lines or no purchase orders at
//! all cost far more than their entries. A sorted vector costs its entries plus at most a
//! quarter of spare room, and looks keys up by binary search. Past `LARGE` entries an
//! insert into the middle would move too much memory, so the map becomes a B-tree (and
//! goes back to a vector once it shrinks below half of that).
//!
//! It offers the part of the `BTreeMap` interface the state machine and its callers use,
//! iterates in key order like it, and (de)serialises as a map, so the JSON of a state is
//! the same as with a `BTreeMap`.
//!
//! May depend on: nothing else in the crate.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;
use std::borrow::Borrow;
use std::collections::{BTreeMap, btree_map};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Index;

/// An ordered map: a sorted vector while small, a [`BTreeMap`] when large (see the module docs).
#[derive(Clone)]
pub struct VecMap<K, V> {
    repr: Repr<K, V>,
}

#[derive(Clone)]
enum Repr<K, V> {
    Small(Vec<(K, V)>),
    // Boxed, so the map is as small as a vector (24 bytes) inline; the extra allocation
    // only exists for large maps.
    #[allow(clippy::box_collection)]
    Large(Box<BTreeMap<K, V>>),
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> VecMap<K, V> {
    /// Entries beyond which the map is kept as a B-tree.
    pub const LARGE: usize = 128;

    /// An empty map; allocates nothing.
    pub const fn new() -> Self {
        Self {
            repr: Repr::Small(Vec::new()),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(entries) => entries.len(),
            Repr::Large(tree) => tree.len(),
        }
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        match &self.repr {
            Repr::Small(entries) => Iter::Small(entries.iter()),
            Repr::Large(tree) => Iter::Large(tree.iter()),
        }
    }

    /// The entries in key order, values mutable.
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        match &mut self.repr {
            Repr::Small(entries) => IterMut::Small(entries.iter_mut()),
            Repr::Large(tree) => IterMut::Large(tree.iter_mut()),
        }
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// The values in key order, mutable.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + '_ {
        self.iter_mut().map(|(_, value)| value)
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// The value under `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Lookup<K> + ?Sized,
        K: Borrow<Q::Key>,
    {
        let key = key.key();
        match &self.repr {
            Repr::Small(entries) => find(entries, key).ok().map(|index| &entries[index].1),
            Repr::Large(tree) => tree.get(key),
        }
    }

    /// The value under `key`, mutable, if any.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        Q: Lookup<K> + ?Sized,
        K: Borrow<Q::Key>,
    {
        let key = key.key();
        match &mut self.repr {
            Repr::Small(entries) => match find(entries, key) {
                Ok(index) => Some(&mut entries[index].1),
                Err(_) => None,
            },
            Repr::Large(tree) => tree.get_mut(key),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Lookup<K> + ?Sized,
        K: Borrow<Q::Key>,
    {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.grow_if_large();
        match &mut self.repr {
            Repr::Small(entries) => match find(entries, &key) {
                Ok(index) => Some(std::mem::replace(&mut entries[index].1, value)),
                Err(index) => {
                    insert_at(entries, index, (key, value));
                    None
                }
            },
            Repr::Large(tree) => tree.insert(key, value),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Lookup<K> + ?Sized,
        K: Borrow<Q::Key>,
    {
        let key = key.key();
        let removed = match &mut self.repr {
            Repr::Small(entries) => {
                let index = find(entries, key).ok()?;
                let (_, value) = entries.remove(index);
                shrink(entries);
                Some(value)
            }
            Repr::Large(tree) => tree.remove(key),
        };
        self.shrink_if_small();
        removed
    }

    /// The place of `key` in the map, to read, insert or change its value in place.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        Entry { map: self, key }
    }

    /// The value under `key`, inserting `make()` first when there is none. Clones nothing
    /// unless the key is new (unlike `entry(key.clone())`).
    pub fn get_or_insert_with<Q>(&mut self, key: &Q, make: impl FnOnce() -> (K, V)) -> &mut V
    where
        Q: Lookup<K> + ?Sized,
        K: Borrow<Q::Key>,
    {
        let key = key.key();
        self.grow_if_large();
        match &mut self.repr {
            Repr::Small(entries) => {
                let index = match find(entries, key) {
                    Ok(index) => index,
                    Err(index) => {
                        insert_at(entries, index, make());
                        index
                    }
                };
                &mut entries[index].1
            }
            Repr::Large(tree) => {
                if !tree.contains_key(key) {
                    let (new_key, value) = make();
                    tree.insert(new_key, value);
                }
                tree.get_mut(key).expect("present or just inserted")
            }
        }
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        match &mut self.repr {
            Repr::Small(entries) => {
                entries.retain_mut(|(key, value)| keep(key, value));
                shrink(entries);
            }
            Repr::Large(tree) => tree.retain(|key, value| keep(key, value)),
        }
        self.shrink_if_small();
    }

    /// Before an insert: moves a vector of `LARGE` entries into a B-tree.
    fn grow_if_large(&mut self) {
        if let Repr::Small(entries) = &mut self.repr
            && entries.len() >= Self::LARGE
        {
            self.repr = Repr::Large(Box::new(std::mem::take(entries).into_iter().collect()));
        }
    }

    /// Moves a B-tree that shrank below half of `LARGE` entries back into a vector.
    fn shrink_if_small(&mut self) {
        if let Repr::Large(tree) = &mut self.repr
            && tree.len() < Self::LARGE / 2
        {
            let entries: Vec<(K, V)> = std::mem::take(&mut **tree).into_iter().collect();
            self.repr = Repr::Small(entries);
        }
    }
}

/// What a [`VecMap`] with keys `K` can be looked up by: the key type itself, and for string
/// keys any string (`str`, `String`, `SmolStr`), so callers holding a `String` need not
/// convert it.
pub trait Lookup<K> {
    /// The form compared with the keys (`K` borrows as it).
    type Key: Ord + ?Sized;

    /// This value in that form.
    fn key(&self) -> &Self::Key;
}

impl<K: Ord> Lookup<K> for K {
    type Key = K;

    fn key(&self) -> &K {
        self
    }
}

impl Lookup<SmolStr> for str {
    type Key = str;

    fn key(&self) -> &str {
        self
    }
}

impl Lookup<SmolStr> for String {
    type Key = str;

    fn key(&self) -> &str {
        self
    }
}

impl Lookup<String> for str {
    type Key = str;

    fn key(&self) -> &str {
        self
    }
}

/// The index of `key` in sorted `entries`, or where it would be inserted.
fn find<K: Borrow<Q>, Q: Ord + ?Sized, V>(entries: &[(K, V)], key: &Q) -> Result<usize, usize> {
    entries.binary_search_by(|(probe, _)| probe.borrow().cmp(key))
}

/// Inserts at `index`, growing by a quarter (at least one entry) when full, so spare room
/// stays small.
fn insert_at<T>(entries: &mut Vec<T>, index: usize, entry: T) {
    if entries.len() == entries.capacity() {
        entries.reserve_exact((entries.len() / 4).max(1));
    }
    entries.insert(index, entry);
}

/// Gives back room once less than half of it is used.
fn shrink<T>(entries: &mut Vec<T>) {
    if entries.capacity() > 4 && entries.len() <= entries.capacity() / 2 {
        entries.shrink_to(entries.len() + entries.len() / 4);
    }
}

/// A place in a [`VecMap`], from [`VecMap::entry`].
pub struct Entry<'a, K, V> {
    map: &'a mut VecMap<K, V>,
    key: K,
}

impl<'a, K: Ord, V> Entry<'a, K, V> {
    /// The value, inserting `V::default()` first when there is none.
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// The value, inserting `value` first when there is none.
    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    /// The value, inserting `make()` first when there is none.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        let Entry { map, key } = self;
        map.grow_if_large();
        match &mut map.repr {
            Repr::Small(entries) => {
                let index = match find(entries, &key) {
                    Ok(index) => index,
                    Err(index) => {
                        insert_at(entries, index, (key, make()));
                        index
                    }
                };
                &mut entries[index].1
            }
            Repr::Large(tree) => tree.entry(key).or_insert_with(make),
        }
    }
}

/// Iterator over the entries of a [`VecMap`] in key order.
pub enum Iter<'a, K, V> {
    /// Over a vector.
    Small(std::slice::Iter<'a, (K, V)>),
    /// Over a B-tree.
    Large(btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(entries) => entries.next().map(|(key, value)| (key, value)),
            Iter::Large(entries) => entries.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(entries) => entries.size_hint(),
            Iter::Large(entries) => entries.size_hint(),
        }
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(entries) => entries.next_back().map(|(key, value)| (key, value)),
            Iter::Large(entries) => entries.next_back(),
        }
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

/// Iterator over the entries of a [`VecMap`] in key order, values mutable.
pub enum IterMut<'a, K, V> {
    /// Over a vector.
    Small(std::slice::IterMut<'a, (K, V)>),
    /// Over a B-tree.
    Large(btree_map::IterMut<'a, K, V>),
}

impl<'a, K, V> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IterMut::Small(entries) => entries.next().map(|(key, value)| (&*key, value)),
            IterMut::Large(entries) => entries.next(),
        }
    }
}

impl<K, V> DoubleEndedIterator for IterMut<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            IterMut::Small(entries) => entries.next_back().map(|(key, value)| (&*key, value)),
            IterMut::Large(entries) => entries.next_back(),
        }
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, K, V> IntoIterator for &'a mut VecMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<K: Ord, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        match self.repr {
            Repr::Small(entries) => entries.into_iter(),
            Repr::Large(tree) => (*tree).into_iter().collect::<Vec<_>>().into_iter(),
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        map.extend(iter);
        map
    }
}

impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for VecMap<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K, Q, V> Index<&Q> for VecMap<K, V>
where
    K: Ord,
    Q: Lookup<K> + ?Sized,
    K: Borrow<Q::Key>,
{
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for VecMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Eq, V: Eq> Eq for VecMap<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for VecMap<K, V>
where
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<K, V>(PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
where
    K: Ord + Deserialize<'de>,
    V: Deserialize<'de>,
{
    type Value = VecMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        // Stored maps are written in key order, so this appends; a later duplicate key
        // replaces the earlier value, as with a `BTreeMap`.
        let mut entries: Vec<(K, V)> = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
        let mut sorted = true;
        while let Some((key, value)) = access.next_entry::<K, V>()? {
            sorted &= entries.last().is_none_or(|(last, _)| *last < key);
            entries.push((key, value));
        }
        if sorted && entries.len() <= VecMap::<K, V>::LARGE {
            entries.shrink_to_fit();
            return Ok(VecMap {
                repr: Repr::Small(entries),
            });
        }
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_in_order_and_behaves_like_a_btree_map() {
        let mut map = VecMap::new();
        let mut model = BTreeMap::new();
        // Enough keys to become a B-tree and back again.
        let keys: Vec<u32> = (0..300).map(|n| (n * 7919) % 1009).collect();
        for (n, key) in keys.iter().enumerate() {
            assert_eq!(map.insert(*key, n), model.insert(*key, n));
            assert_eq!(map.len(), model.len());
        }
        assert!(map.iter().eq(model.iter()));
        for key in keys.iter().step_by(2) {
            assert_eq!(map.remove(key), model.remove(key));
        }
        for key in &keys {
            assert_eq!(map.get(key), model.get(key));
            *map.entry(*key).or_default() += 1;
            *model.entry(*key).or_default() += 1;
        }
        assert!(map.iter().eq(model.iter()));
        for key in keys.iter().take(250) {
            assert_eq!(map.remove(key), model.remove(key));
        }
        map.retain(|key, _| key % 3 != 0);
        model.retain(|key, _| key % 3 != 0);
        assert!(
            matches!(map.repr, Repr::Small(_)),
            "shrunk back to a vector"
        );
        assert!(map.iter().eq(model.iter()));
        assert!(map.keys().rev().eq(model.keys().rev()));
    }

    #[test]
    fn is_as_small_as_a_vector() {
        assert_eq!(
            std::mem::size_of::<VecMap<String, u64>>(),
            std::mem::size_of::<Vec<(String, u64)>>()
        );
    }

    #[test]
    fn get_or_insert_with_inserts_once() {
        let mut map: VecMap<String, u32> = VecMap::new();
        *map.get_or_insert_with("a", || ("a".to_owned(), 0)) += 1;
        *map.get_or_insert_with("a", || unreachable!("present")) += 1;
        assert_eq!(map["a"], 2);
        for n in 0..200 {
            let key = format!("k{n:03}");
            *map.get_or_insert_with(key.as_str(), || (key.clone(), n)) += 1;
        }
        assert_eq!(map.len(), 201);
        assert_eq!(map["k150"], 151);
    }

    #[test]
    fn serialises_as_a_json_map_like_a_btree_map() {
        let model: BTreeMap<String, u32> = [("b".to_owned(), 2), ("a".to_owned(), 1)].into();
        let map: VecMap<String, u32> = model.clone().into_iter().collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, serde_json::to_string(&model).unwrap());
        assert_eq!(
            serde_json::from_str::<VecMap<String, u32>>(&json).unwrap(),
            map
        );
        // Out of order and duplicate keys read as a BTreeMap would.
        let unsorted: VecMap<String, u32> = serde_json::from_str(r#"{"b":2,"a":1,"b":3}"#).unwrap();
        assert_eq!(
            unsorted.iter().collect::<Vec<_>>(),
            vec![(&"a".to_owned(), &1), (&"b".to_owned(), &3)]
        );
    }
}
