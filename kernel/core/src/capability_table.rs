//! The capability table: every process's capabilities, and the derivation
//! tree that lets `revoke` take back everything handed out from one of them.
//!
//! All capabilities of all processes live in one [`CapabilityTable`]. A CSpace
//! is one process's array of slots. Every capability records the capability
//! it was derived from, so [`CapabilityTable::revoke`] deletes its
//! descendants in every CSpace: the supervisor tears a driver down this way
//! (seL4's mapping database plays the same part).
//!
//! Capabilities are nodes in an arena, linked into the tree by arena index
//! (parent, first child, siblings), so moving a capability to another slot
//! rewrites its slot and leaves the tree alone. Deleting one hands its
//! children to its parent, so a later revoke of an ancestor still reaches
//! them. Nothing recurses: the tree can be as deep as there are capabilities.
//!
//! Slot 0 of every CSpace is the null slot. It never holds a capability: a
//! slot that must hold one reports it as [`CapabilityError::EmptySlot`], a
//! slot that is to be filled refuses it with [`CapabilityError::NullSlot`].
//!
//! The table allocates from the kernel heap: a CSpace's slots when it is
//! created, and one arena node per capability, reused once freed, so the
//! arena never outgrows the slots ever alive at once.
//!
//! Every operation checks all of its arguments before it changes anything,
//! and an error leaves the table as it was. No argument can make an
//! operation panic; only a broken internal link, a bug in this module,
//! would.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Identifies a CSpace in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CSpaceId(pub u32);

/// A slot: which CSpace, which index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRef {
    /// The CSpace holding the slot.
    pub cspace: CSpaceId,
    /// The slot's index in that CSpace; 0 is the null slot.
    pub index: u32,
}

impl SlotRef {
    /// Slot `index` of `cspace`.
    pub const fn new(cspace: CSpaceId, index: u32) -> Self {
        Self { cspace, index }
    }
}

/// A capability: an object reference plus rights and badge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability<O> {
    /// The object the capability refers to.
    pub object: O,
    /// Raw rights bits; the kernel gives them meaning.
    pub rights: u32,
    /// Tells the object's server which client this capability was minted
    /// for; 0 means unbadged.
    pub badge: u64,
}

/// Why the table refused an operation. The table is unchanged.
///
/// Mint asking for rights the source lacks is not an error: the rights are
/// masked, so minting can only take rights away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// The CSpace does not exist (never created, or destroyed).
    NoSuchCSpace,
    /// The index is beyond the CSpace's slots.
    SlotOutOfRange {
        /// The index asked for.
        index: u32,
    },
    /// A capability was to be put in the null slot (index 0).
    NullSlot,
    /// A slot that must hold a capability is empty (or is the null slot).
    EmptySlot {
        /// The index of the empty slot.
        index: u32,
    },
    /// A slot that must be empty holds a capability.
    SlotOccupied {
        /// The index of the occupied slot.
        index: u32,
    },
    /// Mint was to badge a capability whose badge is already set.
    BadgeAlreadySet,
    /// Source and destination are the same slot.
    SameSlot,
}

/// An index into the node arena.
type NodeIndex = usize;

/// One capability and its place in the derivation tree.
struct Node<O> {
    capability: Capability<O>,
    /// Where the capability sits; the slot points back at this node.
    slot: SlotRef,
    /// The capability this one was derived from; `None` for an original.
    parent: Option<NodeIndex>,
    first_child: Option<NodeIndex>,
    /// Siblings form a doubly linked list, so a node unlinks in O(1).
    /// Originals have no siblings: nothing needs to list them.
    next_sibling: Option<NodeIndex>,
    prev_sibling: Option<NodeIndex>,
}

/// All capabilities of all CSpaces, with their derivation tree.
///
/// `O` names an object. Complexities below use C for the number of
/// CSpaces and K for the number of distinct objects; each slot lookup
/// costs O(log C) and each reference-count update O(log K).
pub struct CapabilityTable<O> {
    /// Every capability; `None` marks a node on the free list.
    nodes: Vec<Option<Node<O>>>,
    free_nodes: Vec<NodeIndex>,
    cspaces: BTreeMap<CSpaceId, Vec<Option<NodeIndex>>>,
    /// The id the next CSpace gets, unless it is still taken after wrapping.
    next_cspace: u32,
    /// How many capabilities refer to each object; no zero entries.
    reference_counts: BTreeMap<O, usize>,
    /// For each CSpace being emptied in steps, where the next step starts
    /// looking: a hint that spares each step the slots earlier steps
    /// emptied. Correctness never depends on it (see [`Self::empty_step`]).
    emptied_up_to: BTreeMap<CSpaceId, u32>,
}

/// What one [`CapabilityTable::empty_step`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Step<O> {
    /// How many slots it emptied: 0 when fewer than a step's worth were
    /// left, which it then left alone.
    pub emptied: usize,
    /// The objects whose last capability went.
    pub released: Vec<O>,
}

impl<O> CapabilityTable<O> {
    /// An empty table, with no CSpaces.
    pub const fn new() -> Self {
        Self {
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            cspaces: BTreeMap::new(),
            next_cspace: 0,
            reference_counts: BTreeMap::new(),
            emptied_up_to: BTreeMap::new(),
        }
    }
}

impl<O> Default for CapabilityTable<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Clone + Ord> CapabilityTable<O> {
    /// A new CSpace with `slots` slots, slot 0 (the null slot) among them.
    /// Returns its id.
    ///
    /// Ids count up and are not reused until the counter wraps after 2^32
    /// CSpaces, so a stale id finds [`CapabilityError::NoSuchCSpace`]
    /// rather than someone else's CSpace.
    ///
    /// O(slots + log C).
    pub fn create_cspace(&mut self, slots: u32) -> CSpaceId {
        let mut id = CSpaceId(self.next_cspace);
        // Ends: there cannot be 2^32 CSpaces in memory.
        while self.cspaces.contains_key(&id) {
            id = CSpaceId(id.0.wrapping_add(1));
        }
        self.next_cspace = id.0.wrapping_add(1);
        self.cspaces.insert(id, vec![None; slots as usize]);
        id
    }

    /// Deletes every capability in the CSpace (as [`Self::delete`] does:
    /// their children, in other CSpaces too, move up to their parents) and
    /// the CSpace itself. Returns the objects whose last capability went.
    ///
    /// O(slots + c · (log C + log K) + children), for c capabilities in
    /// the CSpace.
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`].
    pub fn destroy_cspace(&mut self, cspace: CSpaceId) -> Result<Vec<O>, CapabilityError> {
        let slots = self.cspaces.remove(&cspace).ok_or(CapabilityError::NoSuchCSpace)?;
        self.emptied_up_to.remove(&cspace);
        // The slots went with the CSpace, so only the nodes are left to go.
        Ok(slots
            .into_iter()
            .flatten()
            .filter_map(|node| self.destroy_node(node))
            .collect())
    }

    /// Number of slots in the CSpace, the null slot included.
    ///
    /// O(log C).
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`].
    pub fn slot_count(&self, cspace: CSpaceId) -> Result<u32, CapabilityError> {
        let slots = self.cspaces.get(&cspace).ok_or(CapabilityError::NoSuchCSpace)?;
        // Made from a u32 in `create_cspace`, so it fits.
        Ok(slots.len() as u32)
    }

    /// The capability in a slot.
    ///
    /// O(log C).
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`], [`CapabilityError::SlotOutOfRange`],
    /// [`CapabilityError::EmptySlot`] (also for the null slot).
    pub fn get(&self, slot: SlotRef) -> Result<&Capability<O>, CapabilityError> {
        let node = self.occupied_slot(slot)?;
        Ok(&self.node(node).capability)
    }

    /// Puts an original capability (no parent) in an empty slot: used when
    /// the kernel creates an object.
    ///
    /// O(log C + log K), amortised.
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`], [`CapabilityError::NullSlot`],
    /// [`CapabilityError::SlotOutOfRange`], [`CapabilityError::SlotOccupied`].
    pub fn insert_original(&mut self, slot: SlotRef, capability: Capability<O>) -> Result<(), CapabilityError> {
        self.empty_slot(slot)?;
        self.place(slot, capability, None);
        Ok(())
    }

    /// Puts a new capability in an empty slot as a child of the capability
    /// in `parent`: used when the kernel makes an object out of another
    /// (memory retyped from an untyped capability), so that revoking the
    /// parent deletes the new capability too and hands its object back.
    ///
    /// O(log C + log K), amortised.
    ///
    /// # Errors
    /// For `parent`: [`CapabilityError::NoSuchCSpace`],
    /// [`CapabilityError::SlotOutOfRange`], [`CapabilityError::EmptySlot`];
    /// then [`CapabilityError::SameSlot`]; then for `destination`:
    /// [`CapabilityError::NoSuchCSpace`], [`CapabilityError::NullSlot`],
    /// [`CapabilityError::SlotOutOfRange`], [`CapabilityError::SlotOccupied`].
    pub fn insert_child(
        &mut self,
        parent: SlotRef,
        destination: SlotRef,
        capability: Capability<O>,
    ) -> Result<(), CapabilityError> {
        let parent_node = self.occupied_slot(parent)?;
        self.check_destination(parent, destination)?;
        self.place(destination, capability, Some(parent_node));
        Ok(())
    }

    /// Copies the capability in `source` into the empty `destination`, as a
    /// child of `source`, with the same rights and badge.
    ///
    /// O(log C + log K), amortised.
    ///
    /// # Errors
    /// As [`Self::insert_child`].
    pub fn copy(&mut self, source: SlotRef, destination: SlotRef) -> Result<(), CapabilityError> {
        self.mint(source, destination, u32::MAX, None)
    }

    /// Like [`Self::copy`], but the new capability's rights are the
    /// source's `& rights_mask`, and `Some(badge)` sets its badge.
    ///
    /// O(log C + log K), amortised.
    ///
    /// # Errors
    /// As [`Self::insert_child`]; then [`CapabilityError::BadgeAlreadySet`]
    /// if `badge` is `Some` and the source's badge is not 0.
    pub fn mint(
        &mut self,
        source: SlotRef,
        destination: SlotRef,
        rights_mask: u32,
        badge: Option<u64>,
    ) -> Result<(), CapabilityError> {
        let parent = self.occupied_slot(source)?;
        self.check_destination(source, destination)?;
        let original = &self.node(parent).capability;
        let badge = match badge {
            None => original.badge,
            Some(_) if original.badge != 0 => return Err(CapabilityError::BadgeAlreadySet),
            Some(badge) => badge,
        };
        let capability = Capability {
            object: original.object.clone(),
            rights: original.rights & rights_mask,
            badge,
        };
        self.place(destination, capability, Some(parent));
        Ok(())
    }

    /// Moves a capability to an empty slot, keeping its place in the
    /// derivation tree: its parent and children stay linked to it.
    ///
    /// O(log C).
    ///
    /// # Errors
    /// As [`Self::insert_child`], with `source` for `parent`.
    pub fn move_capability(&mut self, source: SlotRef, destination: SlotRef) -> Result<(), CapabilityError> {
        let node = self.occupied_slot(source)?;
        self.check_destination(source, destination)?;
        *self.slot_mut(source) = None;
        *self.slot_mut(destination) = Some(node);
        self.node_mut(node).slot = destination;
        Ok(())
    }

    /// Deletes one capability. Its children move up to its parent (or
    /// become originals), so a later revoke of an ancestor still reaches
    /// them. Returns the object if this was its last capability: the kernel
    /// then destroys it.
    ///
    /// O(children + log C + log K).
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`], [`CapabilityError::SlotOutOfRange`],
    /// [`CapabilityError::EmptySlot`] (also for the null slot).
    pub fn delete(&mut self, slot: SlotRef) -> Result<Option<O>, CapabilityError> {
        let node = self.occupied_slot(slot)?;
        *self.slot_mut(slot) = None;
        Ok(self.destroy_node(node))
    }

    /// One step of emptying a large CSpace before it is destroyed, so that
    /// no single call does it all: deletes the capabilities in the lowest
    /// `count` occupied slots (never the one in slot `keep`; 0, the null
    /// slot, keeps none), as
    /// [`Self::delete`] does, if more than `count` are occupied from where
    /// the last step stopped. Otherwise empties nothing, and
    /// [`Self::destroy_cspace`] may finish the job: at most `count` from
    /// there on, plus any placed below since (the hint is only where to
    /// start looking).
    ///
    /// O(s + count · (log C + log K + children)) for the s slots looked
    /// at: those one step empties, and a step's worth beyond.
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`].
    pub fn empty_step(&mut self, cspace: CSpaceId, count: usize, keep: u32) -> Result<Step<O>, CapabilityError> {
        let slots = self.cspaces.get(&cspace).ok_or(CapabilityError::NoSuchCSpace)?;
        let start = self.emptied_up_to.get(&cspace).copied().unwrap_or(1);
        let occupied: Vec<u32> = (start..)
            .zip(slots.iter().skip(start as usize))
            .filter(|&(index, entry)| entry.is_some() && index != keep)
            .map(|(index, _)| index)
            .take(count + 1)
            .collect();
        let (Some(&next), Some(step)) = (occupied.get(count), occupied.get(..count)) else {
            return Ok(Step {
                emptied: 0,
                released: Vec::new(),
            });
        };
        let mut released = Vec::new();
        for &index in step {
            released.extend(self.delete(SlotRef { cspace, index })?);
        }
        self.emptied_up_to.insert(cspace, next);
        Ok(Step {
            emptied: step.len(),
            released,
        })
    }

    /// Deletes every capability derived from the one in `slot` (children,
    /// grandchildren, ... in any CSpace), but not that capability itself.
    /// Returns the objects whose last capability went: copies and mints
    /// share the revoked capability's object, which it keeps alive, so only
    /// objects made with [`Self::insert_child`] can be among them.
    ///
    /// Walks the subtree without recursion, deleting leaves on the way back
    /// up, so depth costs no stack: O(d · (log C + log K)) for d
    /// descendants.
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`], [`CapabilityError::SlotOutOfRange`],
    /// [`CapabilityError::EmptySlot`] (also for the null slot).
    pub fn revoke(&mut self, slot: SlotRef) -> Result<Vec<O>, CapabilityError> {
        let root = self.occupied_slot(slot)?;
        let mut released = Vec::new();
        let mut current = root;
        loop {
            if let Some(child) = self.node(current).first_child {
                current = child;
                continue;
            }
            if current == root {
                return Ok(released);
            }
            // A leaf below the root: it goes, and its parent may now be one.
            let node = self.node(current);
            let (parent, leaf_slot) = (node.parent, node.slot);
            *self.slot_mut(leaf_slot) = None;
            released.extend(self.destroy_node(current));
            // Every node below the root has a parent; the root is a safe
            // place to resume if that were ever broken.
            current = parent.unwrap_or(root);
        }
    }

    /// How many capabilities refer to `object`.
    ///
    /// O(log K).
    pub fn reference_count(&self, object: &O) -> usize {
        self.reference_counts.get(object).copied().unwrap_or(0)
    }

    /// The occupied slots of a CSpace in index order, as (index,
    /// capability), for teardown and debugging.
    ///
    /// O(log C), then O(slots) to run through.
    ///
    /// # Errors
    /// [`CapabilityError::NoSuchCSpace`].
    pub fn occupied(&self, cspace: CSpaceId) -> Result<impl Iterator<Item = (u32, &Capability<O>)>, CapabilityError> {
        let slots = self.cspaces.get(&cspace).ok_or(CapabilityError::NoSuchCSpace)?;
        Ok((0u32..)
            .zip(slots)
            .filter_map(|(index, entry)| entry.map(|node| (index, &self.node(node).capability))))
    }

    /// What a slot holds, if it exists and is not the null slot.
    fn slot_entry(&self, slot: SlotRef) -> Result<Option<NodeIndex>, CapabilityError> {
        let slots = self.cspaces.get(&slot.cspace).ok_or(CapabilityError::NoSuchCSpace)?;
        if slot.index == 0 {
            return Err(CapabilityError::NullSlot);
        }
        slots
            .get(slot.index as usize)
            .copied()
            .ok_or(CapabilityError::SlotOutOfRange { index: slot.index })
    }

    /// The node in a slot that must hold a capability.
    fn occupied_slot(&self, slot: SlotRef) -> Result<NodeIndex, CapabilityError> {
        match self.slot_entry(slot) {
            Ok(Some(node)) => Ok(node),
            // The null slot reads as empty, as it does in the ABI.
            Ok(None) | Err(CapabilityError::NullSlot) => Err(CapabilityError::EmptySlot { index: slot.index }),
            Err(error) => Err(error),
        }
    }

    /// Checks that a slot exists, is not the null slot, and is empty.
    fn empty_slot(&self, slot: SlotRef) -> Result<(), CapabilityError> {
        match self.slot_entry(slot)? {
            None => Ok(()),
            Some(_) => Err(CapabilityError::SlotOccupied { index: slot.index }),
        }
    }

    /// Checks the destination of an operation whose source is valid.
    fn check_destination(&self, source: SlotRef, destination: SlotRef) -> Result<(), CapabilityError> {
        // Checked first: the destination is occupied by the source itself,
        // and SameSlot says why.
        if source == destination {
            return Err(CapabilityError::SameSlot);
        }
        self.empty_slot(destination)
    }

    /// Puts a capability in a checked empty slot, under `parent` if any.
    #[expect(
        clippy::expect_used,
        reason = "the free list and the slots name only live nodes; a miss is a bug in this module"
    )]
    fn place(&mut self, slot: SlotRef, capability: Capability<O>, parent: Option<NodeIndex>) {
        match self.reference_counts.get_mut(&capability.object) {
            Some(count) => *count += 1,
            None => {
                self.reference_counts.insert(capability.object.clone(), 1);
            }
        }
        let node = Node {
            capability,
            slot,
            parent: None,
            first_child: None,
            next_sibling: None,
            prev_sibling: None,
        };
        let index = match self.free_nodes.pop() {
            Some(index) => {
                *self
                    .nodes
                    .get_mut(index)
                    .expect("capability table: free list names no node") = Some(node);
                index
            }
            None => {
                self.nodes.push(Some(node));
                self.nodes.len() - 1
            }
        };
        if let Some(parent) = parent {
            self.link_child(parent, index);
        }
        *self.slot_mut(slot) = Some(index);
    }

    /// Takes a node out of the tree and the arena; its children move up to
    /// its parent. Its slot must already be cleared. Returns its object if
    /// that was the last reference.
    #[expect(
        clippy::expect_used,
        reason = "the free list and the slots name only live nodes; a miss is a bug in this module"
    )]
    fn destroy_node(&mut self, index: NodeIndex) -> Option<O> {
        let parent = self.node(index).parent;
        while let Some(child) = self.node(index).first_child {
            self.unlink(child);
            if let Some(parent) = parent {
                self.link_child(parent, child);
            }
        }
        self.unlink(index);
        let node = self
            .nodes
            .get_mut(index)
            .and_then(Option::take)
            .expect("capability table: destroying a free node");
        self.free_nodes.push(index);
        let object = node.capability.object;
        match self.reference_counts.get_mut(&object) {
            Some(count) if *count > 1 => {
                *count -= 1;
                None
            }
            _ => {
                self.reference_counts.remove(&object);
                Some(object)
            }
        }
    }

    /// Makes `child`, a node with no parent, the first child of `parent`.
    fn link_child(&mut self, parent: NodeIndex, child: NodeIndex) {
        let next = self.node(parent).first_child;
        if let Some(next) = next {
            self.node_mut(next).prev_sibling = Some(child);
        }
        let node = self.node_mut(child);
        node.parent = Some(parent);
        node.prev_sibling = None;
        node.next_sibling = next;
        self.node_mut(parent).first_child = Some(child);
    }

    /// Takes a node out of its parent's list of children, leaving it an
    /// original; its own children stay with it.
    fn unlink(&mut self, index: NodeIndex) {
        let node = self.node_mut(index);
        let (parent, prev, next) = (node.parent.take(), node.prev_sibling.take(), node.next_sibling.take());
        match (prev, parent) {
            (Some(prev), _) => self.node_mut(prev).next_sibling = next,
            (None, Some(parent)) => self.node_mut(parent).first_child = next,
            (None, None) => {}
        }
        if let Some(next) = next {
            self.node_mut(next).prev_sibling = prev;
        }
    }

    fn node(&self, index: NodeIndex) -> &Node<O> {
        match self.nodes.get(index) {
            Some(Some(node)) => node,
            _ => unreachable!("capability table: link to free node {index}"),
        }
    }

    fn node_mut(&mut self, index: NodeIndex) -> &mut Node<O> {
        match self.nodes.get_mut(index) {
            Some(Some(node)) => node,
            _ => unreachable!("capability table: link to free node {index}"),
        }
    }

    /// A slot the caller has checked, or that a live node sits in.
    #[expect(
        clippy::expect_used,
        reason = "callers pass only slots they have just validated; a miss is a bug in this module"
    )]
    fn slot_mut(&mut self, slot: SlotRef) -> &mut Option<NodeIndex> {
        self.cspaces
            .get_mut(&slot.cspace)
            .and_then(|slots| slots.get_mut(slot.index as usize))
            .expect("capability table: slot vanished after its check")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::test_random::Random;
    use std::collections::{BTreeMap, BTreeSet};
    use std::vec;
    use std::vec::Vec;

    type Table = CapabilityTable<u32>;

    fn cap(object: u32, rights: u32, badge: u64) -> Capability<u32> {
        Capability { object, rights, badge }
    }

    fn slot(cspace: CSpaceId, index: u32) -> SlotRef {
        SlotRef::new(cspace, index)
    }

    /// The slot of the capability the one in `at` was derived from.
    fn parent_of(table: &Table, at: SlotRef) -> Option<SlotRef> {
        let node = table.occupied_slot(at).unwrap();
        table.node(node).parent.map(|parent| table.node(parent).slot)
    }

    /// An occupied slot: index, capability, and the slot of its parent.
    type SlotContents = (u32, Capability<u32>, Option<SlotRef>);

    /// Everything observable about the table, and its tree, to check that
    /// a refused operation changed nothing.
    #[derive(Debug, PartialEq)]
    struct Snapshot {
        cspaces: Vec<(CSpaceId, u32, Vec<SlotContents>)>,
        counts: BTreeMap<u32, usize>,
        next_cspace: u32,
    }

    fn snapshot(table: &Table) -> Snapshot {
        check_invariants(table);
        let cspaces = table
            .cspaces
            .keys()
            .map(|&id| {
                let occupied = table
                    .occupied(id)
                    .unwrap()
                    .map(|(index, capability)| (index, capability.clone(), parent_of(table, slot(id, index))))
                    .collect();
                (id, table.slot_count(id).unwrap(), occupied)
            })
            .collect();
        Snapshot {
            cspaces,
            counts: table.reference_counts.clone(),
            next_cspace: table.next_cspace,
        }
    }

    /// Checks every link of the arena, the slots and the counts.
    fn check_invariants(table: &Table) {
        let free: BTreeSet<NodeIndex> = table.free_nodes.iter().copied().collect();
        assert_eq!(free.len(), table.free_nodes.len(), "free list has duplicates");
        let mut counts = BTreeMap::new();
        for (index, node) in table.nodes.iter().enumerate() {
            let Some(node) = node else {
                assert!(free.contains(&index), "free node {index} not on the free list");
                continue;
            };
            assert!(!free.contains(&index), "live node {index} on the free list");
            *counts.entry(node.capability.object).or_insert(0) += 1;
            assert_eq!(table.cspaces[&node.slot.cspace][node.slot.index as usize], Some(index));
            assert_ne!(node.slot.index, 0);
            match node.parent {
                Some(parent) => {
                    let mut sibling = table.node(parent).first_child;
                    let mut found = false;
                    while let Some(at) = sibling {
                        found |= at == index;
                        sibling = table.node(at).next_sibling;
                    }
                    assert!(found, "node {index} missing from its parent's children");
                }
                None => assert!(node.prev_sibling.is_none() && node.next_sibling.is_none()),
            }
            let mut previous = None;
            let mut child = node.first_child;
            while let Some(at) = child {
                let child_node = table.node(at);
                assert_eq!(child_node.parent, Some(index));
                assert_eq!(child_node.prev_sibling, previous);
                previous = Some(at);
                child = child_node.next_sibling;
            }
        }
        assert_eq!(table.reference_counts, counts);
        let occupied: usize = table.cspaces.values().map(|slots| slots.iter().flatten().count()).sum();
        assert_eq!(occupied + free.len(), table.nodes.len());
        for slots in table.cspaces.values() {
            assert!(
                slots.first().is_none_or(Option::is_none),
                "null slot holds a capability"
            );
        }
    }

    /// A table with one CSpace of `slots` slots and an original capability
    /// to object 7 in slot 1.
    fn one_cspace(slots: u32) -> (Table, CSpaceId) {
        let mut table = Table::new();
        let cspace = table.create_cspace(slots);
        table.insert_original(slot(cspace, 1), cap(7, 0b1111, 0)).unwrap();
        (table, cspace)
    }

    #[test]
    fn insert_and_get() {
        let mut table = Table::default();
        let a = table.create_cspace(4);
        let b = table.create_cspace(2);
        assert_ne!(a, b);
        assert_eq!(table.slot_count(a), Ok(4));
        assert_eq!(table.slot_count(b), Ok(2));
        table.insert_original(slot(a, 3), cap(1, 5, 9)).unwrap();
        table.insert_original(slot(b, 1), cap(2, 6, 0)).unwrap();
        assert_eq!(table.get(slot(a, 3)), Ok(&cap(1, 5, 9)));
        assert_eq!(table.get(slot(b, 1)), Ok(&cap(2, 6, 0)));
        assert_eq!(table.get(slot(a, 1)), Err(CapabilityError::EmptySlot { index: 1 }));
        assert_eq!(parent_of(&table, slot(a, 3)), None);
        assert_eq!(table.reference_count(&1), 1);
        assert_eq!(table.reference_count(&3), 0);
        check_invariants(&table);
    }

    #[test]
    fn occupied_lists_slots_in_order() {
        let mut table = Table::new();
        let a = table.create_cspace(6);
        table.insert_original(slot(a, 4), cap(1, 1, 0)).unwrap();
        table.insert_original(slot(a, 2), cap(2, 2, 0)).unwrap();
        table.copy(slot(a, 4), slot(a, 5)).unwrap();
        let listed: Vec<(u32, Capability<u32>)> = table
            .occupied(a)
            .unwrap()
            .map(|(index, capability)| (index, capability.clone()))
            .collect();
        assert_eq!(listed, [(2, cap(2, 2, 0)), (4, cap(1, 1, 0)), (5, cap(1, 1, 0))]);
        let empty = table.create_cspace(0);
        assert_eq!(table.occupied(empty).unwrap().count(), 0);
    }

    #[test]
    fn cspace_ids_are_not_reused() {
        let mut table = Table::new();
        let a = table.create_cspace(2);
        table.destroy_cspace(a).unwrap();
        let b = table.create_cspace(2);
        assert_ne!(a, b);
        assert_eq!(table.slot_count(a), Err(CapabilityError::NoSuchCSpace));
        // After wrapping, a live id is skipped.
        table.next_cspace = b.0;
        let c = table.create_cspace(1);
        assert_eq!(c, CSpaceId(b.0 + 1));
        table.next_cspace = u32::MAX;
        assert_eq!(table.create_cspace(1), CSpaceId(u32::MAX));
        assert_eq!(table.create_cspace(1), CSpaceId(0));
        check_invariants(&table);
    }

    #[test]
    fn copy_makes_a_child_with_the_same_rights_and_badge() {
        let mut table = Table::new();
        let a = table.create_cspace(4);
        let b = table.create_cspace(4);
        table.insert_original(slot(a, 1), cap(7, 0b101, 42)).unwrap();
        table.copy(slot(a, 1), slot(b, 3)).unwrap();
        assert_eq!(table.get(slot(b, 3)), Ok(&cap(7, 0b101, 42)));
        assert_eq!(parent_of(&table, slot(b, 3)), Some(slot(a, 1)));
        assert_eq!(table.reference_count(&7), 2);
        check_invariants(&table);
    }

    #[test]
    fn mint_masks_rights_and_sets_the_badge() {
        let (mut table, a) = one_cspace(8);
        table.mint(slot(a, 1), slot(a, 2), 0b0101, None).unwrap();
        assert_eq!(table.get(slot(a, 2)), Ok(&cap(7, 0b0101, 0)));
        // Asking for more rights than the source has only gives what it has.
        table.mint(slot(a, 2), slot(a, 3), 0b1111_0011, Some(5)).unwrap();
        assert_eq!(table.get(slot(a, 3)), Ok(&cap(7, 0b0001, 5)));
        assert_eq!(parent_of(&table, slot(a, 3)), Some(slot(a, 2)));
        // Minting a badged capability without a badge keeps the badge.
        table.mint(slot(a, 3), slot(a, 4), u32::MAX, None).unwrap();
        assert_eq!(table.get(slot(a, 4)), Ok(&cap(7, 0b0001, 5)));
        assert_eq!(table.reference_count(&7), 4);
        check_invariants(&table);
    }

    #[test]
    fn mint_refuses_to_rebadge() {
        let (mut table, a) = one_cspace(8);
        table.mint(slot(a, 1), slot(a, 2), u32::MAX, Some(5)).unwrap();
        let before = snapshot(&table);
        assert_eq!(
            table.mint(slot(a, 2), slot(a, 3), u32::MAX, Some(6)),
            Err(CapabilityError::BadgeAlreadySet)
        );
        assert_eq!(
            table.mint(slot(a, 2), slot(a, 3), u32::MAX, Some(5)),
            Err(CapabilityError::BadgeAlreadySet)
        );
        assert_eq!(
            table.mint(slot(a, 2), slot(a, 3), u32::MAX, Some(0)),
            Err(CapabilityError::BadgeAlreadySet)
        );
        assert_eq!(snapshot(&table), before);
    }

    #[test]
    fn move_keeps_the_capability_and_its_derivation() {
        let mut table = Table::new();
        let a = table.create_cspace(4);
        let b = table.create_cspace(4);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(a, 2)).unwrap();
        table.copy(slot(a, 2), slot(a, 3)).unwrap();
        table.move_capability(slot(a, 2), slot(b, 1)).unwrap();
        assert_eq!(table.get(slot(a, 2)), Err(CapabilityError::EmptySlot { index: 2 }));
        assert_eq!(table.get(slot(b, 1)), Ok(&cap(7, 3, 0)));
        assert_eq!(parent_of(&table, slot(b, 1)), Some(slot(a, 1)));
        assert_eq!(parent_of(&table, slot(a, 3)), Some(slot(b, 1)));
        assert_eq!(table.reference_count(&7), 3);
        check_invariants(&table);
    }

    #[test]
    fn every_bad_slot_is_refused_and_changes_nothing() {
        let mut table = Table::new();
        let a = table.create_cspace(4);
        let dead = table.create_cspace(4);
        table.destroy_cspace(dead).unwrap();
        let never = CSpaceId(999);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.insert_original(slot(a, 2), cap(8, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(a, 3)).unwrap();
        table.delete(slot(a, 3)).unwrap(); // a slot that held a capability once
        let before = snapshot(&table);

        use CapabilityError::*;
        let full = slot(a, 1);
        let empty = slot(a, 3);

        // Sources: (slot, error) pairs that every reading operation refuses.
        let bad_sources = [
            (slot(dead, 1), NoSuchCSpace),
            (slot(never, 1), NoSuchCSpace),
            (slot(a, 0), EmptySlot { index: 0 }),
            (slot(a, 4), SlotOutOfRange { index: 4 }),
            (slot(a, u32::MAX), SlotOutOfRange { index: u32::MAX }),
            (empty, EmptySlot { index: 3 }),
        ];
        for (source, error) in bad_sources {
            assert_eq!(table.get(source), Err(error));
            assert_eq!(table.copy(source, empty), Err(error));
            assert_eq!(table.mint(source, empty, 1, Some(1)), Err(error));
            assert_eq!(table.move_capability(source, empty), Err(error));
            assert_eq!(table.insert_child(source, empty, cap(9, 0, 0)), Err(error));
            assert_eq!(table.delete(source), Err(error));
            assert_eq!(table.revoke(source), Err(error));
            assert_eq!(snapshot(&table), before, "after {source:?}");
        }

        // Destinations: every writing operation refuses them.
        let bad_destinations = [
            (slot(dead, 1), NoSuchCSpace),
            (slot(never, 1), NoSuchCSpace),
            (slot(a, 0), NullSlot),
            (slot(a, 4), SlotOutOfRange { index: 4 }),
            (slot(a, u32::MAX), SlotOutOfRange { index: u32::MAX }),
            (slot(a, 2), SlotOccupied { index: 2 }),
            (full, SameSlot),
        ];
        for (destination, error) in bad_destinations {
            let insert_error = if error == SameSlot {
                SlotOccupied { index: 1 }
            } else {
                error
            };
            assert_eq!(table.insert_original(destination, cap(9, 0, 0)), Err(insert_error));
            assert_eq!(table.copy(full, destination), Err(error));
            assert_eq!(table.mint(full, destination, 1, Some(1)), Err(error));
            assert_eq!(table.move_capability(full, destination), Err(error));
            assert_eq!(table.insert_child(full, destination, cap(9, 0, 0)), Err(error));
            assert_eq!(snapshot(&table), before, "after {destination:?}");
        }

        // Reading a dead CSpace as a whole.
        for cspace in [dead, never] {
            assert_eq!(table.slot_count(cspace), Err(NoSuchCSpace));
            assert!(matches!(table.occupied(cspace), Err(NoSuchCSpace)));
            assert_eq!(table.destroy_cspace(cspace), Err(NoSuchCSpace));
        }
        assert_eq!(table.reference_count(&9), 0);
        assert_eq!(snapshot(&table), before);
    }

    #[test]
    fn a_cspace_without_slots_has_only_bad_slots() {
        let mut table = Table::new();
        let none = table.create_cspace(0);
        let before = snapshot(&table);
        assert_eq!(table.slot_count(none), Ok(0));
        assert_eq!(table.get(slot(none, 0)), Err(CapabilityError::EmptySlot { index: 0 }));
        assert_eq!(
            table.insert_original(slot(none, 0), cap(1, 0, 0)),
            Err(CapabilityError::NullSlot)
        );
        assert_eq!(
            table.insert_original(slot(none, 1), cap(1, 0, 0)),
            Err(CapabilityError::SlotOutOfRange { index: 1 })
        );
        assert_eq!(snapshot(&table), before);
        assert_eq!(table.destroy_cspace(none), Ok(Vec::new()));
    }

    #[test]
    fn delete_returns_the_object_only_with_its_last_capability() {
        let mut table = Table::new();
        let a = table.create_cspace(4);
        let b = table.create_cspace(4);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(b, 1)).unwrap();
        table.insert_original(slot(a, 2), cap(7, 3, 0)).unwrap(); // a second original of the same object
        assert_eq!(table.reference_count(&7), 3);
        assert_eq!(table.delete(slot(a, 1)), Ok(None));
        assert_eq!(table.delete(slot(b, 1)), Ok(None));
        assert_eq!(table.reference_count(&7), 1);
        assert_eq!(table.delete(slot(a, 2)), Ok(Some(7)));
        assert_eq!(table.reference_count(&7), 0);
        assert_eq!(table.delete(slot(a, 2)), Err(CapabilityError::EmptySlot { index: 2 }));
        check_invariants(&table);
        // The freed nodes are reused.
        let arena = table.nodes.len();
        table.insert_original(slot(a, 1), cap(8, 0, 0)).unwrap();
        table.insert_original(slot(a, 2), cap(8, 0, 0)).unwrap();
        assert_eq!(table.nodes.len(), arena);
        check_invariants(&table);
    }

    #[test]
    fn delete_hands_children_to_the_parent() {
        let (mut table, a) = one_cspace(8);
        table.copy(slot(a, 1), slot(a, 2)).unwrap();
        table.copy(slot(a, 2), slot(a, 3)).unwrap();
        table.copy(slot(a, 2), slot(a, 4)).unwrap();
        table.copy(slot(a, 1), slot(a, 5)).unwrap();
        assert_eq!(table.delete(slot(a, 2)), Ok(None));
        assert_eq!(parent_of(&table, slot(a, 3)), Some(slot(a, 1)));
        assert_eq!(parent_of(&table, slot(a, 4)), Some(slot(a, 1)));
        assert_eq!(parent_of(&table, slot(a, 5)), Some(slot(a, 1)));
        check_invariants(&table);
        // Deleting an original leaves its children as originals.
        assert_eq!(table.delete(slot(a, 1)), Ok(None));
        for index in [3, 4, 5] {
            assert_eq!(parent_of(&table, slot(a, index)), None);
        }
        check_invariants(&table);
    }

    #[test]
    fn revoke_deletes_a_chain_but_not_itself() {
        let (mut table, a) = one_cspace(8);
        for index in 1..7 {
            table.copy(slot(a, index), slot(a, index + 1)).unwrap();
        }
        assert_eq!(table.revoke(slot(a, 3)), Ok(Vec::new()));
        let left: Vec<u32> = table.occupied(a).unwrap().map(|(index, _)| index).collect();
        assert_eq!(left, [1, 2, 3]);
        assert_eq!(table.reference_count(&7), 3);
        // Revoking what has no descendants does nothing.
        let before = snapshot(&table);
        assert_eq!(table.revoke(slot(a, 3)), Ok(Vec::new()));
        assert_eq!(snapshot(&table), before);
        assert_eq!(table.revoke(slot(a, 1)), Ok(Vec::new()));
        assert_eq!(table.get(slot(a, 1)), Ok(&cap(7, 0b1111, 0)));
        assert_eq!(table.reference_count(&7), 1);
        check_invariants(&table);
    }

    #[test]
    fn revoke_deletes_a_wide_tree_across_three_cspaces() {
        let mut table = Table::new();
        let [a, b, c] = [0; 3].map(|_| table.create_cspace(64));
        table.insert_original(slot(a, 1), cap(7, 0xff, 0)).unwrap();
        table.insert_original(slot(c, 63), cap(8, 0xff, 0)).unwrap(); // unrelated
        table.copy(slot(c, 63), slot(b, 63)).unwrap();
        // Ten children of the root in b, each with three grandchildren
        // spread over a, b and c.
        for child in 0..10 {
            let child_slot = slot(b, 1 + child);
            table
                .mint(slot(a, 1), child_slot, 0x0f, Some(u64::from(child) + 1))
                .unwrap();
            for (n, cspace) in [a, b, c].into_iter().enumerate() {
                let grandchild = slot(cspace, 20 + child * 3 + n as u32);
                table.copy(child_slot, grandchild).unwrap();
            }
        }
        table.copy(slot(a, 1), slot(c, 1)).unwrap();
        assert_eq!(table.reference_count(&7), 1 + 10 + 30 + 1);
        check_invariants(&table);

        assert_eq!(table.revoke(slot(a, 1)), Ok(Vec::new()));
        assert_eq!(table.reference_count(&7), 1);
        let count = |table: &Table, cspace| table.occupied(cspace).unwrap().count();
        assert_eq!((count(&table, a), count(&table, b), count(&table, c)), (1, 1, 1));
        assert_eq!(table.get(slot(a, 1)), Ok(&cap(7, 0xff, 0)));
        assert_eq!(table.get(slot(b, 63)), Ok(&cap(8, 0xff, 0)));
        assert_eq!(table.reference_count(&8), 2);
        check_invariants(&table);
    }

    #[test]
    fn revoke_reaches_grandchildren_after_their_parent_was_deleted() {
        let mut table = Table::new();
        let a = table.create_cspace(8);
        let b = table.create_cspace(8);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(a, 2)).unwrap();
        table.copy(slot(a, 2), slot(b, 1)).unwrap();
        table.copy(slot(b, 1), slot(b, 2)).unwrap();
        table.copy(slot(a, 2), slot(b, 3)).unwrap();
        table.delete(slot(a, 2)).unwrap();
        assert_eq!(table.revoke(slot(a, 1)), Ok(Vec::new()));
        assert_eq!(table.occupied(b).unwrap().count(), 0);
        assert_eq!(table.reference_count(&7), 1);
        check_invariants(&table);
    }

    #[test]
    fn revoke_follows_moved_capabilities() {
        let mut table = Table::new();
        let a = table.create_cspace(8);
        let b = table.create_cspace(8);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(a, 2)).unwrap();
        table.copy(slot(a, 2), slot(a, 3)).unwrap();
        // A moved child is still revoked with its parent...
        table.move_capability(slot(a, 3), slot(b, 5)).unwrap();
        table.revoke(slot(a, 2)).unwrap();
        assert_eq!(table.get(slot(b, 5)), Err(CapabilityError::EmptySlot { index: 5 }));
        // ...and a moved parent still revokes its children.
        table.copy(slot(a, 2), slot(a, 3)).unwrap();
        table.copy(slot(a, 3), slot(b, 1)).unwrap();
        table.move_capability(slot(a, 2), slot(b, 7)).unwrap();
        table.revoke(slot(b, 7)).unwrap();
        let left: Vec<SlotRef> = [a, b]
            .into_iter()
            .flat_map(|cspace| {
                table
                    .occupied(cspace)
                    .unwrap()
                    .map(move |(index, _)| slot(cspace, index))
            })
            .collect();
        assert_eq!(left, [slot(a, 1), slot(b, 7)]);
        assert_eq!(parent_of(&table, slot(b, 7)), Some(slot(a, 1)));
        check_invariants(&table);
    }

    #[test]
    fn revoke_returns_objects_made_from_the_capability() {
        let mut table = Table::new();
        let a = table.create_cspace(8);
        let b = table.create_cspace(8);
        table.insert_original(slot(a, 1), cap(100, 3, 0)).unwrap(); // untyped memory
        table.insert_child(slot(a, 1), slot(b, 1), cap(1, 3, 0)).unwrap();
        table.insert_child(slot(a, 1), slot(b, 2), cap(2, 3, 0)).unwrap();
        table.copy(slot(b, 2), slot(a, 2)).unwrap();
        table.copy(slot(b, 1), slot(a, 3)).unwrap();
        table.insert_original(slot(a, 4), cap(2, 3, 0)).unwrap(); // object 2 has another way in
        assert_eq!(parent_of(&table, slot(b, 1)), Some(slot(a, 1)));
        let mut released = table.revoke(slot(a, 1)).unwrap();
        released.sort();
        assert_eq!(released, [1]);
        assert_eq!(table.reference_count(&1), 0);
        assert_eq!(table.reference_count(&2), 1);
        assert_eq!(table.reference_count(&100), 1);
        check_invariants(&table);
    }

    #[test]
    fn destroy_cspace_releases_objects_and_keeps_derived_capabilities() {
        let mut table = Table::new();
        let a = table.create_cspace(8);
        let driver = table.create_cspace(8);
        let c = table.create_cspace(8);
        table.insert_original(slot(a, 1), cap(7, 3, 0)).unwrap();
        table.copy(slot(a, 1), slot(driver, 1)).unwrap();
        table.copy(slot(driver, 1), slot(driver, 2)).unwrap();
        table.copy(slot(driver, 2), slot(c, 1)).unwrap();
        table.insert_original(slot(driver, 3), cap(8, 3, 0)).unwrap();
        table.copy(slot(driver, 3), slot(c, 2)).unwrap();
        table.insert_original(slot(driver, 4), cap(9, 3, 0)).unwrap();
        table.copy(slot(driver, 4), slot(driver, 5)).unwrap();

        let mut released = table.destroy_cspace(driver).unwrap();
        released.sort();
        assert_eq!(released, [9]);
        assert_eq!(table.slot_count(driver), Err(CapabilityError::NoSuchCSpace));
        assert_eq!(parent_of(&table, slot(c, 1)), Some(slot(a, 1)));
        assert_eq!(parent_of(&table, slot(c, 2)), None);
        assert_eq!(table.reference_count(&7), 2);
        assert_eq!(table.reference_count(&8), 1);
        assert_eq!(table.reference_count(&9), 0);
        check_invariants(&table);
        // What the driver handed on is still revocable from above.
        table.revoke(slot(a, 1)).unwrap();
        assert_eq!(table.get(slot(c, 1)), Err(CapabilityError::EmptySlot { index: 1 }));
        check_invariants(&table);
    }

    #[test]
    fn empty_step_empties_a_step_at_a_time_and_leaves_the_rest_to_destroy() {
        let mut table = Table::new();
        let holder = table.create_cspace(4);
        let big = table.create_cspace(40);
        // Slots 1..=30 hold objects 101..=130; 131 also has a copy in
        // `holder`, so deleting slot 31 releases nothing.
        for index in 1..=31 {
            table.insert_original(slot(big, index), cap(100 + index, 3, 0)).unwrap();
        }
        table.copy(slot(big, 31), slot(holder, 1)).unwrap();
        // Slot 5 is kept (as the capability being deleted would be).
        let first = table.empty_step(big, 10, 5).unwrap();
        assert_eq!(first.emptied, 10);
        let mut released = first.released;
        released.sort();
        assert_eq!(released, [101, 102, 103, 104, 106, 107, 108, 109, 110, 111]);
        assert!(table.get(slot(big, 5)).is_ok());
        assert!(table.get(slot(big, 12)).is_ok());
        check_invariants(&table);
        // A capability placed below where the next step starts is left for
        // destroy_cspace, not lost.
        table.insert_original(slot(big, 2), cap(200, 3, 0)).unwrap();
        let second = table.empty_step(big, 10, 5).unwrap();
        assert_eq!(second.emptied, 10);
        assert_eq!(second.released, (112..=121).collect::<Vec<_>>());
        // Ten left from there (122..=131): not more than a step, so the
        // third step leaves them.
        assert_eq!(
            table.empty_step(big, 10, 5).unwrap(),
            Step {
                emptied: 0,
                released: Vec::new()
            }
        );
        check_invariants(&table);
        let mut rest = table.destroy_cspace(big).unwrap();
        rest.sort();
        let mut expected: Vec<u32> = (122..=130).chain([105, 200]).collect();
        expected.sort();
        assert_eq!(rest, expected);
        assert_eq!(table.reference_count(&131), 1);
        assert_eq!(table.empty_step(big, 10, 0), Err(CapabilityError::NoSuchCSpace));
        check_invariants(&table);
    }

    const DEPTH: u32 = 100_000;

    /// A chain of DEPTH derivations in slots 1..=DEPTH + 1.
    fn deep_chain() -> (Table, CSpaceId) {
        let (mut table, a) = one_cspace(DEPTH + 2);
        for index in 1..=DEPTH {
            table.copy(slot(a, index), slot(a, index + 1)).unwrap();
        }
        (table, a)
    }

    #[test]
    fn deep_chain_revokes_without_recursion() {
        let (mut table, a) = deep_chain();
        assert_eq!(table.reference_count(&7), DEPTH as usize + 1);
        assert_eq!(table.revoke(slot(a, 1)), Ok(Vec::new()));
        assert_eq!(table.reference_count(&7), 1);
        assert_eq!(table.occupied(a).unwrap().count(), 1);
        check_invariants(&table);
    }

    #[test]
    fn deep_chain_deletes_and_destroys_without_recursion() {
        let (mut table, a) = deep_chain();
        table.delete(slot(a, DEPTH / 2)).unwrap();
        assert_eq!(parent_of(&table, slot(a, DEPTH / 2 + 1)), Some(slot(a, DEPTH / 2 - 1)));
        table.revoke(slot(a, DEPTH / 4)).unwrap();
        assert_eq!(table.reference_count(&7), DEPTH as usize / 4);
        let (mut table, a) = deep_chain();
        assert_eq!(table.destroy_cspace(a), Ok(vec![7]));
        assert!(table.reference_counts.is_empty());
        check_invariants(&table);
        // Dropping a deep chain must not recurse either.
        drop(deep_chain());
    }

    /// The reference model: capabilities with a naive parent key each.
    #[derive(Default)]
    struct Model {
        cspaces: BTreeMap<CSpaceId, Vec<Option<usize>>>,
        capabilities: BTreeMap<usize, ModelCapability>,
        next_key: usize,
    }

    struct ModelCapability {
        capability: Capability<u32>,
        parent: Option<usize>,
        slot: SlotRef,
    }

    impl Model {
        fn entry(&self, at: SlotRef) -> Result<Option<usize>, CapabilityError> {
            let slots = self.cspaces.get(&at.cspace).ok_or(CapabilityError::NoSuchCSpace)?;
            if at.index == 0 {
                return Err(CapabilityError::NullSlot);
            }
            slots
                .get(at.index as usize)
                .copied()
                .ok_or(CapabilityError::SlotOutOfRange { index: at.index })
        }

        fn source(&self, at: SlotRef) -> Result<usize, CapabilityError> {
            match self.entry(at) {
                Ok(Some(key)) => Ok(key),
                Ok(None) | Err(CapabilityError::NullSlot) => Err(CapabilityError::EmptySlot { index: at.index }),
                Err(error) => Err(error),
            }
        }

        fn empty(&self, at: SlotRef) -> Result<(), CapabilityError> {
            match self.entry(at)? {
                None => Ok(()),
                Some(_) => Err(CapabilityError::SlotOccupied { index: at.index }),
            }
        }

        fn destination(&self, source: SlotRef, destination: SlotRef) -> Result<(), CapabilityError> {
            if source == destination {
                return Err(CapabilityError::SameSlot);
            }
            self.empty(destination)
        }

        fn set(&mut self, at: SlotRef, key: Option<usize>) {
            if let Some(slots) = self.cspaces.get_mut(&at.cspace) {
                slots[at.index as usize] = key;
            }
        }

        fn put(&mut self, at: SlotRef, capability: Capability<u32>, parent: Option<usize>) {
            let key = self.next_key;
            self.next_key += 1;
            self.capabilities.insert(
                key,
                ModelCapability {
                    capability,
                    parent,
                    slot: at,
                },
            );
            self.set(at, Some(key));
        }

        fn count(&self, object: u32) -> usize {
            self.capabilities
                .values()
                .filter(|entry| entry.capability.object == object)
                .count()
        }

        fn delete(&mut self, key: usize) -> Option<u32> {
            let gone = self.capabilities.remove(&key).unwrap();
            self.set(gone.slot, None);
            for entry in self.capabilities.values_mut() {
                if entry.parent == Some(key) {
                    entry.parent = gone.parent;
                }
            }
            let object = gone.capability.object;
            (self.count(object) == 0).then_some(object)
        }

        fn descends_from(&self, key: usize, ancestor: usize) -> bool {
            let mut at = self.capabilities[&key].parent;
            while let Some(parent) = at {
                if parent == ancestor {
                    return true;
                }
                at = self.capabilities[&parent].parent;
            }
            false
        }

        fn revoke(&mut self, root: usize) -> Vec<u32> {
            let descendants: Vec<usize> = self
                .capabilities
                .keys()
                .copied()
                .filter(|&key| self.descends_from(key, root))
                .collect();
            let mut objects = BTreeSet::new();
            for key in descendants {
                let gone = self.capabilities.remove(&key).unwrap();
                self.set(gone.slot, None);
                objects.insert(gone.capability.object);
            }
            objects.into_iter().filter(|&object| self.count(object) == 0).collect()
        }

        fn destroy_cspace(&mut self, cspace: CSpaceId) -> Vec<u32> {
            let keys: Vec<usize> = self.cspaces[&cspace].iter().flatten().copied().collect();
            let released = keys.into_iter().filter_map(|key| self.delete(key)).collect();
            self.cspaces.remove(&cspace);
            released
        }

        /// Asserts that the table holds exactly what the model does.
        fn assert_matches(&self, table: &Table, step: usize) {
            check_invariants(table);
            assert!(
                table.cspaces.keys().eq(self.cspaces.keys()),
                "step {step}: CSpaces differ"
            );
            for (&id, slots) in &self.cspaces {
                assert_eq!(table.slot_count(id), Ok(slots.len() as u32));
                let expected: Vec<(u32, &Capability<u32>)> = (0u32..)
                    .zip(slots)
                    .filter_map(|(index, key)| key.map(|key| (index, &self.capabilities[&key].capability)))
                    .collect();
                let actual: Vec<(u32, &Capability<u32>)> = table.occupied(id).unwrap().collect();
                assert_eq!(actual, expected, "step {step}: contents of {id:?} differ");
            }
            for entry in self.capabilities.values() {
                let parent = entry.parent.map(|key| self.capabilities[&key].slot);
                assert_eq!(
                    parent_of(table, entry.slot),
                    parent,
                    "step {step}: parent of {:?}",
                    entry.slot
                );
            }
            for object in 0..OBJECTS {
                assert_eq!(
                    table.reference_count(&object),
                    self.count(object),
                    "step {step}: count of {object}"
                );
            }
        }
    }

    const OBJECTS: u32 = 12;

    fn sorted(mut objects: Vec<u32>) -> Vec<u32> {
        objects.sort();
        objects
    }

    #[test]
    fn random_operations_match_a_reference_model() {
        let mut rng = Random(0x9e37_79b9_7f4a_7c15);
        let mut table = Table::new();
        let mut model = Model::default();
        let mut dead = vec![CSpaceId(u32::MAX)];
        let mut outcomes: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for _ in 0..3 {
            let id = table.create_cspace(12);
            model.cspaces.insert(id, vec![None; 12]);
        }

        for step in 0..20_000 {
            let live: Vec<CSpaceId> = model.cspaces.keys().copied().collect();
            let pick_slot = |rng: &mut Random| {
                let cspace = if live.is_empty() || rng.chance(3) {
                    dead[rng.below(dead.len() as u64) as usize]
                } else {
                    live[rng.below(live.len() as u64) as usize]
                };
                let slots = model.cspaces.get(&cspace).map_or(4, |slots| slots.len() as u64);
                // Mostly valid indices; 0 and one past the end now and then.
                SlotRef::new(cspace, rng.below(slots + 1) as u32)
            };
            // Sources are mostly live capabilities, so trees grow deep and wide.
            let source = if !model.capabilities.is_empty() && rng.chance(80) {
                let nth = rng.below(model.capabilities.len() as u64) as usize;
                model
                    .capabilities
                    .values()
                    .nth(nth)
                    .map_or(SlotRef::new(CSpaceId(0), 0), |entry| entry.slot)
            } else {
                pick_slot(&mut rng)
            };
            let destination = if rng.chance(3) { source } else { pick_slot(&mut rng) };
            let capability = cap(
                rng.below(u64::from(OBJECTS)) as u32,
                rng.next() as u32,
                if rng.chance(50) { 0 } else { rng.next() },
            );

            // Keep a few CSpaces alive, so that most slots named are real.
            let operation = if model.cspaces.len() < 3 { 0 } else { rng.below(100) };
            let (name, ok) = match operation {
                0..1 => {
                    if model.cspaces.len() >= 8 {
                        continue;
                    }
                    let slots = if rng.chance(10) {
                        rng.below(3)
                    } else {
                        8 + rng.below(24)
                    } as u32;
                    let id = table.create_cspace(slots);
                    assert!(model.cspaces.insert(id, vec![None; slots as usize]).is_none());
                    ("create_cspace", true)
                }
                1..2 => {
                    let cspace = if rng.chance(20) {
                        dead[rng.below(dead.len() as u64) as usize]
                    } else {
                        source.cspace
                    };
                    let expected = if model.cspaces.contains_key(&cspace) {
                        dead.push(cspace);
                        Ok(sorted(model.destroy_cspace(cspace)))
                    } else {
                        Err(CapabilityError::NoSuchCSpace)
                    };
                    let actual = table.destroy_cspace(cspace).map(sorted);
                    assert_eq!(actual, expected, "step {step}: destroy_cspace");
                    ("destroy_cspace", actual.is_ok())
                }
                2..12 => {
                    let expected = model.empty(source);
                    if expected.is_ok() {
                        model.put(source, capability.clone(), None);
                    }
                    let actual = table.insert_original(source, capability);
                    assert_eq!(actual, expected, "step {step}: insert_original");
                    ("insert_original", actual.is_ok())
                }
                12..18 => {
                    let expected = model.source(source).and_then(|parent| {
                        model.destination(source, destination)?;
                        model.put(destination, capability.clone(), Some(parent));
                        Ok(())
                    });
                    let actual = table.insert_child(source, destination, capability);
                    assert_eq!(actual, expected, "step {step}: insert_child");
                    ("insert_child", actual.is_ok())
                }
                18..60 => {
                    let copy = operation < 42;
                    let (mask, badge) = if copy {
                        (u32::MAX, None)
                    } else {
                        (rng.next() as u32, rng.chance(50).then(|| rng.below(3)))
                    };
                    let expected = model.source(source).and_then(|parent| {
                        model.destination(source, destination)?;
                        let original = &model.capabilities[&parent].capability;
                        let badge = match badge {
                            None => original.badge,
                            Some(_) if original.badge != 0 => return Err(CapabilityError::BadgeAlreadySet),
                            Some(badge) => badge,
                        };
                        let derived = cap(original.object, original.rights & mask, badge);
                        model.put(destination, derived, Some(parent));
                        Ok(())
                    });
                    let actual = if copy {
                        table.copy(source, destination)
                    } else {
                        table.mint(source, destination, mask, badge)
                    };
                    assert_eq!(actual, expected, "step {step}: copy or mint");
                    (if copy { "copy" } else { "mint" }, actual.is_ok())
                }
                60..74 => {
                    let expected = model.source(source).and_then(|key| {
                        model.destination(source, destination)?;
                        model.set(source, None);
                        model.set(destination, Some(key));
                        model.capabilities.get_mut(&key).unwrap().slot = destination;
                        Ok(())
                    });
                    let actual = table.move_capability(source, destination);
                    assert_eq!(actual, expected, "step {step}: move");
                    ("move", actual.is_ok())
                }
                74..84 => {
                    let expected = model.source(source).map(|key| model.delete(key));
                    let actual = table.delete(source);
                    assert_eq!(actual, expected, "step {step}: delete");
                    ("delete", actual.is_ok())
                }
                84..89 => {
                    let expected = model.source(source).map(|key| model.revoke(key));
                    let actual = table.revoke(source).map(sorted);
                    assert_eq!(actual, expected, "step {step}: revoke");
                    ("revoke", actual.is_ok())
                }
                _ => {
                    let expected = model.source(source).map(|key| &model.capabilities[&key].capability);
                    let actual = table.get(source);
                    assert_eq!(actual, expected, "step {step}: get");
                    ("get", actual.is_ok())
                }
            };
            let tally = outcomes.entry(name).or_default();
            if ok {
                tally.0 += 1
            } else {
                tally.1 += 1
            }
            model.assert_matches(&table, step);
        }

        // Every operation must have both succeeded and failed often enough
        // for the comparison to mean something.
        for name in [
            "destroy_cspace",
            "insert_original",
            "insert_child",
            "copy",
            "mint",
            "move",
            "delete",
            "revoke",
        ] {
            let (ok, failed) = outcomes.get(name).copied().unwrap_or_default();
            assert!(ok >= 20 && failed >= 20, "{name}: {ok} succeeded, {failed} failed");
        }
    }
}
