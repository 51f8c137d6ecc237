//! What every operation runs in: [`context`] (the lock, the journal entry, the seams to hosts and
//! etcd), [`etcd_view`] (etcd as the operations see it), [`live`] (the primitives on a live
//! cluster: start, stop, restart without an election, waits), [`offline`] (a member defragmented
//! while stopped), [`journal_store`] and [`records`]
//! (what survives a kill), [`rolling`] (the release swap `upgrade` and `downgrade` share),
//! [`lb`] (the load balancer's check) and the fakes the operations are unit-tested on.

pub mod context;
pub mod etcd_view;
#[cfg(test)]
pub mod fakes;
pub mod journal_store;
pub mod lb;
pub mod live;
pub mod offline;
pub mod records;
pub mod rolling;
