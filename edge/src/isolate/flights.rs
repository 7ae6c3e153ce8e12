//! Single flight for the response cache: identical concurrent misses in one isolate make one
//! upstream call. The first miss of a key leads; later ones wait for its answer (bounded by the
//! host's clock, see `pipeline::cache`) and are served from it. No task is spawned and no clock
//! read here: a flight is a shared one-shot channel the leader completes (or drops, when its
//! answer is not cacheable, which releases the waiters to go upstream themselves).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

/// What a waiter gets: the leader's encoded entry, or `Err` when the leader ended without one.
pub type FlightOutcome = Result<Rc<Vec<u8>>, oneshot::Canceled>;

/// A flight waiters can await.
pub type Flight = Shared<oneshot::Receiver<Rc<Vec<u8>>>>;

/// The flights in progress in this isolate, by cache key.
#[derive(Clone, Default)]
pub struct Flights {
    inner: Rc<RefCell<FlightTable>>,
}

#[derive(Default)]
struct FlightTable {
    next_id: u64,
    flights: HashMap<String, (u64, Flight)>,
}

impl Flights {
    /// The flight in progress for `key`, if one is.
    pub fn join(&self, key: &str) -> Option<Flight> {
        self.inner.borrow().flights.get(key).map(|(_, flight)| flight.clone())
    }

    /// Lead the flight for `key`: later misses of the key wait for this one.
    pub fn lead(&self, key: &str) -> FlightLeader {
        let (sender, receiver) = oneshot::channel();
        let mut table = self.inner.borrow_mut();
        table.next_id += 1;
        let id = table.next_id;
        table.flights.insert(key.to_string(), (id, receiver.shared()));
        FlightLeader { flights: self.clone(), key: key.to_string(), id, sender: Some(sender) }
    }

    /// How many flights are in progress (for tests).
    pub fn len(&self) -> usize {
        self.inner.borrow().flights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leading request of a flight. Dropping it without [`FlightLeader::publish`] tells the
/// waiters there is nothing to read; either way the flight ends.
pub struct FlightLeader {
    flights: Flights,
    key: String,
    id: u64,
    sender: Option<oneshot::Sender<Rc<Vec<u8>>>>,
}

impl FlightLeader {
    /// Hand the waiters the answer (an encoded entry).
    pub fn publish(mut self, entry: Rc<Vec<u8>>) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(entry);
        }
    }
}

impl Drop for FlightLeader {
    fn drop(&mut self) {
        let mut table = self.flights.inner.borrow_mut();
        if table.flights.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            table.flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn waiters_read_the_leaders_answer_and_the_flight_ends() {
        let flights = Flights::default();
        let leader = flights.lead("k");
        let waiter = flights.join("k").unwrap();
        assert!(flights.join("other").is_none());
        leader.publish(Rc::new(b"entry".to_vec()));
        assert_eq!(block_on(waiter).unwrap().as_slice(), b"entry");
        assert!(flights.is_empty());
    }

    #[test]
    fn a_leader_without_an_answer_releases_its_waiters() {
        let flights = Flights::default();
        let leader = flights.lead("k");
        let waiter = flights.join("k").unwrap();
        drop(leader);
        assert!(block_on(waiter).is_err());
        assert!(flights.join("k").is_none());
    }
}
