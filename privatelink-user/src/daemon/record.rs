//! The recorder: the only writer of the recorded state. It holds the store and the
//! state last committed or read, commits each change with its events in one
//! transaction (computing the change anew when another node's commit came first), and
//! delivers the events it committed (`events`). Touches no map, link or route.

use super::events;
use crate::{
    model::state::{endpoint_events, Event, State},
    store::{Store, StoreError},
};
use anyhow::{Context, Result};
use std::sync::Arc;

/// How many times a change is computed anew when other nodes' commits keep winning.
pub const MAX_TRIES: u32 = 8;

/// Whether `e` is a commit that lost to another writer's.
pub fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Conflict { .. })))
}

/// A change computed from the recorded state: the next state and the events it adds
/// (None: nothing to change).
pub type Change = Option<(State, Vec<Event>)>;

pub struct Recorder {
    store: Arc<dyn Store>,
    state: Arc<State>,
}

impl Recorder {
    pub fn open(store: Arc<dyn Store>) -> Result<Recorder> {
        let state = Arc::new(store.load()?);
        Ok(Recorder { store, state })
    }

    /// The state last committed here or read from the store.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The store, for what readers ask it themselves (events, registrations).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Compute the next state from the recorded one and commit it; when another node
    /// committed first, read the store and compute again (a few times, then report the
    /// conflict). Whether it committed.
    pub fn transact(&mut self, mut f: impl FnMut(&State) -> Result<Change>) -> Result<bool> {
        for attempt in 1..=MAX_TRIES {
            let Some((next, events)) = f(&self.state)? else { return Ok(false) };
            match self.commit(next, events) {
                Err(e) if is_conflict(&e) && attempt < MAX_TRIES => {
                    self.reload()?;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(true),
            }
        }
        unreachable!("the last try returns")
    }

    /// Record `st` with the endpoint events it carries and `more` (health flips), in one
    /// transaction.
    pub fn commit(&mut self, mut st: State, more: Vec<Event>) -> Result<()> {
        let mut events = endpoint_events(&self.state, &st);
        events.extend(more);
        self.store.commit_with_events(&mut st, &mut events).context("recording the state")?;
        self.state = Arc::new(st);
        events::deliver(&self.state, &events);
        Ok(())
    }

    /// Take the store's latest state (another node's commit). Whether it was new.
    pub fn reload(&mut self) -> Result<bool> {
        let st = self.store.load().context("reading the shared state")?;
        if st.generation == self.state.generation {
            return Ok(false);
        }
        self.state = Arc::new(st);
        Ok(true)
    }

    /// Record events of their own (limit episodes), and deliver them.
    pub fn record(&self, mut events: Vec<Event>) -> Result<()> {
        self.store.record(&mut events)?;
        events::deliver(&self.state, &events);
        Ok(())
    }
}
