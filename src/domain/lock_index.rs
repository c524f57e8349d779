//! An index of a lock table by the resources' leading literal segments, so that finding the
//! locks that could conflict with a resource does not compare it with every lock.
//!
//! A resource's *literal prefix* is its path segments before the first one that is a glob
//! (contains `*`, `?` or `[`; `**` is one). `/src/auth/jwt.ts` is all literal, `/src/auth/` is
//! `src/auth`, `/src/**/*.ts` is `src`, `/*.ts` and `/` are empty.
//!
//! Why that is enough: two resources whose paths overlap have literal prefixes that agree on
//! their common length (one is a prefix of the other). `lock::overlap` walks both segment lists
//! from (0, 0); at a position (k, k) where both lists still have a literal segment, no arm but
//! the last applies (neither is `**`, neither list has ended), and `segment_overlap` of two
//! literals is plain equality, so the only way on is (k + 1, k + 1), and only when the two
//! segments are equal. Every accepting walk therefore passes (0, 0), (1, 1), … up to the
//! shorter literal prefix, with equal segments all along. A symbol only narrows a conflict
//! (`conflicts_with` requires overlapping paths first), so it plays no part here.
//!
//! So the locks that can conflict with a resource whose literal prefix is P are those stored
//! on the path from the root of a trie over literal prefixes down to P (their prefix is a
//! prefix of P) and those anywhere below P (P is a prefix of theirs). Everything else is ruled
//! out without a single comparison: a probe under another top directory meets none of them.

use std::collections::{BTreeSet, HashMap};

use super::lock::Resource;
use super::lock_table::LockKey;

/// One node of the trie: the locks whose literal prefix ends here, and the longer ones below.
#[derive(Debug, Clone, Default)]
struct Node {
    here: BTreeSet<LockKey>,
    children: HashMap<String, Node>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.children.is_empty()
    }

    fn collect(&self, into: &mut Vec<LockKey>) {
        into.extend(self.here.iter().copied());
        for child in self.children.values() {
            child.collect(into);
        }
    }

    /// Removes `key` from the node at `path` below this one; prunes the nodes it leaves empty
    /// (so the trie never outgrows the locks it indexes).
    fn remove(&mut self, path: &[String], key: LockKey) {
        match path.split_first() {
            None => {
                self.here.remove(&key);
            }
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest, key);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }
}

/// Lock keys by the literal prefix of their resource.
#[derive(Debug, Clone, Default)]
pub(super) struct LockIndex {
    root: Node,
}

impl LockIndex {
    pub(super) fn insert(&mut self, key: LockKey, resource: &Resource) {
        let mut node = &mut self.root;
        for segment in resource.literal_prefix() {
            node = node.children.entry(segment.clone()).or_default();
        }
        node.here.insert(key);
    }

    /// Forgets `key`, indexed under `resource` (the resource it was inserted with).
    pub(super) fn remove(&mut self, key: LockKey, resource: &Resource) {
        self.root.remove(resource.literal_prefix(), key);
    }

    /// Every lock whose resource could overlap `probe` (and some that do not), in key order,
    /// i.e. request order. A superset: the caller still decides with `conflicts_with`.
    pub(super) fn candidates(&self, probe: &Resource) -> Vec<LockKey> {
        let mut found = Vec::new();
        let mut node = &self.root;
        let mut reached = true;
        for segment in probe.literal_prefix() {
            found.extend(node.here.iter().copied());
            match node.children.get(segment.as_str()) {
                Some(child) => node = child,
                None => {
                    reached = false;
                    break;
                }
            }
        }
        if reached {
            node.collect(&mut found);
        }
        found.sort_unstable();
        found
    }

    /// Every indexed key, in key order (for tests: the index against the table it indexes).
    #[cfg(test)]
    pub(super) fn all(&self) -> Vec<LockKey> {
        let mut found = Vec::new();
        self.root.collect(&mut found);
        found.sort_unstable();
        found
    }
}
